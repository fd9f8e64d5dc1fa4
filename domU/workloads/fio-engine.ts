/**
 * A fio-like block workload engine over a BlockDevice.
 *
 * Runs jobs given as [FioJobSpec] (fio's option names and units) and measures what
 * fio measures: per-I/O submission latency (slat: the time the device's read/write
 * call takes to return), completion latency (clat: from return to completion) and
 * total latency (lat = slat + clat), with clat percentiles from an HDR histogram;
 * io_bytes, iops, bandwidth and fio's periodic bw/iops samples. fio-json.ts turns a
 * [FioRunResult] into fio's JSON.
 *
 * Everything is asynchronous and driven by completions: a job keeps up to `iodepth`
 * requests in flight, issuing the next one when a slot frees. Time comes only from
 * the injected WorkloadClock and randomness only from a seeded generator, so a run is
 * reproducible under a deterministic scheduler.
 *
 * Hot path: each in-flight slot owns its buffer (and verify view) and a completion
 * callback bound once; an I/O allocates nothing of ours (the device's promise and
 * its `.then` are the only per-I/O objects).
 *
 * Deliberate differences from fio 3.33 (so users are not surprised):
 *  - Random offsets are uniform with replacement (fio's `norandommap`), not a random map.
 *  - Jobs that run together get disjoint regions by default: instance i of a group
 *    starts where instance i−1's region ends (`offset_increment` defaults to `size`).
 *    Give `offset_increment=0` (or the same `offset`) to share. Each stonewall group
 *    starts again at offset 0, so "write, stonewall, read+verify" reads what was written.
 *  - `rate_iops` caps the job's total rate (reads + writes together).
 *  - ddir runtime is from that direction's first issue to its last completion.
 */
import { build as buildHistogram } from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';
import { err, ok, type Result } from '../../shared/result.ts';
import { invariant } from '../../shared/invariant.ts';
import { asDomId, type DomId } from '../../shared/types.ts';
import { SECTOR_SHIFT, SECTOR_SIZE, diffCounters, type BlockDevice, type IoStatus, type WorkloadClock } from './block-device.ts';
import { VerifyBuffer, VerifyTracker, type VerifyMismatch } from './verify.ts';

// ---------------------------------------------------------------------------
// Job specification (fio names, fio units)
// ---------------------------------------------------------------------------

export const FIO_RW = ['read', 'write', 'randread', 'randwrite', 'rw', 'readwrite', 'randrw', 'trim', 'randtrim'] as const;
export type FioRw = (typeof FIO_RW)[number];

/**
 * [FioJobSpec] is one fio job section, already parsed (cli/config/fio-job.ts makes
 * these from job files). Field names are fio's; sizes are bytes, times are seconds
 * (fractions allowed) unless noted. Omitted fields take fio's defaults.
 */
export interface FioJobSpec {
  /** The section name (`[name]`). */
  readonly name: string;
  readonly rw: FioRw;
  /** Block size in bytes, a multiple of 512 (default 4096). */
  readonly bs?: number;
  /** Requests kept in flight (default 1). */
  readonly iodepth?: number;
  /** Clones of this job (default 1), run concurrently. */
  readonly numjobs?: number;
  /** Bytes of the device each clone works on, and (unless time_based) bytes of I/O it does. */
  readonly size?: number;
  /** Byte offset of the first clone's region (default: after the previous job's, see header). */
  readonly offset?: number;
  /** Clone k's region starts at offset + k·offset_increment (default: size, i.e. disjoint). */
  readonly offset_increment?: number;
  /** Seconds; caps the job, or with time_based is how long it runs (after ramp_time). */
  readonly runtime?: number;
  readonly time_based?: boolean;
  /** Seconds of I/O before statistics start. */
  readonly ramp_time?: number;
  /** Percent of reads in rw/readwrite/randrw (default 50). */
  readonly rwmixread?: number;
  /** Cap on I/Os per second for the job (0 / undefined = none). */
  readonly rate_iops?: number;
  /** Write verifiable data and check every read (our verify=crc32c; see verify.ts). */
  readonly verify?: boolean;
  /** With verify, a write-only job reads its region back when done (default true). */
  readonly do_verify?: boolean;
  /** Stop the job at the first verify mismatch (default false: count and continue). */
  readonly verify_fatal?: boolean;
  /** Issue a flush after every N writes (0 = never). */
  readonly fsync?: number;
  /** Keep going after I/O errors (default false: the job stops at the first). */
  readonly continue_on_error?: boolean;
  readonly randseed?: number;
  /** Wait for all earlier jobs, and start a new reporting group. */
  readonly stonewall?: boolean;
  readonly group_reporting?: boolean;
  /** Percentiles to report (default fio's 17). */
  readonly percentile_list?: readonly number[];
  /** Also report percentiles of total latency (lat_ns.percentile). */
  readonly lat_percentiles?: boolean;
  /** Milliseconds per bandwidth / IOPS sample (default 500). */
  readonly bwavgtime?: number;
  readonly iopsavgtime?: number;
  /**
   * The job's options as the user wrote them (fio's "job options" strings). When
   * absent, fio-json.ts derives them from the fields above.
   */
  readonly options?: Readonly<Record<string, string>>;
}

