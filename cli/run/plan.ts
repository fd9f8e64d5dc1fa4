/**
 * From one validated sweep point to what a cell boots and runs: the machine,
 * dom0's drivers, each guest (memory, memory model, on_crash), the disks to
 * attach, and the fio jobs in the workload engine's terms. Pure: it reads
 * image sizes through an injected stat and touches nothing else.
 *
 * Two kinds of trouble, kept apart:
 * - `errors`: the configuration cannot work (a relative disk target, a qcow2
 *   image, a job larger than its disk, a write job on a read-only disk, an
 *   image that does not exist). `xensim run` lists them all and exits 1
 *   before it boots anything.
 * - `unavailable`: the configuration is fine but this build cannot run that
 *   part yet (disks and vifs served by a driver domain, streams to dom0). The cell
 *   runs everything else, then is reported failed with these messages, so no
 *   result is ever made up for what did not run.
 * `notes` say which settings are recorded but not modelled.
 */
import { statSync } from 'node:fs';
import type { FioJobSpec } from '../../domU/workloads/fio-engine.ts';
import type { MemoryModel } from '../../shared/abi/machine.ts';
import type { IommuMode } from '../../shared/abi/iommu.ts';
import type { DmaKind } from '../../dom0/dma/dma-api.ts';
import type { OnCrash } from '../../toolstack/machine.ts';
import type { DriverOptions } from '../../toolstack/worker-data.ts';
import type { FioJob } from '../config/fio-job.ts';
import type { Scenario } from '../config/scenario.ts';
import type { DomainType, ShutdownAction } from '../config/xlcfg.ts';
import { simMachineOf, type SimMachine } from '../report/results.ts';
import { toEngineSpec } from './fio-adapter.ts';
import type { BlkbackSettings } from './load-scenario.ts';
import { planNetwork, type PlannedStream, type PlannedVif } from './network.ts';

export interface PlannedDisk {
  readonly vdev: string;
  readonly devid: number;
  /** `ram:SIZE` or an absolute image path, as Machine.attachDisk takes it. */
  readonly target: string;
  readonly access: 'r' | 'w';
  readonly devtype: 'disk' | 'cdrom';
  /** Capacity in bytes. */
  readonly bytes: number;
  /**
   * Served as a physical disk: a DMA block controller dom0 drives through its
   * DMA API (dma) with the device's IOMMU context (iommu); absent = emulated in
   * software by dom0 (xl's backendtype=qdisk, and image files).
   */
  readonly device?: { readonly dma: DmaKind; readonly iommu: IommuMode; readonly lazy: boolean };
}

export interface PlannedDomain {
  readonly name: string;
  readonly type: DomainType;
  readonly memoryKiB: number;
  readonly model: MemoryModel;
  readonly onCrash: OnCrash;
  readonly disks: readonly PlannedDisk[];
  /** Network interfaces to attach (cli/run/network.ts). */
  readonly vifs: readonly PlannedVif[];
}

export interface PlannedBlock {
  readonly domain: string;
  readonly vdev: string;
  readonly devid: number;
  readonly jobs: readonly FioJobSpec[];
  /** Seed of the jobs' random offsets. */
  readonly seed: number;
  /** Rough seconds the jobs take (for progress and the cell's time limit). */
  readonly estimateSec: number;
}

export interface CellPlan {
  readonly machine: SimMachine;
  readonly seed: number;
  readonly dom0Drivers: DriverOptions;
  readonly domains: readonly PlannedDomain[];
  /** Workloads this build can run. */
  readonly block: readonly PlannedBlock[];
  /** Streams this build can run, at the same time as the block workloads. */
  readonly network: readonly PlannedStream[];
  readonly unavailable: readonly string[];
  readonly notes: readonly string[];
}

export interface PlanOptions {
  /** Reads an image's size in bytes, or null when it is not a regular file (default: fs.statSync). */
  readonly imageSize?: (path: string) => { bytes: number } | { error: string };
}

function fsImageSize(path: string): { bytes: number } | { error: string } {
  try {
    const s = statSync(path);
    if (!s.isFile()) return { error: 'is not a regular file (xensim serves raw image files and ram:SIZE disks)' };
    return { bytes: s.size };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { error: code === 'ENOENT' ? 'does not exist (create the raw image first, e.g. truncate -s 64M FILE, or use ram:SIZE)' : `cannot be read: ${code ?? String(e)}` };
  }
}

