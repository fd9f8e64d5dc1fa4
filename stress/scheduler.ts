/**
 * The deterministic scheduler: the SAME hypervisor, guest kernels, xenstored,
 * XenBus drivers and workloads that run on worker threads, run here in one
 * thread, interleaved by a seeded PRNG at every yield point.
 *
 * Each domain is a VCpu. One step of the scheduler runs ONE unit of one vCPU:
 *
 *  - `irq`:  the vCPU has an upcall pending; run its kernel's event dispatch
 *            (handlers run synchronously, as from Xen's upcall);
 *  - `soft`: a deferred function queued on the vCPU (e.g. dom0's in-process
 *            XenStore client draining its replies: Linux's workqueues);
 *  - `task`: resume one parked task (a workload, service or hostile actor)
 *            until its next yield point (StressPlatform.point/until/sleep).
 *
 * Hypercalls run inside a unit and are atomic, as a hypercall is atomic with
 * respect to other vCPUs' view of the domain's tables in Xen; tasks put a point
 * before each hypercall, event send and ring access, so anything another
 * domain can do may happen between them. After each unit the scheduler lets
 * the microtask queue drain completely (one macrotask turn) before choosing
 * again: promise continuations (a XenStore reply resolving a request, a
 * XenBus watch firing) are deterministic given the same sequence of units.
 *
 * Which unit runs: among vCPUs with runnable units, one is drawn with
 * probability proportional to its weight; weights are re-drawn every
 * `reweighEvery` steps (so a seed explores starvation and bursts, not only a
 * fair interleaving); then one of its units is drawn uniformly. Every step is
 * a line in the trace (and every hypercall, through TracingHypercaller), so a
 * run is named by its seed and checked by its trace hash.
 *
 * No unit runnable while tasks still wait is a deadlock (a lost event shows
 * up this way): the run reports it. Tasks that only sleep make the scheduler
 * skip ahead to the earliest wake-up.
 */
import type { Hypercaller } from '../shared/hypercall/channel.ts';
import type { MemRegion } from '../shared/memory/region.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import { Prng } from './prng.ts';
import { Trace } from './trace.ts';
import type { StressPlatform } from './platform.ts';

export type TaskState = 'parked' | 'running' | 'blocked' | 'done' | 'failed' | 'dead';

export interface TaskFailure {
  readonly vcpu: string;
  readonly task: string;
  readonly error: string;
  readonly step: number;
}

/** One coroutine of a vCPU: a workload, a service loop, a hostile actor. */
export class Task {
  state: TaskState = 'parked';
  label = 'start';
  resume: (() => void) | undefined;
  cond: (() => boolean) | undefined;
  /** Step at which a sleep or an until's budget ends. */
  wakeAt: number | undefined;
  timedOut = false;
  error: string | undefined;
  constructor(readonly id: number, readonly name: string, readonly vcpu: VCpu, readonly daemon: boolean) {}
}

export class VCpu {
  readonly tasks: Task[] = [];
  readonly soft: { label: string; fn: () => void }[] = [];
  weight = 1;
  alive = true;
  /** Units run, by kind (deterministic counts). */
  readonly ran = { irq: 0, soft: 0, task: 0 };
  constructor(readonly index: number, readonly name: string, readonly kernel: DomainKernel | undefined) {}
}

type Unit = { kind: 'irq'; v: VCpu } | { kind: 'soft'; v: VCpu } | { kind: 'task'; v: VCpu; t: Task };

export interface SchedulerOptions {
  readonly seed: number;
  /** Trace lines kept for the failure report. */
  readonly traceDepth?: number;
  /** Re-draw vCPU weights every this many steps (default 400). */
  readonly reweighEvery?: number;
  /** Largest vCPU weight (default 8; 1 = fair). */
  readonly maxWeight?: number;
}

export type StepOutcome = 'ran' | 'idle' | 'deadlock';

const drain = (): Promise<void> => new Promise<void>((r) => setImmediate(r));

export class Scheduler {
  readonly rng: Prng;
  readonly trace: Trace;
  step = 0;
  readonly vcpus: VCpu[] = [];
  readonly failures: TaskFailure[] = [];
  private nextTask = 0;
  private stopFlag = false;
  private readonly reweighEvery: number;
  private readonly maxWeight: number;
  /** Set by a deadlock: the tasks that were waiting, with their labels. */
  deadlock: string[] | undefined;
  /** Runs after every step (an invariant monitor cheap enough to run that often). */
  afterStep: (() => void) | undefined;

