/**
 * `npm run bench -- dma [--quick]`: the same DMA workload through each DMA
 * API implementation — the comparison behind dom0's choice of memory model
 * (docs/DMA.md).
 *
 * Workload: a driver domain in the implementation's memory model drives a
 * DMA disk controller (its own worker, RAM disk, IOMMU context as the
 * implementation needs) with 32 reads in flight, each into a pfn-contiguous
 * buffer of 4 KiB or 64 KiB (one scatterlist piece, as a kernel buffer
 * would be), resubmitted from the completion interrupt. The loop runs inside
 * the driver domain's worker; hypercalls go to the hypervisor worker.
 *
 *   direct  pm  dom0, no IOMMU (passthrough)
 *   p2m     PV  dom0, no IOMMU
 *   xlate   VP  dom0, no IOMMU: one phystomach hypercall per page
 *   iommu   VP  dom0, explicit IOMMU context, strict and lazy invalidation
 *   swiotlb PV  dom0, no IOMMU: bounces every piece that straddles
 *                non-contiguous machine frames (every 64 KiB buffer here)
 *
 * Figures, per implementation and size (medians of several runs, the
 * implementations interleaved run by run):
 *  - throughput (GB/s), with `direct` at the same size in the same run as
 *    baseline; `direct`'s own figure has memcpy within a SharedArrayBuffer
 *    (bench/baselines/raw.ts) as baseline, with the target of 0.5x at
 *    64 KiB — so the device model is never what the comparison measures;
 *  - hypercalls per I/O, IOMMU operations (maps + unmaps + flushes) per I/O,
 *    against the pages per I/O (ratio = per page);
 *  - bounced bytes per I/O, against the I/O size (ratio = fraction bounced).
 */
import type * as Comlink from 'comlink';
import type { DmaConfig } from '../dom0/dma/create-dma.ts';
import type { DiskBenchReport, DmaAgent } from '../dom0/dma/dma-agent.ts';
import type { IommuMode } from '../shared/abi/iommu.ts';
import type { MemoryModel } from '../shared/abi/machine.ts';
import { DeviceHost, DRIVER_DOMAIN_ENTRY, type DeviceHandle } from '../toolstack/device-host.ts';
import { Machine } from '../toolstack/machine.ts';
import { rawMemcpyBps } from './baselines/raw.ts';
import { figure, median, type Benchmark, type Figure } from './harness.ts';

function unwrap<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(r.error);
  return r.value;
}

interface Impl {
  readonly name: string;
  readonly model: MemoryModel;
  readonly mode: IommuMode;
  readonly lazy?: boolean;
  readonly cfg: DmaConfig;
}

const IMPLS: readonly Impl[] = [
  { name: 'direct', model: 'pm', mode: 'passthrough', cfg: { kind: 'direct' } },
  { name: 'p2m', model: 'p2m', mode: 'passthrough', cfg: { kind: 'p2m' } },
  { name: 'xlate', model: 'vp', mode: 'passthrough', cfg: { kind: 'xlate' } },
  { name: 'iommu (strict)', model: 'vp', mode: 'explicit', cfg: { kind: 'iommu' } },
  { name: 'iommu (lazy)', model: 'vp', mode: 'explicit', lazy: true, cfg: { kind: 'iommu', flushQueuePages: 256 } },
  // 32 × 64 KiB in flight, all bounced: a 3 MiB pool in 128 KiB machine-contiguous segments.
  { name: 'swiotlb', model: 'p2m', mode: 'passthrough', cfg: { kind: 'swiotlb', poolPages: 768, segmentPages: 32 } },
];

const SIZES = [4096, 65536] as const;
const DEPTH = 32;
// 4 MiB: the medium stays cache-resident, like the memcpy baseline's 4 MiB working set,
// so the device's own copy (disk → its buffer) does not dominate what is compared.
const DISK_SECTORS = 1 << 13;

interface Rig {
  readonly impl: Impl;
  readonly m: Machine;
  readonly host: DeviceHost;
  readonly agent: Comlink.Remote<DmaAgent>;
  readonly h: number;
  readonly dev: DeviceHandle;
}

/** One measurement: the driver domain's report plus what the device's IOMMU context saw (Xen's flushes). */
interface Measured {
  readonly rep: DiskBenchReport;
  readonly xenFlushes: number;
  readonly translations: number;
}

async function boot(impl: Impl): Promise<Rig> {
  // 512 MiB: our frame allocator scatters domain RAM at random, so long free runs (XENMEM_exchange) need headroom.
  const m = await Machine.boot({ memBytes: 512 << 20 });
  const host = new DeviceHost(m);
  const d = await m.createDomain({ name: `dd-${impl.model}`, memoryKiB: 48 * 1024, model: impl.model, entry: DRIVER_DOMAIN_ENTRY });
  // Three busy threads (driver domain, device, hypervisor) on two cores: the device sleeps rather than spins
  // when idle (PERF-FACTS: spin only while busy threads <= cores); the hypervisor keeps its short spin,
  // without which every hypercall pays a full wake.
  const dev = await host.add({ kind: 'dma-disk', name: 'disk', owner: d.domid, mode: impl.mode, lazy: impl.lazy, lazyBatch: 4096, sectors: DISK_SECTORS, spinUs: 0 });
  const agent = d.agent as unknown as Comlink.Remote<DmaAgent>;
  const h = unwrap(await agent.attachDisk(dev.info, impl.cfg, { entries: DEPTH, maxSegs: 64 }));
  // Fill the disk once, so reads copy real data rather than zero-fill holes.
  unwrap(await agent.diskBench(h, { op: 'write', ioBytes: 65536, depth: DEPTH, ios: (DISK_SECTORS * 512) / 65536 }));
  return { impl, m, host, agent, h, dev };
}

