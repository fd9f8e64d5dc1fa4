/**
 * The daemon side of a guest's xenstore ring page (struct
 * xenstore_domain_interface; docs/misc/xenstore-ring.txt).
 *
 * Two 1024-byte circular byte queues with free-running u32 indices: the guest
 * writes requests into `req` and advances req_prod; we copy them out and
 * advance req_cons. We write replies and watch events into `rsp` and advance
 * rsp_prod; the guest reads and advances rsp_cons. Messages may straddle the
 * wrap and may arrive a few bytes at a time.
 *
 * The guest is hostile:
 *  - the indices we own (req_cons, rsp_prod) live in private copies; what the
 *    guest writes there is never read back;
 *  - the guest's indices are read once per pass with an acquire load and
 *    checked: if req_prod − req_cons or rsp_prod − rsp_cons exceeds 1024 the
 *    ring is broken: we set `error` = XENSTORE_ERROR_RINGIDX, close the
 *    connection (its watches and transactions go) and stop serving — never spin;
 *  - request bytes are copied into private memory before decoding; a header
 *    with len > 4096 or an unknown type sets XENSTORE_ERROR_PROTO the same way;
 *  - we read no more requests while replies to earlier ones are waiting for
 *    ring space, so a guest that never reads its replies costs bounded memory.
 *
 * Ring reconnection (XENSTORE_SERVER_FEATURE_RECONNECTION): when the guest sets
 * `connection` = XENSTORE_RECONNECT and notifies, we drop the connection's
 * state, empty both queues, clear `error`, and set XENSTORE_CONNECTED. This is
 * also the way back from an error.
 *
 * `poll()` is called when the guest's event channel fires (and may be called
 * spuriously). It never blocks; it calls `notify` at most once per pass.
 */
import type { DomId } from '../../shared/types.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import {
  XENSTORE_CONNECTED, XENSTORE_DOMAIN_INTERFACE as XSIF, XENSTORE_ERROR_NONE, XENSTORE_ERROR_PROTO,
  XENSTORE_ERROR_RINGIDX, XENSTORE_RECONNECT, XENSTORE_RING_SIZE, XENSTORE_SERVER_FEATURE_ERROR,
  XENSTORE_SERVER_FEATURE_RECONNECTION,
} from '../../shared/abi/xenstore.ts';
import { XsWireDecoder, encodeXsMsg, type XsMsg } from './wire.ts';
import type { XenStored, XsConnection } from './xenstored.ts';

export type XsRingState = 'connected' | 'failed' | 'closed';

export interface XsRingStats {
  requests: number;
  bytesIn: number;
  bytesOut: number;
  notifies: number;
  reconnects: number;
}

/** Replies we let queue up (beyond what fits in the ring) before reading more requests. */
const MAX_QUEUED_REPLIES = 4;

export class XsRingBackend {
  private conn: XsConnection;
  /** [BE] private copies of the indices we own. */
  private reqCons: number;
  private rspProd: number;
  private readonly decoder = new XsWireDecoder();
  private readonly scratch = new Uint8Array(XENSTORE_RING_SIZE);
  private pendingIn: XsMsg[] = [];
  private out: Uint8Array | null = null;
  private outOff = 0;
  private polling = false;
  private again = false;
  private failing = false;
  private stateNow: XsRingState = 'connected';
  /** Why the ring stopped being served (for logs and tests). */
  lastError: string | undefined;
  readonly stats: XsRingStats = { requests: 0, bytesIn: 0, bytesOut: 0, notifies: 0, reconnects: 0 };

  constructor(
    private readonly daemon: XenStored,
    readonly domid: DomId,
    private readonly page: MemRegion,
    private readonly notify: () => void,
  ) {
    if (page.byteLength < XSIF.SIZE) throw new RangeError(`xenstore ring page of ${page.byteLength} bytes is smaller than ${XSIF.SIZE}`);
    // Start from whatever the page holds: guests must not assume indices start at 0, nor may we.
    this.reqCons = page.atomicLoadU32(XSIF.REQ_CONS);
    this.rspProd = page.atomicLoadU32(XSIF.RSP_PROD);
    // Advertise features before producing or consuming anything (xenstore-ring.txt);
    // the guest reads them with an acquire load.
    page.atomicStoreU32(XSIF.SERVER_FEATURES, XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR);
    this.conn = this.openConnection();
  }

