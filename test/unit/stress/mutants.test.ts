/**
 * Every checker must be able to fail: each mutant (a deliberately broken
 * hypervisor, xenstored, backend, frontend or dom0 service) runs in the
 * deterministic world with the faults that exercise it, and must be reported
 * by the checkers it is meant for — while the same run without the mutant
 * stays clean, so what is caught is the mutant and nothing else.
 */
import { expect } from 'chai';
import { CHECKER_NAMES } from '../../../stress/checkers.ts';
import { configForSeed, type ConfigOverrides } from '../../../stress/config.ts';
import { MUTANTS, type Mutant } from '../../../stress/mutants.ts';
import { runDeterministic } from '../../../stress/run-det.ts';
import type { RunReport } from '../../../stress/report.ts';

const SEED = 2;

function scenario(m: Mutant): ConfigOverrides {
  const hostile = m.injectors.some((i) => i !== 'domain-destroy' && i !== 'backend-restart');
  return { steps: 4000, guests: 3, hostile: hostile ? 1 : 0, injectors: m.injectors, faultRate: m.injectors.length > 0 ? 1 / 150 : 0, blk: m.blk !== undefined };
}

const controls = new Map<string, Promise<RunReport>>();
function control(o: ConfigOverrides): Promise<RunReport> {
  const key = JSON.stringify(o);
  let r = controls.get(key);
  if (r === undefined) { r = runDeterministic(configForSeed(SEED, 'deterministic', o)); controls.set(key, r); }
  return r;
}

describe('stress mutants: every checker catches a deliberately broken component', function () {
  this.timeout(60_000);

  it('has a mutant for every checker', () => {
    const covered = new Set(MUTANTS.flatMap((m) => m.caughtBy));
    expect(CHECKER_NAMES.filter((c) => !covered.has(c))).to.deep.equal([]);
  });

  for (const m of MUTANTS) {
    it(`${m.caughtBy.join(' and ')} ${m.caughtBy.length > 1 ? 'catch' : 'catches'} ${m.name}: ${m.description}`, async () => {
      const o = scenario(m);
      const clean = await control(o);
      expect(clean.ok, `the run without the mutant failed: ${JSON.stringify(clean.violations.slice(0, 3))} ${clean.error ?? ''}`).to.equal(true);
      const r = await runDeterministic(configForSeed(SEED, 'deterministic', { ...o, mutant: m.name }));
      expect(r.error, r.error).to.equal(undefined);
      expect(r.ok).to.equal(false);
      const by = new Set(r.violations.map((v) => v.checker));
      for (const c of m.caughtBy) expect([...by], `${m.name} not caught by ${c}`).to.include(c);
      expect(r.replay).to.contain(`--mutant ${m.name}`);
    });
  }
});
