/**
 * What `xensim run` reads: a scenario file (cli/config/scenario.ts), plus
 * the one setting that scenario.ts does not know yet and a run needs —
 * how dom0's blkback moves data:
 *
 *   machine:
 *     dom0:
 *       blkback:
 *         mode: persistent          # persistent | map | copy (default persistent)
 *         max_indirect_segments: 256  # feature-max-indirect-segments, 0..256 (0 = no indirect)
 *         max_queues: 4             # multi-queue-max-queues, 1..16
 *         max_ring_page_order: 4    # max-ring-page-order, 0..4
 *   sweep:
 *     machine.dom0.blkback.mode: [persistent, map, copy]
 *
 * The extension is validated here, with the same file:line:column messages,
 * and then cut out of the text (its characters replaced by blanks, so every
 * other line and column stays where it was) before scenario.ts validates the
 * rest. The sweep is the cross product of every axis in the order written:
 * scenario axes and blkback axes together, the first varying slowest.
 *
 * When scenario.ts learns `machine.dom0.blkback` itself, this layer goes.
 *
 * `--seed N` replaces the scenario's `seed:` in the text before parsing, so
 * everything the seed decides (generated MACs, frame placement, fio's random
 * offsets) follows it, and the digest shards share changes with it.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, isMap, isNode, isScalar, isSeq, parseDocument, type Document, type Pair, type YAMLMap } from 'yaml';
import { BLKBACK_MODES, type BlkbackMode } from '../../dom0/blkback/blkback.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { expandSweep, formatIssue, parseScenario, type ParsedScenario, type Scenario, type ScenarioIssue, type SweepAxis } from '../config/scenario.ts';
import { closest } from '../config/xlcfg.ts';
import { scenarioDigest, scenarioInfo, type ScenarioInfo } from '../report/results.ts';

/** dom0's blkback settings a run hands to the dom0 worker (toolstack/worker-data.ts DriverOptions.blkback). */
export interface BlkbackSettings {
  readonly mode: BlkbackMode;
  readonly max_indirect_segments: number | null;
  readonly max_queues: number | null;
  readonly max_ring_page_order: number | null;
}
export const BLKBACK_DEFAULTS: BlkbackSettings = { mode: 'persistent', max_indirect_segments: null, max_queues: null, max_ring_page_order: null };

const BLKBACK_KEYS = ['mode', 'max_indirect_segments', 'max_queues', 'max_ring_page_order'] as const;
type BlkbackKey = (typeof BLKBACK_KEYS)[number];
const BLKBACK_LIMITS: Readonly<Record<Exclude<BlkbackKey, 'mode'>, readonly [number, number]>> = {
  max_indirect_segments: [0, 256],
  max_queues: [1, 16],
  max_ring_page_order: [0, 4],
};
export const BLKBACK_PATH = 'machine.dom0.blkback';

/** One cell of the sweep: its settings and the scenario it runs. */
export interface RunPoint {
  /** Place in the full sweep. */
  readonly index: number;
  readonly point: Readonly<Record<string, unknown>>;
  readonly scenario: Scenario;
  readonly blkback: BlkbackSettings;
}

export interface LoadedScenario {
  readonly parsed: ParsedScenario;
  /** machine.dom0.blkback as written (defaults filled in), before any sweep. */
  readonly blkback: BlkbackSettings;
  readonly info: ScenarioInfo;
  /** Every sweep axis, in the order written. */
  readonly axes: readonly SweepAxis[];
  readonly points: readonly RunPoint[];
  /** Printable warnings (file:line:col: path: message). */
  readonly warnings: readonly string[];
}

export interface LoadError {
  readonly kind: 'load-scenario';
  readonly message: string;
}

export interface LoadOptions {
  /** --seed: replaces the scenario's seed. */
  readonly seed?: number;
  /** Reads the scenario and the files it names (default: fs). */
  readonly readFile?: (path: string) => string;
}

