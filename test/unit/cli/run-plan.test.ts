import { expect } from 'chai';
import { loadScenarioText, BLKBACK_DEFAULTS } from '../../../cli/run/load-scenario.ts';
import { estimateSeconds, onCrashOf, planCell, workloadSeed } from '../../../cli/run/plan.ts';
import { benchJobs, benchMemoryMiB, planBench, BENCH_DEFAULTS } from '../../../cli/run/bench-plan.ts';
import { backendCounters } from '../../../cli/run/cell.ts';
import type { Scenario } from '../../../cli/config/scenario.ts';

function scenario(yaml: string): Scenario {
  const r = loadScenarioText(yaml, '/s/plan.yaml', { readFile: () => { throw Object.assign(new Error('no files here'), { code: 'ENOENT' }); } });
  if (!r.ok) throw new Error(r.error.message);
  const p = r.value.points[0];
  if (p === undefined) throw new Error('no point');
  return p.scenario;
}

const images = (sizes: Record<string, number>) => (path: string) => {
  const s = sizes[path];
  return s === undefined ? { error: 'does not exist (create the raw image first, e.g. truncate -s 64M FILE, or use ram:SIZE)' } : { bytes: s };
};

describe('xensim run: planning a cell', () => {
  it('turns xl domains into toolstack domains: memory, memory model from type, on_crash', () => {
    const s = scenario(`domains:
  - xl: |
      name = "a"
      type = "pv"
      memory = 24
      on_crash = "coredump-restart"
      disk = [ 'ram:8M,,xvda' ]
  - xl: |
      name = "b"
      type = "pvh"
      memory = 16
      on_crash = "preserve"
      disk = [ 'vdev=xvdb, access=ro, target=/img/b.raw' ]
  - xl: |
      name = "c"
      type = "hvm"
      memory_model = "pm"
`);
    const { plan, errors } = planCell(s, BLKBACK_DEFAULTS, { imageSize: images({ '/img/b.raw': 4 << 20 }) });
    expect(errors).to.deep.equal([]);
    expect(plan.domains.map((d) => [d.name, d.memoryKiB, d.model, d.onCrash])).to.deep.equal([
      ['a', 24 * 1024, 'p2m', 'restart'],
      ['b', 16 * 1024, 'vp', 'preserve'],
      ['c', 32 * 1024, 'pm', 'destroy'],
    ]);
    // A ram: disk is physical by default: the DMA controller, through dom0's default DMA API (x86 PV: swiotlb, no IOMMU).
    expect(plan.domains[0]?.disks).to.deep.equal([{ vdev: 'xvda', devid: 51712, target: 'ram:8M', access: 'w', devtype: 'disk', bytes: 8 << 20, device: { dma: 'swiotlb', iommu: 'passthrough', lazy: false } }]);
    expect(plan.domains[1]?.disks).to.deep.equal([{ vdev: 'xvdb', devid: 51728, target: '/img/b.raw', access: 'r', devtype: 'disk', bytes: 4 << 20 }]);
    expect(plan.dom0Drivers).to.deep.equal({ blkback: { mode: 'persistent' } });
    expect(plan.unavailable).to.deep.equal([]);
  });

  it('maps every xl on_crash action to a toolstack policy', () => {
    expect(['destroy', 'restart', 'rename-restart', 'preserve', 'coredump-destroy', 'coredump-restart', 'soft-reset'].map((a) => onCrashOf(a as never)))
      .to.deep.equal(['destroy', 'restart', 'restart', 'preserve', 'destroy', 'restart', 'restart']);
  });

  it('hands blkback settings to dom0 as DriverOptions', () => {
    const s = scenario('domains: []\n');
    const { plan } = planCell(s, { mode: 'copy', max_indirect_segments: 0, max_queues: 2, max_ring_page_order: 1 });
    expect(plan.dom0Drivers).to.deep.equal({ blkback: { mode: 'copy', maxIndirectSegments: 0, maxQueues: 2, maxRingPageOrder: 1 } });
  });

  it('converts the fio jobs for the disk they run on, with a seed per workload', () => {
    const s = scenario(`seed: 9
domains:
  - xl: |
      name = "g"
      disk = [ 'ram:8M,,xvda' ]
block:
  - domain: g
    vdev: xvda
    fio:
      jobs:
        - { name: w, rw: write, bs: 64k, size: 50%, runtime: 1s, time_based: 1, verify: crc32c, ioengine: libaio, iodepth: 4 }
        - { name: r, stonewall: 1, rw: randread, bs: 4k, runtime: 500ms, ramp_time: 100ms }
`);
    const { plan, errors } = planCell(s, BLKBACK_DEFAULTS);
    expect(errors).to.deep.equal([]);
    const b = plan.block[0];
    expect(b?.devid).to.equal(51712);
    expect(b?.jobs.map((j) => [j.name, j.rw, j.bs, j.iodepth, j.size, j.runtime, j.verify])).to.deep.equal([
      ['w', 'write', 65536, 4, 4 << 20, 1, true],
      ['r', 'randread', 4096, 1, undefined, 0.5, false],
    ]);
    expect(b?.seed).to.equal(workloadSeed(9, 0));
    expect(b?.estimateSec).to.be.closeTo(1.5 + 0.6, 1e-9);
  });

  it('estimates stonewall groups one after another and jobs of a group side by side', () => {
    expect(estimateSeconds([{ name: 'a', rw: 'read', runtime: 2 }, { name: 'b', rw: 'read', runtime: 3 }])).to.equal(3);
    expect(estimateSeconds([{ name: 'a', rw: 'read', runtime: 2 }, { name: 'b', rw: 'read', runtime: 3, stonewall: true }])).to.equal(5);
    expect(estimateSeconds([{ name: 'a', rw: 'read' }])).to.equal(1);
  });

  it('lists what cannot work: relative targets, qcow2, missing images, writes to read-only disks, jobs larger than the disk', () => {
    const s = scenario(`domains:
  - xl: |
      name = "g"
      disk = [ 'vg0/disk,,xvda', 'format=qcow2, vdev=xvdb, target=/img/q.qcow2', '/img/missing.raw,,xvdc', 'ram:4M,,xvdd,ro', 'ram:4M,,xvde' ]
block:
  - { domain: g, vdev: xvdd, fio: { rw: randwrite } }
  - { domain: g, vdev: xvde, fio: { rw: read, size: 8M } }
`);
    const { errors } = planCell(s, BLKBACK_DEFAULTS, { imageSize: images({}) });
    expect(errors).to.have.length(5);
    expect(errors[0]).to.equal("g: disk xvda (`vg0/disk,,xvda'): target vg0/disk: expected ram:SIZE (e.g. ram:64M) or an absolute path to a raw image");
    expect(errors[1]).to.contain('format=qcow2: xensim serves raw images and ram:SIZE disks only');
    expect(errors[2]).to.contain('image /img/missing.raw does not exist');
    expect(errors[3]).to.equal('block[0] (g/xvdd): job g-xvdd writes (rw=randwrite) but xvdd is attached read-only');
    expect(errors[4]).to.contain('block[1] (g/xvde)').and.contain('larger than the 4194304-byte device');
  });

  it('runs the rest and reports what this build cannot: driver-domain disks and vifs, streams to dom0', () => {
    const s = scenario(`domains:
  - xl: |
      name = "dd"
      driver_domain = 1
      vif = [ '' ]
  - xl: |
      name = "g"
      disk = [ 'ram:4M,,xvda', 'vdev=xvdb, backend=dd, target=ram:4M' ]
      vif = [ '', 'backend=dd' ]
  - xl: |
      name = "h"
      vif = [ 'ip=10.0.0.1' ]
block:
  - { domain: g, vdev: xvda, fio: { rw: read, size: 1M } }
  - { domain: g, vdev: xvdb, fio: { rw: read, size: 1M } }
network:
  - { from: g, to: h, time: 1s }
  - { from: g, to: dom0, time: 1s }
`);
    const { plan, errors } = planCell(s, BLKBACK_DEFAULTS);
    expect(errors).to.deep.equal([]);
    expect(plan.block.map((b) => b.vdev)).to.deep.equal(['xvda']);
    expect(plan.domains[1]?.disks.map((d) => d.vdev)).to.deep.equal(['xvda']);
    expect(plan.unavailable).to.have.length(4);
    expect(plan.unavailable[0]).to.contain("g: vif 1 (`backend=dd'): backend=dd: vifs served by a driver domain are not available in this build");
    expect(plan.unavailable[1]).to.contain('network[1] g -> dom0 (tcp): streams to or from dom0 are not available in this build');
    expect(plan.unavailable[2]).to.contain('backend=dd: disks served by a driver domain are not available in this build');
    expect(plan.unavailable[3]).to.equal('block[1] (g/xvdb): not run: its disk is not available in this build');
    // Addresses: written ones kept, the rest the next free in 10.0.0.0/24, in domain order.
    expect(plan.domains.map((d) => d.vifs.map((v) => [v.devid, v.ip]))).to.deep.equal([[[0, '10.0.0.2']], [[0, '10.0.0.3']], [[0, '10.0.0.1']]]);
    expect(plan.network).to.have.length(1);
    expect(plan.network[0]).to.deep.include({ from: 'g', to: 'h', fromDevid: 0, toDevid: 0, fromIp: '10.0.0.3', toIp: '10.0.0.1', protocol: 'tcp', estimateSec: 1 });
    expect(plan.network[0]!.spec).to.deep.equal({ protocol: 'tcp', length: 128 * 1024, parallel: 1, time: 1 });
  });

  it('serves ram: disks as physical disks through dom0\'s DMA API and IOMMU setting, image files and qdisk in software', () => {
    const s = scenario(`machine: { dom0: { dma: iommu, iommu: lazy } }
domains:
  - xl: |
      name = "g"
      disk = [ 'ram:4M,,xvda', 'backendtype=qdisk, vdev=xvdb, target=ram:4M', '/img/a.raw,,xvdc', 'backendtype=phy, vdev=xvdd, target=/img/a.raw', 'backendtype=tap, vdev=xvde, target=ram:1M' ]
`);
    const { plan, errors } = planCell(s, BLKBACK_DEFAULTS, { imageSize: images({ '/img/a.raw': 1 << 20 }) });
    expect(errors).to.deep.equal([
      "g: disk xvdd (`backendtype=phy, vdev=xvdd, target=/img/a.raw'): backendtype=phy: a physical disk here is a RAM medium behind the DMA block controller; give target=ram:SIZE, or backendtype=qdisk for an image file",
      "g: disk xvde (`backendtype=tap, vdev=xvde, target=ram:1M'): backendtype=tap: xensim serves phy (a DMA block controller) and qdisk (emulated in software) disks",
    ]);
    expect(plan.domains[0]!.disks.map((d) => [d.vdev, d.device ?? null])).to.deep.equal([
      ['xvda', { dma: 'iommu', iommu: 'explicit', lazy: true }],
      ['xvdb', null],
      ['xvdc', null],
    ]);
    expect(plan.notes.join('\n')).to.contain('2 disk(s) emulated in software (image files, backendtype=qdisk)');
    const t = planCell(scenario(`machine: { dom0: { dma: swiotlb, iommu: strict } }
domains:
  - xl: |
      name = "g"
      disk = [ 'ram:4M,,xvda' ]
`), BLKBACK_DEFAULTS);
    expect(t.plan.domains[0]!.disks[0]!.device).to.deep.equal({ dma: 'swiotlb', iommu: 'strict', lazy: false });
  });

  it('refuses a second stream through a vif already in one (its iperf endpoint owns the vif)', () => {
    const s = scenario(`domains:
  - xl: |
      name = "a"
      vif = [ '', '' ]
  - xl: |
      name = "b"
      vif = [ '' ]
network:
  - { from: a, to: b }
  - { from: b, to: a }
`);
    const { errors } = planCell(s, BLKBACK_DEFAULTS);
    expect(errors).to.deep.equal(["network[1] b -> a (tcp): b's vif 0 already carries network[0]; a vif takes part in one stream at a time here: give b another vif or run the streams in separate scenarios"]);
  });

  it('refuses streams between vifs on different bridges and addresses that are not IPv4', () => {
    const s = scenario(`domains:
  - xl: |
      name = "a"
      vif = [ 'bridge=xenbr1' ]
  - xl: |
      name = "b"
      vif = [ 'ip=fe80::1' ]
network:
  - { from: a, to: b, protocol: udp, bytes: 1M, bitrate: 50M }
`);
    const { errors } = planCell(s, BLKBACK_DEFAULTS);
    expect(errors).to.deep.equal(["b: vif 0 (`ip=fe80::1'): ip=fe80::1: expected an IPv4 address such as 10.0.0.5"]);
    const t = scenario(`domains:
  - xl: |
      name = "a"
      vif = [ 'bridge=xenbr1' ]
  - xl: |
      name = "b"
      vif = [ '' ]
network:
  - { from: a, to: b, protocol: udp, bytes: 1M, bitrate: 50M }
`);
    const r = planCell(t, BLKBACK_DEFAULTS);
    expect(r.errors).to.deep.equal(["network[0] a -> b (udp): a's vif is on bridge xenbr1 and b's on xenbr0; dom0 bridges, it does not route: put both on one bridge"]);
  });

  it('attaches no disk on 16 KiB pages, which blkfront cannot use yet, and says so', () => {
    const s = scenario(`machine: { page_size: 16384 }
domains:
  - xl: |
      name = "g"
      disk = [ 'ram:4M,,xvda' ]
block:
  - { domain: g, vdev: xvda, fio: { rw: read, size: 1M } }
`);
    const { plan, errors } = planCell(s, BLKBACK_DEFAULTS);
    expect(errors).to.deep.equal([]);
    expect(plan.domains[0]?.disks).to.deep.equal([]);
    expect(plan.block).to.deep.equal([]);
    expect(plan.unavailable[0]).to.contain('page_size 16384: block devices need 4 KiB pages in this build');
    expect(plan.unavailable[1]).to.equal('block[0] (g/xvda): not run: its disk is not available in this build');
  });

  it('says which settings are recorded but not modelled', () => {
    const s = scenario(`machine: { dom0: { dma: iommu } }
domains:
  - xl: |
      name = "g"
      memory = 16
      maxmem = 64
      vcpus = 4
      vif = [ '' ]
`);
    const { plan } = planCell(s, BLKBACK_DEFAULTS);
    expect(plan.notes.join('\n')).to.contain('g: maxmem=64 is recorded, not modelled')
      .and.contain('g: vcpus=4 is recorded');
    // A vif with no stream is still attached, as xl would.
    expect(plan.domains[0]?.vifs.map((v) => v.ip)).to.deep.equal(['10.0.0.1']);
    expect(plan.machine.dom0).to.deep.equal({ memory: 64 << 20, memory_model: 'p2m', dma: 'iommu', iommu: 'strict' });
  });
});

