/**
 * `npm run bench:doc`: rewrites the "## The figures" part of
 * docs/PERFORMANCE.md from bench/results/*.json, so the tables there are
 * always copies of measured runs (the prose above that heading is written by
 * hand and kept). Each benchmark gets one table with the date and machine of
 * its run; a figure with a target says met or **missed**; a ratio formed from
 * paired runs says so. Benchmarks with no results file keep no table.
 *
 *     npm run bench -- all && npm run bench:doc
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RESULTS_DIR, type BenchResult, type Figure } from './harness.ts';

const DOC = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'PERFORMANCE.md');
const HEADING = '## The figures';
/** Tables in this order; others follow by name. */
const ORDER = ['hypercall', 'evtchn', 'ring', 'ring-cost', 'gnttab', 'dma', 'blk', 'blk-cost', 'net'];

function num(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return n.toExponential(3);
  return String(Number(n.toPrecision(4)));
}

function row(f: Figure): string {
  const ratio = `${num(f.ratio)}x${f.ratioOf === 'paired' ? ' (paired)' : ''}`;
  const target = f.target === undefined ? '' : `${f.better === 'lower' ? '≤' : '≥'}${f.target}x ${f.met === true ? 'met' : '**missed**'}`;
  const runs = f.runs === undefined ? '' : ` (${f.runs.length} runs)`;
  return `| ${f.name} | ${num(f.value)}${runs} | ${f.unit} | ${f.baseline.name}: ${num(f.baseline.value)} | ${ratio} | ${target} |`;
}

/** [tables results] is the markdown of every result, in ORDER. */
export function tables(results: readonly BenchResult[]): string {
  const rank = (n: string): number => (ORDER.includes(n) ? ORDER.indexOf(n) : ORDER.length);
  const sorted = [...results].sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
  return sorted
    .map((r) => {
      const when = r.date.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC');
      return [
        `### \`${r.name}\` — measured ${when}, ${r.machine.cpus} cpus, node ${r.machine.node}`,
        '',
        '| figure | value (median) | unit | baseline (same run) | ratio | target |',
        '|---|---|---|---|---|---|',
        ...r.figures.map(row),
      ].join('\n');
    })
    .join('\n\n');
}

function main(): void {
  if (!existsSync(RESULTS_DIR)) throw new Error(`no ${RESULTS_DIR}: run npm run bench -- all first`);
  const results = readdirSync(RESULTS_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(RESULTS_DIR, f), 'utf8')) as BenchResult);
  const doc = readFileSync(DOC, 'utf8');
  const at = doc.indexOf(HEADING);
  if (at < 0) throw new Error(`${DOC} has no "${HEADING}" heading`);
  const intro =
    'Copied from `bench/results/*.json` by `npm run bench:doc`; values are medians of the runs shown, ' +
    'and a ratio marked (paired) is the median of per-run ratios against the baseline measured beside each run.';
  writeFileSync(DOC, `${doc.slice(0, at)}${HEADING}\n\n${intro}\n\n${tables(results)}\n`);
  console.log(`wrote ${results.length} tables into ${DOC}`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) main();
