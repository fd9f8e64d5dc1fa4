/**
 * `xensim config show FILE`: parse a configuration file and print it as JSON.
 *
 *   FILE.cfg         an xl domain configuration → the DomainConfig
 *   FILE.fio         an fio job file → the typed jobs
 *   FILE.yaml|.yml   a scenario → the validated Scenario (and its sweep points with --sweep)
 *
 * Warnings go to stderr; a file with errors prints them on stderr and exits 1.
 */
import type { Command } from 'commander';
import { readFioJobFile } from '../config/fio-job.ts';
import { expandSweep, formatIssue, readScenarioFile } from '../config/scenario.ts';
import { seededRng } from '../config/vifspec.ts';
import { formatDiagnostic, readXlCfgFile } from '../config/xlcfg.ts';
import type { CliContext } from '../main.ts';

const KINDS = ['cfg', 'fio', 'scenario'] as const;
type Kind = (typeof KINDS)[number];

function kindOf(file: string): Kind | null {
  if (/\.cfg$/i.test(file)) return 'cfg';
  if (/\.fio$/i.test(file)) return 'fio';
  if (/\.ya?ml$/i.test(file)) return 'scenario';
  return null;
}

interface ShowOptions {
  readonly type?: string;
  readonly seed?: string;
  readonly sweep?: boolean;
}

function json(ctx: CliContext, v: unknown): void {
  ctx.out(`${JSON.stringify(v, null, 2)}\n`);
}

function fail(ctx: CliContext, message: string): void {
  ctx.err(message.endsWith('\n') ? message : `${message}\n`);
  ctx.exitCode = 1;
}

function show(ctx: CliContext, file: string, opts: ShowOptions): void {
  let kind: Kind | null = kindOf(file);
  if (opts.type !== undefined) {
    if (!(KINDS as readonly string[]).includes(opts.type)) return fail(ctx, `error: --type must be one of ${KINDS.join(', ')}, got ${opts.type}`);
    kind = opts.type as Kind;
  }
  if (kind === null) return fail(ctx, `error: cannot tell what ${file} is from its name; use --type ${KINDS.join('|')}`);
  let seed: number | null = null;
  if (opts.seed !== undefined) {
    if (!/^[0-9]+$/.test(opts.seed) || Number(opts.seed) > 0xffff_ffff) return fail(ctx, `error: --seed must be an integer in 0..4294967295, got ${opts.seed}`);
    seed = Number(opts.seed);
  }
  switch (kind) {
    case 'cfg': {
      const r = readXlCfgFile(file, seed === null ? {} : { rng: seededRng(seed) });
      if (!r.ok) return fail(ctx, r.error.message);
      for (const w of r.value.warnings) ctx.err(`${formatDiagnostic(w)}\n`);
      return json(ctx, r.value.config);
    }
    case 'fio': {
      const r = readFioJobFile(file);
      if (!r.ok) return fail(ctx, r.error.message);
      for (const w of r.value.warnings) ctx.err(`warning: ${w}\n`);
      return json(ctx, r.value.jobs);
    }
    case 'scenario': {
      const r = readScenarioFile(file);
      if (!r.ok) return fail(ctx, r.error.message);
      for (const w of r.value.warnings) ctx.err(`warning: ${formatIssue(w)}\n`);
      if (!opts.sweep) return json(ctx, r.value.scenario);
      const points = expandSweep(r.value);
      if (!points.ok) return fail(ctx, points.error.message);
      return json(ctx, points.value);
    }
  }
}

/** Registers `xensim config ...`. */
export function registerConfig(program: Command, ctx: CliContext): void {
  const config = program.command('config').description('read and check configuration files');
  config
    .command('show')
    .description('parse FILE (.cfg xl domain config, .fio job file, .yaml scenario) and print it as JSON')
    .argument('<file>', 'the file to read')
    .option('-t, --type <kind>', `what FILE is, when its name does not tell (${KINDS.join('|')})`)
    .option('-s, --seed <n>', 'seed for generated values such as vif MAC addresses (.cfg)')
    .option('--sweep', 'for a scenario: print every sweep combination')
    .action((file: string, opts: ShowOptions) => show(ctx, file, opts));
}