  get state(): XsRingState { return this.stateNow; }
  /** The daemon connection currently serving this ring. */
  get connection(): XsConnection { return this.conn; }

  private openConnection(): XsConnection {
    return this.daemon.connect(this.domid, {
      label: `ring d${this.domid}`,
      onOutput: () => this.outputQueued(),
      onClose: (reason) => this.closedByDaemon(reason),
    });
  }

  /** The daemon queued something for us (e.g. a watch event caused by another domain). */
  private outputQueued(): void {
    if (this.polling) {
      this.again = true;
      return;
    }
    if (this.stateNow !== 'connected') return;
    const wrote = this.writeOutput();
    if (wrote !== 0) this.signal();
  }

  private closedByDaemon(reason: string): void {
    if (this.failing) return;
    // RELEASE / domain destruction: this ring is not served any more.
    this.stateNow = 'closed';
    this.lastError = reason;
  }

  /** [close] stops serving the ring (domain destroyed); the daemon drops the connection's state. */
  close(): void {
    if (this.stateNow === 'closed') return;
    this.stateNow = 'closed';
    this.daemon.disconnect(this.conn, 'ring closed');
  }

  private signal(): void {
    this.stats.notifies++;
    this.notify();
  }

  /** [poll] serves the ring until no more progress is possible right now. */
  poll(): void {
    if (this.polling) {
      this.again = true;
      return;
    }
    this.polling = true;
    let changed = false;
    try {
      do {
        this.again = false;
        if (this.pass()) changed = true;
      } while (this.again);
    } finally {
      this.polling = false;
    }
    if (changed) this.signal();
  }

  /** One pass; true if the shared page changed in a way the guest should hear about. */
  private pass(): boolean {
    if (this.stateNow === 'closed') return false;
    // Acquire: the guest's RECONNECT request.
    if (this.page.atomicLoadU32(XSIF.CONNECTION) === XENSTORE_RECONNECT) {
      this.reconnect();
      return true;
    }
    if (this.stateNow === 'failed') return false;
    let changed = false;
    for (;;) {
      let progress = false;
      const wrote = this.writeOutput();
      if (wrote < 0) return true;
      if (wrote > 0) progress = true;
      if (this.pendingIn.length === 0) {
        const read = this.readInput();
        if (read < 0) return true;
        if (read > 0) progress = true;
      }
      while (this.pendingIn.length > 0 && this.conn.pending - this.conn.queuedEvents < MAX_QUEUED_REPLIES && !this.conn.closed) {
        const msg = this.pendingIn.shift() as XsMsg;
        this.stats.requests++;
        this.daemon.process(this.conn, msg);
        progress = true;
      }
      if (this.stateNow !== 'connected') return true;
      if (!progress) break;
      changed = true;
    }
    return changed;
  }

  /**
   * [readInput] copies every available request byte into the decoder.
   * Returns bytes consumed, or -1 if the ring is broken.
   */
  private readInput(): number {
    // Acquire: request bytes the guest wrote before publishing req_prod are visible.
    const prod = this.page.atomicLoadU32(XSIF.REQ_PROD);
    const avail = (prod - this.reqCons) >>> 0;
    if (avail > XENSTORE_RING_SIZE) {
      this.fail(XENSTORE_ERROR_RINGIDX, `req_prod ${prod} is ${avail} bytes past req_cons ${this.reqCons}`);
      return -1;
    }
    if (avail === 0) return 0;
    const start = this.reqCons & (XENSTORE_RING_SIZE - 1);
    const first = Math.min(avail, XENSTORE_RING_SIZE - start);
    this.page.copyOut(XSIF.REQ + start, this.scratch, 0, first);
    if (avail > first) this.page.copyOut(XSIF.REQ, this.scratch, first, avail - first);
    this.reqCons = (this.reqCons + avail) >>> 0;
    // Release: the guest may reuse these bytes only once we have copied them out.
    this.page.atomicStoreU32(XSIF.REQ_CONS, this.reqCons);
    this.stats.bytesIn += avail;
    const r = this.decoder.push(this.scratch, 0, avail);
    if (!r.ok) {
      const e = r.error;
      this.fail(XENSTORE_ERROR_PROTO, e.kind === 'payload-too-long' ? `payload of ${e.len} bytes (type ${e.type})` : `unknown message type ${e.type}`);
      return -1;
    }
    for (const m of r.value) this.pendingIn.push(m);
    return avail;
  }

