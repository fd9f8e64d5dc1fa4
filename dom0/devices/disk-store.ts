/**
 * DiskStore: the medium behind a simulated disk — what blkback's requests
 * finally read and write, after grants, DMA mapping and the IOMMU.
 *
 * Units. Addresses are 512-byte sectors, as on the blkif ring (XEN-FACTS:
 * "ring fields stay in 512-byte units even when sector-size is 4096"). Byte
 * lengths must be whole sectors. Sector numbers are `number`s (STYLE:
 * "Sectors are number"); anything that is not a non-negative safe integer is
 * out of range.
 *
 * Why synchronous. A DiskStore is used only by the device model in dom0's
 * device thread, never by a domain's data path directly. Memory media are
 * naturally synchronous, and for files we use positional `fs.readSync`/
 * `fs.writeSync` (pread/pwrite) and `fs.fdatasyncSync`: on an image in the
 * page cache these take microseconds, while the async fs API costs a hop to
 * libuv's 4-thread pool plus a promise per call and would reorder requests
 * behind our back. Completing requests *asynchronously* is the device
 * model's job (it decides when to push the blkif response), not the
 * medium's. The price: a slow fsync blocks the device thread for its
 * duration, exactly as a FLUSH blocks a real single-queue disk.
 *
 * Errors. Bad arguments (a hostile guest's sector range that blkback did not
 * already refuse, a length that is not whole sectors) return a Result with a
 * discriminated `kind` and the offending values; they never throw. Counters
 * count successful operations; refused ones count in `errors`.
 */
import { err, ok, type Result } from '../../shared/result.ts';

/** Bytes per sector: the blkif ring's unit. */
export const SECTOR_SIZE = 512 as const;
export const SECTOR_SHIFT = 9;

export type DiskOp = 'read' | 'write' | 'flush' | 'discard' | 'close';

export type DiskError =
  /** [sector, sector + nrSectors) is not inside [0, sectors), or sector is not a safe integer. */
  | { readonly kind: 'out-of-range'; readonly op: DiskOp; readonly sector: number; readonly nrSectors: number; readonly sectors: number }
  /** A byte length that is not a whole number of sectors. */
  | { readonly kind: 'misaligned'; readonly op: DiskOp; readonly len: number; readonly sectorSize: typeof SECTOR_SIZE }
  /** buf[off, off + len) is not inside the caller's buffer. */
  | { readonly kind: 'bad-buffer'; readonly op: DiskOp; readonly off: number; readonly len: number; readonly bufLen: number }
  /** A write or discard on read-only media (a CD-ROM, a disk attached with access=ro). */
  | { readonly kind: 'read-only'; readonly op: DiskOp }
  /** Any operation after close() (or after a simulated power cut). */
  | { readonly kind: 'closed'; readonly op: DiskOp }
  /** The host refused: ENOSPC, EIO, EBADF, or an image that ended early. */
  | { readonly kind: 'io-error'; readonly op: DiskOp | 'open'; readonly code: string; readonly message: string }
  /** An image file whose size or mode cannot back the disk asked for. */
  | { readonly kind: 'bad-image'; readonly path: string; readonly size: number; readonly reason: string };

/** [DiskCounters] is a snapshot of what a store has done since it was opened. */
export interface DiskCounters {
  /** Successful read calls. */
  reads: number;
  /** Successful write calls. */
  writes: number;
  /** Successful flush calls. */
  flushes: number;
  /** Successful discard calls. */
  discards: number;
  bytesRead: number;
  bytesWritten: number;
  sectorsDiscarded: number;
  /** Calls refused with an error of any kind. */
  errors: number;
}

