/**
 * The guest's xenbus client: XenStore over the `xenstore_domain_interface`
 * page (docs/misc/xenstore-ring.txt), as Linux's xenbus_comms.c / xenbus_xs.c
 * and MirageOS's xenstore client do it.
 *
 * Requests go into the `req` byte queue, replies and watch events come back
 * in `rsp`. Unlike libxenstore (which always sends req_id 0 and relies on
 * in-order replies) we give each request a fresh req_id and match replies by
 * it; WATCH_EVENT messages (req_id 0) are dispatched to the callback of their
 * token.
 *
 * Nothing here blocks or sleeps. The platform seam drives the client:
 *  - `kick()` (given) notifies xenstored, i.e. sends on the xenstore event channel;
 *  - `poll()` (ours) is called when that event channel fires; it moves bytes
 *    both ways and settles promises. Requests also poll once when queued.
 * The same code therefore runs on a worker (poll from the event loop) and in a
 * single-threaded deterministic scheduler (poll when the scheduler says so).
 *
 * Request ids, reply matching, watch dispatch and the typed operations are
 * shared with dom0's in-process client (XsRequester, shared/xenbus/xs-handle.ts):
 * this class is the ring transport, and drivers see both as an XsHandle.
 *
 * The daemon is trusted more than a guest is, but not blindly: bogus indices or
 * an oversized reply end the connection with a 'disconnected' error for every
 * pending request instead of corrupting memory or spinning.
 */
import type { MemRegion } from '../../shared/memory/region.ts';
import { err, ok } from '../../shared/result.ts';
import {
  XSD_SOCKMSG, XS_TYPE_COUNT, XENSTORE_CONNECTED, XENSTORE_DOMAIN_INTERFACE as XSIF,
  XENSTORE_ERROR_NONE, XENSTORE_PAYLOAD_MAX, XENSTORE_RECONNECT, XENSTORE_RING_SIZE,
  XENSTORE_SERVER_FEATURE_RECONNECTION,
} from '../../shared/abi/xenstore.ts';
import {
  XsRequester, type XsClientError, type XsRequestMsg, type XsRequesterOptions, type XsResult,
} from '../../shared/xenbus/xs-handle.ts';

export type { XsClientError, XsClientStats, XsResult, XsWatchCallback } from '../../shared/xenbus/xs-handle.ts';

export type XsClientOptions = XsRequesterOptions;

function getU32(b: Uint8Array, off: number): number {
  return ((b[off] as number) | ((b[off + 1] as number) << 8) | ((b[off + 2] as number) << 16) | ((b[off + 3] as number) << 24)) >>> 0;
}
function putU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}

export class XsClient extends XsRequester {
  /** [FE] private copies of the indices we own. */
  private reqProd: number;
  private rspCons: number;
  private readonly outQueue: Uint8Array[] = [];
  private outOff = 0;
  // Reply reassembly: a private copy of each message before it is parsed.
  private readonly hdr = new Uint8Array(XSD_SOCKMSG.SIZE);
  private hdrUsed = 0;
  private body: Uint8Array | null = null;
  private bodyUsed = 0;
  private readonly scratch = new Uint8Array(XENSTORE_RING_SIZE);
  private reconnecting: ((r: XsResult<void>) => void) | null = null;
  private polling = false;
  private again = false;

  constructor(
    private readonly page: MemRegion,
    private readonly kick: () => void,
    opts: XsClientOptions = {},
  ) {
    super(opts);
    // Indices need not start at 0 (xenstore-ring.txt): take them from the page.
    this.reqProd = page.atomicLoadU32(XSIF.REQ_PROD);
    this.rspCons = page.atomicLoadU32(XSIF.RSP_CONS);
  }

  // ---- the event-driven core ----

  /** [poll] moves bytes both ways until nothing more can move now; call it when the event channel fires. */
  poll(): void {
    if (this.polling) {
      this.again = true;
      return;
    }
    this.polling = true;
    try {
      do {
        this.again = false;
        this.pass();
      } while (this.again);
    } finally {
      this.polling = false;
    }
  }

