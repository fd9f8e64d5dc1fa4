/**
 * [MemBlockDevice] is an in-memory BlockDevice for workload tests: a byte array of
 * sectors with a configurable service model (latency, a limited number of
 * concurrently served requests, FIFO queueing beyond that), completions that can be
 * held and released in any order by the test, and injectable faults that model
 * the bugs verification must catch (lost, torn and misdirected writes, stale reads,
 * corruption) or the errors a driver reports.
 *
 * Data moves at completion time (a read copies out, a write copies in, when the
 * request completes), so a test that releases completions out of order sees the
 * device in the order it completed them, as with a real disk.
 */
import { SECTOR_SIZE, type BlockDevice, type DeviceCounters, type IoStatus, type WorkloadClock } from '../../domU/workloads/block-device.ts';

export type MemOp = 'read' | 'write' | 'flush' | 'discard';

/** One request as the device saw it; `seq` counts requests from 0 in submission order. */
export interface MemIo {
  readonly op: MemOp;
  readonly sector: number;
  readonly nrSectors: number;
  readonly seq: number;
}

/**
 * A fault applied to one request (returned by `fault`):
 *  - error / eopnotsupp   complete with that status; nothing is read or written
 *  - lose-write           acknowledge 'ok' but store nothing
 *  - torn-write           store only the first `sectors` sectors, acknowledge 'ok'
 *  - misdirect-write      store the data at `toSector` instead, acknowledge 'ok'
 *  - stale-read           return, for each sector, its content before its last write
 *                         (needs keepHistory)
 *  - corrupt              xor `xor` into byte `byteOffset` of the data (as stored for a
 *                         write, as returned for a read), acknowledge 'ok'
 */
export type MemFault =
  | { readonly kind: 'error' }
  | { readonly kind: 'eopnotsupp' }
  | { readonly kind: 'lose-write' }
  | { readonly kind: 'torn-write'; readonly sectors: number }
  | { readonly kind: 'misdirect-write'; readonly toSector: number }
  | { readonly kind: 'stale-read' }
  | { readonly kind: 'corrupt'; readonly byteOffset: number; readonly xor: number };

export interface MemBlockDeviceOptions {
  /** Capacity in 512-byte sectors. */
  readonly sectors: number;
  /** Default 1 MiB. */
  readonly maxRequestBytes?: number;
  readonly readOnly?: boolean;
  /** Service time of a request in ns (a number, or per request). Needs `clock` when ever > 0. Default 0. */
  readonly latencyNs?: number | ((io: MemIo) => number);
  /** Requests served at once (default Infinity); the rest wait in FIFO order. */
  readonly channels?: number;
  /** Time source for latency; required when latencyNs can be > 0. */
  readonly clock?: WorkloadClock;
  /**
   * Hold every completion until the test releases it (release/releaseAll);
   * `latencyNs` and `channels` are then ignored.
   */
  readonly manual?: boolean;
  /** Decide a fault per request (undefined = none). */
  readonly fault?: (io: MemIo) => MemFault | undefined;
  /** Keep each sector's previous content (for 'stale-read'). */
  readonly keepHistory?: boolean;
  /** Whether flush / discard are offered (default true); if not they answer 'eopnotsupp'. */
  readonly flush?: boolean;
  readonly discard?: boolean;
  /**
   * When a write's data reaches the disk: at completion (default), or at submission
   * (a write-back cache: a read completing before the write's acknowledgement already
   * sees the new data, which is why verified I/O must not overlap).
   */
  readonly writeApplyAt?: 'complete' | 'submit';
  /** Extra counters bumped once per request, to stand in for a driver's (e.g. { hypercalls: 1 }). */
  readonly perRequestCounters?: Readonly<Record<string, number>>;
}

/** A request that is queued, being served, or (manual mode) waiting for release. */
export interface PendingIo extends MemIo {
  readonly buf: Uint8Array | undefined;
}

interface Req extends PendingIo {
  readonly fault: MemFault | undefined;
  resolve: (s: IoStatus) => void;
  /** Set when the request was executed at submission (writeApplyAt 'submit'). */
  status?: IoStatus;
}

export class MemBlockDevice implements BlockDevice {
  readonly sectorSize = SECTOR_SIZE;
  readonly sectors: number;
  readonly maxRequestBytes: number;
  readonly readOnly: boolean;
  /** The disk's bytes (tests may look and poke directly). */
  readonly data: Uint8Array;
  /** Requests now submitted and not yet completed. */
  inflight = 0;
  /** The most requests ever in flight at once. */
  maxInflight = 0;
  /** Every request in submission order, when `log` is true. */
  readonly log: MemIo[] = [];
  logRequests = false;