export const FIO_DEFAULT_PERCENTILES: readonly number[] = [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99];

/** Why a job cannot run; every variant names the job and the offending value. */
export type FioSpecError =
  | { readonly kind: 'bad-bs'; readonly job: string; readonly bs: number }
  | { readonly kind: 'bs-too-large'; readonly job: string; readonly bs: number; readonly maxRequestBytes: number }
  | { readonly kind: 'bad-iodepth'; readonly job: string; readonly iodepth: number }
  | { readonly kind: 'bad-numjobs'; readonly job: string; readonly numjobs: number }
  | { readonly kind: 'bad-rwmixread'; readonly job: string; readonly rwmixread: number }
  | { readonly kind: 'bad-rw'; readonly job: string; readonly rw: string }
  | { readonly kind: 'bad-time'; readonly job: string; readonly option: 'runtime' | 'ramp_time' | 'rate_iops' | 'fsync' | 'bwavgtime' | 'iopsavgtime'; readonly value: number }
  | { readonly kind: 'time-based-without-runtime'; readonly job: string }
  | { readonly kind: 'bad-size'; readonly job: string; readonly size: number }
  | { readonly kind: 'region-outside-device'; readonly job: string; readonly clone: number; readonly offset: number; readonly size: number; readonly deviceBytes: number }
  | { readonly kind: 'no-jobs' };

// ---------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------

/**
 * [Xoshiro128] is xoshiro128** (Blackman & Vigna): a fast 32-bit generator whose
 * whole stream is fixed by the seed. Seeded through splitmix32 so any integer works.
 */
