/**
 * blkback's data path (Linux xen-blkback/blkback.c): one BlkbackDevice per
 * vbd, one BlkbackRing per queue, all event-driven on dom0's vCPU.
 *
 * Per ring, an event (or a completion that freed resources) runs one
 * processing pass:
 *
 *  1. Consume. req_prod is read once and bounded (BackRing): a frontend that
 *     claims more than a ring of requests broke the protocol and the whole
 *     device is disconnected (XenBus Closing + error node) while other
 *     devices go on. Each slot is copied ONCE into private memory and only
 *     that copy is decoded and validated (request.ts). A refusal is answered
 *     at once with BLKIF_RSP_ERROR or BLKIF_RSP_EOPNOTSUPP and the id echoed.
 *     When the pending-request pool or the storage queue is full we stop
 *     consuming (oo_req, xentop's VBD_OO) until a completion frees a slot:
 *     backpressure, never a drop.
 *  2. Map, for the whole batch at once: indirect pages first (their
 *     descriptors copied once into private memory, then validated), then
 *     the data, by the device's mode:
 *       - persistent: look up each gref in the cache; all misses in ONE
 *         GNTTABOP_map_grant_ref; a fully cached request costs no hypercall;
 *       - map: every segment of the batch in ONE map hypercall, and every
 *         unmap of a batch of completions in ONE unmap hypercall (charged by
 *         the optional UnmapCostModel: the TLB shootdown);
 *       - copy: dom0 bounce pages, GNTTABOP_copy batched (writes before the
 *         I/O, reads after it), no mapping at all.
 *     A request whose grant fails gets BLKIF_RSP_ERROR; whatever of it did
 *     map is unmapped with the next batch (XSA-361).
 *  3. Submit to BlkStorage and kick it.
 *  4. Completions: unmap (batched), copy back (batched), write responses
 *     from a private, fully-defined struct (XSA-216), pushing every
 *     `pushEvery` responses and notifying only when the frontend asked
 *     (rsp_event).
 *  5. RING_FINAL_CHECK_FOR_REQUESTS: re-arm req_event, look once more.
 *
 * Nothing here is allocated per request on the persistent path: pending
 * requests, their segment arrays and storage ios are preallocated per ring.
 */
import {
  BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_SECTOR_SIZE,
} from '../../shared/abi/blkif.ts';
import { GNTST } from '../../shared/abi/grant.ts';
import { invariant } from '../../shared/invariant.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { CopyRequest, MapRequest, MapResult, UnmapRequest } from '../../shared/kernel/gnttab.ts';
import { clearForeignP2mMapping, setForeignP2mMapping } from '../dma/frames.ts';
import { BackRing } from '../../shared/ring/back-ring.ts';
import type { RingError } from '../../shared/ring/sring.ts';
import { notifyNeeded, type RingIdx } from '../../shared/ring/u32.ts';
import type { DomId, GrantHandle, Gref, Pfn, Port } from '../../shared/types.ts';
import type { VbdStats } from '../../cli/views/stats.ts';
import { UnmapCostModel, type UnmapCostOptions } from './cost-model.ts';
import { PersistentGrantCache, type PersistentGrant } from './persistent.ts';
import {
  REJECT, REJECT_NAMES, SEGS_PER_INDIRECT_FRAME, checkHeader, checkSegments, decodeReject, refusedHeader, rejectStatus,
  type BlkReqKind, type DeviceLimits, type ParsedHeader, type RejectCode,
} from './request.ts';
import type { BlkSegment, BlkStorage, BlkStorageIo, BlkStorageStatus } from './storage.ts';
import { BLKIF_RING_FLAT, blkifRequestFlatCodec, blkifResponseFlatCodec, type BlkifRequestFlat, type BlkifResponseFlat } from '../../shared/ring/codec.ts';
import { readU32LE } from './wire.ts';

/** How blkback moves data between the guest's pages and the storage. */
export type BlkbackMode = 'persistent' | 'map' | 'copy';
export const BLKBACK_MODES: readonly BlkbackMode[] = ['persistent', 'map', 'copy'];

/** Counter names, as the fio JSON and `counters()` show them. */
export const BLKBACK_COUNTERS = [
  // xentop's VBD counters (blkback sysfs statistics).
  'oo_req', 'rd_req', 'wr_req', 'f_req', 'ds_req', 'rd_sect', 'wr_sect',
  // the ring
  'ring_requests', 'ring_responses', 'error_responses', 'eopnotsupp_responses', 'indirect_requests',
  'notifications_sent', 'notifications_received', 'protocol_errors',
  // grants and hypercalls
  'hypercalls', 'grant_maps', 'grant_map_failures', 'grant_unmaps', 'grant_copies', 'map_hypercalls', 'unmap_hypercalls', 'copy_hypercalls',
  'persistent_hits', 'persistent_misses', 'persistent_overflow_maps', 'persistent_purged', 'persistent_grants',
  'unmap_cost_ns', 'tlb_shootdowns',
  // refusals, by reason (request.ts REJECT, in its order)
  'reject_unknown_operation', 'reject_bad_segment_count', 'reject_bad_segment', 'reject_beyond_disk', 'reject_read_only',
  'reject_bad_indirect_op', 'reject_bad_indirect_count', 'reject_indirect_not_offered', 'reject_not_supported',
  'reject_bad_grant', 'reject_io_error',
] as const;
export type BlkbackCounterName = (typeof BLKBACK_COUNTERS)[number];
export type BlkbackCounters = Record<BlkbackCounterName, number>;

function newCounters(): BlkbackCounters {
  const c = {} as Record<string, number>;
  for (const n of BLKBACK_COUNTERS) c[n] = 0;
  return c as BlkbackCounters;
}

/** REJECT code → its counter (index 0, "none", has none). */
const REJECT_COUNTER: readonly BlkbackCounterName[] = BLKBACK_COUNTERS.slice(BLKBACK_COUNTERS.indexOf('reject_unknown_operation') - 1);
for (let i = 1; i < REJECT_NAMES.length; i++) {
  invariant(REJECT_COUNTER[i] === `reject_${(REJECT_NAMES[i] as string).replace(/-/g, '_')}`, `reject counter ${i} out of step with REJECT_NAMES`);
}

