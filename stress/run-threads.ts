/**
 * One stress run on real threads (the default mode): the toolstack's Machine
 * boots the hypervisor worker, dom0 and the guests on the stress worker
 * entries (stress/dom0-main.ts, stress/domu-main.ts); the main thread plays
 * xl — creating, wiring and destroying domains — fires the same injectors as
 * the deterministic mode, and checks the same invariants from the hypervisor's
 * control API and each worker's books. Real parallelism finds what no
 * interleaving of one thread can (lost wake-ups, memory ordering); the price
 * is that a failure names a seed but does not replay step for step.
 *
 * A view during the run is not one atomic snapshot of the machine: each
 * worker reports books and counters that are consistent with each other
 * (taken on its own thread), and the hypervisor's reconciliation is atomic in
 * its own worker. The final view, after every guest is destroyed, is quiescent.
 */
import type { Remote } from 'comlink';
import { DCB } from '../shared/abi/machine.ts';
import { asDomId } from '../shared/types.ts';
import { Machine, type DomainHandle } from '../toolstack/machine.ts';
import type { StressDom0Agent, StressDomUAgent, WorkerBooks } from './agents.ts';
import { CheckRunner } from './checkers.ts';
import { replayCommand, type GuestSpec, type StressConfig } from './config.ts';
import type { GuestAct } from './guest-stress.ts';
import { INJECTOR_NAMES, injector, type GuestInfo, type InjectionTarget, type InjectorName } from './injectors.ts';
import { mutant } from './mutants.ts';
import { Prng } from './prng.ts';
import { memoryStats, type RunReport } from './report.ts';
import type { DomainBooks, DomainView, WorldView } from './view.ts';
import { VSTRESS_DEVID, VSTRESS_TYPE } from './vstress.ts';
import { vbdDeviceSpec } from './blk-plugin.ts';

const DOM0_ENTRY = new URL('./dom0-main.ts', import.meta.url);
const DOMU_ENTRY = new URL('./domu-main.ts', import.meta.url);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Wall-clock ms, the same timebase on every thread (workers stamp their books with it). */
export const wallMs = (): number => performance.timeOrigin + performance.now();

interface ThreadGuest {
  readonly domid: number;
  readonly spec: GuestSpec;
  readonly h: DomainHandle;
  readonly agent: Remote<StressDomUAgent>;
  last: WorkerBooks | undefined;
}

class ThreadWorld implements InjectionTarget {
  readonly guestsByDomid = new Map<number, ThreadGuest>();
  readonly gone: ThreadGuest[] = [];
  readonly fired = new Map<InjectorName, number>();
  created = 0;
  destroyed = 0;
  stopping = false;
  private readonly cleanups = new Set<Promise<void>>();

  constructor(readonly cfg: StressConfig, readonly machine: Machine, readonly h0: DomainHandle, readonly d0: Remote<StressDom0Agent>) {}

  async createGuest(spec: GuestSpec): Promise<void> {
    const m = this.cfg.mutant === undefined ? undefined : mutant(this.cfg.mutant);
    const h = await this.machine.createDomain({
      name: spec.name, memoryKiB: spec.memoryKiB, model: spec.model, maxGrantFrames: spec.maxGrantFrames, foreignPages: 64, nrPorts: 64,
      entry: DOMU_ENTRY, kind: 'domU', kernel: { grantFrames: spec.maxGrantFrames, idleMs: 4 },
    });
    this.created++;
    const agent = h.agent as unknown as Remote<StressDomUAgent>;
    const g: ThreadGuest = { domid: h.domid, spec, h, agent, last: undefined };
    this.guestsByDomid.set(h.domid, g);
    const blk = this.cfg.blk && !spec.hostile;
    if (!(await agent.stressSetup({ seed: this.cfg.seed, hostile: spec.hostile, depth: this.cfg.depth, quota: this.cfg.quota, frontMutant: m?.front, blk: blk ? { persistent: this.cfg.blkPersistent } : undefined }))) {
      throw new Error(`d${h.domid}: the vstress frontend bus did not start`);
    }
    const dev = await this.d0.createDeviceDirs({ type: VSTRESS_TYPE, frontDom: asDomId(h.domid), backDom: asDomId(0), devid: VSTRESS_DEVID });
    if (!dev.ok) throw new Error(`createDeviceDirs d${h.domid}: ${dev.error}`);
    if (blk) {
      const vbd = await this.d0.createDeviceDirs(vbdDeviceSpec(h.domid));
      if (!vbd.ok) throw new Error(`createDeviceDirs vbd d${h.domid}: ${vbd.error}`);
    }
    await this.d0.bindPing(h.domid, await agent.offerPing());
    await agent.startPing();
    if (spec.hostile) await this.d0.bindStorm(h.domid, await agent.offerStorm());
  }

