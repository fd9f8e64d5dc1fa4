import { expect } from 'chai';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { resultsSchema, validateResults } from '../../../cli/report/schema.ts';
import { RESULTS_SCHEMA_ID, type XensimResults } from '../../../cli/report/results.ts';
import { fixtureDoc } from './fixture.ts';

type J = Record<string, unknown>;

/** A deep copy to break, as a user's tool might hand us. */
async function doc(): Promise<J> {
  return JSON.parse(JSON.stringify(await fixtureDoc())) as J;
}
function at(o: unknown, ...path: (string | number)[]): J {
  let v: unknown = o;
  for (const p of path) v = (v as J)[p as string];
  return v as J;
}
function messageOf(d: unknown): string {
  const r = validateResults(d, 'results.json');
  if (r.ok) throw new Error('expected the document to be rejected');
  return r.error.message;
}

describe('the results schema', function () {
  this.timeout(30_000);

  it('is a valid draft 2020-12 schema that ajv compiles in strict mode', () => {
    const schema = resultsSchema();
    expect(schema['$schema']).to.equal('https://json-schema.org/draft/2020-12/schema');
    expect(schema['$id']).to.equal(RESULTS_SCHEMA_ID);
    const ajv = new Ajv2020({ strict: true });
    expect(ajv.validateSchema(schema), JSON.stringify(ajv.errors)).to.equal(true);
    expect(() => ajv.compile(schema)).not.to.throw();
  });

  it('accepts the document a sweep of real fio and iperf runs produces', async () => {
    const d = await doc();
    const r = validateResults(d);
    expect(r.ok, r.ok ? '' : r.error.message).to.equal(true);
    const cells = (d as unknown as XensimResults).cells;
    expect(cells).to.have.length(4);
    expect(cells[0]?.block[0]?.fio.jobs[0]?.xensim.per_io['hypercalls']).to.equal(2);
  });

  it('names a missing key by its path', async () => {
    const d = await doc();
    delete at(d, 'cells', 1, 'block', 0, 'fio', 'jobs', 0, 'read')['clat_ns'];
    expect(messageOf(d)).to.equal('results.json is not a valid xensim results document:\n  cells[1].block[0].fio.jobs[0].read.clat_ns: is missing (required)');
  });

  it('says what type a value must have and what it got', async () => {
    const d = await doc();
    at(d, 'cells', 0, 'block', 0, 'fio', 'jobs', 0, 'write')['bw_bytes'] = 'fast';
    expect(messageOf(d)).to.include('cells[0].block[0].fio.jobs[0].write.bw_bytes: must be a number, got string "fast"');
  });

  it('rejects unknown keys in our own objects and suggests the one meant', async () => {
    const d = await doc();
    at(d, 'cells', 0)['duraton_ms'] = 5;
    expect(messageOf(d)).to.include('cells[0].duraton_ms: is not a known key; did you mean duration_ms?');
  });

  it("lets fio's and iperf3's own objects carry keys we do not know", async () => {
    const d = await doc();
    at(d, 'cells', 0, 'block', 0, 'fio', 'jobs', 0)['new_fio_key'] = 1;
    at(d, 'cells', 0, 'network', 0, 'iperf3', 'end')['new_iperf_key'] = {};
    expect(validateResults(d).ok).to.equal(true);
  });

  it('lists the allowed values of an enumeration', async () => {
    const d = await doc();
    at(d, 'machine', 'dom0')['dma'] = 'dma-direct';
    expect(messageOf(d)).to.include('machine.dom0.dma: must be one of "direct", "p2m", "xlate", "iommu", "swiotlb", "legacy", got string "dma-direct"');
  });

  it('wants ISO 8601 dates and a sha256 digest', async () => {
    const d = await doc();
    d['date'] = 'yesterday';
    at(d, 'scenario')['digest'] = 'abc';
    const m = messageOf(d);
    expect(m).to.include('date: must be an ISO 8601 date and time such as 2026-01-31T12:00:00.000Z, got string "yesterday"');
    expect(m).to.include('scenario.digest: must be 64 lower-case hex digits (a sha256), got string "abc"');
  });

  it('wants a reason for a failed cell, and none for a good one', async () => {
    const d = await doc();
    at(d, 'cells', 2)['status'] = 'failed';
    expect(messageOf(d)).to.include('cells[2].error: must be a string, got null');
    at(d, 'cells', 2)['error'] = 'domu1 crashed';
    expect(validateResults(d).ok).to.equal(true);
    at(d, 'cells', 3)['error'] = 'oops';
    expect(messageOf(d)).to.include('cells[3].error: must be null, got string "oops"');
  });

  it('refuses a document of another format or version', async () => {
    const d = await doc();
    d['format_version'] = 2;
    expect(messageOf(d)).to.include('format_version: must be 1, got number 2');
    expect(messageOf([])).to.include('(document): must be an object, got a list');
  });

  it('refuses two cells with one index, and a cell outside the sweep', async () => {
    const d = await doc();
    const cells = d['cells'] as J[];
    (cells[3] as J)['index'] = 1;
    (cells[3] as J)['point'] = (cells[1] as J)['point'];
    expect(messageOf(d)).to.include('cells[3].index: 1 is also the index of cells[1]');
    (cells[3] as J)['index'] = 9;
    expect(messageOf(d)).to.include('cells[3].index: is 9, but the sweep has only 4 cell(s) (0..3)');
  });

  it("refuses a cell whose settings are not those its index names", async () => {
    const d = await doc();
    at(d, 'cells', 0)['point'] = { 'machine.dom0.dma': 'iommu', 'block.0.fio.iodepth': 1 };
    expect(messageOf(d)).to.include(
      'cells[0].point: is {machine.dom0.dma=iommu, block.0.fio.iodepth=1}, but cell 0 of this sweep is {machine.dom0.dma=swiotlb, block.0.fio.iodepth=1}',
    );
  });

  it('refuses a shard file holding another shard\'s cell', async () => {
    const d = JSON.parse(JSON.stringify(await fixtureDoc({ shard: { k: 2, n: 2 } }))) as J;
    expect(validateResults(d).ok).to.equal(true);
    (d['cells'] as J[]).push(at(await doc(), 'cells', 0));
    expect(messageOf(d)).to.include('cell 0 belongs to shard 1/2, not 2/2');
  });

  it('checks cell_count against the sweep axes', async () => {
    const d = await doc();
    at(d, 'scenario')['cell_count'] = 5;
    expect(messageOf(d)).to.include('scenario.cell_count: is 5, but the sweep axes make 4 cell(s)');
  });

  it('lists at most twenty problems, then how many more', async () => {
    const d = await doc();
    for (const c of d['cells'] as J[]) for (const s of c['series'] as J[]) for (const x of s['samples'] as J[]) x['t'] = -1;
    const m = messageOf(d);
    expect(m.split('\n')).to.have.length(22);
    expect(m).to.match(/… and \d+ more$/);
  });
});