export interface BlkbackDeviceConfig {
  /** Data movement. 'persistent' falls back to `fallback` when the frontend does not offer feature-persistent. */
  readonly mode: BlkbackMode;
  readonly fallback?: Exclude<BlkbackMode, 'persistent'>;
  /** feature-max-indirect-segments we advertise (0: no indirect). */
  readonly maxIndirectSegments: number;
  /** Push responses (and maybe notify) after this many (default 16). */
  readonly pushEvery?: number;
  /** Persistent-grant cache limits (Linux defaults). */
  readonly maxPersistentGrants?: number;
  readonly persistentUnusedMs?: number;
  readonly lruIntervalMs?: number;
  /** ms clock for the persistent-grant LRU (default performance.now). */
  readonly clock?: () => number;
  /** Charge a modelled TLB shootdown per unmap hypercall (off by default). */
  readonly unmapCost?: UnmapCostOptions;
  /** Offer these ops (default: what the storage supports). */
  readonly barrier?: boolean;
}

/** One segment's state in a pending request. */
const NO_PGRANT: PersistentGrant | null = null;

/** Linux's pending_req: one request from consumption to response. */
class PendingReq {
  idLo = 0;
  idHi = 0;
  /** The wire operation, echoed in the response. */
  operation = 0;
  readonly hdr: ParsedHeader = { kind: 'read', nsegs: 0, indirect: false, nIndirectPages: 0, sector: 0, nrSectors: 0, secure: false };
  reject: RejectCode = REJECT.none;
  ioStatus: BlkStorageStatus = 'ok';
  /** Segment descriptors (private copies). */
  readonly gref: number[];
  readonly first: number[];
  readonly last: number[];
  /** Where each segment is mapped (or bounced) in dom0. */
  readonly pfn: number[];
  /** Handle of a non-persistent mapping (-1: none). */
  readonly handle: number[];
  readonly pgrant: (PersistentGrant | null)[];
  readonly indGref: number[] = [0, 0, 0, 0, 0, 0, 0, 0];
  readonly indPfn: number[] = [-1, -1, -1, -1, -1, -1, -1, -1];
  readonly indHandle: number[] = [-1, -1, -1, -1, -1, -1, -1, -1];
  readonly indPgrant: (PersistentGrant | null)[] = [null, null, null, null, null, null, null, null];
  readonly io: BlkStorageIo;
  constructor(readonly index: number, maxSegs: number, complete: (p: PendingReq, s: BlkStorageStatus) => void) {
    this.gref = new Array<number>(maxSegs).fill(0);
    this.first = new Array<number>(maxSegs).fill(0);
    this.last = new Array<number>(maxSegs).fill(0);
    this.pfn = new Array<number>(maxSegs).fill(-1);
    this.handle = new Array<number>(maxSegs).fill(-1);
    this.pgrant = new Array<PersistentGrant | null>(maxSegs).fill(NO_PGRANT);
    const segments: BlkSegment[] = [];
    for (let i = 0; i < maxSegs; i++) segments.push({ pfn: 0 as Pfn, offset: 0, len: 0 });
    this.io = {
      op: 'read', sector: 0, nrSectors: 0, segments, nrSegments: 0, fua: false, secure: false,
      complete: (s) => complete(this, s),
    };
  }
}

/** What the xenbus layer hands the data path for one queue. */
export interface RingSpec {
  /** Grant refs of the ring pages (1 << ring-page-order of them). */
  readonly refs: readonly Gref[];
  /** The frontend's unbound port. */
  readonly port: number;
}

export type ConnectError =
  | { readonly kind: 'ring-map-failed'; readonly queue: number; readonly ref: number; readonly status: number }
  | { readonly kind: 'bind-failed'; readonly queue: number; readonly port: number; readonly message: string }
  | { readonly kind: 'no-ballooned-pages'; readonly need: number };

/**
 * [BlkbackDevice] is one vbd's backend state: its storage, its mode, its
 * persistent-grant cache, its counters and its rings.
 */
export class BlkbackDevice {
  readonly counters: BlkbackCounters = newCounters();
  readonly limits: DeviceLimits;
  readonly rings: BlkbackRing[] = [];
  mode: BlkbackMode;
  readonly costModel: UnmapCostModel | null;
  readonly clock: () => number;
  readonly pushEvery: number;
  /** Map data grants for the storage's device too (a DMA-capable storage). */
  readonly deviceMap: boolean;
  /** Device-mapped pfns and their bus addresses (what an unmap must name). */
  private readonly deviceBus = new Map<number, number>();
  /** Why the frontend was disconnected for breaking the protocol (or null). */
  protocolError: string | null = null;
  private connected = false;

  constructor(
    readonly k: DomainKernel,
    readonly frontDom: DomId,
    readonly storage: BlkStorage,
    readonly config: BlkbackDeviceConfig,
    /** Called once when the frontend broke the protocol: the xenbus layer reports it and closes. */
    private readonly onFatal: (kind: string, message: string) => void = () => {},
  ) {
    this.mode = config.mode;
    this.limits = {
      sectors: storage.sectors,
      readOnly: storage.readOnly,
      maxIndirectSegments: config.maxIndirectSegments,
      flush: storage.features.flush,
      barrier: config.barrier ?? storage.features.flush,
      discard: storage.features.discard,
      discardSecure: storage.features.discardSecure,
    };
    this.costModel = config.unmapCost ? new UnmapCostModel(config.unmapCost) : null;
    this.clock = config.clock ?? (() => performance.now());
    this.pushEvery = config.pushEvery ?? 16;
    this.deviceMap = storage.deviceMapping === true;
  }

  get isConnected(): boolean { return this.connected; }

