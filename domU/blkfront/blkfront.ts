/**
 * blkfront's data path (Linux drivers/block/xen-blkfront.c): a BlockDevice
 * for the guest's workloads over one or more blkif rings.
 *
 * An I/O (one read/write/flush/discard call) is split into ring requests
 * ("parts") no larger than the negotiated limit: 11 segments of 4 KiB
 * (44 KiB) in the request itself, or up to feature-max-indirect-segments
 * with BLKIF_OP_INDIRECT, whose segment descriptors sit in read-only granted
 * pages. The data lives in the guest's own RAM pages (grants.ts): the
 * caller's buffer is copied into them for a write and out of them for a
 * read — Linux's persistent-grant copy, and the bounce that BlockDevice's
 * Uint8Array interface needs either way (see the report: a page-based API
 * would let non-persistent mode grant the caller's pages directly).
 *
 * Queues: each I/O goes to one queue (round-robin); each queue has its own
 * ring, event channel, shadow table and grant pools.
 *
 * Flow control, as ring.h intends: requests put during one tick are pushed
 * together (a microtask), and the backend is notified only when it asked
 * (req_event); responses are consumed until RING_FINAL_CHECK_FOR_RESPONSES
 * finds none. A full ring, or no free grant or page, queues the part (FIFO):
 * nothing is dropped; completions restart the queue.
 *
 * Resume (blkif_recover): when the backend goes away, every part in flight
 * or queued is kept; after the next handshake the parts are re-split to the
 * NEW limits and re-issued. An I/O completes exactly once, when all of its
 * parts have — never from a response of the old ring.
 */
import {
  BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT,
  BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
  BLKIF_SECTORS_PER_FRAME,
} from '../../shared/abi/blkif.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { FrontRing } from '../../shared/ring/front-ring.ts';
import {
  BLKIF_RING_FLAT, blkifRequestFlatCodec, blkifResponseFlatCodec, type BlkifRequestFlat, type BlkifResponseFlat,
} from '../../shared/ring/codec.ts';
import type { DomId, Gref, Pfn, Port } from '../../shared/types.ts';
import {
  SECTOR_SHIFT, SECTOR_SIZE, type BlockDevice, type DeviceCounters, type IoStatus,
} from '../workloads/block-device.ts';
import { GrantPool, type GrantCounters, type GrantPage } from './grants.ts';
import { ShadowTable, type BlkIo, type Part, type ShadowEntry } from './shadow.ts';
import { putIndirectSegment } from './wire.ts';

const PAGE = 4096;
const SEGS_PER_INDIRECT_FRAME = 512;

export interface BlkfrontOptions {
  /** Queues to ask for (Linux xen_blkif_max_queues: 4), capped by multi-queue-max-queues. */
  readonly maxQueues?: number;
  /** Ring order to ask for (Linux max_ring_page_order: 0), capped by max-ring-page-order. */
  readonly maxRingPageOrder?: number;
  /**
   * Indirect segments to use (Linux max_indirect_segments: 32; default 256 so
   * a 1 MiB request is one ring request), capped by feature-max-indirect-segments.
   * 11 or less: no indirect requests.
   */
  readonly maxIndirectSegments?: number;
  /** Offer feature-persistent (default true, as Linux). */
  readonly persistent?: boolean;
  /** BlockDevice.maxRequestBytes: larger I/Os are refused, smaller ones split (default 4 MiB). */
  readonly maxRequestBytes?: number;
  /**
   * Counters of another component (blkback's snapshot, when it is reachable) merged into
   * counters(): hypercalls and notifications are summed (both ends pay them); any other
   * name the frontend also keeps appears as backend_<name>; the rest as they are.
   */
  readonly extraCounters?: () => DeviceCounters;
  readonly log?: (line: string) => void;
}

/** What the backend published, read at connect (blkfront_connect, blkfront_gather_backend_features). */
export interface BlkBackendFeatures {
  readonly sectors: number;
  readonly info: number;
  readonly sectorSize: number;
  readonly physicalSectorSize: number;
  readonly readOnly: boolean;
  readonly flushCache: boolean;
  readonly barrier: boolean;
  readonly discard: boolean;
  readonly discardSecure: boolean;
  readonly persistent: boolean;
  readonly maxIndirectSegments: number;
}

