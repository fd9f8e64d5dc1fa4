/**
 * dom0's block backends: how a vbd's `params` become a medium, and the
 * backend bus that serves every vbd the toolstack creates for this domain.
 *
 *   params = "ram:SIZE"   a RAM disk in the backend's private memory (PrivateRamStorage:
 *                         one copy per segment, no staging), SIZE with K/M/G suffixes,
 *                         held in 1 MiB chunks as they are first written. It outlives a
 *                         blkback instance (ramMedia below) and goes when the vbd is removed.
 *   params = "/path/img"  a raw image file (FileDisk; flush = fdatasync); created
 *                         at `size` bytes (an xensim backend key) when missing
 *   params = "dma:NAME"   the DMA block controller NAME that dom0 drives (attachVbdDmaDisk):
 *                         blkback maps the guest's grants for the device too, dom0's DMA
 *                         API turns them into bus addresses and the controller moves the
 *                         data itself (DmaDiskStorage) — the path a real disk takes
 *   mode = "r", or device-type = "cdrom": read-only media
 */
import { ReadOnlyDisk, type DiskStore, describeDiskError } from './devices/disk-store.ts';
import { FileDisk } from './devices/disk-store-file.ts';
import { DiskStoreStorage, PrivateRamMedium, PrivateRamStorage, type BlkStorage } from './blkback/storage.ts';
import { DmaDiskStorage } from './blkback/dma-storage.ts';
import { createDmaApi, type DmaConfig } from './dma/create-dma.ts';
import { describeDmaError, type DmaCounters } from './dma/dma-api.ts';
import { DmaDiskDriver, describeDiskDriverError, type DiskDriverOptions } from './dma/disk-driver.ts';
import type { DeviceInfo } from '../hypervisor/iommu.ts';
import { blkbackDriver, type BlkbackDriver, type BlkbackDriverOptions, type BlkbackParams } from './blkback/xenbus.ts';
import { createBackendBus } from '../shared/xenbus/backend.ts';
import type { XsHandle } from '../shared/xenbus/xs-handle.ts';
import type { XenbusHookError } from '../shared/xenbus/device.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../shared/result.ts';
import { parseRamSize } from '../cli/config/diskspec.ts';
import { asDomId } from '../shared/types.ts';
import type { XenbusDeviceId } from '../shared/xenbus/paths.ts';

export type VbdBackendOptions = Omit<BlkbackDriverOptions, 'openStorage'>;

/** One `ram:` medium and the params it was made for. */
interface RamMediumEntry {
  readonly params: string;
  readonly medium: PrivateRamMedium;
}

/**
 * dom0-wide registry of `ram:` media, per serving kernel, by
 * "<frontDom>/<devid>": a blkback instance that is stopped and started again
 * in the same dom0 (a backend restart) finds the disk its predecessor served,
 * bytes intact. A medium goes (its pages back to dom0) when the storage
 * serving it is closed — blkback closes it when the vbd is removed for good,
 * or re-probed with other params — never when a backend instance just stops.
 */
const ramMedia = new WeakMap<DomainKernel, Map<string, RamMediumEntry>>();

/** [ramMediaOf k] is the registry of k's `ram:` media (for tests and diagnostics). */
export function ramMediaOf(k: DomainKernel): ReadonlyMap<string, RamMediumEntry> {
  return ramMedia.get(k) ?? new Map<string, RamMediumEntry>();
}

function openRam(k: DomainKernel, id: XenbusDeviceId, params: BlkbackParams, readOnly: boolean): Result<BlkStorage, XenbusHookError> {
  const bytes = parseRamSize(params.params.slice(4));
  if (bytes === null || bytes < 512 || bytes % 512 !== 0) {
    return err({ kind: 'bad-params', message: `params "${params.params.slice(0, 64)}": ram:SIZE needs a size in whole sectors, e.g. ram:64M` });
  }
  let reg = ramMedia.get(k);
  if (reg === undefined) { reg = new Map(); ramMedia.set(k, reg); }
  const key = `${id.frontDom}/${id.devid}`;
  let e = reg.get(key);
  if (e !== undefined && (e.params !== params.params || e.medium.isReleased)) {
    e.medium.release();
    reg.delete(key);
    e = undefined;
  }
  if (e === undefined) {
    e = { params: params.params, medium: new PrivateRamMedium(bytes / 512) };
    reg.set(key, e);
  }
  const entry = e;
  const registry = reg;
  return ok(new PrivateRamStorage(k.mem, entry.medium, {
    readOnly,
    // Closed by blkback only when the vbd goes for good (remove) or its params change.
    onClose: () => {
      if (registry.get(key) === entry) registry.delete(key);
      entry.medium.release();
    },
  }));
}

