/**
 * `xensim run SCENARIO.yaml`: the machine, the domains, and the workloads to
 * run on them, validated into a typed Scenario. Every complaint names the
 * place in the YAML (file:line:column and a path such as `machine.dom0.dma`)
 * and says what was expected.
 *
 *   seed: 7                        # optional; makes generated MACs etc. reproducible (default 24301)
 *   machine:                       # optional; every key has a default
 *     memory: 256M                 # machine RAM: bytes or K/M/G (binary); default 256M, max 16G
 *     page_size: 4096              # 4096 | 16384
 *     dom0:
 *       memory: 64M                # dom0's RAM, default 64M
 *       memory_model: p2m          # pm | p2m | vp (see xlcfg.ts), default p2m (x86 PV dom0)
 *       dma: swiotlb               # direct | p2m | xlate | iommu | swiotlb | legacy (the bug); default from memory_model:
 *                                  #   pm → direct, p2m → swiotlb, vp → xlate
 *       iommu: off                 # off | identity | strict | passthrough | lazy; default off,
 *                                  #   strict when dma is iommu (which needs an iommu)
 *   domains:                       # one entry per guest
 *     - config: domu.cfg           # an xl.cfg file, relative to this YAML
 *       set: { memory: 128 }       # optional xl key=value overrides, as `xl create FILE key=value`
 *     - xl: |                      # or the xl.cfg text inline
 *         name = "domu2"
 *         disk = [ 'ram:32M,,xvda' ]
 *   block:                         # fio workloads on guest disks
 *     - domain: domu1
 *       vdev: xvda
 *       fio: seqread.fio           # a job file (relative), or inline options: { rw: randread, bs: 4k }
 *       fio_options: { iodepth: 8 } # optional: applied over every job of the file (like fio's command line)
 *   network:                       # iperf3-like streams between guests' first vifs, through dom0's bridge
 *     - from: domu1
 *       to: domu2
 *       protocol: tcp              # tcp | udp
 *       time: 10s                  # either time (default 10s) or bytes (e.g. 1G), not both
 *       size: 128K                 # bytes per write (iperf3 -l); default 128K tcp, 1460 udp
 *       parallel: 1                # streams (iperf3 -P), 1..128
 *       bitrate: 100M              # bits/s per stream (iperf3 -b, K/M/G are powers of 1000; 0 = unlimited);
 *                                  # default as iperf3: 1M for udp, unlimited for tcp
 *   sweep:                         # a matrix: every combination is one run
 *     machine.dom0.dma: [swiotlb, iommu]
 *     block.0.fio.iodepth: [1, 8, 32]
 *
 * Sweep keys are dotted paths into this document (numbers index lists);
 * missing maps along the way are created. Each value is checked when the
 * scenario is read; expandSweep() then builds and checks every combination.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import { MAX_MEM_BYTES, PAGE_SIZES, type PageSize } from '../../shared/memory/machine-memory.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { fioJobsFromOptions, parseFioJobFile, parseFioTime, type FioInline, type FioInlineOptions, type FioJob } from './fio-job.ts';
import { seededRng } from './vifspec.ts';
import { vdevToDevid } from './vdev.ts';
import { closest, MEMORY_MODELS, parseXlCfg, type CfgDiagnostic, type DomainConfig, type MemoryModel } from './xlcfg.ts';

/**
 * dom0's DMA API implementations (dom0/dma/dma-api.ts DMA_KINDS): `legacy` is
 * the deliberate bug (a driver handing devices pseudo-physical addresses).
 */
export const DMA_MODES = ['direct', 'p2m', 'xlate', 'iommu', 'swiotlb', 'legacy'] as const;
export type DmaMode = (typeof DMA_MODES)[number];
export const IOMMU_MODES = ['off', 'identity', 'strict', 'passthrough', 'lazy'] as const;
export type IommuMode = (typeof IOMMU_MODES)[number];
export const NET_PROTOCOLS = ['tcp', 'udp'] as const;
export type NetProtocol = (typeof NET_PROTOCOLS)[number];

export const SCENARIO_DEFAULTS = {
  seed: 24301,
  memory: 256 * 1024 * 1024,
  page_size: 4096 as PageSize,
  dom0_memory: 64 * 1024 * 1024,
  dom0_memory_model: 'p2m' as MemoryModel,
  net_time_us: 10_000_000,
  net_size_tcp: 128 * 1024,
  net_size_udp: 1460,
  net_parallel: 1,
  /** Largest number of runs a sweep may expand to. */
  max_sweep_points: 10_000,
} as const;