export class Xoshiro128 {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
      z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
      return (z ^ (z >>> 15)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }
  /** [nextU32 ()] is the next uniform integer in [0, 2^32). */
  nextU32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }
  /** [below n] is a uniform integer in [0, n), for n up to 2^53. */
  below(n: number): number {
    if (n <= 0x1_0000_0000) return Math.floor((this.nextU32() / 0x1_0000_0000) * n);
    return Math.floor(((this.nextU32() * 0x20_0000 + (this.nextU32() >>> 11)) / 2 ** 53) * n);
  }
}
function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** [mixSeed a b c] combines seeds (job seed, job index, clone) into one. */
export function mixSeed(a: number, b: number, c: number): number {
  let h = Math.imul(a ^ 0x5bd1e995, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15) ^ b, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ c, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

/** [RunningStats] keeps count, min, max, mean and variance of a stream (Welford), mergeable. */
export class RunningStats {
  n = 0;
  mean = 0;
  m2 = 0;
  min = Infinity;
  max = -Infinity;
  add(x: number): void {
    this.n++;
    const d = x - this.mean;
    this.mean += d / this.n;
    this.m2 += d * (x - this.mean);
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
  }
  /** [merge o] folds o's values in (Chan et al.'s parallel variance). */
  merge(o: RunningStats): void {
    if (o.n === 0) return;
    if (this.n === 0) {
      this.n = o.n;
      this.mean = o.mean;
      this.m2 = o.m2;
      this.min = o.min;
      this.max = o.max;
      return;
    }
    const n = this.n + o.n;
    const d = o.mean - this.mean;
    this.mean += (d * o.n) / n;
    this.m2 += o.m2 + (d * d * this.n * o.n) / n;
    this.n = n;
    this.min = Math.min(this.min, o.min);
    this.max = Math.max(this.max, o.max);
  }
  /** Sample standard deviation (n − 1), as fio reports it; 0 below two values. */
  get stddev(): number {
    return this.n > 1 ? Math.sqrt(this.m2 / (this.n - 1)) : 0;
  }
}

export function newLatencyHistogram(): Histogram {
  // ns values; 3 significant digits like fio's own bins (which keep ~1.5% error).
  return buildHistogram({ bitBucketSize: 64, numberOfSignificantValueDigits: 3, autoResize: true });
}

export const DDIR_READ = 0;
export const DDIR_WRITE = 1;
export const DDIR_TRIM = 2;
const DDIR_SYNC = 3;
export type Ddir = typeof DDIR_READ | typeof DDIR_WRITE | typeof DDIR_TRIM;
export const DDIR_NAMES = ['read', 'write', 'trim'] as const;

/** [DdirStats] is what one direction (read, write or trim) of one job did, after ramp. */
export class DdirStats {
  ios = 0;
  bytes = 0;
  readonly slat = new RunningStats();
  readonly clat = new RunningStats();
  readonly lat = new RunningStats();
  readonly clatHist: Histogram = newLatencyHistogram();
  /** Only with lat_percentiles. */
  latHist: Histogram | undefined;
  /** bw samples in KiB/s and iops samples, one per bwavgtime / iopsavgtime. */
  readonly bwSamples: number[] = [];
  readonly iopsSamples: number[] = [];
  /** First issue and last completion (ns since run start), -1 before any. */
  firstIssueNs = -1;
  lastDoneNs = -1;
  /** [runtimeNs] is the time this direction was active. */
  get runtimeNs(): number {
    return this.ios === 0 ? 0 : this.lastDoneNs - this.firstIssueNs;
  }
  /** @internal sampling state */
  lastBwBytes = 0;
  lastIopsIos = 0;
}

/** fio's iodepth_level buckets: 1, 2, 4, 8, 16, 32, >=64. */
export const IODEPTH_LEVEL_KEYS = ['1', '2', '4', '8', '16', '32', '>=64'] as const;
/** fio's latency_{ns,us,ms} bucket upper bounds (a value lands in the first bound it is below). */
export const LAT_BUCKET_BOUNDS = [2, 4, 10, 20, 50, 100, 250, 500, 750, 1000] as const;
/** Index in the 32 latency buckets: 0–9 ns, 10–19 µs, 20–31 ms (30 = "2000", 31 = ">=2000"). */
function latBucket(ns: number): number {
  let v: number;
  let base: number;
  if (ns < 1000) {
    v = ns;
    base = 0;
  } else if (ns < 1_000_000) {
    v = ns / 1000;
    base = 10;
  } else {
    v = ns / 1_000_000;
    base = 20;
    if (v >= 1000) return v < 2000 ? 30 : 31;
  }
  for (let i = 0; i < 10; i++) if (v < (LAT_BUCKET_BOUNDS[i] as number)) return base + i;
  return base + 9;
}

// ---------------------------------------------------------------------------
// Run options and results
// ---------------------------------------------------------------------------

export interface FioRunOptions {
  readonly device: BlockDevice;
  readonly clock: WorkloadClock;
  /** Seed for jobs without randseed (default 0x5eed: runs repeat, like fio's randrepeat=1). */
  readonly seed?: number;
  /** The domain whose writes the verify headers carry (default 1). */
  readonly domid?: DomId;
  /** Share verify state with an earlier run (e.g. a write run, then a read run). */
  readonly tracker?: VerifyTracker;
  /** Process CPU time in µs (e.g. process.cpuUsage); without it usr_cpu/sys_cpu are 0. */
  readonly cpuUsage?: () => { readonly user: number; readonly system: number };
  /** Yield to the event loop after this many issues in a row (default 256). */
  readonly yieldEvery?: number;
}

/** What one job clone did. Times are ns. */
export interface FioJobResult {
  readonly spec: FioJobSpec;
  /** Index of the spec in the run, and of the clone within it. */
  readonly jobIndex: number;
  readonly clone: number;
  readonly groupid: number;
  /** errno of the first failure (5 EIO, 95 EOPNOTSUPP, 84 EILSEQ for verify), 0 if none. */
  readonly error: number;
  readonly errorMessage: string | undefined;
  readonly region: { readonly offset: number; readonly size: number };
  readonly iodepth: number;
  readonly bs: number;
  readonly ddir: readonly [DdirStats, DdirStats, DdirStats];
  readonly sync: { readonly ios: number; readonly lat: RunningStats; readonly latHist: Histogram };
  /** From the end of ramp_time to the last completion. */
  readonly runtimeNs: number;
  /** From start (including ramp) to the last completion. */
  readonly elapsedNs: number;
  /** Counts of submissions at each iodepth_level bucket. */
  readonly iodepthLevel: readonly number[];
  /** Counts of completions per latency bucket (see latBucket). */
  readonly latBuckets: readonly number[];
  readonly maxInflight: number;
  readonly failedIos: number;
  /** Verify counters over this job's reads, and its first reports; undefined without verify. */
  readonly verify: { readonly verifiedSectors: number; readonly unverifiedSectors: number; readonly mismatches: number; readonly reports: readonly VerifyMismatch[] } | undefined;
  readonly cpu: { readonly userUs: number; readonly systemUs: number };
}

/** One reporting group: jobs between stonewalls. */
export interface FioGroupResult {
  readonly groupid: number;
  readonly startNs: number;
  readonly endNs: number;
  /** Device counter deltas over the group (all its jobs' I/O together). */
  readonly counters: Readonly<Record<string, number>>;
  /** I/Os the group completed (all directions and flushes, including ramp): the per-I/O denominator. */
  readonly ios: number;
}

export interface FioRunResult {
  readonly jobs: readonly FioJobResult[];
  readonly groups: readonly FioGroupResult[];
  readonly tracker: VerifyTracker | undefined;
  /** Engine bookkeeping: total I/Os issued, and the ns the run took. */
  readonly totalIos: number;
  readonly wallNs: number;
}

// ---------------------------------------------------------------------------
// Validation and regions
// ---------------------------------------------------------------------------

/** [FioJobInstance] is one clone of one job, with its region (bytes) and group. */
export interface FioJobInstance {
  readonly spec: FioJobSpec;
  readonly jobIndex: number;
  readonly clone: number;
  readonly groupid: number;
  readonly offset: number;
  readonly size: number;
}

function checkSpec(spec: FioJobSpec, device: BlockDevice): Result<void, FioSpecError> {
  const job = spec.name;
  if (!(FIO_RW as readonly string[]).includes(spec.rw)) return err({ kind: 'bad-rw', job, rw: spec.rw });
  const bs = spec.bs ?? 4096;
  if (!Number.isSafeInteger(bs) || bs <= 0 || bs % SECTOR_SIZE !== 0) return err({ kind: 'bad-bs', job, bs });
  if (bs > device.maxRequestBytes && spec.rw !== 'trim' && spec.rw !== 'randtrim') return err({ kind: 'bs-too-large', job, bs, maxRequestBytes: device.maxRequestBytes });
  const iodepth = spec.iodepth ?? 1;
  if (!Number.isSafeInteger(iodepth) || iodepth < 1 || iodepth > 65536) return err({ kind: 'bad-iodepth', job, iodepth });
  const numjobs = spec.numjobs ?? 1;
  if (!Number.isSafeInteger(numjobs) || numjobs < 1 || numjobs > 4096) return err({ kind: 'bad-numjobs', job, numjobs });
  const mix = spec.rwmixread ?? 50;
  if (!(mix >= 0 && mix <= 100)) return err({ kind: 'bad-rwmixread', job, rwmixread: mix });
  for (const option of ['runtime', 'ramp_time', 'rate_iops', 'fsync', 'bwavgtime', 'iopsavgtime'] as const) {
    const v = spec[option];
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) return err({ kind: 'bad-time', job, option, value: v });
  }
  if (spec.bwavgtime === 0 || spec.iopsavgtime === 0) return err({ kind: 'bad-time', job, option: spec.bwavgtime === 0 ? 'bwavgtime' : 'iopsavgtime', value: 0 });
  if (spec.time_based === true && !(spec.runtime !== undefined && spec.runtime > 0)) return err({ kind: 'time-based-without-runtime', job });
  if (spec.size !== undefined && (!Number.isSafeInteger(spec.size) || spec.size < bs)) return err({ kind: 'bad-size', job, size: spec.size });
  return ok(undefined);
}

