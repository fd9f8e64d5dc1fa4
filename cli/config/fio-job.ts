/**
 * Block workloads in fio's own language: a job file (INI) or the same options
 * inline (an object, e.g. from a scenario YAML). The result is one typed
 * FioJob per job section, with the [global] options merged in as fio does.
 *
 * Job file syntax (fio 3.33, checked against `fio --parse-only`):
 *  - `[name]` opens a job; `[global]` opens defaults for the jobs that FOLLOW
 *    it (a later [global] does not change earlier jobs);
 *  - `key=value` or a bare `key` (flags such as stonewall, time_based);
 *    blanks around key and value are dropped; option names are case-sensitive;
 *  - `;` or `#` starts a comment, at the start of a line or after an option;
 *  - an option before any section is "fio: option <bs=4k> outside of [] job section".
 *
 * Options (canonical fio names; aliases in parentheses):
 *   name               job name (default: the section name)
 *   rw (readwrite)     read|write|randread|randwrite|rw|readwrite|randrw; trim,
 *                      randtrim, trimwrite, randtrimwrite are fio's too but
 *                      rejected: xensim has no discard path. Default read.
 *   rwmixread / rwmixwrite  percentage of reads/writes in a mix (default 50/50;
 *                      setting one sets the other to 100-N; the last one wins)
 *   bs (blocksize)     bytes, or `R,W[,T]` per direction; default 4k. Sizes
 *                      follow fio's default kb_base=1024: k/K/kb/KB = 1024 and,
 *                      inverted as fio documents, kib/KiB = 1000 (same for m, g,
 *                      t, p); 0x-hex takes no suffix. xensim needs a multiple of
 *                      512 (the blkif sector).
 *   iodepth            1..65536, default 1. psync and sync are synchronous:
 *                      like fio they run at depth 1 whatever iodepth says.
 *   numjobs            clones of the job, default 1
 *   size               bytes (as bs) or N% of the device; default: whole device
 *   runtime (timeout)  time; unit s by default, or d, h, m (minutes), s, ms
 *                      (msec), us (usec). Stored in microseconds.
 *   time_based         loop until runtime (needs runtime)
 *   ramp_time          time, as runtime; I/O in it is not reported
 *   rate_iops          IOPS cap, `N` or `R,W`
 *   stonewall (wait_for_previous)  wait for the jobs before; starts a new group
 *   group_reporting    report the group as one
 *   filename           the guest disk: `xvdb`, `/dev/xvdb` or `DOMAIN/xvdb`
 *   direct             0|1 (O_DIRECT)
 *   ioengine           libaio|io_uring|psync|sync (default psync, fio's Linux default)
 *   verify             md5, crc32c, sha256, ... accepted; xensim always checks
 *                      its own per-block header instead of fio's checksums
 *   percentile_list    colon-separated percentiles (≤ 20, each 0..100)
 *   lat_percentiles    0|1: report total-latency percentiles too
 *   offset             where the first clone's region starts: bytes or N%
 *   offset_increment   clone k starts at offset + k * offset_increment (bytes)
 *   fsync              flush after every N writes (0 = never)
 *   do_verify          0|1: with verify, read a write job's region back at the end
 *   verify_fatal       0|1: stop at the first verify mismatch
 *   continue_on_error  none|0 (stop at the first I/O error) or read|write|io|verify|all|1
 *   randseed           seed of the job's random offsets
 *   bwavgtime, iopsavgtime  bandwidth / IOPS sample period in ms (default 500)
 * Accepted and ignored (with a warning): description, thread, randrepeat,
 * norandommap, invalidate, refill_buffers, clat_percentiles.
 * Other fio options are "not supported by xensim"; anything else is
 * "Bad option <key=value>" with fio's did-you-mean (Levenshtein distance at
 * most half the name's length).
 *
 * Deliberately stricter than fio (each a clear error): fractional sizes and
 * times (fio silently truncates `1.5k` to 1), suffixes on hex numbers,
 * numjobs=0, size=0, time_based without runtime, and rw offset modifiers
 * (`rw=randread:8`).
 */
import { readFileSync } from 'node:fs';
import { err, ok, type Result } from '../../shared/result.ts';
import { vdevToDevid } from './vdev.ts';
import { closest } from './xlcfg.ts';

export const FIO_RW = ['read', 'write', 'randread', 'randwrite', 'rw', 'randrw'] as const;
export type FioRw = (typeof FIO_RW)[number];
export const FIO_TRIM_RW = ['trim', 'randtrim', 'trimwrite', 'randtrimwrite'] as const;
export const FIO_IOENGINES = ['libaio', 'io_uring', 'psync', 'sync'] as const;
export type FioIoengine = (typeof FIO_IOENGINES)[number];
/** Synchronous engines: one I/O in flight per job, whatever iodepth says. */
export const FIO_SYNC_ENGINES: readonly FioIoengine[] = ['psync', 'sync'];
export const FIO_VERIFY = [
  '0', 'null', 'md5', 'crc64', 'crc32c', 'crc32c-intel', 'crc32', 'crc16', 'crc7', 'xxhash', 'sha512', 'sha256',
  'sha1', 'sha3-224', 'sha3-256', 'sha3-384', 'sha3-512', 'meta', 'pattern',
] as const;

