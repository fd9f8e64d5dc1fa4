/**
 * Swarm: many seeds at once on a piscina pool, one stress run per task (each
 * seed draws its own machine and fault mix, see config.ts), summarised into
 * one table with the seeds that failed and the command that replays each.
 *
 * Pool workers load the TypeScript task through tsx's loader, named by its
 * resolved URL so the pool works wherever xensim is started from.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import type { ConfigOverrides, StressMode } from './config.ts';
import { summarise, type RunReport, type SwarmSummary } from './report.ts';
import type { SwarmTask } from './swarm-task.ts';

export interface SwarmOptions {
  readonly seeds: readonly number[];
  readonly mode: StressMode;
  readonly overrides: ConfigOverrides;
  /** Pool threads (default: every core for deterministic runs, 1 for threads runs, which start their own workers). */
  readonly jobs?: number;
  /** Called as each run finishes (progress lines). */
  readonly onResult?: (r: RunReport, done: number, total: number) => void;
}

export interface SwarmResult {
  readonly runs: RunReport[];
  readonly summary: SwarmSummary;
}

function errorReport(seed: number, mode: StressMode, e: unknown): RunReport {
  return {
    seed, mode, ok: false,
    config: { guests: [], injectors: [], depth: 0 },
    checkers: [], faults: [], violations: [],
    stats: { steps: 0, elapsedMs: 0, hypercalls: 0, domainsCreated: 0, domainsDestroyed: 0, ringRequests: 0, ringResponses: 0, pings: 0, stormEvents: 0, backendRestarts: 0, xsRequests: 0 },
    replay: `xensim stress${mode === 'deterministic' ? ' --deterministic' : ''} --seed ${seed} (the run itself failed: ${e instanceof Error ? e.message : String(e)})`,
    error: e instanceof Error ? `${e.name}: ${e.message}` : String(e),
  };
}

/** The URL of tsx's loader ('tsx' resolves to it for import and require alike). */
function tsxLoader(): string {
  return pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
}

export async function runSwarm(o: SwarmOptions): Promise<SwarmResult> {
  const t0 = performance.now();
  const jobs = Math.max(1, Math.min(o.seeds.length, o.jobs ?? (o.mode === 'deterministic' ? availableParallelism() : 1)));
  const pool = new Piscina({
    filename: new URL('./swarm-task.ts', import.meta.url).href,
    execArgv: ['--import', tsxLoader()],
    minThreads: jobs,
    maxThreads: jobs,
    idleTimeout: 1000,
  });
  let done = 0;
  try {
    const runs = await Promise.all(o.seeds.map(async (seed) => {
      const task: SwarmTask = { seed, mode: o.mode, overrides: o.overrides };
      let r: RunReport;
      try {
        r = (await pool.run(task)) as RunReport;
      } catch (e) {
        r = errorReport(seed, o.mode, e);
      }
      done++;
      o.onResult?.(r, done, o.seeds.length);
      return r;
    }));
    runs.sort((a, b) => a.seed - b.seed);
    return { runs, summary: summarise(runs, performance.now() - t0) };
  } finally {
    await pool.destroy();
  }
}
