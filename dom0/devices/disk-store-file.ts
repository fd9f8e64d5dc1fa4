/**
 * FileDisk: a raw disk image in a host file (xl's `format=raw`, `target=`).
 *
 * I/O is synchronous positional pread/pwrite on one fd (see disk-store.ts,
 * "Why synchronous"). flush() is fdatasync: after it returns, every write that
 * returned before it survives the process and a host crash.
 *
 * Simulated volatile write cache. With `volatileWriteCache`, writes (and
 * discards) land in an in-memory cache in front of the file, the way a real
 * disk's DRAM cache holds them, and reach the file only on flush(). crash()
 * is a power cut: it drops whatever is still cached and ends the disk. So a
 * test can prove that a frontend which wrote, flushed and was acknowledged
 * keeps its data, and one that did not flush may lose it. Without the option,
 * writes go straight to the host's page cache: they survive our process
 * dying, and crash() loses nothing (we cannot simulate losing the host's own
 * page cache).
 */
import {
  closeSync, constants, fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync,
} from 'node:fs';
import { invariant } from '../../shared/invariant.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { SECTOR_SIZE, SectorStore, type DiskError, type DiskOp } from './disk-store.ts';

export interface FileDiskOptions {
  readonly path: string;
  /**
   * Capacity in sectors. If the file is shorter it is created or extended
   * (sparse) to this size; a longer file keeps its tail, unused. Omitted: the
   * file must exist and its size (a whole number of sectors) is the capacity.
   */
  readonly sectors?: number;
  /** Open O_RDONLY; writes and discards return 'read-only'. */
  readonly readOnly?: boolean;
  /** Hold writes in memory until flush(); crash() drops them. See the file comment. */
  readonly volatileWriteCache?: boolean;
}

/** Cache granularity: one entry per 64 KiB of disk. */
const CACHE_CHUNK = 64 * 1024;
const CACHE_CHUNK_SECTORS = CACHE_CHUNK / SECTOR_SIZE;
/** Zeros written for discards and for discarded cache entries. */
const ZEROS = new Uint8Array(CACHE_CHUNK);

/**
 * One cached 64 KiB of disk. valid[i] = 1 when sector i of the chunk is held
 * here (and must be written back); its bytes are data[i*512..] or, when data
 * is null, zeros (a whole-chunk discard costs no data memory).
 */
interface CacheChunk {
  data: Uint8Array | null;
  readonly valid: Uint8Array;
  count: number;
}

function ioError(op: DiskOp | 'open', e: unknown): DiskError {
  const code = typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : 'EIO';
  const message = e instanceof Error ? e.message : String(e);
  return { kind: 'io-error', op, code, message };
}

export class FileDisk extends SectorStore {
  private readonly cache: Map<number, CacheChunk> | null;

  private constructor(
    private readonly fd: number,
    readonly path: string,
    sectors: number,
    readOnly: boolean,
    volatileWriteCache: boolean,
  ) {
    super(sectors, readOnly);
    this.cache = volatileWriteCache ? new Map() : null;
  }

