/**
 * The status channel between a running `xensim boot` (or run/bench) and
 * `xensim list` / `xensim top`, which run in other processes and so cannot
 * see its Machine.
 *
 * The running process writes a small JSON file next to its xenstored socket,
 * `<XENSTORED_PATH>.status.json`, once a second: the latest xentop sample
 * of every domain, the one before it (for CPU%), its pid and when it wrote.
 * Writes are atomic (write a temporary file, then rename), so a reader never
 * sees half a file. The file is removed when the process exits cleanly.
 *
 * Readers find it from --status FILE, else from XENSTORED_PATH (or
 * --xenstore-socket), else by looking for live machines in the temporary
 * directory where `xensim boot` makes its socket. A file whose writer has
 * died (its pid is gone, or it has not written for several intervals) is
 * reported as stale rather than shown as if the machine were alive.
 *
 * A file rather than a socket: no server to keep alive in the booted
 * process, nothing to connect to, and `cat` shows what the tools see.
 */
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { err, ok, type Result } from '../shared/result.ts';
import { StatsCollector, type DeviceStatsSource, type MachineSample, type StatsMachine } from '../toolstack/stats.ts';
import { xentopFromJson, xentopToJson, type XentopJson } from './report/results.ts';
import type { XentopSample } from './views/xentop.ts';
import type { LibxlDomainConfigJson } from '../toolstack/libxl-config.ts';

export const STATUS_FORMAT = 'xensim-status';
export const STATUS_FORMAT_VERSION = 1;
export const STATUS_INTERVAL_MS = 1000;
/** A status older than this many intervals (and at least 5 s) is stale. */
const STALE_INTERVALS = 5;

export interface StatusDoc {
  readonly format: typeof STATUS_FORMAT;
  readonly format_version: typeof STATUS_FORMAT_VERSION;
  /** The writing process. */
  readonly pid: number;
  readonly xenstored_path: string;
  readonly interval_ms: number;
  /** Wall clock of this write, ms since the epoch. */
  readonly updated_ms: number;
  /** The latest sample. */
  readonly sample: XentopJson;
  /** CPU ns of each domain at the previous sample, and µs between the two; null on the first write. */
  readonly prev: { readonly domains: readonly { readonly domid: number; readonly cpu_ns: number }[]; readonly elapsed_us: number } | null;
  /** Domains whose CPU time is measured (the rest show 0). */
  readonly cpu_measured: readonly number[];
  /** Every domain's configuration as `xl list -l` prints it; absent from writers that do not know it. */
  readonly configs?: readonly { readonly domid: number; readonly config: LibxlDomainConfigJson }[];
}

/** [statusPathFor socket] is where the process serving xenstored on `socket` publishes its status. */
export function statusPathFor(socket: string): string {
  return `${socket}.status.json`;
}

export function statusDocOf(
  socket: string, cur: MachineSample, prev: MachineSample | null, time: string, intervalMs: number,
  configs?: readonly { readonly domid: number; readonly config: LibxlDomainConfigJson }[],
): StatusDoc {
  const elapsedUs = prev === null ? 0 : (cur.monoNs - prev.monoNs) / 1000;
  return {
    format: STATUS_FORMAT,
    format_version: STATUS_FORMAT_VERSION,
    pid: process.pid,
    xenstored_path: socket,
    interval_ms: intervalMs,
    updated_ms: cur.wallMs,
    sample: xentopToJson({ time, node: cur.node, domains: cur.domains }),
    prev: prev === null || !(elapsedUs > 0) ? null : { domains: prev.domains.map((d) => ({ domid: d.domid, cpu_ns: Number(d.cpuNs) })), elapsed_us: elapsedUs },
    cpu_measured: [...cur.cpuMeasured],
    ...(configs !== undefined ? { configs } : {}),
  };
}

export interface StatusWriter {
  /** The status file. */
  readonly path: string;
  /** Writes one status now (the timer also does, every interval). */
  writeNow(): Promise<void>;
  /** Stops writing and removes the file. */
  stop(): void;
}

export interface StatusWriterOptions {
  readonly intervalMs?: number;
  readonly deviceStats?: DeviceStatsSource;
  /** Where to publish (default statusPathFor(socket)). */
  readonly path?: string;
}

/**
 * [startStatusWriter machine socket log opts] publishes the machine's status
 * for `xensim list` and `xensim top` until stop() or process exit. The timer
 * does not keep the process alive, and a sample that fails (the machine
 * shutting down) is skipped.
 */
export function startStatusWriter(machine: StatsMachine, socket: string, log: (line: string) => void = () => {}, opts: StatusWriterOptions = {}): StatusWriter {
  const path = opts.path ?? statusPathFor(socket);
  const intervalMs = opts.intervalMs ?? STATUS_INTERVAL_MS;
  const collector = new StatsCollector(machine, opts.deviceStats === undefined ? {} : { deviceStats: opts.deviceStats });
  let prev: MachineSample | null = null;
  let busy: Promise<void> | null = null;
  let stopped = false;
  const tmp = `${path}.${process.pid}.tmp`;

  const writeOnce = async (): Promise<void> => {
    const cur = await collector.sample();
    if (stopped) return;
    const d = new Date(cur.wallMs);
    const time = [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, '0')).join(':');
    writeFileSync(tmp, `${JSON.stringify(statusDocOf(socket, cur, prev, time, intervalMs, machine.domainConfigs?.()))}\n`);
    renameSync(tmp, path); // atomic: readers see the old file or the new one
    prev = cur;
  };
  const writeNow = (): Promise<void> => {
    busy ??= writeOnce().catch(() => {}).finally(() => { busy = null; });
    return busy;
  };
  const remove = (): void => {
    stopped = true;
    rmSync(path, { force: true });
    rmSync(tmp, { force: true });
  };
  const timer = setInterval(() => void writeNow(), intervalMs);
  timer.unref();
  process.once('exit', remove);
  void writeNow();
  log(`xensim: status for \`xensim list\` and \`xensim top\` in ${path}`);
  return {
    path,
    writeNow,
    stop(): void {
      clearInterval(timer);
      process.off('exit', remove);
      remove();
    },
  };
}