  guests(): GuestInfo[] {
    return [...this.guestsByDomid.values()].map((g) => ({ domid: g.domid, hostile: g.spec.hostile, connected: true }));
  }

  async act(domid: number, a: GuestAct): Promise<boolean> {
    const g = this.guestsByDomid.get(domid);
    return g !== undefined && (await g.agent.act(a));
  }

  async destroyGuest(domid: number): Promise<boolean> {
    const g = this.guestsByDomid.get(domid);
    if (g === undefined || this.stopping) return false;
    const p = this.destroy(g).then(async () => {
      await sleep(300);
      if (!this.stopping && this.created < this.cfg.maxGuestsCreated) await this.createGuest({ ...g.spec, name: `${g.spec.name}-r${this.created}` });
    });
    this.cleanups.add(p);
    void p.finally(() => this.cleanups.delete(p));
    return true;
  }

  /** Books first (the worker is about to go), then xl destroy, then dom0 lets go of the guest's devices. */
  async destroy(g: ThreadGuest): Promise<void> {
    this.guestsByDomid.delete(g.domid);
    g.last = await Promise.race([g.agent.stressBooks(), sleep(2000).then(() => undefined)]);
    if (g.last !== undefined) {
      for (const p of g.last.books.pings) p.aborted = true;
      for (const w of g.last.books.workloads) if (!w.done) w.aborted = true;
    }
    this.gone.push(g);
    await this.machine.destroyDomain(g.domid);
    this.destroyed++;
    await this.d0.guestGone(g.domid);
    await this.d0.removeDeviceDirs({ type: VSTRESS_TYPE, frontDom: asDomId(g.domid), backDom: asDomId(0), devid: VSTRESS_DEVID });
    if (this.cfg.blk) await this.d0.removeDeviceDirs(vbdDeviceSpec(g.domid));
  }

  async settleCleanups(): Promise<void> {
    while (this.cleanups.size > 0) await Promise.allSettled([...this.cleanups]);
  }

  async restartBackends(): Promise<boolean> {
    return !this.stopping && (await this.d0.restartBackends());
  }

