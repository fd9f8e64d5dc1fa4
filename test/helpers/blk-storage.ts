/**
 * Test storages for blkback: a gate that holds completions until the test
 * lets them go (so requests stay "in flight" in the backend), and a wrapper
 * that answers chosen operations with a chosen status (a medium that turns
 * out not to support flush or discard). Both wrap a real BlkStorage.
 */
import type { BlkStorage, BlkStorageFeatures, BlkStorageIo, BlkStorageOp, BlkStorageStatus } from '../../dom0/blkback/storage.ts';

/** What the gate saw of one io when it was submitted (copied: the io object is reused later). */
export interface SeenIo {
  readonly op: BlkStorageOp;
  readonly sector: number;
  readonly nrSectors: number;
  readonly nrSegments: number;
  readonly fua: boolean;
}

export class GatedStorage implements BlkStorage {
  /** ios the inner storage completed, whose completion we hold. */
  private held: { io: BlkStorageIo; status: BlkStorageStatus }[] = [];
  /** ios submitted to us and not yet passed on (while closed). */
  private queued: BlkStorageIo[] = [];
  private outstanding = 0;
  readonly seen: SeenIo[] = [];
  /** When false, ios wait here before reaching the medium. */
  open = true;
  /** When true, completions from the medium are held until release(). */
  hold = false;
  private readonly wrapped = new Map<BlkStorageIo, BlkStorageIo>();

  constructor(readonly inner: BlkStorage, readonly maxInflight = inner.maxInflight) {}

  get sectors(): number { return this.inner.sectors; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get sectorSize(): number { return this.inner.sectorSize; }
  get physicalSectorSize(): number { return this.inner.physicalSectorSize; }
  get features(): BlkStorageFeatures { return this.inner.features; }
  get inflight(): number { return this.outstanding; }
  /** Completions held. */
  get heldCount(): number { return this.held.length; }
  get queuedCount(): number { return this.queued.length; }

  submit(io: BlkStorageIo): void {
    this.outstanding++;
    this.seen.push({ op: io.op, sector: io.sector, nrSectors: io.nrSectors, nrSegments: io.nrSegments, fua: io.fua });
    if (!this.open) { this.queued.push(io); return; }
    this.pass(io);
  }

  private pass(io: BlkStorageIo): void {
    let w = this.wrapped.get(io);
    if (w === undefined) {
      w = {
        get op() { return io.op; }, get sector() { return io.sector; }, get nrSectors() { return io.nrSectors; },
        segments: io.segments, get nrSegments() { return io.nrSegments; }, get fua() { return io.fua; }, get secure() { return io.secure; },
        complete: (s: BlkStorageStatus) => {
          if (this.hold) { this.held.push({ io, status: s }); return; }
          this.outstanding--;
          io.complete(s);
        },
      } as BlkStorageIo;
      this.wrapped.set(io, w);
    }
    this.inner.submit(w);
  }

  kick(): void { this.inner.kick(); }

  /** Lets queued ios reach the medium. */
  openGate(): void {
    this.open = true;
    const q = this.queued;
    this.queued = [];
    for (const io of q) this.pass(io);
    this.inner.kick();
  }

  /** Delivers held completions (all, or the first n). */
  release(n = this.held.length): void {
    const h = this.held.splice(0, n);
    for (const { io, status } of h) {
      this.outstanding--;
      io.complete(status);
    }
  }

  close(): void { this.inner.close(); }
}

/** Answers the listed ops with `status` instead of running them. */
export class RefusingStorage implements BlkStorage {
  refused = 0;
  constructor(readonly inner: BlkStorage, readonly refuse: readonly BlkStorageOp[], readonly status: BlkStorageStatus = 'eopnotsupp') {}
  get sectors(): number { return this.inner.sectors; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get sectorSize(): number { return this.inner.sectorSize; }
  get physicalSectorSize(): number { return this.inner.physicalSectorSize; }
  get features(): BlkStorageFeatures { return this.inner.features; }
  get maxInflight(): number { return this.inner.maxInflight; }
  get inflight(): number { return this.inner.inflight; }
  submit(io: BlkStorageIo): void {
    if (this.refuse.includes(io.op)) {
      this.refused++;
      queueMicrotask(() => io.complete(this.status));
      return;
    }
    this.inner.submit(io);
  }
  kick(): void { this.inner.kick(); }
  close(): void { this.inner.close(); }
}
