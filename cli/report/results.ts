/**
 * The result document of `xensim run` and `xensim bench` (`--json FILE`), and
 * the helpers that build it. Published as schemas/xensim-results.schema.json
 * (JSON Schema draft 2020-12); cli/report/schema.ts validates against it.
 *
 *   {
 *     format: "xensim-results", format_version: 1, tool: "xensim", version, command, date,
 *     machine:  the host (cpus, node, …) and the simulated machine of the scenario as written,
 *     scenario: name, seed, digest (what shards must share), sweep axes, cell_count,
 *     shard?:   { k, n } when this file holds one shard of the sweep (--shard K/N),
 *     merged_from?: the shard files `xensim merge` combined,
 *     cells: [ one per sweep point run:
 *       index (its place in the full sweep), point (the swept settings), machine (effective),
 *       status, error, started, duration_ms,
 *       block:    fio JSON (domU/workloads/fio-json.ts) per domain/vdev,
 *       network:  iperf3 -J JSON (domU/workloads/iperf-json.ts) per stream pair,
 *       counters: device counters per I/O, per domain/device,
 *       series:   throughput and latency over time, per domain/device/direction,
 *       xentop:   the xentop-style statistics of every domain at the end ] }
 *
 * Our own objects use snake_case keys, as fio and iperf3 do. Sizes are bytes,
 * times of day ISO 8601 (UTC), durations ms unless a key says otherwise.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism, arch, platform, totalmem } from 'node:os';
import { basename, extname } from 'node:path';
import type { FioJson } from '../../domU/workloads/fio-json.ts';
import type { MachineConfig, ParsedScenario, SweepAxis } from '../config/scenario.ts';
import type { DmaMode, IommuMode } from '../config/scenario.ts';
import type { MemoryModel } from '../config/xlcfg.ts';
import type { DomainStats, NetStats, NodeStats, ShutdownReason, VbdBackendType, VbdStats } from '../views/stats.ts';
import type { XentopSample } from '../views/xentop.ts';

export const RESULTS_FORMAT = 'xensim-results';
export const RESULTS_FORMAT_VERSION = 1;
/** The published schema's $id (a URN: the schema ships in the repository, schemas/, and is fetched from nowhere). */
export const RESULTS_SCHEMA_ID = 'urn:xensim:schema:xensim-results:1';

/** The host the run happened on (as bench/harness.ts records it, plus a little more). */
export interface HostInfo {
  /** os.availableParallelism(). */
  readonly cpus: number;
  /** process.version, e.g. "v20.20.2". */
  readonly node: string;
  readonly platform: string;
  readonly arch: string;
  /** Host RAM in bytes. */
  readonly host_memory: number;
}

/** The simulated machine: what the scenario's `machine:` section sets. */
export interface SimMachine {
  /** Machine memory in bytes. */
  readonly memory: number;
  readonly page_size: 4096 | 16384;
  readonly dom0: {
    /** Bytes. */
    readonly memory: number;
    readonly memory_model: MemoryModel;
    readonly dma: DmaMode;
    readonly iommu: IommuMode;
  };
}

export type ResultsMachine = HostInfo & SimMachine;

export interface ScenarioInfo {
  /** The scenario's `name:`, else its file name without extension; `default` for the built-in bench. */
  readonly name: string;
  readonly file: string | null;
  readonly description: string | null;
  readonly seed: number;
  /** sha256 (hex) of the validated scenario without file paths: shards of one sweep share it. */
  readonly digest: string;
  readonly sweep: readonly SweepAxis[];
  /** Cells in the whole sweep (1 without a sweep), whatever this file holds. */
  readonly cell_count: number;
}

export interface ShardInfo {
  /** 1-based shard number. */
  readonly k: number;
  /** Number of shards. */
  readonly n: number;
}

export interface BlockResult {
  readonly domain: string;
  readonly vdev: string;
  /** The vdev's device number (xvda = 51712). */
  readonly devid: number;
  readonly fio: FioJson;
}

/** iperf3 -J as domU/workloads/iperf-json.ts writes it (open beyond these keys). */
export interface Iperf3Json {
  readonly start: Readonly<Record<string, unknown>>;
  readonly intervals: readonly unknown[];
  readonly end: Readonly<Record<string, unknown>>;
  readonly xensim?: unknown;
  readonly error?: string;
  readonly [key: string]: unknown;
}

