/**
 * `xensim top [-b] [-d SEC] [-i N] [-n] [-x] [-v] [-r] [-f] [-z]`: xentop's
 * view of a running machine (one started by `xensim boot` in another
 * process), read from the status file it publishes every second
 * (cli/status.ts). The switches are xentop's own.
 *
 * -b prints `xentop -b` iterations; without it a terminal gets the view
 * redrawn in place (xentop's summary lines and table) until -i iterations
 * or Ctrl-C. Without a terminal, or under CI, it prints as -b does.
 * CPU(%) comes from the machine's last two samples, so it is meaningful
 * from the first iteration on.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { readStatus, statusSample } from '../status.ts';
import { interactive, topScreen } from '../report/live.ts';
import { xentopBatch, type XentopOptions } from '../views/xentop.ts';
import type { CliContext } from '../main.ts';
import { locate, statusOptions, type StatusLocation } from './list.ts';

interface TopOptions extends StatusLocation {
  readonly batch?: boolean;
  readonly delay: number;
  readonly iterations?: number;
  readonly networks?: boolean;
  readonly vbds?: boolean;
  readonly vcpus?: boolean;
  readonly repeatHeader?: boolean;
  readonly fullName?: boolean;
  readonly dom0First?: boolean;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!/^[0-9]*\.?[0-9]+$/.test(v.trim()) || !(n > 0) || n > 86400) throw new InvalidArgumentError('expected seconds above 0, such as 1 or 0.5.');
  return n;
}
function count(v: string): number {
  const n = Number(v);
  if (!/^[0-9]+$/.test(v.trim()) || n < 1) throw new InvalidArgumentError('expected a whole number of iterations, 1 or more.');
  return n;
}

const ALT_ON = '\x1b[?1049h\x1b[?25l';
const ALT_OFF = '\x1b[?25h\x1b[?1049l';

async function top(ctx: CliContext, o: TopOptions): Promise<void> {
  const where = locate(o);
  if (!where.ok) {
    ctx.err(`${where.error.message}\n`);
    ctx.exitCode = 1;
    return;
  }
  const view: XentopOptions = {
    networks: o.networks === true, vbds: o.vbds === true, vcpus: o.vcpus === true,
    repeatHeader: o.repeatHeader === true, fullName: o.fullName === true, dom0First: o.dom0First === true,
  };
  // Redraw only when our stdout is a terminal (ctx.out writes there when run from the shell).
  const live = o.batch !== true && interactive(process.stdout);
  let interrupted = false;
  const onSigint = (): void => { interrupted = true; wake?.(); };
  let wake: (() => void) | undefined;
  process.once('SIGINT', onSigint);
  if (live) ctx.out(ALT_ON);
  try {
    for (let i = 0; o.iterations === undefined || i < o.iterations; i++) {
      if (i > 0) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, o.delay * 1000);
          wake = () => { clearTimeout(t); resolve(); };
        });
      }
      if (interrupted) break;
      const st = readStatus(where.value);
      if (!st.ok) {
        if (live) ctx.out(ALT_OFF);
        ctx.err(`${st.error.message}\n`);
        ctx.exitCode = 1;
        return;
      }
      const sample = statusSample(st.value);
      ctx.out(live ? `\x1b[H\x1b[2J${topScreen(sample, view)}` : xentopBatch(sample, view));
    }
    if (live) ctx.out(ALT_OFF);
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** Registers `xensim top`. */
export function registerTop(program: Command, ctx: CliContext): void {
  statusOptions(
    program
      .command('top')
      .description("xentop's view of a running machine (started with `xensim boot`)")
      .option('-b, --batch', 'batch mode: print iterations instead of redrawing the screen')
      .option('-d, --delay <SEC>', 'seconds between updates', seconds, 3)
      .option('-i, --iterations <N>', 'stop after N updates', count)
      .option('-n, --networks', 'per-vif lines')
      .option('-x, --vbds', 'per-VBD lines')
      .option('-v, --vcpus', 'per-vcpu lines')
      .option('-r, --repeat-header', 'repeat the table header before each domain')
      .option('-f, --full-name', 'full domain names')
      .option('-z, --dom0-first', 'Domain-0 first, the others sorted after it'),
  ).action((o: TopOptions) => top(ctx, o));
}
