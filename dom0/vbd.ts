/**
 * dom0's block backends: how a vbd's `params` become a medium, and the
 * backend bus that serves every vbd the toolstack creates for this domain.
 *
 *   params = "ram:SIZE"   an in-memory disk (RamDisk), SIZE with K/M/G suffixes
 *   params = "/path/img"  a raw image file (FileDisk; flush = fdatasync); created
 *                         at `size` bytes (an xensim backend key) when missing
 *   mode = "r", or device-type = "cdrom": read-only media
 */
import { RamDisk, ReadOnlyDisk, type DiskStore, describeDiskError } from './devices/disk-store.ts';
import { FileDisk } from './devices/disk-store-file.ts';
import { DiskStoreStorage } from './blkback/storage.ts';
import { blkbackDriver, type BlkbackDriver, type BlkbackDriverOptions, type BlkbackParams } from './blkback/xenbus.ts';
import { createBackendBus } from '../shared/xenbus/backend.ts';
import type { XsHandle } from '../shared/xenbus/xs-handle.ts';
import type { XenbusHookError } from '../shared/xenbus/device.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../shared/result.ts';
import { parseRamSize } from '../cli/config/diskspec.ts';
import { asDomId } from '../shared/types.ts';

export type VbdBackendOptions = Omit<BlkbackDriverOptions, 'openStorage'>;

function openMedium(params: BlkbackParams, sizeBytes: number | undefined): Result<DiskStore, XenbusHookError> {
  const readOnly = params.mode === 'r' || params.deviceType === 'cdrom';
  let disk: DiskStore;
  if (params.params.startsWith('ram:')) {
    const bytes = parseRamSize(params.params.slice(4));
    if (bytes === null || bytes < 512 || bytes % 512 !== 0) {
      return err({ kind: 'bad-params', message: `params "${params.params.slice(0, 64)}": ram:SIZE needs a size in whole sectors, e.g. ram:64M` });
    }
    disk = new RamDisk({ sectors: bytes / 512 });
  } else if (params.params.startsWith('/')) {
    const r = FileDisk.open({ path: params.params, readOnly, ...(sizeBytes !== undefined ? { sectors: Math.floor(sizeBytes / 512) } : {}) });
    if (!r.ok) return err({ kind: 'cannot-open', message: `params "${params.params.slice(0, 200)}": ${describeDiskError(r.error)}` });
    disk = r.value;
  } else {
    return err({ kind: 'bad-params', message: `params "${params.params.slice(0, 64)}": expected ram:SIZE or an absolute image path` });
  }
  return ok(readOnly && !disk.readOnly ? new ReadOnlyDisk(disk) : disk);
}

/** [startVbdBackends k xs opts] serves every vbd whose backend is this domain. */
export async function startVbdBackends(k: DomainKernel, xs: XsHandle, opts: VbdBackendOptions = {}): Promise<BlkbackDriver> {
  const drv = blkbackDriver(k, {
    ...opts,
    openStorage: async (_id, params) => {
      const size = await xs.readString(`/local/domain/${k.domid}/backend/vbd/${_id.frontDom}/${_id.devid}/size`);
      const bytes = size.ok && /^[0-9]+$/.test(size.value) ? Number(size.value) : undefined;
      const m = openMedium(params, bytes);
      return m.ok ? ok(new DiskStoreStorage(k.mem, m.value)) : m;
    },
  });
  const bus = createBackendBus(xs, asDomId(k.domid), 'vbd', drv.driver, { log: opts.log });
  const r = await bus.start();
  if (!r.ok) throw new Error(`cannot watch the vbd backend directory: ${JSON.stringify(r.error)}`);
  return drv;
}
