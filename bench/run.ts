/**
 * `npm run bench -- NAME [--quick]` runs bench/NAME.bench.ts, prints its table
 * and writes bench/results/NAME.json. `npm run bench -- all` runs every one.
 */
import { readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { formatTable, writeResult, type Benchmark } from './harness.ts';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here).filter((f) => f.endsWith('.bench.ts')).map((f) => f.slice(0, -'.bench.ts'.length)).sort();

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const names = args.filter((a) => !a.startsWith('--'));
if (names.length === 0) {
  console.error(`usage: npm run bench -- NAME [--quick]\navailable: ${available.join(', ')}, all`);
  process.exit(2);
}
const todo = names.includes('all') ? available : names;
for (const name of todo) {
  if (!available.includes(name)) {
    console.error(`unknown benchmark '${name}'; available: ${available.join(', ')}`);
    process.exit(2);
  }
  const mod = (await import(pathToFileURL(`${here}/${name}.bench.ts`).href)) as { default: Benchmark };
  const figures = await mod.default({ quick });
  const { path, result } = writeResult(name, figures);
  console.log(formatTable(result));
  console.log(`wrote ${path}\n`);
}
process.exit(0);
