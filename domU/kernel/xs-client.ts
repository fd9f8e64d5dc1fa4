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
 * The daemon is trusted more than a guest is, but not blindly: bogus indices or
 * an oversized reply end the connection with a 'disconnected' error for every
 * pending request instead of corrupting memory or spinning.
 */
import type { MemRegion } from '../../shared/memory/region.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import type { DomId } from '../../shared/types.ts';
import {
  XS, XSD_SOCKMSG, XS_NO_TX, XS_TYPE_COUNT, XS_TYPE_NAMES, XENSTORE_CONNECTED, XENSTORE_DOMAIN_INTERFACE as XSIF,
  XENSTORE_ERROR_NONE, XENSTORE_PAYLOAD_MAX, XENSTORE_RECONNECT, XENSTORE_RING_SIZE,
  XENSTORE_SERVER_FEATURE_RECONNECTION, isXsErrno, type XsErrno, type XsTxId,
} from '../../shared/abi/xenstore.ts';

export type XsClientError =
  /** xenstored answered XS_ERROR with this errno name (unknown names read as EINVAL, as libxenstore does). */
  | { readonly kind: 'xs-error'; readonly errno: XsErrno; readonly op: string; readonly path: string | undefined }
  /** The connection is gone (ring error, bogus indices, reconnection); nothing more will be answered. */
  | { readonly kind: 'disconnected'; readonly reason: string }
  /** The reply had neither the request's type nor XS_ERROR. */
  | { readonly kind: 'bad-reply'; readonly op: string; readonly type: number }
  /** The request payload would exceed XENSTORE_PAYLOAD_MAX (libxenstore's E2BIG), not sent. */
  | { readonly kind: 'too-big'; readonly op: string; readonly len: number }
  /** watch(): a watch with this token is already registered by this client. */
  | { readonly kind: 'duplicate-token'; readonly token: string };

export type XsResult<T> = Result<T, XsClientError>;
export type XsWatchCallback = (path: string, token: string) => void;

export interface XsClientOptions {
  /** TRANSACTION_END EAGAIN retries before transaction() gives up (default 64). */
  readonly maxTransactionAttempts?: number;
}

export interface XsClientStats {
  requests: number;
  replies: number;
  events: number;
  unmatchedReplies: number;
  kicks: number;
}

interface Pending {
  readonly type: number;
  readonly op: string;
  readonly path: string | undefined;
  readonly resolve: (r: XsResult<Uint8Array>) => void;
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}
function bytesOf(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'latin1'));
}
/** "a\0b\0…" from strings (each NUL-terminated). */
function nulStrings(...strings: string[]): Uint8Array {
  return bytesOf(strings.map((s) => `${s}\0`).join(''));
}
/** NUL-terminated strings of a reply payload. */
function splitNul(payload: Uint8Array): string[] {
  const s = latin1(payload);
  const parts = s.split('\0');
  parts.pop(); // text after the last NUL (normally empty)
  return parts;
}
function getU32(b: Uint8Array, off: number): number {
  return ((b[off] as number) | ((b[off + 1] as number) << 8) | ((b[off + 2] as number) << 16) | ((b[off + 3] as number) << 24)) >>> 0;
}
function putU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}

export class XsClient {
  /** [FE] private copies of the indices we own. */
  private reqProd: number;
  private rspCons: number;
  private readonly outQueue: Uint8Array[] = [];
  private outOff = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly watches = new Map<string, { readonly path: string; readonly cb: XsWatchCallback }>();
  private nextReqId = 1;
  // Reply reassembly: a private copy of each message before it is parsed.
  private readonly hdr = new Uint8Array(XSD_SOCKMSG.SIZE);
  private hdrUsed = 0;
  private body: Uint8Array | null = null;
  private bodyUsed = 0;
  private readonly scratch = new Uint8Array(XENSTORE_RING_SIZE);
  private broken: XsClientError | null = null;
  private reconnecting: ((r: XsResult<void>) => void) | null = null;
  private polling = false;
  private again = false;
  private readonly maxAttempts: number;
  readonly stats: XsClientStats = { requests: 0, replies: 0, events: 0, unmatchedReplies: 0, kicks: 0 };

