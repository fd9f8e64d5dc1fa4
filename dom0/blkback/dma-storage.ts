/**
 * DmaDiskStorage: blkback's storage on the DMA block controller
 * (dom0/devices/dma-disk-controller.ts) through dom0's DMA API and its disk
 * driver (dom0/dma/disk-driver.ts) — the path a real disk takes, instead of
 * the CPU copies of the software disks in storage.ts.
 *
 * A request's segments are dom0 page pieces, the DmaPiece shape: blkback
 * maps the guest's grants for the device as well (`deviceMapping`), so the
 * DMA API turns each ballooned pfn into a bus address that reaches the
 * guest's own frame — through dom0's P2M/foreign notes (direct, p2m), a
 * phystomach hypercall (xlate), IOMMU mappings (iommu) or a bounce buffer
 * (swiotlb) — and the controller moves the data with no CPU copy in dom0.
 * Completions arrive by the controller's interrupt (an event on dom0's port),
 * outside blkback's processing pass; blkback batches them.
 *
 * The controller knows read, write and flush: a FLUSH_DISKCACHE with data
 * (fua) is a write descriptor then a flush descriptor; discard is not offered.
 */
import type { DmaDiskDriver, DiskIoResult } from '../dma/disk-driver.ts';
import type { DmaPiece } from '../dma/dma-api.ts';
import { DISK_STATUS } from '../devices/dma-disk-controller.ts';
import type { BlkStorage, BlkStorageFeatures, BlkStorageIo, BlkStorageStatus } from './storage.ts';

export interface DmaDiskStorageOptions {
  /** Present the disk read-only (the toolstack's mode=r). */
  readonly readOnly?: boolean;
  /** Called once by close() (the vbd lets go of the controller; dom0/vbd.ts frees it for another). */
  readonly onClose?: () => void;
}

function statusOf(r: DiskIoResult): BlkStorageStatus {
  if (r.status === DISK_STATUS.okay) return 'ok';
  if (r.status === DISK_STATUS.notSupported) return 'eopnotsupp';
  return 'error';
}

export class DmaDiskStorage implements BlkStorage {
  readonly sectors: number;
  readonly readOnly: boolean;
  readonly sectorSize = 512;
  readonly physicalSectorSize = 512;
  readonly features: BlkStorageFeatures = { flush: true, discard: false, discardSecure: false };
  /** A fua write holds one queue entry at a time (write, then flush). */
  readonly maxInflight: number;
  readonly deviceMapping = true;
  private outstanding = 0;
  /** Submissions the driver refused (a DMA mapping failure): completed with an error. */
  refused = 0;

  private readonly onClose: (() => void) | undefined;
  private closed = false;

  constructor(readonly driver: DmaDiskDriver, opts: DmaDiskStorageOptions = {}) {
    this.onClose = opts.onClose;
    this.sectors = driver.sectors;
    this.readOnly = opts.readOnly ?? false;
    this.maxInflight = driver.entries;
  }

  get inflight(): number { return this.outstanding; }

  submit(io: BlkStorageIo): void {
    this.outstanding++;
    if (io.op === 'discard' || (io.op === 'write' && this.readOnly)) {
      this.finishLater(io, io.op === 'discard' ? 'eopnotsupp' : 'error');
      return;
    }
    if (io.op === 'flush') { this.send(io, 'flush', false); return; }
    this.send(io, io.op, io.fua);
  }

  private send(io: BlkStorageIo, op: 'read' | 'write' | 'flush', thenFlush: boolean): void {
    // The segments are DmaPieces already; the driver keeps only the mapping it makes from them.
    const buffer: readonly DmaPiece[] = op === 'flush' ? [] : io.segments.slice(0, io.nrSegments);
    const r = this.driver.submit({ op, sector: io.sector, buffer }, (res) => {
      const st = statusOf(res);
      if (st === 'ok' && thenFlush) {
        this.send(io, 'flush', false);
        this.driver.kick();
        return;
      }
      this.outstanding--;
      io.complete(st);
    });
    if (!r.ok) {
      this.refused++;
      this.finishLater(io, 'error');
    }
  }

  private finishLater(io: BlkStorageIo, st: BlkStorageStatus): void {
    queueMicrotask(() => {
      this.outstanding--;
      io.complete(st);
    });
  }

  kick(): void {
    this.driver.kick();
  }

  close(): void {
    // The controller and its driver belong to dom0's device layer, not to this disk: they stay.
    if (this.closed) return;
    this.closed = true;
    this.onClose?.();
  }
}
