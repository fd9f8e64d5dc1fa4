/**
 * The P2M entry format: our "hardware page-table entry" for one guest frame.
 *
 * Each domain has a P2M table in Xen-owned machine memory, one 32-bit word per
 * pfn, written only by the hypervisor and read (atomically) by the domain's
 * DomainMemory accessor, as an MMU walks page tables. The same table backs all
 * three memory models: identity for `pm` (P==M), scattered for `vp`, and for
 * `p2m` (PV) it is the hypervisor's record of what the guest may map — the
 * guest's own pfn→mfn list, which the PV DMA API reads, lives in guest memory.
 *
 *   bits 0..27  mfn (up to 2^28 frames: 1 TiB of 4 KiB pages)
 *   bit  28     PRESENT
 *   bit  29     WRITABLE
 *   bit  30     FOREIGN   (a grant mapping of another domain's frame)
 *   bit  31     reserved (0)
 */
export const P2M = {
  ENTRY_BYTES: 4,
  MFN_MASK: 0x0fff_ffff,
  PRESENT: 1 << 28,
  WRITABLE: 1 << 29,
  FOREIGN: 1 << 30,
  /** The entry of an unpopulated (or ballooned-out) pfn. */
  EMPTY: 0,
} as const;

export interface P2mEntry {
  readonly mfn: number;
  readonly present: boolean;
  readonly writable: boolean;
  readonly foreign: boolean;
}

export function encodeP2m(mfn: number, writable: boolean, foreign: boolean): number {
  if (!Number.isInteger(mfn) || mfn < 0 || mfn > P2M.MFN_MASK) throw new RangeError(`mfn ${mfn} does not fit a P2M entry`);
  return (mfn | P2M.PRESENT | (writable ? P2M.WRITABLE : 0) | (foreign ? P2M.FOREIGN : 0)) | 0;
}

export function decodeP2m(word: number): P2mEntry {
  return {
    mfn: word & P2M.MFN_MASK,
    present: (word & P2M.PRESENT) !== 0,
    writable: (word & P2M.WRITABLE) !== 0,
    foreign: (word & P2M.FOREIGN) !== 0,
  };
}