/** What setup negotiated for the rings. */
export interface RingLayout {
  readonly nrQueues: number;
  readonly ringPageOrder: number;
}

const FRONT_COUNTERS = [
  'ring_requests', 'ring_responses', 'notifications_sent', 'notifications_received', 'hypercalls',
  'indirect_requests', 'split_parts', 'ring_full_stalls', 'grant_stalls', 'bad_responses', 'bad_response_ops',
  'requeued', 'io_completed', 'io_errors', 'bounce_bytes', 'resumes', 'features_cleared',
] as const;
type FrontCounterName = (typeof FRONT_COUNTERS)[number];

/** Counters whose front and back values are both costs of the same I/O: summed in counters(). */
const SUMMED_COUNTERS: ReadonlySet<string> = new Set(['hypercalls', 'notifications_sent', 'notifications_received']);

function vbdError(): Promise<IoStatus> { return Promise.resolve('error'); }

/** One ring with its event channel, shadow table, grant pools and waiting parts. */
export class BlkfrontQueue {
  readonly ring: FrontRing<BlkifRequestFlat, BlkifResponseFlat>;
  /** The request being built (BLKIF_RING_FLAT; reused, encoded into the ring's private slot then copied once). */
  private readonly req: BlkifRequestFlat = blkifRequestFlatCodec.create();
  /** The private copy of the response being consumed (RING_COPY_RESPONSE; reused). */
  private readonly rsp: BlkifResponseFlat = blkifResponseFlatCodec.create();
  readonly shadow: ShadowTable;
  data: GrantPool | null = null;
  ind: GrantPool | null = null;
  /** Parts waiting for a ring slot, a grant or a page (FIFO). */
  private waiting: Part[] = [];
  private waitHead = 0;
  private pushScheduled = false;
  /** The backend broke the ring (rsp_prod overflow): stop reading it until resume. */
  broken = false;
  private closed = false;
  private readonly indImage = new Uint8Array(PAGE);

  constructor(
    private readonly f: Blkfront,
    readonly index: number,
    readonly ringPfns: readonly Pfn[],
    readonly ringRefs: readonly Gref[],
    readonly port: Port,
    maxSegs: number,
  ) {
    const k = f.k;
    this.ring = FrontRing.init(k.mem.region(ringPfns as Pfn[]), BLKIF_RING_FLAT);
    this.shadow = new ShadowTable(this.ring.size, maxSegs);
  }

  get waitingCount(): number { return this.waiting.length - this.waitHead; }

  /** [enqueue part] issues part now, or queues it behind the ones already waiting. */
  enqueue(part: Part): void {
    if (this.waitingCount > 0 || !this.issue(part)) this.waiting.push(part);
  }

  /** Issues waiting parts while the ring and grants allow. */
  private pump(): void {
    while (this.waitHead < this.waiting.length) {
      const p = this.waiting[this.waitHead] as Part;
      if (!this.issue(p)) return;
      this.waiting[this.waitHead] = undefined as unknown as Part;
      this.waitHead++;
    }
    this.waiting.length = 0;
    this.waitHead = 0;
  }

  /** [issue part] puts part on the ring; false (counted) when a slot, grant or page is missing. */
  private issue(part: Part): boolean {
    const f = this.f;
    if (this.closed || this.broken) return false;
    const io = part.io;
    // A feature the backend disowned (EOPNOTSUPP) while this part waited: finish it as if it had been refused.
    if (io.kind === 'flush' && f.flushOp < 0) { f.partDone(part, 'ok'); return true; }
    if (io.kind === 'discard' && !f.discardSupported) { f.partDone(part, 'eopnotsupp'); return true; }
    if (this.ring.freeRequests() === 0) { f.c.ring_full_stalls++; return false; }
    const e = this.shadow.take() as ShadowEntry;
    const q = this.req;
    q.handle = 0;
    q.sectorNumber = io.sector + part.sectorOff;
    q.nrSegments = 0;
    switch (io.kind) {
      case 'flush':
        q.operation = f.flushOp;
        break;
      case 'discard':
        q.operation = BLKIF_OP_DISCARD;
        q.flag = 0;
        q.nrSectors = part.nrSectors;
        break;
      default:
        if (!this.fillData(part, e, q)) {
          this.shadow.release(e);
          f.c.grant_stalls++;
          return false;
        }
        break;
    }
    e.part = part;
    e.operation = q.operation === BLKIF_OP_INDIRECT ? q.indirectOp : q.operation;
    q.idLo = e.slot;
    q.idHi = e.gen;
    this.ring.putRequestFrom(blkifRequestFlatCodec, q);
    f.c.ring_requests++;
    this.schedulePush();
    return true;
  }

