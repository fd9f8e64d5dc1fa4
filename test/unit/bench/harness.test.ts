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