export interface NetworkResult {
  readonly from: string;
  readonly to: string;
  readonly protocol: 'tcp' | 'udp';
  readonly parallel: number;
  readonly iperf3: Iperf3Json;
}

/** Device counters of one device over a workload, and the same per I/O (or per packet). */
export interface IoCounters {
  readonly domain: string;
  /** vdev (xvda) or vif (vif1.0), or a stream label. */
  readonly device: string;
  readonly kind: 'block' | 'network';
  /** What `per_io` divides by: completed I/Os, or packets. */
  readonly per: 'io' | 'packet';
  readonly ios: number;
  readonly totals: Readonly<Record<string, number>>;
  readonly per_io: Readonly<Record<string, number>>;
}

export interface SeriesSample {
  /** End of the interval, seconds since the cell started. */
  readonly t: number;
  /** null when not measured in this interval. */
  readonly bytes_per_s: number | null;
  readonly iops: number | null;
  readonly lat_mean_ns: number | null;
  readonly lat_p99_ns: number | null;
}

export const SERIES_DIRECTIONS = ['read', 'write', 'trim', 'tx', 'rx', 'total'] as const;
export type SeriesDirection = (typeof SERIES_DIRECTIONS)[number];

export interface TimeSeries {
  readonly domain: string;
  readonly device: string;
  readonly kind: 'block' | 'network';
  readonly direction: SeriesDirection;
  /** Nominal sampling interval. */
  readonly interval_ms: number;
  readonly samples: readonly SeriesSample[];
}

/** cli/views/stats.ts NetStats with snake_case keys and plain numbers. */
export interface NetStatsJson {
  readonly tx_bytes: number;
  readonly tx_packets: number;
  readonly tx_errs: number;
  readonly tx_drop: number;
  readonly rx_bytes: number;
  readonly rx_packets: number;
  readonly rx_errs: number;
  readonly rx_drop: number;
}
export interface VbdStatsJson {
  readonly dev: number;
  readonly backend_type: VbdBackendType;
  readonly error: boolean;
  readonly oo_reqs: number;
  readonly rd_reqs: number;
  readonly wr_reqs: number;
  readonly rd_sects: number;
  readonly wr_sects: number;
}
export interface DomainStatsJson {
  readonly name: string;
  readonly domid: number;
  readonly state: {
    readonly running: boolean;
    readonly blocked: boolean;
    readonly paused: boolean;
    readonly dying: boolean;
    readonly shutdown: ShutdownReason | null;
  };
  readonly cpu_ns: number;
  readonly mem_kib: number;
  readonly max_mem_kib: number | null;
  readonly vcpus: number;
  readonly vcpus_online: number;
  readonly nets: readonly NetStatsJson[];
  readonly vbds: readonly VbdStatsJson[];
}
export interface NodeStatsJson {
  readonly xen_version: string;
  readonly tot_mem_kib: number;
  readonly free_mem_kib: number;
  readonly num_cpus: number;
  readonly cpu_hz: number;
}
/** One xentop sample as JSON: enough to print `xentop -b` again. */
export interface XentopJson {
  /** "HH:MM:SS" as xentop prints it. */
  readonly time: string;
  readonly node: NodeStatsJson;
  readonly domains: readonly DomainStatsJson[];
}

export type CellStatus = 'ok' | 'failed';

export interface Cell {
  /** Place in the full sweep (0-based; the first axis varies slowest, as expandSweep). */
  readonly index: number;
  /** The swept settings of this cell, by sweep path; {} without a sweep. */
  readonly point: Readonly<Record<string, unknown>>;
  /** The simulated machine as this cell ran it (a sweep may change it). */
  readonly machine: SimMachine;
  readonly status: CellStatus;
  /** Why the cell failed; null when it did not. */
  readonly error: string | null;
  /** ISO 8601. */
  readonly started: string;
  readonly duration_ms: number;
  readonly block: readonly BlockResult[];
  readonly network: readonly NetworkResult[];
  readonly counters: readonly IoCounters[];
  readonly series: readonly TimeSeries[];
  /** Every domain's xentop statistics at the end of the cell; null if they could not be read. */
  readonly xentop: XentopJson | null;
  /** Index into merged_from of the file this cell came from (merged documents only). */
  readonly source?: number;
}