  /**
   * [connect rings persistent] maps each queue's ring and binds its event
   * channel (connect_ring). persistent: the frontend offered feature-persistent.
   */
  connect(specs: readonly RingSpec[], persistent: boolean): { ok: true } | { ok: false; error: ConnectError } {
    this.disconnect();
    this.mode = this.config.mode === 'persistent' && !persistent ? (this.config.fallback ?? 'map') : this.config.mode;
    this.protocolError = null;
    for (let q = 0; q < specs.length; q++) {
      const r = BlkbackRing.connect(this, q, specs[q] as RingSpec);
      if (!r.ok) {
        this.disconnect();
        return r;
      }
      this.rings.push(r.value);
    }
    this.connected = true;
    // Requests the frontend queued before we bound: look once.
    for (const r of this.rings) r.kickProcessing();
    return { ok: true };
  }

  /** [disconnect] stops every ring (in-flight I/O finishes and is unmapped, unanswered), unmaps their caches. */
  disconnect(): void {
    for (const r of this.rings) r.shutdown();
    this.rings.length = 0;
    this.connected = false;
  }

  /** [persistentGrants] is how many grants the rings' caches hold now. */
  get persistentGrants(): number {
    let n = 0;
    for (const r of this.rings) n += r.cachedGrants;
    return n;
  }

  /** [fail why] is the frontend breaking the protocol: stop every ring and report (once). */
  fail(kind: string, message: string): void {
    this.counters.protocol_errors++;
    if (this.protocolError !== null) return;
    this.protocolError = `${kind}: ${message}`;
    for (const r of this.rings) r.halt();
    this.onFatal(kind, message);
  }

  /** [vbdStats dev] is xentop's view of this device. */
  vbdStats(dev: number): VbdStats {
    const c = this.counters;
    return { dev, backendType: 'blkback', ooReqs: c.oo_req, rdReqs: c.rd_req, wrReqs: c.wr_req, rdSects: c.rd_sect, wrSects: c.wr_sect };
  }

  /** A snapshot of the counters (with the cache size now). */
  snapshot(): BlkbackCounters {
    this.counters.persistent_grants = this.persistentGrants;
    if (this.costModel) {
      this.counters.unmap_cost_ns = this.costModel.chargedNs;
      this.counters.tlb_shootdowns = this.costModel.shootdowns;
    }
    return { ...this.counters };
  }

  // ---- grant operations shared by the rings (each one hypercall per batch) ----

  /**
   * GNTTABOP_map_grant_ref for reqs; counts. A request with `device` (data
   * for a storage that DMAs: storage.deviceMapping) is also mapped for the
   * device, and its foreign frame recorded where dom0's DMA API looks for it
   * (Linux's set_foreign_p2m_mapping), so the device reaches the guest's page.
   */
  mapGrants(reqs: readonly MapRequest[]): { status: number; handle: GrantHandle }[] {
    const before = this.k.hc.calls;
    const out = this.k.gnttab.mapGrantRefs(reqs);
    const calls = this.k.hc.calls - before;
    this.counters.hypercalls += calls;
    this.counters.map_hypercalls += calls;
    for (let i = 0; i < out.length; i++) {
      const r = out[i] as MapResult;
      if (r.status !== GNTST.okay) { this.counters.grant_map_failures++; continue; }
      this.counters.grant_maps++;
      const q = reqs[i] as MapRequest;
      if (q.device === true) {
        this.deviceBus.set(q.hostPfn, r.devBusAddr);
        setForeignP2mMapping(this.k, q.hostPfn, Math.floor(r.devBusAddr / this.k.pageSize));
      }
    }
    return out;
  }

  /** GNTTABOP_unmap_grant_ref for reqs (device mappings too), charged by the cost model per hypercall. */
  unmapGrants(reqs: readonly UnmapRequest[]): number[] {
    if (reqs.length === 0) return [];
    let list = reqs;
    if (this.deviceBus.size > 0) {
      list = reqs.map((q) => {
        const bus = q.hostPfn === -1 ? undefined : this.deviceBus.get(q.hostPfn);
        if (bus === undefined) return q;
        this.deviceBus.delete(q.hostPfn);
        clearForeignP2mMapping(this.k, q.hostPfn as Pfn);
        return { handle: q.handle, hostPfn: q.hostPfn, devBusAddr: bus };
      });
    }
    const before = this.k.hc.calls;
    const out = this.k.gnttab.unmapGrantRefs(list);
    const calls = this.k.hc.calls - before;
    this.counters.hypercalls += calls;
    this.counters.unmap_hypercalls += calls;
    this.counters.grant_unmaps += reqs.length;
    if (this.costModel) for (let i = 0; i < calls; i++) this.costModel.charge();
    return out;
  }

  copyGrants(reqs: readonly CopyRequest[]): number[] {
    if (reqs.length === 0) return [];
    const before = this.k.hc.calls;
    const out = this.k.gnttab.copy(reqs);
    const calls = this.k.hc.calls - before;
    this.counters.hypercalls += calls;
    this.counters.copy_hypercalls += calls;
    this.counters.grant_copies += reqs.length;
    return out;
  }

  /** Unmaps persistent grants dropped from the cache (one batch) and frees their pfns. */
  unmapPersistent(list: readonly PersistentGrant[]): void {
    if (list.length === 0) return;
    this.counters.persistent_purged += list.length;
    const st = this.unmapGrants(list.map((g) => ({ handle: g.handle, hostPfn: g.pfn })));
    list.forEach((g, i) => { if (st[i] === GNTST.okay) this.k.ballooned.release(g.pfn); });
  }

}

