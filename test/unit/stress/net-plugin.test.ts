/**
 * The real network drivers under the stress: netback with bridge xenbr0 in
 * dom0 and netfront in each well-behaved guest, exchanging verified UDP
 * frames — deterministic like the rest, so a failure replays.
 */
import { expect } from 'chai';
import { configForSeed } from '../../../stress/config.ts';
import { runDeterministic } from '../../../stress/run-det.ts';
import type { WorldView, WorkloadBooks } from '../../../stress/view.ts';

function netBooks(v: WorldView | undefined, name: string): WorkloadBooks[] {
  return (v?.domains ?? []).flatMap((d) => d.books?.workloads ?? []).filter((w) => w.name === name);
}

describe('stress with the real network drivers (net-plugin)', function () {
  this.timeout(60_000);

  it('delivers every frame at most once and intact while netback restarts and guests are destroyed mid-stream', async () => {
    let last: WorldView | undefined;
    const cfg = configForSeed(4, 'deterministic', { steps: 6000, net: true, guests: 3, hostile: 0, injectors: ['backend-restart', 'domain-destroy'], faultRate: 1 / 600 });
    const r = await runDeterministic(cfg, { onCheck: (v) => { last = v; } });
    expect(r.error, r.error).to.equal(undefined);
    expect(r.violations, JSON.stringify(r.violations.slice(0, 2))).to.deep.equal([]);
    const tx = netBooks(last, 'vif-tx');
    const rx = netBooks(last, 'vif-rx');
    expect(tx.length).to.be.at.least(3);
    const sent = tx.reduce((a, w) => a + w.okOps, 0);
    const got = rx.reduce((a, w) => a + w.okOps, 0);
    expect(got).to.be.above(100);
    expect(got).to.be.at.most(sent);
    expect(rx.flatMap((w) => w.verifyFailures)).to.deep.equal([]);
    // Faults fired, and the checkers ran on every check (dom0's maptrack held to netback's own count).
    expect(r.faults.reduce((a, f) => a + f.fired, 0)).to.be.above(0);
    for (const name of ['grant-leak', 'frame-table', 'acked-writes-read-back', 'progress']) {
      const c = r.checkers.find((x) => x.name === name);
      expect(c?.checks, name).to.be.above(0);
      expect(c?.applied, name).to.equal(c?.checks);
    }
    console.log(`      ${got} of ${sent} frames delivered and verified; faults ${r.faults.filter((f) => f.fired > 0).map((f) => `${f.name}×${f.fired}`).join(', ')}`);
  });

  it('cuts off hostile netfronts (req_prod leap, >20-slot chain) while the good guests keep exchanging frames', async () => {
    let last: WorldView | undefined;
    const cfg = configForSeed(7, 'deterministic', { steps: 8000, net: true, guests: 4, hostile: 2, faults: 'none' });
    const r = await runDeterministic(cfg, { onCheck: (v) => { last = v; } });
    expect(r.error, r.error).to.equal(undefined);
    expect(r.violations, JSON.stringify(r.violations.slice(0, 2))).to.deep.equal([]);
    const [cut] = netBooks(last, 'vif-hostile-cutoff');
    expect(cut?.ops).to.be.at.least(1);
    expect(cut?.okOps).to.equal(cut?.ops);
    expect(cut?.stuck).to.equal(undefined);
    expect(netBooks(last, 'vif-rx').reduce((a, w) => a + w.okOps, 0)).to.be.above(100);
    expect(r.config.net?.lost).to.equal(0);
  });

  it('replays a run with the network drivers identically', async () => {
    const cfg = configForSeed(6, 'deterministic', { steps: 3000, net: true, faults: 'none' });
    const a = await runDeterministic(cfg);
    const b = await runDeterministic(cfg);
    expect(a.ok, JSON.stringify(a.violations.slice(0, 2)) + (a.error ?? '')).to.equal(true);
    expect(b.traceHash).to.equal(a.traceHash);
  });

  it('catches a netback that delivers every packet twice', async () => {
    const cfg = configForSeed(4, 'deterministic', { steps: 3000, guests: 3, hostile: 0, faults: 'none', mutant: 'netback-deliver-twice' });
    const r = await runDeterministic(cfg);
    expect(r.ok).to.equal(false);
    const v = r.violations.filter((x) => x.checker === 'acked-writes-read-back');
    expect(v.length).to.be.above(0);
    expect(v[0]?.message).to.match(/twice|more than/);
  });
});
