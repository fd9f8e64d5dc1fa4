import { expect } from 'chai';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseShard, shardCells, shardOf, shardOption } from '../../../cli/report/shard.ts';
import { Command } from 'commander';
import { mergeResults, type MergeInput } from '../../../cli/report/merge.ts';
import { validateResults } from '../../../cli/report/schema.ts';
import { sweepPointAt, type XensimResults } from '../../../cli/report/results.ts';
import { expandSweep } from '../../../cli/config/scenario.ts';
import { unwrap } from '../../../shared/result.ts';
import { run } from '../../../cli/main.ts';
import { fixtureDoc, parsedFixtureScenario } from './fixture.ts';

function mergeError(inputs: MergeInput[]): string {
  const r = mergeResults(inputs);
  if (r.ok) throw new Error('expected the merge to be refused');
  return r.error.message;
}
const copy = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

describe('--shard K/N', () => {
  it('reads K/N with K from 1 to N', () => {
    expect(unwrap(parseShard('1/4'))).to.deep.equal({ k: 1, n: 4 });
    expect(unwrap(parseShard(' 3 / 3 '))).to.deep.equal({ k: 3, n: 3 });
  });

  it('explains what is wrong with a bad K/N', () => {
    const msg = (t: string): string => {
      const r = parseShard(t);
      return r.ok ? '' : r.error.message;
    };
    expect(msg('2')).to.equal('--shard: expected K/N such as 1/4 (shard K of N, K from 1 to N), got "2"');
    expect(msg('a/b')).to.match(/expected K\/N/);
    expect(msg('-1/3')).to.match(/expected K\/N/);
    expect(msg('0/4')).to.equal('--shard 0/4: K must be from 1 to N (4); shards are numbered from 1');
    expect(msg('5/4')).to.equal('--shard 5/4: K must be from 1 to N (4); shards are numbered from 1');
    expect(msg('1/0')).to.equal('--shard 1/0: N must be from 1 to 10000');
  });

  it('puts every cell in exactly one shard, the same way every time', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 200 }), (cells, nRaw) => {
        const n = Math.min(nRaw, cells);
        const all = Array.from({ length: cells }, (_, i) => `cell${i}`);
        const seen = new Map<number, number>();
        for (let k = 1; k <= n; k++) {
          const part = unwrap(shardCells(all, { k, n }));
          expect(part).to.deep.equal(unwrap(shardCells(all, { k, n }))); // deterministic
          for (const { index, cell } of part) {
            expect(cell).to.equal(`cell${index}`);
            expect(shardOf(index, n)).to.equal(k);
            seen.set(index, (seen.get(index) ?? 0) + 1);
          }
          // Balanced: shard sizes differ by at most one.
          expect(part.length).to.be.within(Math.floor(cells / n), Math.ceil(cells / n));
        }
        expect(seen.size).to.equal(cells);
        expect([...seen.values()].every((c) => c === 1)).to.equal(true);
      }),
      { seed: 42, numRuns: 200 },
    );
  });

  it('deals the cells of a real sweep round-robin, so each shard gets both settings of the slow axis', () => {
    const points = unwrap(expandSweep(parsedFixtureScenario()));
    const one = unwrap(shardCells(points, { k: 1, n: 2 }));
    expect(one.map((c) => c.index)).to.deep.equal([0, 2]);
    expect(one.map((c) => c.cell.point['machine.dom0.dma'])).to.deep.equal(['swiotlb', 'iommu']);
    // sweepPointAt agrees with expandSweep's order.
    for (const [i, p] of points.entries()) expect(sweepPointAt(parsedFixtureScenario().scenario.sweep, i)).to.deep.equal(p.point);
  });

  it('gives commander a clear message for a bad --shard', () => {
    let err = '';
    const p = new Command().exitOverride().configureOutput({ writeErr: (t) => (err += t) }).option('--shard <K/N>', 'shard', shardOption).action(() => {});
    expect(() => p.parse(['node', 'x', '--shard', '0/4'])).to.throw();
    expect(err).to.equal("error: option '--shard <K/N>' argument '0/4' is invalid. K must be from 1 to N (4); shards are numbered from 1\n");
    err = '';
    expect(() => p.parse(['node', 'x', '--shard', 'half'])).to.throw();
    expect(err).to.equal(`error: option '--shard <K/N>' argument 'half' is invalid. expected K/N such as 1/4 (shard K of N, K from 1 to N), got "half"\n`);
    expect(p.parse(['node', 'x', '--shard', '2/4']).opts()['shard']).to.deep.equal({ k: 2, n: 4 });
  });

  it('refuses more shards than cells', () => {
    const r = shardCells(['a', 'b', 'c'], { k: 1, n: 5 });
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error.message).to.equal('--shard 1/5: the sweep has 3 cell(s), so 5 shards would leave 2 of them empty; use N of at most 3');
  });
});