/** One queue: its ring, event channel and pending-request pool. */
export class BlkbackRing {
  /** The private copy of the request being consumed (BLKIF_RING_FLAT; reused). */
  private readonly req: BlkifRequestFlat = blkifRequestFlatCodec.create();
  /** The private response being written, every field defined (XSA-216; reused). */
  private readonly rsp: BlkifResponseFlat = blkifResponseFlatCodec.create();
  private readonly ring: BackRing<BlkifRequestFlat, BlkifResponseFlat>;
  private readonly pool: PendingReq[] = [];
  private readonly all: PendingReq[] = [];
  private batch: PendingReq[] = [];
  private completed: PendingReq[] = [];
  private completedSpare: PendingReq[] = [];
  /** Requests taken from the pool and not yet answered (or released). */
  private inflight = 0;
  private processing = false;
  private again = false;
  private flushScheduled = false;
  /** Consumption stopped for lack of a pending request or storage slot (oo). */
  private stalled = false;
  /** We stopped consuming without re-arming req_event (oo stall or barrier): a completion must resume us. */
  /** Stalled for requests or storage room; a completion on any ring of the device resumes it. */
  private parked = false;
  /** A WRITE_BARRIER waiting for earlier requests to drain, or running. */
  private barrier: PendingReq | null = null;
  private barrierRunning = false;
  private dead = false;
  private pagesReleased = false;
  private readonly indirectBuf = new Uint8Array(SEGS_PER_INDIRECT_FRAME * 8);
  private readonly maxSegs: number;
  /** The mode this ring was connected with (a reconnect makes new rings; our in-flight I/O keeps it). */
  private readonly mode: BlkbackMode;
  /**
   * This ring's persistent-grant cache (persistent mode), as Linux keeps one
   * per ring (xen_blkif_ring.persistent_gnts): each queue has its own
   * max_persistent_grants, so several queues with indirect segments do not
   * overflow one shared limit and fall back to mapping.
   */
  private readonly cache: PersistentGrantCache | null;
  private readonly ringPfns: Pfn[];
  private readonly ringHandles: GrantHandle[];
  private readonly localPort: Port;
  private readonly dev: BlkbackDevice;
  /** Bounce pages for copy mode (dom0 RAM, reused). */
  private readonly bounce: Pfn[] = [];

  private constructor(dev: BlkbackDevice, readonly queue: number, ringPfns: Pfn[], ringHandles: GrantHandle[], localPort: Port) {
    this.dev = dev;
    this.ringPfns = ringPfns;
    this.ringHandles = ringHandles;
    this.localPort = localPort;
    this.mode = dev.mode;
    const c = dev.config;
    this.cache = dev.mode === 'persistent'
      ? new PersistentGrantCache({ max: c.maxPersistentGrants, unusedMs: c.persistentUnusedMs, lruIntervalMs: c.lruIntervalMs, clock: dev.clock })
      : null;
    this.ring = BackRing.init(dev.k.mem.region(ringPfns), BLKIF_RING_FLAT);
    this.maxSegs = Math.max(11, dev.config.maxIndirectSegments);
    const complete = (p: PendingReq, s: BlkStorageStatus): void => this.onComplete(p, s);
    // Linux: XEN_BLKIF_REQS_PER_PAGE (32) per ring page, i.e. one per ring slot.
    for (let i = this.ring.size - 1; i >= 0; i--) {
      const p = new PendingReq(i, this.maxSegs, complete);
      this.all.push(p);
      this.pool.push(p);
    }
  }

  /** [connect dev q spec] maps the ring pages (one hypercall), binds the port. */
  static connect(dev: BlkbackDevice, q: number, spec: RingSpec): { ok: true; value: BlkbackRing } | { ok: false; error: ConnectError } {
    const k = dev.k;
    const pfns: Pfn[] = [];
    for (let i = 0; i < spec.refs.length; i++) {
      const p = k.ballooned.tryAlloc();
      if (p === undefined) {
        for (const x of pfns) k.ballooned.release(x);
        return { ok: false, error: { kind: 'no-ballooned-pages', need: spec.refs.length } };
      }
      pfns.push(p);
    }
    const res = dev.mapGrants(spec.refs.map((ref, i) => ({ domid: dev.frontDom, ref, readonly: false, hostPfn: pfns[i] as Pfn })));
    const bad = res.findIndex((r) => r.status !== GNTST.okay);
    if (bad >= 0) {
      const undo: UnmapRequest[] = [];
      res.forEach((r, i) => { if (r.status === GNTST.okay) undo.push({ handle: r.handle, hostPfn: pfns[i] as Pfn }); });
      dev.unmapGrants(undo);
      for (const x of pfns) k.ballooned.release(x);
      return { ok: false, error: { kind: 'ring-map-failed', queue: q, ref: spec.refs[bad] as number, status: (res[bad] as { status: number }).status } };
    }
    let local: Port;
    try {
      local = k.evtchn.bindInterdomain(dev.frontDom, spec.port);
    } catch (e) {
      dev.unmapGrants(res.map((r, i) => ({ handle: r.handle, hostPfn: pfns[i] as Pfn })));
      for (const x of pfns) k.ballooned.release(x);
      return { ok: false, error: { kind: 'bind-failed', queue: q, port: spec.port, message: e instanceof Error ? e.message : String(e) } };
    }
    const ring = new BlkbackRing(dev, q, pfns, res.map((r) => r.handle), local);
    k.bindHandler(local, () => {
      dev.counters.notifications_received++;
      ring.kickProcessing();
    });
    return { ok: true, value: ring };
  }

  /** [size] is the ring's slot count. */
  get size(): number { return this.ring.size; }
  get port(): Port { return this.localPort; }
  /** Requests consumed and not yet answered. */
  get pending(): number { return this.inflight; }
  /** Grants this ring's persistent cache holds. */
  get cachedGrants(): number { return this.cache?.size ?? 0; }

  /** Stop serving (protocol error): no more consumption; in-flight I/O still completes and is released. */
  halt(): void {
    this.dead = true;
  }

  /** [shutdown] disconnect: unbind, stop; the ring pages go once nothing is in flight. */
  shutdown(): void {
    if (!this.dead) this.dead = true;
    try {
      this.dev.k.evtchn.close(this.localPort);
    } catch {
      // Already closed by the peer's death: nothing to undo.
    }
    this.flushCompletions();
    // The cache goes with the ring: idle grants are unmapped now, those in use when their I/O ends.
    if (this.cache !== null) this.dev.unmapPersistent(this.cache.drain());
    this.releaseIfIdle();
  }

  private releaseIfIdle(): void {
    if (!this.dead || this.pagesReleased || this.inflight > 0) return;
    this.pagesReleased = true;
    const k = this.dev.k;
    const st = this.dev.unmapGrants(this.ringHandles.map((h, i) => ({ handle: h, hostPfn: this.ringPfns[i] as Pfn })));
    st.forEach((s, i) => { if (s === GNTST.okay) k.ballooned.release(this.ringPfns[i] as Pfn); });
    for (const p of this.bounce) k.ram.release(p);
    this.bounce.length = 0;
  }