export interface DiskStore {
  readonly sectorSize: typeof SECTOR_SIZE;
  /** Capacity in sectors. */
  readonly sectors: number;
  /** Writes and discards are refused with 'read-only'. */
  readonly readOnly: boolean;
  /** [read sector into off len] fills into[off, off+len) from the disk starting at sector. len defaults to the rest of `into`. */
  read(sector: number, into: Uint8Array, off?: number, len?: number): Result<void, DiskError>;
  /** [write sector from off len] stores from[off, off+len) at sector. Durable only after flush() (see FileDisk). */
  write(sector: number, from: Uint8Array, off?: number, len?: number): Result<void, DiskError>;
  /** [flush ()] makes every write that returned before it durable (BLKIF_OP_FLUSH_DISKCACHE). */
  flush(): Result<void, DiskError>;
  /** [discard sector nrSectors] forgets the range; it reads back as zeros (BLKIF_OP_DISCARD). */
  discard(sector: number, nrSectors: number): Result<void, DiskError>;
  /** [close ()] releases the medium; later calls return 'closed'. Closing twice is harmless. */
  close(): Result<void, DiskError>;
  /** [counters ()] is a snapshot of the operation counters. */
  counters(): DiskCounters;
}

/**
 * The checks and counting every store shares. Subclasses implement the
 * do* hooks, which are called only with validated, in-range arguments.
 */
export abstract class SectorStore implements DiskStore {
  readonly sectorSize = SECTOR_SIZE;
  private closed = false;
  private readonly c: DiskCounters = {
    reads: 0, writes: 0, flushes: 0, discards: 0, bytesRead: 0, bytesWritten: 0, sectorsDiscarded: 0, errors: 0,
  };

  protected constructor(
    readonly sectors: number,
    readonly readOnly: boolean,
  ) {}

  protected abstract doRead(sector: number, into: Uint8Array, off: number, len: number): Result<void, DiskError>;
  protected abstract doWrite(sector: number, from: Uint8Array, off: number, len: number): Result<void, DiskError>;
  protected abstract doFlush(): Result<void, DiskError>;
  protected abstract doDiscard(sector: number, nrSectors: number): Result<void, DiskError>;
  protected abstract doClose(): Result<void, DiskError>;

  get isClosed(): boolean {
    return this.closed;
  }

  read(sector: number, into: Uint8Array, off = 0, len = into.length - off): Result<void, DiskError> {
    const bad = this.checkIo('read', sector, into, off, len);
    if (bad !== null) return this.fail(bad);
    const r = len === 0 ? ok(undefined) : this.doRead(sector, into, off, len);
    if (!r.ok) return this.fail(r.error);
    this.c.reads++;
    this.c.bytesRead += len;
    return r;
  }

  write(sector: number, from: Uint8Array, off = 0, len = from.length - off): Result<void, DiskError> {
    const bad = this.checkIo('write', sector, from, off, len);
    if (bad !== null) return this.fail(bad);
    const r = len === 0 ? ok(undefined) : this.doWrite(sector, from, off, len);
    if (!r.ok) return this.fail(r.error);
    this.c.writes++;
    this.c.bytesWritten += len;
    return r;
  }

  flush(): Result<void, DiskError> {
    if (this.closed) return this.fail({ kind: 'closed', op: 'flush' });
    const r = this.doFlush();
    if (!r.ok) return this.fail(r.error);
    this.c.flushes++;
    return r;
  }

  discard(sector: number, nrSectors: number): Result<void, DiskError> {
    if (this.closed) return this.fail({ kind: 'closed', op: 'discard' });
    if (this.readOnly) return this.fail({ kind: 'read-only', op: 'discard' });
    const bad = this.checkRange('discard', sector, nrSectors);
    if (bad !== null) return this.fail(bad);
    const r = nrSectors === 0 ? ok(undefined) : this.doDiscard(sector, nrSectors);
    if (!r.ok) return this.fail(r.error);
    this.c.discards++;
    this.c.sectorsDiscarded += nrSectors;
    return r;
  }

  close(): Result<void, DiskError> {
    if (this.closed) return ok(undefined);
    this.closed = true;
    return this.doClose();
  }

  counters(): DiskCounters {
    return { ...this.c };
  }