  /** Takes the pages, copies a write's data in, builds the segments (direct or indirect). */
  private fillData(part: Part, e: ShadowEntry, q: BlkifRequestFlat): boolean {
    const f = this.f;
    const io = part.io;
    const write = io.kind === 'write';
    const nsegs = Math.ceil(part.nrSectors / BLKIF_SECTORS_PER_FRAME);
    const indirect = nsegs > BLKIF_MAX_SEGMENTS_PER_REQUEST;
    const nInd = indirect ? Math.ceil(nsegs / SEGS_PER_INDIRECT_FRAME) : 0;
    const data = this.data as GrantPool;
    for (let i = 0; i < nsegs; i++) {
      const g = data.take(write);
      if (g === undefined) { this.giveBack(e); return false; }
      e.data[i] = g;
      e.nData = i + 1;
    }
    for (let i = 0; i < nInd; i++) {
      const g = (this.ind as GrantPool).take(true);
      if (g === undefined) { this.giveBack(e); return false; }
      e.ind[i] = g;
      e.nInd = i + 1;
    }
    const buf = io.buf as Uint8Array;
    const base = part.sectorOff << SECTOR_SHIFT;
    let left = part.nrSectors;
    const k = f.k;
    for (let i = 0; i < nsegs; i++) {
      const g = e.data[i] as GrantPage;
      const n = left < BLKIF_SECTORS_PER_FRAME ? left : BLKIF_SECTORS_PER_FRAME;
      if (write) {
        // Our own page: the MMU check is ours; the bytes go in before the request is visible.
        k.machine.copyIn(k.mem.translatePfn(g.pfn, true), buf, base + i * PAGE, n << SECTOR_SHIFT);
      }
      if (indirect) putIndirectSegment(this.indImage, i % SEGS_PER_INDIRECT_FRAME, g.gref, 0, n - 1);
      else {
        q.segGref[i] = g.gref;
        q.segFirstSect[i] = 0;
        q.segLastSect[i] = n - 1;
      }
      if (indirect && (i % SEGS_PER_INDIRECT_FRAME === SEGS_PER_INDIRECT_FRAME - 1 || i === nsegs - 1)) {
        const page = e.ind[Math.floor(i / SEGS_PER_INDIRECT_FRAME)] as GrantPage;
        const used = (i % SEGS_PER_INDIRECT_FRAME) + 1;
        k.machine.copyIn(k.mem.translatePfn(page.pfn, true), this.indImage, 0, used * 8);
      }
      left -= n;
    }
    if (write) f.c.bounce_bytes += part.nrSectors << SECTOR_SHIFT;
    if (indirect) {
      q.operation = BLKIF_OP_INDIRECT;
      q.indirectOp = write ? BLKIF_OP_WRITE : BLKIF_OP_READ;
      q.nrSegments = nsegs;
      // All 8 indirect_grefs go on the wire: the unused ones zero, not a reused struct's leftovers.
      for (let i = 0; i < 8; i++) q.indirectGrefs[i] = i < nInd ? (e.ind[i] as GrantPage).gref : 0;
      f.c.indirect_requests++;
    } else {
      q.operation = write ? BLKIF_OP_WRITE : BLKIF_OP_READ;
      q.nrSegments = nsegs;
    }
    return true;
  }

  /** Returns a shadow entry's pages to their pools. */
  private giveBack(e: ShadowEntry): void {
    for (let i = 0; i < e.nData; i++) {
      (this.data as GrantPool).give(e.data[i] as GrantPage);
      e.data[i] = null;
    }
    for (let i = 0; i < e.nInd; i++) {
      (this.ind as GrantPool).give(e.ind[i] as GrantPage);
      e.ind[i] = null;
    }
    e.nData = 0;
    e.nInd = 0;
  }

