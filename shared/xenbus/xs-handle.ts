/**
 * XsHandle: the one asynchronous XenStore client interface drivers use,
 * whatever carries the bytes:
 *  - XsClient (domU/kernel/xs-client.ts): a guest over its xenstore ring page;
 *  - XsLocalClient (dom0/xenstore/local-client.ts): dom0's kernel and tools,
 *    in-process on xenstored's connection table.
 *
 * Nothing here blocks: every operation returns a promise settled when the
 * reply arrives; watch callbacks run when the transport delivers the event
 * (from the ring's poll, or a scheduled drain). Errors are values
 * (`XsClientError`); nothing throws for an error reply.
 *
 * XsRequester is the transport-independent half both clients share: request
 * ids, matching replies, dispatching WATCH_EVENTs to their token's callback,
 * payload encoding, and the transaction retry loop. A transport supplies
 * `send` (put one request on its way) and feeds replies and events to
 * `deliver`.
 */
import { err, ok, type Result } from '../result.ts';
import type { DomId } from '../types.ts';
import {
  XS, XS_NO_TX, XS_TYPE_NAMES, XENSTORE_PAYLOAD_MAX, isXsErrno, type XsErrno, type XsTxId,
} from '../abi/xenstore.ts';

export type XsClientError =
  /** xenstored answered XS_ERROR with this errno name (unknown names read as EINVAL, as libxenstore does). */
  | { readonly kind: 'xs-error'; readonly errno: XsErrno; readonly op: string; readonly path: string | undefined }
  /** The connection is gone (ring error, bogus indices, reconnection, daemon closed it); nothing more will be answered. */
  | { readonly kind: 'disconnected'; readonly reason: string }
  /** The reply had neither the request's type nor XS_ERROR. */
  | { readonly kind: 'bad-reply'; readonly op: string; readonly type: number }
  /** The request payload would exceed XENSTORE_PAYLOAD_MAX (libxenstore's E2BIG), not sent. */
  | { readonly kind: 'too-big'; readonly op: string; readonly len: number }
  /** watch(): a watch with this token is already registered by this client. */
  | { readonly kind: 'duplicate-token'; readonly token: string };

export type XsResult<T> = Result<T, XsClientError>;
export type XsWatchCallback = (path: string, token: string) => void;

/** [isXsError e errno] holds when e is xenstored's error reply `errno`. */
export function isXsError(e: XsClientError, errno: XsErrno): boolean {
  return e.kind === 'xs-error' && e.errno === errno;
}

export interface XsHandle {
  /** [read path tx] is the value at path (raw bytes). */
  read(path: string, tx?: XsTxId): Promise<XsResult<Uint8Array>>;
  /** [readString path tx] is the value at path as a latin1 string. */
  readString(path: string, tx?: XsTxId): Promise<XsResult<string>>;
  /** [write path value tx] stores value at path, creating missing parents. */
  write(path: string, value: Uint8Array | string, tx?: XsTxId): Promise<XsResult<void>>;
  mkdir(path: string, tx?: XsTxId): Promise<XsResult<void>>;
  /** [rm path tx] removes path and everything below it (absent is fine if the parent exists). */
  rm(path: string, tx?: XsTxId): Promise<XsResult<void>>;
  /** [directory path tx] is the names of path's children, in creation order. */
  directory(path: string, tx?: XsTxId): Promise<XsResult<string[]>>;
  /** [getPerms path tx] is the permission list as strings ("n0", "r1", …; first = owner + default). */
  getPerms(path: string, tx?: XsTxId): Promise<XsResult<string[]>>;
  /** [setPerms path perms tx] replaces the permission list. */
  setPerms(path: string, perms: readonly string[], tx?: XsTxId): Promise<XsResult<void>>;
  /** [getDomainPath domid] is /local/domain/<domid> as xenstored says it. */
  getDomainPath(domid: DomId): Promise<XsResult<string>>;
  /**
   * [watch path token cb] registers a watch; cb(eventPath, token) runs for
   * every event, starting with the one xenstored sends at once. Tokens are
   * unique per client; events may be spurious and several changes may come
   * as one event, so a callback re-reads what it cares about.
   */
  watch(path: string, token: string, cb: XsWatchCallback): Promise<XsResult<void>>;
  unwatch(path: string, token: string): Promise<XsResult<void>>;
  transactionStart(): Promise<XsResult<XsTxId>>;
  transactionEnd(tx: XsTxId, commit: boolean): Promise<XsResult<void>>;
  /**
   * [transaction body] runs body inside a transaction and commits it, running
   * it again from the start while the commit answers EAGAIN (xenbus's
   * "again:" loop). A body error aborts the transaction and is returned.
   */
  transaction<T>(body: (tx: XsTxId) => Promise<XsResult<T>>): Promise<XsResult<T>>;
}

