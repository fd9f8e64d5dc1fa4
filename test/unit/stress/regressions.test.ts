/**
 * Seeds that once found real bugs stay clean. A seed's interleavings move
 * whenever the code under it changes, so these are a smoke test; the bugs
 * themselves are pinned by one-thread tests that force their interleaving
 * (test/unit/xenbus/restart.test.ts).
 */
import { expect } from 'chai';
import { configForSeed } from '../../../stress/config.ts';
import { runDeterministic } from '../../../stress/run-det.ts';

const FOUND: readonly { seed: number; steps: number; bug: string }[] = [
  { seed: 30, steps: 6000, bug: 'a restarted XenBus backend mapped and bound the keys its frontend was revoking to resume; blkfront then held I/O forever' },
  { seed: 45, steps: 6000, bug: 'the same race, seen as vbd requests unanswered after the drain' },
  { seed: 96, steps: 12000, bug: 'two backend restarts in quick succession left devices of the stopped bus running beside the new ones (a grant leak, a closed vbd)' },
];

describe('stress seeds that found bugs', function () {
  this.timeout(60_000);

  for (const f of FOUND) {
    it(`stays clean on seed ${f.seed} with its backend restarts (${f.bug})`, async () => {
      const r = await runDeterministic(configForSeed(f.seed, 'deterministic', { steps: f.steps }));
      expect(r.error, r.error).to.equal(undefined);
      expect(r.violations, JSON.stringify(r.violations.slice(0, 3))).to.deep.equal([]);
      expect(r.stats.backendRestarts).to.be.at.least(1);
      expect(r.config.blk).to.not.equal(undefined);
    });
  }
});