describe('merging shard results', function () {
  this.timeout(30_000);
  let full: XensimResults;
  let s1: XensimResults;
  let s2: XensimResults;
  before(async () => {
    full = await fixtureDoc();
    s1 = await fixtureDoc({ shard: { k: 1, n: 2 } });
    s2 = await fixtureDoc({ shard: { k: 2, n: 2 } });
  });

  it('gives back the whole sweep from its shards, in sweep order, each cell naming its file', () => {
    const m = unwrap(mergeResults([{ file: 'b.json', doc: s2 }, { file: 'a.json', doc: s1 }]));
    expect(validateResults(copy(m)).ok).to.equal(true);
    expect(m.shard).to.equal(undefined);
    expect(m.cells.map((c) => c.index)).to.deep.equal([0, 1, 2, 3]);
    expect(m.merged_from?.map((f) => [f.file, f.shard])).to.deep.equal([['b.json', { k: 2, n: 2 }], ['a.json', { k: 1, n: 2 }]]);
    expect(m.cells.map((c) => m.merged_from?.[c.source ?? -1]?.file)).to.deep.equal(['a.json', 'b.json', 'a.json', 'b.json']);
    // Apart from `source`, the cells are exactly those of the unsharded run.
    expect(m.cells.map(({ source: _s, ...c }) => c)).to.deep.equal(full.cells);
    expect(m.scenario).to.deep.equal(full.scenario);
  });

  it('takes a merged file as input and gives it back unchanged', () => {
    const m = unwrap(mergeResults([{ file: 'a.json', doc: s1 }, { file: 'b.json', doc: s2 }]));
    const again = unwrap(mergeResults([{ file: 'all.json', doc: copy(m) }]));
    expect(again).to.deep.equal(m);
  });

  it('refuses shards of different scenarios, naming both', () => {
    const other = copy(s2) as { scenario: { digest: string; name: string } };
    other.scenario.digest = 'f'.repeat(64);
    other.scenario.name = 'other';
    expect(mergeError([{ file: 'a.json', doc: s1 }, { file: 'b.json', doc: other as unknown as XensimResults }])).to.include(
      'b.json ran scenario "other" (digest ffffffffffff…, 4 cells) but a.json ran "report-fixture"',
    );
  });

  it('refuses files written by different xensim versions', () => {
    const newer = { ...copy(s2), version: '9.9.9' };
    expect(mergeError([{ file: 'a.json', doc: s1 }, { file: 'b.json', doc: newer }])).to.include(
      'b.json was written by xensim 9.9.9 but a.json by xensim 0.1.0; merge files written by one version',
    );
  });

  it('names the cells no file holds, and why', () => {
    expect(mergeError([{ file: 'a.json', doc: s1 }])).to.equal(
      'xensim merge: cannot merge:\n' +
        '  2 of 4 cell(s) are missing: cell 1 {machine.dom0.dma=swiotlb, block.0.fio.iodepth=8} (shard 2/2: no file given for it); ' +
        'cell 3 {machine.dom0.dma=iommu, block.0.fio.iodepth=8} (shard 2/2: no file given for it)',
    );
    const short = { ...copy(s2), cells: copy(s2).cells.slice(0, 1) };
    expect(mergeError([{ file: 'a.json', doc: s1 }, { file: 'b.json', doc: short }])).to.include(
      'cell 3 {machine.dom0.dma=iommu, block.0.fio.iodepth=8} (shard 2/2: b.json lacks it; did that run stop early?)',
    );
  });

  it('refuses a shard given twice, a cell in two files, and shards of different splits', () => {
    expect(mergeError([{ file: 'a.json', doc: s1 }, { file: 'a-again.json', doc: s1 }, { file: 'b.json', doc: s2 }])).to.include('shard 1/2 is given twice: in a.json and in a-again.json');
    expect(mergeError([{ file: 'full.json', doc: full }, { file: 'b.json', doc: s2 }])).to.include(
      '2 cell(s) appear twice: cell 1 {machine.dom0.dma=swiotlb, block.0.fio.iodepth=8} is in both full.json and b.json',
    );
    const third = { ...copy(s2), shard: { k: 2, n: 3 } };
    expect(mergeError([{ file: 'a.json', doc: s1 }, { file: 'c.json', doc: third }])).to.include('c.json holds shard 2/3 but a.json is one of 2 shards');
  });
});