export interface MergedFrom {
  readonly file: string;
  readonly shard: ShardInfo | null;
  readonly date: string;
  readonly machine: ResultsMachine;
}

export interface XensimResults {
  readonly format: typeof RESULTS_FORMAT;
  readonly format_version: typeof RESULTS_FORMAT_VERSION;
  readonly tool: 'xensim';
  /** xensim's package version. */
  readonly version: string;
  readonly command: 'run' | 'bench';
  /** When the run started (ISO 8601, UTC). */
  readonly date: string;
  readonly machine: ResultsMachine;
  readonly scenario: ScenarioInfo;
  readonly shard?: ShardInfo;
  readonly merged_from?: readonly MergedFrom[];
  readonly cells: readonly Cell[];
}

// ---- building ------------------------------------------------------------------

/** [xensimVersion] is package.json's version. */
export function xensimVersion(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  return typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

/** [hostInfo] describes this host. */
export function hostInfo(): HostInfo {
  return { cpus: availableParallelism(), node: process.version, platform: platform(), arch: arch(), host_memory: totalmem() };
}

/** [simMachineOf m] is a scenario's validated machine section as the document records it. */
export function simMachineOf(m: MachineConfig): SimMachine {
  return { memory: m.memory, page_size: m.page_size, dom0: { memory: m.dom0.memory, memory_model: m.dom0.memory_model, dma: m.dom0.dma, iommu: m.dom0.iommu } };
}

/** Canonical JSON: keys sorted, so equal values give equal text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o).filter((k) => o[k] !== undefined).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** Keys that hold where things were read from, not what they say. */
const PATH_KEYS = new Set(['file', 'source', 'fio_file']);
function withoutPaths(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutPaths);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).filter(([k]) => !PATH_KEYS.has(k)).map(([k, x]) => [k, withoutPaths(x)]));
  }
  return v;
}

/**
 * [scenarioDigest scenario] fingerprints a validated scenario (settings,
 * domains, jobs, sweep) leaving out file paths, so the same scenario checked
 * out in two places has one digest and `xensim merge` can tell shards of
 * different scenarios apart.
 */
export function scenarioDigest(scenario: unknown): string {
  return createHash('sha256').update(canonical(withoutPaths(scenario))).digest('hex');
}

/** [scenarioInfo parsed cellCount] is the document's `scenario` object for a parsed scenario. */
export function scenarioInfo(parsed: ParsedScenario, cellCount: number): ScenarioInfo {
  const raw = typeof parsed.raw === 'object' && parsed.raw !== null ? (parsed.raw as Record<string, unknown>) : {};
  const file = parsed.scenario.file;
  const name = typeof raw['name'] === 'string' && raw['name'] !== '' ? raw['name'] : basename(file, extname(file));
  return {
    name,
    file,
    description: typeof raw['description'] === 'string' ? raw['description'] : null,
    seed: parsed.scenario.seed,
    digest: scenarioDigest(parsed.scenario),
    sweep: parsed.scenario.sweep.map((a) => ({ path: a.path, values: [...a.values] })),
    cell_count: cellCount,
  };
}

export interface NewResultsOptions {
  readonly command: 'run' | 'bench';
  readonly scenario: ScenarioInfo;
  /** The scenario's machine as written (before any sweep). */
  readonly machine: SimMachine;
  readonly shard?: ShardInfo;
  /** Default: now. */
  readonly date?: Date;
  readonly cells?: readonly Cell[];
}

/** [newResults opts] is a document with no cells yet (append them as cells finish). */
export function newResults(o: NewResultsOptions): XensimResults {
  return {
    format: RESULTS_FORMAT,
    format_version: RESULTS_FORMAT_VERSION,
    tool: 'xensim',
    version: xensimVersion(),
    command: o.command,
    date: (o.date ?? new Date()).toISOString(),
    machine: { ...hostInfo(), ...o.machine },
    scenario: o.scenario,
    ...(o.shard === undefined ? {} : { shard: { k: o.shard.k, n: o.shard.n } }),
    cells: o.cells ?? [],
  };
}

// ---- counters -------------------------------------------------------------------

function addInto(acc: Record<string, number>, add: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(add)) if (Number.isFinite(v)) acc[k] = (acc[k] ?? 0) + v;
}
function perIo(totals: Readonly<Record<string, number>>, ios: number): Record<string, number> {
  return Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, ios > 0 ? v / ios : 0]));
}

