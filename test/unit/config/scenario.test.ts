import { expect } from 'chai';
import { join } from 'node:path';
import { expandSweep, parseBitrate, parseByteSize, parseScenario, readScenarioFile, type ParsedScenario, type ScenarioError } from '../../../cli/config/scenario.ts';

const EXAMPLES = join(import.meta.dirname, '../../../examples');

/** A small virtual directory the scenario's relative paths resolve into. */
const FILES: Record<string, string> = {
  '/v/a.cfg': 'name = "a"\nmemory = 32\ndisk = [ "ram:8M,,xvda", "ram:4M,,xvdb" ]\nvif = [ "" ]\n',
  '/v/b.cfg': 'name = "b"\nmemory = 32\ndisk = [ "ram:8M,,xvda" ]\nvif = [ "" ]\n',
  '/v/dd.cfg': 'name = "dd"\nmemory = 32\ndriver_domain = 1\n',
  '/v/r.fio': '[global]\nioengine=libaio\n[r]\nrw=randread\niodepth=4\n[w]\nrw=write\nstonewall\n',
};
const readFile = (p: string): string => {
  const t = FILES[p];
  if (t === undefined) throw Object.assign(new Error(`ENOENT ${p}`), { code: 'ENOENT' });
  return t;
};
function parse(yaml: string): ParsedScenario {
  const r = parseScenario(yaml, { file: '/v/s.yaml', readFile });
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}
function failure(yaml: string): ScenarioError {
  const r = parseScenario(yaml, { file: '/v/s.yaml', readFile });
  if (r.ok) throw new Error(`parsed, expected an error:\n${yaml}`);
  return r.error;
}