/** A node's plain value (null for none). */
function plain(doc: Document, n: unknown): unknown {
  return isNode(n) ? n.toJS(doc) : n ?? null;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function describe(v: unknown): string {
  if (v === undefined || v === null) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `"${v}"`;
  return `${typeof v} ${String(v)}`;
}

/** Sweep keys as scenario.ts splits them: "a.0.b" or "a[0].b". */
function normalKey(key: string): string {
  return key.replace(/\[(\d+)\]/g, '.$1').split('.').filter((s) => s !== '').join('.');
}

function pairOf(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((p) => isScalar(p.key) && String(p.key.value) === key) as Pair | undefined;
}

function rangeOf(n: unknown): readonly [number, number, number] | null {
  if (typeof n !== 'object' || n === null || !('range' in n)) return null;
  const r = (n as { range?: unknown }).range;
  return Array.isArray(r) && r.length === 3 ? (r as [number, number, number]) : null;
}

/** Text with ranges blanked: every character but line breaks becomes a space, so positions hold. */
class Blanker {
  /** UTF-16 units, as yaml's ranges count. */
  private readonly units: string[];
  constructor(text: string) { this.units = text.split(''); }
  blank(start: number, end: number): void {
    for (let i = start; i < end && i < this.units.length; i++) if (this.units[i] !== '\n' && this.units[i] !== '\r') this.units[i] = ' ';
  }
  /** Removes one pair of a map, and the comma after it in a flow map. */
  blankPair(p: Pair, text: string): void {
    const k = rangeOf(p.key);
    if (k === null) return;
    const v = rangeOf(p.value);
    const eol = text.indexOf('\n', k[0]);
    // `key:` with no value: up to the end of the line (the colon included).
    let end = v !== null ? v[1] : eol < 0 ? text.length : eol;
    let j = end;
    while (j < text.length && /\s/.test(text[j] ?? '')) j++;
    if (text[j] === ',') end = j + 1;
    this.blank(k[0], end);
  }
  text(): string { return this.units.join(''); }
}

/** Places and collects issues of the extension. */
class Issues {
  readonly list: ScenarioIssue[] = [];
  constructor(private readonly file: string, private readonly lc: LineCounter) {}
  at(node: unknown, path: string, message: string): void {
    const r = rangeOf(node);
    const p = r === null ? { line: 0, col: 0 } : this.lc.linePos(r[0]);
    this.list.push({ file: this.file, line: p.line, column: p.col, path, message });
  }
}

/** [checkBlkbackValue key v] is v checked as blkback's `key`, or why not. */
function checkBlkbackValue(key: BlkbackKey, v: unknown): { value: BlkbackMode | number } | { error: string } {
  if (key === 'mode') {
    if (typeof v === 'string' && (BLKBACK_MODES as readonly string[]).includes(v)) return { value: v as BlkbackMode };
    const guess = typeof v === 'string' ? closest(v, BLKBACK_MODES) : null;
    return { error: `expected one of ${BLKBACK_MODES.join(', ')}, got ${describe(v)}${guess === null ? '' : `; did you mean ${guess}?`}` };
  }
  const [lo, hi] = BLKBACK_LIMITS[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) return { error: `expected an integer in ${lo}..${hi}, got ${describe(v)}` };
  return { value: v };
}

function withSetting(b: BlkbackSettings, key: BlkbackKey, value: BlkbackMode | number): BlkbackSettings {
  return key === 'mode' ? { ...b, mode: value as BlkbackMode } : { ...b, [key]: value as number };
}

/** [checkBlkbackMap v] reads a whole `blkback:` mapping; issues go to `report`. */
function checkBlkbackMap(v: unknown, report: (key: string | null, message: string, atKey: boolean) => void): BlkbackSettings | null {
  if (!isRecord(v)) {
    report(null, `expected blkback settings (a mapping with keys ${BLKBACK_KEYS.join(', ')}), got ${describe(v)}`, false);
    return null;
  }
  let out = BLKBACK_DEFAULTS;
  let good = true;
  for (const [k, x] of Object.entries(v)) {
    if (!(BLKBACK_KEYS as readonly string[]).includes(k)) {
      const guess = closest(k, BLKBACK_KEYS);
      report(k, `unknown key \`${k}'${guess === null ? '' : `; did you mean \`${guess}'?`} (expected ${BLKBACK_KEYS.join(', ')})`, true);
      good = false;
      continue;
    }
    const c = checkBlkbackValue(k as BlkbackKey, x);
    if ('error' in c) {
      report(k, c.error, false);
      good = false;
    } else out = withSetting(out, k as BlkbackKey, c.value);
  }
  return good ? out : null;
}

/** A sweep axis over blkback: the whole mapping, or one key of it. */
interface BlkbackAxis {
  readonly path: string;
  readonly key: BlkbackKey | null;
  readonly values: readonly unknown[];
}

/** Replaces (or adds) the top-level `seed:` so the scenario parses with it. */
function withSeed(doc: Document, text: string, seed: number): string {
  const root = doc.contents;
  if (!isMap(root)) return text;
  const p = pairOf(root, 'seed');
  const v = rangeOf(p?.value);
  if (p !== undefined && v !== null) return `${text.slice(0, v[0])}${seed}${text.slice(v[1])}`;
  if (p !== undefined) {
    const k = rangeOf(p.key);
    if (k !== null) {
      const eol = text.indexOf('\n', k[0]);
      const end = eol < 0 ? text.length : eol;
      return `${text.slice(0, k[0])}seed: ${seed}${text.slice(end)}`;
    }
  }
  // No seed yet: a new last line keeps every other position.
  if (root.flow) return text; // a one-line flow document: nothing sensible to add to
  return `${text}${text.endsWith('\n') || text === '' ? '' : '\n'}seed: ${seed}\n`;
}

/**
 * [loadScenario file opts] reads, validates and expands a scenario file with
 * xensim run's extension, or lists every problem (file:line:col: path: what
 * was expected).
 */
export function loadScenario(file: string, opts: LoadOptions = {}): Result<LoadedScenario, LoadError> {
  const read = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  let text: string;
  try {
    text = read(file);
  } catch (x) {
    const e = x as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'No such file or directory' : e.code === 'EACCES' ? 'Permission denied' : e.code === 'EISDIR' ? 'Is a directory' : (e.code ?? String(x));
    return err({ kind: 'load-scenario', message: `${file}: cannot read the scenario: ${why}` });
  }
  return loadScenarioText(text, file, opts);
}

/** [loadScenarioText text file opts] is loadScenario on text already read (file names it and anchors relative paths). */
export function loadScenarioText(text: string, file: string, opts: LoadOptions = {}): Result<LoadedScenario, LoadError> {
  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const fail = (issues: readonly ScenarioIssue[], more = ''): Result<LoadedScenario, LoadError> =>
    err({ kind: 'load-scenario', message: [...issues.map(formatIssue), ...(more === '' ? [] : [more])].join('\n') });

  let lc = new LineCounter();
  let doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    // scenario.ts words YAML syntax errors with their places.
    const r = parseScenario(text, { file, readFile });
    return r.ok ? fail([{ file, line: 0, column: 0, path: '', message: 'YAML syntax error' }]) : err({ kind: 'load-scenario', message: r.error.message });
  }
  if (opts.seed !== undefined) {
    text = withSeed(doc, text, opts.seed);
    lc = new LineCounter();
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  }

  const issues = new Issues(file, lc);
  const blanker = new Blanker(text);
  let base = BLKBACK_DEFAULTS;
  const root = doc.contents;

  // machine.dom0.blkback
  const machine = isMap(root) ? pairOf(root, 'machine') : undefined;
  const dom0 = machine !== undefined && isMap(machine.value) ? pairOf(machine.value, 'dom0') : undefined;
  const blk = dom0 !== undefined && isMap(dom0.value) ? pairOf(dom0.value, 'blkback') : undefined;
  if (blk !== undefined) {
    const v = plain(doc, blk.value);
    const node = blk.value;
    const b = checkBlkbackMap(v, (key, message, atKey) => {
      const pair = key === null || !isMap(node) ? undefined : pairOf(node, key);
      const at = pair === undefined ? node ?? blk.key : atKey ? pair.key : pair.value ?? pair.key;
      issues.at(at, key === null ? BLKBACK_PATH : `${BLKBACK_PATH}.${key}`, message);
    });
    if (b !== null) base = b;
    // Cut it out; a map left empty goes too (scenario.ts wants a mapping, not null).
    if (dom0 !== undefined && isMap(dom0.value) && dom0.value.items.length === 1 && machine !== undefined && isMap(machine.value)) {
      if (machine.value.items.length === 1) blanker.blankPair(machine, text);
      else blanker.blankPair(dom0, text);
    } else blanker.blankPair(blk, text);
  }

  // sweep axes over blkback
  const sweep = isMap(root) ? pairOf(root, 'sweep') : undefined;
  const allAxes: { path: string; ext: BlkbackAxis | null }[] = [];
  if (sweep !== undefined && isMap(sweep.value)) {
    const extPairs: Pair[] = [];
    for (const p of sweep.value.items) {
      if (!isScalar(p.key)) continue;
      const key = String(p.key.value);
      const norm = normalKey(key);
      if (norm !== BLKBACK_PATH && !norm.startsWith(`${BLKBACK_PATH}.`)) {
        allAxes.push({ path: key, ext: null });
        continue;
      }
      extPairs.push(p as Pair);
      const sub = norm === BLKBACK_PATH ? null : norm.slice(BLKBACK_PATH.length + 1);
      if (sub !== null && !(BLKBACK_KEYS as readonly string[]).includes(sub)) {
        const guess = closest(sub, BLKBACK_KEYS);
        issues.at(p.key, `sweep.${key}`, `blkback has no setting \`${sub}'${guess === null ? '' : `; did you mean \`${guess}'?`} (expected ${BLKBACK_KEYS.join(', ')})`);
        continue;
      }
      const values = isSeq(p.value) ? (plain(doc, p.value) as unknown[]) : null;
      if (values === null || values.length === 0) {
        issues.at(p.value ?? p.key, `sweep.${key}`, `expected a non-empty list of values, got ${describe(plain(doc, p.value))}`);
        continue;
      }
      const seq = p.value;
      for (const [i, v] of values.entries()) {
        const at = isSeq(seq) ? seq.items[i] : p.key;
        if (sub === null) checkBlkbackMap(v, (k, message) => issues.at(at, `sweep.${key}[${i}]${k === null ? '' : ` → ${BLKBACK_PATH}.${k}`}`, message));
        else {
          const c = checkBlkbackValue(sub as BlkbackKey, v);
          if ('error' in c) issues.at(at, `sweep.${key}[${i}]`, c.error);
        }
      }
      allAxes.push({ path: key, ext: { path: key, key: sub as BlkbackKey | null, values } });
    }
    if (extPairs.length > 0) {
      if (extPairs.length === sweep.value.items.length) blanker.blankPair(sweep as Pair, text);
      else for (const p of extPairs) blanker.blankPair(p, text);
    }
  }

  const parsed = parseScenario(blanker.text(), { file, readFile });
  if (!parsed.ok) {
    // Both lists, in file order.
    const all = [...issues.list, ...parsed.error.issues].sort((a, b) => a.line - b.line || a.column - b.column);
    return fail(all);
  }
  if (issues.list.length > 0) return fail(issues.list);
  const points = expandSweep(parsed.value, { readFile });
  if (!points.ok) return err({ kind: 'load-scenario', message: points.error.message });

  // The full sweep: every axis in written order, first slowest (as expandSweep).
  const scenAxes = parsed.value.scenario.sweep;
  const axes: SweepAxis[] = allAxes.map((a) => {
    if (a.ext !== null) return { path: a.path, values: [...a.ext.values] };
    const s = scenAxes.find((x) => x.path === a.path);
    return { path: a.path, values: [...(s?.values ?? [])] };
  });
  const total = axes.reduce((n, a) => n * a.values.length, 1);
  const out: RunPoint[] = [];
  for (let index = 0; index < total; index++) {
    // Digits of index over all axes, last axis fastest.
    const digit: number[] = new Array<number>(axes.length).fill(0);
    let rest = index;
    for (let a = axes.length - 1; a >= 0; a--) {
      const len = axes[a]?.values.length ?? 1;
      digit[a] = rest % len;
      rest = Math.floor(rest / len);
    }
    let scenIndex = 0;
    let blkback = base;
    const point: Record<string, unknown> = {};
    for (const [a, axis] of allAxes.entries()) {
      const d = digit[a] ?? 0;
      const value = axes[a]?.values[d];
      point[axis.path] = value;
      if (axis.ext === null) {
        const len = scenAxes.find((x) => x.path === axis.path)?.values.length ?? 1;
        scenIndex = scenIndex * len + d;
      } else if (axis.ext.key === null) {
        blkback = checkBlkbackMap(value, () => {}) ?? blkback;
      } else {
        const c = checkBlkbackValue(axis.ext.key, value);
        if (!('error' in c)) blkback = withSetting(blkback, axis.ext.key, c.value);
      }
    }
    const sp = points.value[scenIndex];
    if (sp === undefined) return err({ kind: 'load-scenario', message: `${file}: internal error: sweep point ${scenIndex} of ${points.value.length}` });
    out.push({ index, point, scenario: sp.scenario, blkback });
  }

  const hasExt = blk !== undefined || allAxes.some((a) => a.ext !== null);
  const asWritten = scenarioInfo(parsed.value, total);
  const info: ScenarioInfo = hasExt
    ? { ...asWritten, digest: scenarioDigest({ scenario: parsed.value.scenario, blkback: base, axes }), sweep: axes }
    : asWritten;
  return ok({ parsed: parsed.value, blkback: base, info, axes, points: out, warnings: parsed.value.warnings.map(formatIssue) });
}