  private schedulePush(): void {
    if (this.pushScheduled) return;
    this.pushScheduled = true;
    queueMicrotask(() => this.push());
  }

  /** RING_PUSH_REQUESTS_AND_CHECK_NOTIFY for everything put this tick. */
  push(): void {
    this.pushScheduled = false;
    if (this.closed) return;
    if (this.ring.pushRequestsAndCheckNotify()) {
      this.f.c.notifications_sent++;
      this.f.k.evtchn.notify(this.port);
    }
  }

  /** The event handler: consume every response, with the final check, then refill from the waiting parts. */
  onEvent(): void {
    this.f.c.notifications_received++;
    this.drain();
  }

  /** Consumes responses until RING_FINAL_CHECK_FOR_RESPONSES finds none. */
  drain(): void {
    if (this.closed || this.broken) return;
    for (;;) {
      const r = this.ring.hasUnconsumedResponses();
      if (!r.ok) { this.breakRing(r.error.kind); return; }
      for (let n = r.value; n > 0; n--) {
        // RING_COPY_RESPONSE: the slot is copied once; only the private copy is decoded (never fails).
        this.ring.copyResponseInto(blkifResponseFlatCodec, this.rsp);
        this.f.c.ring_responses++;
        this.complete(this.rsp);
      }
      const more = this.ring.finalCheckForResponses(1);
      if (!more.ok) { this.breakRing(more.error.kind); return; }
      if (!more.value) break;
    }
    if (this.waitingCount > 0) this.pump();
    (this.data as GrantPool | null)?.retryRevokes();
    this.f.maybeRetryRetired();
  }

  private breakRing(kind: string): void {
    this.broken = true;
    this.f.log(`queue ${this.index}: the backend broke the ring (${kind}); waiting for a resume`);
  }

  /** blkif_completion: match the id, copy a read's data out, give the pages back, finish the part. */
  private complete(rsp: BlkifResponseFlat): void {
    const f = this.f;
    const e = this.shadow.lookup(rsp.idLo, rsp.idHi);
    if (e === undefined) { f.c.bad_responses++; return; }
    const part = e.part as Part;
    const io = part.io;
    let st: IoStatus;
    if (rsp.operation !== e.operation) {
      f.c.bad_response_ops++;
      st = 'error';
    } else if (rsp.status === BLKIF_RSP_OKAY) {
      st = 'ok';
    } else if (rsp.status === BLKIF_RSP_EOPNOTSUPP || (rsp.status === BLKIF_RSP_ERROR && e.operation === BLKIF_OP_WRITE_BARRIER && e.nData === 0)) {
      // The backend does not do this after all: drop the feature, as blkif_interrupt does.
      st = 'eopnotsupp';
      f.clearFeature(e.operation);
    } else {
      st = 'error';
    }
    if (st === 'ok' && io.kind === 'read') {
      const buf = io.buf as Uint8Array;
      const base = part.sectorOff << SECTOR_SHIFT;
      let left = part.nrSectors;
      const k = f.k;
      for (let i = 0; i < e.nData; i++) {
        const g = e.data[i] as GrantPage;
        const n = left < BLKIF_SECTORS_PER_FRAME ? left : BLKIF_SECTORS_PER_FRAME;
        k.machine.copyOut(k.mem.translatePfn(g.pfn, false), buf, base + i * PAGE, n << SECTOR_SHIFT);
        left -= n;
      }
      f.c.bounce_bytes += part.nrSectors << SECTOR_SHIFT;
    }
    this.giveBack(e);
    this.shadow.release(e);
    f.partDone(part, st);
  }

  /**
   * [detach] ends this queue (teardown): returns every part in flight or
   * waiting, gives back all pages (grants the backend still maps stay lent,
   * never reused), closes the port and revokes the ring.
   */
  detach(): Part[] {
    const parts: Part[] = [];
    for (const e of this.shadow.inFlightEntries()) {
      parts.push(e.part as Part);
      this.giveBack(e);
      this.shadow.release(e);
    }
    for (let i = this.waitHead; i < this.waiting.length; i++) parts.push(this.waiting[i] as Part);
    this.waiting = [];
    this.waitHead = 0;
    this.closed = true;
    return parts;
  }
}