/** [planGroups specs device] validates the specs and lays out every clone's region, group by group. */
export function planGroups(specs: readonly FioJobSpec[], device: BlockDevice): Result<FioJobInstance[][], FioSpecError> {
  if (specs.length === 0) return err({ kind: 'no-jobs' });
  const deviceBytes = device.sectors * SECTOR_SIZE;
  const groupsOfSpecs: { spec: FioJobSpec; jobIndex: number }[][] = [];
  specs.forEach((spec, jobIndex) => {
    if (spec.stonewall === true || groupsOfSpecs.length === 0) groupsOfSpecs.push([]);
    (groupsOfSpecs[groupsOfSpecs.length - 1] as { spec: FioJobSpec; jobIndex: number }[]).push({ spec, jobIndex });
  });
  const out: FioJobInstance[][] = [];
  for (let g = 0; g < groupsOfSpecs.length; g++) {
    const members = groupsOfSpecs[g] as { spec: FioJobSpec; jobIndex: number }[];
    for (const { spec } of members) {
      const c = checkSpec(spec, device);
      if (!c.ok) return c;
    }
    const instancesInGroup = members.reduce((n, m) => n + (m.spec.numjobs ?? 1), 0);
    let cursor = 0;
    const group: FioJobInstance[] = [];
    for (const { spec, jobIndex } of members) {
      const bs = spec.bs ?? 4096;
      const size = spec.size ?? Math.floor(deviceBytes / instancesInGroup / bs) * bs;
      if (size < bs) return err({ kind: 'bad-size', job: spec.name, size });
      const base = spec.offset ?? cursor;
      const inc = spec.offset_increment ?? size;
      const numjobs = spec.numjobs ?? 1;
      for (let k = 0; k < numjobs; k++) {
        const offset = base + k * inc;
        if (offset % SECTOR_SIZE !== 0 || offset + size > deviceBytes) {
          return err({ kind: 'region-outside-device', job: spec.name, clone: k, offset, size, deviceBytes });
        }
        group.push({ spec, jobIndex, clone: k, groupid: g, offset, size });
        cursor = Math.max(cursor, offset + size);
      }
    }
    out.push(group);
  }
  return ok(out);
}

// ---------------------------------------------------------------------------
// One running job clone
// ---------------------------------------------------------------------------

const RW_KIND = {
  read: { mixed: false, random: false, ddir: DDIR_READ },
  write: { mixed: false, random: false, ddir: DDIR_WRITE },
  randread: { mixed: false, random: true, ddir: DDIR_READ },
  randwrite: { mixed: false, random: true, ddir: DDIR_WRITE },
  rw: { mixed: true, random: false, ddir: DDIR_READ },
  readwrite: { mixed: true, random: false, ddir: DDIR_READ },
  randrw: { mixed: true, random: true, ddir: DDIR_READ },
  trim: { mixed: false, random: false, ddir: DDIR_TRIM },
  randtrim: { mixed: false, random: true, ddir: DDIR_TRIM },
} as const satisfies Record<FioRw, { mixed: boolean; random: boolean; ddir: Ddir }>;

