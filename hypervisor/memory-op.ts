/**
 * Memory hypercalls the DMA API needs:
 *  - XENMEM_exchange (xensim form): trade some of the caller's RAM pages for a
 *    machine-contiguous run below an address limit, contents preserved — how
 *    swiotlb-xen makes its bounce pool and coherent buffers machine-contiguous
 *    below the DMA mask (xen_create_contiguous_region);
 *  - the ia64 dom0vp_op translations, one page per hypercall (phystomach,
 *    machtophys), kept for the `xlate` DMA API.
 */
import { DOM0VP, XENMEM, XEN_ERRNO } from '../shared/abi/xen.ts';
import { FRAME_TYPE } from '../shared/abi/machine.ts';
import type { MachineAddr, Mfn, Pfn } from '../shared/types.ts';
import type { Domain } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';

/**
 * XENMEM_exchange(off, count, limitBits): u32 pfn[count] IN at off (the
 * caller's pfns, in order), u32 mfn[count] OUT after them (machine frames for
 * PV callers, ~0 for the others). On success the pfns are backed by one
 * contiguous run of machine frames ending below 2^limitBits.
 */
function exchange(hv: Hypervisor, d: Domain, off: number, count: number, limitBits: number): number {
  if (!(Number.isInteger(count) && count >= 1)) return -XEN_ERRNO.EINVAL;
  if (!(Number.isInteger(limitBits) && limitBits >= 12 && limitBits <= 64)) return -XEN_ERRNO.EINVAL;
  const buf = hv.hcbuf(d, off, count * 8);
  if (buf === undefined) return -XEN_ERRNO.EFAULT;
  const mem = hv.mem;
  const pfns: number[] = [];
  const olds: Mfn[] = [];
  for (let i = 0; i < count; i++) {
    const pfn = mem.getU32((buf + i * 4) as MachineAddr);
    if (!d.p2m.inRange(pfn)) return -XEN_ERRNO.EINVAL;
    const e = d.p2m.get(pfn as Pfn);
    if (!e.present || e.foreign || !d.owned.has(e.mfn as Mfn) || hv.frameTable.type(e.mfn as Mfn) !== FRAME_TYPE.ram) return -XEN_ERRNO.EINVAL;
    if (pfns.includes(pfn)) return -XEN_ERRNO.EINVAL;
    // A page that is granted and in use cannot move under its grantee.
    for (const a of d.active.values()) if (a.mfn === e.mfn) return -XEN_ERRNO.EBUSY;
    if (hv.frameTable.mapcount(e.mfn as Mfn) > 0) return -XEN_ERRNO.EBUSY;
    pfns.push(pfn);
    olds.push(e.mfn as Mfn);
  }
  const limitFrames = limitBits >= 52 ? mem.frames : Math.min(mem.frames, Math.floor(2 ** limitBits / mem.pageSize));
  const r = hv.allocator.allocContiguous(count, 1, limitFrames);
  if (!r.ok) return -XEN_ERRNO.ENOMEM;
  for (let i = 0; i < count; i++) {
    const pfn = pfns[i] as Pfn;
    const old = olds[i] as Mfn;
    const nu = (r.value + i) as Mfn;
    mem.copy(mem.frameAddr(nu), mem.frameAddr(old), mem.pageSize);
    hv.frameTable.assign(nu, d.domid, FRAME_TYPE.ram, pfn);
    d.owned.add(nu);
    d.p2m.set(pfn, nu, true, false);
    hv.iommu.ramMoved(d, old, nu);
    hv.freeOwnedFrame(d, old);
    if (d.model === 'p2m') {
      // The PV guest's own list: Xen updates it on the guest's behalf here.
      const gpa = d.p2mListPfn * mem.pageSize + pfn * 4;
      const listMfn = d.p2m.lookup(Math.floor(gpa / mem.pageSize) as Pfn) as Mfn;
      mem.setU32((mem.frameAddr(listMfn) + (gpa % mem.pageSize)) as MachineAddr, nu);
    }
    mem.setU32((buf + count * 4 + i * 4) as MachineAddr, d.model === 'p2m' ? nu : 0xffffffff);
  }
  return 0;
}

export function memoryOp(hv: Hypervisor, d: Domain, cmd: number, args: readonly number[]): [number, number] {
  switch (cmd) {
    case XENMEM.exchange:
      return [exchange(hv, d, args[1] ?? 0, args[2] ?? 0, args[3] ?? 0), 0];
    default:
      return [-XEN_ERRNO.ENOSYS, 0];
  }
}

/** dom0vp_op(cmd, arg): phystomach(pfn) → mfn, machtophys(mfn) → pfn, for the caller's own view. */
export function dom0vpOp(hv: Hypervisor, d: Domain, cmd: number, arg: number): [number, number] {
  switch (cmd) {
    case DOM0VP.phystomach: {
      if (!d.p2m.inRange(arg)) return [-XEN_ERRNO.EINVAL, 0];
      const e = d.p2m.get(arg as Pfn);
      if (!e.present) return [-XEN_ERRNO.ENOENT, 0];
      return [0, e.mfn];
    }
    case DOM0VP.machtophys: {
      if (!(Number.isInteger(arg) && arg >= 0 && arg < hv.mem.frames)) return [-XEN_ERRNO.EINVAL, 0];
      if (hv.frameTable.owner(arg as Mfn) !== d.domid) return [-XEN_ERRNO.EPERM, 0];
      return [0, hv.frameTable.m2p(arg as Mfn) >>> 0];
    }
    default:
      return [-XEN_ERRNO.ENOSYS, 0];
  }
}