  private pass(): void {
    if (this.reconnecting) {
      // Acquire: the server's CONNECTED comes after it emptied the queues.
      if (this.page.atomicLoadU32(XSIF.CONNECTION) !== XENSTORE_CONNECTED) return;
      this.reqProd = this.page.atomicLoadU32(XSIF.REQ_PROD);
      this.rspCons = this.page.atomicLoadU32(XSIF.RSP_CONS);
      const done = this.reconnecting;
      this.reconnecting = null;
      this.broken = null;
      done(ok(undefined));
    }
    if (this.broken) return;
    if (this.page.atomicLoadU32(XSIF.CONNECTION) === XENSTORE_RECONNECT) return; // someone is resetting the ring
    const e = this.page.atomicLoadU32(XSIF.ERROR);
    if (e !== XENSTORE_ERROR_NONE) {
      this.breakWith({ kind: 'disconnected', reason: `xenstored stopped serving the ring (error ${e})` });
      return;
    }
    let signal = false;
    for (;;) {
      const read = this.readReplies();
      if (read < 0) return;
      const wrote = this.writeRequests();
      if (wrote < 0) return;
      if (read === 0 && wrote === 0) break;
      signal = true;
    }
    if (signal) {
      this.stats.kicks++;
      this.kick();
    }
  }

  /** Bytes of replies consumed, or -1 if the connection broke. */
  private readReplies(): number {
    // Acquire: reply bytes the daemon wrote before rsp_prod are visible.
    const prod = this.page.atomicLoadU32(XSIF.RSP_PROD);
    const avail = (prod - this.rspCons) >>> 0;
    if (avail > XENSTORE_RING_SIZE) {
      this.breakWith({ kind: 'disconnected', reason: `rsp_prod ${prod} is ${avail} bytes past rsp_cons ${this.rspCons}` });
      return -1;
    }
    if (avail === 0) return 0;
    const start = this.rspCons & (XENSTORE_RING_SIZE - 1);
    const first = Math.min(avail, XENSTORE_RING_SIZE - start);
    this.page.copyOut(XSIF.RSP + start, this.scratch, 0, first);
    if (avail > first) this.page.copyOut(XSIF.RSP, this.scratch, first, avail - first);
    this.rspCons = (this.rspCons + avail) >>> 0;
    // Release: xenstored may overwrite these bytes only after we copied them.
    this.page.atomicStoreU32(XSIF.RSP_CONS, this.rspCons);
    if (!this.absorb(this.scratch, avail)) return -1;
    return avail;
  }

  /** Feeds reply bytes to the reassembler and dispatches whole messages. */
  private absorb(bytes: Uint8Array, len: number): boolean {
    let i = 0;
    while (i < len) {
      if (this.body === null) {
        const n = Math.min(XSD_SOCKMSG.SIZE - this.hdrUsed, len - i);
        this.hdr.set(bytes.subarray(i, i + n), this.hdrUsed);
        this.hdrUsed += n;
        i += n;
        if (this.hdrUsed < XSD_SOCKMSG.SIZE) break;
        const blen = getU32(this.hdr, XSD_SOCKMSG.LEN);
        const type = getU32(this.hdr, XSD_SOCKMSG.TYPE);
        if (blen > XENSTORE_PAYLOAD_MAX || type >= XS_TYPE_COUNT) {
          this.breakWith({ kind: 'disconnected', reason: `bad reply header (type ${type}, len ${blen})` });
          return false;
        }
        this.body = new Uint8Array(blen);
        this.bodyUsed = 0;
      } else {
        const n = Math.min(this.body.length - this.bodyUsed, len - i);
        this.body.set(bytes.subarray(i, i + n), this.bodyUsed);
        this.bodyUsed += n;
        i += n;
      }
      if (this.body !== null && this.bodyUsed === this.body.length) {
        const body = this.body;
        this.body = null;
        this.hdrUsed = 0;
        this.deliver(getU32(this.hdr, XSD_SOCKMSG.TYPE), getU32(this.hdr, XSD_SOCKMSG.REQ_ID), body);
        if (this.broken) return false;
      }
    }
    return true;
  }