/**
 * [countersFromFio domain vdev fio] sums a block workload's device counters
 * over its reporting groups (each fio job entry repeats its group's counters,
 * so each group counts once) and divides by the group I/Os.
 */
export function countersFromFio(domain: string, vdev: string, fio: FioJson): IoCounters {
  const totals: Record<string, number> = {};
  let ios = 0;
  const seen = new Set<number>();
  for (const j of fio.jobs) {
    if (seen.has(j.groupid)) continue;
    seen.add(j.groupid);
    addInto(totals, j.xensim.counters);
    ios += j.xensim.group_ios;
  }
  return { domain, device: vdev, kind: 'block', per: 'io', ios, totals, per_io: perIo(totals, ios) };
}

function numRecord(v: unknown): Record<string, number> {
  if (typeof v !== 'object' || v === null) return {};
  return Object.fromEntries(Object.entries(v).filter((e): e is [string, number] => typeof e[1] === 'number'));
}
function field(o: unknown, ...path: string[]): unknown {
  let v = o;
  for (const p of path) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[p] : undefined;
  return v;
}

/**
 * [countersFromIperf domain device iperf side] takes one side's device
 * counters out of an iperf3 document (`xensim.client` or `xensim.server`) and
 * divides them by the packets that side's device moved (its `tx_packets` +
 * `rx_packets` counters, or `tx_frames` + `rx_frames`, when present; else the
 * test's UDP packets or its bytes in MSS-sized segments).
 */
export function countersFromIperf(domain: string, device: string, iperf: Iperf3Json, side: 'client' | 'server' = 'client'): IoCounters {
  const totals = numRecord(field(iperf, 'xensim', side, 'device_counters'));
  let packets = (totals['tx_packets'] ?? 0) + (totals['rx_packets'] ?? 0);
  if (packets === 0) packets = (totals['tx_frames'] ?? 0) + (totals['rx_frames'] ?? 0);
  if (packets === 0) {
    const udp = field(iperf, 'end', 'sum_sent', 'packets');
    if (typeof udp === 'number') packets = udp;
    else {
      const bytes = field(iperf, 'end', 'sum_sent', 'bytes');
      const mss = field(iperf, 'start', 'tcp_mss_default');
      if (typeof bytes === 'number' && typeof mss === 'number' && mss > 0) packets = Math.ceil(bytes / mss);
    }
  }
  return { domain, device, kind: 'network', per: 'packet', ios: packets, totals, per_io: perIo(totals, packets) };
}

// ---- time series ----------------------------------------------------------------

/** A cumulative reading of one device direction, as a run loop polls it. */
export interface CumulativeReading {
  /** Seconds since the cell started. */
  readonly t: number;
  readonly bytes: number;
  readonly ios: number;
  /** Sum of the latencies of the I/Os completed so far, ns (omit if unknown). */
  readonly lat_sum_ns?: number;
  /** p99 latency of the I/Os completed since the previous reading, ns (omit if unknown). */
  readonly interval_lat_p99_ns?: number;
}

/**
 * [SeriesRecorder] turns cumulative counters read every interval into a
 * TimeSeries: rates and mean latency over each interval. Readings must come
 * in time order; one with no time passed is ignored.
 */
export class SeriesRecorder {
  private last: CumulativeReading | null = null;
  private readonly samples: SeriesSample[] = [];

  constructor(private readonly meta: Omit<TimeSeries, 'samples'>) {}

  record(r: CumulativeReading): void {
    const p = this.last;
    if (p !== null && !(r.t > p.t)) return;
    this.last = r;
    if (p === null) return;
    const dt = r.t - p.t;
    const dios = r.ios - p.ios;
    const latMean = r.lat_sum_ns !== undefined && p.lat_sum_ns !== undefined && dios > 0 ? (r.lat_sum_ns - p.lat_sum_ns) / dios : null;
    this.samples.push({
      t: r.t,
      bytes_per_s: (r.bytes - p.bytes) / dt,
      iops: dios / dt,
      lat_mean_ns: latMean,
      lat_p99_ns: dios > 0 ? (r.interval_lat_p99_ns ?? null) : null,
    });
  }

  series(): TimeSeries {
    return { ...this.meta, samples: [...this.samples] };
  }
}

