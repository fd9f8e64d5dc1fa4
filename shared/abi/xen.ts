/**
 * Hypercall numbers and errno values from Xen's public headers (xen.h,
 * errno.h). Hypercalls return 0 or a positive value on success and -errno on
 * failure, as in Xen; per-element grant statuses are GNTST_* (abi/grant.ts).
 */
export const HYPERVISOR = {
  memory_op: 12,
  multicall: 13,
  xen_version: 17,
  grant_table_op: 20,
  sched_op: 29,
  event_channel_op: 32,
  /** xensim-only: a no-op round trip, for measuring the channel itself. */
  xensim_nop: 63,
  /** xensim-only: ia64-style dom0vp_op (phystomach / machtophys), kept for the `xlate` DMA API. */
  dom0vp_op: 62,
  /** xensim-only: IOMMU operations the DMA API asks of Xen (map/unmap/flush). */
  iommu_op: 61,
} as const;
export type HypercallNr = (typeof HYPERVISOR)[keyof typeof HYPERVISOR];

/** Xen's errno values (xen/include/public/errno.h, which follows Linux's numbering). */
export const XEN_ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ENOSYS: 38,
  ENODATA: 61,
  EOPNOTSUPP: 95,
} as const;
export type XenErrnoName = keyof typeof XEN_ERRNO;

export function errnoName(negErrno: number): string {
  const n = -negErrno;
  for (const [k, v] of Object.entries(XEN_ERRNO)) if (v === n) return k;
  return `errno ${n}`;
}

/** XENMEM_* sub-ops (memory.h). */
export const XENMEM = {
  increase_reservation: 0,
  decrease_reservation: 1,
  populate_physmap: 6,
  add_to_physmap: 7,
  exchange: 11,
} as const;

/** XENMAPSPACE_* for add_to_physmap (memory.h). */
export const XENMAPSPACE = {
  shared_info: 0,
  grant_table: 1,
  gmfn: 2,
} as const;

/** ia64 dom0vp_op sub-ops (public/arch-ia64.h): per-page translation by hypercall. */
export const DOM0VP = {
  phystomach: 1,
  machtophys: 3,
} as const;
