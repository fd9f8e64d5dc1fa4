/**
 * Plugging DMA devices into a running machine: the toolstack asks the
 * hypervisor for the device's IOMMU context (HypervisorControl.addDevice,
 * which also allocates the device block holding its register window), then
 * starts the device model in its own worker with the machine's memory and
 * the block address — the device's only view of the machine. Devices talk to
 * the toolstack over comlink (counters, stop), kicked through their control
 * register like domains.
 *
 * Devices outlive nothing: the host registers its shutdown() with the
 * machine, so Machine.shutdown stops device workers first.
 */
import * as Comlink from 'comlink';
import type { Worker } from 'node:worker_threads';
import type { IommuMode } from '../shared/abi/iommu.ts';
import type { DeviceInfo } from '../hypervisor/iommu.ts';
import type { MachineMemory, PageSize } from '../shared/memory/machine-memory.ts';
import { spawnTsWorker } from '../shared/worker/spawn.ts';
import { parentEndpoint } from '../shared/worker/endpoint.ts';
import { MmioWindow } from '../dom0/dma/mmio.ts';
import { Wire, type WireEnd, type WireMemory, type WireMode, type NicCounters } from '../dom0/devices/nic.ts';
import type { DiskControllerCounters } from '../dom0/devices/dma-disk-controller.ts';
import type { Machine } from './machine.ts';
import type { OutsideHostCounters } from '../dom0/devices/nic-host.ts';

interface DeviceSpecBase {
  readonly name: string;
  /** The domain whose driver programs the device (dom0 or a driver domain). */
  readonly owner: number;
  /** The device's IOMMU context (Xen's dom0-iommu flavours, or explicit for the `iommu` DMA API). */
  readonly mode: IommuMode;
  readonly dmaMaskBits?: number;
  /** Explicit contexts: lazy IOTLB invalidation (and Xen's batch before it flushes by itself). */
  readonly lazy?: boolean;
  readonly lazyBatch?: number;
  /** Device loop: spin before sleeping (µs) and longest sleep (ms). */
  readonly spinUs?: number;
  readonly idleMs?: number;
}

export interface DiskDeviceSpec extends DeviceSpecBase {
  readonly kind: 'dma-disk';
  /** A RAM disk of this many 512-byte sectors (default 2^16 = 32 MiB)… */
  readonly sectors?: number;
  /** …or an image file. */
  readonly image?: string;
  readonly readOnly?: boolean;
  readonly maxSegs?: number;
  readonly maxBytes?: number;
}

export interface NicDeviceSpec extends DeviceSpecBase {
  readonly kind: 'nic';
  readonly wire: Wire;
  readonly end: WireEnd;
}

export type DeviceSpec = DiskDeviceSpec | NicDeviceSpec;

/** What a device worker receives (workerData). */
export type DeviceWorkerData =
  | { readonly kind: 'dma-disk'; readonly sab: MachineMemory['sab']; readonly pageSize: PageSize; readonly blockAddr: number; readonly spec: Omit<DiskDeviceSpec, 'kind'> }
  | { readonly kind: 'nic'; readonly sab: MachineMemory['sab']; readonly pageSize: PageSize; readonly blockAddr: number; readonly wire: WireMemory; readonly end: WireEnd; readonly spec: Omit<NicDeviceSpec, 'kind' | 'wire'> };

/** The control plane each device worker serves. */
export interface DeviceControlApi {
  /** The device model's own counters. */
  counters(): DiskControllerCounters | NicCounters;
  /** The IOMMU view's counters (translations, faults, stray DMA, stale IOTLB hits). */
  iommu(): { translations: number; faults: number; strayDma: number; lastStrayMfn: number; lastStrayOwner: number; staleHits: number; maps: number; unmaps: number; flushes: number };
  /** Leaves the device loop; the worker then exits. */
  stop(): void;
}

/** A host outside the machine on a NIC wire's free end (dom0/devices/nic-host.ts). */
export interface OutsideHostSpec {
  readonly wire: Wire;
  readonly end: WireEnd;
  /** Its MAC address (unicast). */
  readonly mac: string;
  /** Longest sleep on the wire between control-plane checks (ms, default 2). */
  readonly idleMs?: number;
}

/** What an outside-host worker receives (workerData). */
export interface OutsideHostWorkerData {
  readonly sab: MachineMemory['sab'];
  readonly pageSize: PageSize;
  readonly wire: WireMemory;
  readonly end: WireEnd;
  readonly mac: string;
  readonly idleMs?: number;
}

/** The control plane an outside-host worker serves. */
export interface OutsideHostControlApi {
  counters(): OutsideHostCounters;
  /** Leaves the serving loop; the worker then exits. */
  stop(): void;
}

export interface OutsideHostHandle {
  readonly mac: string;
  readonly worker: Worker;
  readonly control: Comlink.Remote<OutsideHostControlApi>;
  readonly exited: Promise<number>;
}

export interface DeviceHandle {
  readonly info: DeviceInfo;
  readonly kind: DeviceSpec['kind'];
  readonly worker: Worker;
  readonly control: Comlink.Remote<DeviceControlApi>;
  readonly exited: Promise<number>;
}

/** The worker entry of a domain that drives DMA devices (kernel + DmaAgent): pass it as DomainOptions.entry. */
export const DRIVER_DOMAIN_ENTRY = new URL('../dom0/devices/driver-domain-main.ts', import.meta.url);

const ENTRY = {
  'dma-disk': new URL('../dom0/devices/dma-disk-main.ts', import.meta.url),
  nic: new URL('../dom0/devices/nic-main.ts', import.meta.url),
} as const;
const OUTSIDE_HOST_ENTRY = new URL('../dom0/devices/nic-host-main.ts', import.meta.url);