export interface XsClientStats {
  requests: number;
  replies: number;
  events: number;
  /** Replies whose req_id matched no request in flight (dropped). */
  unmatchedReplies: number;
  /** Notifications sent to the daemon (ring clients) or drains scheduled (local clients). */
  kicks: number;
  /** Transaction bodies re-run because the commit answered EAGAIN. */
  transactionRetries: number;
}

/** One request as a transport carries it. */
export interface XsRequestMsg {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly payload: Uint8Array;
}

interface Pending {
  readonly type: number;
  readonly op: string;
  readonly path: string | undefined;
  readonly resolve: (r: XsResult<Uint8Array>) => void;
}

export function latin1(bytes: Uint8Array): string {
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
  const parts = latin1(payload).split('\0');
  parts.pop(); // text after the last NUL (normally empty)
  return parts;
}

export interface XsRequesterOptions {
  /** TRANSACTION_END EAGAIN retries before transaction() gives up (default 64). */
  readonly maxTransactionAttempts?: number;
}

/** The transport-independent half of a XenStore client (see the file comment). */
export abstract class XsRequester implements XsHandle {
  private readonly pending = new Map<number, Pending>();
  protected readonly watches = new Map<string, { readonly path: string; readonly cb: XsWatchCallback }>();
  private nextReqId = 1;
  /** Why the client stopped, or null while it works. */
  protected broken: XsClientError | null = null;
  private readonly maxAttempts: number;
  readonly stats: XsClientStats = { requests: 0, replies: 0, events: 0, unmatchedReplies: 0, kicks: 0, transactionRetries: 0 };

  constructor(opts: XsRequesterOptions = {}) {
    this.maxAttempts = opts.maxTransactionAttempts ?? 64;
  }

  /** [send msg] puts one request on its way; its reply comes back through deliver(). */
  protected abstract send(msg: XsRequestMsg): void;

  /** Why the client stopped, or null while it works. */
  get error(): XsClientError | null { return this.broken; }
  /** Requests sent and not yet answered. */
  get inFlight(): number { return this.pending.size; }

