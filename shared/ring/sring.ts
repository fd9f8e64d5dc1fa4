/**
 * The shared ring page (`struct __name##_sring`): its header indices and the
 * byte offset of each slot, over a MemRegion of 1..16 pages.
 *
 * Every index is loaded and stored through MemRegion atomics, never plain
 * reads: an `atomicStoreU32` is our release (`xen_wmb()` before the store) and
 * an `atomicLoadU32` our acquire (`xen_rmb()` after the load). JavaScript
 * atomics are also sequentially consistent with each other, so a store of our
 * producer index followed by a load of the peer's event index is ring.h's
 * `xen_mb()` between them. Which side must see what is said at each call site
 * in front-ring.ts and back-ring.ts.
 *
 * The peer may write anything into the shared page at any time; nothing here
 * trusts a loaded value beyond it being a u32.
 */
import { SRING, SRING_INIT_EVENT, XENBUS_MAX_RING_GRANTS, ringSize } from '../abi/ring.ts';
import { invariant } from '../invariant.ts';
import { ok } from '../result.ts';
import { hasWordCopies, type MemRegion, type WordCopyRegion } from '../memory/region.ts';
import { idxAdd, type RingIdx } from './u32.ts';

/**
 * A hostile (or broken) peer published an impossible producer index. The
 * caller must stop processing the ring: Linux blkback halts the ring ("Frontend
 * provided bogus ring requests"), netback disables the vif ("Impossible number
 * of requests"). The values are as read, for the log line.
 */
export type RingError =
  | {
      readonly kind: 'req-prod-overflow';
      readonly reqProd: RingIdx;
      readonly reqCons: RingIdx;
      readonly rspProdPvt: RingIdx;
      readonly size: number;
    }
  | {
      readonly kind: 'rsp-prod-overflow';
      readonly rspProd: RingIdx;
      readonly rspCons: RingIdx;
      /** The req_prod the frontend published: no response can lie beyond it. */
      readonly reqProd: RingIdx;
      readonly size: number;
    };

/**
 * Shared, frozen success Results for counts and booleans: the per-batch
 * queries (RING_HAS_UNCONSUMED_*, RING_FINAL_CHECK_*) answer without
 * allocating. They are immutable, so handing the same one out is safe.
 */
const OK_COUNTS: { readonly ok: true; readonly value: number }[] = [];
export function okCount(n: number): { readonly ok: true; readonly value: number } {
  let r = OK_COUNTS[n];
  if (r === undefined) {
    // Counts are at most a ring's size (≤ 4096 entries); fill up to n so the array stays packed.
    for (let k = OK_COUNTS.length; k <= n; k++) OK_COUNTS.push(Object.freeze(ok(k)));
    r = OK_COUNTS[n] as { readonly ok: true; readonly value: number };
  }
  return r;
}
export const OK_TRUE: { readonly ok: true; readonly value: boolean } = Object.freeze(ok(true));
export const OK_FALSE: { readonly ok: true; readonly value: boolean } = Object.freeze(ok(false));

/** The largest region a ring may span when its page count is unknown: 16 of our largest pages. */
const MAX_RING_BYTES = XENBUS_MAX_RING_GRANTS * 16384;

/**
 * [sharedRingInit region start] is SHARED_RING_INIT: producers = start, both
 * event indices = start + 1, pvt and __pad zeroed. Xen always starts at 0;
 * start ≠ 0 lets tests begin near 2^32 (with FRONT_/BACK_RING_ATTACH at start).
 * Only the frontend initialises a ring, before granting it to the backend.
 */
export function sharedRingInit(region: MemRegion, start: RingIdx = 0 as RingIdx): void {
  invariant(region.byteLength >= SRING.SIZE, `a shared ring needs ${SRING.SIZE} bytes, region has ${region.byteLength}`);
  region.fill(SRING.pvt, SRING.PVT_SIZE + SRING.PAD_SIZE, 0);
  const ev = idxAdd(start, SRING_INIT_EVENT);
  region.atomicStoreU32(SRING.req_event, ev);
  region.atomicStoreU32(SRING.rsp_event, ev);
  region.atomicStoreU32(SRING.rsp_prod, start);
  // Release: whoever later acquires req_prod sees the zeroed header and events.
  region.atomicStoreU32(SRING.req_prod, start);
}