describe('xensim merge (the command)', function () {
  this.timeout(30_000);
  let dir = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-merge-'));
    writeFileSync(join(dir, 's1.json'), JSON.stringify(await fixtureDoc({ shard: { k: 1, n: 2 } })));
    writeFileSync(join(dir, 's2.json'), JSON.stringify(await fixtureDoc({ shard: { k: 2, n: 2 } })));
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ ...(await fixtureDoc({ shard: { k: 2, n: 2 } })), tool: 'fio' }));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function xensim(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await run(['node', 'xensim', ...args], { out: (s) => (out += s), err: (s) => (err += s) });
    return { code, out, err };
  }

  it('also writes the HTML report and prints the tables of the merged sweep when asked', async () => {
    const r = await xensim('merge', join(dir, 'all2.json'), join(dir, 's1.json'), join(dir, 's2.json'), '--html', join(dir, 'all.html'), '--table');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.match(/^xensim run: scenario report-fixture, 4 of 4 cell\(s\), merged from 2 file\(s\)/);
    expect(readFileSync(join(dir, 'all.html'), 'utf8')).to.include('Merged from');
  });

  it('writes one valid document from the shard files and says what it merged', async () => {
    const r = await xensim('merge', join(dir, 'all.json'), join(dir, 's1.json'), join(dir, 's2.json'));
    expect(r.code, r.err).to.equal(0);
    expect(r.err).to.equal(`xensim merge: ${join(dir, 'all.json')}: 4 cell(s) of scenario "report-fixture" from 2 file(s) (2 shard(s))\n`);
    const merged = JSON.parse(readFileSync(join(dir, 'all.json'), 'utf8')) as unknown;
    expect(validateResults(merged).ok).to.equal(true);
  });

  it('exits 1 naming the file that is not a results document, and writes nothing', async () => {
    const r = await xensim('merge', join(dir, 'out-bad.json'), join(dir, 's1.json'), join(dir, 'bad.json'));
    expect(r.code).to.equal(1);
    expect(r.err).to.equal(`${join(dir, 'bad.json')} is not a valid xensim results document:\n  tool: must be "xensim", got string "fio"\n`);
    expect(() => readFileSync(join(dir, 'out-bad.json'))).to.throw(/ENOENT/);
  });

  it('exits 1 on a missing shard and on an unreadable input', async () => {
    const r = await xensim('merge', join(dir, 'out2.json'), join(dir, 's1.json'));
    expect(r.code).to.equal(1);
    expect(r.err).to.match(/2 of 4 cell\(s\) are missing/);
    const n = await xensim('merge', join(dir, 'out3.json'), join(dir, 'nope.json'));
    expect(n.code).to.equal(1);
    expect(n.err).to.equal(`${join(dir, 'nope.json')}: cannot read it: ENOENT\n`);
  });

  it('will not overwrite an input unless told to', async () => {
    const r = await xensim('merge', join(dir, 's1.json'), join(dir, 's1.json'), join(dir, 's2.json'));
    expect(r.code).to.equal(1);
    expect(r.err).to.match(/is also an input/);
  });
});