/** [defaultDma model] is the dom0 DMA path that fits a memory model. */
export function defaultDma(model: MemoryModel): DmaMode {
  return model === 'pm' ? 'direct' : model === 'p2m' ? 'swiotlb' : 'xlate';
}

export interface Dom0Config {
  /** Bytes. */
  readonly memory: number;
  readonly memory_model: MemoryModel;
  readonly dma: DmaMode;
  readonly iommu: IommuMode;
}
export interface MachineConfig {
  /** Bytes of machine memory (a multiple of page_size). */
  readonly memory: number;
  readonly page_size: PageSize;
  readonly dom0: Dom0Config;
}
export interface ScenarioDomain {
  readonly config: DomainConfig;
  /** Where the configuration came from (file path, or `FILE:domains[1].xl`). */
  readonly source: string;
}
export interface ScenarioBlock {
  readonly domain: string;
  readonly vdev: string;
  readonly devid: number;
  /** The job file path, or null for inline options. */
  readonly fio_file: string | null;
  readonly jobs: readonly FioJob[];
}
export interface ScenarioNetwork {
  readonly from: string;
  readonly to: string;
  readonly protocol: NetProtocol;
  /** Exactly one of bytes / time_us is non-null. */
  readonly bytes: number | null;
  readonly time_us: number | null;
  /** Bytes per write (iperf3 -l). */
  readonly size: number;
  readonly parallel: number;
  /** Bits/s per stream (iperf3 -b; 0 = unlimited); null = iperf3's default (1 Mbit/s UDP, unlimited TCP). */
  readonly bitrate: number | null;
}
export interface SweepAxis {
  readonly path: string;
  readonly values: readonly unknown[];
}
export interface Scenario {
  readonly file: string;
  readonly seed: number;
  readonly machine: MachineConfig;
  readonly domains: readonly ScenarioDomain[];
  readonly block: readonly ScenarioBlock[];
  readonly network: readonly ScenarioNetwork[];
  readonly sweep: readonly SweepAxis[];
}

/** One problem, placed in the YAML. */
export interface ScenarioIssue {
  readonly file: string;
  /** 1-based; 0 when unknown. */
  readonly line: number;
  readonly column: number;
  /** Path in the document, e.g. `machine.dom0.dma` or `domains[1].xl`. */
  readonly path: string;
  readonly message: string;
}
export interface ScenarioError {
  readonly kind: 'scenario';
  readonly issues: readonly ScenarioIssue[];
  /** Printable, one issue per line. */
  readonly message: string;
}
export interface ParsedScenario {
  readonly scenario: Scenario;
  readonly warnings: readonly ScenarioIssue[];
  /** The document as plain data (for expandSweep). */
  readonly raw: unknown;
}
export interface ScenarioOptions {
  /** Name in messages and base for relative paths. */
  readonly file?: string;
  /** Reads files named by the scenario (default: fs). */
  readonly readFile?: (path: string) => string;
}

export function formatIssue(i: ScenarioIssue): string {
  const where = i.line > 0 ? `${i.file}:${i.line}:${i.column}` : i.file;
  return `${where}: ${i.path === '' ? '' : `${i.path}: `}${i.message}`;
}
function scenarioError(issues: readonly ScenarioIssue[]): ScenarioError {
  return { kind: 'scenario', issues, message: issues.map(formatIssue).join('\n') };
}

/** [parseByteSize v] reads a size: a non-negative integer (bytes) or digits with K/M/G/T (binary), optional B/iB. */
export function parseByteSize(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^([0-9]+)\s*(?:([kKmMgGtT])(?:i?[bB])?|[bB])?$/.exec(v.trim());
  if (!m) return null;
  const u = (m[2] ?? '').toLowerCase();
  const mult = u === '' ? 1 : u === 'k' ? 1024 : u === 'm' ? 1024 ** 2 : u === 'g' ? 1024 ** 3 : 1024 ** 4;
  const n = Number(m[1]) * mult;
  return Number.isSafeInteger(n) ? n : null;
}

type Seg = string | number;

function pathText(path: readonly Seg[]): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? p : `.${p}`;
  return s;
}

/** Finds the YAML node at a path (or its key node), falling back to the nearest ancestor. */
function nodeAt(doc: Document, path: readonly Seg[], wantKey: boolean): Node | null {
  let node: unknown = doc.contents;
  let last: Node | null = (doc.contents as Node | null) ?? null;
  for (const [i, seg] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (pair === undefined) return last;
      if (wantKey && i === path.length - 1 && isScalar(pair.key)) return pair.key;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg];
    } else {
      return last;
    }
    if (node && typeof node === 'object' && 'range' in node) last = node as Node;
    else return last;
  }
  return last;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Validation context: collects issues, places them in the YAML. */