const PHASE_MAIN = 0;
const PHASE_VERIFY = 1;
const PHASE_DONE = 2;

/** [Slot] is one in-flight position: its buffer, its request, its bound completion. */
class Slot {
  readonly buf: Uint8Array;
  readonly vb: VerifyBuffer | undefined;
  ddir = 0;
  sector = 0;
  nsec = 0;
  tStart = 0;
  tSub = 0;
  gen = 0;
  locked = false;
  readonly onDone: (s: IoStatus) => void;
  constructor(bs: number, verify: boolean, run: JobRun) {
    this.buf = new Uint8Array(bs);
    this.vb = verify ? new VerifyBuffer(this.buf) : undefined;
    this.onDone = (s: IoStatus): void => run.complete(this, s);
  }
}

const ERRNO_EIO = 5;
const ERRNO_EILSEQ = 84;
const ERRNO_EOPNOTSUPP = 95;

class JobRun {
  readonly ddir: [DdirStats, DdirStats, DdirStats] = [new DdirStats(), new DdirStats(), new DdirStats()];
  readonly syncLat = new RunningStats();
  readonly syncHist = newLatencyHistogram();
  syncIos = 0;
  readonly iodepthLevel = [0, 0, 0, 0, 0, 0, 0];
  readonly latBuckets: number[] = new Array<number>(32).fill(0);
  error = 0;
  errorMessage: string | undefined;
  failedIos = 0;
  maxInflight = 0;
  inflight = 0;
  /** All completions, ramp included (for per-I/O counters). */
  completedAll = 0;
  issuedAll = 0;
  verifyMismatches = 0;
  verifiedSectors = 0;
  unverifiedSectors = 0;
  readonly reports: VerifyMismatch[] = [];
  startNs = 0;
  rampEndNs = 0;
  lastDoneNs = 0;

  private readonly bs: number;
  private readonly nsec: number;
  private readonly iodepth: number;
  private readonly regionStart: number;
  private readonly regionBlocks: number;
  private readonly kind: { readonly mixed: boolean; readonly random: boolean; readonly ddir: Ddir };
  private readonly rwmixread: number;
  private readonly rng: Xoshiro128;
  private readonly slots: Slot[] = [];
  private readonly free: Slot[] = [];
  private readonly seqBlock = [0, 0, 0];
  private readonly ioLimit: number;
  private readonly timeBased: boolean;
  private readonly rateNs: number;
  private readonly fsyncEvery: number;
  private readonly bwAvgNs: number;
  private readonly iopsAvgNs: number;
  private readonly yieldEvery: number;
  private readonly verifyPhaseWanted: boolean;
  private phase = PHASE_MAIN;
  /** Set by an error that ends the job (I/O error without continue_on_error, verify_fatal). */
  private halted = false;
  private deadlineNs = Infinity;
  private bytesIssued = 0;
  private nextIssueNs = 0;
  private writesSinceSync = 0;
  private syncDue = false;
  private syncInFlight = false;
  private timerArmed = false;
  private sinceYield = 0;
  private verifyCursor = 0;
  private nextBwSampleNs = Infinity;
  private lastBwSampleNs = 0;
  private nextIopsSampleNs = Infinity;
  private lastIopsSampleNs = 0;
  private resolveDone: (() => void) | undefined;
  private readonly pumpFromTimer = (): void => {
    this.timerArmed = false;
    this.pump();
  };
  /** The clock as read right after the last submission. */
  private lastSubmitNs = 0;

  constructor(
    readonly inst: FioJobInstance,
    private readonly device: BlockDevice,
    private readonly clock: WorkloadClock,
    private readonly t0: bigint,
    private readonly tracker: VerifyTracker | undefined,
    seed: number,
    yieldEvery: number,
  ) {
    const spec = inst.spec;
    this.bs = spec.bs ?? 4096;
    this.nsec = this.bs >>> SECTOR_SHIFT;
    this.iodepth = spec.iodepth ?? 1;
    this.regionStart = inst.offset / SECTOR_SIZE;
    this.regionBlocks = Math.floor(inst.size / this.bs);
    this.kind = RW_KIND[spec.rw];
    this.rwmixread = spec.rwmixread ?? 50;
    this.rng = new Xoshiro128(mixSeed(spec.randseed ?? seed, inst.jobIndex, inst.clone));
    this.ioLimit = this.regionBlocks * this.bs;
    this.timeBased = spec.time_based === true;
    this.rateNs = spec.rate_iops !== undefined && spec.rate_iops > 0 ? 1e9 / spec.rate_iops : 0;
    this.fsyncEvery = spec.fsync ?? 0;
    this.bwAvgNs = (spec.bwavgtime ?? 500) * 1e6;
    this.iopsAvgNs = (spec.iopsavgtime ?? 500) * 1e6;
    this.yieldEvery = yieldEvery;
    this.verifyPhaseWanted = tracker !== undefined && spec.do_verify !== false && !this.kind.mixed && this.kind.ddir === DDIR_WRITE;
    if (spec.lat_percentiles === true) for (const d of this.ddir) d.latHist = newLatencyHistogram();
    for (let i = 0; i < this.iodepth; i++) {
      const s = new Slot(this.bs, tracker !== undefined, this);
      this.slots.push(s);
      this.free.push(s);
    }
  }

