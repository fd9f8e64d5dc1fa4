/**
 * `xensim config show FILE`: parse a configuration file and print it as JSON.
 *
 *   FILE.cfg         an xl domain configuration → the DomainConfig
 *   FILE.fio         an fio job file → the typed jobs
 *   FILE.yaml|.yml   a scenario → the validated Scenario (and its sweep points with --sweep),
 *                    read by the same loader as `xensim run`, so dom0's blkback
 *                    settings (machine.dom0.blkback) and their sweep axes are
 *                    shown as run would use them
 *
 * Warnings go to stderr; a file with errors prints them on stderr and exits 1.
 */
import type { Command } from 'commander';
import { readFioJobFile } from '../config/fio-job.ts';
import type { Scenario } from '../config/scenario.ts';
import { loadScenario, type BlkbackSettings } from '../run/load-scenario.ts';
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

/** The scenario with dom0's blkback settings in their place, machine.dom0.blkback. */
function withBlkback(s: Scenario, blkback: BlkbackSettings): unknown {
  return { ...s, machine: { ...s.machine, dom0: { ...s.machine.dom0, blkback } } };
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
      const r = loadScenario(file, seed === null ? {} : { seed });
      if (!r.ok) return fail(ctx, r.error.message);
      for (const w of r.value.warnings) ctx.err(`warning: ${w}\n`);
      if (!opts.sweep) return json(ctx, withBlkback(r.value.parsed.scenario, r.value.blkback));
      return json(ctx, r.value.points.map((p) => ({ point: p.point, scenario: withBlkback(p.scenario, p.blkback) })));
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
    .option('-s, --seed <n>', 'seed for generated values such as vif MAC addresses (.cfg), or the scenario\'s seed (.yaml)')
    .option('--sweep', 'for a scenario: print every sweep combination')
    .action((file: string, opts: ShowOptions) => show(ctx, file, opts));
}