// ---- reading ---------------------------------------------------------------------

/** [statusSample doc] is what xentopBatch() prints for a status: its sample, with CPU(%) against the previous one. */
export function statusSample(doc: StatusDoc): XentopSample {
  const s = xentopFromJson(doc.sample);
  if (doc.prev === null) return s;
  return { ...s, prev: { domains: doc.prev.domains.map((d) => ({ domid: d.domid, cpuNs: d.cpu_ns })), elapsedUs: doc.prev.elapsed_us } };
}

export type StatusError =
  | { readonly kind: 'no-machine'; readonly message: string }
  | { readonly kind: 'several-machines'; readonly paths: readonly string[]; readonly message: string }
  | { readonly kind: 'missing'; readonly path: string; readonly message: string }
  | { readonly kind: 'unreadable'; readonly path: string; readonly message: string }
  | { readonly kind: 'stale'; readonly path: string; readonly message: string };

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isStatusDoc(v: unknown): v is StatusDoc {
  if (typeof v !== 'object' || v === null) return false;
  const d = v as Partial<StatusDoc>;
  return d.format === STATUS_FORMAT && typeof d.pid === 'number' && typeof d.updated_ms === 'number' && typeof d.sample === 'object' && d.sample !== null && Array.isArray(d.sample.domains);
}

/** [readStatus path now] reads a status file and checks its writer is alive. */
export function readStatus(path: string, now = Date.now()): Result<StatusDoc, StatusError> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      return err({ kind: 'missing', path, message: `xensim: no status at ${path}: is \`xensim boot\` running there? (it publishes ${path} while it runs)` });
    }
    return err({ kind: 'unreadable', path, message: `xensim: cannot read ${path}: ${code ?? String(e)}` });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return err({ kind: 'unreadable', path, message: `xensim: ${path} is not a status file: ${e instanceof Error ? e.message : String(e)}` });
  }
  if (!isStatusDoc(doc)) return err({ kind: 'unreadable', path, message: `xensim: ${path} is not an ${STATUS_FORMAT} file` });
  if (doc.format_version !== STATUS_FORMAT_VERSION) {
    return err({ kind: 'unreadable', path, message: `xensim: ${path} has status format ${String(doc.format_version)}; this xensim reads ${STATUS_FORMAT_VERSION}` });
  }
  const ageMs = now - doc.updated_ms;
  if (!pidAlive(doc.pid)) {
    return err({ kind: 'stale', path, message: `xensim: the machine at ${doc.xenstored_path} is not running: its process (pid ${doc.pid}) has exited; ${path} is left over` });
  }
  if (ageMs > Math.max(5000, STALE_INTERVALS * doc.interval_ms)) {
    return err({ kind: 'stale', path, message: `xensim: the machine at ${doc.xenstored_path} has not updated its status for ${Math.round(ageMs / 1000)} s (pid ${doc.pid}); is it hung or stopped?` });
  }
  return ok(doc);
}

export interface FindStatusOptions {
  /** --status FILE. */
  readonly statusFile?: string;
  /** --xenstore-socket PATH. */
  readonly socket?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Where `xensim boot` makes its temporary socket directories (default os.tmpdir()). */
  readonly tmp?: string;
}

/**
 * [findStatus opts] is the status file to read: the one named, else the one
 * for XENSTORED_PATH, else the only live machine under the temporary directory.
 */
export function findStatus(o: FindStatusOptions = {}): Result<string, StatusError> {
  if (o.statusFile !== undefined) return ok(o.statusFile);
  const socket = o.socket ?? (o.env ?? process.env)['XENSTORED_PATH'];
  if (socket !== undefined && socket !== '') return ok(statusPathFor(socket));
  const dir = o.tmp ?? tmpdir();
  let entries: string[];
  try {
    entries = readdirSync(dir).filter((e) => e.startsWith('xensim-'));
  } catch {
    entries = [];
  }
  const live: string[] = [];
  for (const e of entries) {
    const p = statusPathFor(join(dir, e, 'xenstored.sock'));
    if (existsSync(p) && readStatus(p).ok) live.push(p);
  }
  if (live.length === 1) return ok(live[0] as string);
  if (live.length === 0) {
    return err({ kind: 'no-machine', message: 'xensim: no running machine found: start one with `xensim boot` and run this with the XENSTORED_PATH it prints (or --status FILE)' });
  }
  return err({
    kind: 'several-machines',
    paths: live,
    message: `xensim: ${live.length} machines are running; choose one with XENSTORED_PATH=<socket> or --status FILE:\n${live.map((p) => `  ${p}`).join('\n')}`,
  });
}