  /** For subclasses that end the medium by other means (a simulated power cut). */
  protected markClosed(): void {
    this.closed = true;
  }

  private fail(e: DiskError): Result<never, DiskError> {
    this.c.errors++;
    return err(e);
  }

  private checkIo(op: 'read' | 'write', sector: number, buf: Uint8Array, off: number, len: number): DiskError | null {
    if (this.closed) return { kind: 'closed', op };
    if (op === 'write' && this.readOnly) return { kind: 'read-only', op };
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0 || off + len > buf.length) {
      return { kind: 'bad-buffer', op, off, len, bufLen: buf.length };
    }
    if (len % SECTOR_SIZE !== 0) return { kind: 'misaligned', op, len, sectorSize: SECTOR_SIZE };
    return this.checkRange(op, sector, len / SECTOR_SIZE);
  }

  private checkRange(op: DiskOp, sector: number, nrSectors: number): DiskError | null {
    if (
      !Number.isSafeInteger(sector) || !Number.isSafeInteger(nrSectors) ||
      sector < 0 || nrSectors < 0 || sector + nrSectors > this.sectors
    ) {
      return { kind: 'out-of-range', op, sector, nrSectors, sectors: this.sectors };
    }
    return null;
  }
}

/** Bytes per RamDisk allocation unit. */
export const RAM_CHUNK_SIZE = 64 * 1024;
const SECTORS_PER_CHUNK = RAM_CHUNK_SIZE / SECTOR_SIZE;

export interface RamDiskOptions {
  /** Capacity in sectors (a positive safe integer). */
  readonly sectors: number;
}

/**
 * [RamDisk] is a sparse in-memory disk. A 64 KiB chunk is allocated on the
 * first write that touches it, so a 1 GiB disk costs nothing until written;
 * an unallocated chunk reads as zeros. discard() frees every chunk it covers
 * whole and zeroes the covered part of the others. flush() has nothing to do.
 * The chunks are plain ArrayBuffers: the disk is the device's private medium,
 * not machine memory. For read-only media, fill a RamDisk and wrap it in
 * ReadOnlyDisk.
 */
export class RamDisk extends SectorStore {
  private readonly chunks = new Map<number, Uint8Array>();

  constructor(opts: RamDiskOptions) {
    if (!Number.isSafeInteger(opts.sectors) || opts.sectors <= 0) {
      throw new RangeError(`RamDisk sectors must be a positive safe integer, got ${opts.sectors}`);
    }
    super(opts.sectors, false);
  }

  /** [allocatedChunks] is the number of 64 KiB chunks currently holding data. */
  get allocatedChunks(): number {
    return this.chunks.size;
  }

  /** [allocatedBytes] is the memory held for data (chunks × 64 KiB). */
  get allocatedBytes(): number {
    return this.chunks.size * RAM_CHUNK_SIZE;
  }

  protected doRead(sector: number, into: Uint8Array, off: number, len: number): Result<void, DiskError> {
    this.forEachChunkPiece(sector, len, (idx, chunkOff, bufOff, n) => {
      const chunk = this.chunks.get(idx);
      if (chunk === undefined) into.fill(0, off + bufOff, off + bufOff + n);
      else into.set(chunk.subarray(chunkOff, chunkOff + n), off + bufOff);
    });
    return ok(undefined);
  }

  protected doWrite(sector: number, from: Uint8Array, off: number, len: number): Result<void, DiskError> {
    this.forEachChunkPiece(sector, len, (idx, chunkOff, bufOff, n) => {
      let chunk = this.chunks.get(idx);
      if (chunk === undefined) {
        chunk = new Uint8Array(RAM_CHUNK_SIZE);
        this.chunks.set(idx, chunk);
      }
      chunk.set(from.subarray(off + bufOff, off + bufOff + n), chunkOff);
    });
    return ok(undefined);
  }

  protected doFlush(): Result<void, DiskError> {
    return ok(undefined);
  }