/** fio's defaults for what we model. */
export const FIO_DEFAULTS = {
  rw: 'read' as FioRw,
  rwmixread: 50,
  bs: 4096,
  iodepth: 1,
  numjobs: 1,
  ioengine: 'psync' as FioIoengine,
} as const;

const FIO_RW_HELP: readonly [string, string][] = [
  ['read', 'Sequential read'], ['write', 'Sequential write'], ['trim', 'Sequential trim'], ['randread', 'Random read'],
  ['randwrite', 'Random write'], ['randtrim', 'Random trim'], ['rw', 'Sequential read and write mix'],
  ['readwrite', 'Sequential read and write mix'], ['randrw', 'Random read and write mix'],
  ['trimwrite', 'Trim and write mix, trims preceding writes'], ['randtrimwrite', 'Randomly trim and write mix, trims preceding writes'],
];

/** The guest disk a job targets. */
export interface FioTarget {
  /** As written in filename=. */
  readonly raw: string;
  /** Domain name when written as DOMAIN/xvdb; null = the domain the job is attached to. */
  readonly domain: string | null;
  readonly vdev: string;
  readonly devid: number;
}

export type FioSize = { readonly bytes: number } | { readonly percent: number };

export interface FioJob {
  readonly name: string;
  /** The [section] the job came from. */
  readonly section: string;
  /** Where the section starts (line 0 for inline jobs). */
  readonly source: { readonly file: string; readonly line: number };
  readonly rw: FioRw;
  /** Percentage of reads in rw/randrw mixes (100 for read-only patterns, 0 for write-only). */
  readonly rwmixread: number;
  /** Block size per direction, bytes. */
  readonly bs: { readonly read: number; readonly write: number };
  /** The depth that will be used (1 for synchronous engines). */
  readonly iodepth: number;
  /** The depth the job asked for. */
  readonly iodepth_requested: number;
  readonly numjobs: number;
  /** null = the whole device. */
  readonly size: FioSize | null;
  readonly runtime_us: number | null;
  readonly time_based: boolean;
  readonly ramp_time_us: number;
  /** IOPS caps per direction; null = uncapped. */
  readonly rate_iops: { readonly read: number; readonly write: number } | null;
  readonly stonewall: boolean;
  readonly group_reporting: boolean;
  /** Reporting group: starts at 0 and increases at each stonewall, as fio's groupid. */
  readonly groupid: number;
  readonly filename: FioTarget | null;
  readonly direct: boolean;
  readonly ioengine: FioIoengine;
  /** fio's verify= as given; xensim always verifies with its own block header. */
  readonly verify: string | null;
  readonly percentile_list: readonly number[] | null;
  readonly lat_percentiles: boolean;
  /** null = after the previous job's region (see domU/workloads/fio-engine.ts). */
  readonly offset: FioSize | null;
  readonly offset_increment: number | null;
  /** Flush after every N writes; 0 = never. */
  readonly fsync: number;
  /** null = fio's default (verify a write job's region at the end). */
  readonly do_verify: boolean | null;
  readonly verify_fatal: boolean;
  readonly continue_on_error: boolean;
  readonly randseed: number | null;
  readonly bwavgtime_ms: number;
  readonly iopsavgtime_ms: number;
  /** The options set for this job, global ones included, as strings (fio's "job options"). */
  readonly options: Readonly<Record<string, string>>;
}

export interface FioParsed {
  readonly jobs: readonly FioJob[];
  readonly warnings: readonly string[];
}

export interface FioError {
  readonly kind: 'fio-job';
  readonly file: string;
  /** 1-based line, 0 when not from a file. */
  readonly line: number;
  readonly message: string;
}

// ---- value syntax -------------------------------------------------------------

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1000,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1000 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1000 ** 3,
  t: 1024 ** 4, tb: 1024 ** 4, tib: 1000 ** 4,
  p: 1024 ** 5, pb: 1024 ** 5, pib: 1000 ** 5,
};

/** [parseFioSize text] is a byte count under fio's default kb_base=1024, or why not. */
export function parseFioSize(text: string): Result<number, string> {
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) return ok(parseInt(text.slice(2), 16));
  if (/^0[xX]/.test(text)) return err(`bad hex number \`${text}' (hex values take no unit suffix)`);
  const m = /^([0-9]+)([a-zA-Z]*)$/.exec(text);
  if (!m) {
    if (/^[0-9]*\.[0-9]/.test(text)) return err(`fractional value \`${text}' (fio would truncate it; give a whole number with a smaller unit)`);
    return err(`bad size \`${text}' (expected a number with an optional k, m, g, t or p suffix)`);
  }
  const mult = SIZE_UNITS[(m[2] ?? '').toLowerCase()];
  if (mult === undefined) return err(`bad size suffix \`${m[2] ?? ''}' in \`${text}' (expected k, kb, kib, m, mb, mib, g, ..., p)`);
  const n = Number(m[1]) * mult;
  if (!Number.isSafeInteger(n)) return err(`size \`${text}' is too large`);
  return ok(n);
}

