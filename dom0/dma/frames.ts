/**
 * How a domain's DMA code learns the machine frame behind one of its pfns, in
 * each memory model, and the bookkeeping that makes grant-mapped foreign pages
 * translatable too:
 *
 *  - P==M: a RAM pfn is its own mfn; a foreign page at a ballooned pfn is
 *    whatever Xen returned as dev_bus_addr when it was mapped, noted here as
 *    Arm Linux notes it in its foreign-p2m tree (arch/arm/xen/p2m.c);
 *  - PV: the guest's own pfn→mfn list in its RAM (kernel.frameOf); a grant map
 *    writes the foreign mfn into that list at the ballooned pfn, as Linux's
 *    set_foreign_p2m_mapping does, so the list answers for it like for RAM;
 *  - VP: the guest never holds machine addresses; each lookup is a
 *    dom0vp_op(phystomach) hypercall (the ia64 approach), which sees foreign
 *    mappings in Xen's P2M.
 *
 * Also here: XENMEM_exchange (xen_create_contiguous_region) and a consecutive
 * pfn run allocator, shared by the implementations' coherent allocations.
 */
import { DOM0VP, HYPERVISOR, XENMEM } from '../../shared/abi/xen.ts';
import type { PfnPool } from '../../shared/kernel/page-alloc.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import type { GuestAddr, Pfn } from '../../shared/types.ts';
import type { DmaError } from './dma-api.ts';

/** The value of an own-list entry (and of our notes) that names no frame. */
export const INVALID_MFN = 0xffffffff;

/** [FrameSource] answers pfn → mfn for one memory model. */
export interface FrameSource {
  /** [mfn pfn] is the machine frame behind pfn, or -1 when none is known. */
  mfn(pfn: number): number;
  /** True when every lookup is a hypercall (xlate): the caller counts it. */
  readonly hypercallPerLookup: boolean;
}

/** Foreign mappings noted by P==M and VP domains (PV domains write their own list instead). */
const foreignNotes = new WeakMap<DomainKernel, Map<number, number>>();

function notes(k: DomainKernel): Map<number, number> {
  let m = foreignNotes.get(k);
  if (m === undefined) { m = new Map(); foreignNotes.set(k, m); }
  return m;
}

function ownListAddr(k: DomainKernel, pfn: number): GuestAddr {
  return (k.boot.p2mListPfn * k.pageSize + pfn * 4) as GuestAddr;
}

/**
 * [setForeignP2mMapping k pfn mfn] records that a grant mapping of machine
 * frame mfn now sits at k's ballooned pfn. Call it after every successful
 * GNTTABOP_map_grant_ref whose page may be handed to a device.
 */
export function setForeignP2mMapping(k: DomainKernel, pfn: Pfn, mfn: number): void {
  if (k.boot.model === 'p2m') {
    if (!(pfn >= 0 && pfn < k.boot.p2mEntries)) throw new RangeError(`pfn ${pfn} is outside the P2M list`);
    k.mem.setU32(ownListAddr(k, pfn), mfn);
  } else {
    notes(k).set(pfn, mfn);
  }
}

/** [clearForeignP2mMapping k pfn] forgets the foreign frame at pfn (after the grant unmap). */
export function clearForeignP2mMapping(k: DomainKernel, pfn: Pfn): void {
  if (k.boot.model === 'p2m') {
    if (pfn >= 0 && pfn < k.boot.p2mEntries) k.mem.setU32(ownListAddr(k, pfn), INVALID_MFN);
  } else {
    notes(k).delete(pfn);
  }
}

/** P==M: RAM pfns are mfns; foreign pfns are what was noted at map time. */
export function pmFrames(k: DomainKernel): FrameSource {
  const lo = k.boot.ramBase;
  const hi = k.boot.ramBase + k.boot.ramPages;
  const foreign = notes(k);
  return {
    hypercallPerLookup: false,
    mfn(pfn: number): number {
      if (pfn >= lo && pfn < hi) return pfn;
      return foreign.get(pfn) ?? -1;
    },
  };
}