/**
 * [SharedRing region entryBytes] is the shared page seen by one end: the
 * ring's size in entries (the fitting count rounded down to a power of two)
 * and typed access to the four header indices.
 */
export class SharedRing {
  /** [size] is RING_SIZE: the number of slots, a power of two. */
  readonly size: number;
  private readonly mask: number;
  /** The region again when it has word copies (slot copies then skip a byte-view lookup), else null. */
  private readonly wordRegion: WordCopyRegion | null;

  constructor(
    readonly region: MemRegion,
    readonly entryBytes: number,
  ) {
    invariant(Number.isInteger(entryBytes) && entryBytes > 0, `ring entry size must be a positive integer, got ${entryBytes}`);
    // A PagedRegion knows its pages: 1..16 ring grants (ring-page-order 0..4).
    const pages = (region as { readonly pageCount?: number }).pageCount ?? 1;
    invariant(
      region.byteLength >= SRING.SIZE + entryBytes && region.byteLength <= MAX_RING_BYTES && pages >= 1 && pages <= XENBUS_MAX_RING_GRANTS,
      `a ring region must hold the header and one entry and span at most ${XENBUS_MAX_RING_GRANTS} pages, got ${region.byteLength} bytes in ${pages} pages`,
    );
    this.size = ringSize(region.byteLength, entryBytes);
    this.mask = this.size - 1;
    // Slots start 4-aligned (64 + a multiple of entryBytes, itself a multiple of 4 for every ring).
    this.wordRegion = hasWordCopies(region) && entryBytes % 4 === 0 ? region : null;
  }

  /** [slotOffset i] is the region offset of the entry for index i (RING_GET_REQUEST/RESPONSE). */
  slotOffset(i: RingIdx): number {
    return SRING.ring + (i & this.mask) * this.entryBytes;
  }

  /**
   * [copySlotOut i slot] copies the entry for index i, slot.size
   * bytes, into the private slot in one piece: the one read of those shared
   * bytes (RING_COPY_REQUEST / RING_COPY_RESPONSE).
   */
  copySlotOut(i: RingIdx, slot: PrivateSlot): void {
    const off = SRING.ring + (i & this.mask) * this.entryBytes;
    const size = slot.size;
    const wr = this.wordRegion;
    if (wr !== null && (size & 3) === 0) wr.copyOutWords(off, slot.words, 0, size >>> 2);
    else this.region.copyOut(off, slot.bytes);
  }

  /**
   * [copyEntryOut i slot codec] is RING_COPY_* for a flat codec: the first
   * codec.PREFIX_WORDS words of entry i into the private slot, then only the
   * rest of the entry, as long as the *private* prefix says it is
   * (codec.entryWords). Each shared byte is read once, and the length is not
   * re-read from the slot (XSA-155).
   */
  copyEntryOut(i: RingIdx, slot: PrivateSlot, codec: { readonly PREFIX_WORDS: number; entryWords(w: Int32Array): number }): void {
    const off = SRING.ring + (i & this.mask) * this.entryBytes;
    const pre = codec.PREFIX_WORDS;
    const wr = this.wordRegion;
    if (wr !== null) wr.copyOutWords(off, slot.words, 0, pre);
    else this.region.copyOut(off, slot.bytes, 0, pre * 4);
    const n = codec.entryWords(slot.words);
    const end = n <= slot.wordCount ? n : slot.wordCount;
    if (end > pre) {
      if (wr !== null) wr.copyOutWords(off + pre * 4, slot.words, pre, end - pre);
      else this.region.copyOut(off + pre * 4, slot.bytes, pre * 4, (end - pre) * 4);
    }
  }

