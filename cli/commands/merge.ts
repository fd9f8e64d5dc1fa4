/**
 * `xensim merge OUT.json IN1.json IN2.json …`: combines the result files of
 * one sweep run in shards (`--shard K/N`, perhaps on several machines) into
 * one document, checks it against the published schema, and writes OUT
 * (and, with --html FILE, the report of the whole sweep; with --table, the
 * tables a run prints).
 * Refuses (exit 1, every reason listed) files of different scenarios or
 * xensim versions, a shard or cell given twice, and cells no file holds.
 */
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { mergeResults, type MergeInput } from '../report/merge.ts';
import { readResultsFile, validateResults } from '../report/schema.ts';
import { renderHtml } from '../report/html.ts';
import { formatResults } from '../report/table.ts';
import type { CliContext } from '../main.ts';

interface MergeOptions {
  readonly force?: boolean;
  readonly html?: string;
  readonly table?: boolean;
}

function merge(ctx: CliContext, out: string, inputs: readonly string[], o: MergeOptions): void {
  const fail = (m: string): void => {
    ctx.err(m.endsWith('\n') ? m : `${m}\n`);
    ctx.exitCode = 1;
  };
  if (inputs.includes(out) && o.force !== true) return fail(`xensim merge: the output ${out} is also an input; write the merge to a new file`);
  const docs: MergeInput[] = [];
  const problems: string[] = [];
  for (const file of inputs) {
    const r = readResultsFile(file);
    if (r.ok) docs.push({ file, doc: r.value });
    else problems.push(r.error.message);
  }
  if (problems.length > 0) return fail(problems.join('\n'));
  const merged = mergeResults(docs);
  if (!merged.ok) return fail(merged.error.message);
  // The merge of valid shards is valid by construction; check anyway, before writing.
  const v = validateResults(merged.value, out);
  if (!v.ok) return fail(`xensim merge: internal error, the merged document does not validate:\n${v.error.message}`);
  writeFileSync(out, `${JSON.stringify(merged.value, null, 2)}\n`);
  if (o.html !== undefined) writeFileSync(o.html, renderHtml(merged.value));
  if (o.table === true) ctx.out(formatResults(merged.value));
  const shards = docs.filter((d) => d.doc.shard !== undefined).length;
  ctx.err(`xensim merge: ${out}: ${merged.value.cells.length} cell(s) of scenario "${merged.value.scenario.name}" from ${docs.length} file(s)${shards > 0 ? ` (${shards} shard(s))` : ''}\n`);
}

/** Registers `xensim merge`. */
export function registerMerge(program: Command, ctx: CliContext): void {
  program
    .command('merge')
    .description('combine the result files of a sharded sweep (--shard K/N) into one')
    .argument('<out>', 'the merged results file to write')
    .argument('<inputs...>', 'the shard result files (xensim run/bench --json)')
    .option('--force', 'allow writing over one of the inputs')
    .option('--html <FILE>', 'also write the HTML report of the whole sweep')
    .option('--table', 'also print the results tables on stdout')
    .action((out: string, inputs: string[], o: MergeOptions) => merge(ctx, out, inputs, o));
}