class Checker {
  readonly issues: ScenarioIssue[] = [];
  readonly warnings: ScenarioIssue[] = [];
  constructor(
    readonly file: string,
    private readonly place: (path: readonly Seg[], wantKey: boolean) => { line: number; column: number },
  ) {}

  fail(path: readonly Seg[], message: string, wantKey = false): null {
    this.issues.push({ file: this.file, ...this.place(path, wantKey), path: pathText(path), message });
    return null;
  }
  warn(path: readonly Seg[], message: string): void {
    this.warnings.push({ file: this.file, ...this.place(path, false), path: pathText(path), message });
  }

  /** A mapping with only `allowed` keys. */
  obj(v: unknown, path: readonly Seg[], allowed: readonly string[], what: string): Record<string, unknown> | null {
    if (!isRecord(v)) return this.fail(path, `expected ${what} (a mapping with keys ${allowed.join(', ')}), got ${describe(v)}`);
    let good = true;
    for (const k of Object.keys(v)) {
      if (!allowed.includes(k)) {
        const guess = closest(k, allowed);
        this.fail([...path, k], `unknown key \`${k}'${guess === null ? '' : `; did you mean \`${guess}'?`} (expected ${allowed.join(', ')})`, true);
        good = false;
      }
    }
    return good ? v : null;
  }
  list(v: unknown, path: readonly Seg[], what: string): unknown[] | null {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) return this.fail(path, `expected a list of ${what}, got ${describe(v)}`);
    return v;
  }
  oneOf<T extends string>(v: unknown, path: readonly Seg[], allowed: readonly T[], dflt: T): T {
    if (v === undefined || v === null) return dflt;
    if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
    const guess = typeof v === 'string' ? closest(v, allowed) : null;
    this.fail(path, `expected one of ${allowed.join(', ')}, got ${describe(v)}${guess === null ? '' : `; did you mean ${guess}?`}`);
    return dflt;
  }
  int(v: unknown, path: readonly Seg[], min: number, max: number, dflt: number): number {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v)) return this.fail(path, `expected an integer in ${min}..${max}, got ${describe(v)}`) ?? dflt;
    if (v < min || v > max) return this.fail(path, `expected an integer in ${min}..${max}, got ${v}`) ?? dflt;
    return v;
  }
  size(v: unknown, path: readonly Seg[], dflt: number): number {
    if (v === undefined || v === null) return dflt;
    const n = parseByteSize(v);
    if (n === null) return this.fail(path, `expected a size (bytes, or a number with K, M, G or T, e.g. 256M), got ${describe(v)}`) ?? dflt;
    return n;
  }
  name(v: unknown, path: readonly Seg[], what: string): string | null {
    if (typeof v !== 'string' || v === '') return this.fail(path, `expected ${what} (a non-empty string), got ${describe(v)}`);
    return v;
  }
}

/** [parseBitrate v] reads iperf3's -b: a number of bits/s with an optional K, M, G or T (powers of 1000, as iperf3's unit_atof_rate). */
export function parseBitrate(v: unknown): number | null {
  const text = typeof v === 'number' ? String(v) : typeof v === 'string' ? v.trim() : null;
  if (text === null) return null;
  const m = /^([0-9]+(?:\.[0-9]+)?)([kKmMgGtT]?)$/.exec(text);
  if (m === null) return null;
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12 }[(m[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const bps = Math.round(Number(m[1]) * mult);
  return Number.isSafeInteger(bps) ? bps : null;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `"${v}"`;
  return `${typeof v} ${String(v)}`;
}

const TOP_KEYS = ['seed', 'name', 'description', 'machine', 'domains', 'block', 'network', 'sweep'];
/** dom0's names where a scenario names a domain. */
export const DOM0_NAMES: readonly string[] = ['dom0', 'Domain-0', '0'];

/** Reads a validated Scenario out of plain data (no sweep expansion). */
function buildScenario(raw: unknown, ck: Checker, opts: Required<ScenarioOptions>, baseDir: string): Scenario | null {
  const top = ck.obj(raw, [], TOP_KEYS, 'a scenario');
  if (top === null) return null;
  const seed = ck.int(top['seed'], ['seed'], 0, 0xffff_ffff, SCENARIO_DEFAULTS.seed);
  if (top['name'] !== undefined && typeof top['name'] !== 'string') ck.fail(['name'], `expected a string, got ${describe(top['name'])}`);
  if (top['description'] !== undefined && typeof top['description'] !== 'string') ck.fail(['description'], `expected a string, got ${describe(top['description'])}`);

  // machine
  const m = top['machine'] === undefined ? {} : ck.obj(top['machine'], ['machine'], ['memory', 'page_size', 'dom0'], 'the machine');
  const pageSize = (ck.int(m?.['page_size'], ['machine', 'page_size'], 0, 1 << 20, SCENARIO_DEFAULTS.page_size) as PageSize);
  if (!(PAGE_SIZES as readonly number[]).includes(pageSize)) ck.fail(['machine', 'page_size'], `expected ${PAGE_SIZES.join(' or ')}, got ${pageSize}`);
  const memory = ck.size(m?.['memory'], ['machine', 'memory'], SCENARIO_DEFAULTS.memory);
  if (memory % pageSize !== 0 || memory === 0) ck.fail(['machine', 'memory'], `expected a non-zero multiple of the page size (${pageSize}), got ${memory} bytes`);
  if (memory > MAX_MEM_BYTES) ck.fail(['machine', 'memory'], `at most ${MAX_MEM_BYTES / 1024 ** 3}G, got ${memory} bytes`);
  const d0raw = m?.['dom0'] === undefined ? {} : ck.obj(m['dom0'], ['machine', 'dom0'], ['memory', 'memory_model', 'dma', 'iommu'], 'dom0 settings');
  const d0path = ['machine', 'dom0'];
  const d0mem = ck.size(d0raw?.['memory'], [...d0path, 'memory'], SCENARIO_DEFAULTS.dom0_memory);
  if (d0mem % pageSize !== 0 || d0mem === 0) ck.fail([...d0path, 'memory'], `expected a non-zero multiple of the page size (${pageSize}), got ${d0mem} bytes`);
  const d0model = ck.oneOf(d0raw?.['memory_model'], [...d0path, 'memory_model'], MEMORY_MODELS, SCENARIO_DEFAULTS.dom0_memory_model);
  const dma = ck.oneOf(d0raw?.['dma'], [...d0path, 'dma'], DMA_MODES, defaultDma(d0model));
  const iommu = ck.oneOf(d0raw?.['iommu'], [...d0path, 'iommu'], IOMMU_MODES, dma === 'iommu' ? 'strict' : 'off');
  if (dma === 'iommu' && iommu === 'off') ck.fail([...d0path, 'iommu'], 'dma: iommu needs an IOMMU: set iommu to identity, strict, passthrough or lazy');
  if ((dma === 'direct' && d0model !== 'pm') || dma === 'legacy') {
    ck.warn([...d0path, 'dma'], `dma: ${dma} hands devices pseudo-physical addresses, which are not machine addresses under memory_model ${d0model}`);
  }
  if (dma === 'p2m' && d0model !== 'p2m') ck.warn([...d0path, 'dma'], `dma: p2m reads the driver's own pfn→mfn list, which a ${d0model} dom0 does not keep`);
  const machine: MachineConfig = { memory, page_size: pageSize, dom0: { memory: d0mem, memory_model: d0model, dma, iommu } };

  // domains
  const domains: ScenarioDomain[] = [];
  let domainsOk = true;
  for (const [i, entry] of (ck.list(top['domains'], ['domains'], 'domains') ?? []).entries()) {
    const path = ['domains', i];
    const e = ck.obj(entry, path, ['config', 'xl', 'set'], 'a domain ({ config: FILE } or { xl: TEXT })');
    if (e === null) {
      domainsOk = false;
      continue;
    }
    const hasCfg = e['config'] !== undefined;
    const hasXl = e['xl'] !== undefined;
    if (hasCfg === hasXl) {
      ck.fail(path, 'expected exactly one of `config: FILE.cfg` or `xl: TEXT`');
      domainsOk = false;
      continue;
    }
    let text: string;
    let source: string;
    if (hasCfg) {
      const rel = ck.name(e['config'], [...path, 'config'], 'a path to an xl.cfg file');
      if (rel === null) {
        domainsOk = false;
        continue;
      }
      source = resolve(baseDir, rel);
      try {
        text = opts.readFile(source);
      } catch (x) {
        ck.fail([...path, 'config'], `cannot read ${source}: ${(x as NodeJS.ErrnoException).code ?? String(x)}`);
        domainsOk = false;
        continue;
      }
    } else {
      const t = e['xl'];
      if (typeof t !== 'string') {
        ck.fail([...path, 'xl'], `expected xl.cfg text (a string), got ${describe(t)}`);
        domainsOk = false;
        continue;
      }
      text = t;
      source = `${opts.file}:${pathText([...path, 'xl'])}`;
    }
    if (e['set'] !== undefined) {
      const set = setLines(e['set']);
      if (typeof set !== 'string') {
        ck.fail([...path, 'set'], set.error);
        domainsOk = false;
        continue;
      }
      text = `${text}\n${set}`;
    }
    const parsed = parseXlCfg(text, { source, rng: seededRng((seed + i * 0x9e37) >>> 0) });
    if (!parsed.ok) {
      ck.fail([...path, hasCfg ? 'config' : 'xl'], `invalid domain configuration:\n  ${parsed.error.message.split('\n').join('\n  ')}`);
      domainsOk = false;
      continue;
    }
    for (const w of parsed.value.warnings) ck.warn([...path, hasCfg ? 'config' : 'xl'], diagText(w));
    domains.push({ config: parsed.value.config, source });
  }

  const byName = new Map<string, DomainConfig>();
  if (domainsOk) {
    for (const [i, d] of domains.entries()) {
      const path = ['domains', i];
      if (DOM0_NAMES.includes(d.config.name)) ck.fail(path, `a guest cannot be called ${d.config.name}: that is dom0's name`);
      else if (byName.has(d.config.name)) ck.fail(path, `duplicate domain name ${d.config.name}: names must be unique on a host`);
      byName.set(d.config.name, d.config);
    }
    for (const [i, d] of domains.entries()) {
      const devs = [...d.config.disk.map((x) => ({ kind: 'disk', be: x.backend })), ...d.config.vif.map((x) => ({ kind: 'vif', be: x.backend }))];
      for (const dev of devs) {
        if (dev.be === null || DOM0_NAMES.includes(dev.be)) continue;
        const be = byName.get(dev.be);
        if (be === undefined) ck.fail(['domains', i], `${d.config.name}: a ${dev.kind} has backend=${dev.be}, which is not a domain of this scenario`);
        else if (!be.driver_domain) ck.fail(['domains', i], `${d.config.name}: a ${dev.kind} has backend=${dev.be}, which is not a driver domain (set driver_domain = 1 in its config)`);
        else if (be.name === d.config.name) ck.fail(['domains', i], `${d.config.name}: a ${dev.kind} cannot have its own domain as backend`);
      }
    }
    const need = d0mem + domains.reduce((s, d) => s + d.config.memory * 1024 * 1024, 0);
    if (need > memory) {
      ck.fail(['machine', 'memory'], `dom0 (${d0mem / 1024 ** 2} MiB) and the domains' memory (${domains.map((d) => `${d.config.name} ${d.config.memory} MiB`).join(', ') || 'none'}) need ${need / 1024 ** 2} MiB, more than the machine's ${memory / 1024 ** 2} MiB`);
    }
  }

  // block
  const block: ScenarioBlock[] = [];
  for (const [i, entry] of (ck.list(top['block'], ['block'], 'block workloads') ?? []).entries()) {
    const path = ['block', i];
    const b = ck.obj(entry, path, ['domain', 'vdev', 'fio', 'fio_options'], 'a block workload ({ domain, vdev, fio })');
    if (b === null) continue;
    const domain = ck.name(b['domain'], [...path, 'domain'], 'a domain name');
    const vdev = ck.name(b['vdev'], [...path, 'vdev'], 'a virtual device such as xvda');
    const dv = vdev === null ? null : vdevToDevid(vdev);
    if (dv !== null && !dv.ok) ck.fail([...path, 'vdev'], dv.error.message);
    const devid = dv !== null && dv.ok ? dv.value.devid : -1;
    if (domain !== null && domainsOk) {
      const d = byName.get(domain);
      if (d === undefined) {
        const guess = closest(domain, [...byName.keys()]);
        ck.fail([...path, 'domain'], `no domain named ${domain} in this scenario${guess === null ? '' : `; did you mean ${guess}?`}`);
      } else if (devid >= 0 && !d.disk.some((x) => x.devid === devid)) {
        ck.fail([...path, 'vdev'], `${domain} has no disk ${vdev} (it has ${d.disk.map((x) => x.vdev).join(', ') || 'no disks'})`);
      }
    }
    // jobs
    let jobs: readonly FioJob[] = [];
    let fioFile: string | null = null;
    const fio = b['fio'];
    let overrides: FioInlineOptions = {};
    if (b['fio_options'] !== undefined) {
      if (!isRecord(b['fio_options'])) ck.fail([...path, 'fio_options'], `expected a mapping of fio options, got ${describe(b['fio_options'])}`);
      else overrides = b['fio_options'] as FioInlineOptions;
    }
    const fioIssue = (message: string): null =>
      ck.fail([...path, message.includes('override') && Object.keys(overrides).length > 0 ? 'fio_options' : 'fio'], message);
    if (typeof fio === 'string') {
      fioFile = resolve(baseDir, fio);
      let text: string | null = null;
      try {
        text = opts.readFile(fioFile);
      } catch (x) {
        ck.fail([...path, 'fio'], `cannot read ${fioFile}: ${(x as NodeJS.ErrnoException).code ?? String(x)}`);
      }
      if (text !== null) {
        const r = parseFioJobFile(text, { source: fioFile, overrides });
        if (!r.ok) fioIssue(r.error.message);
        else jobs = r.value.jobs;
      }
    } else if (isRecord(fio)) {
      const r = fioJobsFromOptions(fio as FioInline, { source: `${opts.file}:${pathText([...path, 'fio'])}`, defaultName: `${domain ?? 'job'}-${vdev ?? i}`, overrides });
      if (!r.ok) fioIssue(r.error.message);
      else jobs = r.value.jobs;
    } else {
      ck.fail([...path, 'fio'], `expected an fio job file path or a mapping of fio options, got ${describe(fio)}`);
    }
    for (const j of jobs) {
      const t = j.filename;
      if (t === null) continue;
      if (t.domain !== null && domain !== null && t.domain !== domain) {
        ck.fail([...path, 'fio'], `job ${j.name}: filename=${t.raw} names domain ${t.domain}, but this workload runs in ${domain}`);
      }
      if (devid >= 0 && t.devid !== devid) ck.fail([...path, 'fio'], `job ${j.name}: filename=${t.raw} is not ${vdev}, the disk this workload is attached to`);
    }
    if (domain !== null && vdev !== null && devid >= 0) block.push({ domain, vdev, devid, fio_file: fioFile, jobs });
  }

  // network
  const network: ScenarioNetwork[] = [];
  for (const [i, entry] of (ck.list(top['network'], ['network'], 'network streams') ?? []).entries()) {
    const path = ['network', i];
    const n = ck.obj(entry, path, ['from', 'to', 'protocol', 'bytes', 'time', 'size', 'parallel', 'bitrate'], 'a network stream ({ from, to, protocol, ... })');
    if (n === null) continue;
    const from = ck.name(n['from'], [...path, 'from'], 'a domain name');
    const to = ck.name(n['to'], [...path, 'to'], 'a domain name');
    for (const [k, v] of [['from', from], ['to', to]] as const) {
      if (v === null || !domainsOk || DOM0_NAMES.includes(v)) continue;
      const d = byName.get(v);
      if (d === undefined) {
        const guess = closest(v, [...byName.keys(), 'dom0']);
        ck.fail([...path, k], `no domain named ${v} in this scenario${guess === null ? '' : `; did you mean ${guess}?`}`);
      } else if (d.vif.length === 0) ck.fail([...path, k], `${v} has no network interface (add vif = [ '' ] to its config)`);
    }
    if (from !== null && to !== null && from === to) ck.fail([...path, 'to'], 'a stream needs two different endpoints');
    const protocol = ck.oneOf(n['protocol'], [...path, 'protocol'], NET_PROTOCOLS, 'tcp');
    let bytes: number | null = null;
    let timeUs: number | null = null;
    if (n['bytes'] !== undefined && n['time'] !== undefined) ck.fail([...path, 'time'], 'give either bytes or time, not both');
    if (n['bytes'] !== undefined) {
      bytes = ck.size(n['bytes'], [...path, 'bytes'], 0);
      if (bytes === 0) ck.fail([...path, 'bytes'], 'expected a size above 0');
    } else {
      const t = n['time'];
      if (t === undefined) timeUs = SCENARIO_DEFAULTS.net_time_us;
      else {
        const r = parseFioTime(typeof t === 'number' ? String(t) : typeof t === 'string' ? t : '?');
        if (!r.ok || r.value === 0) ck.fail([...path, 'time'], `expected a duration above 0 such as 10s, 500ms or 2m, got ${describe(t)}`);
        else timeUs = r.value;
      }
    }
    const size = ck.size(n['size'], [...path, 'size'], protocol === 'tcp' ? SCENARIO_DEFAULTS.net_size_tcp : SCENARIO_DEFAULTS.net_size_udp);
    if (size === 0) ck.fail([...path, 'size'], 'expected a size above 0');
    if (protocol === 'udp' && size > 65507) ck.fail([...path, 'size'], `a UDP datagram carries at most 65507 bytes, got ${size}`);
    const parallel = ck.int(n['parallel'], [...path, 'parallel'], 1, 128, SCENARIO_DEFAULTS.net_parallel);
    let bitrate: number | null = null;
    if (n['bitrate'] !== undefined) {
      const b = parseBitrate(n['bitrate']);
      if (b === null) ck.fail([...path, 'bitrate'], `expected bits per second such as 100M, 2.5G or 0 (unlimited), got ${describe(n['bitrate'])}`);
      else bitrate = b;
    }
    if (from !== null && to !== null) network.push({ from, to, protocol, bytes, time_us: timeUs, size, parallel, bitrate });
  }

  // sweep (the axes; values are checked by the caller)
  const sweep: SweepAxis[] = [];
  if (top['sweep'] !== undefined) {
    if (!isRecord(top['sweep'])) ck.fail(['sweep'], `expected a mapping of dotted paths to lists of values, got ${describe(top['sweep'])}`);
    else {
      for (const [k, v] of Object.entries(top['sweep'])) {
        if (!Array.isArray(v) || v.length === 0) ck.fail(['sweep', k], `expected a non-empty list of values, got ${describe(v)}`);
        else if (sweepSegments(k)[0] === 'sweep') ck.fail(['sweep', k], 'a sweep cannot change the sweep');
        else sweep.push({ path: k, values: v });
      }
    }
  }
  if (ck.issues.length > 0) return null;
  return { file: opts.file, seed, machine, domains, block, network, sweep };
}

function diagText(d: CfgDiagnostic): string {
  return `${d.source}${d.line > 0 ? `:${d.line}:${d.column}` : ''}: ${d.message}`;
}

/** xl `key=value` lines from a `set:` mapping (strings quoted, numbers bare, lists of those). */
function setLines(set: unknown): string | { error: string } {
  if (!isRecord(set)) return { error: `expected a mapping of xl keys to values, got ${describe(set)}` };
  const atom = (v: unknown): string | null =>
    typeof v === 'number' && Number.isInteger(v) ? String(v) : typeof v === 'boolean' ? (v ? '1' : '0') : typeof v === 'string' ? JSON.stringify(v) : null;
  const lines: string[] = [];
  for (const [k, v] of Object.entries(set)) {
    if (!/^[a-z][_0-9a-z]*$/.test(k)) return { error: `\`${k}' is not an xl key (lower case letters, digits and _)` };
    const val = Array.isArray(v) ? (v.every((x) => atom(x) !== null) ? `[ ${v.map((x) => atom(x)).join(', ')} ]` : null) : atom(v);
    if (val === null) return { error: `${k}: expected a string, an integer, a boolean or a list of those, got ${describe(v)}` };
    lines.push(`${k} = ${val}`);
  }
  return lines.join('\n');
}

// ---- sweep --------------------------------------------------------------------

/** Splits a sweep key: "block.0.fio.iodepth" or "block[0].fio.iodepth". */
function sweepSegments(key: string): Seg[] {
  return key
    .replace(/\[(\d+)\]/g, '.$1')
    .split('.')
    .filter((s) => s !== '')
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

/** Sets `value` at `path` in a deep clone of `raw`, creating maps; returns the clone or why not. */
function setIn(raw: unknown, path: readonly Seg[], value: unknown): { doc: unknown } | { error: string } {
  const root: unknown = structuredClone(raw);
  if (path.length === 0) return { error: 'empty path' };
  let node: unknown = root;
  for (const [i, seg] of path.entries()) {
    const lastSeg = i === path.length - 1;
    const here = pathText(path.slice(0, i + 1));
    if (typeof seg === 'number') {
      if (!Array.isArray(node)) return { error: `${pathText(path.slice(0, i))} is not a list` };
      if (seg >= node.length) return { error: `${here} does not exist (the list has ${node.length} entries)` };
      if (lastSeg) node[seg] = value;
      else node = node[seg];
    } else {
      if (!isRecord(node)) {
        const hint = typeof node === 'string' && path[i - 1] === 'fio' ? '; to sweep options of a job file use fio_options' : '';
        return { error: `${pathText(path.slice(0, i)) || 'the document'} is not a mapping${hint}` };
      }
      if (lastSeg) node[seg] = value;
      else {
        if (node[seg] === undefined) node[seg] = typeof path[i + 1] === 'number' ? [] : {};
        node = node[seg];
      }
    }
  }
  return { doc: root };
}

function withoutSweep(raw: unknown): unknown {
  if (!isRecord(raw)) return raw;
  const { sweep: _sweep, ...rest } = raw;
  return rest;
}

/**
 * [parseScenario text opts] validates a scenario document (and each sweep
 * value on its own) into a Scenario, or lists every problem found.
 */
export function parseScenario(text: string, opts: ScenarioOptions = {}): Result<ParsedScenario, ScenarioError> {
  const file = opts.file ?? '<scenario>';
  const full: Required<ScenarioOptions> = { file, readFile: opts.readFile ?? ((p) => readFileSync(p, 'utf8')) };
  const baseDir = opts.file === undefined ? process.cwd() : dirname(resolve(opts.file));
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return err(scenarioError(doc.errors.map((e) => {
      const p = e.linePos?.[0];
      return { file, line: p?.line ?? 0, column: p?.col ?? 0, path: '', message: `YAML syntax: ${e.message.split('\n')[0] ?? e.code}` };
    })));
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  const place = (path: readonly Seg[], wantKey: boolean): { line: number; column: number } => {
    const n = nodeAt(doc, path, wantKey);
    const off = n?.range?.[0];
    if (off === undefined) return { line: 0, column: 0 };
    const p = lineCounter.linePos(off);
    return { line: p.line, column: p.col };
  };
  const ck = new Checker(file, place);
  const scenario = buildScenario(raw ?? {}, ck, full, baseDir);
  if (scenario === null) return err(scenarioError(ck.issues));

  // Each sweep value, alone, must make a valid scenario.
  for (const axis of scenario.sweep) {
    const segs = sweepSegments(axis.path);
    for (const [i, v] of axis.values.entries()) {
      const at = (): { line: number; column: number } => place(['sweep', axis.path, i], false);
      const set = setIn(withoutSweep(raw), segs, v);
      if ('error' in set) {
        ck.issues.push({ file, ...at(), path: `sweep.${axis.path}[${i}]`, message: set.error });
        continue;
      }
      const sub = new Checker(file, () => at());
      buildScenario(set.doc, sub, full, baseDir);
      for (const iss of sub.issues) ck.issues.push({ ...iss, path: `sweep.${axis.path}[${i}] → ${iss.path}` });
    }
  }
  if (ck.issues.length > 0) return err(scenarioError(ck.issues));
  const points = scenario.sweep.reduce((n, a) => n * a.values.length, 1);
  if (points > SCENARIO_DEFAULTS.max_sweep_points) {
    return err(scenarioError([{ file, ...place(['sweep'], false), path: 'sweep', message: `the sweep has ${points} combinations; the limit is ${SCENARIO_DEFAULTS.max_sweep_points}` }]));
  }
  return ok({ scenario, warnings: ck.warnings, raw });
}

/** [readScenarioFile path] reads and validates a scenario file. */
export function readScenarioFile(path: string, opts: Omit<ScenarioOptions, 'file'> = {}): Result<ParsedScenario, ScenarioError> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (x) {
    return err(scenarioError([{ file: path, line: 0, column: 0, path: '', message: `cannot read the scenario: ${(x as NodeJS.ErrnoException).code ?? String(x)}` }]));
  }
  return parseScenario(text, { ...opts, file: path });
}

export interface SweepPoint {
  /** The values of this combination, by sweep path (empty when there is no sweep). */
  readonly point: Readonly<Record<string, unknown>>;
  readonly scenario: Scenario;
}

/**
 * [expandSweep parsed] is every combination of the sweep axes (the first axis
 * varies slowest), each a fully validated Scenario with an empty sweep. With
 * no sweep it is the scenario itself, once.
 */
export function expandSweep(parsed: ParsedScenario, opts: Omit<ScenarioOptions, 'file'> = {}): Result<SweepPoint[], ScenarioError> {
  const axes = parsed.scenario.sweep;
  if (axes.length === 0) return ok([{ point: {}, scenario: parsed.scenario }]);
  const file = parsed.scenario.file;
  const full: Required<ScenarioOptions> = { file, readFile: opts.readFile ?? ((p) => readFileSync(p, 'utf8')) };
  const baseDir = dirname(resolve(file));
  const out: SweepPoint[] = [];
  const idx = axes.map(() => 0);
  for (;;) {
    let doc: unknown = withoutSweep(parsed.raw);
    const point: Record<string, unknown> = {};
    for (const [a, axis] of axes.entries()) {
      const v = axis.values[idx[a] ?? 0];
      point[axis.path] = v;
      const set = setIn(doc, sweepSegments(axis.path), v);
      if ('error' in set) return err(scenarioError([{ file, line: 0, column: 0, path: `sweep.${axis.path}`, message: set.error }]));
      doc = set.doc;
    }
    const ck = new Checker(file, () => ({ line: 0, column: 0 }));
    const s = buildScenario(doc, ck, full, baseDir);
    if (s === null) {
      const label = Object.entries(point).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
      return err(scenarioError(ck.issues.map((i) => ({ ...i, path: `sweep point {${label}} → ${i.path}` }))));
    }
    out.push({ point, scenario: s });
    // odometer, last axis fastest
    let a = axes.length - 1;
    while (a >= 0) {
      const len = axes[a]?.values.length ?? 1;
      idx[a] = (idx[a] ?? 0) + 1;
      if ((idx[a] ?? 0) < len) break;
      idx[a] = 0;
      a--;
    }
    if (a < 0) return ok(out);
  }
}
