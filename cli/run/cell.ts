/**
 * Runs one cell of a sweep on a machine of its own: boot the hypervisor,
 * create dom0 (domid 0, with the cell's blkback settings) and the guests,
 * attach the disks and vifs, run every block workload and every network
 * stream inside its guests at the same time, sample dom0's vbd counters
 * meanwhile for the time series (streams bring their own intervals), read
 * xentop's statistics at the end, shut the machine down, and describe it all
 * as a results Cell (cli/report/results.ts).
 *
 * A cell never throws: whatever goes wrong (a domain that cannot be built, a
 * workload that fails, a crash, the time limit) makes it `failed` with the
 * reason, keeping the results of what did run.
 */
import { Machine } from '../../toolstack/machine.ts';
import { StatsCollector, type DeviceStats, type DeviceStatsSource } from '../../toolstack/stats.ts';
import type { FioJson } from '../../domU/workloads/fio-json.ts';
import { startStatusWriter, type StatusWriter } from '../status.ts';
import { startTopView, type TopView, type ViewStream } from '../report/live.ts';
import { countersFromFio, SeriesRecorder, xentopToJson, type BlockResult, type Cell, type IoCounters, type Iperf3Json, type NetworkResult, type TimeSeries, type XentopJson } from '../report/results.ts';
import type { VbdStats } from '../views/stats.ts';
import type { CellPlan } from './plan.ts';
import { streamOutcome } from './network.ts';

export interface RunCellOptions {
  /** Place in the full sweep. */
  readonly index: number;
  readonly point: Readonly<Record<string, unknown>>;
  /** Serve xenstored on this Unix socket (and publish the status file beside it) while the cell runs. */
  readonly socket?: string;
  /** Show xentop's live view (--top). */
  readonly top?: boolean;
  /** JSON goes to stdout: the live view draws nothing. */
  readonly json?: boolean;
  /** Where the live view draws (default process.stdout). */
  readonly topStream?: ViewStream;
  /** Progress within the cell, 0..1. */
  readonly progress?: (fraction: number) => void;
  /** Lines for stderr. */
  readonly log?: (line: string) => void;
  /** Give up after this many seconds (default: 120 s more than the workloads' estimate, times 3). */
  readonly timeoutSec?: number;
  /** Time-series sampling period (default: a tenth of the workload, 100..1000 ms). */
  readonly seriesIntervalMs?: number;
}

/** dom0's vbdStats() entry (dom0/agent.ts). */
interface VbdEntry {
  readonly frontDom: number;
  readonly devid: number;
  readonly counters: Record<string, number>;
}

function vbdStatsOf(e: VbdEntry): VbdStats {
  const c = e.counters;
  return { dev: e.devid, backendType: 'blkback', ooReqs: c['oo_req'] ?? 0, rdReqs: c['rd_req'] ?? 0, wrReqs: c['wr_req'] ?? 0, rdSects: c['rd_sect'] ?? 0, wrSects: c['wr_sect'] ?? 0 };
}

/**
 * [dom0DeviceStats machine] is xentop's VBD counters of every guest, read
 * from dom0's blkback (one dom0 call serves every domain of a sample).
 */
export function dom0DeviceStats(machine: Machine): DeviceStatsSource {
  let cache: { at: number; entries: Promise<VbdEntry[]> } | null = null;
  return async (domid: number): Promise<DeviceStats | null> => {
    const d0 = machine.dom0;
    if (d0 === undefined) return null;
    const now = Date.now();
    if (cache === null || now - cache.at > 100) cache = { at: now, entries: d0.vbdStats() };
    const entries = await cache.entries;
    return { vbds: entries.filter((e) => e.frontDom === domid).map(vbdStatsOf), nets: [] };
  };
}

/**
 * [backendCounters domain vdev before after] is what dom0's blkback did for
 * one disk over the workloads (grant maps, copies, hypercalls, persistent
 * hits, ...), per request it served; the device reads `xvda@blkback`.
 */