  /** [kickProcessing] runs a processing pass now, or after the one running. */
  kickProcessing(): void {
    if (this.processing) { this.again = true; return; }
    this.process();
  }

  private process(): void {
    const dev = this.dev;
    this.processing = true;
    try {
      do {
        this.again = false;
        if (this.dead) break;
        this.maybePurge(dev.clock());
        this.consume();
        if (this.batch.length > 0) this.runBatch(this.batch);
        this.batch.length = 0;
        dev.storage.kick();
        this.flushCompletions();
        this.maybeStartBarrier();
        if (this.dead) break;
        if (this.stalled || this.barrier !== null) {
          // Resources came back during this pass (a synchronous storage): try again now.
          if (this.barrier === null && this.pool.length > 0 && dev.storage.inflight < dev.storage.maxInflight) { this.again = true; continue; }
          this.parked = true;
          continue;
        }
        this.parked = false;
        // RING_FINAL_CHECK_FOR_REQUESTS: re-arm req_event, then look once more.
        const more = this.ring.finalCheckForRequests(1);
        if (!more.ok) { this.overflow(more.error); break; }
        if (more.value) this.again = true;
      } while (this.again);
    } finally {
      this.processing = false;
    }
  }

  /**
   * [cacheRoom] is whether a fresh mapping may stay in the persistent cache:
   * not when dom0's ballooned pages (where foreign grants are mapped) are
   * down to two of our largest requests. Every ring of every device caches
   * up to max_persistent_grants, and dom0 may have fewer ballooned pages than
   * all of them together; a cache that stops growing keeps the rest mapping
   * (and unmapping) per request instead of starving every ring of pages.
   */
  private cacheRoom(): boolean {
    return this.dev.k.ballooned.available >= 2 * (this.maxSegs + 8);
  }

  /** Runs a purge of this ring's persistent cache if an LRU interval has passed. */
  private maybePurge(now: number): void {
    if (this.cache === null) return;
    const drop = this.cache.purge(now);
    if (drop.length > 0) this.dev.unmapPersistent(drop);
  }

  private overflow(e: RingError): void {
    const msg = e.kind === 'req-prod-overflow'
      ? `frontend provided bogus ring requests (req_prod ${e.reqProd}, req_cons ${e.reqCons}, rsp_prod_pvt ${e.rspProdPvt}, ring size ${e.size}); halting queue ${this.queue}`
      : `ring error ${e.kind}`;
    this.dev.fail('req-prod-overflow', msg);
  }

  /** Consume what the ring holds, as far as the pool and the storage queue allow. */
  private consume(): void {
    const dev = this.dev;
    const storage = dev.storage;
    this.stalled = false;
    for (;;) {
      if (this.barrier !== null) return;
      const r = this.ring.unconsumedRequests();
      if (!r.ok) { this.overflow(r.error); return; }
      let n = r.value;
      if (n === 0) return;
      while (n-- > 0) {
        if (this.pool.length === 0 || storage.inflight + this.batch.length >= storage.maxInflight) {
          // Out of requests (Linux st_oo_req): leave the rest on the ring; a completion resumes us.
          dev.counters.oo_req++;
          this.stalled = true;
          return;
        }
        const p = this.pool.pop() as PendingReq;
        this.inflight++;
        // RING_COPY_REQUEST: the slot is copied once; only the private copy is decoded.
        const d = this.ring.copyRequestInto(blkifRequestFlatCodec, this.req);
        dev.counters.ring_requests++;
        if (d.ok) this.take(p);
        else this.refuse(p, decodeReject(d.error));
        if (this.barrier !== null) return;
      }
    }
  }

  /** A slot the codec could not decode: answered at once with the id and operation the guest sent. */
  private refuse(p: PendingReq, code: RejectCode): void {
    const q = this.req;
    p.idLo = q.idLo;
    p.idHi = q.idHi;
    p.operation = q.operation;
    p.ioStatus = 'ok';
    refusedHeader(q, p.hdr);
    p.reject = code;
    this.finishEarly(p);
  }

  /** Fills p from the private copy and validates its header and direct segments. */
  private take(p: PendingReq): void {
    const q = this.req;
    const dev = this.dev;
    p.idLo = q.idLo;
    p.idHi = q.idHi;
    // Linux answers an indirect request with its indirect_op (dispatch_rw_block_io's req_operation).
    p.operation = q.operation === BLKIF_OP_INDIRECT ? q.indirectOp : q.operation;
    p.ioStatus = 'ok';
    p.reject = checkHeader(q, dev.limits, p.hdr);
    if (p.reject !== REJECT.none) return this.finishEarly(p);
    const h = p.hdr;
    if (q.operation === BLKIF_OP_INDIRECT) {
      dev.counters.indirect_requests++;
      for (let i = 0; i < h.nIndirectPages; i++) p.indGref[i] = q.indirectGrefs[i] as number;
    } else if (h.nsegs > 0) {
      for (let i = 0; i < h.nsegs; i++) {
        p.gref[i] = q.segGref[i] as number;
        p.first[i] = q.segFirstSect[i] as number;
        p.last[i] = q.segLastSect[i] as number;
      }
      const t = checkSegments(p.first, p.last, h.nsegs, h.sector, dev.limits);
      if (t < 0) { p.reject = -t as RejectCode; return this.finishEarly(p); }
      h.nrSectors = t;
    }
    this.countDispatch(p);
    if (h.kind === 'barrier') {
      this.barrier = p;
      return;
    }
    this.batch.push(p);
  }

  private countDispatch(p: PendingReq): void {
    const c = this.dev.counters;
    switch (p.hdr.kind) {
      case 'read': c.rd_req++; break;
      case 'write': c.wr_req++; break;
      case 'flush': case 'barrier': c.f_req++; break;
      case 'discard': c.ds_req++; break;
    }
  }

  private finishEarly(p: PendingReq): void {
    this.completed.push(p);
  }