const TIME_UNITS_US: Record<string, number> = {
  d: 86_400e6, h: 3_600e6, m: 60e6, s: 1e6, ms: 1e3, msec: 1e3, us: 1, usec: 1,
};

/** [parseFioTime text] is a duration in microseconds; a bare number is seconds (fio's default unit). */
export function parseFioTime(text: string): Result<number, string> {
  const m = /^([0-9]+)([a-zA-Z]*)$/.exec(text);
  if (!m) {
    if (/^[0-9]*\.[0-9]/.test(text)) return err(`fractional time \`${text}' (give a whole number with a smaller unit, e.g. 1500ms)`);
    return err(`bad time \`${text}' (expected a number with an optional d, h, m, s, ms or us suffix)`);
  }
  const unit = (m[2] ?? '').toLowerCase();
  const mult = unit === '' ? 1e6 : TIME_UNITS_US[unit];
  if (mult === undefined) return err(`bad time unit \`${m[2] ?? ''}' in \`${text}' (expected d, h, m, s, ms or us)`);
  const n = Number(m[1]) * mult;
  if (!Number.isSafeInteger(n)) return err(`time \`${text}' is too large`);
  return ok(n);
}

function parseInteger(text: string): number | null {
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) return parseInt(text.slice(2), 16);
  if (/^-?[0-9]+$/.test(text)) {
    const n = Number(text);
    return Number.isSafeInteger(n) ? n : null;
  }
  return null;
}

// ---- options ------------------------------------------------------------------

/** A job under construction: typed fields plus the options as written. */
interface Draft {
  name: string | null;
  rw: FioRw;
  rwmixread: number;
  bsRead: number;
  bsWrite: number;
  iodepth: number;
  numjobs: number;
  size: FioSize | null;
  runtimeUs: number | null;
  timeBased: boolean;
  rampTimeUs: number;
  rateIops: { read: number; write: number } | null;
  stonewall: boolean;
  groupReporting: boolean;
  filename: FioTarget | null;
  direct: boolean;
  ioengine: FioIoengine;
  verify: string | null;
  percentileList: number[] | null;
  latPercentiles: boolean;
  offset: FioSize | null;
  offsetIncrement: number | null;
  fsync: number;
  doVerify: boolean | null;
  verifyFatal: boolean;
  continueOnError: boolean;
  randseed: number | null;
  bwavgtimeMs: number;
  iopsavgtimeMs: number;
  options: Record<string, string>;
}

function freshDraft(): Draft {
  return {
    name: null, rw: FIO_DEFAULTS.rw, rwmixread: FIO_DEFAULTS.rwmixread, bsRead: FIO_DEFAULTS.bs, bsWrite: FIO_DEFAULTS.bs,
    iodepth: FIO_DEFAULTS.iodepth, numjobs: FIO_DEFAULTS.numjobs, size: null, runtimeUs: null, timeBased: false, rampTimeUs: 0,
    rateIops: null, stonewall: false, groupReporting: false, filename: null, direct: false, ioengine: FIO_DEFAULTS.ioengine,
    verify: null, percentileList: null, latPercentiles: false, offset: null, offsetIncrement: null, fsync: 0, doVerify: null,
    verifyFatal: false, continueOnError: false, randseed: null, bwavgtimeMs: 500, iopsavgtimeMs: 500, options: {},
  };
}
function cloneDraft(d: Draft): Draft {
  return { ...d, rateIops: d.rateIops && { ...d.rateIops }, percentileList: d.percentileList && [...d.percentileList], options: { ...d.options } };
}

interface OptionDef {
  readonly name: string;
  readonly aliases?: readonly string[];
  /** Flags may be given bare (= 1). */
  readonly flag?: boolean;
  /** Applies the value; returns an error message (fio's wording where fio has one). */
  readonly apply: (d: Draft, value: string) => string | null;
}