export function backendCounters(domain: string, vdev: string, before: Readonly<Record<string, number>>, after: Readonly<Record<string, number>>): IoCounters {
  const totals: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) {
    // persistent_grants is a level (the cache's size), not a count: keep the value at the end.
    totals[k] = k === 'persistent_grants' ? v : v - (before[k] ?? 0);
  }
  const ios = (totals['rd_req'] ?? 0) + (totals['wr_req'] ?? 0) + (totals['f_req'] ?? 0) + (totals['ds_req'] ?? 0);
  const perIo = Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, ios > 0 ? v / ios : 0]));
  return { domain, device: `${vdev}@blkback`, kind: 'block', per: 'io', ios, totals, per_io: perIo };
}

/**
 * [dmaSnapshot m plan domids] reads, for every physical disk of the plan, the
 * DMA block controller's counters, its IOMMU view's and dom0's DMA API's, by
 * "domain/vdev" with prefixes ctrl_, iommu_ and dma_.
 */
async function dmaSnapshot(m: Machine, plan: CellPlan, domids: ReadonlyMap<string, number>): Promise<Map<string, Record<string, number>>> {
  const out = new Map<string, Record<string, number>>();
  const d0 = m.dom0;
  const apis = d0 === undefined ? [] : await d0.vbdDmaStats();
  for (const d of plan.domains) {
    const domid = domids.get(d.name);
    if (domid === undefined) continue;
    for (const disk of d.disks) {
      const dev = disk.device === undefined ? undefined : m.diskDevice(domid, disk.devid);
      if (dev === undefined) continue;
      const rec: Record<string, number> = {};
      const put = (prefix: string, o: object): void => {
        for (const [k, v] of Object.entries(o)) if (typeof v === 'number') rec[`${prefix}${k}`] = v;
      };
      put('ctrl_', await dev.control.counters());
      put('iommu_', await dev.control.iommu());
      const api = apis.find((a) => a.name === dev.info.name);
      if (api !== undefined) put('dma_', api.dma);
      out.set(`${d.name}/${disk.vdev}`, rec);
    }
  }
  return out;
}

/** Levels, not counts: keep their value at the end rather than a difference. */
const LEVELS = new Set(['ctrl_status', 'ctrl_fatalReason', 'iommu_lastStrayMfn', 'iommu_lastStrayOwner']);

/**
 * [deviceCounters domain vdev before after ios] is what a physical disk's
 * controller, its IOMMU context and dom0's DMA API did over the workloads
 * (the device reads `xvda@dma-disk`), per I/O blkback served.
 */
export function deviceCounters(domain: string, vdev: string, before: Readonly<Record<string, number>>, after: Readonly<Record<string, number>>, ios: number): IoCounters {
  const totals: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) totals[k] = LEVELS.has(k) ? v : v - (before[k] ?? 0);
  const perIo = Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, ios > 0 ? v / ios : 0]));
  return { domain, device: `${vdev}@dma-disk`, kind: 'block', per: 'io', ios, totals, per_io: perIo };
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

class TimeLimit extends Error {}