const bench: Benchmark = async ({ quick }) => {
  const runs = quick ? 3 : 5;
  // Each measurement runs for a fixed time (at most a fixed number of I/Os), after a warm-up that lets the JIT settle.
  const durationMs = quick ? 400 : 1500;
  const warmupMs = quick ? 150 : 400;
  const rigs: Rig[] = [];
  for (const impl of IMPLS) rigs.push(await boot(impl));
  const reports = new Map<string, Measured[]>();
  const memcpy = new Map<number, number[]>();
  try {
    for (let r = 0; r < runs; r++) {
      for (const size of SIZES) {
        const mc = memcpy.get(size) ?? [];
        mc.push(rawMemcpyBps(size, 256 << 20));
        memcpy.set(size, mc);
        for (const rig of rigs) {
          // Warm up apart, so the IOMMU counters below cover exactly the measured I/Os.
          unwrap(await rig.agent.diskBench(rig.h, { op: 'read', ioBytes: size, depth: DEPTH, ios: 1_000_000, durationMs: warmupMs }));
          const i0 = await rig.dev.control.iommu();
          const rep = unwrap(await rig.agent.diskBench(rig.h, { op: 'read', ioBytes: size, depth: DEPTH, ios: 10_000_000, durationMs }));
          const i1 = await rig.dev.control.iommu();
          if (rep.errors !== 0) throw new Error(`${rig.impl.name}: ${rep.errors} I/O errors`);
          const key = `${rig.impl.name}@${size}`;
          reports.set(key, [...(reports.get(key) ?? []), { rep, xenFlushes: i1.flushes - i0.flushes, translations: i1.translations - i0.translations }]);
        }
      }
    }
  } finally {
    for (const rig of rigs) {
      await rig.host.shutdown();
      await rig.m.shutdown();
    }
  }

  const figures: Figure[] = [];
  const kib = (n: number) => `${n / 1024} KiB`;
  for (const size of SIZES) {
    const pages = size / 4096;
    const per = (rs: Measured[], f: (r: DiskBenchReport, x: Measured) => number) => rs.map((x) => f(x.rep, x) / x.rep.ios);
    const gbps = (rs: Measured[]) => rs.map((x) => x.rep.bytes / x.rep.ns);
    const direct = reports.get(`direct@${size}`) as Measured[];
    const directGbps = gbps(direct);
    const mc = (memcpy.get(size) as number[]).map((v) => v / 1e9);
    figures.push(figure({
      name: `direct: ${kib(size)} reads, QD${DEPTH}, throughput`, value: median(directGbps), unit: 'GB/s', better: 'higher',
      baseline: { name: `memcpy ${kib(size)} in a SharedArrayBuffer`, value: median(mc) }, runs: directGbps, baselineRuns: mc,
      ...(size === 65536 ? { target: 0.5 } : {}),
    }));
    for (const impl of IMPLS) {
      const rs = reports.get(`${impl.name}@${size}`) as Measured[];
      const g = gbps(rs);
      if (impl.name !== 'direct') {
        figures.push(figure({
          name: `${impl.name}: ${kib(size)} reads, QD${DEPTH}, throughput`, value: median(g), unit: 'GB/s', better: 'higher',
          baseline: { name: `direct at ${kib(size)}, same run`, value: median(directGbps) }, runs: g, baselineRuns: directGbps,
        }));
      }
      const hc = per(rs, (r) => r.dma.hypercalls);
      figures.push(figure({
        name: `${impl.name}: ${kib(size)} reads, hypercalls per I/O`, value: median(hc), unit: 'hypercalls/I/O', better: 'lower',
        baseline: { name: 'pages per I/O', value: pages }, runs: hc,
      }));
      if (impl.cfg.kind === 'iommu') {
        const ops = per(rs, (r) => r.dma.iommuMaps + r.dma.iommuUnmaps + r.dma.iommuFlushes);
        figures.push(figure({
          name: `${impl.name}: ${kib(size)} reads, IOMMU map+unmap+flush operations per I/O`, value: median(ops), unit: 'ops/I/O', better: 'lower',
          baseline: { name: 'pages per I/O', value: pages }, runs: ops,
        }));
        const fl = per(rs, (_r, x) => x.xenFlushes);
        figures.push(figure({
          name: `${impl.name}: ${kib(size)} reads, IOTLB flushes by Xen per I/O`, value: median(fl), unit: 'flushes/I/O', better: 'lower',
          baseline: { name: 'one per I/O', value: 1 }, runs: fl,
        }));
      }
      if (impl.cfg.kind === 'swiotlb' || impl.cfg.kind === 'p2m' || impl.cfg.kind === 'direct') {
        const bb = per(rs, (r) => r.dma.bouncedBytes);
        figures.push(figure({
          name: `${impl.name}: ${kib(size)} reads, bounced bytes per I/O`, value: median(bb), unit: 'B/I/O', better: 'lower',
          baseline: { name: 'bytes per I/O', value: size }, runs: bb,
        }));
      }
      const tr = per(rs, (_r, x) => x.translations);
      figures.push(figure({
        name: `${impl.name}: ${kib(size)} reads, device page translations per I/O`, value: median(tr), unit: 'translations/I/O', better: 'lower',
        baseline: { name: 'pages per I/O', value: pages }, runs: tr,
      }));
      const segs = per(rs, (r) => r.dma.segments);
      figures.push(figure({
        name: `${impl.name}: ${kib(size)} reads, bus segments per I/O`, value: median(segs), unit: 'segments/I/O', better: 'lower',
        baseline: { name: 'pages per I/O', value: pages }, runs: segs,
      }));
    }
  }
  return figures;
};
export default bench;
