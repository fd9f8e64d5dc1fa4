/**
 * The machine's free frames. Domain frames are handed out scattered across
 * machine memory (a seeded random pick), so that pfn→mfn translation matters;
 * a P==M domain, and Xen's own tables, get contiguous runs instead.
 */
import type { Mfn } from '../shared/types.ts';
import { type Result, ok, err } from '../shared/result.ts';

export type AllocError = { kind: 'out-of-memory'; wanted: number; free: number } | { kind: 'no-contiguous-run'; wanted: number; free: number };

/** A small deterministic PRNG (xorshift32) so that frame placement replays. */
export function xorshift32(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
}

/**
 * Free frames in two zones, as Xen keeps low memory for DMA (dma_bitsize):
 * scattered allocations take from the high zone and fall back to the low
 * one only when the high zone is exhausted, so contiguous runs below a DMA
 * limit (XENMEM_exchange for swiotlb, P==M domains) stay findable.
 */
export class FrameAllocator {
  /** Per zone, a stack of free mfns; pos[mfn] is its index in its zone's stack or -1. */
  private readonly stacks: [Int32Array, Int32Array];
  private readonly tops: [number, number] = [0, 0];
  private readonly pos: Int32Array;
  private readonly rand: () => number;
  /** Frames below this are the low (DMA) zone. */
  readonly zoneEnd: number;

  constructor(
    readonly frames: number,
    /** [first, end) of the frames this allocator manages. */
    first: number,
    end: number,
    seed = 1,
    /** Frames at the bottom kept for contiguous and DMA allocations (default none). */
    lowZoneFrames = 0,
  ) {
    this.zoneEnd = Math.min(end, first + Math.max(0, lowZoneFrames));
    this.stacks = [new Int32Array(Math.max(0, this.zoneEnd - first)), new Int32Array(Math.max(0, end - this.zoneEnd))];
    this.pos = new Int32Array(frames).fill(-1);
    // Pushed high to low so the top of each stack is its lowest frame.
    for (let m = end - 1; m >= first; m--) this.push(m);
    this.rand = xorshift32(seed);
  }

  get freeCount(): number { return this.tops[0] + this.tops[1]; }
  isFree(mfn: Mfn): boolean { return mfn >= 0 && mfn < this.frames && this.pos[mfn] !== -1; }

  private zone(m: number): 0 | 1 { return m < this.zoneEnd ? 0 : 1; }
  private push(m: number): void {
    const z = this.zone(m);
    this.stacks[z][this.tops[z]] = m;
    this.pos[m] = this.tops[z]++;
  }
  private removeAt(z: 0 | 1, i: number): number {
    const st = this.stacks[z];
    const m = st[i] as number;
    const last = st[--this.tops[z]] as number;
    st[i] = last;
    this.pos[last] = i;
    this.pos[m] = -1;
    return m;
  }

  /** [allocScattered n] takes n frames from random places (the low zone last). */
  allocScattered(n: number): Result<Mfn[], AllocError> {
    if (n > this.freeCount) return err({ kind: 'out-of-memory', wanted: n, free: this.freeCount });
    const out: Mfn[] = new Array(n);
    for (let k = 0; k < n; k++) {
      const z: 0 | 1 = this.tops[1] > 0 ? 1 : 0;
      out[k] = this.removeAt(z, this.rand() % this.tops[z]) as Mfn;
    }
    return ok(out);
  }

  /** [allocContiguous n align limit] takes the lowest run of n consecutive free frames ending below limit. */
  allocContiguous(n: number, align = 1, limit = this.frames): Result<Mfn, AllocError> {
    if (n > this.freeCount) return err({ kind: 'out-of-memory', wanted: n, free: this.freeCount });
    let run = 0;
    for (let m = 0; m < Math.min(limit, this.frames); m++) {
      if (this.pos[m] === -1 || (run === 0 && m % align !== 0)) { run = 0; continue; }
      if (++run === n) {
        const start = m - n + 1;
        for (let k = start; k <= m; k++) this.removeAt(this.zone(k), this.pos[k] as number);
        return ok(start as Mfn);
      }
    }
    return err({ kind: 'no-contiguous-run', wanted: n, free: this.freeCount });
  }

  /** [take mfn] removes one specific free frame (returns false if it was not free). */
  take(mfn: Mfn): boolean {
    const i = this.pos[mfn];
    if (i === undefined || i === -1) return false;
    this.removeAt(this.zone(mfn), i);
    return true;
  }

  free(mfn: Mfn): void {
    if (this.pos[mfn] !== -1) throw new RangeError(`double free of mfn ${mfn}`);
    this.push(mfn);
  }
}