describe('scenario files', () => {
  it('fills in every default for an empty document', () => {
    const s = parse('').scenario;
    expect(s.machine).to.deep.equal({ memory: 256 << 20, page_size: 4096, dom0: { memory: 64 << 20, memory_model: 'p2m', dma: 'swiotlb', iommu: 'off' } });
    expect(s.domains).to.deep.equal([]);
    expect(s.sweep).to.deep.equal([]);
  });

  it('reads the machine and picks dom0 defaults from its memory model', () => {
    const m = (y: string) => parse(`machine:\n${y}`).scenario.machine;
    expect(m('  memory: 1G\n  page_size: 16384\n').memory).to.equal(1 << 30);
    expect(m('  page_size: 16384\n').page_size).to.equal(16384);
    expect(m('  dom0: { memory_model: pm }\n').dom0).to.include({ dma: 'direct', iommu: 'off' });
    expect(m('  dom0: { memory_model: vp }\n').dom0).to.include({ dma: 'xlate' });
    expect(m('  dom0: { dma: iommu }\n').dom0).to.include({ dma: 'iommu', iommu: 'strict' });
    expect(m('  dom0: { dma: iommu, iommu: passthrough, memory: 32M }\n').dom0).to.deep.equal({ memory: 32 << 20, memory_model: 'p2m', dma: 'iommu', iommu: 'passthrough' });
    expect(m('  memory: 268435456\n').memory).to.equal(256 << 20);
  });

  it('reads domains from files (relative to the YAML) and inline xl text, with set: overrides', () => {
    const s = parse('domains:\n  - config: a.cfg\n    set: { memory: 48, vcpus: 2 }\n  - xl: |\n      name = "c"\n      disk = [ "ram:1M,,xvda" ]\n').scenario;
    expect(s.domains.map((d) => [d.config.name, d.config.memory, d.config.vcpus])).to.deep.equal([['a', 48, 2], ['c', 32, 1]]);
    expect(s.domains[0]?.source).to.equal('/v/a.cfg');
    expect(s.domains[1]?.source).to.equal('/v/s.yaml:domains[1].xl');
  });

  it('generates the same MACs for the same seed, and different ones for another seed', () => {
    const mac = (seed: number) => parse(`seed: ${seed}\ndomains: [ { config: a.cfg } ]`).scenario.domains[0]?.config.vif[0]?.mac;
    expect(mac(1)).to.equal(mac(1));
    expect(mac(1)).to.not.equal(mac(2));
  });

  it('reads block workloads from job files (with fio_options over every job) and inline options', () => {
    const s = parse(`domains: [ { config: a.cfg } ]
block:
  - { domain: a, vdev: xvda, fio: r.fio, fio_options: { iodepth: 16 } }
  - { domain: a, vdev: xvdb, fio: { rw: randwrite, bs: 8k, iodepth: 2, ioengine: libaio } }
`).scenario;
    expect(s.block[0]).to.deep.include({ domain: 'a', vdev: 'xvda', devid: 51712, fio_file: '/v/r.fio' });
    expect(s.block[0]?.jobs.map((j) => [j.name, j.iodepth, j.groupid])).to.deep.equal([['r', 16, 0], ['w', 16, 1]]);
    expect(s.block[1]?.jobs.map((j) => [j.name, j.rw, j.bs.write, j.iodepth])).to.deep.equal([['a-xvdb', 'randwrite', 8192, 2]]);
  });

  it('reads network streams with iperf3-like defaults', () => {
    const s = parse('domains: [ { config: a.cfg }, { config: b.cfg } ]\nnetwork:\n  - { from: a, to: b }\n  - { from: b, to: dom0, protocol: udp, bytes: 1G, parallel: 4 }\n').scenario;
    expect(s.network[0]).to.deep.equal({ from: 'a', to: 'b', protocol: 'tcp', bytes: null, time_us: 10e6, size: 128 * 1024, parallel: 1, bitrate: null });
    expect(s.network[1]).to.deep.equal({ from: 'b', to: 'dom0', protocol: 'udp', bytes: 1 << 30, time_us: null, size: 1460, parallel: 4, bitrate: null });
  });

  it('reads a stream bitrate as iperf3 -b does: bits/s, K/M/G/T in powers of 1000, 0 unlimited', () => {
    const s = parse('domains: [ { config: a.cfg }, { config: b.cfg } ]\nnetwork:\n  - { from: a, to: b, bitrate: 2.5G }\n  - { from: b, to: a, bitrate: 0 }\n  - { from: a, to: b, bitrate: 100k }\n').scenario;
    expect(s.network.map((n) => n.bitrate)).to.deep.equal([2.5e9, 0, 100e3]);
    expect(parseBitrate('10M')).to.equal(10e6);
    for (const bad of ['fast', '-1M', '10 Mbit', '1e3', '']) expect(parseBitrate(bad), bad).to.equal(null);
  });

  it('accepts disks served by a driver domain', () => {
    FILES['/v/c.cfg'] = 'name = "c"\ndisk = [ "vdev=xvda, backend=dd, target=ram:1M" ]\n';
    const s = parse('domains: [ { config: dd.cfg }, { config: c.cfg } ]').scenario;
    expect(s.domains[1]?.config.disk[0]?.backend).to.equal('dd');
  });

  describe('errors name the YAML place, the path, and what was expected', () => {
    const cases: [string, string][] = [
      ['domains: [ { config: a.cfg }, { config: b.cfg } ]\nnetwork: [ { from: a, to: b, bitrate: lots } ]', 'network[0].bitrate: expected bits per second such as 100M, 2.5G or 0 (unlimited), got "lots"'],
      ['machin: {}', "/v/s.yaml:1:1: machin: unknown key `machine'".replace("`machine'", "`machin'; did you mean `machine'?")],
      ['machine:\n  dom0:\n    dma: bounce\n', '/v/s.yaml:3:10: machine.dom0.dma: expected one of direct, p2m, xlate, iommu, swiotlb, legacy, got "bounce"'],
      ['machine:\n  dom0:\n    dma: iommu\n    iommu: off\n', '/v/s.yaml:4:12: machine.dom0.iommu: dma: iommu needs an IOMMU'],
      ['machine:\n  page_size: 8192\n', '/v/s.yaml:2:14: machine.page_size: expected 4096 or 16384, got 8192'],
      ['machine:\n  memory: lots\n', 'machine.memory: expected a size (bytes, or a number with K, M, G or T, e.g. 256M), got "lots"'],
      ['machine:\n  memory: 1000\n', 'machine.memory: expected a non-zero multiple of the page size (4096)'],
      ['machine:\n  memory: 32G\n', 'machine.memory: at most 4G'],
      ['machine: { memory: 96M }\ndomains: [ { config: a.cfg }, { config: b.cfg } ]', 'need 128 MiB, more than the machine\'s 96 MiB'],
      ['domains: [ { config: nope.cfg } ]', '/v/s.yaml:1:22: domains[0].config: cannot read /v/nope.cfg: ENOENT'],
      ['domains: [ { config: a.cfg, xl: "name=\\"x\\"" } ]', 'domains[0]: expected exactly one of `config: FILE.cfg` or `xl: TEXT`'],
      ['domains: [ { xl: "memory = 5" } ]', 'domains[0].xl: invalid domain configuration:\n  /v/s.yaml:domains[0].xl: Domain name must be specified.'],
      ['domains: [ { xl: "name = \\"x\\"\\nmemory = y" } ]', "/v/s.yaml:domains[0].xl:2:10: config parsing error near `y'"],
      ['domains: [ { config: a.cfg }, { config: a.cfg } ]', 'domains[1]: duplicate domain name a'],
      ['domains: [ { xl: "name = \\"dom0\\"" } ]', "a guest cannot be called dom0: that is dom0's name"],
      ['domains: [ { config: a.cfg, set: { Memory: 5 } } ]', "domains[0].set: `Memory' is not an xl key"],
      ['domains: [ { xl: "name=\\"c\\"\\ndisk=[\\"vdev=xvda,backend=b,target=ram:1M\\"]" }, { config: b.cfg } ]', 'a disk has backend=b, which is not a driver domain (set driver_domain = 1 in its config)'],
      ['domains: [ { xl: "name=\\"c\\"\\nvif=[\\"backend=zz\\"]" } ]', 'a vif has backend=zz, which is not a domain of this scenario'],
      ['domains: [ { config: a.cfg } ]\nblock: [ { domain: b, vdev: xvda, fio: r.fio } ]', '/v/s.yaml:2:20: block[0].domain: no domain named b in this scenario'],
      ['domains: [ { config: a.cfg } ]\nblock: [ { domain: a, vdev: xvdc, fio: r.fio } ]', 'block[0].vdev: a has no disk xvdc (it has xvda, xvdb)'],
      ['domains: [ { config: a.cfg } ]\nblock: [ { domain: a, vdev: xvdA, fio: r.fio } ]', 'block[0].vdev: Invalid or unsupported virtual disk identifier xvdA'],
      ['domains: [ { config: a.cfg } ]\nblock: [ { domain: a, vdev: xvda, fio: { rw: read, bogus: 1 } } ]', 'block[0].fio: /v/s.yaml:block[0].fio: Bad option <bogus=1>'],
      ['domains: [ { config: a.cfg } ]\nblock: [ { domain: a, vdev: xvda, fio: r.fio, fio_options: { iodepth: 0 } } ]', 'block[0].fio_options: /v/r.fio: override iodepth=0'],
      ['domains: [ { config: a.cfg } ]\nblock: [ { domain: a, vdev: xvda, fio: { filename: /dev/xvdb } } ]', 'job a-xvda: filename=/dev/xvdb is not xvda, the disk this workload is attached to'],
      ['domains: [ { config: a.cfg } ]\nblock: [ { domain: a, vdev: xvda, fio: 5 } ]', 'block[0].fio: expected an fio job file path or a mapping of fio options, got number 5'],
      ['domains: [ { config: a.cfg }, { config: dd.cfg } ]\nnetwork: [ { from: a, to: dd } ]', 'network[0].to: dd has no network interface'],
      ['domains: [ { config: a.cfg } ]\nnetwork: [ { from: a, to: a } ]', 'network[0].to: a stream needs two different endpoints'],
      ['domains: [ { config: a.cfg } ]\nnetwork: [ { from: a, to: dom0, bytes: 1M, time: 2s } ]', 'network[0].time: give either bytes or time, not both'],
      ['domains: [ { config: a.cfg } ]\nnetwork: [ { from: a, to: dom0, protocol: sctp } ]', 'network[0].protocol: expected one of tcp, udp, got "sctp"'],
      ['domains: [ { config: a.cfg } ]\nnetwork: [ { from: a, to: dom0, parallel: 500 } ]', 'network[0].parallel: expected an integer in 1..128, got 500'],
      ['domains: [ { config: a.cfg } ]\nnetwork: [ { from: a, to: dom0, time: forever } ]', 'network[0].time: expected a duration above 0'],
      ['sweep: { machine.dom0.dma: [] }', 'sweep.machine.dom0.dma: expected a non-empty list of values'],
      ['sweep: { machine.dom0.dma: [swiotlb, bounce] }', '/v/s.yaml:1:38: sweep.machine.dom0.dma[1] → machine.dom0.dma: expected one of direct'],
      ['sweep: { machine.dom0.dmaa: [iommu] }', "machine.dom0.dmaa: unknown key `dmaa'; did you mean `dma'?"],
      ['sweep: { block.3.fio.iodepth: [1] }', '/v/s.yaml:1:32: sweep.block.3.fio.iodepth[0]: block[3] does not exist (the list has 0 entries)'],
      ['domains: [ { config: a.cfg } ]\nblock: [ { domain: a, vdev: xvda, fio: r.fio } ]\nsweep: { block.0.fio.iodepth: [1] }', 'block[0].fio is not a mapping; to sweep options of a job file use fio_options'],
      ['machine: [1, 2]', 'machine: expected the machine (a mapping with keys memory, page_size, dom0), got a list'],
      ['a: [1, 2', 'YAML syntax'],
      ['machine: {}\nmachine: {}', 'YAML syntax: Map keys must be unique'],
    ];
    for (const [yaml, want] of cases) {
      it(`reports ${JSON.stringify(yaml)}`, () => {
        expect(failure(yaml).message).to.contain(want);
      });
    }

    it('reports every problem, not just the first', () => {
      const e = failure('machine:\n  page_size: 1\n  dom0: { dma: bounce }\nnetwork: [ { frm: a } ]');
      expect(e.issues.map((i) => i.path)).to.deep.equal(['machine.page_size', 'machine.dom0.dma', 'network[0].frm']);
    });
  });

  describe('sweeps', () => {
    it('expands the matrix, first axis slowest, each point a complete valid scenario', () => {
      const p = parse(`domains: [ { config: a.cfg } ]
block: [ { domain: a, vdev: xvda, fio: { rw: randread, ioengine: libaio } } ]
sweep:
  machine.dom0.dma: [swiotlb, iommu]
  block.0.fio.iodepth: [1, 8, 32]
`);
      expect(p.scenario.sweep).to.deep.equal([{ path: 'machine.dom0.dma', values: ['swiotlb', 'iommu'] }, { path: 'block.0.fio.iodepth', values: [1, 8, 32] }]);
      const pts = expandSweep(p, { readFile });
      if (!pts.ok) throw new Error(pts.error.message);
      expect(pts.value.map((x) => x.point)).to.deep.equal([
        { 'machine.dom0.dma': 'swiotlb', 'block.0.fio.iodepth': 1 }, { 'machine.dom0.dma': 'swiotlb', 'block.0.fio.iodepth': 8 },
        { 'machine.dom0.dma': 'swiotlb', 'block.0.fio.iodepth': 32 }, { 'machine.dom0.dma': 'iommu', 'block.0.fio.iodepth': 1 },
        { 'machine.dom0.dma': 'iommu', 'block.0.fio.iodepth': 8 }, { 'machine.dom0.dma': 'iommu', 'block.0.fio.iodepth': 32 },
      ]);
      const last = pts.value[5]?.scenario;
      expect(last?.machine.dom0).to.include({ dma: 'iommu', iommu: 'strict' });
      expect(last?.block[0]?.jobs[0]?.iodepth).to.equal(32);
      expect(last?.sweep).to.deep.equal([]);
    });

    it('sweeps job-file options through fio_options and domain settings through set', () => {
      const p = parse(`domains: [ { config: a.cfg } ]
block: [ { domain: a, vdev: xvda, fio: r.fio } ]
sweep:
  block[0].fio_options.bs: [4k, 64k]
  domains.0.set.memory: [16, 64]
`);
      const pts = expandSweep(p, { readFile });
      if (!pts.ok) throw new Error(pts.error.message);
      expect(pts.value.map((x) => [x.scenario.block[0]?.jobs[0]?.bs.read, x.scenario.domains[0]?.config.memory])).to.deep.equal([[4096, 16], [4096, 64], [65536, 16], [65536, 64]]);
    });

    it('refuses a combination that is invalid only together', () => {
      const p = parse(`domains: [ { config: a.cfg } ]
sweep:
  machine.memory: [96M, 256M]
  domains.0.set.memory: [16, 64]
`);
      const pts = expandSweep(p, { readFile });
      expect(!pts.ok && pts.error.message).to.contain('sweep point {machine.memory="96M", domains.0.set.memory=64} → machine.memory');
    });

    it('gives the scenario itself when there is no sweep', () => {
      const p = parse('');
      const pts = expandSweep(p);
      expect(pts.ok && pts.value).to.deep.equal([{ point: {}, scenario: p.scenario }]);
    });
  });

  it('warns, without failing, about a DMA path that does not fit the memory model', () => {
    const p = parse('machine: { dom0: { dma: direct } }');
    expect(p.warnings[0]?.message).to.contain('dma: direct hands devices pseudo-physical addresses');
  });

  it('reads sizes as bytes or binary K/M/G/T', () => {
    expect(parseByteSize('256M')).to.equal(256 << 20);
    expect(parseByteSize('1GiB')).to.equal(1 << 30);
    expect(parseByteSize('4k')).to.equal(4096);
    expect(parseByteSize(4096)).to.equal(4096);
    expect(parseByteSize('1.5G')).to.equal(null);
    expect(parseByteSize(-1)).to.equal(null);
  });

  it('validates examples/scenario.yaml and expands its sweep', () => {
    const r = readScenarioFile(join(EXAMPLES, 'scenario.yaml'));
    if (!r.ok) throw new Error(r.error.message);
    expect(r.value.warnings).to.deep.equal([]);
    expect(r.value.scenario.domains.map((d) => d.config.name)).to.deep.equal(['domu1', 'storage-dd', 'domu2']);
    const pts = expandSweep(r.value);
    expect(pts.ok && pts.value.length).to.equal(4);
  });
});
