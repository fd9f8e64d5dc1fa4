import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadScenario, loadScenarioText, BLKBACK_DEFAULTS } from '../../../cli/run/load-scenario.ts';
import { parseScenario } from '../../../cli/config/scenario.ts';
import { planCell } from '../../../cli/run/plan.ts';

const ROOT = join(import.meta.dirname, '../../..');
const EXAMPLES = join(ROOT, 'examples');

const GUEST = `domains:
  - xl: |
      name = "g"
      memory = 16
      disk = [ 'ram:8M,,xvda' ]
      vif = [ '' ]
block:
  - domain: g
    vdev: xvda
    fio: { rw: randread, bs: 4k, size: 1M, ioengine: libaio }
`;

function load(text: string, seed?: number) {
  return loadScenarioText(text, '/s/test.yaml', seed === undefined ? {} : { seed });
}
function loaded(text: string, seed?: number) {
  const r = load(text, seed);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}
function failure(text: string): string {
  const r = load(text);
  if (r.ok) throw new Error('expected the scenario to be refused');
  return r.error.message;
}

describe('xensim run: reading a scenario with dom0 blkback settings', () => {
  it('defaults blkback to persistent grants when the scenario says nothing', () => {
    const s = loaded(GUEST);
    expect(s.points).to.have.length(1);
    expect(s.points[0]?.blkback).to.deep.equal(BLKBACK_DEFAULTS);
    expect(s.info.sweep).to.deep.equal([]);
  });

  it('reads machine.dom0.blkback and hands the rest to the scenario validator', () => {
    const s = loaded(`machine:\n  memory: 128M\n  dom0:\n    memory: 32M\n    blkback: { mode: copy, max_queues: 2 }\n${GUEST}`);
    expect(s.points[0]?.blkback).to.deep.equal({ ...BLKBACK_DEFAULTS, mode: 'copy', max_queues: 2 });
    expect(s.points[0]?.scenario.machine.dom0.memory).to.equal(32 << 20);
    expect(s.points[0]?.scenario.machine.memory).to.equal(128 << 20);
  });

  it('cuts out a dom0 or machine map that only held blkback', () => {
    const a = loaded(`machine:\n  dom0:\n    blkback:\n      mode: map\n${GUEST}`);
    expect(a.points[0]?.blkback.mode).to.equal('map');
    const b = loaded(`machine:\n  memory: 128M\n  dom0: { blkback: { mode: map } }\n${GUEST}`);
    expect(b.points[0]?.blkback.mode).to.equal('map');
    expect(b.points[0]?.scenario.machine.memory).to.equal(128 << 20);
  });

  it('keeps every other line and column where it was, so the validator places its errors right', () => {
    const text = `machine:\n  dom0:\n    blkback: { mode: map }\n    dma: sideways\n${GUEST}`;
    const msg = failure(text);
    expect(msg).to.match(/^\/s\/test\.yaml:4:10: machine\.dom0\.dma: expected one of direct/);
    // The same error without the extension is at the same place.
    const plain = parseScenario(text.replace('    blkback: { mode: map }\n', '    # a comment line\n'), { file: '/s/test.yaml' });
    expect(!plain.ok && plain.error.message).to.match(/^\/s\/test\.yaml:4:10: machine\.dom0\.dma/);
  });

  it('places its own complaints in the YAML with what was expected', () => {
    expect(failure(`machine:\n  dom0:\n    blkback: { mode: grab }\n${GUEST}`)).to.equal(
      '/s/test.yaml:3:22: machine.dom0.blkback.mode: expected one of persistent, map, copy, got "grab"',
    );
    expect(failure(`machine:\n  dom0:\n    blkback: { mdoe: map }\n${GUEST}`)).to.contain("3:16: machine.dom0.blkback.mdoe: unknown key `mdoe'; did you mean `mode'?");
    expect(failure(`machine:\n  dom0:\n    blkback: { max_ring_page_order: 9 }\n${GUEST}`)).to.contain('expected an integer in 0..4, got number 9');
    expect(failure(`machine:\n  dom0:\n    blkback: map\n${GUEST}`)).to.contain('machine.dom0.blkback: expected blkback settings (a mapping');
  });

  it('reports its complaints and the validator\'s together, in file order', () => {
    const msg = failure(`machine:\n  dom0:\n    blkback: { mode: grab }\n    iommu: maybe\n${GUEST}`);
    const lines = msg.split('\n');
    expect(lines).to.have.length(2);
    expect(lines[0]).to.contain(':3:').and.contain('blkback.mode');
    expect(lines[1]).to.contain(':4:').and.contain('dom0.iommu');
  });

  it('sweeps blkback axes together with scenario axes, the first written varying slowest', () => {
    const s = loaded(`${GUEST}sweep:\n  machine.dom0.blkback.mode: [persistent, map, copy]\n  block.0.fio.iodepth: [1, 8]\n`);
    expect(s.axes.map((a) => a.path)).to.deep.equal(['machine.dom0.blkback.mode', 'block.0.fio.iodepth']);
    expect(s.info.cell_count).to.equal(6);
    expect(s.points.map((p) => [p.blkback.mode, p.scenario.block[0]?.jobs[0]?.iodepth])).to.deep.equal([
      ['persistent', 1], ['persistent', 8], ['map', 1], ['map', 8], ['copy', 1], ['copy', 8],
    ]);
    expect(s.points.map((p) => p.index)).to.deep.equal([0, 1, 2, 3, 4, 5]);
    expect(s.points[3]?.point).to.deep.equal({ 'machine.dom0.blkback.mode': 'map', 'block.0.fio.iodepth': 8 });
  });

  it('orders a scenario axis written first before a blkback axis', () => {
    const s = loaded(`${GUEST}sweep:\n  block.0.fio.iodepth: [1, 8]\n  machine.dom0.blkback.mode: [map, copy]\n`);
    expect(s.points.map((p) => `${p.scenario.block[0]?.jobs[0]?.iodepth}/${p.blkback.mode}`)).to.deep.equal(['1/map', '1/copy', '8/map', '8/copy']);
  });

  it('refuses a bad blkback sweep value at its place', () => {
    const msg = failure(`${GUEST}sweep:\n  machine.dom0.blkback.mode: [persistent, mapp]\n`);
    expect(msg).to.match(/test\.yaml:12:43: sweep\.machine\.dom0\.blkback\.mode\[1\]: expected one of persistent, map, copy, got "mapp"; did you mean map\?/);
    expect(failure(`${GUEST}sweep:\n  machine.dom0.blkback.moed: [map]\n`)).to.contain("blkback has no setting `moed'; did you mean `mode'?");
    expect(failure(`${GUEST}sweep:\n  machine.dom0.blkback.mode: []\n`)).to.contain('expected a non-empty list of values');
  });

  it('changes the digest with the blkback settings, so shards of different scenarios do not merge', () => {
    const a = loaded(`machine:\n  dom0:\n    blkback: { mode: map }\n${GUEST}`);
    const b = loaded(`machine:\n  dom0:\n    blkback: { mode: copy }\n${GUEST}`);
    const c = loaded(GUEST);
    expect(new Set([a.info.digest, b.info.digest, c.info.digest]).size).to.equal(3);
  });

  it('overrides the seed with --seed, which regenerates what the seed decides', () => {
    const withSeed = `seed: 5\n${GUEST}`;
    const a = loaded(withSeed);
    const b = loaded(withSeed, 6);
    const c = loaded(GUEST, 6);
    expect(a.info.seed).to.equal(5);
    expect(b.info.seed).to.equal(6);
    expect(c.info.seed).to.equal(6);
    const mac = (s: typeof a) => s.points[0]?.scenario.domains[0]?.config.vif[0]?.mac;
    expect(mac(b)).to.equal(mac(c));
    expect(mac(a)).to.not.equal(mac(b));
    expect(a.info.digest).to.not.equal(b.info.digest);
  });

  it('passes YAML syntax errors through with their place', () => {
    expect(failure('machine: [\n')).to.match(/^\/s\/test\.yaml(:\d+:\d+)?: YAML syntax/);
  });

  it('says when the file cannot be read', () => {
    const r = loadScenario('/nonexistent/x.yaml');
    expect(!r.ok && r.error.message).to.equal('/nonexistent/x.yaml: cannot read the scenario: No such file or directory');
  });

  it('reads every example scenario, and plans every cell of it without a configuration error', () => {
    const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml'));
    expect(files).to.include.members(['block.yaml', 'grant-sweep.yaml', 'files.yaml', 'network.yaml', 'scenario.yaml']);
    for (const f of files) {
      const r = loadScenario(join(EXAMPLES, f));
      if (!r.ok) throw new Error(`${f}: ${r.error.message}`);
      for (const p of r.value.points) expect(planCell(p.scenario, p.blkback).errors, `${f} cell ${p.index}`).to.deep.equal([]);
      // Only the showcase has parts this build cannot run.
      const unavailable = r.value.points.flatMap((p) => planCell(p.scenario, p.blkback).plan.unavailable);
      if (f !== 'scenario.yaml') expect(unavailable, f).to.deep.equal([]);
      else expect(unavailable.length).to.be.greaterThan(0);
    }
  });
});