  /** [deliver type reqId payload] hands one message from xenstored to the client (a reply or a WATCH_EVENT). */
  protected deliver(type: number, reqId: number, payload: Uint8Array): void {
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

  /** [breakWith e] stops the client: every request in flight fails with e, and so will later ones. */
  protected breakWith(e: XsClientError): void {
    if (this.broken) return;
    this.broken = e;
    const pend = [...this.pending.values()];
    this.pending.clear();
    for (const p of pend) p.resolve(err(e));
  }

  protected request(type: number, payload: Uint8Array, tx: XsTxId, path?: string): Promise<XsResult<Uint8Array>> {
    const op = XS_TYPE_NAMES[type] ?? String(type);
    if (this.broken) return Promise.resolve(err(this.broken));
    if (payload.length > XENSTORE_PAYLOAD_MAX) return Promise.resolve(err({ kind: 'too-big', op, len: payload.length }));
    let reqId = this.nextReqId;
    while (reqId === 0 || this.pending.has(reqId)) reqId = (reqId + 1) >>> 0;
    this.nextReqId = (reqId + 1) >>> 0;
    this.stats.requests++;
    return new Promise((resolve) => {
      this.pending.set(reqId, { type, op, path, resolve });
      this.send({ type, reqId, txId: tx, payload });
    });
  }

  private static okOnly(r: XsResult<Uint8Array>): XsResult<void> {
    return r.ok ? ok(undefined) : r;
  }

  read(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<Uint8Array>> {
    return this.request(XS.READ, nulStrings(path), tx, path);
  }

  async readString(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<string>> {
    const r = await this.read(path, tx);
    return r.ok ? ok(latin1(r.value)) : r;
  }

  async write(path: string, value: Uint8Array | string, tx: XsTxId = XS_NO_TX): Promise<XsResult<void>> {
    const v = typeof value === 'string' ? bytesOf(value) : value;
    const p = bytesOf(`${path}\0`);
    const payload = new Uint8Array(p.length + v.length);
    payload.set(p, 0);
    payload.set(v, p.length);
    return XsRequester.okOnly(await this.request(XS.WRITE, payload, tx, path));
  }

  async mkdir(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<void>> {
    return XsRequester.okOnly(await this.request(XS.MKDIR, nulStrings(path), tx, path));
  }

  async rm(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<void>> {
    return XsRequester.okOnly(await this.request(XS.RM, nulStrings(path), tx, path));
  }

  async directory(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<string[]>> {
    const r = await this.request(XS.DIRECTORY, nulStrings(path), tx, path);
    return r.ok ? ok(splitNul(r.value)) : r;
  }

  async getPerms(path: string, tx: XsTxId = XS_NO_TX): Promise<XsResult<string[]>> {
    const r = await this.request(XS.GET_PERMS, nulStrings(path), tx, path);
    return r.ok ? ok(splitNul(r.value)) : r;
  }

  async setPerms(path: string, perms: readonly string[], tx: XsTxId = XS_NO_TX): Promise<XsResult<void>> {
    return XsRequester.okOnly(await this.request(XS.SET_PERMS, nulStrings(path, ...perms), tx, path));
  }

  async getDomainPath(domid: DomId): Promise<XsResult<string>> {
    const r = await this.request(XS.GET_DOMAIN_PATH, nulStrings(String(domid)), XS_NO_TX);
    return r.ok ? ok(splitNul(r.value)[0] ?? '') : r;
  }

  async watch(path: string, token: string, cb: XsWatchCallback): Promise<XsResult<void>> {
    if (this.watches.has(token)) return err({ kind: 'duplicate-token', token });
    // Register first: the initial event follows the reply immediately.
    const entry = { path, cb };
    this.watches.set(token, entry);
    const r = await this.request(XS.WATCH, nulStrings(path, token), XS_NO_TX, path);
    if (!r.ok && this.watches.get(token) === entry) this.watches.delete(token);
    return XsRequester.okOnly(r);
  }

  async unwatch(path: string, token: string): Promise<XsResult<void>> {
    // Forget the callback at once: no event for this token runs after unwatch was asked.
    this.watches.delete(token);
    return XsRequester.okOnly(await this.request(XS.UNWATCH, nulStrings(path, token), XS_NO_TX, path));
  }

  async transactionStart(): Promise<XsResult<XsTxId>> {
    const r = await this.request(XS.TRANSACTION_START, nulStrings(''), XS_NO_TX);
    if (!r.ok) return r;
    const id = Number(splitNul(r.value)[0]);
    if (!Number.isInteger(id) || id <= 0 || id > 0xffff_ffff) return err({ kind: 'bad-reply', op: 'TRANSACTION_START', type: XS.TRANSACTION_START });
    return ok(id as XsTxId);
  }

  async transactionEnd(tx: XsTxId, commit: boolean): Promise<XsResult<void>> {
    return XsRequester.okOnly(await this.request(XS.TRANSACTION_END, nulStrings(commit ? 'T' : 'F'), tx));
  }

  async transaction<T>(body: (tx: XsTxId) => Promise<XsResult<T>>): Promise<XsResult<T>> {
    let last: XsClientError = { kind: 'xs-error', errno: 'EAGAIN', op: 'TRANSACTION_END', path: undefined };
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      if (attempt > 0) this.stats.transactionRetries++;
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
      if (!isXsError(e.error, 'EAGAIN')) return e;
    }
    return err(last);
  }
}

/**
 * [inTransaction xs tx] is a handle whose node operations (read, write,
 * directory, …) run inside transaction tx unless given another one, so a
 * driver hook written against a plain XsHandle reads one consistent snapshot
 * when the xenbus driver runs it inside a transaction (the backend reads the
 * frontend's state, its xensim handshake generation and its ring keys
 * together). Watches, domain paths and transaction control go to xs as they are.
 */
export function inTransaction(xs: XsHandle, tx: XsTxId): XsHandle {
  return {
    read: (path, t = tx) => xs.read(path, t),
    readString: (path, t = tx) => xs.readString(path, t),
    write: (path, value, t = tx) => xs.write(path, value, t),
    mkdir: (path, t = tx) => xs.mkdir(path, t),
    rm: (path, t = tx) => xs.rm(path, t),
    directory: (path, t = tx) => xs.directory(path, t),
    getPerms: (path, t = tx) => xs.getPerms(path, t),
    setPerms: (path, perms, t = tx) => xs.setPerms(path, perms, t),
    getDomainPath: (domid) => xs.getDomainPath(domid),
    watch: (path, token, cb) => xs.watch(path, token, cb),
    unwatch: (path, token) => xs.unwatch(path, token),
    transactionStart: () => xs.transactionStart(),
    transactionEnd: (t, commit) => xs.transactionEnd(t, commit),
    transaction: (body) => xs.transaction(body),
  };
}
