/**
 * [mergeResults inputs] combines the result files of one sweep run in shards
 * (`--shard K/N` on several machines) into one document, as if it had run in
 * one place: every cell once, in sweep order, each remembering which file
 * (and so which host) it came from (`cells[].source` → `merged_from[]`).
 *
 * It refuses, listing every reason at once:
 * - files of different scenarios (scenario digests differ) or xensim versions,
 *   or of different commands (run vs bench);
 * - shard files of different splits (1/4 and 2/3), a shard given twice;
 * - a cell present in two files, and cells that no file holds (each named
 *   with its settings and the shard that should have run it).
 * An input may itself be a merged document (its sources are carried over).
 */
import { err, ok, type Result } from '../../shared/result.ts';
import { pointLabel, sweepPointAt, type Cell, type MergedFrom, type XensimResults } from './results.ts';
import { shardOf } from './shard.ts';

export interface MergeInput {
  /** The file's name, for messages and merged_from. */
  readonly file: string;
  readonly doc: XensimResults;
}

export interface MergeError {
  readonly kind: 'merge';
  readonly problems: readonly string[];
  /** Printable, one problem per line. */
  readonly message: string;
}

function cellText(doc: XensimResults, index: number): string {
  const p = sweepPointAt(doc.scenario.sweep, index);
  return `cell ${index} {${p === null ? '?' : pointLabel(p)}}`;
}

/** Lists at most `max` items, then how many more. */
function some(items: readonly string[], max = 10): string {
  return items.length <= max ? items.join('; ') : `${items.slice(0, max).join('; ')}; and ${items.length - max} more`;
}

export function mergeResults(inputs: readonly MergeInput[]): Result<XensimResults, MergeError> {
  const problems: string[] = [];
  const fail = (): Result<XensimResults, MergeError> =>
    err({ kind: 'merge', problems, message: `xensim merge: cannot merge:\n${problems.map((p) => `  ${p}`).join('\n')}` });
  const first = inputs[0];
  if (first === undefined) {
    problems.push('no input files');
    return fail();
  }
  const base = first.doc;

  // Same scenario, version and command.
  for (const { file, doc } of inputs.slice(1)) {
    if (doc.version !== base.version) {
      problems.push(`${file} was written by xensim ${doc.version} but ${first.file} by xensim ${base.version}; merge files written by one version`);
    }
    if (doc.command !== base.command) problems.push(`${file} is from \`xensim ${doc.command}\` but ${first.file} is from \`xensim ${base.command}\``);
    if (doc.scenario.digest !== base.scenario.digest) {
      problems.push(
        `${file} ran scenario "${doc.scenario.name}" (digest ${doc.scenario.digest.slice(0, 12)}…, ${doc.scenario.cell_count} cells) ` +
          `but ${first.file} ran "${base.scenario.name}" (digest ${base.scenario.digest.slice(0, 12)}…, ${base.scenario.cell_count} cells); ` +
          'shards must come from the same scenario file, unchanged',
      );
    }
  }
  if (problems.length > 0) return fail();

  // Sources: each input's own file, or the files a merged input was made of.
  const sources: MergedFrom[] = [];
  /** Per input: its cells with the merged_from index each came from. */
  const perInput: { file: string; cells: { cell: Cell; source: number }[] }[] = [];
  const shardFiles = new Map<string, string>();
  let split: { n: number; file: string } | null = null;
  for (const { file, doc } of inputs) {
    const offset = sources.length;
    if (doc.merged_from !== undefined) {
      sources.push(...doc.merged_from);
      perInput.push({ file, cells: doc.cells.map((c) => ({ cell: c, source: offset + (c.source ?? 0) })) });
    } else {
      sources.push({ file, shard: doc.shard ?? null, date: doc.date, machine: doc.machine });
      perInput.push({ file, cells: doc.cells.map((c) => ({ cell: c, source: offset })) });
    }
    for (const src of doc.merged_from ?? [{ file, shard: doc.shard ?? null }]) {
      if (src.shard === null) continue;
      if (split === null) split = { n: src.shard.n, file };
      else if (src.shard.n !== split.n) {
        problems.push(`${file} holds shard ${src.shard.k}/${src.shard.n} but ${split.file} is one of ${split.n} shards; merge shards of one split`);
        continue;
      }
      const key = `${src.shard.k}/${src.shard.n}`;
      const prev = shardFiles.get(key);
      if (prev !== undefined) problems.push(`shard ${key} is given twice: in ${prev} and in ${file}`);
      else shardFiles.set(key, file);
    }
  }
  if (problems.length > 0) return fail();

  // Every cell exactly once.
  const byIndex = new Map<number, { cell: Cell; source: number; file: string }>();
  const dupes: string[] = [];
  for (const { file, cells } of perInput) {
    for (const { cell, source } of cells) {
      const prev = byIndex.get(cell.index);
      if (prev !== undefined) dupes.push(`${cellText(base, cell.index)} is in both ${prev.file} and ${file}`);
      else byIndex.set(cell.index, { cell, source, file });
    }
  }
  if (dupes.length > 0) problems.push(`${dupes.length} cell(s) appear twice: ${some(dupes)}`);
  const missing: string[] = [];
  for (let i = 0; i < base.scenario.cell_count; i++) {
    if (byIndex.has(i)) continue;
    if (split === null) missing.push(cellText(base, i));
    else {
      const key = `${shardOf(i, split.n)}/${split.n}`;
      const holder = shardFiles.get(key);
      missing.push(`${cellText(base, i)} (shard ${key}: ${holder === undefined ? 'no file given for it' : `${holder} lacks it; did that run stop early?`})`);
    }
  }
  if (missing.length > 0) problems.push(`${missing.length} of ${base.scenario.cell_count} cell(s) are missing: ${some(missing)}`);
  if (problems.length > 0) return fail();

  const cells = [...byIndex.values()].sort((a, b) => a.cell.index - b.cell.index).map(({ cell, source }) => ({ ...cell, source }));
  const date = inputs.map((i) => i.doc.date).sort()[0] ?? base.date;
  const { shard: _shard, merged_from: _m, cells: _c, ...rest } = base;
  return ok({ ...rest, date, merged_from: sources, cells });
}
