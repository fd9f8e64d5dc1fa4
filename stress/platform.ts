/**
 * The one seam stress workloads run on (STYLE.md, "one platform seam").
 *
 * A workload, a service or a hostile actor is an async function of a
 * StressPlatform and a DomainKernel. It touches memory, grants, event
 * channels and rings through the kernel as any driver does, and it calls
 * `point()` before each such access, waits only with `until()`/`sleep()`,
 * and draws every random choice from `rng`. So the same code runs:
 *
 *  - under the deterministic scheduler (stress/scheduler.ts), where a point
 *    hands control back to a seeded scheduler that may run any other domain
 *    before resuming us, `until` parks the task until the scheduler sees the
 *    condition hold, and budgets count scheduler steps; and
 *  - on a domain's worker thread (ThreadPlatform below), where points are
 *    free, `until` polls between event-loop turns while the kernel's vCPU loop
 *    dispatches events, and budgets are turned into milliseconds.
 *
 * Event handlers bound with kernel.evtchn.bind run synchronously from the
 * kernel's dispatch in both modes; they must only record and wake (set a flag
 * a task waits for), never block.
 */
import { Prng } from './prng.ts';

export interface StressPlatform {
  /** True under the deterministic scheduler. */
  readonly deterministic: boolean;
  /** This task's own random stream. */
  readonly rng: Prng;
  /** A yield point before a hypercall, an event send or a ring access. */
  point(label: string): Promise<void>;
  /**
   * [until cond label budget] resolves true once cond() holds, or false when
   * the budget runs out first (scheduler steps; on threads, budget/10 ms but
   * at least 200 ms). Without a budget it waits as long as the run lasts.
   */
  until(cond: () => boolean, label: string, budget?: number): Promise<boolean>;
  /** [sleep n label] lets n scheduler steps pass (on threads: n/10 ms, at least one event-loop turn). */
  sleep(n: number, label: string): Promise<void>;
  /** Records a line in the run's trace (deterministic values only). */
  note(text: string): void;
  /** True once the run is winding down: workloads stop issuing new work. */
  readonly stopping: boolean;
}

/** [budgetMs budget] is how long a step budget lasts on real threads. */
export function budgetMs(budget: number): number {
  return Math.max(200, budget / 10);
}

const turn = (): Promise<void> => new Promise<void>((r) => setImmediate(r));

/**
 * The platform of a task running on a domain's own worker thread: the
 * kernel's vCPU loop (DomainKernel.run) dispatches events between event-loop
 * turns, and these methods give it those turns.
 */
export class ThreadPlatform implements StressPlatform {
  readonly deterministic = false;
  private stop = false;
  private points = 0;
  /** Trace lines are only counted on threads (there is no replay to reproduce). */
  notes = 0;

  constructor(readonly rng: Prng) {}

  get stopping(): boolean { return this.stop; }
  /** Asks the tasks on this platform to wind down. */
  requestStop(): void { this.stop = true; }

  /**
   * A point costs nothing on a worker, except that every 64th returns to the
   * event loop: a task whose points all resolve at once (a loop that keeps
   * failing to find resources) would otherwise starve the kernel's vCPU loop
   * and the agent forever in microtasks.
   */
  point(_label: string): Promise<void> {
    if ((++this.points & 63) === 0) return turn();
    return Promise.resolve();
  }

  async until(cond: () => boolean, label: string, budget?: number): Promise<boolean> {
    if (cond()) { await this.point(label); return true; }
    const deadline = budget === undefined ? Infinity : performance.now() + budgetMs(budget);
    for (;;) {
      await turn();
      if (cond()) return true;
      if (performance.now() >= deadline) return false;
    }
  }

  async sleep(n: number, _label: string): Promise<void> {
    const until = performance.now() + n / 10;
    do await turn(); while (performance.now() < until);
  }

  note(_text: string): void { this.notes++; }

  /** A platform for another task on the same thread: its own stream, the same stop flag. */
  child(label: string): StressPlatform {
    const rng = this.rng.fork(label);
    const stopping = () => this.stopping;
    return {
      deterministic: false,
      rng,
      get stopping() { return stopping(); },
      point: (l) => this.point(l),
      until: (c, l, b) => this.until(c, l, b),
      sleep: (n, l) => this.sleep(n, l),
      note: (t) => this.note(t),
    };
  }
}
