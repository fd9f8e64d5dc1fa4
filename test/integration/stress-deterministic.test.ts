/**
 * The default suite's short stress: several seeds of the deterministic mode,
 * each with its own seeded machine and fault mix, on a piscina pool (the
 * swarm), plus `xensim stress` itself: the table, the JSON, the exit code,
 * and a failure's replay line.
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../cli/main.ts';
import { CHECKER_NAMES } from '../../stress/checkers.ts';
import { INJECTOR_NAMES } from '../../stress/injectors.ts';
import { MUTANT_NAMES } from '../../stress/mutants.ts';
import { runSwarm } from '../../stress/swarm.ts';
import type { RunReport } from '../../stress/report.ts';

async function xensim(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(['node', 'xensim', ...args], { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}

describe('xensim stress, deterministic', function () {
  this.timeout(120_000);
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'xensim-stress-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs a swarm of seeds on a piscina pool, each with its own fault mix, all clean', async () => {
    const r = await runSwarm({ seeds: [1, 2, 3, 4], mode: 'deterministic', overrides: { steps: 6000 }, jobs: 2 });
    for (const x of r.runs) expect(x.ok, `seed ${x.seed}: ${x.error ?? JSON.stringify(x.violations.slice(0, 2))}`).to.equal(true);
    expect(r.runs.map((x) => x.seed)).to.deep.equal([1, 2, 3, 4]);
    expect(r.summary.failed).to.deep.equal([]);
    expect(new Set(r.runs.map((x) => x.traceHash)).size).to.equal(4);
    expect(new Set(r.runs.map((x) => JSON.stringify(x.config.injectors))).size).to.equal(4);
    const fired = r.summary.faults.filter((f) => f.fired > 0).map((f) => f.name);
    expect(fired.length).to.be.at.least(8);
    console.log(`      ${r.runs.reduce((a, x) => a + x.stats.steps, 0)} steps over 4 seeds in ${(r.summary.elapsedMs / 1000).toFixed(1)} s; ${r.summary.faults.reduce((a, f) => a + f.fired, 0)} faults fired`);
  });

  it('prints the table, writes the JSON and exits 0 on a clean run', async () => {
    const json = join(dir, 'run.json');
    const r = await xensim('stress', '--deterministic', '--seed', '5', '--duration', '0.5', '--json', json);
    expect(r.code, r.out + r.err).to.equal(0);
    expect(r.out).to.contain('xensim stress: seed 5, deterministic: OK').and.contain('invariant').and.contain('fault injector').and.contain('trace hash');
    const j = JSON.parse(readFileSync(json, 'utf8')) as RunReport;
    expect(j.ok).to.equal(true);
    expect(j.checkers.map((c) => c.name)).to.deep.equal(CHECKER_NAMES);
    expect(j.faults.map((f) => f.name)).to.deep.equal([...INJECTOR_NAMES]);
    expect(j.config.steps).to.equal(3000);
  });

  it('exits 1 on a violation and prints the seed, the last decisions and the command that replays them', async () => {
    const r = await xensim('stress', '--deterministic', '--seed', '7', '--steps', '3000', '--faults', 'none', '--mutant', 'back-ack-before-write');
    expect(r.code).to.equal(1);
    expect(r.out).to.contain('FAILED').and.contain('[acked-writes-read-back]').and.contain('scheduler decisions')
      .and.contain('reproduce with: xensim stress --deterministic --seed 7 --steps 3000 --faults none --mutant back-ack-before-write');
  });

  it('summarises a seed range and exits 1 if any seed failed', async () => {
    const json = join(dir, 'swarm.json');
    const ok = await xensim('stress', '--deterministic', '--seeds', '7..8', '--duration', '0.2', '--jobs', '2', '--json', json);
    expect(ok.code, ok.out + ok.err).to.equal(0);
    expect(ok.out).to.contain('2 seeds').and.contain('0 failed');
    const j = JSON.parse(readFileSync(json, 'utf8')) as { summary: { seeds: number }; runs: RunReport[] };
    expect(j.summary.seeds).to.equal(2);
    expect(j.runs).to.have.length(2);
    const bad = await xensim('stress', '--deterministic', '--seeds', '7..8', '--steps', '2000', '--faults', 'none', '--mutant', 'back-double-fetch');
    expect(bad.code).to.equal(1);
    expect(bad.out).to.contain('2 failed').and.contain('reproduce with');
  });

  it('lists its checkers, injectors and mutants, and refuses bad arguments', async () => {
    const l = await xensim('stress', '--list');
    expect(l.code).to.equal(0);
    for (const n of [...CHECKER_NAMES, ...INJECTOR_NAMES, ...MUTANT_NAMES]) expect(l.out).to.contain(n);
    expect((await xensim('stress', '--seeds', '5..3')).code).to.equal(1);
    expect((await xensim('stress', '--inject', 'no-such-fault')).code).to.equal(1);
    expect((await xensim('stress', '--mutant', 'nope')).code).to.equal(1);
    const both = await xensim('stress', '--seed', '1', '--seeds', '1..2');
    expect(both.code).to.equal(1);
    expect(both.err).to.contain('not both');
  });
});
