/**
 * Running the `xensim` command from tests: in this process (cli/main.ts
 * run(), output captured), and reading a results document it wrote, checked
 * against the published schema.
 */
import { readFileSync } from 'node:fs';
import { run } from '../../cli/main.ts';
import type { XensimResults } from '../../cli/report/results.ts';
import { validateResults } from '../../cli/report/schema.ts';

/** [xensimInProcess args] runs `xensim args` in this process; its exit code and what it printed. */
export async function xensimInProcess(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(['node', 'xensim', ...args], { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

/** [readResults file] is the results document in file, validated against schemas/xensim-results.schema.json (throws if not). */
export function readResults(file: string): XensimResults {
  const v = validateResults(JSON.parse(readFileSync(file, 'utf8')) as unknown, file);
  if (!v.ok) throw new Error(v.error.message);
  return v.value;
}