function workerReady(worker: Worker): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onMsg = (m: unknown) => {
      if (typeof m === 'object' && m !== null && (m as { xensim?: string }).xensim === 'device-ready') { cleanup(); resolve(); }
    };
    const onErr = (e: Error) => { cleanup(); reject(e); };
    const onExit = (code: number) => { cleanup(); reject(new Error(`device worker exited with code ${code} before it was ready`)); };
    const cleanup = () => { worker.off('message', onMsg); worker.off('error', onErr); worker.off('exit', onExit); };
    worker.on('message', onMsg); worker.on('error', onErr); worker.on('exit', onExit);
  });
}

export class DeviceHost {
  private readonly devices = new Map<number, DeviceHandle>();
  private readonly hosts = new Set<OutsideHostHandle>();

  constructor(private readonly machine: Machine) {
    machine.onShutdown(() => this.shutdown());
  }

  /** [wire mode] is a new cable for NICs (a pair of ends, or a loopback). */
  static wire(mode: WireMode): Wire { return Wire.create(mode); }

  /** [add spec] plugs a device into the IOMMU for spec.owner and starts its model. */
  async add(spec: DeviceSpec): Promise<DeviceHandle> {
    const r = await this.machine.hv.addDevice({
      name: spec.name, owner: spec.owner, mode: spec.mode, dmaMaskBits: spec.dmaMaskBits, lazy: spec.lazy, lazyBatch: spec.lazyBatch,
    });
    if (!r.ok) throw new Error(`cannot add device '${spec.name}': ${r.error}`);
    const info = r.value;
    const mem = this.machine.mem;
    let data: DeviceWorkerData;
    if (spec.kind === 'dma-disk') {
      const { kind: _k, ...rest } = spec;
      data = { kind: 'dma-disk', sab: mem.sab, pageSize: mem.pageSize, blockAddr: info.blockAddr, spec: rest };
    } else {
      const { kind: _k, wire, ...rest } = spec;
      data = { kind: 'nic', sab: mem.sab, pageSize: mem.pageSize, blockAddr: info.blockAddr, wire: wire.memory, end: spec.end, spec: rest };
    }
    const worker = spawnTsWorker(ENTRY[spec.kind], data as unknown as Record<string, unknown>);
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    const ready = new Promise<void>((resolve, reject) => {
      const onMsg = (m: unknown) => {
        if (typeof m === 'object' && m !== null && (m as { xensim?: string }).xensim === 'device-ready') { cleanup(); resolve(); }
      };
      const onErr = (e: Error) => { cleanup(); reject(e); };
      const onExit = (code: number) => { cleanup(); reject(new Error(`device worker exited with code ${code} before it was ready`)); };
      const cleanup = () => { worker.off('message', onMsg); worker.off('error', onErr); worker.off('exit', onExit); };
      worker.on('message', onMsg); worker.on('error', onErr); worker.on('exit', onExit);
    });
    const mmio = new MmioWindow(mem, info.blockAddr);
    const control = Comlink.wrap<DeviceControlApi>(parentEndpoint(worker, () => mmio.kickControl()));
    const h: DeviceHandle = { info, kind: spec.kind, worker, control, exited };
    this.devices.set(info.id, h);
    try {
      await ready;
    } catch (e) {
      this.devices.delete(info.id);
      await this.machine.hv.removeDevice(info.id);
      throw e;
    }
    return h;
  }

  get list(): DeviceHandle[] { return [...this.devices.values()]; }

  /** Stops the device's worker, then unplugs it from the IOMMU. */
  async remove(h: DeviceHandle): Promise<void> {
    if (!this.devices.delete(h.info.id)) return;
    try {
      await Promise.race([h.control.stop(), new Promise((r) => setTimeout(r, 1000))]);
      await Promise.race([h.exited, new Promise((r) => setTimeout(r, 2000))]);
    } finally {
      await h.worker.terminate();
      await this.machine.hv.removeDevice(h.info.id);
    }
  }

  /**
   * [addOutsideHost spec] starts a host outside the machine on the free end
   * of a pair wire (its own worker): it answers pings and echoes frames sent
   * to its MAC, so traffic that left through a NIC comes back.
   */
  async addOutsideHost(spec: OutsideHostSpec): Promise<OutsideHostHandle> {
    if (spec.wire.mode !== 'pair') throw new Error('an outside host needs the free end of a pair wire');
    const mem = this.machine.mem;
    const data: OutsideHostWorkerData = {
      sab: mem.sab, pageSize: mem.pageSize, wire: spec.wire.memory, end: spec.end, mac: spec.mac,
      ...(spec.idleMs !== undefined ? { idleMs: spec.idleMs } : {}),
    };
    const worker = spawnTsWorker(OUTSIDE_HOST_ENTRY, data as unknown as Record<string, unknown>);
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    const ready = workerReady(worker);
    // Its loop sleeps at most idleMs and then serves messages: no doorbell needed.
    const control = Comlink.wrap<OutsideHostControlApi>(parentEndpoint(worker, () => {}));
    await ready;
    const h: OutsideHostHandle = { mac: spec.mac, worker, control, exited };
    this.hosts.add(h);
    return h;
  }

  /** Stops an outside host's worker. */
  async removeOutsideHost(h: OutsideHostHandle): Promise<void> {
    if (!this.hosts.delete(h)) return;
    try {
      await Promise.race([h.control.stop(), new Promise((r) => setTimeout(r, 1000))]);
      await Promise.race([h.exited, new Promise((r) => setTimeout(r, 2000))]);
    } finally {
      await h.worker.terminate();
    }
  }

  async shutdown(): Promise<void> {
    for (const h of [...this.hosts]) await this.removeOutsideHost(h);
    for (const h of this.list) await this.remove(h);
  }
}
