import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { emitResults } from '../../../cli/report/output.ts';
import { validateResults } from '../../../cli/report/schema.ts';
import type { XensimResults } from '../../../cli/report/results.ts';
import { fixtureDoc } from './fixture.ts';

function ctx() {
  const c = { text: '', errText: '', exitCode: 0, out: (s: string) => void (c.text += s), err: (s: string) => void (c.errText += s) };
  return c;
}

describe('emitting a run\'s results', function () {
  this.timeout(30_000);
  let dir = '';
  let doc: XensimResults;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-emit-'));
    doc = await fixtureDoc();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes --json and --html files and prints the tables', () => {
    const c = ctx();
    expect(emitResults(c, doc, { json: join(dir, 'r.json'), html: join(dir, 'r.html') })).to.equal(true);
    expect(validateResults(JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8'))).ok).to.equal(true);
    expect(readFileSync(join(dir, 'r.html'), 'utf8')).to.match(/^<!DOCTYPE html>/);
    expect(c.text).to.match(/^xensim run: scenario report-fixture/);
    expect(c.errText).to.equal('');
  });

  it('with --json - puts only the JSON on stdout', () => {
    const c = ctx();
    emitResults(c, doc, { json: '-' });
    expect(JSON.parse(c.text)).to.deep.equal(JSON.parse(JSON.stringify(doc)));
  });

  it('still writes an invalid document, and says so with exit code 1', () => {
    const c = ctx();
    const bad = { ...doc, cells: [{ ...doc.cells[0]!, duration_ms: -1 }] };
    expect(emitResults(c, bad, { json: join(dir, 'bad.json') })).to.equal(false);
    expect(c.exitCode).to.equal(1);
    expect(c.errText).to.equal('xensim: internal error: the results of this run is not a valid xensim results document:\n  cells[0].duration_ms: must be >= 0, got number -1\n');
    expect(readFileSync(join(dir, 'bad.json'), 'utf8')).to.include('"duration_ms": -1');
  });
});