/** [runCell plan o] runs one cell and describes it; it does not throw. */
export async function runCell(plan: CellPlan, o: RunCellOptions): Promise<Cell> {
  const log = o.log ?? (() => {});
  const started = new Date();
  const t0 = performance.now();
  const elapsed = (): number => (performance.now() - t0) / 1000;
  const estimate = Math.max(0, ...plan.block.map((b) => b.estimateSec), ...plan.network.map((n) => n.estimateSec));
  const timeoutSec = o.timeoutSec ?? 3 * (estimate + 120);
  const problems: string[] = [];
  const block: BlockResult[] = [];
  const network: NetworkResult[] = [];
  const counters: IoCounters[] = [];
  const series: TimeSeries[] = [];
  let xentop: XentopJson | null = null;

  let machine: Machine | null = null;
  let status: StatusWriter | null = null;
  let top: TopView | null = null;
  let poll: NodeJS.Timeout | null = null;
  let progressTimer: NodeJS.Timeout | null = null;
  let limit: NodeJS.Timeout | null = null;
  /** Set once the cell is over (done, failed or timed out): a body still running must start nothing more. */
  let over = false;
  const checkpoint = (): void => {
    if (over) throw new Error('the cell is over');
  };

  const body = async (): Promise<void> => {
    const m = await Machine.boot({ memBytes: plan.machine.memory, pageSize: plan.machine.page_size, seed: plan.seed });
    machine = m;
    if (over) {
      // The time ran out while it booted, and the cleanup has already run.
      await m.shutdown();
      checkpoint();
    }
    await m.createDomain({
      name: 'Domain-0', domid: 0, memoryKiB: plan.machine.dom0.memory / 1024, model: plan.machine.dom0.memory_model, privileged: true, drivers: plan.dom0Drivers,
    });
    const d0 = m.dom0;
    if (d0 === undefined) throw new Error('dom0 did not start its services');
    const deviceStats = dom0DeviceStats(m);
    if (o.socket !== undefined) {
      const l = await d0.listen(o.socket);
      if (!l.ok) log(`xensim: cell ${o.index}: xenstored cannot listen on ${o.socket}: ${l.error}`);
      else if (!over) status = startStatusWriter(m, o.socket, () => {}, { deviceStats });
    }
    const domids = new Map<string, number>();
    for (const d of plan.domains) {
      const h = await m.createDomain({ name: d.name, memoryKiB: d.memoryKiB, model: d.model, onCrash: d.onCrash });
      domids.set(d.name, h.domid);
      for (const disk of d.disks) {
        await m.attachDisk(h.domid, { vdev: disk.vdev, target: disk.target, access: disk.access, devtype: disk.devtype, ...(disk.device !== undefined ? { device: disk.device } : {}) });
      }
      for (const vif of d.vifs) await m.attachVif(h.domid, vif.attach);
    }
    checkpoint();
    if (o.top === true) top = startTopView(m, { deviceStats, ...(o.json === true ? { json: true } : {}), ...(o.topStream === undefined ? {} : { stream: o.topStream }) });

    // Time series from dom0's counters of each disk a workload uses.
    const recorders = new Map<string, { read: SeriesRecorder; write: SeriesRecorder }>();
    const intervalMs = o.seriesIntervalMs ?? Math.min(1000, Math.max(100, Math.round((estimate * 1000) / 10)));
    for (const b of plan.block) {
      const domid = domids.get(b.domain);
      if (domid === undefined) continue;
      const meta = (direction: 'read' | 'write') => new SeriesRecorder({ domain: b.domain, device: b.vdev, kind: 'block', direction, interval_ms: intervalMs });
      recorders.set(`${domid}/${b.devid}`, { read: meta('read'), write: meta('write') });
    }
    const sample = async (): Promise<void> => {
      const t = elapsed();
      for (const e of await d0.vbdStats()) {
        const r = recorders.get(`${e.frontDom}/${e.devid}`);
        if (r === undefined) continue;
        const c = e.counters;
        r.read.record({ t, bytes: (c['rd_sect'] ?? 0) * 512, ios: c['rd_req'] ?? 0 });
        r.write.record({ t, bytes: (c['wr_sect'] ?? 0) * 512, ios: c['wr_req'] ?? 0 });
      }
    };
    let sampling: Promise<void> | null = null;
    const tick = (): void => {
      sampling ??= sample().catch(() => {}).finally(() => { sampling = null; });
    };
    const before = await d0.vbdStats();
    const dmaBefore = await dmaSnapshot(m, plan, domids);
    await sample().catch(() => {});
    checkpoint();
    poll = setInterval(tick, intervalMs);
    poll.unref();
    const wStart = elapsed();
    if (o.progress !== undefined && estimate > 0) {
      const report = o.progress;
      progressTimer = setInterval(() => report(Math.min(0.99, (elapsed() - wStart) / estimate)), 250);
      progressTimer.unref();
    }

    // Every workload and stream at once, each in its guests.
    const runs = plan.block.map(async (b) => {
      const domid = domids.get(b.domain);
      if (domid === undefined) return { b, r: { ok: false as const, error: `no domain ${b.domain}` } };
      return { b, r: await m.domU(domid).runFio(b.devid, [...b.jobs], { seed: b.seed }) };
    });
    const streams = plan.network.map(async (s) => {
      const from = domids.get(s.from);
      const to = domids.get(s.to);
      if (from === undefined || to === undefined) return { s, error: `no domain ${from === undefined ? s.from : s.to}` };
      try {
        const r = await m.iperf({ client: { domid: from, devid: s.fromDevid, ip: s.fromIp }, server: { domid: to, devid: s.toDevid, ip: s.toIp }, spec: s.spec, seed: s.seed });
        return { s, from, to, json: r.json as Iperf3Json };
      } catch (e) {
        return { s, error: message(e) };
      }
    });
    const netDone = Promise.all(streams);
    for (const { b, r } of await Promise.all(runs)) {
      if (!r.ok) {
        problems.push(`${b.domain}/${b.vdev}: the workload did not run: ${r.error}`);
        continue;
      }
      const fio: FioJson = r.value;
      block.push({ domain: b.domain, vdev: b.vdev, devid: b.devid, fio });
      counters.push(countersFromFio(b.domain, b.vdev, fio));
    }
    for (const x of await netDone) {
      if (!('json' in x) || x.json === undefined) {
        problems.push(`${x.s.label}: the stream did not run: ${'error' in x ? x.error : 'no result'}`);
        continue;
      }
      const out = streamOutcome(x.s, x.json, x.from, x.to);
      network.push(out.result);
      counters.push(...out.counters);
      series.push(...out.series);
      problems.push(...out.problems);
    }
    clearInterval(poll);
    poll = null;
    await sampling;
    await sample().catch(() => {});
    const after = await d0.vbdStats();
    for (const b of plan.block) {
      const domid = domids.get(b.domain);
      const end = after.find((e) => e.frontDom === domid && e.devid === b.devid);
      if (end === undefined) continue;
      const start = before.find((e) => e.frontDom === domid && e.devid === b.devid);
      counters.push(backendCounters(b.domain, b.vdev, start?.counters ?? {}, end.counters));
    }
    const dmaAfter = await dmaSnapshot(m, plan, domids);
    for (const [key, end] of dmaAfter) {
      const [domain, vdev] = key.split('/') as [string, string];
      const io = counters.find((c) => c.domain === domain && c.device === `${vdev}@blkback`)?.ios ?? 0;
      counters.push(deviceCounters(domain, vdev, dmaBefore.get(key) ?? {}, end, io));
    }
    for (const r of recorders.values()) for (const s of [r.read.series(), r.write.series()]) if (s.samples.some((x) => (x.iops ?? 0) > 0)) series.push(s);

    const x = await new StatsCollector(m, { deviceStats }).xentop();
    xentop = xentopToJson(x);
    for (const c of m.crashes) problems.push(`${c.name} (d${c.domid}) crashed: ${c.error}; on_crash=${c.action}`);
  };

  try {
    await Promise.race([
      body(),
      new Promise<never>((_, reject) => {
        limit = setTimeout(() => reject(new TimeLimit(`the cell did not finish within ${timeoutSec} s`)), timeoutSec * 1000);
      }),
    ]);
  } catch (e) {
    problems.push(e instanceof TimeLimit ? e.message : `the cell stopped: ${message(e)}`);
  } finally {
    over = true;
    if (limit !== null) clearTimeout(limit);
    if (poll !== null) clearInterval(poll);
    if (progressTimer !== null) clearInterval(progressTimer);
    await (top as TopView | null)?.stop().catch(() => {});
    (status as StatusWriter | null)?.stop();
    const m = machine as Machine | null;
    if (m !== null) {
      try {
        await m.shutdown();
      } catch (e) {
        problems.push(`shutting the machine down failed: ${message(e)}`);
      }
    }
  }
  const failures = [...problems, ...plan.unavailable];
  return {
    index: o.index,
    point: o.point,
    machine: plan.machine,
    status: failures.length === 0 ? 'ok' : 'failed',
    error: failures.length === 0 ? null : failures.join('; '),
    started: started.toISOString(),
    duration_ms: Math.round(performance.now() - t0),
    block,
    network,
    counters,
    series,
    xentop,
  };
}
