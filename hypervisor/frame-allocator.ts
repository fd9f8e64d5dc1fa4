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

export class FrameAllocator {
  /** Stack of free mfns; pos[mfn] is its index in the stack or -1. */
  private readonly stack: Int32Array;
  private readonly pos: Int32Array;
  private top = 0;
  private readonly rand: () => number;

  constructor(
    readonly frames: number,
    /** [first, end) of the frames this allocator manages. */
    first: number,
    end: number,
    seed = 1,
  ) {
    this.stack = new Int32Array(frames);
    this.pos = new Int32Array(frames).fill(-1);
    // Pushed high to low so the top of the stack is the lowest frame.
    for (let m = end - 1; m >= first; m--) this.push(m);
    this.rand = xorshift32(seed);
  }

  get freeCount(): number { return this.top; }
  isFree(mfn: Mfn): boolean { return mfn >= 0 && mfn < this.frames && this.pos[mfn] !== -1; }

  private push(m: number): void {
    this.stack[this.top] = m;
    this.pos[m] = this.top++;
  }
  private removeAt(i: number): number {
    const m = this.stack[i] as number;
    const last = this.stack[--this.top] as number;
    this.stack[i] = last;
    this.pos[last] = i;
    this.pos[m] = -1;
    return m;
  }

  /** [allocScattered n] takes n frames from random places. */
  allocScattered(n: number): Result<Mfn[], AllocError> {
    if (n > this.top) return err({ kind: 'out-of-memory', wanted: n, free: this.top });
    const out: Mfn[] = new Array(n);
    for (let k = 0; k < n; k++) out[k] = this.removeAt(this.rand() % this.top) as Mfn;
    return ok(out);
  }

  /** [allocContiguous n align limit] takes the lowest run of n consecutive free frames ending below limit. */
  allocContiguous(n: number, align = 1, limit = this.frames): Result<Mfn, AllocError> {
    if (n > this.top) return err({ kind: 'out-of-memory', wanted: n, free: this.top });
    let run = 0;
    for (let m = 0; m < Math.min(limit, this.frames); m++) {
      if (this.pos[m] === -1 || (run === 0 && m % align !== 0)) { run = 0; continue; }
      if (++run === n) {
        const start = m - n + 1;
        for (let k = start; k <= m; k++) this.removeAt(this.pos[k] as number);
        return ok(start as Mfn);
      }
    }
    return err({ kind: 'no-contiguous-run', wanted: n, free: this.top });
  }

  /** [take mfn] removes one specific free frame (returns false if it was not free). */
  take(mfn: Mfn): boolean {
    const i = this.pos[mfn];
    if (i === undefined || i === -1) return false;
    this.removeAt(i);
    return true;
  }

  free(mfn: Mfn): void {
    if (this.pos[mfn] !== -1) throw new RangeError(`double free of mfn ${mfn}`);
    this.push(mfn);
  }
}
