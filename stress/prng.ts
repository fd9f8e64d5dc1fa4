/**
 * The stress tests' only source of randomness: a seeded sfc32 generator
 * (Chris Doty-Humphrey's Small Fast Counting generator, 128 bits of state),
 * seeded through splitmix32 so that nearby seeds give unrelated streams.
 *
 * Nothing in stress/ may call Math.random: every choice (which domain runs
 * next, which fault fires, what a hostile guest writes) comes from a Prng
 * derived from the run's seed, so a seed names one run exactly. `fork(label)`
 * gives an independent stream per concern (scheduler, injectors, each
 * workload), so adding a draw in one place does not shift every other
 * decision of the run.
 */

/** [splitmix32 x] is one step of splitmix32: a well-mixed u32 from any u32. */
function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** [hashLabel s] is FNV-1a of s: how a fork's label perturbs the child's seed. */
function hashLabel(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h >>> 0;
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  /** Draws taken so far (for traces and tests). */
  draws = 0;

  constructor(readonly seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) throw new RangeError(`a seed is a u32, got ${seed}`);
    let s = seed >>> 0;
    s = splitmix32(s); this.a = s;
    s = splitmix32(s); this.b = s;
    s = splitmix32(s); this.c = s;
    s = splitmix32(s); this.d = s | 1;
    for (let i = 0; i < 12; i++) this.next(); // warm up: sfc32's first outputs are correlated with the seed
    this.draws = 0;
  }

  /** [next] is the next u32. */
  next(): number {
    this.draws++;
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** [float] is uniform in [0, 1). */
  float(): number { return this.next() / 0x1_0000_0000; }

  /** [int n] is uniform in 0..n-1 (n ≥ 1). */
  int(n: number): number {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`int(n) needs a positive integer, got ${n}`);
    return Math.floor(this.float() * n);
  }

  /** [range lo hi] is uniform in lo..hi inclusive. */
  range(lo: number, hi: number): number { return lo + this.int(hi - lo + 1); }

  /** [chance p] is true with probability p. */
  chance(p: number): boolean { return this.float() < p; }

  /** [pick xs] is a uniformly chosen element of a non-empty array. */
  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new RangeError('pick from an empty array');
    return xs[this.int(xs.length)] as T;
  }

  /** [weighted ws] is an index chosen with probability proportional to ws[i] (all ≥ 0, some > 0). */
  weighted(ws: readonly number[]): number {
    let total = 0;
    for (const w of ws) total += w;
    if (!(total > 0)) throw new RangeError('weighted choice needs a positive total weight');
    let x = this.float() * total;
    for (let i = 0; i < ws.length; i++) {
      x -= ws[i] as number;
      if (x < 0) return i;
    }
    return ws.length - 1;
  }

  /** [bytes n] is n random bytes (hostile payloads). */
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.next();
      for (let k = 0; k < 4 && i + k < n; k++) b[i + k] = (v >>> (8 * k)) & 0xff;
    }
    return b;
  }

  /**
   * [fork label] is an independent stream named by label, derived from this
   * stream's seed (not from its position), so forks are stable whatever was
   * drawn before them.
   */
  fork(label: string): Prng {
    return new Prng(splitmix32((this.seed ^ hashLabel(label)) >>> 0));
  }
}

/**
 * [parseSeedRange s] reads "A..B" (inclusive) or a single "N" into a list of
 * seeds; anything else is a RangeError naming the text.
 */
export function parseSeedRange(s: string): number[] {
  const m = /^(\d+)(?:\.\.(\d+))?$/.exec(s.trim());
  if (m === null) throw new RangeError(`expected a seed N or a range A..B, got '${s}'`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (!(a <= 0xffff_ffff && b <= 0xffff_ffff)) throw new RangeError(`seeds are u32s, got '${s}'`);
  if (b < a) throw new RangeError(`an empty seed range '${s}'`);
  if (b - a >= 100_000) throw new RangeError(`at most 100000 seeds at once, got '${s}'`);
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}