  /** [open opts] opens (and if need be creates or extends) the image. */
  static open(opts: FileDiskOptions): Result<FileDisk, DiskError> {
    const readOnly = opts.readOnly ?? false;
    if (opts.sectors !== undefined && (!Number.isSafeInteger(opts.sectors) || opts.sectors <= 0)) {
      return err({ kind: 'bad-image', path: opts.path, size: -1, reason: `sectors must be a positive safe integer, got ${opts.sectors}` });
    }
    let fd: number;
    try {
      fd = readOnly
        ? openSync(opts.path, constants.O_RDONLY)
        : openSync(opts.path, constants.O_RDWR | constants.O_CREAT, 0o644);
    } catch (e) {
      return err(ioError('open', e));
    }
    const fail = (e: DiskError): Result<never, DiskError> => {
      try { closeSync(fd); } catch { /* already failing; the first error is the one to report */ }
      return err(e);
    };
    try {
      const size = fstatSync(fd).size;
      let sectors = opts.sectors;
      if (sectors === undefined) {
        if (size === 0 || size % SECTOR_SIZE !== 0) {
          return fail({ kind: 'bad-image', path: opts.path, size, reason: `size must be a positive multiple of ${SECTOR_SIZE} bytes when no size is given` });
        }
        sectors = size / SECTOR_SIZE;
      } else if (size < sectors * SECTOR_SIZE) {
        if (readOnly) {
          return fail({ kind: 'bad-image', path: opts.path, size, reason: `shorter than the ${sectors} sectors asked for, and opened read-only` });
        }
        ftruncateSync(fd, sectors * SECTOR_SIZE);
        fsyncSync(fd); // the new size is metadata: make it durable once, so fdatasync suffices later
      }
      return ok(new FileDisk(fd, opts.path, sectors, readOnly, opts.volatileWriteCache ?? false));
    } catch (e) {
      return fail(ioError('open', e));
    }
  }

  /** [dirtySectors] is the number of sectors written (or discarded) but not yet flushed to the file. */
  get dirtySectors(): number {
    let n = 0;
    if (this.cache !== null) for (const c of this.cache.values()) n += c.count;
    return n;
  }

  /**
   * [crash ()] simulates a power cut: the volatile cache is dropped unwritten
   * and the disk is closed. Returns how many sectors were lost. Reopen the
   * image to see what survived.
   */
  crash(): { lostSectors: number } {
    if (this.isClosed) return { lostSectors: 0 };
    const lostSectors = this.dirtySectors;
    this.cache?.clear();
    this.markClosed();
    try { closeSync(this.fd); } catch { /* a power cut does not report errors */ }
    return { lostSectors };
  }

  protected doRead(sector: number, into: Uint8Array, off: number, len: number): Result<void, DiskError> {
    const r = this.pread(sector * SECTOR_SIZE, into, off, len);
    if (!r.ok || this.cache === null || this.cache.size === 0) return r;
    // Cached sectors are newer than the file: lay them over what was read.
    this.forEachCachePiece(sector, len / SECTOR_SIZE, (idx, first, n, bufSector) => {
      const c = this.cache?.get(idx);
      if (c === undefined) return;
      for (let i = 0; i < n; i++) {
        if (c.valid[first + i] !== 1) continue;
        const dst = off + (bufSector + i) * SECTOR_SIZE;
        if (c.data === null) into.fill(0, dst, dst + SECTOR_SIZE);
        else into.set(c.data.subarray((first + i) * SECTOR_SIZE, (first + i + 1) * SECTOR_SIZE), dst);
      }
    });
    return ok(undefined);
  }

  protected doWrite(sector: number, from: Uint8Array, off: number, len: number): Result<void, DiskError> {
    if (this.cache === null) return this.pwrite(sector * SECTOR_SIZE, from, off, len, 'write');
    this.forEachCachePiece(sector, len / SECTOR_SIZE, (idx, first, n, bufSector) => {
      const c = this.cacheEntry(idx);
      const data = c.data ?? (c.data = new Uint8Array(CACHE_CHUNK)); // null meant "valid sectors are zero": still true
      const src = off + bufSector * SECTOR_SIZE;
      data.set(from.subarray(src, src + n * SECTOR_SIZE), first * SECTOR_SIZE);
      this.markValid(c, first, n);
    });
    return ok(undefined);
  }

  protected doFlush(): Result<void, DiskError> {
    if (this.cache !== null && this.cache.size > 0) {
      const idxs = [...this.cache.keys()].sort((a, b) => a - b);
      for (const idx of idxs) {
        const c = this.cache.get(idx);
        if (c === undefined) continue;
        let i = 0;
        while (i < CACHE_CHUNK_SECTORS) {
          if (c.valid[i] !== 1) { i++; continue; }
          let j = i;
          while (j < CACHE_CHUNK_SECTORS && c.valid[j] === 1) j++;
          const src = c.data ?? ZEROS;
          const r = this.pwrite((idx * CACHE_CHUNK_SECTORS + i) * SECTOR_SIZE, src, i * SECTOR_SIZE, (j - i) * SECTOR_SIZE, 'flush');
          if (!r.ok) return r; // the cache is kept: a retried flush rewrites the same bytes
          i = j;
        }
      }
    }
    try {
      fdatasyncSync(this.fd);
    } catch (e) {
      return err(ioError('flush', e));
    }
    this.cache?.clear();
    return ok(undefined);
  }

