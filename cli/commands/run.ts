/**
 * `xensim run SCENARIO.yaml [--json FILE] [--html FILE] [--shard K/N] [--top] [--seed N]`:
 * runs a scenario (cli/config/scenario.ts, plus dom0's blkback settings,
 * cli/run/load-scenario.ts) — every sweep cell, one at a time, each on a
 * fresh machine — and prints the results table; --json and --html write the
 * results document and its report.
 *
 * Every cell's plan is checked before anything boots: a bad scenario, xl
 * config or fio job file is listed (file, place, what was expected) and the
 * exit code is 1. Parts this build cannot run (disks and vifs served by a
 * driver domain, streams to dom0) fail their cells with the reason, after the
 * rest of the cell ran.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { CliContext } from '../main.ts';
import { pointLabel, simMachineOf, type ShardInfo } from '../report/results.ts';
import { shardOption } from '../report/shard.ts';
import { runCells, type CellJob } from '../run/driver.ts';
import { loadScenario } from '../run/load-scenario.ts';
import { planCell } from '../run/plan.ts';

interface RunOptions {
  readonly json?: string;
  readonly html?: string;
  readonly shard?: ShardInfo;
  readonly top?: boolean;
  readonly seed?: number;
  readonly timeout?: number;
}

/** [seedOption text] reads --seed: an integer in 0..2^32-1. */
export function seedOption(text: string): number {
  if (!/^[0-9]+$/.test(text.trim()) || Number(text) > 0xffff_ffff) throw new InvalidArgumentError('expected an integer from 0 to 4294967295.');
  return Number(text);
}

/** [secondsOption text] reads a positive number of seconds. */
export function secondsOption(text: string): number {
  const n = Number(text);
  if (!/^[0-9]*\.?[0-9]+$/.test(text.trim()) || !(n > 0) || n > 86_400) throw new InvalidArgumentError('expected seconds above 0, such as 2 or 0.5.');
  return n;
}

async function runScenario(ctx: CliContext, file: string, o: RunOptions): Promise<void> {
  const fail = (m: string): void => {
    ctx.err(m.endsWith('\n') ? m : `${m}\n`);
    ctx.exitCode = 1;
  };
  const loaded = loadScenario(file, o.seed === undefined ? {} : { seed: o.seed });
  if (!loaded.ok) return fail(loaded.error.message);
  for (const w of loaded.value.warnings) ctx.err(`warning: ${w}\n`);
  const jobs: CellJob[] = [];
  const errors: string[] = [];
  for (const p of loaded.value.points) {
    const { plan, errors: e } = planCell(p.scenario, p.blkback);
    const where = loaded.value.points.length > 1 ? `${file}: cell ${p.index} (${pointLabel(p.point)}): ` : `${file}: `;
    for (const x of e) if (!errors.includes(`${where}${x}`)) errors.push(`${where}${x}`);
    jobs.push({ index: p.index, point: p.point, plan });
  }
  if (errors.length > 0) return fail(errors.join('\n'));
  await runCells(ctx, jobs, {
    command: 'run',
    info: loaded.value.info,
    machine: simMachineOf(loaded.value.parsed.scenario.machine),
    ...(o.json === undefined ? {} : { json: o.json }),
    ...(o.html === undefined ? {} : { html: o.html }),
    ...(o.shard === undefined ? {} : { shard: o.shard }),
    ...(o.top === true ? { top: true } : {}),
    ...(o.timeout === undefined ? {} : { timeoutSec: o.timeout }),
  });
}

/** Registers `xensim run`. */
export function registerRun(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description('run a scenario: boot the machine of each sweep cell, run its block workloads, print and write the results')
    .argument('<scenario>', 'the scenario file (YAML)')
    .option('--json <FILE>', 'write the results document (fio-shaped block results, counters, xentop) to FILE; - for stdout')
    .option('--html <FILE>', 'write a self-contained HTML report with charts')
    .option('--shard <K/N>', 'run only shard K of N of the sweep (combine the files with xensim merge)', shardOption)
    .option('--top', "show xentop's live view while each cell runs")
    .option('--seed <N>', "override the scenario's seed", seedOption)
    .option('--timeout <SEC>', 'give up on a cell after SEC seconds (default: from its workloads)', secondsOption)
    .action((file: string, o: RunOptions) => runScenario(ctx, file, o));
}
