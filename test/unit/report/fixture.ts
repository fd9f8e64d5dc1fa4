/**
 * Result documents for the report tests, built the way `xensim run` will build
 * them: a real scenario with a 2×2 sweep (parseScenario + expandSweep), real fio
 * runs on an in-memory disk and real iperf runs over a loopback link, shaped by
 * fio-json.ts and iperf-json.ts, plus time series and xentop statistics.
 */
import { unwrap } from '../../../shared/result.ts';
import { systemClock } from '../../../domU/workloads/block-device.ts';
import { runFio } from '../../../domU/workloads/fio-engine.ts';
import { toFioJson } from '../../../domU/workloads/fio-json.ts';
import { runIperf } from '../../../domU/workloads/iperf-engine.ts';
import { toIperf3Json } from '../../../domU/workloads/iperf-json.ts';
import { expandSweep, parseScenario, type SweepPoint } from '../../../cli/config/scenario.ts';
import {
  countersFromFio,
  countersFromIperf,
  newResults,
  scenarioInfo,
  SeriesRecorder,
  seriesFromIperf,
  simMachineOf,
  xentopToJson,
  type Cell,
  type Iperf3Json,
  type ShardInfo,
  type XensimResults,
} from '../../../cli/report/results.ts';
import type { DomainStats } from '../../../cli/views/stats.ts';
import { MemBlockDevice } from '../../helpers/mem-block-device.ts';
import { createLoopbackPair } from '../../helpers/loopback-net.ts';

export const SCENARIO_YAML = `
name: report-fixture
seed: 7
machine:
  memory: 128M
  dom0: { memory: 32M }
domains:
  - xl: |
      name = "domu1"
      memory = 16
      disk = [ 'ram:8M,,xvda' ]
      vif = [ '' ]
  - xl: |
      name = "domu2"
      memory = 16
      vif = [ '' ]
block:
  - domain: domu1
    vdev: xvda
    fio: { rw: randrw, bs: 4k, iodepth: 1, size: 256k }
network:
  - from: domu1
    to: domu2
    bytes: 256K
sweep:
  machine.dom0.dma: [swiotlb, iommu]
  block.0.fio.iodepth: [1, 8]
`;

export function parsedFixtureScenario(yaml = SCENARIO_YAML) {
  return unwrap(parseScenario(yaml, { file: '/scenarios/report-fixture.yaml' }), 'parseScenario');
}

function xentopDomains(cellIndex: number, rdReqs: number, wrReqs: number): DomainStats[] {
  const running = { running: true, blocked: false, paused: false, dying: false, shutdown: null };
  const blocked = { ...running, running: false, blocked: true };
  return [
    { name: 'Domain-0', domid: 0, state: running, cpuNs: 1_500_000_000 + cellIndex, memKiB: 32768, maxMemKiB: 32768, vcpus: 1, vcpusOnline: 1, nets: [], vbds: [] },
    {
      name: 'domu1', domid: 1, state: blocked, cpuNs: 700_000_000, memKiB: 16384, maxMemKiB: 16384, vcpus: 1, vcpusOnline: 1,
      nets: [{ txBytes: 262144, txPackets: 180, txErrs: 0, txDrop: 0, rxBytes: 9000, rxPackets: 90, rxErrs: 0, rxDrop: 0 }],
      vbds: [{ dev: 51712, backendType: 'blkback', ooReqs: 0, rdReqs, wrReqs, rdSects: rdReqs * 8, wrSects: wrReqs * 8 }],
    },
    {
      name: 'domu2', domid: 2, state: blocked, cpuNs: 400_000_000, memKiB: 16384, maxMemKiB: 16384, vcpus: 1, vcpusOnline: 1,
      nets: [{ txBytes: 9000, txPackets: 90, txErrs: 0, txDrop: 0, rxBytes: 262144, rxPackets: 180, rxErrs: 0, rxDrop: 0 }],
      vbds: [],
    },
  ];
}