  /** A barrier runs alone once everything before it has been answered. */
  private maybeStartBarrier(): void {
    const b = this.barrier;
    if (b === null || this.barrierRunning || this.dead) return;
    if (this.inflight > 1) return; // the barrier itself is the one
    this.barrierRunning = true;
    this.batch.length = 0;
    this.batch.push(b);
    this.runBatch(this.batch);
    this.batch.length = 0;
    this.dev.storage.kick();
    this.flushCompletions();
  }

  // ---- mapping ----

  private runBatch(batch: PendingReq[]): void {
    let anyIndirect = false;
    for (const p of batch) if (p.hdr.indirect) { anyIndirect = true; break; }
    if (anyIndirect) this.parseIndirect(batch);
    switch (this.mode) {
      case 'persistent': this.mapPersistent(batch); break;
      case 'map': this.mapAll(batch); break;
      case 'copy': this.copyIn(batch); break;
    }
    for (const p of batch) {
      if (p.reject !== REJECT.none) { this.completed.push(p); continue; }
      this.submit(p);
    }
  }

  /**
   * Maps the indirect pages of every indirect request in the batch (cache
   * hits first, the rest read-only in one hypercall), copies each request's
   * descriptors ONCE into private memory, and validates that copy.
   */
  private parseIndirect(batch: readonly PendingReq[]): void {
    const dev = this.dev;
    const k = dev.k;
    const cache = this.cache;
    const now = dev.clock();
    const maps: MapRequest[] = [];
    const who: { p: PendingReq; i: number }[] = [];
    for (const p of batch) {
      if (!p.hdr.indirect || p.reject !== REJECT.none) continue;
      for (let i = 0; i < p.hdr.nIndirectPages; i++) {
        const g = cache?.get(p.indGref[i] as number, now);
        if (g !== undefined) {
          dev.counters.persistent_hits++;
          p.indPgrant[i] = g;
          p.indPfn[i] = g.pfn;
          continue;
        }
        if (cache !== null) dev.counters.persistent_misses++;
        const pfn = k.ballooned.tryAlloc();
        if (pfn === undefined) { p.reject = REJECT.badGrant; break; }
        p.indPfn[i] = pfn;
        maps.push({ domid: dev.frontDom, ref: p.indGref[i] as Gref, readonly: true, hostPfn: pfn });
        who.push({ p, i });
      }
    }
    if (maps.length > 0) {
      const res = dev.mapGrants(maps);
      res.forEach((r, j) => {
        const { p, i } = who[j] as { p: PendingReq; i: number };
        if (r.status !== GNTST.okay) {
          k.ballooned.release(p.indPfn[i] as Pfn);
          p.indPfn[i] = -1;
          p.reject = REJECT.badGrant;
          return;
        }
        const g = cache !== null && this.cacheRoom() ? cache.add(p.indGref[i] as Gref, p.indPfn[i] as Pfn, r.handle, true, now) : undefined;
        if (g !== undefined) p.indPgrant[i] = g;
        else {
          if (cache !== null) dev.counters.persistent_overflow_maps++;
          p.indHandle[i] = r.handle;
        }
      });
    }
    const buf = this.indirectBuf;
    for (const p of batch) {
      if (!p.hdr.indirect || p.reject !== REJECT.none) continue;
      const n = p.hdr.nsegs;
      let seg = 0;
      for (let i = 0; i < p.hdr.nIndirectPages; i++) {
        const here = Math.min(SEGS_PER_INDIRECT_FRAME, n - seg);
        // The indirect page is the guest's: copy its descriptors once, then read only the copy.
        k.mem.copyOut(k.gpa(p.indPfn[i] as Pfn), buf, 0, here * 8);
        for (let j = 0; j < here; j++) {
          const o = j * 8;
          p.gref[seg] = readU32LE(buf, o);
          p.first[seg] = buf[o + 4] as number;
          p.last[seg] = buf[o + 5] as number;
          seg++;
        }
      }
      const t = checkSegments(p.first, p.last, n, p.hdr.sector, dev.limits);
      if (t < 0) p.reject = -t as RejectCode;
      else p.hdr.nrSectors = t;
    }
  }

  /** Persistent mode: cache hits cost nothing; all misses in one map hypercall. */
  private mapPersistent(batch: readonly PendingReq[]): void {
    const dev = this.dev;
    const cache = this.cache as PersistentGrantCache;
    const k = dev.k;
    const now = dev.clock();
    let maps: MapRequest[] | null = null;
    let who: { p: PendingReq; i: number }[] | null = null;
    for (const p of batch) {
      if (p.reject !== REJECT.none) continue;
      const n = p.hdr.nsegs;
      for (let i = 0; i < n; i++) {
        const g = cache.get(p.gref[i] as number, now);
        if (g !== undefined && !g.readonly) {
          dev.counters.persistent_hits++;
          p.pgrant[i] = g;
          p.pfn[i] = g.pfn;
          continue;
        }
        if (g !== undefined) cache.put(g); // a read-only (indirect) mapping cannot take data: map it again
        dev.counters.persistent_misses++;
        const pfn = k.ballooned.tryAlloc();
        if (pfn === undefined) { p.reject = REJECT.badGrant; break; }
        p.pfn[i] = pfn;
        maps ??= [];
        who ??= [];
        // Persistent grants are always writable (blkif.h): map them so.
        maps.push({ domid: dev.frontDom, ref: p.gref[i] as Gref, readonly: false, hostPfn: pfn, device: dev.deviceMap });
        who.push({ p, i });
      }
    }
    if (maps === null || who === null) return;
    const res = dev.mapGrants(maps);
    for (let j = 0; j < res.length; j++) {
      const r = res[j] as { status: number; handle: GrantHandle };
      const { p, i } = who[j] as { p: PendingReq; i: number };
      if (r.status !== GNTST.okay) {
        k.ballooned.release(p.pfn[i] as Pfn);
        p.pfn[i] = -1;
        p.reject = REJECT.badGrant;
        continue;
      }
      const g = this.cacheRoom() ? cache.add(p.gref[i] as Gref, p.pfn[i] as Pfn, r.handle, false, now) : undefined;
      if (g !== undefined) p.pgrant[i] = g;
      else {
        dev.counters.persistent_overflow_maps++;
        p.handle[i] = r.handle;
      }
    }
  }

