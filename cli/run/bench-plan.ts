/**
 * `xensim bench`'s built-in scenario: dom0 (x86 PV: p2m memory, swiotlb DMA
 * API, no IOMMU) plus N guests (default 2), each with an in-memory disk
 * (`ram:SIZE`, default 64M) on xvda — a physical disk: a DMA block controller
 * dom0 drives through its DMA API — and a vif on dom0's bridge xenbr0; in
 * each guest, at the same time:
 *
 *   [randread-4k]   rw=randread bs=4k iodepth=32, time_based for DURATION
 *   [seqwrite-64k]  stonewall, rw=write bs=64k iodepth=8, time_based for
 *                   DURATION, verify=crc32c: every block carries a checked
 *                   header, and the job reads its region back at the end
 *
 * and, between pairs of guests (domu1 -> domu2, domu3 -> domu4, ...; an odd
 * last guest runs none, as each vif carries one stream at a time), an
 * iperf3-like TCP stream of 128 KiB writes for twice DURATION, so it spans
 * both block phases; every byte is checked by the receiver. The `block` suite runs only the jobs, `network` only the
 * streams (it needs two guests or more), `all` both.
 * Sweeps: grant strategy (dom0 blkback mode), queue depth (both jobs), and
 * guest count; each given axis multiplies the cells, in that order (the
 * first varies slowest).
 */
import type { BlkbackMode } from '../../dom0/blkback/blkback.ts';
import type { FioJobSpec } from '../../domU/workloads/fio-engine.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { fioJobsFromOptions, type FioInlineOptions } from '../config/fio-job.ts';
import { SCENARIO_DEFAULTS } from '../config/scenario.ts';
import type { SweepAxis } from '../config/scenario.ts';
import { scenarioDigest, type ScenarioInfo, type SimMachine } from '../report/results.ts';
import type { CellJob } from './driver.ts';
import type { PlannedStream, PlannedVif } from './network.ts';
import { toEngineSpec } from './fio-adapter.ts';
import { estimateSeconds, workloadSeed, type CellPlan, type PlannedDomain } from './plan.ts';

export const BENCH_SUITES = ['block', 'network', 'all'] as const;
export type BenchSuite = (typeof BENCH_SUITES)[number];

export interface BenchOptions {
  readonly suite: BenchSuite;
  /** Sweep axes; undefined = not swept (the default value is used). */
  readonly grants?: readonly BlkbackMode[];
  readonly iodepth?: readonly number[];
  readonly domains?: readonly number[];
  /** Seconds of each timed job. */
  readonly duration: number;
  /** Bytes of each guest's disk (and of each job's region). */
  readonly size: number;
  readonly seed: number;
}

export const BENCH_DEFAULTS = {
  suite: 'all' as BenchSuite,
  grants: 'persistent' as BlkbackMode,
  domains: 2,
  readDepth: 32,
  writeDepth: 8,
  duration: 2,
  size: 64 * 1024 * 1024,
  /** MiB. */
  dom0Memory: 96,
  domUMemory: 32,
} as const;

export interface BenchPlan {
  readonly info: ScenarioInfo;
  readonly machine: SimMachine;
  readonly cells: readonly CellJob[];
  /** What the run should say about suites (e.g. network skipped). */
  readonly notes: readonly string[];
}

/** MiB of machine memory for n guests: dom0, the guests, and room for Xen's tables and the DMA zone. */
export function benchMemoryMiB(n: number): number {
  const need = BENCH_DEFAULTS.dom0Memory + n * BENCH_DEFAULTS.domUMemory;
  return Math.ceil((need * 1.25 + 64) / 16) * 16;
}