/** Runs one cell's workloads for real (tiny sizes) and records it. */
async function runCell(sp: SweepPoint, index: number): Promise<Cell> {
  const started = new Date(Date.UTC(2026, 0, 31, 12, 0, index));
  const job = sp.scenario.block[0]?.jobs[0];
  const iodepth = job?.iodepth ?? 1;
  // The swept DMA path changes the device's service time, so the sweep charts have something to show.
  const latencyNs = (sp.scenario.machine.dom0.dma === 'iommu' ? 60_000 : 30_000) + index * 1000;
  const dev = new MemBlockDevice({ sectors: 16384, latencyNs, clock: systemClock, perRequestCounters: { hypercalls: 2, grant_copies: 1, notifications: 1 } });
  const fioRun = unwrap(await runFio([{ name: 'domu1-xvda', rw: 'randrw', bs: 4096, iodepth, size: 256 * 1024 }], { device: dev, clock: systemClock }), 'runFio');
  const fio = JSON.parse(JSON.stringify(toFioJson(fioRun, { timestampMs: started.getTime() }))) as ReturnType<typeof toFioJson>;

  const { a, b } = createLoopbackPair({ clock: systemClock, seed: index + 1 });
  const pair = unwrap(await runIperf({ clock: systemClock, spec: { protocol: 'tcp', bytes: 4 * 1024 * 1024, interval: 0.01 }, client: { device: a, ip: '10.0.0.2' }, server: { device: b, ip: '10.0.0.3' } }), 'runIperf');
  const iperf3 = JSON.parse(JSON.stringify(toIperf3Json(pair.client, pair.server, { timestampMs: started.getTime() }))) as Iperf3Json;

  // A run loop would poll the device; here readings follow the job's totals along a ramp.
  const j = fio.jobs[0];
  if (j === undefined) throw new Error('fio produced no job');
  const seconds = Math.max(j.read.runtime, j.write.runtime, 1) / 1000;
  const series = (['read', 'write'] as const).map((dir) => {
    const rec = new SeriesRecorder({ domain: 'domu1', device: 'xvda', kind: 'block', direction: dir, interval_ms: (seconds * 1000) / 10 });
    const d = j[dir];
    const weights = Array.from({ length: 10 }, (_, s) => 1 + 0.4 * Math.sin(s + index + (dir === 'write' ? 2 : 0)));
    const total = weights.reduce((x, y) => x + y, 0);
    let f = 0;
    let latSum = 0;
    rec.record({ t: 0, bytes: 0, ios: 0, lat_sum_ns: 0 });
    for (const [s, w] of weights.entries()) {
      f += w / total;
      // Busier intervals queue more: latency follows the rate.
      latSum += d.clat_ns.mean * (0.6 + 0.4 * w) * d.total_ios * (w / total);
      const p99 = (d.clat_ns.percentile?.['99.000000'] ?? 0) * (0.6 + 0.4 * w);
      rec.record({ t: ((s + 1) / 10) * seconds, bytes: d.io_bytes * f, ios: d.total_ios * f, lat_sum_ns: latSum, interval_lat_p99_ns: p99 });
    }
    return rec.series();
  });
  series.push(seriesFromIperf('domu1', 'vif1.0', iperf3));

  return {
    index,
    point: sp.point,
    machine: simMachineOf(sp.scenario.machine),
    status: 'ok',
    error: null,
    started: started.toISOString(),
    duration_ms: 1234 + index,
    block: [{ domain: 'domu1', vdev: 'xvda', devid: 51712, fio }],
    network: [{ from: 'domu1', to: 'domu2', protocol: 'tcp', parallel: 1, iperf3 }],
    counters: [countersFromFio('domu1', 'xvda', fio), countersFromIperf('domu1', 'vif1.0', iperf3)],
    series,
    xentop: xentopToJson({ time: '12:00:05', node: { xenVersion: '4.17-xensim', totMemKiB: 131072, freeMemKiB: 60000, numCpus: 2, cpuHz: 2_596_000_000 }, domains: xentopDomains(index, j.read.total_ios, j.write.total_ios) }),
  };
}

let cache: Promise<{ cells: Cell[]; points: SweepPoint[] }> | null = null;

/** The four cells of the fixture sweep (run once per test process). */
export function fixtureCells(): Promise<{ cells: Cell[]; points: SweepPoint[] }> {
  cache ??= (async () => {
    const points = unwrap(expandSweep(parsedFixtureScenario()), 'expandSweep');
    const cells: Cell[] = [];
    for (const [i, sp] of points.entries()) cells.push(await runCell(sp, i));
    return { cells, points };
  })();
  return cache;
}

/** A whole document (or one shard of it), round-tripped through JSON text. */
export async function fixtureDoc(opts: { shard?: ShardInfo; cells?: (cells: Cell[]) => Cell[] } = {}): Promise<XensimResults> {
  const { cells } = await fixtureCells();
  const parsed = parsedFixtureScenario();
  const chosen = opts.cells !== undefined ? opts.cells(cells) : opts.shard !== undefined ? cells.filter((c) => c.index % opts.shard!.n === opts.shard!.k - 1) : cells;
  const doc = newResults({
    command: 'run',
    scenario: scenarioInfo(parsed, cells.length),
    machine: simMachineOf(parsed.scenario.machine),
    date: new Date(Date.UTC(2026, 0, 31, 12, 0, 0)),
    ...(opts.shard === undefined ? {} : { shard: opts.shard }),
    cells: chosen,
  });
  return JSON.parse(JSON.stringify(doc)) as XensimResults;
}