  private now(): number {
    return Number(this.clock.now() - this.t0);
  }

  /** [start ()] begins issuing and resolves when the job (and its verify pass) is over. */
  start(): Promise<void> {
    const spec = this.inst.spec;
    this.startNs = this.now();
    this.rampEndNs = this.startNs + (spec.ramp_time ?? 0) * 1e9;
    if (spec.runtime !== undefined && spec.runtime > 0) this.deadlineNs = this.rampEndNs + spec.runtime * 1e9;
    this.nextIssueNs = this.startNs;
    this.lastBwSampleNs = this.lastIopsSampleNs = this.rampEndNs;
    this.nextBwSampleNs = this.rampEndNs + this.bwAvgNs;
    this.nextIopsSampleNs = this.rampEndNs + this.iopsAvgNs;
    this.lastDoneNs = this.startNs;
    const done = new Promise<void>((r) => (this.resolveDone = r));
    this.pump();
    return done;
  }

  /** Is there more I/O to issue in the current phase? */
  private more(now: number): boolean {
    if (this.halted) return false;
    if (this.phase === PHASE_VERIFY) {
      const tr = this.tracker as VerifyTracker;
      while (this.verifyCursor < this.regionBlocks && !tr.written(this.regionStart + this.verifyCursor * this.nsec, this.nsec)) this.verifyCursor++;
      return this.verifyCursor < this.regionBlocks;
    }
    if (now >= this.deadlineNs) return false;
    return this.timeBased || this.bytesIssued < this.ioLimit;
  }

  private armTimer(atNs: number): void {
    this.timerArmed = true;
    void this.clock.sleepUntil(this.t0 + BigInt(Math.ceil(atNs))).then(this.pumpFromTimer);
  }

  /**
   * Issue until iodepth is reached or something (rate, barrier, locks, the end) stops
   * us. `nowNs` saves a clock read when the caller just read it (clock reads are a
   * fifth of the engine's cost).
   */
  pump(nowNs?: number): void {
    if (this.phase === PHASE_DONE || this.timerArmed || this.syncInFlight) return;
    let now = nowNs ?? this.now();
    while (this.inflight < this.iodepth) {
      if (!this.more(now)) {
        if (this.inflight === 0) this.endPhase();
        return;
      }
      if (this.syncDue) {
        if (this.inflight === 0) this.issueSync(now);
        return;
      }
      if (this.rateNs > 0 && now < this.nextIssueNs) {
        this.armTimer(this.nextIssueNs);
        return;
      }
      if (++this.sinceYield > this.yieldEvery) {
        // Let timers and other work run (a zero-latency device completes in microtasks).
        this.sinceYield = 0;
        this.armTimer(now);
        return;
      }
      if (!this.issue(now)) {
        // Verify lock held by another job: retry when one of ours completes, or
        // (with none in flight) when anyone unlocks.
        if (this.inflight === 0) {
          this.timerArmed = true;
          (this.tracker as VerifyTracker).whenUnlocked(this.pumpFromTimer);
        }
        return;
      }
      now = this.lastSubmitNs;
    }
  }

  private pickDdir(): number {
    if (this.phase === PHASE_VERIFY) return DDIR_READ;
    if (!this.kind.mixed) return this.kind.ddir;
    return this.rng.nextU32() % 100 < this.rwmixread ? DDIR_READ : DDIR_WRITE;
  }

  private pickBlock(ddir: number): number {
    if (this.phase === PHASE_VERIFY) return this.verifyCursor;
    if (this.kind.random) return this.rng.below(this.regionBlocks);
    const b = this.seqBlock[ddir] as number;
    return b >= this.regionBlocks ? 0 : b;
  }

