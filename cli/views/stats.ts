/**
 * Plain statistics objects the text views format. Whoever collects them
 * (the hypervisor's domain table, blkback's and netback's counters, the
 * XenStore device directories) fills these in; the views only print.
 *
 * Field meanings follow libxl's libxl_dominfo and libxenstat's accessors, so
 * each column can be traced to the source the real tool reads. Counters the
 * real tools hold as `unsigned long long` accept a number or a bigint.
 */
import { InvariantError } from '../../shared/invariant.ts';

/** An unsigned 64-bit counter: a non-negative integer number, or a bigint. */
export type U64 = number | bigint;

/** SHUTDOWN_* codes (xen/include/public/sched.h) = libxl_shutdown_reason values. */
export const SHUTDOWN_REASON = {
  poweroff: 0,
  reboot: 1,
  suspend: 2,
  crash: 3,
  watchdog: 4,
  soft_reset: 5,
} as const;
/** 'unknown' is libxl's LIBXL_SHUTDOWN_REASON_UNKNOWN (-1). */
export type ShutdownReason = keyof typeof SHUTDOWN_REASON | 'unknown';

/**
 * [DomainState] is the raw state of a domain as XEN_DOMINF_* flags give it.
 * The two tools derive their letters differently from it:
 * - `xl list` (r b p s c d): `s` = shut down for any reason; the 5th letter
 *   is the shutdown reason's letter from "-rscwS" (c = crash, w = watchdog …).
 * - `xentop` (d s b c p r): `s` = shut down for a reason other than crash,
 *   `c` = shut down with reason crash (libxenstat's xenstat_domain_shutdown
 *   and xenstat_domain_crashed).
 */
export interface DomainState {
  readonly running: boolean;
  readonly blocked: boolean;
  readonly paused: boolean;
  readonly dying: boolean;
  /** null while the domain has not shut down; otherwise why it did. */
  readonly shutdown: ShutdownReason | null;
}

export interface VcpuStats {
  readonly online: boolean;
  readonly cpuNs: U64;
}

/** One vif as xentop sees it (on Linux, from /proc/net/dev of vifD.N). */
export interface NetStats {
  readonly txBytes: U64;
  readonly txPackets: U64;
  readonly txErrs: U64;
  readonly txDrop: U64;
  readonly rxBytes: U64;
  readonly rxPackets: U64;
  readonly rxErrs: U64;
  readonly rxDrop: U64;
}

/** xenstat_vbd_type: the backend kind, printed by `xentop -x`. */
export type VbdBackendType = 'unidentified' | 'blkback' | 'blktap';

/** One virtual block device as xentop sees it (on Linux, blkback's sysfs statistics). */
export interface VbdStats {
  /** The device number in XenStore (xvda = 51712 = 202 << 8). */
  readonly dev: number;
  readonly backendType: VbdBackendType;
  /** The statistics could not be read: xentop prints '-' instead of numbers. */
  readonly error?: boolean;
  /** Requests that found the ring (or the backend's request pool) full: blkback's oo_req. */
  readonly ooReqs: U64;
  readonly rdReqs: U64;
  readonly wrReqs: U64;
  /** 512-byte sectors read. */
  readonly rdSects: U64;
  /** 512-byte sectors written. */
  readonly wrSects: U64;
}

export interface DomainStats {
  readonly name: string;
  readonly domid: number;
  readonly state: DomainState;
  /** CPU time used, all vcpus, in ns (libxl_dominfo.cpu_time). */
  readonly cpuNs: U64;
  /** Current allocation in KiB (tot_pages × page size). */
  readonly memKiB: U64;
  /** Memory claimed but not yet allocated, KiB (libxl_dominfo.outstanding_memkb); xl list adds it. Default 0. */
  readonly outstandingKiB?: U64;
  /** Maximum allocation in KiB; null when unlimited (xentop prints "no limit"). */
  readonly maxMemKiB: U64 | null;
  /** vcpus allocated (max_vcpu_id + 1): xentop's VCPUS. */
  readonly vcpus: number;
  /** vcpus online: xl list's VCPUs. */
  readonly vcpusOnline: number;
  /** Per-vcpu times for `xentop -v`; index = vcpu id. */
  readonly vcpuStats?: readonly VcpuStats[];
  readonly nets: readonly NetStats[];
  readonly vbds: readonly VbdStats[];
  /** Security id (XSM/FLASK); 0 without. */
  readonly ssid?: number;
}

/** The host, for xentop's summary lines and percentage columns. */
export interface NodeStats {
  /** e.g. "4.17.3" (xentop prints "Xen <ver>"). */
  readonly xenVersion: string;
  readonly totMemKiB: U64;
  readonly freeMemKiB: U64;
  readonly numCpus: number;
  readonly cpuHz: U64;
}

/** One row of `xl block-list` (libxl_diskinfo). */
export interface DiskInfo {
  /** The vdev's device number, e.g. 51712 for xvda. */
  readonly devid: number;
  readonly backendId: number;
  /** Printed under "handle" (xl prints the frontend's domid there). */
  readonly frontendId: number;
  /** XenbusState number (4 = Connected). */
  readonly state: number;
  readonly evtch: number;
  readonly rref: number;
  /** e.g. /local/domain/0/backend/vbd/3/51712 */
  readonly backend: string;
}

/** One row of `xl network-list` (libxl_nicinfo plus the nic's MAC). */
export interface NicInfo {
  readonly devid: number;
  readonly backendId: number;
  /** Canonical MAC (shared/net/ethernet.ts MacAddr), printed %02hhx:… */
  readonly mac: string;
  readonly state: number;
  readonly evtch: number;
  readonly rrefTx: number;
  readonly rrefRx: number;
  readonly backend: string;
}

/** [u64 x] is x as a bigint, refusing what no unsigned long long can hold. */
export function u64(x: U64): bigint {
  const v = typeof x === 'bigint' ? x : Number.isInteger(x) ? BigInt(x) : Number.NaN;
  if (typeof v !== 'bigint' || v < 0n || v > 0xffff_ffff_ffff_ffffn) {
    throw new InvariantError(`expected an unsigned 64-bit counter, got ${String(x)}`);
  }
  return v;
}
