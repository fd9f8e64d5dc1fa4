/**
 * xentop's live view, for `xensim top` (reading a status file) and for
 * `--top` on run and bench (reading the Machine directly), and the TTY
 * progress bar of a run.
 *
 * On a terminal the view redraws in place in the alternate screen, as
 * interactive xentop does (summary lines, then the table), and gives the
 * terminal back when it stops; elsewhere it prints `xentop -b` iterations
 * one after another. Neither draws anything in JSON mode or under CI.
 */
import { xentopBatch, xentopSummary, type XentopOptions, type XentopSample } from '../views/xentop.ts';
import { StatsCollector, type DeviceStatsSource, type StatsMachine } from '../../toolstack/stats.ts';

/** The stream a view writes to (process.stdout/stderr fit). */
export interface ViewStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** [isCI env] is true when a CI system runs us (CI set to anything but "", "0" or "false"). */
export function isCI(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env['CI'];
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/** [interactive stream opts] is whether to draw live (redrawn) output: a TTY, not JSON mode, not CI. */
export function interactive(stream: ViewStream, opts: { json?: boolean; env?: NodeJS.ProcessEnv } = {}): boolean {
  return stream.isTTY === true && opts.json !== true && !isCI(opts.env);
}

const ALT_SCREEN_ON = '\x1b[?1049h\x1b[?25l';
const ALT_SCREEN_OFF = '\x1b[?25h\x1b[?1049l';
const HOME_CLEAR = '\x1b[H\x1b[2J';

/** [topScreen sample opts] is one interactive screen: xentop's summary lines, a blank line, the table. */
export function topScreen(sample: XentopSample, opts: XentopOptions = {}): string {
  return `${xentopSummary(sample)}\n${xentopBatch(sample, opts)}`;
}

export interface TopViewOptions extends XentopOptions {
  /** Seconds between refreshes (xentop -d; default 1). */
  readonly delaySec?: number;
  /** Where to draw (default process.stdout). */
  readonly stream?: ViewStream;
  /** Force batch output (xentop -b) even on a TTY. */
  readonly batch?: boolean;
  /** The run writes JSON to stdout: draw nothing. */
  readonly json?: boolean;
  readonly env?: NodeJS.ProcessEnv;
  readonly deviceStats?: DeviceStatsSource;
}

export interface TopView {
  /** Stops refreshing (after one last frame) and gives the terminal back. */
  stop(): Promise<void>;
}

/**
 * [startTopView machine opts] shows xentop's view of `machine` until stop():
 * redrawn in place on a TTY, as `xentop -b` iterations otherwise (for a log),
 * nothing in JSON mode. CPU(%) is measured between refreshes.
 */
export function startTopView(machine: StatsMachine, opts: TopViewOptions = {}): TopView {
  const stream = opts.stream ?? process.stdout;
  if (opts.json === true) return { stop: async () => {} };
  const live = opts.batch !== true && interactive(stream, opts.env === undefined ? {} : { env: opts.env });
  const collector = new StatsCollector(machine, opts.deviceStats === undefined ? {} : { deviceStats: opts.deviceStats });
  let busy: Promise<void> | null = null;
  let stopped = false;
  const frame = (): Promise<void> => {
    busy ??= collector
      .xentop()
      .then((s) => {
        if (stopped && live) return;
        stream.write(live ? HOME_CLEAR + topScreen(s, opts) : xentopBatch(s, opts));
      })
      .catch(() => {})
      .finally(() => {
        busy = null;
      });
    return busy;
  };
  if (live) stream.write(ALT_SCREEN_ON);
  void frame();
  const timer = setInterval(() => void frame(), Math.max(0.05, opts.delaySec ?? 1) * 1000);
  timer.unref();
  return {
    async stop(): Promise<void> {
      clearInterval(timer);
      await busy;
      if (!live) await frame();
      stopped = true;
      if (live) stream.write(ALT_SCREEN_OFF);
    },
  };
}

// ---- progress ---------------------------------------------------------------------

export interface ProgressOptions {
  /** Cells to run. */
  readonly total: number;
  /** Default process.stderr (stdout keeps the results). */
  readonly stream?: ViewStream;
  readonly json?: boolean;
  readonly env?: NodeJS.ProcessEnv;
  /** Clock in ms (tests). */
  readonly now?: () => number;
}

export interface Progress {
  /** True when the bar draws at all. */
  readonly enabled: boolean;
  /** A cell starts: `label` says which (e.g. its sweep point). */
  start(label: string): void;
  /** Progress within the current cell, 0..1. */
  update(fraction: number): void;
  /** The current cell is done. */
  tick(): void;
  /** Clears the bar. */
  done(): void;
}

function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/**
 * [createProgress opts] is a one-line progress bar redrawn with \r, drawn only
 * on a TTY, never in JSON mode or under CI (then every method does nothing).
 */
export function createProgress(o: ProgressOptions): Progress {
  const stream = o.stream ?? process.stderr;
  const enabled = interactive(stream, { ...(o.json === undefined ? {} : { json: o.json }), ...(o.env === undefined ? {} : { env: o.env }) });
  const now = o.now ?? (() => Date.now());
  const t0 = now();
  let done = 0;
  let frac = 0;
  let label = '';
  let drawn = false;
  const draw = (): void => {
    if (!enabled) return;
    const cols = Math.max(40, stream.columns ?? 80);
    const p = o.total > 0 ? Math.min(1, (done + frac) / o.total) : 1;
    const barW = Math.min(30, Math.max(10, cols - 50));
    const fill = Math.round(p * barW);
    const head = `[${'#'.repeat(fill)}${'.'.repeat(barW - fill)}] ${done}/${o.total} ${String(Math.floor(p * 100)).padStart(3)}% ${clock(now() - t0)} `;
    const room = cols - head.length - 1;
    const text = room <= 0 ? '' : label.length > room ? `${label.slice(0, Math.max(0, room - 1))}…` : label;
    stream.write(`\r${head}${text}\x1b[K`);
    drawn = true;
  };
  return {
    enabled,
    start(l: string): void {
      label = l;
      frac = 0;
      draw();
    },
    update(f: number): void {
      frac = Math.max(0, Math.min(1, f));
      draw();
    },
    tick(): void {
      done = Math.min(o.total, done + 1);
      frac = 0;
      draw();
    },
    done(): void {
      if (enabled && drawn) stream.write('\r\x1b[K');
      drawn = false;
    },
  };
}
