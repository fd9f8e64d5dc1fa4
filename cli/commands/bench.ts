/**
 * `xensim bench`: the built-in benchmark (cli/run/bench-plan.ts) — dom0 and
 * two guests, each with an in-memory disk, 4 KiB random reads at depth 32
 * then verified 64 KiB sequential writes read back, ~2 s each — printed as a
 * results table. Options pick suites and sweep grant strategies, queue
 * depths and guest counts; --json, --html, --shard and --top as for run.
 */
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { BLKBACK_MODES, type BlkbackMode } from '../../dom0/blkback/blkback.ts';
import type { CliContext } from '../main.ts';
import { parseByteSize } from '../config/scenario.ts';
import { closest } from '../config/xlcfg.ts';
import type { ShardInfo } from '../report/results.ts';
import { shardOption } from '../report/shard.ts';
import { BENCH_DEFAULTS, BENCH_SEED, BENCH_SUITES, planBench, type BenchSuite } from '../run/bench-plan.ts';
import { runCells } from '../run/driver.ts';
import { secondsOption, seedOption } from './run.ts';

interface BenchCliOptions {
  readonly suite: BenchSuite;
  readonly grants?: BlkbackMode[];
  readonly iodepth?: number[];
  readonly domains?: number[];
  readonly duration: number;
  readonly size: number;
  readonly seed: number;
  readonly json?: string;
  readonly html?: string;
  readonly shard?: ShardInfo;
  readonly top?: boolean;
  readonly timeout?: number;
}

/** A comma-separated list, each item read by `one`; duplicates refused. */
function listOf<T>(one: (item: string) => T): (text: string) => T[] {
  return (text: string): T[] => {
    const items = text.split(',').map((s) => s.trim());
    if (items.some((s) => s === '')) throw new InvalidArgumentError(`expected a comma-separated list without empty items, got "${text}".`);
    const out = items.map(one);
    const seen = new Set<string>();
    for (const [i, x] of out.entries()) {
      const k = JSON.stringify(x);
      if (seen.has(k)) throw new InvalidArgumentError(`${items[i]} is given twice.`);
      seen.add(k);
    }
    return out;
  };
}
function intItem(lo: number, hi: number) {
  return (s: string): number => {
    if (!/^[0-9]+$/.test(s) || Number(s) < lo || Number(s) > hi) throw new InvalidArgumentError(`expected integers from ${lo} to ${hi}, got "${s}".`);
    return Number(s);
  };
}
function grantItem(s: string): BlkbackMode {
  if ((BLKBACK_MODES as readonly string[]).includes(s)) return s as BlkbackMode;
  const guess = closest(s, BLKBACK_MODES);
  throw new InvalidArgumentError(`expected ${BLKBACK_MODES.join(', ')}, got "${s}"${guess === null ? '' : `; did you mean ${guess}?`}.`);
}
function suiteOption(s: string): BenchSuite {
  if ((BENCH_SUITES as readonly string[]).includes(s)) return s as BenchSuite;
  throw new InvalidArgumentError(`expected ${BENCH_SUITES.join(', ')}.`);
}
function sizeOption(s: string): number {
  const n = parseByteSize(s);
  if (n === null || n < 1024 * 1024 || n % 65536 !== 0 || n > 4 * 1024 ** 3) throw new InvalidArgumentError('expected a size from 1M to 4G, a multiple of 64K, such as 64M.');
  return n;
}

async function bench(ctx: CliContext, o: BenchCliOptions): Promise<void> {
  const p = planBench({
    suite: o.suite, duration: o.duration, size: o.size, seed: o.seed,
    ...(o.grants === undefined ? {} : { grants: o.grants }),
    ...(o.iodepth === undefined ? {} : { iodepth: o.iodepth }),
    ...(o.domains === undefined ? {} : { domains: o.domains }),
  });
  if (!p.ok) {
    ctx.err(`xensim bench: ${p.error}\n`);
    ctx.exitCode = 1;
    return;
  }
  for (const n of p.value.notes) ctx.err(`note: ${n}\n`);
  await runCells(ctx, p.value.cells, {
    command: 'bench',
    info: p.value.info,
    machine: p.value.machine,
    ...(o.json === undefined ? {} : { json: o.json }),
    ...(o.html === undefined ? {} : { html: o.html }),
    ...(o.shard === undefined ? {} : { shard: o.shard }),
    ...(o.top === true ? { top: true } : {}),
    ...(o.timeout === undefined ? {} : { timeoutSec: o.timeout }),
  });
}

/** Registers `xensim bench`. */
export function registerBench(program: Command, ctx: CliContext): void {
  program
    .command('bench')
    .description('run the built-in benchmark: dom0 and 2 guests with in-memory disks, random reads then verified writes; sweep grant modes, depths, guest counts')
    .option('--suite <SUITE>', `what to run: ${BENCH_SUITES.join(', ')} (all = every suite this build has)`, suiteOption, BENCH_DEFAULTS.suite)
    .option('--grants <MODES>', `sweep dom0's blkback grant strategy: a list of ${BLKBACK_MODES.join(', ')} (default ${BENCH_DEFAULTS.grants})`, listOf(grantItem))
    .option('--iodepth <DEPTHS>', `sweep both jobs' queue depth, e.g. 1,32 (default ${BENCH_DEFAULTS.readDepth} for reads, ${BENCH_DEFAULTS.writeDepth} for writes)`, listOf(intItem(1, 256)))
    .option('--domains <COUNTS>', `sweep the number of guests, e.g. 1,2,4 (default ${BENCH_DEFAULTS.domains})`, listOf(intItem(1, 16)))
    .option('--duration <SEC>', 'seconds of each timed job', secondsOption, BENCH_DEFAULTS.duration)
    .addOption(new Option('--size <SIZE>', "each guest's in-memory disk, and each job's region").argParser(sizeOption).default(BENCH_DEFAULTS.size, '64M'))
    .option('--seed <N>', 'seed of frame placement and random offsets', seedOption, BENCH_SEED)
    .option('--json <FILE>', 'write the results document to FILE; - for stdout')
    .option('--html <FILE>', 'write a self-contained HTML report with charts')
    .option('--shard <K/N>', 'run only shard K of N of the sweep (combine the files with xensim merge)', shardOption)
    .option('--top', "show xentop's live view while each cell runs")
    .option('--timeout <SEC>', 'give up on a cell after SEC seconds (default: from its workloads)', secondsOption)
    .action((o: BenchCliOptions) => bench(ctx, o));
}