  /** Bytes of requests written, or -1 if the connection broke. */
  private writeRequests(): number {
    let wrote = 0;
    while (this.outQueue.length > 0) {
      const cur = this.outQueue[0] as Uint8Array;
      // Acquire: xenstored finished reading the bytes before req_cons.
      const cons = this.page.atomicLoadU32(XSIF.REQ_CONS);
      const used = (this.reqProd - cons) >>> 0;
      if (used > XENSTORE_RING_SIZE) {
        this.breakWith({ kind: 'disconnected', reason: `req_cons ${cons} is past req_prod ${this.reqProd}` });
        return -1;
      }
      const space = XENSTORE_RING_SIZE - used;
      if (space === 0) break;
      const n = Math.min(space, cur.length - this.outOff);
      const start = this.reqProd & (XENSTORE_RING_SIZE - 1);
      const first = Math.min(n, XENSTORE_RING_SIZE - start);
      this.page.copyIn(XSIF.REQ + start, cur, this.outOff, first);
      if (n > first) this.page.copyIn(XSIF.REQ, cur, this.outOff + first, n - first);
      this.reqProd = (this.reqProd + n) >>> 0;
      // Release: xenstored sees the request bytes before the req_prod that covers them.
      this.page.atomicStoreU32(XSIF.REQ_PROD, this.reqProd);
      this.outOff += n;
      wrote += n;
      if (this.outOff === cur.length) {
        this.outQueue.shift();
        this.outOff = 0;
      }
    }
    return wrote;
  }

  protected override breakWith(e: XsClientError): void {
    if (this.broken) return;
    this.outQueue.length = 0;
    this.outOff = 0;
    this.body = null;
    this.hdrUsed = 0;
    super.breakWith(e);
  }

  /**
   * [reconnect] asks xenstored for a fresh ring (needs the RECONNECTION
   * feature): pending requests fail with 'disconnected', and all watches and
   * transactions are gone on both sides. Resolves when the server says CONNECTED.
   */
  reconnect(): Promise<XsResult<void>> {
    // Acquire: the server advertises features before using the ring.
    if ((this.page.atomicLoadU32(XSIF.SERVER_FEATURES) & XENSTORE_SERVER_FEATURE_RECONNECTION) === 0) {
      return Promise.resolve(err({ kind: 'disconnected', reason: 'xenstored does not offer ring reconnection' }));
    }
    this.breakWith({ kind: 'disconnected', reason: 'ring reconnection' });
    this.broken = { kind: 'disconnected', reason: 'ring reconnection in progress' };
    this.watches.clear();
    return new Promise((resolve) => {
      this.reconnecting = resolve;
      // Publish the request; the server resets the ring and sets CONNECTED.
      this.page.atomicStoreU32(XSIF.CONNECTION, XENSTORE_RECONNECT);
      this.stats.kicks++;
      this.kick();
      this.poll();
    });
  }

  // ---- requests ----

  /** One request onto the req queue: xsd_sockmsg header, then the payload. */
  protected send(m: XsRequestMsg): void {
    const msg = new Uint8Array(XSD_SOCKMSG.SIZE + m.payload.length);
    putU32(msg, XSD_SOCKMSG.TYPE, m.type);
    putU32(msg, XSD_SOCKMSG.REQ_ID, m.reqId);
    putU32(msg, XSD_SOCKMSG.TX_ID, m.txId);
    putU32(msg, XSD_SOCKMSG.LEN, m.payload.length);
    msg.set(m.payload, XSD_SOCKMSG.SIZE);
    this.outQueue.push(msg);
    this.poll();
  }
}
