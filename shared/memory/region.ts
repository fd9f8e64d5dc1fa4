/**
 * MemRegion: a byte range that may span several frames which are *not*
 * contiguous in machine memory (a multi-page ring, a grant-mapped buffer).
 * Rings, the XenStore byte rings and device descriptor queues are written
 * against this interface only, so they work the same over a domain's checked
 * view (DomainMemory.region) and over the hypervisor's machine view.
 *
 * Each access translates its page through the region's translate function on
 * every call — no cached translation survives an unmap, so a region over a
 * page that has since been unmapped faults instead of touching a stale frame.
 */
import type { MachineAddr } from '../types.ts';
import type { MachineMemory, WaitResult } from './machine-memory.ts';

export interface MemRegion {
  readonly byteLength: number;
  getU8(off: number): number;
  setU8(off: number, v: number): void;
  getU16(off: number): number;
  setU16(off: number, v: number): void;
  getI16(off: number): number;
  setI16(off: number, v: number): void;
  getU32(off: number): number;
  setU32(off: number, v: number): void;
  getU64(off: number): bigint;
  setU64(off: number, v: bigint): void;
  /** Acquire load of an aligned 32-bit word (returned as unsigned). */
  atomicLoadU32(off: number): number;
  /** Release store of an aligned 32-bit word. */
  atomicStoreU32(off: number, v: number): void;
  /** Full-barrier add; returns the previous value (unsigned). */
  atomicAddU32(off: number, v: number): number;
  /** Full-barrier compare-exchange; returns the previous value (unsigned). */
  atomicCmpxchgU32(off: number, expected: number, replacement: number): number;
  /** Copies len bytes at off into `into` (one memcpy per page touched). */
  copyOut(off: number, into: Uint8Array, intoOff?: number, len?: number): void;
  /** Copies len bytes of `from` to off. */
  copyIn(off: number, from: Uint8Array, fromOff?: number, len?: number): void;
  /**
   * Optional fast path for small, 4-aligned copies (ring slots): copies
   * `words` 32-bit words at off into into[intoWord ..]. `into` is private
   * memory. A region without it is used through copyOut (see hasWordCopies).
   */
  copyOutWords?(off: number, into: Int32Array, intoWord: number, words: number): void;
  /** Optional: copies from[fromWord .. fromWord + words) to the 4-aligned off. */
  copyInWords?(off: number, from: Int32Array, fromWord: number, words: number): void;

  fill(off: number, len: number, byte?: number): void;
  /** Sleep while the aligned word at off equals expected. */
  wait32(off: number, expected: number, timeoutMs: number): WaitResult;
  notify32(off: number, count?: number): number;
}

/** A MemRegion that has the optional word copies. */
export type WordCopyRegion = MemRegion & Required<Pick<MemRegion, 'copyOutWords' | 'copyInWords'>>;

/** [hasWordCopies r] tells whether r offers copyOutWords and copyInWords. */
export function hasWordCopies(r: MemRegion): r is WordCopyRegion {
  return typeof r.copyOutWords === 'function' && typeof r.copyInWords === 'function';
}

/**
 * [PagedRegion mem pageCount translate contiguousBase] is a region of
 * pageCount pages whose page i lives at translate(i, write). translate throws
 * (e.g. MemoryFault) when the page may not be accessed that way.
 *
 * contiguousBase is for the machine's own view (machineRegion: the hypervisor,
 * tests, benchmarks), where page i is simply at contiguousBase + i pages and
 * nothing can be unmapped: translate is then not called at all.
 */
export class PagedRegion implements MemRegion {
  readonly byteLength: number;
  private readonly shift: number;
  private readonly mask: number;
  /** Machine address of page 0 when the pages are contiguous machine frames, else -1. */
  private readonly base: number;

  constructor(
    private readonly mem: MachineMemory,
    readonly pageCount: number,
    private readonly translate: (page: number, write: boolean) => MachineAddr,
    contiguousBase?: MachineAddr,
  ) {
    this.byteLength = pageCount * mem.pageSize;
    this.shift = mem.pageShift;
    this.mask = mem.pageSize - 1;
    this.base = contiguousBase ?? -1;
  }