  protected doDiscard(sector: number, nrSectors: number): Result<void, DiskError> {
    if (this.cache !== null) {
      this.forEachCachePiece(sector, nrSectors, (idx, first, n) => {
        const c = this.cacheEntry(idx);
        if (n === CACHE_CHUNK_SECTORS) c.data = null; // every sector becomes a valid zero sector
        else c.data?.fill(0, first * SECTOR_SIZE, (first + n) * SECTOR_SIZE);
        this.markValid(c, first, n);
      });
      return ok(undefined);
    }
    // No hole punching from Node (no fallocate): the range is overwritten with zeros.
    let pos = sector * SECTOR_SIZE;
    const end = pos + nrSectors * SECTOR_SIZE;
    while (pos < end) {
      const n = Math.min(ZEROS.length, end - pos);
      const r = this.pwrite(pos, ZEROS, 0, n, 'discard');
      if (!r.ok) return r;
      pos += n;
    }
    return ok(undefined);
  }

  protected doClose(): Result<void, DiskError> {
    // An orderly detach writes the cache back first; a power cut is crash().
    const flushed = this.cache !== null && this.cache.size > 0 ? this.doFlush() : ok(undefined);
    try {
      closeSync(this.fd);
    } catch (e) {
      return err(ioError('close', e));
    }
    return flushed;
  }

  private pread(pos: number, into: Uint8Array, off: number, len: number): Result<void, DiskError> {
    let done = 0;
    try {
      while (done < len) {
        const n = readSync(this.fd, into, off + done, len - done, pos + done);
        if (n === 0) {
          return err({ kind: 'io-error', op: 'read', code: 'EOF', message: `image ${this.path} ends at byte ${pos + done}, inside the disk (truncated behind our back?)` });
        }
        done += n;
      }
    } catch (e) {
      return err(ioError('read', e));
    }
    return ok(undefined);
  }

  private pwrite(pos: number, from: Uint8Array, off: number, len: number, op: DiskOp): Result<void, DiskError> {
    let done = 0;
    try {
      while (done < len) done += writeSync(this.fd, from, off + done, len - done, pos + done);
    } catch (e) {
      return err(ioError(op, e));
    }
    return ok(undefined);
  }

  private cacheEntry(idx: number): CacheChunk {
    const cache = this.cache;
    invariant(cache !== null, 'FileDisk.cacheEntry without a volatile cache');
    let c = cache.get(idx);
    if (c === undefined) {
      c = { data: null, valid: new Uint8Array(CACHE_CHUNK_SECTORS), count: 0 };
      cache.set(idx, c);
    }
    return c;
  }

  private markValid(c: CacheChunk, first: number, n: number): void {
    for (let i = first; i < first + n; i++) {
      if (c.valid[i] !== 1) { c.valid[i] = 1; c.count++; }
    }
  }

  /** Calls f(chunkIdx, firstSectorInChunk, nSectors, sectorsDoneSoFar) per chunk the range touches. */
  private forEachCachePiece(
    sector: number,
    nrSectors: number,
    f: (chunkIdx: number, first: number, n: number, bufSector: number) => void,
  ): void {
    let done = 0;
    while (done < nrSectors) {
      const s = sector + done;
      const first = s % CACHE_CHUNK_SECTORS;
      const n = Math.min(CACHE_CHUNK_SECTORS - first, nrSectors - done);
      f(Math.floor(s / CACHE_CHUNK_SECTORS), first, n, done);
      done += n;
    }
  }
}