/**
 * [Blkfront] is one virtual block device (xvdX) of the guest whose kernel is k.
 * The xenbus layer (xenbus.ts) drives its lifecycle; workloads use it as a
 * BlockDevice once `whenConnected()` resolves.
 */
export class Blkfront implements BlockDevice {
  readonly sectorSize = SECTOR_SIZE;
  readonly maxRequestBytes: number;
  readonly maxQueues: number;
  readonly maxRingPageOrder: number;
  readonly maxIndirectWanted: number;
  readonly persistentWanted: boolean;
  features: BlkBackendFeatures | null = null;
  queues: BlkfrontQueue[] = [];
  /** The wire op flush() uses (FLUSH_DISKCACHE, else WRITE_BARRIER), or -1 for none. */
  flushOp = -1;
  private discardOk = false;
  /** feature-discard, as negotiated and not since refused. */
  get discardSupported(): boolean { return this.discardOk; }
  /** Negotiated: segments per ring request (11 without indirect). */
  segsPerRequest = BLKIF_MAX_SEGMENTS_PER_REQUEST;
  persistent = false;
  private state: 'new' | 'setup' | 'connected' | 'closed' = 'new';
  /** Parts waiting for a connection (submitted before connect, or in flight at a resume). */
  private held: Part[] = [];
  private rr = 0;
  /** The frontend's counters; the data path bumps them by name (a monomorphic field access, not a keyed one). */
  readonly c: Record<FrontCounterName, number>;
  readonly grantCounters: GrantCounters = { grants_issued: 0, grant_ends: 0, persistent_reuses: 0, persistent_new: 0, revoke_deferred: 0 };
  /** Pools of earlier connections whose pages the old backend still maps. */
  private retiredPools: GrantPool[] = [];
  private retiredRings: { pfn: Pfn; gref: Gref }[] = [];
  private connectWaiters: (() => void)[] = [];
  private backDom: DomId = 0 as DomId;
  private readonly ioFree: BlkIo[] = [];
  private readonly partFree: Part[] = [];

  constructor(readonly k: DomainKernel, readonly devid: number, readonly opts: BlkfrontOptions = {}) {
    this.maxRequestBytes = opts.maxRequestBytes ?? 4 << 20;
    this.maxQueues = opts.maxQueues ?? 4;
    this.maxRingPageOrder = opts.maxRingPageOrder ?? 0;
    this.maxIndirectWanted = opts.maxIndirectSegments ?? 256;
    this.persistentWanted = opts.persistent ?? true;
    const c = {} as Record<string, number>;
    for (const n of FRONT_COUNTERS) c[n] = 0;
    this.c = c as Record<FrontCounterName, number>;
    if (k.pageSize !== PAGE) throw new RangeError(`blkfront needs 4 KiB pages (blkif segments are 4 KiB frames), this machine has ${k.pageSize}`);
  }

  // ---- BlockDevice ----

  get sectors(): number { return this.features?.sectors ?? 0; }
  get readOnly(): boolean { return this.features?.readOnly ?? false; }
  get isConnected(): boolean { return this.state === 'connected'; }

  /** [whenConnected] resolves once the device is connected (at once if it is). */
  whenConnected(): Promise<void> {
    if (this.state === 'connected') return Promise.resolve();
    return new Promise((r) => this.connectWaiters.push(r));
  }

  read(sector: number, into: Uint8Array): Promise<IoStatus> {
    return this.rw('read', sector, into);
  }

  write(sector: number, from: Uint8Array): Promise<IoStatus> {
    if (this.readOnly) return vbdError();
    return this.rw('write', sector, from);
  }

  flush(): Promise<IoStatus> {
    if (this.state === 'closed') return vbdError();
    // No flush op: the disk has no volatile cache to flush (the block layer's REQ_PREFLUSH is a no-op).
    if (this.state === 'connected' && this.flushOp < 0) return Promise.resolve('ok');
    return this.submit('flush', 0, 0, null);
  }