  /** Machine address of page `page` (in range), through translate unless contiguous. */
  private pageAddr(page: number, write: boolean): number {
    return this.base >= 0 ? this.base + page * (this.mask + 1) : (this.translate(page, write) as number);
  }

  /** Machine address of [off, off+len) if it lies within one page. */
  private at(off: number, len: number, write: boolean): MachineAddr {
    if (!(off >= 0 && off + len <= this.byteLength)) {
      throw new RangeError(`region access ${off}+${len} is outside the ${this.byteLength}-byte region`);
    }
    const page = off >>> this.shift;
    if (((off + len - 1) >>> this.shift) !== page) throw new RangeError(`scalar access at ${off}+${len} straddles a page`);
    return (this.pageAddr(page, write) + (off & this.mask)) as MachineAddr;
  }

  getU8(off: number): number { return this.mem.getU8(this.at(off, 1, false)); }
  setU8(off: number, v: number): void { this.mem.setU8(this.at(off, 1, true), v); }
  getU16(off: number): number { return this.mem.getU16(this.at(off, 2, false)); }
  setU16(off: number, v: number): void { this.mem.setU16(this.at(off, 2, true), v); }
  getI16(off: number): number { return this.mem.getI16(this.at(off, 2, false)); }
  setI16(off: number, v: number): void { this.mem.setI16(this.at(off, 2, true), v); }
  getU32(off: number): number { return this.mem.getU32(this.at(off, 4, false)); }
  setU32(off: number, v: number): void { this.mem.setU32(this.at(off, 4, true), v); }
  getU64(off: number): bigint { return this.mem.getU64(this.at(off, 8, false)); }
  setU64(off: number, v: bigint): void { this.mem.setU64(this.at(off, 8, true), v); }
  atomicLoadU32(off: number): number {
    // An aligned word never straddles a page: the common case inline (ring indices).
    if (off >= 0 && (off & 3) === 0 && off + 4 <= this.byteLength) {
      const mask = this.mask;
      const base = this.base >= 0 ? this.base + (off & ~mask) : (this.translate(off >>> this.shift, false) as number);
      return this.mem.atomicLoad32((base + (off & mask)) as MachineAddr) >>> 0;
    }
    return this.mem.atomicLoad32(this.at(off, 4, false)) >>> 0;
  }
  atomicStoreU32(off: number, v: number): void {
    if (off >= 0 && (off & 3) === 0 && off + 4 <= this.byteLength) {
      const mask = this.mask;
      const base = this.base >= 0 ? this.base + (off & ~mask) : (this.translate(off >>> this.shift, true) as number);
      this.mem.atomicStore32((base + (off & mask)) as MachineAddr, v);
      return;
    }
    this.mem.atomicStore32(this.at(off, 4, true), v);
  }
  atomicAddU32(off: number, v: number): number { return this.mem.atomicAdd32(this.at(off, 4, true), v) >>> 0; }
  atomicCmpxchgU32(off: number, expected: number, replacement: number): number {
    return this.mem.atomicCmpxchg32(this.at(off, 4, true), expected, replacement) >>> 0;
  }
  wait32(off: number, expected: number, timeoutMs: number): WaitResult {
    return this.mem.wait32(this.at(off, 4, false), expected, timeoutMs);
  }
  notify32(off: number, count?: number): number { return this.mem.notify32(this.at(off, 4, false), count); }