  /** [copyWordsIn i slot words] copies the first `words` words of the private slot into entry i. */
  copyWordsIn(i: RingIdx, slot: PrivateSlot, words: number): void {
    const off = SRING.ring + (i & this.mask) * this.entryBytes;
    const wr = this.wordRegion;
    if (wr !== null) wr.copyInWords(off, slot.words, 0, words);
    else this.region.copyIn(off, slot.bytes, 0, words * 4);
  }

  /** [copySlotIn i slot] copies the private slot (all of it) into the entry for index i, in one piece. */
  copySlotIn(i: RingIdx, slot: PrivateSlot): void {
    const size = slot.size;
    const off = SRING.ring + (i & this.mask) * this.entryBytes;
    const wr = this.wordRegion;
    if (wr !== null && (size & 3) === 0) wr.copyInWords(off, slot.words, 0, size >>> 2);
    else this.region.copyIn(off, slot.bytes, 0, size);
  }

  /** [slotOf i] is the slot number of index i. */
  slotOf(i: RingIdx): number {
    return (i & this.mask) >>> 0;
  }

  loadReqProd(): RingIdx { return this.region.atomicLoadU32(SRING.req_prod) as RingIdx; }
  storeReqProd(v: RingIdx): void { this.region.atomicStoreU32(SRING.req_prod, v); }
  loadReqEvent(): RingIdx { return this.region.atomicLoadU32(SRING.req_event) as RingIdx; }
  storeReqEvent(v: RingIdx): void { this.region.atomicStoreU32(SRING.req_event, v); }
  loadRspProd(): RingIdx { return this.region.atomicLoadU32(SRING.rsp_prod) as RingIdx; }
  storeRspProd(v: RingIdx): void { this.region.atomicStoreU32(SRING.rsp_prod, v); }
  loadRspEvent(): RingIdx { return this.region.atomicLoadU32(SRING.rsp_event) as RingIdx; }
  storeRspEvent(v: RingIdx): void { this.region.atomicStoreU32(SRING.rsp_event, v); }
}

/**
 * [PrivateSlot] is one private copy of a ring entry: `bytes` (exactly the
 * entry's size) and, over the same memory, `words` (little-endian 32-bit
 * words, for the flat codecs). Only this end can reach it; the peer never
 * sees it, so what is validated here cannot change under us (XSA-155).
 */
export interface PrivateSlot {
  readonly bytes: Uint8Array;
  readonly words: Int32Array;
  /** bytes.length and words.length, as plain numbers for the data path. */
  readonly size: number;
  readonly wordCount: number;
}

/**
 * [PrivateSlots maxSize requestSize responseSize] hands out one reused
 * PrivateSlot per entry size (1..maxSize bytes); the ring's request and
 * response sizes are found without a lookup.
 */
export class PrivateSlots {
  private readonly bySize: (PrivateSlot | undefined)[];
  private readonly req: PrivateSlot;
  private readonly rsp: PrivateSlot;

  constructor(maxSize: number, requestSize: number, responseSize: number) {
    this.bySize = new Array<PrivateSlot | undefined>(maxSize + 1).fill(undefined);
    this.req = this.make(requestSize);
    this.rsp = this.make(responseSize);
  }

  /** [get size] is the slot buffer for entries of size bytes (size ≤ maxSize, checked by the caller). */
  get(size: number): PrivateSlot {
    if (size === this.req.size) return this.req;
    if (size === this.rsp.size) return this.rsp;
    return this.make(size);
  }

  private make(size: number): PrivateSlot {
    let s = this.bySize[size];
    if (s === undefined) {
      const buf = new ArrayBuffer((size + 3) & ~3);
      s = { bytes: new Uint8Array(buf, 0, size), words: new Int32Array(buf), size, wordCount: buf.byteLength / 4 };
      this.bySize[size] = s;
    }
    return s;
  }
}