  private seq = 0;
  private busyChannels = 0;
  private readonly queue: Req[] = [];
  private readonly held: Req[] = [];
  private readonly history = new Map<number, Uint8Array>();
  private readonly extra: readonly [string, number][];
  private readonly c: Record<string, number> = {
    reads: 0,
    writes: 0,
    flushes: 0,
    discards: 0,
    read_bytes: 0,
    write_bytes: 0,
    errors: 0,
  };

  constructor(private readonly opts: MemBlockDeviceOptions) {
    if (!Number.isSafeInteger(opts.sectors) || opts.sectors <= 0) throw new RangeError(`sectors must be positive, got ${opts.sectors}`);
    this.sectors = opts.sectors;
    this.maxRequestBytes = opts.maxRequestBytes ?? 1024 * 1024;
    this.readOnly = opts.readOnly ?? false;
    this.data = new Uint8Array(opts.sectors * SECTOR_SIZE);
    this.extra = Object.entries(opts.perRequestCounters ?? {});
    for (const [k] of this.extra) this.c[k] = 0;
  }

  read(sector: number, into: Uint8Array): Promise<IoStatus> {
    return this.submit('read', sector, into.length / SECTOR_SIZE, into);
  }
  write(sector: number, from: Uint8Array): Promise<IoStatus> {
    return this.submit('write', sector, from.length / SECTOR_SIZE, from);
  }
  flush(): Promise<IoStatus> {
    return this.submit('flush', 0, 0, undefined);
  }
  discard(sector: number, nrSectors: number): Promise<IoStatus> {
    return this.submit('discard', sector, nrSectors, undefined);
  }

  counters(): DeviceCounters {
    return { ...this.c };
  }

  /** Requests held in manual mode, oldest first. */
  get pending(): readonly PendingIo[] {
    return this.held;
  }

  /** [release i] completes the i'th held request (manual mode). */
  release(i = 0): void {
    const [r] = this.held.splice(i, 1);
    if (r === undefined) throw new RangeError(`no held request at index ${i} (${this.held.length} held)`);
    this.finish(r);
  }

  /** [releaseAll order] completes every held request, oldest first or newest first. */
  releaseAll(order: 'fifo' | 'lifo' = 'fifo'): void {
    while (this.held.length > 0) this.release(order === 'fifo' ? 0 : this.held.length - 1);
  }

  private submit(op: MemOp, sector: number, nrSectors: number, buf: Uint8Array | undefined): Promise<IoStatus> {
    if (this.instant) {
      // Fast path (no latency, faults, log or hold): complete now, allocating only the promise.
      this.seq++;
      this.bumpExtra();
      return Promise.resolve(this.execute(op, sector, nrSectors, buf, undefined));
    }
    const io: MemIo = { op, sector, nrSectors, seq: this.seq++ };
    if (this.logRequests) this.log.push(io);
    this.inflight++;
    if (this.inflight > this.maxInflight) this.maxInflight = this.inflight;
    this.bumpExtra();
    const fault = this.opts.fault?.(io);
    let resolve!: (s: IoStatus) => void;
    const p = new Promise<IoStatus>((r) => (resolve = r));
    const req: Req = { ...io, buf, fault, resolve };
    if (op === 'write' && this.opts.writeApplyAt === 'submit') req.status = this.execute(op, sector, nrSectors, buf, fault);
    if (this.opts.manual === true) {
      this.held.push(req);
      return p;
    }
    const lat = this.latencyOf(io);
    if (lat <= 0 && this.busyChannels === 0 && this.queue.length === 0) {
      // Zero latency: complete now (the promise still settles asynchronously).
      this.finish(req);
      return p;
    }
    this.queue.push(req);
    this.serveNext();
    return p;
  }

  private latencyOf(io: MemIo): number {
    const l = this.opts.latencyNs;
    return l === undefined ? 0 : typeof l === 'number' ? l : l(io);
  }