  /** Map mode: every segment of the batch in one map hypercall. */
  private mapAll(batch: readonly PendingReq[]): void {
    const dev = this.dev;
    const k = dev.k;
    const maps: MapRequest[] = [];
    const who: { p: PendingReq; i: number }[] = [];
    for (const p of batch) {
      if (p.reject !== REJECT.none) continue;
      // The device writes guest memory on a read: map writable only then.
      const ro = p.hdr.kind !== 'read';
      for (let i = 0; i < p.hdr.nsegs; i++) {
        const pfn = k.ballooned.tryAlloc();
        if (pfn === undefined) { p.reject = REJECT.badGrant; break; }
        p.pfn[i] = pfn;
        maps.push({ domid: dev.frontDom, ref: p.gref[i] as Gref, readonly: ro, hostPfn: pfn, device: dev.deviceMap });
        who.push({ p, i });
      }
    }
    if (maps.length === 0) return;
    const res = dev.mapGrants(maps);
    res.forEach((r, j) => {
      const { p, i } = who[j] as { p: PendingReq; i: number };
      if (r.status !== GNTST.okay) {
        k.ballooned.release(p.pfn[i] as Pfn);
        p.pfn[i] = -1;
        p.reject = REJECT.badGrant;
        return;
      }
      p.handle[i] = r.handle;
    });
  }

  private bouncePage(): Pfn | undefined {
    return this.bounce.pop() ?? this.dev.k.ram.tryAlloc();
  }

  /** Copy mode: bounce pages in dom0; writes are copied in (one GNTTABOP_copy for the batch). */
  private copyIn(batch: readonly PendingReq[]): void {
    const dev = this.dev;
    const copies: CopyRequest[] = [];
    const who: PendingReq[] = [];
    for (const p of batch) {
      if (p.reject !== REJECT.none) continue;
      for (let i = 0; i < p.hdr.nsegs; i++) {
        const pfn = this.bouncePage();
        if (pfn === undefined) { p.reject = REJECT.badGrant; break; }
        p.pfn[i] = pfn;
        if (p.hdr.kind === 'read') continue;
        const off = (p.first[i] as number) * BLKIF_SECTOR_SIZE;
        copies.push({
          source: { gref: p.gref[i] as Gref, domid: dev.frontDom, offset: off },
          dest: { frame: pfn, offset: off },
          len: ((p.last[i] as number) - (p.first[i] as number) + 1) * BLKIF_SECTOR_SIZE,
        });
        who.push(p);
      }
    }
    const st = dev.copyGrants(copies);
    st.forEach((s, j) => { if (s !== GNTST.okay) (who[j] as PendingReq).reject = REJECT.badGrant; });
  }

  /** Copy mode, after reads: bounce → guest, one GNTTABOP_copy for all completions. */
  private copyOut(list: readonly PendingReq[]): void {
    const dev = this.dev;
    const copies: CopyRequest[] = [];
    const who: PendingReq[] = [];
    for (const p of list) {
      if (p.hdr.kind !== 'read' || p.reject !== REJECT.none || p.ioStatus !== 'ok' || this.dead) continue;
      for (let i = 0; i < p.hdr.nsegs; i++) {
        const off = (p.first[i] as number) * BLKIF_SECTOR_SIZE;
        copies.push({
          source: { frame: p.pfn[i] as number, offset: off },
          dest: { gref: p.gref[i] as Gref, domid: dev.frontDom, offset: off },
          len: ((p.last[i] as number) - (p.first[i] as number) + 1) * BLKIF_SECTOR_SIZE,
        });
        who.push(p);
      }
    }
    const st = dev.copyGrants(copies);
    st.forEach((s, j) => { if (s !== GNTST.okay) (who[j] as PendingReq).reject = REJECT.badGrant; });
  }

  // ---- submission and completion ----

  private submit(p: PendingReq): void {
    const io = p.io;
    const h = p.hdr;
    io.sector = h.sector;
    io.fua = false;
    io.secure = false;
    io.nrSegments = 0;
    switch (h.kind) {
      case 'discard':
        io.op = 'discard';
        io.nrSectors = h.nrSectors;
        io.secure = h.secure;
        break;
      case 'flush':
      case 'barrier':
        if (h.nsegs === 0) {
          if (!this.dev.storage.features.flush) {
            // A barrier on a medium without a volatile cache: the drain was all there was to do.
            p.ioStatus = 'ok';
            this.completed.push(p);
            return;
          }
          io.op = 'flush';
          io.nrSectors = 0;
          break;
        }
        io.op = 'write';
        io.fua = this.dev.storage.features.flush;
        this.fillSegments(p);
        break;
      default:
        io.op = h.kind;
        this.fillSegments(p);
        break;
    }
    if (io.op === 'read') { this.dev.counters.rd_sect += io.nrSectors; }
    else if (io.op === 'write') { this.dev.counters.wr_sect += io.nrSectors; }
    this.dev.storage.submit(io);
  }

  private fillSegments(p: PendingReq): void {
    const io = p.io;
    const n = p.hdr.nsegs;
    for (let i = 0; i < n; i++) {
      const s = io.segments[i] as BlkSegment;
      const f = p.first[i] as number;
      s.pfn = p.pfn[i] as Pfn;
      s.offset = f * BLKIF_SECTOR_SIZE;
      s.len = ((p.last[i] as number) - f + 1) * BLKIF_SECTOR_SIZE;
    }
    io.nrSegments = n;
    io.nrSectors = p.hdr.nrSectors;
  }

