/**
 * fio's JSON output (`--output-format=json`, fio 3.33 shape; ECOSYSTEM.md §4.1) from a
 * FioRunResult, plus an `xensim` object per job carrying what fio cannot know: the
 * device's counters (hypercalls, grant operations, notifications …) per I/O, verify
 * results, and the job's region.
 *
 * Units as fio: sizes in bytes (io_kbytes in KiB), `bw`/`bw_min`/… in KiB/s, `bw_bytes`
 * in bytes/s, `runtime` and `job_runtime` in ms, `elapsed` in whole seconds, latencies
 * in ns. Percentile keys are fio's "%f" strings ("99.900000").
 *
 * group_reporting: every group in which any job asked for it is reported as ONE job
 * (named after its first job), summed as fio sums: io and ios add up, latencies merge,
 * ddir runtime is the longest, job_runtime adds up, bw/iops sample statistics add up.
 */
import type { Histogram } from 'hdr-histogram-js';
import {
  DdirStats,
  FIO_DEFAULT_PERCENTILES,
  IODEPTH_LEVEL_KEYS,
  LAT_BUCKET_BOUNDS,
  RunningStats,
  newLatencyHistogram,
  type FioJobResult,
  type FioJobSpec,
  type FioRunResult,
} from './fio-engine.ts';
import { describeMismatch, type VerifyMismatch } from './verify.ts';

/** Our "fio version" string. */
export const XENSIM_FIO_VERSION = 'xensim-0.1.0';

export interface FioLatJson {
  min: number;
  max: number;
  mean: number;
  stddev: number;
  N: number;
  percentile?: Record<string, number>;
}

export interface FioDdirJson {
  io_bytes: number;
  io_kbytes: number;
  bw_bytes: number;
  bw: number;
  iops: number;
  runtime: number;
  total_ios: number;
  short_ios: number;
  drop_ios: number;
  slat_ns: FioLatJson;
  clat_ns: FioLatJson;
  lat_ns: FioLatJson;
  bw_min: number;
  bw_max: number;
  bw_agg: number;
  bw_mean: number;
  bw_dev: number;
  bw_samples: number;
  iops_min: number;
  iops_max: number;
  iops_mean: number;
  iops_stddev: number;
  iops_samples: number;
}

/** Our additions to each job (fio ignores unknown keys; tools reading fio JSON skip them). */
export interface XensimJobJson {
  /** The clones folded into this entry (one unless group_reporting). */
  clones: number;
  region: { offset: number; size: number }[];
  iodepth_max: number;
  failed_ios: number;
  error_message: string | null;
  /** Device counter deltas over the job's group, and per completed I/O of the group. */
  counters: Record<string, number>;
  per_io: Record<string, number>;
  group_ios: number;
  verify: {
    verified_sectors: number;
    unverified_sectors: number;
    mismatches: number;
    reports: (VerifyMismatch & { text: string })[];
  } | null;
}

export interface FioJobJson {
  jobname: string;
  groupid: number;
  error: number;
  eta: number;
  elapsed: number;
  'job options': Record<string, string>;
  read: FioDdirJson;
  write: FioDdirJson;
  trim: FioDdirJson;
  sync: { total_ios: number; lat_ns: FioLatJson };
  job_runtime: number;
  usr_cpu: number;
  sys_cpu: number;
  ctx: number;
  majf: number;
  minf: number;
  iodepth_level: Record<string, number>;
  iodepth_submit: Record<string, number>;
  iodepth_complete: Record<string, number>;
  latency_ns: Record<string, number>;
  latency_us: Record<string, number>;
  latency_ms: Record<string, number>;
  latency_depth: number;
  latency_target: number;
  latency_percentile: number;
  latency_window: number;
  xensim: XensimJobJson;
}

export interface FioJson {
  'fio version': string;
  timestamp: number;
  timestamp_ms: number;
  time: string;
  'global options'?: Record<string, string>;
  jobs: FioJobJson[];
  disk_util: unknown[];
}

export interface FioJsonOptions {
  /** Wall-clock time of the run's start, ms since the epoch (default Date.now()). */
  readonly timestampMs?: number;
  readonly version?: string;
  /** fio's "global options" (strings, as written in [global]); omitted when undefined. */
  readonly globalOptions?: Readonly<Record<string, string>>;
}

/** [fioPercentileKey p] is fio's key for percentile p: 99.9 → "99.900000". */
export function fioPercentileKey(p: number): string {
  return p.toFixed(6);
}