  discard(sector: number, nrSectors: number): Promise<IoStatus> {
    if (this.state === 'closed') return vbdError();
    if (!Number.isSafeInteger(sector) || !Number.isSafeInteger(nrSectors) || sector < 0 || nrSectors <= 0) return vbdError();
    if (this.state === 'connected') {
      if (this.readOnly || sector + nrSectors > this.sectors) return vbdError();
      if (!this.discardOk) return Promise.resolve('eopnotsupp');
    }
    return this.submit('discard', sector, nrSectors, null);
  }

  counters(): DeviceCounters {
    const out: Record<string, number> = { ...this.c, ...this.grantCounters };
    let pg = 0;
    for (const q of this.queues) pg += (q.data?.persistent === true ? q.data.size : 0) + (q.ind?.persistent === true ? q.ind.size : 0);
    out.persistent_pool_pages = pg;
    const extra = this.opts.extraCounters?.();
    if (extra) {
      for (const [name, v] of Object.entries(extra)) {
        // Costs both ends pay add up; a count both ends keep of the same thing (ring_requests) is shown apart.
        if (!(name in out)) out[name] = v;
        else if (SUMMED_COUNTERS.has(name)) out[name] = (out[name] ?? 0) + v;
        else out[`backend_${name}`] = v;
      }
    }
    return out;
  }

  private rw(kind: 'read' | 'write', sector: number, buf: Uint8Array): Promise<IoStatus> {
    if (this.state === 'closed') return vbdError();
    const len = buf.length;
    if (!Number.isSafeInteger(sector) || sector < 0 || len === 0 || len % SECTOR_SIZE !== 0 || len > this.maxRequestBytes) return vbdError();
    const n = len >>> SECTOR_SHIFT;
    if (this.state === 'connected' && sector + n > this.sectors) return vbdError();
    return this.submit(kind, sector, n, buf);
  }

  private submit(kind: BlkIo['kind'], sector: number, nrSectors: number, buf: Uint8Array | null): Promise<IoStatus> {
    return new Promise<IoStatus>((resolve) => {
      const io = this.ioFree.pop() ?? { kind, sector, nrSectors, buf, resolve: null, partsLeft: 0, status: 'ok' };
      io.kind = kind;
      io.sector = sector;
      io.nrSectors = nrSectors;
      io.buf = buf;
      io.resolve = resolve;
      io.status = 'ok';
      io.partsLeft = 1;
      const whole = this.newPart(io, 0, nrSectors);
      if (this.state !== 'connected') { this.held.push(whole); return; }
      this.dispatch(whole, this.nextQueue());
    });
  }

  private nextQueue(): BlkfrontQueue {
    const q = this.queues[this.rr] as BlkfrontQueue;
    this.rr = this.rr + 1 >= this.queues.length ? 0 : this.rr + 1;
    return q;
  }

  private newPart(io: BlkIo, sectorOff: number, nrSectors: number): Part {
    const p = this.partFree.pop();
    if (p === undefined) return { io, sectorOff, nrSectors };
    p.io = io;
    p.sectorOff = sectorOff;
    p.nrSectors = nrSectors;
    return p;
  }

  /** Splits part to the current limit and enqueues the pieces on q. */
  private dispatch(part: Part, q: BlkfrontQueue): void {
    const io = part.io;
    const max = this.segsPerRequest * BLKIF_SECTORS_PER_FRAME;
    if ((io.kind !== 'read' && io.kind !== 'write') || part.nrSectors <= max) { q.enqueue(part); return; }
    const pieces = Math.ceil(part.nrSectors / max);
    io.partsLeft += pieces - 1;
    this.c.split_parts += pieces - 1;
    const start = part.sectorOff;
    const total = part.nrSectors;
    part.nrSectors = max;
    q.enqueue(part);
    for (let i = 1; i < pieces; i++) {
      const off = i * max;
      q.enqueue(this.newPart(io, start + off, Math.min(max, total - off)));
    }
  }

  /** A part finished: the I/O completes (once) when its last part does. */
  partDone(part: Part, st: IoStatus): void {
    const io = part.io;
    if (st === 'error') io.status = 'error';
    else if (st === 'eopnotsupp' && io.status === 'ok') io.status = 'eopnotsupp';
    this.partFree.push(part);
    if (--io.partsLeft > 0) return;
    const resolve = io.resolve as (s: IoStatus) => void;
    const status = io.status;
    io.resolve = null;
    io.buf = null;
    this.c.io_completed++;
    if (status !== 'ok') this.c.io_errors++;
    this.ioFree.push(io);
    resolve(status);
  }