function openFile(k: DomainKernel, params: BlkbackParams, readOnly: boolean, sizeBytes: number | undefined): Result<BlkStorage, XenbusHookError> {
  const r = FileDisk.open({ path: params.params, readOnly, ...(sizeBytes !== undefined ? { sectors: Math.floor(sizeBytes / 512) } : {}) });
  if (!r.ok) return err({ kind: 'cannot-open', message: `params "${params.params.slice(0, 200)}": ${describeDiskError(r.error)}` });
  const disk: DiskStore = readOnly && !r.value.readOnly ? new ReadOnlyDisk(r.value) : r.value;
  return ok(new DiskStoreStorage(k.mem, disk));
}

/** A DMA block controller dom0 drives, and the vbd it serves now (one at a time). */
interface DmaDiskEntry {
  readonly driver: DmaDiskDriver;
  user: string | null;
}

/** dom0-wide registry of DMA block controllers for `dma:NAME` vbds, per serving kernel, by device name. */
const dmaDisks = new WeakMap<DomainKernel, Map<string, DmaDiskEntry>>();

/**
 * [attachVbdDmaDisk k device cfg opts] attaches dom0's DMA API (cfg: direct,
 * p2m, xlate, iommu, swiotlb — what dom0's memory model allows) and a disk
 * driver to the DMA block controller the toolstack plugged in for k
 * (DeviceHost.add with owner k.domid), and offers it to vbds whose params are
 * `dma:<device.name>`. Returns the controller's capacity in sectors.
 */
export function attachVbdDmaDisk(k: DomainKernel, device: DeviceInfo, cfg: DmaConfig, opts: DiskDriverOptions = {}): Result<number, string> {
  let reg = dmaDisks.get(k);
  if (reg === undefined) { reg = new Map(); dmaDisks.set(k, reg); }
  if (reg.has(device.name)) return err(`a DMA disk named ${device.name} is attached already`);
  const dma = createDmaApi(k, device, cfg);
  if (!dma.ok) return err(describeDmaError(dma.error));
  const drv = DmaDiskDriver.attach(k, dma.value, opts);
  if (!drv.ok) return err(describeDiskDriverError(drv.error));
  reg.set(device.name, { driver: drv.value, user: null });
  return ok(drv.value.sectors);
}

/** [dmaDiskStats k] is each DMA disk dom0 drives: the vbd it serves ("<frontDom>/<devid>" or null) and its DMA API's counters. */
export function dmaDiskStats(k: DomainKernel): { name: string; user: string | null; dma: DmaCounters }[] {
  return [...(dmaDisks.get(k) ?? new Map<string, DmaDiskEntry>()).entries()].map(([name, e]) => ({ name, user: e.user, dma: e.driver.dma.counters() }));
}

function openDma(k: DomainKernel, id: XenbusDeviceId, params: BlkbackParams, readOnly: boolean): Result<BlkStorage, XenbusHookError> {
  const name = params.params.slice(4);
  const e = dmaDisks.get(k)?.get(name);
  if (e === undefined) return err({ kind: 'no-device', message: `params "${params.params.slice(0, 64)}": dom0 drives no DMA disk named "${name.slice(0, 32)}"` });
  const key = `${id.frontDom}/${id.devid}`;
  if (e.user !== null && e.user !== key) return err({ kind: 'device-busy', message: `params "${params.params.slice(0, 64)}": the controller serves vbd ${e.user}` });
  e.user = key;
  return ok(new DmaDiskStorage(e.driver, { readOnly, onClose: () => { if (e.user === key) e.user = null; } }));
}

/** [openVbdStorage k id params sizeBytes] opens the medium a vbd's `params` names, as the storage blkback serves. */
export function openVbdStorage(k: DomainKernel, id: XenbusDeviceId, params: BlkbackParams, sizeBytes: number | undefined): Result<BlkStorage, XenbusHookError> {
  const readOnly = params.mode === 'r' || params.deviceType === 'cdrom';
  if (params.params.startsWith('ram:')) return openRam(k, id, params, readOnly);
  if (params.params.startsWith('/')) return openFile(k, params, readOnly, sizeBytes);
  if (params.params.startsWith('dma:')) return openDma(k, id, params, readOnly);
  return err({ kind: 'bad-params', message: `params "${params.params.slice(0, 64)}": expected ram:SIZE, dma:NAME or an absolute image path` });
}

/** [startVbdBackends k xs opts] serves every vbd whose backend is this domain. */
export async function startVbdBackends(k: DomainKernel, xs: XsHandle, opts: VbdBackendOptions = {}): Promise<BlkbackDriver> {
  const drv = blkbackDriver(k, {
    ...opts,
    openStorage: async (id, params) => {
      const size = await xs.readString(`/local/domain/${k.domid}/backend/vbd/${id.frontDom}/${id.devid}/size`);
      const bytes = size.ok && /^[0-9]+$/.test(size.value) ? Number(size.value) : undefined;
      return openVbdStorage(k, id, params, bytes);
    },
  });
  const bus = createBackendBus(xs, asDomId(k.domid), 'vbd', drv.driver, { log: opts.log });
  const r = await bus.start();
  if (!r.ok) throw new Error(`cannot watch the vbd backend directory: ${JSON.stringify(r.error)}`);
  return drv;
}