  constructor(opts: SchedulerOptions) {
    this.rng = new Prng(opts.seed).fork('scheduler');
    this.trace = new Trace(opts.traceDepth ?? 64);
    this.reweighEvery = opts.reweighEvery ?? 400;
    this.maxWeight = opts.maxWeight ?? 8;
  }

  get stopping(): boolean { return this.stopFlag; }
  /** Asks every task to wind down (they read `stopping` from their platform). */
  requestStop(): void { this.stopFlag = true; this.note('stop requested'); }

  note(text: string): void { this.trace.record(this.step, text); }

  addVcpu(name: string, kernel?: DomainKernel): VCpu {
    const v = new VCpu(this.vcpus.length, name, kernel);
    v.weight = 1 + this.rng.int(this.maxWeight);
    this.vcpus.push(v);
    this.note(`vcpu+ ${name}`);
    return v;
  }

  /**
   * [kill v] takes a vCPU off the machine (its domain is destroyed): none of
   * its units run again, and its tasks freeze at their next yield point.
   */
  kill(v: VCpu): void {
    if (!v.alive) return;
    v.alive = false;
    v.soft.length = 0;
    for (const t of v.tasks) if (t.state !== 'done' && t.state !== 'failed') { t.state = 'dead'; t.resume = undefined; }
    this.note(`vcpu- ${v.name}`);
  }

  /** [defer v label fn] queues fn to run as a later unit of v. */
  defer(v: VCpu, label: string, fn: () => void): void {
    if (v.alive) v.soft.push({ label, fn });
  }

  /**
   * [spawn v name body opts] creates a task that starts when the scheduler
   * first picks it. A daemon (a service loop waiting for work) does not count
   * as waiting when the run winds down or deadlocks.
   */
  spawn(v: VCpu, name: string, body: (p: StressPlatform) => Promise<void>, opts: { daemon?: boolean } = {}): Task {
    const t = new Task(this.nextTask++, name, v, opts.daemon ?? false);
    v.tasks.push(t);
    const p = this.platformFor(t);
    t.resume = () => {
      body(p).then(
        () => { if (t.state !== 'dead') t.state = 'done'; this.note(`done ${v.name}/${name}`); },
        (e: unknown) => {
          const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
          if (t.state !== 'dead') { t.state = 'failed'; t.error = msg; }
          this.failures.push({ vcpu: v.name, task: name, error: msg, step: this.step });
          this.note(`fail ${v.name}/${name}: ${msg}`);
        },
      );
    };
    this.note(`spawn ${v.name}/${name}`);
    return t;
  }

  private platformFor(t: Task): StressPlatform {
    const stopping = () => this.stopFlag;
    const step = () => this.step;
    const note = (text: string) => this.note(text);
    const rng = this.rng.fork(`task ${t.vcpu.name}/${t.name}#${t.id}`);
    const park = (label: string, cond: (() => boolean) | undefined, wakeAt: number | undefined): Promise<void> =>
      new Promise<void>((resolve) => {
        if (t.state === 'dead') return; // a destroyed domain's vCPU never runs again
        t.state = 'parked';
        t.label = label;
        t.cond = cond;
        t.wakeAt = wakeAt;
        t.timedOut = false;
        t.resume = resolve;
      });
    return {
      deterministic: true,
      rng,
      get stopping() { return stopping(); },
      point: (label) => park(label, undefined, undefined),
      async until(cond, label, budget) {
        if (cond()) return true;
        await park(label, cond, budget === undefined ? undefined : step() + Math.max(1, budget));
        return !t.timedOut;
      },
      sleep: (n, label) => park(label, () => false, step() + Math.max(1, n)),
      note: (text) => note(`  ${t.vcpu.name}/${t.name}: ${text}`),
    };
  }

  /** Drops finished tasks from the run queues (they are only history). */
  private compact(): void {
    for (const v of this.vcpus) {
      for (let i = v.tasks.length - 1; i >= 0; i--) {
        const st = (v.tasks[i] as Task).state;
        if (st === 'done' || st === 'failed' || st === 'dead') v.tasks.splice(i, 1);
      }
    }
  }

