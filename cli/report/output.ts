/**
 * What `xensim run` and `xensim bench` do with a finished results document:
 * check it against the published schema, write `--json FILE` and
 * `--html FILE`, and print the human tables on stdout — unless the JSON goes
 * to stdout (`--json -`), in which case stdout carries only the JSON and the
 * tables are not printed at all (JSON mode).
 *
 *   const doc = newResults({ command: 'run', scenario: scenarioInfo(parsed, cells.length), machine: simMachineOf(...) });
 *   … run the cells, push each Cell …
 *   emitResults(ctx, doc, { json: opts.json, html: opts.html });
 */
import { writeFileSync } from 'node:fs';
import type { CliContext } from '../main.ts';
import { renderHtml } from './html.ts';
import type { XensimResults } from './results.ts';
import { validateResults } from './schema.ts';
import { formatResults } from './table.ts';

export interface EmitOptions {
  /** --json FILE; '-' writes the JSON to stdout instead of the tables. */
  readonly json?: string;
  /** --html FILE. */
  readonly html?: string;
  /** Print the per-I/O counters tables (default true). */
  readonly counters?: boolean;
}

/**
 * [emitResults ctx doc opts] writes and prints a run's results. A document
 * that does not validate is a bug in whoever built it: the files are still
 * written (the data is not lost), the problems go to stderr, and the exit
 * code is 1. Returns whether the document validated.
 */
export function emitResults(ctx: Pick<CliContext, 'out' | 'err' | 'exitCode'>, doc: XensimResults, o: EmitOptions = {}): boolean {
  const v = validateResults(JSON.parse(JSON.stringify(doc)) as unknown, 'the results of this run');
  const json = `${JSON.stringify(doc, null, 2)}\n`;
  if (o.json === '-') ctx.out(json);
  else if (o.json !== undefined) writeFileSync(o.json, json);
  if (o.html !== undefined) writeFileSync(o.html, renderHtml(doc));
  if (o.json !== '-') ctx.out(formatResults(doc, o.counters === undefined ? {} : { counters: o.counters }));
  if (!v.ok) {
    ctx.err(`xensim: internal error: ${v.error.message}\n`);
    ctx.exitCode = 1;
    return false;
  }
  return true;
}