/** An integer option within [min, max], fio's "min/max value out of range" wording. */
function intIn(name: string, min: number, max: number, set: (d: Draft, n: number) => void): OptionDef['apply'] {
  return (d, v) => {
    const n = parseInteger(v);
    if (n === null) return `fio: failed parsing ${name}=${v} (not an integer)`;
    if (n < min) return `${name}: min value out of range: ${n} (${min} min)`;
    if (n > max) return `${name}: max value out of range: ${n} (${max} max)`;
    set(d, n);
    return null;
  };
}
function bool(name: string, set: (d: Draft, b: boolean) => void): OptionDef['apply'] {
  return (d, v) => {
    if (v !== '0' && v !== '1') return `${name}: ${v === '' ? 'Option requires an argument' : `max value out of range: ${v} (1 max)`}`;
    set(d, v === '1');
    return null;
  };
}
function flagOpt(name: string, set: (d: Draft, b: boolean) => void): OptionDef['apply'] {
  return (d, v) => {
    const n = parseInteger(v);
    if (n === null || n < 0) return `fio: failed parsing ${name}=${v}`;
    set(d, n !== 0);
    return null;
  };
}
function time(name: string, set: (d: Draft, us: number) => void): OptionDef['apply'] {
  return (d, v) => {
    const t = parseFioTime(v);
    if (!t.ok) return `fio: failed parsing ${name}=${v}: ${t.error}`;
    set(d, t.value);
    return null;
  };
}

function parseFilename(v: string): Result<FioTarget, string> {
  const usage = "xensim jobs name one guest disk: filename=xvdb, /dev/xvdb or DOMAIN/xvdb";
  if (v.includes(':')) return err(`filename=${v}: several files (fio's ':' separator) are not supported; ${usage}`);
  let domain: string | null = null;
  let rest = v;
  if (rest.startsWith('/dev/')) rest = rest.slice(5);
  else if (rest.includes('/')) {
    const slash = rest.indexOf('/');
    domain = rest.slice(0, slash);
    rest = rest.slice(slash + 1);
    if (rest.startsWith('dev/')) rest = rest.slice(4);
    if (domain === '') return err(`filename=${v}: ${usage}`);
  }
  const dev = vdevToDevid(rest);
  if (!dev.ok) return err(`filename=${v}: ${dev.error.message}; ${usage}`);
  return ok({ raw: v, domain, vdev: rest, devid: dev.value.devid });
}

function bsApply(d: Draft, v: string): string | null {
  const parts = v.split(',');
  if (parts.length > 3) return `fio: failed parsing bs=${v} (at most read,write,trim)`;
  const vals: (number | null)[] = [];
  for (const p of parts) {
    if (p === '') {
      vals.push(null);
      continue;
    }
    const s = parseFioSize(p);
    if (!s.ok) return `fio: failed parsing bs=${v}: ${s.error}`;
    if (s.value < 1) return `bs: min value out of range: ${s.value} (1 min)`;
    if (s.value % 512 !== 0) return `bs=${v}: xensim needs block sizes that are multiples of 512 bytes (the blkif sector size)`;
    vals.push(s.value);
  }
  // fio: one value sets all directions; "R,W" sets reads and writes (and trims to W).
  const r = vals[0] ?? null;
  const w = parts.length === 1 ? r : vals[1] ?? null;
  if (r !== null) d.bsRead = r;
  if (w !== null) d.bsWrite = w;
  return null;
}

