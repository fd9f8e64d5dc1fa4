/**
 * A seed names a run: the deterministic mode runs the same hypervisor,
 * kernels, xenstored, XenBus drivers and workloads under a seeded scheduler,
 * so two runs of one seed make the same decisions (the same trace hash) and
 * find the same violations, and the failure report says how to replay it.
 */
import { expect } from 'chai';
import { configForSeed } from '../../../stress/config.ts';
import { formatReport, type RunReport } from '../../../stress/report.ts';
import { runDeterministic } from '../../../stress/run-det.ts';

/** The report without what depends on the host's speed. */
function stable(r: RunReport): unknown {
  return { ...r, stats: { ...r.stats, elapsedMs: 0 }, violations: r.violations.filter((v) => v.replayable !== false) };
}

describe('stress deterministic replay', function () {
  this.timeout(60_000);

  it('replays a fixed seed identically twice, faults and all: same trace hash, same report', async () => {
    const cfg = configForSeed(13, 'deterministic', { steps: 5000, faults: 'all', faultRate: 1 / 150 });
    const a = await runDeterministic(cfg);
    const b = await runDeterministic(cfg);
    expect(a.traceHash).to.match(/^[0-9a-f]{16}$/);
    expect(b.traceHash).to.equal(a.traceHash);
    expect(stable(b)).to.deep.equal(stable(a));
    expect(a.faults.reduce((n, f) => n + f.fired, 0)).to.be.at.least(5);
    expect(a.ok, JSON.stringify(a.violations.slice(0, 3))).to.equal(true);
    const c = await runDeterministic(configForSeed(14, 'deterministic', { steps: 5000, faults: 'all', faultRate: 1 / 150 }));
    expect(c.traceHash).to.not.equal(a.traceHash);
  });

  it('reproduces a failure from its seed: the same violations and the same last decisions, with the command to replay them', async () => {
    const cfg = configForSeed(6, 'deterministic', { steps: 3000, mutant: 'back-stale-id', guests: 2, hostile: 0, faults: 'none' });
    const a = await runDeterministic(cfg);
    const b = await runDeterministic(cfg);
    expect(a.ok).to.equal(false);
    expect(b.violations).to.deep.equal(a.violations);
    expect(b.trace).to.deep.equal(a.trace);
    expect(a.trace?.length).to.be.at.least(20);
    expect(a.replay).to.equal('xensim stress --deterministic --seed 6 --steps 3000 --faults none --guests 2 --hostile 0 --mutant back-stale-id');
    const text = formatReport(a);
    expect(text).to.contain('FAILED').and.contain('[ring-protocol]').and.contain('reproduce with: xensim stress --deterministic --seed 6').and.contain('scheduler decisions');
  });

  it('derives the same machine and fault mix from a seed, and different ones from other seeds', () => {
    const a = configForSeed(77, 'deterministic');
    expect(configForSeed(77, 'deterministic')).to.deep.equal(a);
    const mixes = new Set(Array.from({ length: 20 }, (_, i) => JSON.stringify(configForSeed(i, 'deterministic').injectors)));
    expect(mixes.size).to.be.at.least(15);
    const hostile = configForSeed(5, 'deterministic', { guests: 4, hostile: 2 }).guests.filter((g) => g.hostile);
    expect(hostile).to.have.length(2);
  });
});