  /** [view final] gathers the checkers' view from the hypervisor and every worker. */
  async view(final: boolean): Promise<WorldView> {
    const [reconcile, summaries, d0b, xs] = await Promise.all([
      this.machine.hv.reconcile(), this.machine.hv.domains(), this.d0.stressBooks(), this.d0.xsView(this.cfg.quota),
    ]);
    const live = new Map<number, WorkerBooks | undefined>();
    await Promise.all([...this.guestsByDomid.values()].map(async (g) => { live.set(g.domid, await g.agent.stressBooks()); }));
    const mem = this.machine.mem;
    const domains: DomainView[] = [];
    const failures: string[] = [...(d0b?.taskFailures ?? [])];
    for (const s of summaries) {
      const wb = s.domid === 0 ? d0b : live.get(s.domid);
      const handle = this.machine.domain(s.domid);
      const faults = handle === undefined ? 0 : mem.atomicLoad32(this.machine.layout.dcbField(handle.boot.slot, DCB.faults)) >>> 0;
      const g = this.guestsByDomid.get(s.domid);
      const books: DomainBooks | undefined = s.state === 'running' || s.state === 'paused' ? wb?.books : undefined;
      domains.push({
        domid: s.domid, name: s.name, state: s.state, hostile: g?.spec.hostile ?? false, faults,
        activeGrants: s.activeGrants,
        // During the run, the worker's own count beside its books; at the end, the hypervisor's.
        maptrackInUse: final || wb === undefined ? s.maptrackInUse : wb.maptrackInUse,
        lostWakeups: wb?.lostWakeups, books,
      });
      if (g !== undefined && !g.spec.hostile && wb !== undefined) failures.push(...wb.taskFailures);
    }
    for (const g of this.gone) {
      if (g.last === undefined) continue;
      domains.push({ domid: g.domid, name: g.spec.name, state: 'gone', hostile: g.spec.hostile, faults: 0, activeGrants: 0, maptrackInUse: 0, lostWakeups: g.last.lostWakeups, books: g.last.books });
      if (!g.spec.hostile) failures.push(...g.last.taskFailures);
    }
    return {
      mode: 'threads', final, now: wallMs(), lostAfter: 10_000, reconcile, domains,
      zombies: summaries.filter((s) => s.state === 'zombie').map((s) => s.domid), xenstore: xs, taskFailures: failures,
    };
  }

  async running(): Promise<number> {
    let n = 0;
    for (const g of this.guestsByDomid.values()) n += (await g.agent.stressBooks())?.running ?? 0;
    return n;
  }
}

export interface ThreadRunOptions {
  readonly replay?: string;
  /**
   * A soak's memory bound: resident memory may grow by at most this many MiB
   * from the end of boot to the end of the main phase, or the run fails
   * ('memory-growth', a measurement, not a replayable invariant).
   */
  readonly maxRssGrowthMiB?: number;
  /** Progress lines (phases, injections). */
  readonly log?: (line: string) => void;
}

