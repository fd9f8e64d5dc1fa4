/**
 * The scheduler's trace: every decision and observable effect of a
 * deterministic run as one line each ("#1234 d2 task:ring-push"). All lines
 * go into a running 64-bit hash (two FNV-1a lanes), so two runs of one seed
 * can be compared by one string; only the last `depth` lines are kept, for the
 * failure report that reproduces a run.
 *
 * Lines must be built only from deterministic values: never a time, a
 * timing-dependent count, or an object identity.
 */
export interface TraceLine {
  readonly step: number;
  readonly text: string;
}

export class Trace {
  private readonly ring: (TraceLine | undefined)[];
  private next = 0;
  private h1 = 0x811c9dc5;
  private h2 = 0x050c5d1f;
  /** Lines recorded so far (all of them, not just the kept ones). */
  lines = 0;
  /** When false, lines are hashed and counted but not kept (long soak runs). */
  keep = true;

  constructor(readonly depth = 64) {
    this.ring = new Array<TraceLine | undefined>(Math.max(1, depth)).fill(undefined);
  }

  /** [record step text] hashes the line and keeps it among the last `depth`. */
  record(step: number, text: string): void {
    let h1 = this.h1;
    let h2 = this.h2;
    const s = `${step} ${text}\n`;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 0x01000193);
      h2 = Math.imul(h2 ^ c, 0x01000193) + 0x9e37;
    }
    this.h1 = h1 >>> 0;
    this.h2 = h2 >>> 0;
    this.lines++;
    if (this.keep) {
      this.ring[this.next] = { step, text };
      this.next = (this.next + 1) % this.ring.length;
    }
  }

  /** [hash] is the 64-bit hash of every line so far, as 16 hex digits. */
  get hash(): string {
    return this.h1.toString(16).padStart(8, '0') + this.h2.toString(16).padStart(8, '0');
  }

  /** [tail n] is up to the last n kept lines, oldest first. */
  tail(n = this.depth): TraceLine[] {
    const out: TraceLine[] = [];
    const len = this.ring.length;
    for (let i = 0; i < len; i++) {
      const e = this.ring[(this.next + i) % len];
      if (e !== undefined) out.push(e);
    }
    return out.slice(Math.max(0, out.length - n));
  }
}