  count(name: FrontCounterName, n = 1): void { this.c[name] += n; }
  log(line: string): void { this.opts.log?.(`blkfront ${this.devid}: ${line}`); }

  /** An EOPNOTSUPP (or an empty barrier's ERROR) for op: stop using the feature. */
  clearFeature(op: number): void {
    if (op === BLKIF_OP_FLUSH_DISKCACHE || op === BLKIF_OP_WRITE_BARRIER) {
      if (this.flushOp >= 0) { this.log(`${op === BLKIF_OP_WRITE_BARRIER ? 'barrier' : 'flush'} not supported by the backend: disabled`); this.c.features_cleared++; }
      this.flushOp = -1;
    } else if (op === BLKIF_OP_DISCARD) {
      if (this.discardOk) { this.log('discard not supported by the backend: disabled'); this.c.features_cleared++; }
      this.discardOk = false;
    }
  }

  // ---- lifecycle (driven by xenbus.ts) ----

  /**
   * [setupRings backDom layout] is talk_to_blkback's ring work: per queue,
   * 2^order ring pages from our RAM, SHARED_RING_INIT, granted to the
   * backend; an unbound port with our handler. Returns the keys to publish.
   */
  setupRings(backDom: DomId, layout: RingLayout): Record<string, string> {
    this.backDom = backDom;
    const k = this.k;
    const pages = 1 << layout.ringPageOrder;
    const keys: Record<string, string> = {};
    const maxSegs = Math.max(BLKIF_MAX_SEGMENTS_PER_REQUEST, this.maxIndirectWanted);
    for (let qi = 0; qi < layout.nrQueues; qi++) {
      const pfns: Pfn[] = [];
      const refs: Gref[] = [];
      for (let i = 0; i < pages; i++) {
        const pfn = k.ram.alloc();
        k.mem.fill(k.gpa(pfn), PAGE, 0);
        pfns.push(pfn);
      }
      const before = k.hc.calls;
      const port = k.evtchn.allocUnbound(backDom);
      this.c.hypercalls += k.hc.calls - before;
      const q = new BlkfrontQueue(this, qi, pfns, refs, port, maxSegs);
      // The ring is initialised (SHARED_RING_INIT, in the FrontRing) before it is granted.
      for (const pfn of pfns) {
        const ref = k.gnttab.grantForeignAccess(backDom, pfn, false);
        if (ref === undefined) throw new RangeError('grant table full while granting the ring');
        refs.push(ref);
        this.grantCounters.grants_issued++;
      }
      k.bindHandler(port, () => q.onEvent());
      this.queues.push(q);
      const prefix = layout.nrQueues === 1 ? '' : `queue-${qi}/`;
      if (layout.ringPageOrder === 0) keys[`${prefix}ring-ref`] = String(refs[0]);
      else refs.forEach((r, i) => { keys[`${prefix}ring-ref${i}`] = String(r); });
      keys[`${prefix}event-channel`] = String(port);
    }
    if (layout.ringPageOrder > 0) keys['ring-page-order'] = String(layout.ringPageOrder);
    if (layout.nrQueues > 1) keys['multi-queue-num-queues'] = String(layout.nrQueues);
    keys.protocol = 'x86_64-abi';
    keys['feature-persistent'] = this.persistentWanted ? '1' : '0';
    this.state = 'setup';
    return keys;
  }