  /**
   * [writeOutput] moves queued replies and events into the rsp queue as far as
   * space allows. Returns bytes written, or -1 if the ring is broken.
   */
  private writeOutput(): number {
    let wrote = 0;
    for (;;) {
      if (this.out === null) {
        const m = this.conn.take();
        if (m === undefined) break;
        this.out = encodeXsMsg(m);
        this.outOff = 0;
      }
      // Acquire: the guest finished reading the bytes before rsp_cons.
      const cons = this.page.atomicLoadU32(XSIF.RSP_CONS);
      const used = (this.rspProd - cons) >>> 0;
      if (used > XENSTORE_RING_SIZE) {
        this.fail(XENSTORE_ERROR_RINGIDX, `rsp_cons ${cons} is ${(cons - this.rspProd) >>> 0} bytes past rsp_prod ${this.rspProd}`);
        return -1;
      }
      const space = XENSTORE_RING_SIZE - used;
      if (space === 0) break;
      const n = Math.min(space, this.out.length - this.outOff);
      const start = this.rspProd & (XENSTORE_RING_SIZE - 1);
      const first = Math.min(n, XENSTORE_RING_SIZE - start);
      this.page.copyIn(XSIF.RSP + start, this.out, this.outOff, first);
      if (n > first) this.page.copyIn(XSIF.RSP, this.out, this.outOff + first, n - first);
      this.rspProd = (this.rspProd + n) >>> 0;
      // Release: the guest sees the reply bytes before the rsp_prod that covers them.
      this.page.atomicStoreU32(XSIF.RSP_PROD, this.rspProd);
      this.outOff += n;
      wrote += n;
      this.stats.bytesOut += n;
      if (this.outOff === this.out.length) this.out = null;
    }
    return wrote;
  }

  /** Stop serving: record why in the page's `error`, drop the connection's state. */
  private fail(code: number, why: string): void {
    this.stateNow = 'failed';
    this.lastError = why;
    // Release: the guest that sees `error` also sees every index we published before.
    this.page.atomicStoreU32(XSIF.ERROR, code);
    this.failing = true;
    try {
      this.daemon.disconnect(this.conn, `ring d${this.domid}: ${why}`);
    } finally {
      this.failing = false;
    }
    this.pendingIn = [];
    this.out = null;
  }

  /** The guest asked for a fresh ring (xenstore-ring.txt "ring reconnection"). */
  private reconnect(): void {
    this.stats.reconnects++;
    if (!this.conn.closed) {
      this.failing = true;
      try {
        this.daemon.disconnect(this.conn, 'ring reconnect');
      } finally {
        this.failing = false;
      }
    }
    this.decoder.reset();
    this.pendingIn = [];
    this.out = null;
    this.reqCons = 0;
    this.rspProd = 0;
    // Empty both queues (the guest ignores every field but `connection` until it reads CONNECTED).
    for (const off of [XSIF.REQ_CONS, XSIF.REQ_PROD, XSIF.RSP_CONS, XSIF.RSP_PROD]) this.page.atomicStoreU32(off, 0);
    this.page.atomicStoreU32(XSIF.ERROR, XENSTORE_ERROR_NONE);
    this.conn = this.openConnection();
    this.stateNow = 'connected';
    this.lastError = undefined;
    // Release: the guest sees empty queues and a clear error before it sees CONNECTED.
    this.page.atomicStoreU32(XSIF.CONNECTION, XENSTORE_CONNECTED);
  }
}