  private issue(now: number): boolean {
    const ddir = this.pickDdir();
    let block = this.pickBlock(ddir);
    const tr = this.tracker;
    if (tr !== undefined) {
      let tries = this.kind.random && this.phase === PHASE_MAIN ? 4 : 1;
      while (!tr.tryLock(this.regionStart + block * this.nsec, this.nsec)) {
        if (--tries <= 0) return false;
        block = this.pickBlock(ddir);
      }
    }
    if (this.phase === PHASE_VERIFY) this.verifyCursor++;
    else if (!this.kind.random) this.seqBlock[ddir] = block + 1;
    const slot = this.free.pop();
    invariant(slot !== undefined, 'issue with no free slot');
    slot.ddir = ddir;
    slot.sector = this.regionStart + block * this.nsec;
    slot.nsec = this.nsec;
    slot.locked = tr !== undefined;
    if (ddir === DDIR_WRITE && tr !== undefined) slot.gen = tr.fillWrite(slot.vb as VerifyBuffer, slot.sector, this.bs);
    this.inflight++;
    this.issuedAll++;
    if (this.inflight > this.maxInflight) this.maxInflight = this.inflight;
    (this.iodepthLevel[this.inflight >= 64 ? 6 : 31 - Math.clz32(this.inflight)] as number)++;
    if (this.phase === PHASE_MAIN) this.bytesIssued += this.bs;
    if (this.rateNs > 0) this.nextIssueNs = Math.max(this.nextIssueNs, now - this.rateNs * this.iodepth) + this.rateNs;
    if (ddir === DDIR_WRITE && this.fsyncEvery > 0 && ++this.writesSinceSync >= this.fsyncEvery) {
      this.writesSinceSync = 0;
      this.syncDue = true;
    }
    const d = this.ddir[ddir] as DdirStats;
    if (d.firstIssueNs < 0 && now >= this.rampEndNs) d.firstIssueNs = now;
    slot.tStart = now;
    const p = ddir === DDIR_READ ? this.device.read(slot.sector, slot.buf) : ddir === DDIR_WRITE ? this.device.write(slot.sector, slot.buf) : this.device.discard(slot.sector, slot.nsec);
    slot.tSub = this.lastSubmitNs = this.now();
    p.then(slot.onDone);
    return true;
  }

  private issueSync(now: number): void {
    this.syncDue = false;
    this.syncInFlight = true;
    const slot = this.free.pop();
    invariant(slot !== undefined, 'sync with no free slot');
    slot.ddir = DDIR_SYNC;
    slot.locked = false;
    slot.tStart = now;
    this.inflight++;
    this.issuedAll++;
    const p = this.device.flush();
    slot.tSub = this.now();
    p.then(slot.onDone);
  }

  /** A request finished (called once per I/O, from the device's promise). */
  complete(slot: Slot, status: IoStatus): void {
    const tEnd = this.now();
    this.inflight--;
    this.completedAll++;
    this.lastDoneNs = tEnd;
    const ok = status === 'ok';
    if (!ok) {
      this.failedIos++;
      if (this.inst.spec.continue_on_error !== true) this.halted = true;
      if (this.error === 0) {
        this.error = status === 'eopnotsupp' ? ERRNO_EOPNOTSUPP : ERRNO_EIO;
        const what = slot.ddir === DDIR_SYNC ? 'flush' : `${DDIR_NAMES[slot.ddir as Ddir]} of ${slot.nsec} sectors at ${slot.sector}`;
        this.errorMessage = `${status === 'eopnotsupp' ? 'Operation not supported' : 'Input/output error'}: ${what}`;
      }
    }
    const tr = this.tracker;
    if (slot.ddir === DDIR_SYNC) {
      this.syncInFlight = false;
      if (ok && slot.tStart >= this.rampEndNs) {
        this.syncIos++;
        this.syncLat.add(tEnd - slot.tStart);
        this.syncHist.recordValue(tEnd - slot.tStart);
      }
    } else {
      if (tr !== undefined && slot.locked) {
        if (slot.ddir === DDIR_WRITE) tr.writeDone(slot.sector, slot.nsec, slot.gen, ok);
        else if (slot.ddir === DDIR_TRIM) tr.forget(slot.sector, slot.nsec);
        else if (ok) this.checkRead(tr, slot);
        tr.unlock(slot.sector, slot.nsec);
      }
      if (ok && slot.tStart >= this.rampEndNs) {
        const d = this.ddir[slot.ddir] as DdirStats;
        const slat = slot.tSub - slot.tStart;
        const clat = tEnd - slot.tSub;
        d.ios++;
        d.bytes += slot.nsec << SECTOR_SHIFT;
        d.slat.add(slat);
        d.clat.add(clat);
        d.lat.add(slat + clat);
        d.clatHist.recordValue(clat);
        if (d.latHist !== undefined) d.latHist.recordValue(slat + clat);
        d.lastDoneNs = tEnd;
        (this.latBuckets[latBucket(clat)] as number)++;
        if (tEnd >= this.nextBwSampleNs || tEnd >= this.nextIopsSampleNs) this.sample(tEnd);
      }
    }
    this.free.push(slot);
    this.pump(tEnd);
  }

  private checkRead(tr: VerifyTracker, slot: Slot): void {
    const before = tr.mismatchCount;
    const v0 = tr.verifiedSectors;
    const u0 = tr.unverifiedSectors;
    const bad = tr.checkRead(slot.vb as VerifyBuffer, slot.sector, slot.nsec << SECTOR_SHIFT);
    this.verifiedSectors += tr.verifiedSectors - v0;
    this.unverifiedSectors += tr.unverifiedSectors - u0;
    if (bad === 0) return;
    this.verifyMismatches += bad;
    // The tracker keeps the first reports overall; keep this job's own first ones too.
    for (let i = before; i < tr.mismatches.length && this.reports.length < 16; i++) this.reports.push(tr.mismatches[i] as VerifyMismatch);
    if (this.error === 0) {
      this.error = ERRNO_EILSEQ;
      this.errorMessage = `verify: ${bad} bad sector(s) in read of ${slot.nsec} sectors at ${slot.sector}`;
    }
    // fio's default verify_fatal=0: report the mismatch and keep verifying.
    if (this.inst.spec.verify_fatal === true) this.halted = true;
  }