export async function runThreads(cfg: StressConfig, o: ThreadRunOptions = {}): Promise<RunReport> {
  const t0 = performance.now();
  const m = cfg.mutant === undefined ? undefined : mutant(cfg.mutant);
  if (m?.hypervisor !== undefined || m?.xenstored !== undefined) throw new Error(`mutant ${m.name} replaces the hypervisor or xenstored: deterministic mode only`);
  const checks = new CheckRunner();
  const machine = await Machine.boot({ memBytes: cfg.memBytes, seed: cfg.seed });
  let w: ThreadWorld | undefined;
  let error: string | undefined;
  let xsRequests = 0;
  let restarts = 0;
  let hypercalls = 0;
  const rss: { ms: number; bytes: number }[] = [];
  try {
    const h0 = await machine.createDomain({
      name: 'Domain-0', domid: 0, memoryKiB: 8192, model: 'pm', privileged: true, foreignPages: 1024, maxGrantFrames: 1, nrPorts: 256,
      entry: DOM0_ENTRY, kind: 'dom0', kernel: { grantFrames: 1 },
    });
    const d0 = h0.agent as unknown as Remote<StressDom0Agent>;
    if (!(await d0.stressSetup({ seed: cfg.seed, backMutant: m?.back, echoMutant: m?.echo, stormMutant: m?.storm, blk: cfg.blk ? { mutant: m?.blk } : undefined }))) {
      throw new Error('the stress backends did not start');
    }
    const world = new ThreadWorld(cfg, machine, h0, d0);
    w = world;
    const log = o.log ?? (() => {});
    for (const spec of cfg.guests) await world.createGuest(spec);
    log(`booted: ${cfg.guests.length} guests`);
    const chaos = new Prng(cfg.seed).fork('chaos');
    const start = performance.now();
    let nextCheck = start + cfg.checkEvery;
    rss.push({ ms: 0, bytes: process.memoryUsage().rss });
    while (performance.now() - start < cfg.durationMs) {
      await sleep(10);
      if (cfg.injectors.length > 0 && chaos.chance(cfg.faultRate)) {
        const name = chaos.pick(cfg.injectors);
        const detail = await injector(name).fire(world, chaos, { stormEvents: cfg.stormEvents });
        if (detail !== undefined) { world.fired.set(name, (world.fired.get(name) ?? 0) + 1); log(`inject ${name} ${detail}`); }
      }
      if (performance.now() >= nextCheck) {
        nextCheck = performance.now() + cfg.checkEvery;
        checks.run(await world.view(false));
        rss.push({ ms: performance.now() - start, bytes: process.memoryUsage().rss });
      }
    }
    const mem = memoryStats(rss);
    if (o.maxRssGrowthMiB !== undefined && mem !== undefined && mem.endMiB - mem.startMiB > o.maxRssGrowthMiB) {
      checks.violations.push({ checker: 'memory-growth', replayable: false, message: `resident memory grew ${(mem.endMiB - mem.startMiB).toFixed(0)} MiB during the run (bound ${o.maxRssGrowthMiB} MiB; trend ${mem.slopeMiBPerMin.toFixed(1)} MiB/min)` });
    }
    // Wind down: workloads stop and drain, then every guest goes.
    world.stopping = true;
    log('winding down');
    await world.settleCleanups();
    log('cleanups settled');
    await d0.windDown();
    for (const g of world.guestsByDomid.values()) await g.agent.windDown();
    const until = performance.now() + 8000;
    while ((await world.running()) > 0 && performance.now() < until) await sleep(20);
    checks.run(await world.view(false));
    log('destroying guests');
    for (const g of [...world.guestsByDomid.values()]) { await world.destroy(g); log(`destroyed d${g.domid}`); }
    const zUntil = performance.now() + 8000;
    while ((await machine.hv.domains()).some((s) => s.state === 'zombie') && performance.now() < zUntil) await sleep(20);
    checks.run(await world.view(true));
    xsRequests = await d0.xsRequests();
    restarts = await d0.restarts;
    hypercalls = (await machine.hv.counters()).hypercalls;
  } catch (e) {
    error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  } finally {
    await machine.shutdown();
  }
  const books = w === undefined ? [] : w.gone.map((g) => g.last?.books).filter((b): b is DomainBooks => b !== undefined);
  const sum = (f: (b: DomainBooks) => number) => books.reduce((a, b) => a + f(b), 0);
  const ok = error === undefined && checks.violations.length === 0;
  return {
    seed: cfg.seed, mode: 'threads', mutant: cfg.mutant, ok,
    config: { guests: cfg.guests.map((g) => ({ name: g.name, model: g.model, hostile: g.hostile })), injectors: cfg.injectors, durationMs: cfg.durationMs, depth: cfg.depth, blk: cfg.blk ? { persistent: cfg.blkPersistent } : undefined },
    checkers: checks.tallies,
    faults: INJECTOR_NAMES.map((n) => ({ name: n, enabled: cfg.injectors.includes(n), fired: w?.fired.get(n) ?? 0 })),
    violations: checks.violations,
    stats: {
      steps: Math.round(performance.now() - t0), elapsedMs: performance.now() - t0, hypercalls,
      domainsCreated: w?.created ?? 0, domainsDestroyed: w?.destroyed ?? 0,
      ringRequests: sum((b) => b.ringFronts.reduce((a, f) => a + f.issued, 0)),
      ringResponses: sum((b) => b.ringFronts.reduce((a, f) => a + f.completed, 0)),
      pings: sum((b) => b.pings.reduce((a, p) => a + p.answered, 0)),
      stormEvents: sum((b) => b.workloads.filter((x) => x.name === 'event-storm').reduce((a, x) => a + x.ops, 0)),
      backendRestarts: restarts, xsRequests,
    },
    memory: memoryStats(rss),
    replay: o.replay ?? replayCommand(cfg),
    error,
  };
}