  private onComplete(p: PendingReq, s: BlkStorageStatus): void {
    p.ioStatus = s;
    this.completed.push(p);
    if (this.processing || this.flushScheduled) return;
    // An asynchronous completion (a device interrupt): answer in a batch, soon.
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      if (this.processing) return;
      this.flushCompletions();
      this.maybeStartBarrier();
      // The storage queue is the device's, shared by its rings: a completion here frees room a
      // sibling ring may be parked on (it stalled when the queue was full), not only this one.
      for (const r of this.dev.rings) if (r.parked && !r.dead) r.kickProcessing();
    });
  }

  /**
   * Answers every completed request: unmaps (one batch), copies reads back
   * (copy mode, one batch), puts the private responses, pushes every
   * pushEvery and at the end, notifying only when the frontend asked.
   */
  private flushCompletions(): void {
    if (this.completed.length === 0) return;
    const list = this.completed;
    this.completed = this.completedSpare;
    this.completedSpare = list;
    const dev = this.dev;
    const k = dev.k;
    if (this.mode === 'copy') this.copyOut(list);
    // Release mappings: persistent uses end; everything else in one unmap batch.
    let unmaps: UnmapRequest[] | null = null;
    let unmapPfns: number[] | null = null;
    const dropped: PersistentGrant[] = [];
    for (const p of list) {
      const nsegs = Math.min(p.hdr.nsegs, this.maxSegs);
      for (let i = 0; i < nsegs; i++) {
        const g = p.pgrant[i] as PersistentGrant | null;
        if (g !== null) {
          if (this.cache === null ? --g.active === 0 : this.cache.put(g)) dropped.push(g);
          p.pgrant[i] = null;
        } else if ((p.handle[i] as number) >= 0) {
          unmaps ??= [];
          unmapPfns ??= [];
          unmaps.push({ handle: p.handle[i] as GrantHandle, hostPfn: p.pfn[i] as Pfn });
          unmapPfns.push(p.pfn[i] as number);
          p.handle[i] = -1;
        } else if ((p.pfn[i] as number) >= 0 && this.mode === 'copy') {
          this.bounce.push(p.pfn[i] as Pfn);
        }
        p.pfn[i] = -1;
      }
      if (p.hdr.indirect) {
        for (let i = 0; i < 8; i++) {
          const g = p.indPgrant[i] as PersistentGrant | null;
          if (g !== null) {
            if (this.cache === null ? --g.active === 0 : this.cache.put(g)) dropped.push(g);
            p.indPgrant[i] = null;
          } else if ((p.indHandle[i] as number) >= 0) {
            unmaps ??= [];
            unmapPfns ??= [];
            unmaps.push({ handle: p.indHandle[i] as GrantHandle, hostPfn: p.indPfn[i] as Pfn });
            unmapPfns.push(p.indPfn[i] as number);
            p.indHandle[i] = -1;
          }
          p.indPfn[i] = -1;
        }
      }
    }
    if (unmaps !== null && unmapPfns !== null) {
      const st = dev.unmapGrants(unmaps);
      for (let i = 0; i < st.length; i++) if (st[i] === GNTST.okay) k.ballooned.release(unmapPfns[i] as Pfn);
    }
    if (dropped.length > 0) dev.unmapPersistent(dropped);
    // Responses. Every response before this flush was pushed: rsp_prod stands at rspProdPvt.
    const pushedBefore = this.ring.rspProdPvt;
    let sincePush = 0;
    for (const p of list) {
      if (!this.dead) {
        const rsp = this.rsp;
        rsp.idLo = p.idLo;
        rsp.idHi = p.idHi;
        rsp.operation = p.operation;
        rsp.status = this.statusOf(p);
        this.ring.putResponseFrom(blkifResponseFlatCodec, rsp);
        dev.counters.ring_responses++;
        if (rsp.status === BLKIF_RSP_ERROR) dev.counters.error_responses++;
        else if (rsp.status === BLKIF_RSP_EOPNOTSUPP) dev.counters.eopnotsupp_responses++;
        if (++sincePush >= dev.pushEvery) {
          // Publish early (a frontend already running picks these up at its final check), notify later.
          sincePush = 0;
          this.ring.pushResponses();
        }
      }
      if (p === this.barrier) { this.barrier = null; this.barrierRunning = false; }
      p.reject = REJECT.none;
      this.inflight--;
      this.pool.push(p);
    }
    list.length = 0;
    if (!this.dead && this.ring.rspProdPvt !== pushedBefore) this.pushAndNotifyOnce(pushedBefore);
    if (this.dead) this.releaseIfIdle();
  }

  private statusOf(p: PendingReq): number {
    const dev = this.dev;
    if (p.reject !== REJECT.none) {
      dev.counters[REJECT_COUNTER[p.reject] as BlkbackCounterName]++;
      return rejectStatus(p.reject);
    }
    switch (p.ioStatus) {
      case 'ok': return BLKIF_RSP_OKAY;
      case 'eopnotsupp': return BLKIF_RSP_EOPNOTSUPP;
      case 'error':
        dev.counters.reject_io_error++;
        return BLKIF_RSP_ERROR;
    }
  }

  /**
   * RING_PUSH_RESPONSES_AND_CHECK_NOTIFY over the whole flush: publish the
   * rest, then notify once if the frontend's rsp_event lies anywhere in
   * (rsp_prod before this flush, rsp_prod now] — one notification per batch
   * of completions, however many early pushes it made.
   */
  private pushAndNotifyOnce(before: RingIdx): void {
    const ring = this.ring;
    // Release store of rsp_prod: front sees resps /before/ updated producer index.
    ring.pushResponses();
    // Sequentially consistent atomics are xen_mb(): front sees the new rsp_prod /before/ we read rsp_event,
    // so a frontend that re-armed rsp_event and re-checked either saw our responses or is notified now.
    if (notifyNeeded(ring.rspProdPvt, before, ring.shared.loadRspEvent())) {
      this.dev.counters.notifications_sent++;
      this.dev.k.evtchn.notify(this.localPort);
    }
  }

  /** For tests: the kinds of the requests in flight. */
  inflightKinds(): BlkReqKind[] {
    return this.all.filter((p) => !this.pool.includes(p)).map((p) => p.hdr.kind);
  }
}

/** Wire operation names for logs. */
export function blkifOpName(op: number): string {
  switch (op) {
    case 0: return 'read';
    case 1: return 'write';
    case BLKIF_OP_WRITE_BARRIER: return 'write-barrier';
    case BLKIF_OP_FLUSH_DISKCACHE: return 'flush-diskcache';
    case BLKIF_OP_DISCARD: return 'discard';
    case BLKIF_OP_INDIRECT: return 'indirect';
    default: return `op ${op}`;
  }
}
