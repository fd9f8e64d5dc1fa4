/**
 * What `xensim run` and `xensim bench` share once they know their cells:
 * pick this shard's cells, run them one at a time (so timings do not disturb
 * each other), each on a fresh machine, with a progress bar on a TTY, then
 * write and print the results (cli/report/output.ts emitResults).
 *
 * While a cell runs, its dom0 serves xenstored on a Unix socket in a fresh
 * temporary directory and publishes the status file beside it: the run says
 * `export XENSTORED_PATH=...` on stderr once, so `xenstore-ls`, `xensim list`
 * and `xensim top` work against it from another terminal.
 *
 * Exit code: 1 when a cell failed or a job reported an error, else 0.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CliContext } from '../main.ts';
import { createProgress, type ViewStream } from '../report/live.ts';
import { emitResults } from '../report/output.ts';
import { newResults, pointLabel, type Cell, type ScenarioInfo, type ShardInfo, type SimMachine, type XensimResults } from '../report/results.ts';
import { shardCells } from '../report/shard.ts';
import { runCell } from './cell.ts';
import type { CellPlan } from './plan.ts';

/** One cell to run. */
export interface CellJob {
  readonly index: number;
  readonly point: Readonly<Record<string, unknown>>;
  readonly plan: CellPlan;
}

export interface DriverOptions {
  readonly command: 'run' | 'bench';
  readonly info: ScenarioInfo;
  /** The machine as written (before any sweep). */
  readonly machine: SimMachine;
  readonly json?: string;
  readonly html?: string;
  readonly shard?: ShardInfo;
  readonly top?: boolean;
  /** Serve xenstored on a socket while cells run (default true). */
  readonly xenstore?: boolean;
  /** Per-cell time limit in seconds (default: from the workloads' estimate). */
  readonly timeoutSec?: number;
  /** For tests: the environment progress and CI detection read. */
  readonly env?: NodeJS.ProcessEnv;
}

/** [jobErrors doc] counts fio jobs that reported an error. */
function jobErrors(doc: XensimResults): number {
  let n = 0;
  for (const c of doc.cells) for (const b of c.block) for (const j of b.fio.jobs) if (j.error !== 0) n++;
  return n;
}

/** [runCells ctx cells o] runs this shard's cells and emits the document; returns it (null when nothing ran). */
export async function runCells(ctx: CliContext, cells: readonly CellJob[], o: DriverOptions): Promise<XensimResults | null> {
  const date = new Date();
  let mine: readonly CellJob[] = cells;
  if (o.shard !== undefined) {
    const s = shardCells(cells, o.shard);
    if (!s.ok) {
      ctx.err(`xensim ${o.command}: ${s.error.message}\n`);
      ctx.exitCode = 1;
      return null;
    }
    mine = s.value.map((x) => x.cell);
  }
  const json = o.json === '-';
  const notes = new Set<string>();
  for (const c of mine) for (const n of c.plan.notes) notes.add(n);
  for (const n of notes) ctx.err(`note: ${n}\n`);

  let dir: string | null = null;
  let socket: string | undefined;
  if (o.xenstore !== false) {
    dir = mkdtempSync(join(tmpdir(), 'xensim-'));
    socket = join(dir, 'xenstored.sock');
    ctx.err(`export XENSTORED_PATH=${socket}\n`);
  }
  // Both draw through the command's own output, on the terminal our stdout/stderr are.
  const stdout: ViewStream = { write: (t: string) => ctx.out(t), isTTY: process.stdout.isTTY === true, columns: process.stdout.columns };
  const stderr: ViewStream = { write: (t: string) => ctx.err(t), isTTY: process.stderr.isTTY === true, columns: process.stderr.columns };
  const progress = createProgress({ total: mine.length, stream: stderr, json: json || o.top === true, ...(o.env === undefined ? {} : { env: o.env }) });
  const done: Cell[] = [];
  // Ctrl-C: the workers die with the process; leave no socket directory behind.
  const onSignal = (): void => {
    progress.done();
    if (dir !== null) rmSync(dir, { recursive: true, force: true });
    ctx.err(`xensim ${o.command}: interrupted after ${done.length} of ${mine.length} cell(s); no results written\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  try {
    for (const c of mine) {
      progress.start(`cell ${c.index}: ${pointLabel(c.point)}`);
      const cell = await runCell(c.plan, {
        index: c.index,
        point: c.point,
        ...(socket === undefined ? {} : { socket }),
        ...(o.top === true ? { top: true, topStream: stdout } : {}),
        json,
        progress: (f) => progress.update(f),
        log: (l) => ctx.err(`${l}\n`),
        ...(o.timeoutSec === undefined ? {} : { timeoutSec: o.timeoutSec }),
      });
      done.push(cell);
      progress.tick();
      if (!progress.enabled && !json && mine.length > 1) {
        ctx.err(`xensim ${o.command}: cell ${cell.index} (${pointLabel(cell.point)}): ${cell.status}${cell.error === null ? '' : `: ${cell.error}`} in ${(cell.duration_ms / 1000).toFixed(1)} s\n`);
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    progress.done();
    if (dir !== null) rmSync(dir, { recursive: true, force: true });
  }
  const doc = newResults({ command: o.command, scenario: o.info, machine: o.machine, date, ...(o.shard === undefined ? {} : { shard: o.shard }), cells: done });
  emitResults(ctx, doc, { ...(o.json === undefined ? {} : { json: o.json }), ...(o.html === undefined ? {} : { html: o.html }) });
  if (done.some((c) => c.status === 'failed') || jobErrors(doc) > 0) ctx.exitCode = 1;
  return doc;
}
