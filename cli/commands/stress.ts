/**
 * `xensim stress`: a seeded random mix of domains and workloads for a
 * duration, with faults injected and invariants checked throughout and at the
 * end (stress/). Real threads by default; `--deterministic` runs the same code
 * under a seeded one-thread scheduler so that a failure replays exactly with
 * its seed. `--seeds A..B` runs many seeds on a piscina pool and summarises.
 * Prints a table of invariants checked, faults injected and violations;
 * `--json FILE` writes the same as JSON. Exit code 1 on any violation.
 */
import { writeFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { CliContext } from '../main.ts';
import { CHECKERS } from '../../stress/checkers.ts';
import { configForSeed, STEPS_PER_SECOND, type ConfigOverrides, type StressMode } from '../../stress/config.ts';
import { INJECTORS, isInjectorName, type InjectorName } from '../../stress/injectors.ts';
import { MUTANTS, isMutantName, type MutantName } from '../../stress/mutants.ts';
import { parseSeedRange } from '../../stress/prng.ts';
import { formatReport, formatSummary, type RunReport } from '../../stress/report.ts';

interface StressCliOptions {
  readonly duration?: number;
  readonly steps?: number;
  readonly seed?: number;
  readonly seeds?: number[];
  readonly deterministic?: boolean;
  readonly json?: string;
  readonly faults: 'swarm' | 'all' | 'none';
  readonly inject?: InjectorName[];
  readonly mutant?: MutantName;
  readonly guests?: number;
  readonly hostile?: number;
  readonly jobs?: number;
  readonly maxRssGrowth?: number;
  readonly faultRate?: number;
  readonly blk?: boolean;
  readonly net?: boolean;
  readonly verbose?: boolean;
  readonly list?: boolean;
}

function positive(what: string, max: number, integer = true) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0 || n > max || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${what} must be a positive ${integer ? 'integer' : 'number'} up to ${max}.`);
    }
    return n;
  };
}
function seedArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new InvalidArgumentError('a seed is an integer from 0 to 4294967295.');
  return n;
}
function seedsArg(v: string): number[] {
  try { return parseSeedRange(v); } catch (e) { throw new InvalidArgumentError((e as Error).message); }
}
function injectArg(v: string): InjectorName[] {
  const names = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const n of names) if (!isInjectorName(n)) throw new InvalidArgumentError(`unknown injector '${n}' (xensim stress --list shows them).`);
  return names as InjectorName[];
}
function mutantArg(v: string): MutantName {
  if (!isMutantName(v)) throw new InvalidArgumentError(`unknown mutant '${v}' (xensim stress --list shows them).`);
  return v;
}
function faultsArg(v: string): 'swarm' | 'all' | 'none' {
  if (v !== 'swarm' && v !== 'all' && v !== 'none') throw new InvalidArgumentError('expected swarm, all or none.');
  return v;
}

function listing(): string {
  const out: string[] = ['invariant checkers:'];
  for (const c of CHECKERS) out.push(`  ${c.name.padEnd(24)} ${c.description}`);
  out.push('', 'fault injectors:');
  for (const i of INJECTORS) out.push(`  ${i.name.padEnd(24)} ${i.description}`);
  out.push('', 'mutants (deliberately broken components; --mutant NAME must make the run fail):');
  for (const m of MUTANTS) out.push(`  ${m.name.padEnd(28)} ${m.description} [caught by ${m.caughtBy.join(', ')}]`);
  return `${out.join('\n')}\n`;
}

/** [runStressCommand o ctx] runs what the options ask and returns the reports. */
export async function runStressCommand(o: StressCliOptions, ctx: CliContext): Promise<RunReport[]> {
  const mode: StressMode = o.deterministic === true ? 'deterministic' : 'threads';
  const duration = o.duration ?? 3;
  const overrides: ConfigOverrides = {
    steps: o.steps ?? Math.round(duration * STEPS_PER_SECOND),
    durationMs: Math.round(duration * 1000),
    faults: o.faults,
    injectors: o.inject,
    mutant: o.mutant,
    guests: o.guests,
    hostile: o.hostile,
    faultRate: o.faultRate,
    blk: o.blk,
    net: o.net,
  };
  if (o.seeds !== undefined) {
    const { runSwarm } = await import('../../stress/swarm.ts');
    const r = await runSwarm({
      seeds: o.seeds, mode, overrides, jobs: o.jobs,
      onResult: (x, done, total) => { if (o.verbose === true || !x.ok) ctx.err(`seed ${x.seed}: ${x.ok ? 'ok' : x.error ?? `${x.violations.length} violations`} (${done}/${total})\n`); },
    });
    ctx.out(formatSummary(r.summary, r.runs));
    if (o.json !== undefined) writeFileSync(o.json, `${JSON.stringify({ summary: r.summary, runs: r.runs }, null, 2)}\n`);
    if (!r.runs.every((x) => x.ok)) ctx.exitCode = 1;
    return r.runs;
  }
  const seed = o.seed ?? randomInt(0, 0x7fff_ffff);
  if (o.seed === undefined) ctx.err(`xensim stress: seed ${seed}\n`);
  const cfg = configForSeed(seed, mode, overrides);
  let report: RunReport;
  if (mode === 'deterministic') {
    const { runDeterministic } = await import('../../stress/run-det.ts');
    report = await runDeterministic(cfg);
  } else {
    const { runThreads } = await import('../../stress/run-threads.ts');
    report = await runThreads(cfg, { maxRssGrowthMiB: o.maxRssGrowth });
  }
  ctx.out(formatReport(report, o.verbose === true));
  if (o.json !== undefined) writeFileSync(o.json, `${JSON.stringify(report, null, 2)}\n`);
  if (!report.ok) ctx.exitCode = 1;
  return [report];
}

export function registerStress(program: Command, ctx: CliContext): void {
  program
    .command('stress')
    .description('run a seeded random mix of domains and workloads with faults injected and invariants checked; exit 1 on any violation')
    .option('--duration <S>', 'seconds of the main phase (deterministic: S × 6000 scheduler steps)', positive('--duration', 86_400, false))
    .option('--steps <N>', 'deterministic: scheduler steps of the main phase (overrides --duration)', positive('--steps', 100_000_000))
    .option('--seed <N>', 'the seed that names the run (default: a random one, printed)', seedArg)
    .option('--seeds <A..B>', 'run every seed from A to B on a piscina pool and summarise', seedsArg)
    .option('--deterministic', 'run under the seeded one-thread scheduler (replays exactly)')
    .option('--json <FILE>', 'also write the report as JSON')
    .option('--faults <MIX>', 'swarm (a seeded subset of injectors), all, or none', faultsArg, 'swarm')
    .option('--inject <LIST>', 'exactly these injectors, comma-separated', injectArg)
    .option('--mutant <NAME>', 'build the machine with a deliberately broken component (the run must fail)', mutantArg)
    .option('--guests <N>', 'guests at boot (default: 2 to 4, from the seed)', positive('--guests', 16))
    .option('--hostile <N>', 'how many of them are hostile', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 15) throw new InvalidArgumentError('--hostile must be an integer from 0 to 15.');
      return n;
    })
    .option('--fault-rate <P>', 'chance per scheduler step (threads: per 10 ms) that an injector fires', positive('--fault-rate', 1, false))
    .option('--blk', 'well-behaved guests also run blkfront against blkback (default: drawn from the seed)')
    .option('--no-blk', 'no real block drivers')
    .option('--net', 'well-behaved guests also run netfront against netback over bridge xenbr0, exchanging verified UDP frames (deterministic mode only)')
    .option('--jobs <N>', 'pool threads for --seeds', positive('--jobs', 256))
    .option('--max-rss-growth <MiB>', 'threads: fail when resident memory grows more than this from boot to the end (soaks)', positive('--max-rss-growth', 1 << 20))
    .option('-v, --verbose', 'every violation, and a line per seed')
    .option('--list', 'list the invariant checkers, fault injectors and mutants, and exit')
    .action(async (o: StressCliOptions) => {
      if (o.list === true) { ctx.out(listing()); return; }
      if (o.seed !== undefined && o.seeds !== undefined) {
        ctx.err('xensim stress: give --seed or --seeds, not both\n');
        ctx.exitCode = 1;
        return;
      }
      if (o.net === true && o.deterministic !== true) {
        ctx.err('xensim stress: --net runs under --deterministic only (the threads workers do not start netback yet)\n');
        ctx.exitCode = 1;
        return;
      }
      await runStressCommand(o, ctx);
    });
}
