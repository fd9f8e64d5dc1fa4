/**
 * Free-running ring index arithmetic (ring.h's RING_IDX, an unsigned int).
 *
 * Ring counters are never reset and wrap at 2^32. Every comparison is made on
 * unsigned *differences*, so wrap-around needs no special case; in JavaScript
 * that means every result goes through `>>> 0`. Ring indices change only
 * through these functions.
 */
import type { Brand } from '../types.ts';

/** A free-running u32 ring counter (req_prod, rsp_cons, ...). */
export type RingIdx = Brand<number, 'RingIdx'>;

export const U32_MOD = 0x1_0000_0000;

/** [asRingIdx n] checks that n is a u32 and brands it (wire values, tests). */
export function asRingIdx(n: number): RingIdx {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new RangeError(`ring index must be a u32, got ${n}`);
  return n as RingIdx;
}

/** [u32 n] is n reduced modulo 2^32 (n may be any integer-valued number up to ±2^53). */
export function u32(n: number): number {
  return n >>> 0;
}

/** [idxAdd i n] is the index n entries after i, modulo 2^32. */
export function idxAdd(i: RingIdx, n: number): RingIdx {
  return ((i + n) >>> 0) as RingIdx;
}

/** [idxSub a b] is the unsigned distance from b forward to a, (a - b) mod 2^32. */
export function idxSub(a: RingIdx, b: RingIdx): number {
  return (a - b) >>> 0;
}

/** [idxSlot i size] is the slot of index i in a ring of size (a power of two) entries. */
export function idxSlot(i: RingIdx, size: number): number {
  return (i & (size - 1)) >>> 0;
}

/**
 * [notifyNeeded newIdx oldIdx event] is ring.h's notify rule for
 * RING_PUSH_*_AND_CHECK_NOTIFY: notify iff (new − event) < (new − old) in u32,
 * i.e. iff the peer's event index lies in (old, new].
 */
export function notifyNeeded(newIdx: RingIdx, oldIdx: RingIdx, event: RingIdx): boolean {
  return ((newIdx - event) >>> 0) < ((newIdx - oldIdx) >>> 0);
}