/** PV: the guest's own pfn→mfn list (one checked load from its RAM per page). */
export function pvFrames(k: DomainKernel): FrameSource {
  const entries = k.boot.p2mEntries;
  return {
    hypercallPerLookup: false,
    mfn(pfn: number): number {
      if (!(pfn >= 0 && pfn < entries)) return -1;
      const m = k.frameOf(pfn as Pfn);
      return m === INVALID_MFN ? -1 : m;
    },
  };
}

/** VP: ask Xen, one dom0vp_op(phystomach) per page. */
export function xlateFrames(k: DomainKernel): FrameSource {
  return {
    hypercallPerLookup: true,
    mfn(pfn: number): number {
      const [r, mfn] = k.hc.call(HYPERVISOR.dom0vp_op, DOM0VP.phystomach, pfn);
      return r < 0 ? -1 : mfn;
    },
  };
}

/** The model's own way to learn machine frames (what swiotlb decides with). */
export function modelFrames(k: DomainKernel): FrameSource {
  switch (k.boot.model) {
    case 'pm': return pmFrames(k);
    case 'p2m': return pvFrames(k);
    case 'vp': return xlateFrames(k);
  }
}

/**
 * [createContiguousRegion k pfns limitBits] is XENMEM_exchange: Xen backs pfns
 * (in order) with one machine-contiguous run ending below 2^limitBits,
 * contents preserved. Returns the first machine frame when Xen tells it (PV
 * callers), or -1 (auto-translated callers, who must ask by phystomach).
 */
export function createContiguousRegion(k: DomainKernel, pfns: readonly Pfn[], limitBits: number): Result<number, DmaError> {
  const n = pfns.length;
  if (n * 8 > k.hc.bufBytes) return err({ kind: 'too-large', bytes: n * k.pageSize, max: Math.floor(k.hc.bufBytes / 8) * k.pageSize });
  const buf = k.hc.buf;
  for (let i = 0; i < n; i++) buf.setU32(i * 4, pfns[i] as number);
  const [r] = k.hc.call(HYPERVISOR.memory_op, XENMEM.exchange, 0, n, Math.min(64, Math.max(12, limitBits)));
  if (r < 0) return err({ kind: 'hypercall-failed', op: 'XENMEM_exchange', errno: r, pfn: pfns[0] as number });
  const first = buf.getU32(n * 4);
  return ok(first === INVALID_MFN ? -1 : first);
}

/**
 * [allocRun pool n] takes n consecutive pfns from pool (what a P==M domain
 * needs for a bus-contiguous buffer), or undefined. Pages it looked at but did
 * not keep go back to the pool.
 */
export function allocRun(pool: PfnPool, n: number): Pfn[] | undefined {
  if (n <= 0 || n > pool.available) return undefined;
  const budget = Math.min(pool.available, n * 4 + 256);
  const taken: number[] = [];
  for (let i = 0; i < budget; i++) {
    const p = pool.tryAlloc();
    if (p === undefined) break;
    taken.push(p);
  }
  const sorted = [...taken].sort((a, b) => a - b);
  let start = -1;
  for (let i = 0, run = 0; i < sorted.length; i++) {
    run = i > 0 && sorted[i] === (sorted[i - 1] as number) + 1 ? run + 1 : 1;
    if (run === n) { start = (sorted[i] as number) - n + 1; break; }
  }
  const keep = new Set<number>();
  if (start >= 0) for (let i = 0; i < n; i++) keep.add(start + i);
  // Back in descending order, so the pool (a stack) hands them out low first again.
  for (let i = sorted.length - 1; i >= 0; i--) if (!keep.has(sorted[i] as number)) pool.release(sorted[i] as Pfn);
  if (start < 0) return undefined;
  return Array.from({ length: n }, (_, i) => (start + i) as Pfn);
}

/** [allocPages pool n] takes n pfns (any), or undefined with nothing taken. */
export function allocPages(pool: PfnPool, n: number): Pfn[] | undefined {
  if (n <= 0 || n > pool.available) return undefined;
  const out: Pfn[] = [];
  for (let i = 0; i < n; i++) out.push(pool.alloc());
  return out;
}