  constructor(
    private readonly page: MemRegion,
    private readonly kick: () => void,
    opts: XsClientOptions = {},
  ) {
    this.maxAttempts = opts.maxTransactionAttempts ?? 64;
    // Indices need not start at 0 (xenstore-ring.txt): take them from the page.
    this.reqProd = page.atomicLoadU32(XSIF.REQ_PROD);
    this.rspCons = page.atomicLoadU32(XSIF.RSP_CONS);
  }

  /** Why the client stopped, or null while it works. */
  get error(): XsClientError | null { return this.broken; }
  /** Requests sent and not yet answered. */
  get inFlight(): number { return this.pending.size; }

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
        this.dispatch(getU32(this.hdr, XSD_SOCKMSG.TYPE), getU32(this.hdr, XSD_SOCKMSG.REQ_ID), body);
        if (this.broken) return false;
      }
    }
    return true;
  }

  private dispatch(type: number, reqId: number, payload: Uint8Array): void {
    if (type === XS.WATCH_EVENT) {
      this.stats.events++;
      const [path, token] = splitNul(payload);
      if (path === undefined || token === undefined) return;
      const w = this.watches.get(token);
      if (w) w.cb(path, token);
      return;
    }
    const p = this.pending.get(reqId);
    if (!p) {
      this.stats.unmatchedReplies++;
      return;
    }
    this.pending.delete(reqId);
    this.stats.replies++;
    if (type === XS.ERROR) {
      const name = splitNul(payload)[0] ?? '';
      p.resolve(err({ kind: 'xs-error', errno: isXsErrno(name) ? name : 'EINVAL', op: p.op, path: p.path }));
    } else if (type !== p.type) {
      p.resolve(err({ kind: 'bad-reply', op: p.op, type }));
    } else {
      p.resolve(ok(payload));
    }
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

  private breakWith(e: XsClientError): void {
    if (this.broken) return;
    this.broken = e;
    const pend = [...this.pending.values()];
    this.pending.clear();
    this.outQueue.length = 0;
    this.outOff = 0;
    this.body = null;
    this.hdrUsed = 0;
    for (const p of pend) p.resolve(err(e));
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

  private request(type: number, payload: Uint8Array, tx: XsTxId, path?: string): Promise<XsResult<Uint8Array>> {
    const op = XS_TYPE_NAMES[type] ?? String(type);
    if (this.broken) return Promise.resolve(err(this.broken));
    if (payload.length > XENSTORE_PAYLOAD_MAX) return Promise.resolve(err({ kind: 'too-big', op, len: payload.length }));
    let reqId = this.nextReqId;
    while (reqId === 0 || this.pending.has(reqId)) reqId = (reqId + 1) >>> 0;
    this.nextReqId = (reqId + 1) >>> 0;
    const msg = new Uint8Array(XSD_SOCKMSG.SIZE + payload.length);
    putU32(msg, XSD_SOCKMSG.TYPE, type);
    putU32(msg, XSD_SOCKMSG.REQ_ID, reqId);
    putU32(msg, XSD_SOCKMSG.TX_ID, tx);
    putU32(msg, XSD_SOCKMSG.LEN, payload.length);
    msg.set(payload, XSD_SOCKMSG.SIZE);
    this.stats.requests++;
    return new Promise((resolve) => {
      this.pending.set(reqId, { type, op, path, resolve });
      this.outQueue.push(msg);
      this.poll();
    });
  }

  private static okOnly(r: XsResult<Uint8Array>): XsResult<void> {
    return r.ok ? ok(undefined) : r;
  }

  /** [read path tx] is the value at path (raw bytes). */
  read(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<Uint8Array>> {
    return this.request(XS.READ, nulStrings(path), tx, path);
  }

  /** [readString path tx] is the value at path as a latin1 string. */
  async readString(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<string>> {
    const r = await this.read(path, tx);
    return r.ok ? ok(latin1(r.value)) : r;
  }

  /** [write path value tx] stores value at path, creating missing parents. */
  async write(path: string, value: Uint8Array | string, tx: XsTxId = XS_NO_TX): Promise<XsResult<void>> {
    const v = typeof value === 'string' ? bytesOf(value) : value;
    const p = bytesOf(`${path}\0`);
    const payload = new Uint8Array(p.length + v.length);
    payload.set(p, 0);
    payload.set(v, p.length);
    return XsClient.okOnly(await this.request(XS.WRITE, payload, tx, path));
  }

  async mkdir(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<void>> {
    return XsClient.okOnly(await this.request(XS.MKDIR, nulStrings(path), tx, path));
  }

  async rm(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<void>> {
    return XsClient.okOnly(await this.request(XS.RM, nulStrings(path), tx, path));
  }

  /** [directory path tx] is the names of path's children, in creation order. */
  async directory(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<string[]>> {
    const r = await this.request(XS.DIRECTORY, nulStrings(path), tx, path);
    return r.ok ? ok(splitNul(r.value)) : r;
  }

  /** [getPerms path tx] is the permission list as strings ("n0", "r1", …; first = owner + default). */
  async getPerms(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<string[]>> {
    const r = await this.request(XS.GET_PERMS, nulStrings(path), tx, path);
    return r.ok ? ok(splitNul(r.value)) : r;
  }

  /** [setPerms path perms tx] replaces the permission list ("n0", "r1", …). */
  async setPerms(path: string, perms: readonly string[], tx: XsTxId = XS_NO_TX): Promise<XsResult<void>> {
    return XsClient.okOnly(await this.request(XS.SET_PERMS, nulStrings(path, ...perms), tx, path));
  }

  /** [getDomainPath domid] is /local/domain/<domid> as xenstored says it. */
  async getDomainPath(domid: DomId): Promise<XsResult<string>> {
    const r = await this.request(XS.GET_DOMAIN_PATH, nulStrings(String(domid)), XS_NO_TX);
    return r.ok ? ok(splitNul(r.value)[0] ?? '') : r;
  }

  /**
   * [watch path token cb] registers a watch; cb(eventPath, token) runs from
   * poll() for every event, starting with the initial one xenstored sends at once.
   * Tokens are unique per client.
   */
  async watch(path: string, token: string, cb: XsWatchCallback): Promise<XsResult<void>> {
    if (this.watches.has(token)) return err({ kind: 'duplicate-token', token });
    // Register first: the initial event follows the reply immediately.
    const entry = { path, cb };
    this.watches.set(token, entry);
    const r = await this.request(XS.WATCH, nulStrings(path, token), XS_NO_TX, path);
    if (!r.ok && this.watches.get(token) === entry) this.watches.delete(token);
    return XsClient.okOnly(r);
  }

  async unwatch(path: string, token: string): Promise<XsResult<void>> {
    const r = await this.request(XS.UNWATCH, nulStrings(path, token), XS_NO_TX, path);
    if (r.ok) this.watches.delete(token);
    return XsClient.okOnly(r);
  }

  async transactionStart(): Promise<XsResult<XsTxId>> {
    const r = await this.request(XS.TRANSACTION_START, nulStrings(''), XS_NO_TX);
    if (!r.ok) return r;
    const id = Number(splitNul(r.value)[0]);
    if (!Number.isInteger(id) || id <= 0 || id > 0xffff_ffff) return err({ kind: 'bad-reply', op: 'TRANSACTION_START', type: XS.TRANSACTION_START });
    return ok(id as XsTxId);
  }

  async transactionEnd(tx: XsTxId, commit: boolean): Promise<XsResult<void>> {
    return XsClient.okOnly(await this.request(XS.TRANSACTION_END, nulStrings(commit ? 'T' : 'F'), tx));
  }

  /**
   * [transaction body] runs body inside a transaction and commits it, running
   * it again from the start while the commit answers EAGAIN (xenbus's
   * "again:" loop). A body error aborts the transaction and is returned.
   */
  async transaction<T>(body: (tx: XsTxId) => Promise<XsResult<T>>): Promise<XsResult<T>> {
    let last: XsClientError = { kind: 'xs-error', errno: 'EAGAIN', op: 'TRANSACTION_END', path: undefined };
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const s = await this.transactionStart();
      if (!s.ok) return s;
      const r = await body(s.value);
      if (!r.ok) {
        await this.transactionEnd(s.value, false);
        return r;
      }
      const e = await this.transactionEnd(s.value, true);
      if (e.ok) return r;
      last = e.error;
      if (!(e.error.kind === 'xs-error' && e.error.errno === 'EAGAIN')) return e;
    }
    return err(last);
  }
}