  /**
   * [connect features resumed] is blkfront_connect: take the backend's
   * features (limits may differ from last time), build the grant pools, and
   * issue everything held — re-split to the new limits (blkif_recover).
   */
  connect(features: BlkBackendFeatures): void {
    this.features = features;
    this.persistent = this.persistentWanted && features.persistent;
    const ind = Math.min(this.maxIndirectWanted, features.maxIndirectSegments);
    this.segsPerRequest = ind > BLKIF_MAX_SEGMENTS_PER_REQUEST ? ind : BLKIF_MAX_SEGMENTS_PER_REQUEST;
    this.flushOp = features.flushCache ? BLKIF_OP_FLUSH_DISKCACHE : features.barrier ? BLKIF_OP_WRITE_BARRIER : -1;
    this.discardOk = features.discard;
    for (const q of this.queues) {
      q.data = new GrantPool(this.k, this.backDom, this.persistent, false, this.grantCounters);
      q.ind = new GrantPool(this.k, this.backDom, this.persistent, true, this.grantCounters);
    }
    this.state = 'connected';
    this.retryRetired();
    this.log(`connected: ${this.sectors} sectors, ${this.queues.length} queue(s) of ${this.queues[0]?.ring.size ?? 0} slots, ${this.segsPerRequest} segments per request, persistent ${this.persistent}, flush op ${this.flushOp}`);
    const held = this.held;
    this.held = [];
    for (const p of held) this.reissue(p);
    const w = this.connectWaiters;
    this.connectWaiters = [];
    for (const f of w) f();
  }

  /** A part held across a resume (or from before connecting): checked against the disk it now faces, re-split, issued. */
  private reissue(part: Part): void {
    const io = part.io;
    const f = this.features as BlkBackendFeatures;
    let refuse: IoStatus | null = null;
    if (io.kind === 'read' || io.kind === 'write' || io.kind === 'discard') {
      if (io.sector + part.sectorOff + part.nrSectors > f.sectors) refuse = 'error';
      if (io.kind !== 'read' && f.readOnly) refuse = 'error';
    }
    if (io.kind === 'discard' && !this.discardOk) refuse = 'eopnotsupp';
    if (io.kind === 'flush' && this.flushOp < 0) refuse = 'ok';
    if (refuse !== null) { this.partDone(part, refuse); return; }
    this.dispatch(part, this.nextQueue());
  }

  /**
   * [teardown reason] is blkif_free: every queue is detached. 'resume' keeps
   * the parts in flight to re-issue after the next connect; 'close' and
   * 'remove' fail them.
   */
  teardown(reason: 'resume' | 'close' | 'remove'): void {
    const k = this.k;
    const parts: Part[] = [];
    for (const q of this.queues) {
      for (const p of q.detach()) parts.push(p);
      try {
        const before = k.hc.calls;
        k.evtchn.close(q.port);
        this.c.hypercalls += k.hc.calls - before;
      } catch {
        // The port went with the backend: nothing to close.
      }
      for (const pool of [q.data, q.ind]) {
        if (pool === null) continue;
        if (pool.releaseAll() > 0) this.retiredPools.push(pool);
      }
      q.ringPfns.forEach((pfn, i) => this.retiredRings.push({ pfn, gref: q.ringRefs[i] as Gref }));
    }
    this.queues = [];
    this.retryRetired();
    if (reason === 'resume') {
      this.c.resumes++;
      this.c.requeued += parts.length;
      this.held.push(...parts);
      this.state = 'new';
      this.log(`backend gone: ${parts.length} request(s) kept for re-issue`);
      return;
    }
    const failed = [...this.held, ...parts];
    this.held = [];
    this.state = reason === 'close' ? 'new' : 'closed';
    for (const p of failed) this.partDone(p, 'error');
  }

  /** Cheap when nothing is retired: retries the revocations a dead backend held up. */
  maybeRetryRetired(): void {
    if (this.retiredRings.length > 0 || this.retiredPools.length > 0) this.retryRetired();
  }

  /** Revokes ring pages and pool pages the old backend has let go of; frees them. */
  retryRetired(): number {
    const k = this.k;
    this.retiredRings = this.retiredRings.filter(({ pfn, gref }) => {
      if (!k.gnttab.endForeignAccessRef(gref)) return true;
      k.gnttab.freeRef(gref);
      this.grantCounters.grant_ends++;
      k.ram.release(pfn);
      return false;
    });
    this.retiredPools = this.retiredPools.filter((p) => p.retryStuck() > 0);
    return this.retiredRings.length + this.retiredPools.length;
  }

  /** Parts queued on every queue and held for connection (tests). */
  get backlog(): number {
    let n = this.held.length;
    for (const q of this.queues) n += q.waitingCount + q.shadow.inFlight;
    return n;
  }
}