/**
 * [seriesFromIperf domain device iperf] is a stream pair's throughput over
 * time from iperf3's own intervals (`intervals[].sum`), with the TCP streams'
 * mean smoothed RTT as the latency (iperf3 reports µs; the series holds ns).
 */
export function seriesFromIperf(domain: string, device: string, iperf: Iperf3Json): TimeSeries {
  const samples: SeriesSample[] = [];
  let interval = 0;
  for (const iv of iperf.intervals) {
    const sum = field(iv, 'sum');
    const start = field(sum, 'start');
    const end = field(sum, 'end');
    const bytes = field(sum, 'bytes');
    if (typeof start !== 'number' || typeof end !== 'number' || typeof bytes !== 'number' || !(end > start)) continue;
    interval = Math.max(interval, (end - start) * 1000);
    const streams = field(iv, 'streams');
    const rtts = Array.isArray(streams) ? streams.map((s) => field(s, 'rtt')).filter((x): x is number => typeof x === 'number') : [];
    const packets = field(sum, 'packets');
    samples.push({
      t: end,
      bytes_per_s: bytes / (end - start),
      iops: typeof packets === 'number' ? packets / (end - start) : null,
      lat_mean_ns: rtts.length > 0 ? (rtts.reduce((a, b) => a + b, 0) / rtts.length) * 1000 : null,
      lat_p99_ns: null,
    });
  }
  return { domain, device, kind: 'network', direction: 'tx', interval_ms: Math.round(interval) || 1000, samples };
}

// ---- xentop statistics <-> JSON --------------------------------------------------

const num = (x: number | bigint): number => (typeof x === 'bigint' ? Number(x) : x);

function netToJson(n: NetStats): NetStatsJson {
  return {
    tx_bytes: num(n.txBytes), tx_packets: num(n.txPackets), tx_errs: num(n.txErrs), tx_drop: num(n.txDrop),
    rx_bytes: num(n.rxBytes), rx_packets: num(n.rxPackets), rx_errs: num(n.rxErrs), rx_drop: num(n.rxDrop),
  };
}
function vbdToJson(v: VbdStats): VbdStatsJson {
  return {
    dev: v.dev, backend_type: v.backendType, error: v.error === true,
    oo_reqs: num(v.ooReqs), rd_reqs: num(v.rdReqs), wr_reqs: num(v.wrReqs), rd_sects: num(v.rdSects), wr_sects: num(v.wrSects),
  };
}

/** [domainStatsToJson d] is d as the document stores it. */
export function domainStatsToJson(d: DomainStats): DomainStatsJson {
  return {
    name: d.name,
    domid: d.domid,
    state: { running: d.state.running, blocked: d.state.blocked, paused: d.state.paused, dying: d.state.dying, shutdown: d.state.shutdown },
    cpu_ns: num(d.cpuNs),
    mem_kib: num(d.memKiB),
    max_mem_kib: d.maxMemKiB === null ? null : num(d.maxMemKiB),
    vcpus: d.vcpus,
    vcpus_online: d.vcpusOnline,
    nets: d.nets.map(netToJson),
    vbds: d.vbds.map(vbdToJson),
  };
}

/** [domainStatsFromJson j] is the stored domain back as cli/views takes it. */
export function domainStatsFromJson(j: DomainStatsJson): DomainStats {
  return {
    name: j.name,
    domid: j.domid,
    state: { ...j.state },
    cpuNs: j.cpu_ns,
    memKiB: j.mem_kib,
    maxMemKiB: j.max_mem_kib,
    vcpus: j.vcpus,
    vcpusOnline: j.vcpus_online,
    nets: j.nets.map((n) => ({
      txBytes: n.tx_bytes, txPackets: n.tx_packets, txErrs: n.tx_errs, txDrop: n.tx_drop,
      rxBytes: n.rx_bytes, rxPackets: n.rx_packets, rxErrs: n.rx_errs, rxDrop: n.rx_drop,
    })),
    vbds: j.vbds.map((v) => ({
      dev: v.dev, backendType: v.backend_type, error: v.error,
      ooReqs: v.oo_reqs, rdReqs: v.rd_reqs, wrReqs: v.wr_reqs, rdSects: v.rd_sects, wrSects: v.wr_sects,
    })),
  };
}