  // Bulk ops go page by page, translating each page once. A range within one
  // page (a ring slot, a header) is one pass: one translate, one machine
  // copy. No closure or view is made per call: this is the rings' data path.
  private checkRange(off: number, len: number): void {
    if (!(off >= 0 && len >= 0 && off + len <= this.byteLength)) {
      throw new RangeError(`region range ${off}+${len} is outside the ${this.byteLength}-byte region`);
    }
  }
  copyOut(off: number, into: Uint8Array, intoOff = 0, len = into.length - intoOff): void {
    this.checkRange(off, len);
    const mask = this.mask;
    if (len === 0) return;
    if ((off & mask) + len <= mask + 1) {
      // Within one page: one translate, one copy.
      this.mem.copyOut((this.pageAddr(off >>> this.shift, false) + (off & mask)) as MachineAddr, into, intoOff, len);
      return;
    }
    let done = 0;
    while (done < len) {
      const o = off + done;
      const room = mask + 1 - (o & mask);
      const n = len - done < room ? len - done : room;
      const base = this.pageAddr(o >>> this.shift, false);
      this.mem.copyOut((base + (o & mask)) as MachineAddr, into, intoOff + done, n);
      done += n;
    }
  }
  copyIn(off: number, from: Uint8Array, fromOff = 0, len = from.length - fromOff): void {
    this.checkRange(off, len);
    const mask = this.mask;
    if (len === 0) return;
    if ((off & mask) + len <= mask + 1) {
      // Within one page: one translate, one copy.
      this.mem.copyIn((this.pageAddr(off >>> this.shift, true) + (off & mask)) as MachineAddr, from, fromOff, len);
      return;
    }
    let done = 0;
    while (done < len) {
      const o = off + done;
      const room = mask + 1 - (o & mask);
      const n = len - done < room ? len - done : room;
      const base = this.pageAddr(o >>> this.shift, true);
      this.mem.copyIn((base + (o & mask)) as MachineAddr, from, fromOff + done, n);
      done += n;
    }
  }
  copyOutWords(off: number, into: Int32Array, intoWord: number, words: number): void {
    const len = words * 4;
    const mask = this.mask;
    if (off >= 0 && len > 0 && off + len <= this.byteLength && (off & mask) + len <= mask + 1) {
      // Within one page (the common case, written flat for the JIT): one translate, one copy.
      const base = this.base >= 0 ? this.base + (off & ~mask) : (this.translate(off >>> this.shift, false) as number);
      this.mem.copyOutWords((base + (off & mask)) as MachineAddr, into, intoWord, words);
      return;
    }
    this.checkRange(off, len);
    // Straddles pages (a 112-byte blkif slot in a multi-page ring may): page by
    // page; pages are 4 KiB multiples, so a 4-aligned range splits on words.
    let done = 0;
    while (done < len) {
      const o = off + done;
      const room = mask + 1 - (o & mask);
      const n = len - done < room ? len - done : room;
      const base = this.pageAddr(o >>> this.shift, false);
      this.mem.copyOutWords((base + (o & mask)) as MachineAddr, into, intoWord + done / 4, n / 4);
      done += n;
    }
  }
  copyInWords(off: number, from: Int32Array, fromWord: number, words: number): void {
    const len = words * 4;
    const mask = this.mask;
    if (off >= 0 && len > 0 && off + len <= this.byteLength && (off & mask) + len <= mask + 1) {
      const base = this.base >= 0 ? this.base + (off & ~mask) : (this.translate(off >>> this.shift, true) as number);
      this.mem.copyInWords((base + (off & mask)) as MachineAddr, from, fromWord, words);
      return;
    }
    this.checkRange(off, len);
    let done = 0;
    while (done < len) {
      const o = off + done;
      const room = mask + 1 - (o & mask);
      const n = len - done < room ? len - done : room;
      const base = this.pageAddr(o >>> this.shift, true);
      this.mem.copyInWords((base + (o & mask)) as MachineAddr, from, fromWord + done / 4, n / 4);
      done += n;
    }
  }
  fill(off: number, len: number, byte = 0): void {
    this.checkRange(off, len);
    const mask = this.mask;
    let done = 0;
    while (done < len) {
      const o = off + done;
      const room = mask + 1 - (o & mask);
      const n = len - done < room ? len - done : room;
      const base = this.pageAddr(o >>> this.shift, true);
      this.mem.fill((base + (o & mask)) as MachineAddr, n, byte);
      done += n;
    }
  }
}

/** [machineRegion mem base len] is a contiguous machine-memory region (hypervisor and tests). */
export function machineRegion(mem: MachineMemory, base: MachineAddr, pages: number): PagedRegion {
  return new PagedRegion(mem, pages, (page) => (base + page * mem.pageSize) as MachineAddr, base);
}