  private units(): Unit[] {
    const out: Unit[] = [];
    for (const v of this.vcpus) {
      if (!v.alive) continue;
      if (v.kernel !== undefined && v.kernel.evtchn.upcallPending()) out.push({ kind: 'irq', v });
      if (v.soft.length > 0) out.push({ kind: 'soft', v });
      for (const t of v.tasks) {
        if (t.state !== 'parked') continue;
        if (t.cond === undefined || (t.wakeAt !== undefined && this.step >= t.wakeAt) || t.cond()) out.push({ kind: 'task', v, t });
      }
    }
    return out;
  }

  /** Tasks still waiting (parked on a condition, or blocked on a promise); daemons only when asked. */
  waiting(daemons = false): Task[] {
    const out: Task[] = [];
    for (const v of this.vcpus) {
      if (!v.alive) continue;
      for (const t of v.tasks) if ((t.state === 'parked' || t.state === 'blocked') && (daemons || !t.daemon)) out.push(t);
    }
    return out;
  }

  private choose(units: Unit[]): Unit {
    if (this.step % this.reweighEvery === 0) {
      for (const v of this.vcpus) v.weight = 1 + this.rng.int(this.maxWeight);
    }
    const byVcpu = new Map<VCpu, Unit[]>();
    for (const u of units) {
      let l = byVcpu.get(u.v);
      if (l === undefined) { l = []; byVcpu.set(u.v, l); }
      l.push(u);
    }
    const vs = [...byVcpu.keys()];
    const v = vs[this.rng.weighted(vs.map((x) => x.weight))] as VCpu;
    return this.rng.pick(byVcpu.get(v) as Unit[]);
  }

  /** [runStep] runs one unit (or skips idle time); 'idle' when nothing waits at all. */
  async runStep(): Promise<StepOutcome> {
    let units = this.units();
    if (units.length === 0) {
      // Only sleepers and budgets left: skip to the earliest wake-up.
      let earliest = Infinity;
      for (const t of this.waiting(true)) if (t.state === 'parked' && t.wakeAt !== undefined) earliest = Math.min(earliest, t.wakeAt);
      if (earliest !== Infinity) {
        this.note(`skip to ${earliest}`);
        this.step = earliest;
        units = this.units();
      }
    }
    if (units.length === 0) {
      const w = this.waiting();
      if (w.length === 0) return 'idle';
      this.deadlock = w.map((t) => `${t.vcpu.name}/${t.name} (${t.state} at ${t.label})`);
      this.note(`deadlock: ${this.deadlock.join(', ')}`);
      return 'deadlock';
    }
    const u = this.choose(units);
    this.step++;
    switch (u.kind) {
      case 'irq': {
        u.v.ran.irq++;
        const n = (u.v.kernel as DomainKernel).evtchn.dispatch();
        this.note(`${u.v.name} irq ${n}`);
        break;
      }
      case 'soft': {
        u.v.ran.soft++;
        const s = u.v.soft.shift() as { label: string; fn: () => void };
        this.note(`${u.v.name} soft ${s.label}`);
        s.fn();
        break;
      }
      case 'task': {
        u.v.ran.task++;
        const t = u.t;
        const resume = t.resume;
        if (t.cond !== undefined && !t.cond()) t.timedOut = true; // its budget or sleep ran out
        t.state = 'running';
        t.resume = undefined;
        this.note(`${u.v.name} task ${t.name}:${t.label}${t.timedOut && t.wakeAt !== undefined ? ' (woke)' : ''}`);
        resume?.();
        break;
      }
    }
    await drain();
    if (u.kind === 'task' && u.t.state === 'running') u.t.state = 'blocked'; // awaiting a promise another unit will settle
    if ((this.step & 255) === 0) this.compact();
    this.afterStep?.();
    return 'ran';
  }
}

/**
 * A Hypercaller that records every hypercall in the trace (op, first two
 * arguments, results) before handing it to the real one.
 */
export class TracingHypercaller implements Hypercaller {
  constructor(private readonly inner: Hypercaller, private readonly sched: Scheduler, private readonly who: string) {}
  get buf(): MemRegion { return this.inner.buf; }
  get bufBytes(): number { return this.inner.bufBytes; }
  get calls(): number { return this.inner.calls; }
  set calls(n: number) { this.inner.calls = n; }
  call(op: number, a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0): [number, number] {
    const r = this.inner.call(op, a0, a1, a2, a3, a4, a5);
    this.sched.note(`  hc ${this.who} op${op}(${a0},${a1},${a2}) = ${r[0]},${r[1]}`);
    return r;
  }
}