export function nodeStatsToJson(n: NodeStats): NodeStatsJson {
  return { xen_version: n.xenVersion, tot_mem_kib: num(n.totMemKiB), free_mem_kib: num(n.freeMemKiB), num_cpus: n.numCpus, cpu_hz: num(n.cpuHz) };
}
export function nodeStatsFromJson(n: NodeStatsJson): NodeStats {
  return { xenVersion: n.xen_version, totMemKiB: n.tot_mem_kib, freeMemKiB: n.free_mem_kib, numCpus: n.num_cpus, cpuHz: n.cpu_hz };
}

/** [xentopToJson s] stores one xentop sample (the `prev` sample, used only for CPU(%), is not kept). */
export function xentopToJson(s: Pick<XentopSample, 'time' | 'node' | 'domains'>): XentopJson {
  return { time: s.time, node: nodeStatsToJson(s.node), domains: s.domains.map(domainStatsToJson) };
}
export function xentopFromJson(j: XentopJson): XentopSample {
  return { time: j.time, node: nodeStatsFromJson(j.node), domains: j.domains.map(domainStatsFromJson) };
}

// ---- reading cells --------------------------------------------------------------

/** [pointLabel point] is "path=value, …" ("(no sweep)" for none). */
export function pointLabel(point: Readonly<Record<string, unknown>>): string {
  const parts = Object.entries(point).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return parts.length === 0 ? '(no sweep)' : parts.join(', ');
}

/**
 * [sweepPointAt axes index] is the settings of cell `index` of a sweep
 * (first axis slowest, as expandSweep orders them); null when out of range.
 */
export function sweepPointAt(axes: readonly SweepAxis[], index: number): Record<string, unknown> | null {
  const total = axes.reduce((n, a) => n * a.values.length, 1);
  if (!Number.isInteger(index) || index < 0 || index >= total) return null;
  const point: Record<string, unknown> = {};
  let rest = index;
  for (let a = axes.length - 1; a >= 0; a--) {
    const axis = axes[a] as SweepAxis;
    point[axis.path] = axis.values[rest % axis.values.length];
    rest = Math.floor(rest / axis.values.length);
  }
  return Object.fromEntries(axes.map((x) => [x.path, point[x.path]]));
}

/** Totals of one cell, for tables and charts. */
export interface CellSummary {
  /** Bytes/s over all block jobs (each job's bytes over its runtime, summed). */
  readonly read_bw: number;
  readonly write_bw: number;
  readonly read_iops: number;
  readonly write_iops: number;
  /** Completion latency over all block I/Os, ns (mean weighted by I/O count); null without I/O. */
  readonly clat_mean_ns: number | null;
  /** Largest job p99 completion latency, ns; null without percentiles. */
  readonly clat_p99_ns: number | null;
  /** Receiver bits/s summed over the stream pairs; null without network streams. */
  readonly net_bps: number | null;
  readonly block_errors: number;
  readonly net_errors: number;
}

/** [summarizeCell c] adds up a cell's block and network results. */
export function summarizeCell(c: Cell): CellSummary {
  let rbw = 0, wbw = 0, riops = 0, wiops = 0, latSum = 0, latN = 0, blockErrors = 0;
  let p99: number | null = null;
  for (const b of c.block) {
    for (const j of b.fio.jobs) {
      rbw += j.read.bw_bytes;
      wbw += j.write.bw_bytes;
      riops += j.read.iops;
      wiops += j.write.iops;
      for (const d of [j.read, j.write]) {
        latSum += d.clat_ns.mean * d.clat_ns.N;
        latN += d.clat_ns.N;
        const q = d.clat_ns.percentile?.['99.000000'];
        if (q !== undefined) p99 = Math.max(p99 ?? 0, q);
      }
      if (j.error !== 0) blockErrors++;
    }
  }
  let net: number | null = null;
  let netErrors = 0;
  for (const n of c.network) {
    const bps = field(n.iperf3, 'end', 'sum_received', 'bits_per_second');
    if (typeof bps === 'number') net = (net ?? 0) + bps;
    if (n.iperf3.error !== undefined) netErrors++;
  }
  return {
    read_bw: rbw, write_bw: wbw, read_iops: riops, write_iops: wiops,
    clat_mean_ns: latN > 0 ? latSum / latN : null, clat_p99_ns: p99,
    net_bps: net, block_errors: blockErrors, net_errors: netErrors,
  };
}