  /** fio-style periodic samples: bandwidth (KiB/s) and IOPS of each active direction. */
  private sample(now: number): void {
    if (now >= this.nextBwSampleNs) {
      const dt = now - this.lastBwSampleNs;
      for (const d of this.ddir) {
        if (d.ios === 0) continue;
        d.bwSamples.push(((d.bytes - d.lastBwBytes) * 1e9) / dt / 1024);
        d.lastBwBytes = d.bytes;
      }
      this.lastBwSampleNs = now;
      this.nextBwSampleNs = now + this.bwAvgNs;
    }
    if (now >= this.nextIopsSampleNs) {
      const dt = now - this.lastIopsSampleNs;
      for (const d of this.ddir) {
        if (d.ios === 0) continue;
        d.iopsSamples.push(((d.ios - d.lastIopsIos) * 1e9) / dt);
        d.lastIopsIos = d.ios;
      }
      this.lastIopsSampleNs = now;
      this.nextIopsSampleNs = now + this.iopsAvgNs;
    }
  }

  private endPhase(): void {
    if (this.phase === PHASE_MAIN && this.verifyPhaseWanted && !this.halted) {
      this.phase = PHASE_VERIFY;
      this.verifyCursor = 0;
      this.pump();
      return;
    }
    this.phase = PHASE_DONE;
    this.resolveDone?.();
  }

  result(cpu: { userUs: number; systemUs: number }): FioJobResult {
    const spec = this.inst.spec;
    return {
      spec,
      jobIndex: this.inst.jobIndex,
      clone: this.inst.clone,
      groupid: this.inst.groupid,
      error: this.error,
      errorMessage: this.errorMessage,
      region: { offset: this.inst.offset, size: this.inst.size },
      iodepth: this.iodepth,
      bs: this.bs,
      ddir: this.ddir,
      sync: { ios: this.syncIos, lat: this.syncLat, latHist: this.syncHist },
      runtimeNs: Math.max(0, this.lastDoneNs - this.rampEndNs),
      elapsedNs: this.lastDoneNs - this.startNs,
      iodepthLevel: this.iodepthLevel,
      latBuckets: this.latBuckets,
      maxInflight: this.maxInflight,
      failedIos: this.failedIos,
      verify:
        this.tracker === undefined
          ? undefined
          : { verifiedSectors: this.verifiedSectors, unverifiedSectors: this.unverifiedSectors, mismatches: this.verifyMismatches, reports: this.reports },
      cpu,
    };
  }
}

// ---------------------------------------------------------------------------
// Running jobs
// ---------------------------------------------------------------------------

/**
 * [runFio specs opts] runs the jobs (clones concurrently; each stonewall starts a new
 * group after the previous one ends) and returns what each clone did, or why the
 * specs cannot run.
 */
export async function runFio(specs: readonly FioJobSpec[], opts: FioRunOptions): Promise<Result<FioRunResult, FioSpecError>> {
  const plan = planGroups(specs, opts.device);
  if (!plan.ok) return plan;
  const clock = opts.clock;
  const t0 = clock.now();
  const wantsVerify = specs.some((s) => s.verify === true);
  const tracker = opts.tracker ?? (wantsVerify ? new VerifyTracker(opts.domid ?? asDomId(1), opts.device.sectors) : undefined);
  const seed = opts.seed ?? 0x5eed;
  const yieldEvery = opts.yieldEvery ?? 256;
  const jobs: FioJobResult[] = [];
  const groups: FioGroupResult[] = [];
  let totalIos = 0;
  for (const group of plan.value) {
    const runs = group.map((inst) => new JobRun(inst, opts.device, clock, t0, inst.spec.verify === true ? tracker : undefined, seed, yieldEvery));
    const before = opts.device.counters();
    const cpu0 = opts.cpuUsage?.();
    const startNs = Number(clock.now() - t0);
    await Promise.all(runs.map((r) => r.start()));
    const endNs = Number(clock.now() - t0);
    const cpu1 = opts.cpuUsage?.();
    const cpu = cpu0 !== undefined && cpu1 !== undefined ? { userUs: cpu1.user - cpu0.user, systemUs: cpu1.system - cpu0.system } : { userUs: 0, systemUs: 0 };
    const ios = runs.reduce((n, r) => n + r.completedAll, 0);
    totalIos += ios;
    groups.push({ groupid: group[0]?.groupid ?? groups.length, startNs, endNs, counters: diffCounters(opts.device.counters(), before), ios });
    for (const r of runs) jobs.push(r.result(cpu));
  }
  return ok({ jobs, groups, tracker, totalIos, wallNs: Number(clock.now() - t0) });
}