/** [onCrashOf action] is the toolstack's policy for xl's on_crash action: coredumps are not modelled, soft-reset restarts. */
export function onCrashOf(action: ShutdownAction): OnCrash {
  switch (action) {
    case 'destroy': case 'coredump-destroy': return 'destroy';
    case 'preserve': return 'preserve';
    case 'restart': case 'rename-restart': case 'coredump-restart': case 'soft-reset': return 'restart';
  }
}

/** [estimateSeconds jobs] adds up each stonewall group's longest job (runtime + ramp, or 1 s when it runs by size). */
export function estimateSeconds(jobs: readonly FioJobSpec[]): number {
  let total = 0;
  let group = 0;
  for (const [i, j] of jobs.entries()) {
    if (i > 0 && j.stonewall === true) {
      total += group;
      group = 0;
    }
    const t = (j.runtime ?? 1) + (j.ramp_time ?? 0) + (j.verify === true ? 0.5 : 0);
    group = Math.max(group, t);
  }
  return total + group;
}

/** A 32-bit seed for workload i of a cell. */
export function workloadSeed(seed: number, i: number): number {
  return (seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0;
}

function writes(j: FioJob): boolean {
  return j.rwmixread < 100;
}

/** [planCell scenario blkback opts] is what to boot and run for one sweep point, or every reason it cannot work. */
export function planCell(scenario: Scenario, blkback: BlkbackSettings, opts: PlanOptions = {}): { plan: CellPlan; errors: readonly string[] } {
  const imageSize = opts.imageSize ?? fsImageSize;
  const errors: string[] = [];
  const unavailable: string[] = [];
  const notes: string[] = [];
  const m = scenario.machine;
  // A physical disk's controller: dom0's DMA API as configured, and the device's IOMMU context
  // (an explicit one for the iommu API, lazy or strict invalidation; otherwise Xen's dom0-iommu mode).
  const physical = {
    dma: m.dom0.dma,
    iommu: (m.dom0.dma === 'iommu' ? 'explicit' : m.dom0.iommu === 'off' ? 'passthrough' : m.dom0.iommu === 'lazy' ? 'strict' : m.dom0.iommu) as IommuMode,
    lazy: m.dom0.iommu === 'lazy',
  };
  let softwareDisks = 0;

  // Streams get seeds after the block workloads' (workloadSeed(seed, i) for block[i]).
  const net = planNetwork(scenario.domains, scenario.network, (i) => workloadSeed(scenario.seed, scenario.block.length + i));
  errors.push(...net.errors);
  unavailable.push(...net.unavailable);
  const domains: PlannedDomain[] = [];
  const diskOf = new Map<string, PlannedDisk>();
  /** Disks left out because this build cannot serve them ("domain/devid"). */
  const notHere = new Set<string>();
  // blkfront maps blkif's 4 KiB segments onto whole frames (domU/blkfront/blkfront.ts).
  const pagesOk = m.page_size === 4096;
  if (!pagesOk && scenario.domains.some((d) => d.config.disk.length > 0)) {
    unavailable.push(`page_size ${m.page_size}: block devices need 4 KiB pages in this build (blkfront puts each 4 KiB blkif segment in a frame of its own); no disk is attached`);
  }
  for (const d of scenario.domains) {
    const c = d.config;
    const disks: PlannedDisk[] = [];
    if (c.maxmem > c.memory) notes.push(`${c.name}: maxmem=${c.maxmem} is recorded, not modelled (no ballooning): the guest has memory=${c.memory} MiB`);
    if (c.vcpus > 1) notes.push(`${c.name}: vcpus=${c.vcpus} is recorded; each domain runs one vCPU thread`);
    for (const s of c.disk) {
      const where = `${c.name}: disk ${s.vdev} (\`${s.spec}')`;
      if (s.backend !== null && s.backend !== 'dom0' && s.backend !== 'Domain-0' && s.backend !== '0') {
        unavailable.push(`${where}: backend=${s.backend}: disks served by a driver domain are not available in this build (only dom0 runs blkback)`);
        notHere.add(`${c.name}/${s.devid}`);
        continue;
      }
      if (s.target === null || s.target === '') {
        notes.push(`${where}: no media inserted; not attached`);
        continue;
      }
      if (s.format !== 'raw') {
        errors.push(`${where}: format=${s.format}: xensim serves raw images and ram:SIZE disks only`);
        continue;
      }
      let bytes: number;
      if (s.ram !== null) bytes = s.ram.size;
      else if (s.target.startsWith('/')) {
        const st = imageSize(s.target);
        if ('error' in st) {
          errors.push(`${where}: image ${s.target} ${st.error}`);
          continue;
        }
        bytes = st.bytes;
      } else {
        errors.push(`${where}: target ${s.target}: expected ram:SIZE (e.g. ram:64M) or an absolute path to a raw image`);
        continue;
      }
      if (bytes < 512 || bytes % 512 !== 0) {
        errors.push(`${where}: ${bytes} bytes is not a whole number of 512-byte sectors`);
        continue;
      }
      // xl's backendtype: phy is a physical disk (here: a RAM medium behind the DMA block
      // controller), qdisk is emulated in software; left automatic, a ram: disk is physical and an
      // image file is emulated, as libxl picks qdisk for plain files.
      if (s.backendtype === 'phy' && s.ram === null) {
        errors.push(`${where}: backendtype=phy: a physical disk here is a RAM medium behind the DMA block controller; give target=ram:SIZE, or backendtype=qdisk for an image file`);
        continue;
      }
      if (s.backendtype === 'standalone' || s.backendtype === 'tap') {
        errors.push(`${where}: backendtype=${s.backendtype}: xensim serves phy (a DMA block controller) and qdisk (emulated in software) disks`);
        continue;
      }
      const isPhysical = s.ram !== null && s.backendtype !== 'qdisk';
      if (!isPhysical) softwareDisks++;
      const disk: PlannedDisk = {
        vdev: s.vdev, devid: s.devid, target: s.target, access: s.readwrite && s.access === 'rw' ? 'w' : 'r', devtype: s.devtype, bytes,
        ...(isPhysical ? { device: physical } : {}),
      };
      diskOf.set(`${c.name}/${s.devid}`, disk);
      if (pagesOk) disks.push(disk);
      else notHere.add(`${c.name}/${s.devid}`);
    }
    domains.push({ name: c.name, type: c.type, memoryKiB: c.memory * 1024, model: c.memory_model, onCrash: onCrashOf(c.on_crash), disks, vifs: net.vifs.get(c.name) ?? [] });
  }

  if (softwareDisks > 0) {
    notes.push(`${softwareDisks} disk(s) emulated in software (image files, backendtype=qdisk): blkback moves their data itself; dom0 dma=${m.dom0.dma}, iommu=${m.dom0.iommu} apply to the physical (ram:) disks`);
  }

  const block: PlannedBlock[] = [];
  for (const [i, b] of scenario.block.entries()) {
    const where = `block[${i}] (${b.domain}/${b.vdev})`;
    const disk = diskOf.get(`${b.domain}/${b.devid}`);
    if (disk === undefined) {
      // scenario.ts checked the disk exists: it has no media, or it is invalid (listed above), or not served here.
      if (notHere.has(`${b.domain}/${b.devid}`)) unavailable.push(`${where}: not run: its disk is not available in this build`);
      else if (!errors.some((e) => e.startsWith(`${b.domain}: disk ${b.vdev} `))) errors.push(`${where}: the disk has no media to run on`);
      continue;
    }
    const specs: FioJobSpec[] = [];
    for (const j of b.jobs) {
      if (writes(j) && disk.access === 'r') {
        errors.push(`${where}: job ${j.name} writes (rw=${j.rw}) but ${b.vdev} is attached read-only`);
        continue;
      }
      const s = toEngineSpec(j, disk.bytes);
      if (!s.ok) errors.push(`${where}: ${s.error}`);
      else specs.push(s.value);
    }
    if (notHere.has(`${b.domain}/${b.devid}`)) unavailable.push(`${where}: not run: its disk is not available in this build`);
    else block.push({ domain: b.domain, vdev: b.vdev, devid: b.devid, jobs: specs, seed: workloadSeed(scenario.seed, i), estimateSec: estimateSeconds(specs) });
  }

  const dom0Drivers: DriverOptions = {
    blkback: {
      mode: blkback.mode,
      ...(blkback.max_indirect_segments === null ? {} : { maxIndirectSegments: blkback.max_indirect_segments }),
      ...(blkback.max_queues === null ? {} : { maxQueues: blkback.max_queues }),
      ...(blkback.max_ring_page_order === null ? {} : { maxRingPageOrder: blkback.max_ring_page_order }),
    },
  };
  return {
    plan: { machine: simMachineOf(m), seed: scenario.seed, dom0Drivers, domains, block, network: net.streams, unavailable, notes },
    errors,
  };
}