const OPTIONS: readonly OptionDef[] = [
  { name: 'name', apply: (d, v) => ((d.name = v), null) },
  {
    name: 'rw',
    aliases: ['readwrite'],
    apply: (d, v) => {
      if (v.includes(':')) return `rw=${v}: offset modifiers (rw=<pattern>:<n>) are not supported by xensim`;
      if (v === 'readwrite') v = 'rw';
      if ((FIO_TRIM_RW as readonly string[]).includes(v)) {
        return `rw=${v}: trim workloads are not supported by xensim (no discard path); use one of ${FIO_RW.join(', ')}`;
      }
      if (!(FIO_RW as readonly string[]).includes(v)) {
        const lines = FIO_RW_HELP.map(([k, h], i) => `${i === 0 ? '        valid values:' : '                    :'} ${k.padEnd(10)} ${h}`);
        return [...lines, '', `fio: failed parsing rw=${v}`].join('\n');
      }
      d.rw = v as FioRw;
      return null;
    },
  },
  { name: 'rwmixread', apply: intIn('rwmixread', 0, 100, (d, n) => (d.rwmixread = n)) },
  { name: 'rwmixwrite', apply: intIn('rwmixwrite', 0, 100, (d, n) => (d.rwmixread = 100 - n)) },
  { name: 'bs', aliases: ['blocksize'], apply: bsApply },
  { name: 'iodepth', apply: intIn('iodepth', 1, 65536, (d, n) => (d.iodepth = n)) },
  { name: 'numjobs', apply: intIn('numjobs', 1, 4096, (d, n) => (d.numjobs = n)) },
  {
    name: 'size',
    apply: (d, v) => {
      const pm = /^([0-9]+)%$/.exec(v);
      if (pm) {
        const p = Number(pm[1]);
        if (p < 1 || p > 100) return `size=${v}: a percentage must be 1..100`;
        d.size = { percent: p };
        return null;
      }
      const s = parseFioSize(v);
      if (!s.ok) return `fio: failed parsing size=${v}: ${s.error}`;
      if (s.value === 0) return `size=${v}: a job needs a size above 0 (leave size out for the whole device)`;
      if (s.value % 512 !== 0) return `size=${v}: xensim needs sizes that are multiples of 512 bytes (the blkif sector size)`;
      d.size = { bytes: s.value };
      return null;
    },
  },
  { name: 'runtime', aliases: ['timeout'], apply: time('runtime', (d, us) => (d.runtimeUs = us)) },
  { name: 'time_based', flag: true, apply: flagOpt('time_based', (d, b) => (d.timeBased = b)) },
  { name: 'ramp_time', apply: time('ramp_time', (d, us) => (d.rampTimeUs = us)) },
  {
    name: 'rate_iops',
    apply: (d, v) => {
      const parts = v.split(',');
      if (parts.length > 3) return `fio: failed parsing rate_iops=${v}`;
      const ns = parts.map((p) => (p === '' ? null : parseInteger(p)));
      if (ns.some((n, i) => (n === null && parts[i] !== '') || (n !== null && n < 0))) return `fio: failed parsing rate_iops=${v}`;
      const r = ns[0] ?? 0;
      const w = parts.length === 1 ? r : ns[1] ?? 0;
      d.rateIops = r === 0 && w === 0 ? null : { read: r, write: w };
      return null;
    },
  },
  { name: 'stonewall', aliases: ['wait_for_previous'], flag: true, apply: flagOpt('stonewall', (d, b) => (d.stonewall = b)) },
  { name: 'group_reporting', flag: true, apply: flagOpt('group_reporting', (d, b) => (d.groupReporting = b)) },
  {
    name: 'filename',
    apply: (d, v) => {
      const t = parseFilename(v);
      if (!t.ok) return t.error;
      d.filename = t.value;
      return null;
    },
  },
  { name: 'direct', apply: bool('direct', (d, b) => (d.direct = b)) },
  {
    name: 'ioengine',
    apply: (d, v) => {
      if (!(FIO_IOENGINES as readonly string[]).includes(v)) {
        return `ioengine=${v} is not supported by xensim (supported: ${FIO_IOENGINES.join(', ')})`;
      }
      d.ioengine = v as FioIoengine;
      return null;
    },
  },
  {
    name: 'verify',
    apply: (d, v) => {
      if (!(FIO_VERIFY as readonly string[]).includes(v)) return `fio: failed parsing verify=${v} (valid: ${FIO_VERIFY.join(', ')})`;
      d.verify = v === '0' || v === 'null' ? null : v;
      return null;
    },
  },
  {
    name: 'percentile_list',
    apply: (d, v) => {
      const parts = v.split(':');
      if (parts.length > 20) return 'percentile_list: the list exceeding max length 20';
      const ps: number[] = [];
      for (const p of parts) {
        if (!/^[0-9]+(?:\.[0-9]+)?$/.test(p)) return `fio: failed parsing percentile_list=${v}`;
        const n = Number(p);
        if (n > 100) return `percentile_list: value out of range: ${n.toFixed(6)} (range max: 100.000000)`;
        ps.push(n);
      }
      d.percentileList = ps;
      return null;
    },
  },
  { name: 'lat_percentiles', apply: bool('lat_percentiles', (d, b) => (d.latPercentiles = b)) },
  {
    name: 'offset',
    apply: (d, v) => {
      const pm = /^([0-9]+)%$/.exec(v);
      if (pm) {
        const p = Number(pm[1]);
        if (p > 100) return `offset=${v}: a percentage must be 0..100`;
        d.offset = { percent: p };
        return null;
      }
      const s = parseFioSize(v);
      if (!s.ok) return `fio: failed parsing offset=${v}: ${s.error}`;
      if (s.value % 512 !== 0) return `offset=${v}: xensim needs offsets that are multiples of 512 bytes (the blkif sector size)`;
      d.offset = { bytes: s.value };
      return null;
    },
  },
  {
    name: 'offset_increment',
    apply: (d, v) => {
      const s = parseFioSize(v);
      if (!s.ok) return `fio: failed parsing offset_increment=${v}: ${s.error}`;
      if (s.value % 512 !== 0) return `offset_increment=${v}: xensim needs multiples of 512 bytes (the blkif sector size)`;
      d.offsetIncrement = s.value;
      return null;
    },
  },
  { name: 'fsync', apply: intIn('fsync', 0, 0xffff_ffff, (d, n) => (d.fsync = n)) },
  { name: 'do_verify', apply: bool('do_verify', (d, b) => (d.doVerify = b)) },
  { name: 'verify_fatal', apply: bool('verify_fatal', (d, b) => (d.verifyFatal = b)) },
  {
    name: 'continue_on_error',
    apply: (d, v) => {
      const on = ['1', 'read', 'write', 'io', 'verify', 'all'];
      if (v !== '0' && v !== 'none' && !on.includes(v)) return `fio: failed parsing continue_on_error=${v} (valid: none, read, write, io, verify, all, 0, 1)`;
      d.continueOnError = on.includes(v);
      return null;
    },
  },
  { name: 'randseed', apply: intIn('randseed', 0, Number.MAX_SAFE_INTEGER, (d, n) => (d.randseed = n)) },
  { name: 'bwavgtime', apply: intIn('bwavgtime', 1, 0xffff_ffff, (d, n) => (d.bwavgtimeMs = n)) },
  { name: 'iopsavgtime', apply: intIn('iopsavgtime', 1, 0xffff_ffff, (d, n) => (d.iopsavgtimeMs = n)) },
];

