/**
 * One deterministic stress run: boot the world under the seeded scheduler,
 * run the main phase for `cfg.steps` steps firing injectors and checking
 * invariants, wind down (workloads stop, in-flight work drains), destroy
 * every guest, check once more, and report. Two runs of one configuration
 * produce the same trace hash and the same report (timings aside).
 */
import { CheckRunner } from './checkers.ts';
import { replayCommand, type StressConfig } from './config.ts';
import { DetWorld } from './det-world.ts';
import { INJECTOR_NAMES } from './injectors.ts';
import { mutant } from './mutants.ts';
import { Prng } from './prng.ts';
import type { RunReport } from './report.ts';
import type { WorldView } from './view.ts';

export interface DetRunOptions {
  /** Trace lines kept for the failure report (default 40). */
  readonly traceDepth?: number;
  /** Stop the main phase at the first violation (the trace then ends near it). Default true. */
  readonly stopOnViolation?: boolean;
  /** The command that reproduces this run (for the report). */
  readonly replay?: string;
  /** Called after each check (tests). */
  readonly onCheck?: (view: WorldView) => void;
}

export async function runDeterministic(cfg: StressConfig, o: DetRunOptions = {}): Promise<RunReport> {
  const t0 = performance.now();
  const m = cfg.mutant === undefined ? undefined : mutant(cfg.mutant);
  const w = new DetWorld(cfg, m, o.traceDepth ?? 40);
  const checks = new CheckRunner();
  const stopOnViolation = o.stopOnViolation ?? true;
  let error: string | undefined;
  let deadlock: string[] | undefined;
  const check = (final: boolean) => {
    const v = w.view(final, deadlock);
    o.onCheck?.(v);
    return checks.run(v);
  };
  try {
    await w.boot();
    const chaos = new Prng(cfg.seed).fork('chaos');
    let nextCheck = w.sched.step + cfg.checkEvery;
    const end = w.sched.step + cfg.steps;
    while (w.sched.step < end) {
      const r = await w.sched.runStep();
      if (r === 'deadlock') { deadlock = w.sched.deadlock; break; }
      if (r === 'idle') break;
      if (cfg.injectors.length > 0 && chaos.chance(cfg.faultRate)) await w.inject(chaos);
      if (w.sched.step >= nextCheck) {
        nextCheck = w.sched.step + cfg.checkEvery;
        if (check(false).length > 0 && stopOnViolation) break;
      }
    }
    // Wind down: workloads stop issuing and drain; services keep serving.
    w.sched.requestStop();
    const wind = await w.runUntil(() => false, 40_000);
    if (wind === 'deadlock') deadlock = w.sched.deadlock;
    check(false);
    await w.teardown();
    check(true);
  } catch (e) {
    error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
  const books = [w.dom0.books, ...[...w.nodes.values()].map((g) => g.books), ...w.gone.map((g) => g.books)];
  const sum = (f: (b: (typeof books)[number]) => number) => books.reduce((a, b) => a + f(b), 0);
  const ok = error === undefined && checks.violations.length === 0;
  return {
    seed: cfg.seed, mode: 'deterministic', mutant: cfg.mutant, ok,
    config: {
      guests: cfg.guests.map((g) => ({ name: g.name, model: g.model, hostile: g.hostile })),
      injectors: cfg.injectors, steps: cfg.steps, depth: cfg.depth,
      blk: cfg.blk ? { persistent: cfg.blkPersistent } : undefined,
      net: w.netOn ? w.netPeers.totals() : undefined,
    },
    checkers: checks.tallies,
    faults: INJECTOR_NAMES.map((n) => ({ name: n, enabled: cfg.injectors.includes(n), fired: w.fired.get(n) ?? 0 })),
    violations: checks.violations,
    stats: {
      steps: w.sched.step,
      elapsedMs: performance.now() - t0,
      hypercalls: w.hv.counters.hypercalls,
      domainsCreated: w.created,
      domainsDestroyed: w.destroyed,
      ringRequests: sum((b) => b.ringFronts.reduce((a, f) => a + f.issued, 0)),
      ringResponses: sum((b) => b.ringBacks.reduce((a, x) => a + x.responses, 0)),
      pings: sum((b) => b.pings.reduce((a, p) => a + p.answered, 0)),
      stormEvents: sum((b) => b.workloads.filter((x) => x.name === 'event-storm').reduce((a, x) => a + x.ops, 0)),
      backendRestarts: w.dom0.stress.restarts,
      xsRequests: w.dom0.xenstored.stats.requests,
    },
    traceHash: w.sched.trace.hash,
    trace: ok ? undefined : w.sched.trace.tail(),
    replay: o.replay ?? replayCommand(cfg),
    error,
  };
}