  protected doDiscard(sector: number, nrSectors: number): Result<void, DiskError> {
    const len = nrSectors * SECTOR_SIZE;
    if (len / RAM_CHUNK_SIZE > this.chunks.size) {
      // A discard far larger than what is allocated: walk the allocated chunks, not the range.
      const first = sector * SECTOR_SIZE;
      const end = first + len;
      for (const [idx, chunk] of this.chunks) {
        const cStart = idx * RAM_CHUNK_SIZE;
        const lo = Math.max(first, cStart);
        const hi = Math.min(end, cStart + RAM_CHUNK_SIZE);
        if (lo >= hi) continue;
        if (lo === cStart && hi === cStart + RAM_CHUNK_SIZE) this.chunks.delete(idx);
        else chunk.fill(0, lo - cStart, hi - cStart);
      }
      return ok(undefined);
    }
    this.forEachChunkPiece(sector, len, (idx, chunkOff, _bufOff, n) => {
      const chunk = this.chunks.get(idx);
      if (chunk === undefined) return;
      if (n === RAM_CHUNK_SIZE) this.chunks.delete(idx);
      else chunk.fill(0, chunkOff, chunkOff + n);
    });
    return ok(undefined);
  }

  protected doClose(): Result<void, DiskError> {
    this.chunks.clear();
    return ok(undefined);
  }

  /** Calls f for each piece of [sector, +len bytes) that lies within one chunk. */
  private forEachChunkPiece(
    sector: number,
    len: number,
    f: (chunkIdx: number, chunkOff: number, bufOff: number, n: number) => void,
  ): void {
    let idx = Math.floor(sector / SECTORS_PER_CHUNK);
    let chunkOff = (sector % SECTORS_PER_CHUNK) * SECTOR_SIZE;
    let done = 0;
    while (done < len) {
      const n = Math.min(RAM_CHUNK_SIZE - chunkOff, len - done);
      f(idx, chunkOff, done, n);
      done += n;
      idx++;
      chunkOff = 0;
    }
  }
}

/**
 * [ReadOnlyDisk inner] presents inner as read-only media (a CD-ROM, a disk
 * attached with access=ro): reads pass through, writes and discards return
 * 'read-only' without reaching inner, flush succeeds with nothing to do.
 * Closing it closes inner.
 */
export class ReadOnlyDisk extends SectorStore {
  constructor(private readonly inner: DiskStore) {
    super(inner.sectors, true);
  }

  protected doRead(sector: number, into: Uint8Array, off: number, len: number): Result<void, DiskError> {
    return this.inner.read(sector, into, off, len);
  }
  protected doWrite(): Result<void, DiskError> {
    return err({ kind: 'read-only', op: 'write' });
  }
  protected doFlush(): Result<void, DiskError> {
    return ok(undefined);
  }
  protected doDiscard(): Result<void, DiskError> {
    return err({ kind: 'read-only', op: 'discard' });
  }
  protected doClose(): Result<void, DiskError> {
    return this.inner.close();
  }
}

/** [describeDiskError e] is a one-line message naming the offending values. */
export function describeDiskError(e: DiskError): string {
  switch (e.kind) {
    case 'out-of-range':
      return `${e.op}: sectors ${e.sector}+${e.nrSectors} outside the disk's ${e.sectors} sectors`;
    case 'misaligned':
      return `${e.op}: length ${e.len} is not a multiple of the ${e.sectorSize}-byte sector`;
    case 'bad-buffer':
      return `${e.op}: buffer range ${e.off}+${e.len} outside a buffer of ${e.bufLen} bytes`;
    case 'read-only':
      return `${e.op}: read-only medium`;
    case 'closed':
      return `${e.op}: disk is closed`;
    case 'io-error':
      return `${e.op}: ${e.code}: ${e.message}`;
    case 'bad-image':
      return `image ${e.path} (${e.size} bytes): ${e.reason}`;
  }
}