/** fio options accepted and ignored (they do not change what xensim measures). */
const IGNORED = ['description', 'thread', 'randrepeat', 'norandommap', 'invalidate', 'refill_buffers', 'clat_percentiles'];
/** Real fio options xensim does not implement (a distinct message from an unknown option). */
const UNSUPPORTED = [
  'bsrange', 'bssplit', 'blockalign', 'bs_unaligned', 'offset_align', 'loops', 'nrfiles',
  'openfiles', 'filesize', 'io_size', 'io_limit', 'directory', 'random_distribution', 'random_generator', 'percentage_random',
  'zonemode', 'zonesize', 'zonerange', 'zoneskip', 'fdatasync', 'end_fsync', 'fsync_on_close', 'sync', 'buffered',
  'rate', 'rate_min', 'rate_iops_min', 'rate_process', 'rate_cycle', 'latency_target', 'latency_window', 'latency_percentile',
  'max_latency', 'iodepth_batch', 'iodepth_batch_submit', 'iodepth_batch_complete', 'iodepth_batch_complete_min',
  'iodepth_batch_complete_max', 'iodepth_low', 'startdelay', 'cpus_allowed', 'cpumask', 'numa_cpu_nodes', 'write_bw_log',
  'write_lat_log', 'write_iops_log', 'write_hist_log', 'log_avg_msec', 'unlink', 'create_on_open', 'verify_pattern',
  'verify_interval', 'verify_offset', 'verify_only', 'verify_backlog', 'verify_async',
  'scramble_buffers', 'buffer_compress_percentage', 'buffer_pattern', 'dedupe_percentage', 'slat_percentiles',
  'new_group', 'exitall', 'exitall_on_error', 'wait_for', 'flow', 'flow_id', 'trim_percentage', 'trim_backlog',
  'readwrite_mix', 'number_ios', 'ignore_error', 'hipri', 'fixedbufs', 'registerfiles', 'sqthread_poll',
  'userspace_reap', 'overwrite', 'fallocate', 'pre_read', 'lockmem', 'nice', 'prio', 'prioclass', 'cgroup', 'uid', 'gid',
  'kb_base', 'unit_base', 'file_service_type', 'ioscheduler', 'disable_lat', 'disable_clat', 'disable_slat', 'disable_bw_measurement',
  'gtod_reduce', 'stats', 'per_job_logs', 'serialize_overlap', 'io_submit_mode', 'rwmixcycle', 'time_based_loop',
];

const BY_NAME = new Map<string, OptionDef>();
for (const o of OPTIONS) {
  BY_NAME.set(o.name, o);
  for (const a of o.aliases ?? []) BY_NAME.set(a, o);
}
const ALL_NAMES = [...OPTIONS.flatMap((o) => [o.name, ...(o.aliases ?? [])]), ...IGNORED, ...UNSUPPORTED];

/** fio's show_closest_option(): the nearest option name, if within half the input's length. */
export function fioDidYouMean(key: string): string | null {
  return closest(key, ALL_NAMES);
}

/** Applies one option; returns an error message or null. `value` null = given bare. */
function applyOption(d: Draft, key: string, value: string | null, warnings: string[], where: string): string | null {
  const input = value === null ? key : `${key}=${value}`;
  const def = BY_NAME.get(key);
  if (def === undefined) {
    if (IGNORED.includes(key)) {
      warnings.push(`${where}: option ${key} is ignored by xensim`);
      return null;
    }
    if (UNSUPPORTED.includes(key)) return `Option ${key} is not supported by xensim`;
    const guess = fioDidYouMean(key);
    return `Bad option <${input}>${guess === null ? '' : `\nDid you mean ${guess}?`}`;
  }
  let v = value;
  if (v === null) {
    if (!def.flag) return `Option ${key} requires an argument`;
    v = '1';
  }
  const e = def.apply(d, v);
  if (e !== null) return e;
  d.options[def.name] = value ?? '';
  return null;
}