describe('xensim bench: planning the built-in benchmark', () => {
  it('is one cell by default: dom0 and 2 guests with ram disks, random reads then verified writes', () => {
    const r = planBench({ suite: 'all', duration: 2, size: 64 << 20, seed: 1 });
    if (!r.ok) throw new Error(r.error);
    const { cells, info, notes } = r.value;
    expect(cells).to.have.length(1);
    expect(info).to.include({ name: 'default', file: null, cell_count: 1, seed: 1 });
    expect(info.sweep).to.deep.equal([]);
    const plan = cells[0]!.plan;
    expect(plan.domains.map((d) => [d.name, d.disks[0]?.target])).to.deep.equal([['domu1', 'ram:64M'], ['domu2', 'ram:64M']]);
    expect(plan.block).to.have.length(2);
    const jobs = plan.block[0]!.jobs;
    expect(jobs.map((j) => [j.name, j.rw, j.bs, j.iodepth, j.runtime, j.time_based, j.stonewall, j.verify])).to.deep.equal([
      ['randread-4k', 'randread', 4096, 32, 2, true, false, false],
      ['seqwrite-64k', 'write', 65536, 8, 2, true, true, true],
    ]);
    expect(jobs[1]?.options).to.include({ verify: 'crc32c', bs: '64k', rw: 'write' });
    expect(plan.block[0]!.seed).to.not.equal(plan.block[1]!.seed);
    // `all` also streams from domu1 to domu2 over their vifs, for both block phases.
    expect(notes.join()).to.not.contain('network');
    expect(plan.unavailable).to.deep.equal([]);
    expect(plan.domains.map((d) => d.vifs.map((v) => [v.attach.mac, v.ip, v.bridge]))).to.deep.equal([[['00:16:3e:00:00:01', '10.0.0.1', 'xenbr0']], [['00:16:3e:00:00:02', '10.0.0.2', 'xenbr0']]]);
    expect(plan.network.map((n) => [n.label, n.spec.time, n.spec.protocol])).to.deep.equal([['domu1 -> domu2 (tcp)', 4, 'tcp']]);
    expect(plan.machine.memory).to.equal(benchMemoryMiB(2) << 20);
  });

  it('crosses --grants, --domains and --iodepth in that order, the first slowest', () => {
    const r = planBench({ suite: 'block', duration: 0.5, size: 4 << 20, seed: 1, grants: ['persistent', 'copy'], domains: [1, 3], iodepth: [1, 32] });
    if (!r.ok) throw new Error(r.error);
    expect(r.value.info.sweep.map((a) => a.path)).to.deep.equal(['grants', 'domains', 'iodepth']);
    expect(r.value.cells).to.have.length(8);
    const c5 = r.value.cells[5]!;
    expect(c5.point).to.deep.equal({ grants: 'copy', domains: 1, iodepth: 32 });
    expect(c5.plan.dom0Drivers.blkback?.mode).to.equal('copy');
    expect(c5.plan.domains).to.have.length(1);
    expect(c5.plan.block[0]!.jobs.map((j) => j.iodepth)).to.deep.equal([32, 32]);
    expect(r.value.cells[2]!.plan.domains).to.have.length(3);
    expect(r.value.cells[2]!.plan.machine.memory).to.be.greaterThan(r.value.cells[0]!.plan.machine.memory);
  });

  it('runs only streams in the network suite: pairs of guests, no disks; it needs two guests', () => {
    const r = planBench({ suite: 'network', duration: 1, size: 4 << 20, seed: 1, domains: [5] });
    if (!r.ok) throw new Error(r.error);
    const plan = r.value.cells[0]!.plan;
    expect(plan.block).to.deep.equal([]);
    expect(plan.domains.every((d) => d.disks.length === 0 && d.vifs.length === 1)).to.equal(true);
    expect(plan.network.map((n) => n.label)).to.deep.equal(['domu1 -> domu2 (tcp)', 'domu3 -> domu4 (tcp)']);
    expect(new Set(plan.network.map((n) => n.seed)).size).to.equal(2);
    expect(r.value.notes.join()).to.contain('with an odd number of guests the last one runs no stream');
    const one = planBench({ suite: 'network', duration: 1, size: 4 << 20, seed: 1, domains: [1, 2] });
    expect(!one.ok && one.error).to.equal('the network suite streams between guests: it needs --domains 2 or more, got 1,2');
    const all = planBench({ suite: 'all', duration: 1, size: 4 << 20, seed: 1, domains: [1, 2] });
    if (!all.ok) throw new Error(all.error);
    expect(all.value.notes).to.include('cells with one guest run no network stream (a stream needs two guests)');
    expect(all.value.cells[0]!.plan.network).to.deep.equal([]);
    expect(all.value.cells[1]!.plan.network).to.have.length(1);
  });

  it('gives shards of the same bench one digest and different benches different ones', () => {
    const d = (o: Partial<Parameters<typeof planBench>[0]>) => {
      const r = planBench({ suite: 'all', duration: 1, size: 4 << 20, seed: 1, ...o });
      if (!r.ok) throw new Error(r.error);
      return r.value.info.digest;
    };
    expect(d({ grants: ['map', 'copy'] })).to.equal(d({ grants: ['map', 'copy'] }));
    expect(d({ grants: ['map', 'copy'] })).to.not.equal(d({ grants: ['map'] }));
    expect(d({})).to.not.equal(d({ duration: 2 }));
  });

  it('refuses sizes and durations it cannot run', () => {
    expect(planBench({ suite: 'all', duration: 0, size: 4 << 20, seed: 1 }).ok).to.equal(false);
    const r = planBench({ suite: 'all', duration: 1, size: 100_000, seed: 1 });
    expect(!r.ok && r.error).to.contain('--size');
  });

  it('renders durations below a second as fio milliseconds', () => {
    const j = benchJobs({ duration: 0.3, size: 4 << 20 }, null);
    if (!j.ok) throw new Error(j.error);
    expect(j.value.map((x) => [x.runtime, x.options?.runtime, x.options?.size])).to.deep.equal([[0.3, '300ms', '4M'], [0.3, '300ms', '4M']]);
    expect(BENCH_DEFAULTS.readDepth).to.equal(32);
  });
});

describe('xensim run: blkback counters of a disk', () => {
  it('are the differences over the workload, per request served, with the persistent cache size kept as a level', () => {
    const c = backendCounters('g', 'xvda', { rd_req: 10, wr_req: 5, grant_maps: 3, persistent_grants: 7 }, { rd_req: 30, wr_req: 25, f_req: 0, grant_maps: 13, persistent_grants: 9 });
    expect(c).to.deep.include({ domain: 'g', device: 'xvda@blkback', kind: 'block', per: 'io', ios: 40 });
    expect(c.totals).to.deep.equal({ rd_req: 20, wr_req: 20, f_req: 0, grant_maps: 10, persistent_grants: 9 });
    expect(c.per_io['grant_maps']).to.equal(0.25);
  });
});
