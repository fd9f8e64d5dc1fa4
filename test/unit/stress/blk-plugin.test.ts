/**
 * The real block drivers under the stress: blkback in dom0 and blkfront in
 * each well-behaved guest, probed through XenBus, with a verified workload
 * on xvda — deterministic like the rest, so a failure replays.
 */
import { expect } from 'chai';
import { configForSeed } from '../../../stress/config.ts';
import { runDeterministic } from '../../../stress/run-det.ts';
import type { WorldView } from '../../../stress/view.ts';

describe('stress with the real block drivers (blk-plugin)', function () {
  this.timeout(60_000);

  it('reads back every write blkback acknowledged, in map and persistent modes, while guests are destroyed mid-I/O', async () => {
    for (const seed of [2, 3]) {
      let last: WorldView | undefined;
      const cfg = configForSeed(seed, 'deterministic', { steps: 6000, blk: true, guests: 3, hostile: 0, injectors: ['domain-destroy'], faultRate: 1 / 500 });
      const r = await runDeterministic(cfg, { onCheck: (v) => { last = v; } });
      expect(r.error, r.error).to.equal(undefined);
      expect(r.violations, JSON.stringify(r.violations.slice(0, 2))).to.deep.equal([]);
      const io = (last?.domains ?? []).flatMap((d) => d.books?.workloads ?? []).filter((w) => w.name === 'vbd-io');
      expect(io.length).to.be.at.least(3);
      const ok = io.reduce((a, w) => a + w.okOps, 0);
      expect(ok).to.be.above(100);
      expect(io.flatMap((w) => w.verifyFailures)).to.deep.equal([]);
      // dom0's maptrack was held to blkback's own count throughout (grant-leak applied on every check).
      expect(r.checkers.find((c) => c.name === 'grant-leak')?.applied).to.equal(r.checkers.find((c) => c.name === 'grant-leak')?.checks);
      console.log(`      seed ${seed} (${cfg.blkPersistent ? 'persistent grants' : 'map per request'}): ${ok} verified vbd operations, ${r.stats.domainsDestroyed} guests destroyed`);
    }
  });

  it('replays a run with the block drivers identically', async () => {
    const cfg = configForSeed(5, 'deterministic', { steps: 3000, blk: true, faults: 'none' });
    const a = await runDeterministic(cfg);
    const b = await runDeterministic(cfg);
    expect(a.ok).to.equal(true);
    expect(b.traceHash).to.equal(a.traceHash);
  });
});