function finishJob(d: Draft, section: string, file: string, line: number, groupid: number, warnings: string[]): Result<FioJob, string> {
  const name = d.name ?? section;
  if (d.timeBased && d.runtimeUs === null) return err(`job ${name}: time_based needs runtime= (fio would run until stopped)`);
  const sync = FIO_SYNC_ENGINES.includes(d.ioengine);
  if (sync && d.iodepth > 1) warnings.push(`${file}${line ? `:${line}` : ''}: job ${name}: iodepth=${d.iodepth} has no effect with ioengine=${d.ioengine} (a synchronous engine runs at depth 1)`);
  const mixed = d.rw === 'rw' || d.rw === 'randrw';
  const reads = d.rw === 'read' || d.rw === 'randread';
  return ok({
    name,
    section,
    source: { file, line },
    rw: d.rw,
    rwmixread: mixed ? d.rwmixread : reads ? 100 : 0,
    bs: { read: d.bsRead, write: d.bsWrite },
    iodepth: sync ? 1 : d.iodepth,
    iodepth_requested: d.iodepth,
    numjobs: d.numjobs,
    size: d.size,
    runtime_us: d.runtimeUs,
    time_based: d.timeBased,
    ramp_time_us: d.rampTimeUs,
    rate_iops: d.rateIops,
    stonewall: d.stonewall,
    group_reporting: d.groupReporting,
    groupid,
    filename: d.filename,
    direct: d.direct,
    ioengine: d.ioengine,
    verify: d.verify,
    percentile_list: d.percentileList,
    lat_percentiles: d.latPercentiles,
    offset: d.offset,
    offset_increment: d.offsetIncrement,
    fsync: d.fsync,
    do_verify: d.doVerify,
    verify_fatal: d.verifyFatal,
    continue_on_error: d.continueOnError,
    randseed: d.randseed,
    bwavgtime_ms: d.bwavgtimeMs,
    iopsavgtime_ms: d.iopsavgtimeMs,
    options: d.options,
  });
}

/** A parsed line of a job file, or of an inline object turned into lines. */
type Line =
  | { readonly kind: 'section'; readonly name: string; readonly line: number }
  | { readonly kind: 'option'; readonly key: string; readonly value: string | null; readonly raw: string; readonly line: number };

function runLines(lines: readonly Line[], file: string, overrides: readonly Line[] = []): Result<FioParsed, FioError> {
  const fail = (line: number, message: string): Result<FioParsed, FioError> =>
    err({ kind: 'fio-job', file, line, message: `${file}${line > 0 ? `:${line}` : ''}: ${message}` });
  const warnings: string[] = [];
  const jobs: FioJob[] = [];
  const global = freshDraft();
  let current: { draft: Draft; section: string; line: number } | null = null;
  let inGlobal = false;
  let groupid = 0;

  /** Finishes the open job; returns an error (at the job's section line) or null. */
  const close = (): Result<FioParsed, FioError> | null => {
    if (current === null) return null;
    const { draft, section, line } = current;
    current = null;
    for (const o of overrides) {
      if (o.kind !== 'option') continue;
      const e = applyOption(draft, o.key, o.value, warnings, `${file} (override)`);
      if (e !== null) return fail(0, `override ${o.raw}: ${e}`);
    }
    if (draft.stonewall && jobs.length > 0) groupid++;
    const j = finishJob(draft, section, file, line, groupid, warnings);
    if (!j.ok) return fail(line, j.error);
    jobs.push(j.value);
    return null;
  };

  for (const l of lines) {
    if (l.kind === 'section') {
      const e = close();
      if (e !== null) return e;
      if (l.name === 'global') inGlobal = true;
      else {
        inGlobal = false;
        current = { draft: cloneDraft(global), section: l.name, line: l.line };
      }
      continue;
    }
    const target = inGlobal ? global : current?.draft;
    if (target === undefined) return fail(l.line, `fio: option <${l.raw}> outside of [] job section`);
    if (inGlobal && l.key === 'name') return fail(l.line, 'name= belongs in a job section, not [global]');
    const e = applyOption(target, l.key, l.value, warnings, `${file}${l.line ? `:${l.line}` : ''}`);
    if (e !== null) return fail(l.line, e);
  }
  const e = close();
  if (e !== null) return e;
  if (jobs.length === 0) return fail(0, 'no jobs defined (a job file needs at least one [job] section)');
  return ok({ jobs, warnings });
}

export interface FioParseOptions {
  /** Name in messages (a file path). */
  readonly source?: string;
  /** Options applied over every job after its own (fio command-line style), e.g. from a scenario's fio_options. */
  readonly overrides?: FioInlineOptions;
}

