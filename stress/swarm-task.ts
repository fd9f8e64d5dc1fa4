/**
 * The piscina task of a swarm: one stress run per call, in a pool worker.
 * Thin on purpose: decode, run, return the report (plain data). (Static
 * imports: pool workers load this file through tsx's loader, which does not
 * reach a dynamic import from inside it.)
 */
import { configForSeed, type ConfigOverrides, type StressMode } from './config.ts';
import type { RunReport } from './report.ts';
import { runDeterministic } from './run-det.ts';
import { runThreads } from './run-threads.ts';

export interface SwarmTask {
  readonly seed: number;
  readonly mode: StressMode;
  readonly overrides: ConfigOverrides;
}

export default async function runTask(t: SwarmTask): Promise<RunReport> {
  const cfg = configForSeed(t.seed, t.mode, t.overrides);
  return t.mode === 'deterministic' ? runDeterministic(cfg) : runThreads(cfg);
}