  private serveNext(): void {
    const channels = this.opts.channels ?? Infinity;
    while (this.busyChannels < channels && this.queue.length > 0) {
      const req = this.queue.shift() as Req;
      this.busyChannels++;
      const clock = this.opts.clock;
      if (clock === undefined) throw new Error('MemBlockDevice: latencyNs > 0 needs a clock');
      const done = (): void => {
        this.busyChannels--;
        this.finish(req);
        this.serveNext();
      };
      void clock.sleepUntil(clock.now() + BigInt(Math.max(0, Math.round(this.latencyOf(req))))).then(done);
    }
  }

  private finish(r: Req): void {
    this.inflight--;
    r.resolve(r.status ?? this.execute(r.op, r.sector, r.nrSectors, r.buf, r.fault));
  }

  private inRange(sector: number, n: number): boolean {
    return Number.isSafeInteger(sector) && Number.isSafeInteger(n) && sector >= 0 && n >= 0 && sector + n <= this.sectors;
  }

  private bumpExtra(): void {
    for (const [k, v] of this.extra) this.c[k] = (this.c[k] ?? 0) + v;
  }

  /** True when requests can complete inside submit (see the fast path there). */
  private get instant(): boolean {
    const o = this.opts;
    return o.manual !== true && o.fault === undefined && !this.logRequests && (o.latencyNs === undefined || o.latencyNs === 0) && this.busyChannels === 0 && this.queue.length === 0;
  }

  private execute(op: MemOp, sector: number, nrSectors: number, buf: Uint8Array | undefined, f: MemFault | undefined): IoStatus {
    if (f?.kind === 'error') return this.fail('error');
    if (f?.kind === 'eopnotsupp') return this.fail('eopnotsupp');
    switch (op) {
      case 'flush':
        if (this.opts.flush === false) return 'eopnotsupp';
        this.c.flushes = (this.c.flushes ?? 0) + 1;
        return 'ok';
      case 'discard': {
        if (this.opts.discard === false) return 'eopnotsupp';
        if (this.readOnly || !this.inRange(sector, nrSectors)) return this.fail('error');
        this.c.discards = (this.c.discards ?? 0) + 1;
        this.data.fill(0, sector * SECTOR_SIZE, (sector + nrSectors) * SECTOR_SIZE);
        return 'ok';
      }
      case 'read': {
        const data = buf as Uint8Array;
        if (!this.validIo(sector, data)) return this.fail('error');
        data.set(this.data.subarray(sector * SECTOR_SIZE, sector * SECTOR_SIZE + data.length));
        if (f?.kind === 'stale-read') {
          for (let s = 0; s < nrSectors; s++) {
            const old = this.history.get(sector + s);
            if (old !== undefined) data.set(old, s * SECTOR_SIZE);
          }
        }
        if (f?.kind === 'corrupt') data[f.byteOffset] = (data[f.byteOffset] as number) ^ f.xor;
        this.c.reads = (this.c.reads ?? 0) + 1;
        this.c.read_bytes = (this.c.read_bytes ?? 0) + data.length;
        return 'ok';
      }
      case 'write': {
        const data = buf as Uint8Array;
        if (this.readOnly || !this.validIo(sector, data)) return this.fail('error');
        this.c.writes = (this.c.writes ?? 0) + 1;
        this.c.write_bytes = (this.c.write_bytes ?? 0) + data.length;
        if (f?.kind === 'lose-write') return 'ok';
        let src = data;
        if (f?.kind === 'corrupt') {
          src = data.slice();
          src[f.byteOffset] = (src[f.byteOffset] as number) ^ f.xor;
        }
        const target = f?.kind === 'misdirect-write' ? f.toSector : sector;
        const n = f?.kind === 'torn-write' ? Math.min(f.sectors, nrSectors) : nrSectors;
        if (!this.inRange(target, n)) return 'ok'; // a misdirected write off the end vanishes
        if (this.opts.keepHistory === true) {
          for (let s = 0; s < n; s++) {
            const at = (target + s) * SECTOR_SIZE;
            this.history.set(target + s, this.data.slice(at, at + SECTOR_SIZE));
          }
        }
        this.data.set(src.subarray(0, n * SECTOR_SIZE), target * SECTOR_SIZE);
        return 'ok';
      }
    }
  }

  private validIo(sector: number, buf: Uint8Array): boolean {
    return buf.length > 0 && buf.length % SECTOR_SIZE === 0 && buf.length <= this.maxRequestBytes && this.inRange(sector, buf.length / SECTOR_SIZE);
  }

  private fail(s: 'error' | 'eopnotsupp'): IoStatus {
    this.c.errors = (this.c.errors ?? 0) + 1;
    return s;
  }
}