/** [parseFioJobFile text opts] reads an fio job file into typed jobs. */
export function parseFioJobFile(text: string, opts: FioParseOptions = {}): Result<FioParsed, FioError> {
  const file = opts.source ?? '<job file>';
  const lines: Line[] = [];
  const src = text.split('\n');
  for (const [i, rawLine] of src.entries()) {
    const lineNo = i + 1;
    let s = rawLine.replace(/\r$/, '').replace(/^[ \t]+/, '');
    if (s === '' || s.startsWith(';') || s.startsWith('#')) continue;
    const cut = s.search(/[;#]/);
    if (cut >= 0) s = s.slice(0, cut);
    s = s.replace(/[ \t]+$/, '');
    if (s === '') continue;
    if (s.startsWith('[')) {
      const m = /^\[([^\]]*)\]$/.exec(s);
      if (!m) return err({ kind: 'fio-job', file, line: lineNo, message: `${file}:${lineNo}: bad section header \`${s}' (expected [name])` });
      lines.push({ kind: 'section', name: m[1] ?? '', line: lineNo });
      continue;
    }
    if (/^include[ \t]/.test(s)) {
      return err({ kind: 'fio-job', file, line: lineNo, message: `${file}:${lineNo}: include directives are not supported by xensim; inline the included options` });
    }
    const eq = s.indexOf('=');
    const key = (eq < 0 ? s : s.slice(0, eq)).trim();
    const value = eq < 0 ? null : s.slice(eq + 1).trim();
    lines.push({ kind: 'option', key, value, raw: s, line: lineNo });
  }
  const over: Line[] = [];
  const e = inlineLines(opts.overrides ?? {}, over);
  if (e !== null) return err({ kind: 'fio-job', file, line: 0, message: `${file}: override ${e}` });
  return runLines(lines, file, over);
}

/** [readFioJobFile path] reads and parses a job file. */
export function readFioJobFile(path: string): Result<FioParsed, FioError> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return err({ kind: 'fio-job', file: path, line: 0, message: `fio: unable to open '${path}' job file: ${(e as NodeJS.ErrnoException).code ?? String(e)}` });
  }
  return parseFioJobFile(text, { source: path });
}

/** An inline option value: strings, numbers, booleans (1/0), or lists (percentile_list joins with ':', others with ','). */
export type FioInlineValue = string | number | boolean | readonly (string | number)[];
export type FioInlineOptions = Readonly<Record<string, FioInlineValue>>;
/** Inline jobs: one job's options (name optional), or { global, jobs: [...] }. */
export type FioInline = FioInlineOptions | { readonly global?: FioInlineOptions; readonly jobs: readonly FioInlineOptions[] };

function isMulti(x: FioInline): x is { readonly global?: FioInlineOptions; readonly jobs: readonly FioInlineOptions[] } {
  return Array.isArray((x as { jobs?: unknown }).jobs);
}

function inlineLines(opts: FioInlineOptions, out: Line[]): string | null {
  for (const [key, v] of Object.entries(opts)) {
    let value: string;
    if (typeof v === 'boolean') value = v ? '1' : '0';
    else if (typeof v === 'number') value = String(v);
    else if (typeof v === 'string') value = v;
    else if (Array.isArray(v) && v.every((x) => typeof x === 'string' || typeof x === 'number')) value = v.map(String).join(key === 'percentile_list' ? ':' : ',');
    else return `option ${key}: expected a string, number, boolean or list of those`;
    out.push({ kind: 'option', key, value, raw: `${key}=${value}`, line: 0 });
  }
  return null;
}

/**
 * [fioJobsFromOptions inline opts] reads inline options exactly as the same
 * options in a job file: a flat object is one job (named by its `name`, else
 * opts.defaultName, else "job"); { global, jobs } is several.
 */
export function fioJobsFromOptions(inline: FioInline, opts: FioParseOptions & { readonly defaultName?: string } = {}): Result<FioParsed, FioError> {
  const file = opts.source ?? '<inline fio options>';
  const lines: Line[] = [];
  const bad = (m: string): Result<FioParsed, FioError> => err({ kind: 'fio-job', file, line: 0, message: `${file}: ${m}` });
  if (isMulti(inline)) {
    if (inline.global !== undefined) {
      lines.push({ kind: 'section', name: 'global', line: 0 });
      const e = inlineLines(inline.global, lines);
      if (e !== null) return bad(e);
    }
    for (const [i, j] of inline.jobs.entries()) {
      const name = typeof j['name'] === 'string' ? j['name'] : `${opts.defaultName ?? 'job'}${i}`;
      lines.push({ kind: 'section', name, line: 0 });
      const e = inlineLines(j, lines);
      if (e !== null) return bad(e);
    }
  } else {
    const name = typeof inline['name'] === 'string' ? inline['name'] : opts.defaultName ?? 'job';
    lines.push({ kind: 'section', name, line: 0 });
    const e = inlineLines(inline, lines);
    if (e !== null) return bad(e);
  }
  const over: Line[] = [];
  const e = inlineLines(opts.overrides ?? {}, over);
  if (e !== null) return bad(`override ${e}`);
  return runLines(lines, file, over);
}

/** [fioJobFileText inline] renders inline options as an equivalent job file (for `fio --parse-only` and for users). */
export function fioJobFileText(jobs: readonly FioJob[]): string {
  return jobs
    .map((j) => [`[${j.section}]`, ...Object.entries(j.options).map(([k, v]) => (v === '' ? k : `${k}=${v}`))].join('\n'))
    .join('\n\n')
    .concat('\n');
}