function sizeText(bytes: number): string {
  for (const [u, m] of [['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) if (bytes % m === 0) return `${bytes / m}${u}`;
  return String(bytes);
}

/** [benchJobs o depth] is the two jobs each guest runs, through the fio option parser (so fio's "job options" read as written). */
export function benchJobs(o: Pick<BenchOptions, 'duration' | 'size'>, depth: number | null): Result<FioJobSpec[], string> {
  const ms = `${Math.max(1, Math.round(o.duration * 1000))}ms`;
  const global: FioInlineOptions = { ioengine: 'libaio', direct: 1, size: sizeText(o.size), runtime: ms, time_based: 1 };
  const r = fioJobsFromOptions(
    {
      global,
      jobs: [
        { name: 'randread-4k', rw: 'randread', bs: '4k', iodepth: depth ?? BENCH_DEFAULTS.readDepth },
        { name: 'seqwrite-64k', stonewall: 1, rw: 'write', bs: '64k', iodepth: depth ?? BENCH_DEFAULTS.writeDepth, verify: 'crc32c' },
      ],
    },
    { source: 'xensim bench' },
  );
  if (!r.ok) return err(r.error.message);
  const specs: FioJobSpec[] = [];
  for (const j of r.value.jobs) {
    const spec = toEngineSpec(j, o.size);
    if (!spec.ok) return err(spec.error);
    specs.push(spec.value);
  }
  return ok(specs);
}

/** Guest i's vif: devid 0 on xenbr0, a MAC and an address derived from i (so runs repeat). */
function benchVif(i: number): PlannedVif {
  const mac = `00:16:3e:00:00:${i.toString(16).padStart(2, '0')}`;
  const ip = `10.0.0.${i}`;
  return { devid: 0, ip, bridge: 'xenbr0', attach: { devid: 0, mac, bridge: 'xenbr0', ip } };
}

/** The streams of a cell with n ≥ 2 guests: domu1 -> domu2, domu3 -> domu4, ... */
function benchStreams(o: Pick<BenchOptions, 'duration' | 'seed'>, n: number): PlannedStream[] {
  const out: PlannedStream[] = [];
  for (let i = 1; i + 1 <= n; i += 2) {
    const j = i + 1;
    const time = 2 * o.duration;
    out.push({
      label: `domu${i} -> domu${j} (tcp)`, from: `domu${i}`, to: `domu${j}`, fromDevid: 0, toDevid: 0, fromIp: `10.0.0.${i}`, toIp: `10.0.0.${j}`,
      protocol: 'tcp', spec: { protocol: 'tcp', time, length: 128 * 1024, parallel: 1 }, seed: workloadSeed(o.seed, 1000 + i), estimateSec: time,
    });
  }
  return out;
}

/** [planBench o] is the cells of a bench run, in sweep order, or why the options cannot work. */
export function planBench(o: BenchOptions): Result<BenchPlan, string> {
  if (!(o.duration > 0)) return err(`--duration: expected seconds above 0, got ${o.duration}`);
  if (o.size < 1024 * 1024 || o.size % 65536 !== 0) return err(`--size: expected at least 1M, a multiple of 64K (the write job's block), got ${o.size} bytes`);
  const notes: string[] = [];
  const wantNet = o.suite === 'network' || o.suite === 'all';
  const wantBlock = o.suite === 'block' || o.suite === 'all';
  const counts = o.domains ?? [BENCH_DEFAULTS.domains];
  if (o.suite === 'network' && counts.some((n) => n < 2)) return err(`the network suite streams between guests: it needs --domains 2 or more, got ${counts.join(',')}`);
  if (o.suite === 'all' && counts.some((n) => n < 2)) notes.push('cells with one guest run no network stream (a stream needs two guests)');
  if (wantNet && counts.some((n) => n > 2 && n % 2 === 1)) notes.push(`with an odd number of guests the last one runs no stream (streams pair domu1 -> domu2, domu3 -> domu4, ...)`);

  const axes: SweepAxis[] = [];
  if (o.grants !== undefined) axes.push({ path: 'grants', values: [...o.grants] });
  if (o.domains !== undefined) axes.push({ path: 'domains', values: [...o.domains] });
  if (o.iodepth !== undefined) axes.push({ path: 'iodepth', values: [...o.iodepth] });
  const total = axes.reduce((n, a) => n * a.values.length, 1);

  const cells: CellJob[] = [];
  for (let index = 0; index < total; index++) {
    const point: Record<string, unknown> = {};
    let rest = index;
    for (let a = axes.length - 1; a >= 0; a--) {
      const axis = axes[a] as SweepAxis;
      point[axis.path] = axis.values[rest % axis.values.length];
      rest = Math.floor(rest / axis.values.length);
    }
    const ordered = Object.fromEntries(axes.map((a) => [a.path, point[a.path]]));
    const grants = (ordered['grants'] as BlkbackMode | undefined) ?? BENCH_DEFAULTS.grants;
    const n = (ordered['domains'] as number | undefined) ?? BENCH_DEFAULTS.domains;
    const depth = (ordered['iodepth'] as number | undefined) ?? null;
    const jobs = benchJobs(o, depth);
    if (!jobs.ok) return err(jobs.error);

    const ramTarget = `ram:${sizeText(o.size)}`;
    const domains: PlannedDomain[] = [];
    for (let i = 1; i <= n; i++) {
      domains.push({
        name: `domu${i}`, type: 'pvh', memoryKiB: BENCH_DEFAULTS.domUMemory * 1024, model: 'vp', onCrash: 'destroy',
        disks: wantBlock
          ? [{ vdev: 'xvda', devid: 51712, target: ramTarget, access: 'w', devtype: 'disk', bytes: o.size, device: { dma: 'swiotlb', iommu: 'passthrough', lazy: false } }]
          : [],
        vifs: wantNet && n >= 2 ? [benchVif(i)] : [],
      });
    }
    const network = wantNet && n >= 2 ? benchStreams(o, n) : [];
    const plan: CellPlan = {
      machine: {
        memory: benchMemoryMiB(n) * 1024 * 1024,
        page_size: 4096,
        dom0: { memory: BENCH_DEFAULTS.dom0Memory * 1024 * 1024, memory_model: 'p2m', dma: 'swiotlb', iommu: 'off' },
      },
      seed: o.seed,
      dom0Drivers: { blkback: { mode: grants } },
      domains,
      block: wantBlock
        ? domains.map((d, i) => ({ domain: d.name, vdev: 'xvda', devid: 51712, jobs: jobs.value, seed: workloadSeed(o.seed, i), estimateSec: estimateSeconds(jobs.value) }))
        : [],
      network,
      unavailable: [],
      notes: [],
    };
    cells.push({ index, point: ordered, plan });
  }
  const first = cells[0];
  if (first === undefined) return err('the sweep has no cells');
  const parts = [
    ...(wantBlock ? [`4 KiB random reads, then 64 KiB verified sequential writes read back, ${o.duration} s each`] : []),
    ...(wantNet ? [`verified TCP streams domu1 -> domu2 (and domu3 -> domu4, ...) for ${2 * o.duration} s`] : []),
  ];
  const desc = `xensim bench: dom0 and ${o.domains === undefined ? BENCH_DEFAULTS.domains : o.domains.join('/')} guest(s), each with ` +
    `${[...(wantBlock ? [`a ram:${sizeText(o.size)} disk`] : []), ...(wantNet ? ['a vif on xenbr0'] : [])].join(' and ')}; suite ${o.suite}; ${parts.join('; ')}`;
  const info: ScenarioInfo = {
    name: 'default',
    file: null,
    description: desc,
    seed: o.seed,
    digest: scenarioDigest({ bench: { suite: o.suite, duration: o.duration, size: o.size, seed: o.seed }, axes }),
    sweep: axes,
    cell_count: total,
  };
  return ok({ info, machine: first.plan.machine, cells, notes });
}

export const BENCH_SEED = SCENARIO_DEFAULTS.seed;