/** [ctime ms] formats like C's ctime() without the newline: "Wed Nov 25 07:32:38 2026" (local time, as fio). */
export function ctime(ms: number): string {
  const d = new Date(ms);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${days[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${d.getFullYear()}`;
}

/**
 * [jobOptionsOf spec] is fio's "job options" for a spec: the user's own strings when
 * the parser kept them, else the set fields rendered as fio would show them (bare
 * flags such as time_based are not listed, as fio does not list them).
 */
export function jobOptionsOf(spec: FioJobSpec): Record<string, string> {
  if (spec.options !== undefined) return { ...spec.options };
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec) as [keyof FioJobSpec, unknown][]) {
    if (k === 'name' || k === 'options' || v === undefined) continue;
    if (k === 'time_based' || k === 'group_reporting' || k === 'stonewall') continue; // bare flags
    if (k === 'verify') {
      if (v === true) out.verify = 'crc32c';
      continue;
    }
    if (typeof v === 'boolean') out[k] = v ? '1' : '0';
    else if (Array.isArray(v)) out[k] = v.join(':');
    else out[k] = String(v);
  }
  return out;
}

function latJson(s: RunningStats, hist: Histogram | undefined, percentiles: readonly number[]): FioLatJson {
  const out: FioLatJson = {
    min: s.n === 0 ? 0 : Math.round(s.min),
    max: s.n === 0 ? 0 : Math.round(s.max),
    mean: s.n === 0 ? 0 : s.mean,
    stddev: s.stddev,
    N: s.n,
  };
  if (hist !== undefined && s.n > 0) {
    const p: Record<string, number> = {};
    for (const q of percentiles) p[fioPercentileKey(q)] = hist.getValueAtPercentile(q);
    out.percentile = p;
  }
  return out;
}

/** Sample statistics of bw/iops samples, or their fio group "pure sum" when merged. */
interface SampleStats {
  min: number;
  max: number;
  mean: number;
  dev: number;
  n: number;
}
function sampleStats(xs: readonly number[]): SampleStats {
  const s = new RunningStats();
  for (const x of xs) s.add(x);
  return s.n === 0 ? { min: 0, max: 0, mean: 0, dev: 0, n: 0 } : { min: s.min, max: s.max, mean: s.mean, dev: s.stddev, n: s.n };
}
function sumSampleStats(all: readonly SampleStats[]): SampleStats {
  const out = { min: 0, max: 0, mean: 0, dev: 0, n: 0 };
  let var2 = 0;
  for (const s of all) {
    out.min += s.min;
    out.max += s.max;
    out.mean += s.mean;
    var2 += s.dev * s.dev;
    out.n += s.n;
  }
  out.dev = Math.sqrt(var2);
  return out;
}

/** One reported entry: a single job, or a group_reporting merge of several. */
interface Entry {
  readonly first: FioJobResult;
  readonly members: readonly FioJobResult[];
  readonly ddir: readonly DdirStats[];
  readonly bw: readonly SampleStats[];
  readonly iops: readonly SampleStats[];
  readonly sync: { ios: number; lat: RunningStats; latHist: Histogram };
}

function singleEntry(j: FioJobResult): Entry {
  return {
    first: j,
    members: [j],
    ddir: j.ddir,
    bw: j.ddir.map((d) => sampleStats(d.bwSamples)),
    iops: j.ddir.map((d) => sampleStats(d.iopsSamples)),
    sync: j.sync,
  };
}

function mergedEntry(members: readonly FioJobResult[]): Entry {
  const first = members[0] as FioJobResult;
  const ddir = [0, 1, 2].map((i) => {
    const m = new DdirStats();
    const wantLat = members.some((j) => (j.ddir[i] as DdirStats).latHist !== undefined);
    if (wantLat) m.latHist = newLatencyHistogram();
    let last = -1;
    for (const j of members) {
      const d = j.ddir[i] as DdirStats;
      m.ios += d.ios;
      m.bytes += d.bytes;
      m.slat.merge(d.slat);
      m.clat.merge(d.clat);
      m.lat.merge(d.lat);
      m.clatHist.add(d.clatHist);
      if (d.latHist !== undefined) m.latHist?.add(d.latHist);
      if (d.ios > 0) last = Math.max(last, d.lastDoneNs);
    }
    // fio: a group's ddir runtime is its longest member's.
    const longest = Math.max(0, ...members.map((j) => (j.ddir[i] as DdirStats).runtimeNs));
    m.firstIssueNs = m.ios > 0 ? last - longest : -1;
    m.lastDoneNs = m.ios > 0 ? last : -1;
    return m;
  });
  const lat = new RunningStats();
  const latHist = newLatencyHistogram();
  let ios = 0;
  for (const j of members) {
    lat.merge(j.sync.lat);
    latHist.add(j.sync.latHist);
    ios += j.sync.ios;
  }
  return {
    first,
    members,
    ddir,
    bw: [0, 1, 2].map((i) => sumSampleStats(members.map((j) => sampleStats((j.ddir[i] as DdirStats).bwSamples)))),
    iops: [0, 1, 2].map((i) => sumSampleStats(members.map((j) => sampleStats((j.ddir[i] as DdirStats).iopsSamples)))),
    sync: { ios, lat, latHist },
  };
}

function ddirJson(d: DdirStats, bw: SampleStats, iops: SampleStats, aggKiBps: number, percentiles: readonly number[]): FioDdirJson {
  const rt = d.runtimeNs;
  const bwBytes = rt > 0 ? (d.bytes * 1e9) / rt : 0;
  return {
    io_bytes: d.bytes,
    io_kbytes: Math.floor(d.bytes / 1024),
    bw_bytes: Math.round(bwBytes),
    bw: Math.round(bwBytes / 1024),
    iops: rt > 0 ? (d.ios * 1e9) / rt : 0,
    runtime: Math.round(rt / 1e6),
    total_ios: d.ios,
    short_ios: 0,
    drop_ios: 0,
    slat_ns: latJson(d.slat, undefined, percentiles),
    clat_ns: latJson(d.clat, d.clatHist, percentiles),
    lat_ns: latJson(d.lat, d.latHist, percentiles),
    bw_min: Math.round(bw.min),
    bw_max: Math.round(bw.max),
    bw_agg: bw.n > 0 && aggKiBps > 0 ? (bw.mean / aggKiBps) * 100 : 0,
    bw_mean: bw.mean,
    bw_dev: bw.dev,
    bw_samples: bw.n,
    iops_min: Math.round(iops.min),
    iops_max: Math.round(iops.max),
    iops_mean: iops.mean,
    iops_stddev: iops.dev,
    iops_samples: iops.n,
  };
}

function pctOf(counts: readonly number[], total: number): number[] {
  return counts.map((c) => (total > 0 ? (c * 100) / total : 0));
}

function entryJson(e: Entry, run: FioRunResult, groupAggKiBps: readonly number[]): FioJobJson {
  const spec = e.first.spec;
  const percentiles = spec.percentile_list ?? FIO_DEFAULT_PERCENTILES;
  const [r, w, t] = [0, 1, 2].map((i) => ddirJson(e.ddir[i] as DdirStats, e.bw[i] as SampleStats, e.iops[i] as SampleStats, groupAggKiBps[i] as number, percentiles)) as [
    FioDdirJson,
    FioDdirJson,
    FioDdirJson,
  ];
  const sumArr = (pick: (j: FioJobResult) => readonly number[], n: number): number[] => {
    const out = new Array<number>(n).fill(0);
    for (const j of e.members) pick(j).forEach((v, i) => (out[i] = (out[i] as number) + v));
    return out;
  };
  const depth = sumArr((j) => j.iodepthLevel, 7);
  const submitted = depth.reduce((a, b) => a + b, 0);
  const depthPct = pctOf(depth, submitted);
  const buckets = sumArr((j) => j.latBuckets, 32);
  const completed = buckets.reduce((a, b) => a + b, 0);
  const bucketPct = pctOf(buckets, completed);
  const keyed = (keys: readonly string[], vals: readonly number[]): Record<string, number> => Object.fromEntries(keys.map((k, i) => [k, vals[i] ?? 0]));
  const latKeys = LAT_BUCKET_BOUNDS.map(String);
  // We submit and reap one request per call: every batch is in fio's "1–4" bucket.
  const batchKeys = ['0', '4', '8', '16', '32', '64', '>=64'];
  const batch = keyed(batchKeys, [0, submitted > 0 ? 100 : 0, 0, 0, 0, 0, 0]);
  const group = run.groups.find((g) => g.groupid === e.first.groupid);
  const counters = { ...(group?.counters ?? {}) };
  const groupIos = group?.ios ?? 0;
  const perIo: Record<string, number> = {};
  for (const [k, v] of Object.entries(counters)) perIo[k] = groupIos > 0 ? v / groupIos : 0;
  const jobRuntimeMs = e.members.reduce((n, j) => n + j.runtimeNs, 0) / 1e6;
  const cpuUs = e.first.cpu;
  const hasVerify = e.members.some((j) => j.verify !== undefined);
  const firstError = e.members.find((j) => j.error !== 0);
  return {
    jobname: spec.name,
    groupid: e.first.groupid,
    error: firstError?.error ?? 0,
    eta: 2147483647, // fio's value once a job is done
    elapsed: Math.ceil(Math.max(...e.members.map((j) => j.elapsedNs)) / 1e9),
    'job options': jobOptionsOf(spec),
    read: r,
    write: w,
    trim: t,
    sync: { total_ios: e.sync.ios, lat_ns: latJson(e.sync.lat, e.sync.latHist, percentiles) },
    job_runtime: Math.round(jobRuntimeMs),
    usr_cpu: jobRuntimeMs > 0 ? (cpuUs.userUs / 1000 / jobRuntimeMs) * 100 : 0,
    sys_cpu: jobRuntimeMs > 0 ? (cpuUs.systemUs / 1000 / jobRuntimeMs) * 100 : 0,
    ctx: 0,
    majf: 0,
    minf: 0,
    iodepth_level: keyed(IODEPTH_LEVEL_KEYS, depthPct),
    iodepth_submit: batch,
    iodepth_complete: { ...batch },
    latency_ns: keyed(latKeys, bucketPct.slice(0, 10)),
    latency_us: keyed(latKeys, bucketPct.slice(10, 20)),
    latency_ms: keyed([...latKeys, '2000', '>=2000'], bucketPct.slice(20, 32)),
    latency_depth: e.first.iodepth,
    latency_target: 0,
    latency_percentile: 100.0,
    latency_window: 0,
    xensim: {
      clones: e.members.length,
      region: e.members.map((j) => ({ ...j.region })),
      iodepth_max: Math.max(...e.members.map((j) => j.maxInflight)),
      failed_ios: e.members.reduce((n, j) => n + j.failedIos, 0),
      error_message: firstError?.errorMessage ?? null,
      counters,
      per_io: perIo,
      group_ios: groupIos,
      verify: hasVerify
        ? {
            verified_sectors: e.members.reduce((n, j) => n + (j.verify?.verifiedSectors ?? 0), 0),
            unverified_sectors: e.members.reduce((n, j) => n + (j.verify?.unverifiedSectors ?? 0), 0),
            mismatches: e.members.reduce((n, j) => n + (j.verify?.mismatches ?? 0), 0),
            reports: e.members.flatMap((j) => j.verify?.reports ?? []).map((m) => ({ ...m, text: describeMismatch(m) })),
          }
        : null,
    },
  };
}

/** [toFioJson run opts] is the run as fio 3.33 would print it with --output-format=json. */
export function toFioJson(run: FioRunResult, opts: FioJsonOptions = {}): FioJson {
  const ms = opts.timestampMs ?? Date.now();
  // Group the jobs; a group where anyone asked for group_reporting reports as one entry.
  const byGroup = new Map<number, FioJobResult[]>();
  for (const j of run.jobs) {
    const g = byGroup.get(j.groupid) ?? [];
    g.push(j);
    byGroup.set(j.groupid, g);
  }
  const jobs: FioJobJson[] = [];
  for (const [, members] of byGroup) {
    // Group aggregate bandwidth per direction (KiB/s): all bytes over the longest runtime.
    const agg = [0, 1, 2].map((i) => {
      const bytes = members.reduce((n, j) => n + (j.ddir[i] as DdirStats).bytes, 0);
      const rt = Math.max(0, ...members.map((j) => (j.ddir[i] as DdirStats).runtimeNs));
      return rt > 0 ? (bytes * 1e9) / rt / 1024 : 0;
    });
    const entries = members.some((j) => j.spec.group_reporting === true) ? [mergedEntry(members)] : members.map(singleEntry);
    for (const e of entries) jobs.push(entryJson(e, run, agg));
  }
  const out: FioJson = {
    'fio version': opts.version ?? XENSIM_FIO_VERSION,
    timestamp: Math.floor(ms / 1000),
    timestamp_ms: Math.floor(ms),
    time: ctime(ms),
    jobs,
    disk_util: [],
  };
  if (opts.globalOptions !== undefined) {
    // fio prints "global options" between "time" and "jobs".
    return { 'fio version': out['fio version'], timestamp: out.timestamp, timestamp_ms: out.timestamp_ms, time: out.time, 'global options': { ...opts.globalOptions }, jobs, disk_util: [] };
  }
  return out;
}
