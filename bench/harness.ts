/**
 * The one result format for every benchmark (bench/results/NAME.json):
 * { name, date, machine: { cpus, node }, figures: [ { name, value, unit, better,
 *   baseline: { name, value }, ratio, target? , met? } ] }
 * A figure's baseline is measured in the same run, in the same unit, and
 * ratio = value / baseline.value, or, when the figure carries paired per-run
 * values (runs + baselineRuns, measured back to back), the median of the
 * per-run ratios. A figure carrying an issue's target is met
 * when ratio <= target (better: lower) or ratio >= target (better: higher).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Figure {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  readonly better: 'lower' | 'higher';
  readonly baseline: { readonly name: string; readonly value: number };
  readonly ratio: number;
  readonly target?: number;
  readonly met?: boolean;
  /** Every run's value, so readers can see the spread behind the median. */
  readonly runs?: readonly number[];
  /** The baseline's value in each run, paired with `runs` by index. */
  readonly baselineRuns?: readonly number[];
  /**
   * How `ratio` was formed: 'medians' (median value / median baseline) or
   * 'paired' (median over runs of value[i] / baseline[i]). Paired runs were
   * measured back to back, so a machine whose speed drifts between rounds
   * (other tenants on a shared host) moves both halves of a pair alike.
   */
  readonly ratioOf?: 'medians' | 'paired';
}

export interface BenchResult {
  readonly name: string;
  readonly date: string;
  readonly machine: { readonly cpus: number; readonly node: string };
  readonly figures: readonly Figure[];
}

export interface FigureInput {
  name: string;
  value: number;
  unit: string;
  better: 'lower' | 'higher';
  baseline: { name: string; value: number };
  target?: number;
  runs?: readonly number[];
  baselineRuns?: readonly number[];
}

export function figure(f: FigureInput): Figure {
  const paired = f.runs !== undefined && f.baselineRuns !== undefined;
  if (paired && f.runs?.length !== f.baselineRuns?.length) {
    throw new RangeError(`figure '${f.name}': ${f.runs?.length} runs but ${f.baselineRuns?.length} baseline runs`);
  }
  let ratio: number;
  if (paired) {
    const rs = (f.runs as readonly number[]).map((v, i) => {
      const b = (f.baselineRuns as readonly number[])[i] as number;
      return b === 0 ? Number.NaN : v / b;
    });
    ratio = median(rs);
  } else {
    ratio = f.baseline.value === 0 ? Number.NaN : f.value / f.baseline.value;
  }
  const out: Figure = { ...f, ratio, ratioOf: paired ? 'paired' : 'medians' };
  if (f.target !== undefined) {
    return { ...out, met: f.better === 'lower' ? ratio <= f.target : ratio >= f.target };
  }
  return out;
}

/** [median xs] is the middle value (mean of the middle two for even counts). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median of no values');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Runs fn `runs` times and returns each run's value and their median. */
export async function repeat(runs: number, fn: (run: number) => Promise<number> | number): Promise<{ median: number; runs: number[] }> {
  const vals: number[] = [];
  for (let i = 0; i < runs; i++) vals.push(await fn(i));
  return { median: median(vals), runs: vals };
}

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

export function writeResult(name: string, figures: readonly Figure[], dir = RESULTS_DIR): { path: string; result: BenchResult } {
  const result: BenchResult = {
    name,
    date: new Date().toISOString(),
    machine: { cpus: availableParallelism(), node: process.version },
    figures,
  };
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(result, null, 2) + '\n');
  return { path, result };
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1e6) return n.toExponential(3);
  if (a >= 100) return n.toFixed(0);
  if (a >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

export function formatTable(result: BenchResult): string {
  const rows = result.figures.map((f) => [
    f.name, fmt(f.value), f.unit, f.baseline.name, fmt(f.baseline.value), fmt(f.ratio) + 'x' + (f.ratioOf === 'paired' ? ' (paired)' : ''),
    f.target === undefined ? '' : `${f.better === 'lower' ? '<=' : '>='}${f.target}x ${f.met ? 'met' : 'MISSED'}`,
  ]);
  const head = ['figure', 'value', 'unit', 'baseline', 'baseline value', 'ratio', 'target'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd();
  return [`${result.name} — ${result.date} — ${result.machine.cpus} cpus, node ${result.machine.node}`, line(head), ...rows.map(line)].join('\n');
}

/** A benchmark module's default export. */
export type Benchmark = (opts: { quick: boolean }) => Promise<Figure[]>;
