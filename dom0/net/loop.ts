/**
 * NetLoop: dom0's deferred network work, run after the event handler that
 * caused it (Linux's softirq and netback's kthreads, squeezed into one
 * event-driven thread).
 *
 * A netback TX handler hands packets to the bridge, which queues them on the
 * receiving vifs; those vifs copy them to their guests later, in batches,
 * once the handler has returned. Work runs in three phases, repeated until
 * none is left:
 *
 *   1. tx    continuations of TX processing that stopped early (a budget,
 *            pending slots that came back);
 *   2. rx    RX queues to deliver (each flushes its grant copies completely);
 *   3. done  TX completions (unmap, respond), strictly after every RX copy
 *            that might still name a sender's grant has been made.
 *
 * Phases are run by a scheduled callback (default: a microtask, which runs
 * after the current event dispatch in the vCPU loop) or directly by [run].
 * A run does the tx phase once (what is left of a long TX burst waits for the
 * next run, so guests get to run in between) and rx/done until none is left.
 * TX may [drain] the rx phase between its batches, so a burst is delivered
 * as it goes instead of piling up on the receivers' queues.
 * Nothing blocks; timers come from an injected NetTimers.
 */

/** Work a phase runs: one call per scheduling, however many times it was deferred. */
export interface NetWork {
  runNetWork(phase: NetPhase): void;
}

export type NetPhase = 'tx' | 'rx' | 'done';

/** Time and timers for the network components (injected, so a scheduler can drive them). */
export interface NetTimers {
  /** Monotonic milliseconds. */
  now(): number;
  /** [after ms fn] runs fn once after ms; returns a cancel function. */
  after(ms: number, fn: () => void): () => void;
}

/** Real time: performance.now and setTimeout. */
export const realTimers: NetTimers = {
  now: () => performance.now(),
  after(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(t);
  },
};

const MAX_ROUNDS = 64;

export class NetLoop {
  private readonly tx = new Set<NetWork>();
  private readonly rx = new Set<NetWork>();
  private readonly done = new Set<NetWork>();
  private scheduled = false;
  private running = false;
  private readonly inPhase = { tx: false, rx: false, done: false };
  /** Times run() found work (for tests and stats). */
  runs = 0;

  constructor(private readonly schedule: (fn: () => void) => void = queueMicrotask) {}

  /** [defer phase w] asks for w.runNetWork(phase) soon. */
  defer(phase: NetPhase, w: NetWork): void {
    (phase === 'tx' ? this.tx : phase === 'rx' ? this.rx : this.done).add(w);
    if (!this.scheduled && !this.running) {
      this.scheduled = true;
      this.schedule(() => {
        this.scheduled = false;
        this.run();
      });
    }
  }

  /** [idle] is true when no work is deferred. */
  get idle(): boolean { return this.tx.size + this.rx.size + this.done.size === 0; }

  /** [run] runs deferred work until none is left (or a round limit, then reschedules). */
  run(): void {
    if (this.running) return;
    this.running = true;
    try {
      for (let round = 0; round < MAX_ROUNDS && (round === 0 ? !this.idle : this.rx.size + this.done.size > 0); round++) {
        this.runs++;
        if (round === 0) this.phase('tx', this.tx);
        this.phase('rx', this.rx);
        this.phase('done', this.done);
      }
    } finally {
      this.running = false;
    }
    if (!this.idle && !this.scheduled) {
      this.scheduled = true;
      this.schedule(() => {
        this.scheduled = false;
        this.run();
      });
    }
  }

  /** [drain phase] runs that phase's deferred work now (unless it is already running). */
  drain(p: NetPhase): void {
    this.phase(p, p === 'tx' ? this.tx : p === 'rx' ? this.rx : this.done);
  }

  private phase(p: NetPhase, set: Set<NetWork>): void {
    if (set.size === 0 || this.inPhase[p]) return;
    this.inPhase[p] = true;
    try {
      const items = [...set];
      set.clear();
      for (const w of items) w.runNetWork(p);
    } finally {
      this.inPhase[p] = false;
    }
  }
}
