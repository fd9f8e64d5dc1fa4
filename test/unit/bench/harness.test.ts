import { expect } from 'chai';
import { figure, median } from '../../../bench/harness.ts';

describe('bench harness: figures and ratios', () => {
  it('median of odd and even counts, and refuses none', () => {
    expect(median([3, 1, 2])).to.equal(2);
    expect(median([4, 1, 3, 2])).to.equal(2.5);
    expect(() => median([])).to.throw(RangeError);
  });

  it('ratio of medians without paired runs; target met or missed by direction', () => {
    const f = figure({ name: 'x', value: 8, unit: 'u', better: 'higher', baseline: { name: 'b', value: 10 }, target: 0.8 });
    expect(f.ratio).to.equal(0.8);
    expect(f.ratioOf).to.equal('medians');
    expect(f.met).to.equal(true);
    const g = figure({ name: 'y', value: 13, unit: 'u', better: 'lower', baseline: { name: 'b', value: 10 }, target: 1.3 });
    expect(g.ratio).to.equal(1.3);
    expect(g.met).to.equal(true);
    expect(figure({ name: 'z', value: 14, unit: 'u', better: 'lower', baseline: { name: 'b', value: 10 }, target: 1.3 }).met).to.equal(false);
  });

  it('paired runs: the median of per-run ratios, immune to a machine that drifts between rounds', () => {
    // Rounds 4 and 5 ran on a machine half as fast; both halves of those pairs slowed alike.
    const value = [2.0, 2.0, 1.0, 1.0, 1.0];
    const base = [2.5, 2.5, 2.5, 1.25, 1.25];
    const f = figure({ name: 'x', value: median(value), unit: 'u', better: 'higher', baseline: { name: 'b', value: median(base) }, target: 0.8, runs: value, baselineRuns: base });
    expect(f.ratioOf).to.equal('paired');
    expect(f.ratio).to.be.closeTo(0.8, 1e-9);
    expect(f.met).to.equal(true);
    // Round 3 ran fast for the baseline and slow for the value: the ratio of
    // medians mixes a slow value with a fast baseline and reads 0.4.
    expect(median(value) / median(base)).to.equal(0.4);
  });

  it('refuses paired runs of different lengths', () => {
    expect(() => figure({ name: 'x', value: 1, unit: 'u', better: 'higher', baseline: { name: 'b', value: 1 }, runs: [1, 2], baselineRuns: [1] })).to.throw(/2 runs but 1 baseline runs/);
  });
});

describe('bench:doc tables', () => {
  it('prints each result as a table with its date, targets met or missed, and paired ratios marked', async () => {
    const { tables } = await import('../../../bench/perf-doc.ts');
    const f = figure({ name: 'x QD1', value: 8, unit: 'msg/s', better: 'higher', baseline: { name: 'plain', value: 10 }, target: 0.9, runs: [8, 8, 8], baselineRuns: [10, 10, 10] });
    const g = figure({ name: 'y', value: 2e6, unit: 'calls/s', better: 'higher', baseline: { name: 'target', value: 1.5e5 }, target: 1 });
    const out = tables([
      { name: 'ring', date: '2026-11-25T10:25:18.729Z', machine: { cpus: 2, node: 'v20.20.2' }, figures: [f] },
      { name: 'hypercall', date: '2026-11-25T10:31:38.220Z', machine: { cpus: 2, node: 'v20.20.2' }, figures: [g] },
    ]);
    // hypercall sorts before ring, whatever order the files come in.
    expect(out.indexOf('### `hypercall` — measured 2026-11-25 10:31 UTC, 2 cpus, node v20.20.2')).to.equal(0);
    expect(out).to.contain('| x QD1 | 8 (3 runs) | msg/s | plain: 10 | 0.8x (paired) | ≥0.9x **missed** |');
    expect(out).to.contain('| y | 2.000e+6 | calls/s | target: 1.500e+5 | 13.33x | ≥1x met |');
  });
});
