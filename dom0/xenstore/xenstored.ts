/**
 * xenstored: the XenStore daemon of dom0, transport-free.
 *
 * A transport (socket-server.ts for dom0 tools, ring-transport.ts for a
 * guest's shared page) opens a connection for a domain, feeds it decoded
 * messages and drains its outbox. `handle(conn, msg)` decides the reply and
 * the watch events a request causes; `process(conn, msg)` also queues them on
 * the connections' outboxes and wakes their transports.
 *
 * Conventions (docs/misc/xenstore.txt, cxenstored tools/xenstored/*.c):
 *  - a reply has the request's type, req_id and tx_id; an error reply has type
 *    XS_ERROR and the errno name plus NUL as payload;
 *  - WATCH_EVENT messages carry req_id 0 and tx_id 0;
 *  - the reply to a request is queued before the watch events it causes
 *    (for WATCH: "OK", then the initial event);
 *  - domain 0 is privileged: no permission checks, no quotas, and only it may
 *    INTRODUCE, RELEASE, RESUME, SET_TARGET and use CONTROL;
 *  - no input ever throws out of `handle`: bad requests get an error reply.
 */
import { asDomId, DOMID_FIRST_RESERVED, type DomId } from '../../shared/types.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import {
  XS, XS_NO_TX, XENSTORE_PAYLOAD_MAX, XS_SPECIAL_INTRODUCE_DOMAIN, XS_SPECIAL_RELEASE_DOMAIN,
  XS_TRANSACTION_ABORT, XS_TRANSACTION_COMMIT, type XsErrno, type XsTxId,
} from '../../shared/abi/xenstore.ts';
import { canonicalize, domainPath, parentOf, type CanonicalPath } from './path.ts';
import { CXENSTORED_QUOTA, type XsQuota } from './quota.ts';
import {
  XS_PERM, XsStore, createNode, getChecked, parsePerms, permForCaller, permToString, removeSubtree,
  setNodePerms, type NodePerms, type NodeView, type XsPermEntry,
} from './store.ts';
import { XsTransaction } from './transaction.ts';
import { WatchTable, type WatchTrigger, type XsWatch } from './watch.ts';
import { latin1, payloadOf, splitStrings, type XsMsg } from './wire.ts';

export type { XsMsg } from './wire.ts';

export interface XsConnectionOptions {
  /** Called (synchronously) when something was queued on this connection's outbox. */
  readonly onOutput?: () => void;
  /** Called once when the daemon closes this connection (RELEASE, reset). */
  readonly onClose?: (reason: string) => void;
  /** For logs: "socket", "ring d3", … */
  readonly label?: string;
}

/** One client connection: a domain's ring, or one dom0 socket. */
export class XsConnection {
  readonly caller: { domid: DomId; privileged: boolean; target: DomId | undefined };
  readonly watches = new Set<XsWatch<XsConnection>>();
  readonly transactions = new Map<number, XsTransaction>();
  nextTxId = 1;
  private readonly queue: XsMsg[] = [];
  private head = 0;
  /** Watch events queued and not yet taken. */
  queuedEvents = 0;
  /** Watch events dropped because the queue was full (a client that does not read). */
  droppedEvents = 0;
  closed = false;

  constructor(
    readonly id: number,
    domid: DomId,
    privileged: boolean,
    readonly options: XsConnectionOptions,
  ) {
    this.caller = { domid, privileged, target: undefined };
  }

  get domid(): DomId { return this.caller.domid; }
  get label(): string { return this.options.label ?? `conn${this.id} d${this.caller.domid}`; }
  /** Messages waiting in the outbox. */
  get pending(): number { return this.queue.length - this.head; }

  /** [enqueue msg] appends to the outbox (the daemon's side). */
  enqueue(msg: XsMsg): void {
    this.queue.push(msg);
    if (msg.type === XS.WATCH_EVENT) this.queuedEvents++;
  }

  /** [take] removes and returns the oldest queued message (the transport's side). */
  take(): XsMsg | undefined {
    if (this.head >= this.queue.length) return undefined;
    const m = this.queue[this.head] as XsMsg;
    this.head++;
    if (this.head > 64 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (m.type === XS.WATCH_EVENT) this.queuedEvents--;
    return m;
  }

  /** [peek] is the oldest queued message without removing it. */
  peek(): XsMsg | undefined { return this.queue[this.head]; }

  clearOutbox(): void {
    this.queue.length = 0;
    this.head = 0;
    this.queuedEvents = 0;
  }
}

/** A message for a connection (a reply, or a watch event). */
export interface XsDelivery {
  readonly conn: XsConnection;
  readonly msg: XsMsg;
}

/** What one request causes: the reply to the requester, then watch events for anyone. */
export interface XsHandled {
  readonly reply: XsMsg;
  readonly events: readonly XsDelivery[];
}

export interface XenStoredOptions {
  readonly quota?: Partial<XsQuota>;
  /** The privileged domain (default 0). */
  readonly privilegedDomid?: DomId;
  /**
   * INTRODUCE hook: map the guest's page at mfn and bind the event channel
   * (the dom0 wiring creates a ring transport). Returns an errno to refuse.
   */
  readonly onIntroduce?: (domid: DomId, mfn: number, port: number) => XsErrno | undefined;
  /** Called after a domain was released (RELEASE or releaseDomain()). */
  readonly onRelease?: (domid: DomId) => void;
  /** Log sink for CONTROL print and notable events (default: none). */
  readonly log?: (line: string) => void;
}

export interface XenStoredStats {
  requests: number;
  errors: number;
  events: number;
  eventsDropped: number;
  commits: number;
  conflicts: number;
}

const OK_PAYLOAD = payloadOf('OK');
const EMPTY = new Uint8Array(0);

type OpResult = Result<Uint8Array, XsErrno>;

interface OpContext {
  readonly conn: XsConnection;
  readonly msg: XsMsg;
  readonly tx: XsTransaction | undefined;
  readonly view: NodeView;
  readonly triggers: WatchTrigger[];
  readonly extra: XsDelivery[];
}

/** [parseDomid s] is a decimal domid 0..65535, or undefined. */
function parseDomid(s: string | undefined): DomId | undefined {
  if (s === undefined || !/^[0-9]{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 0xffff ? asDomId(n) : undefined;
}

/** [onearg payload] is cxenstored's onearg: the payload is exactly one NUL-terminated string. */
function onearg(payload: Uint8Array): string | undefined {
  if (payload.length === 0 || payload[payload.length - 1] !== 0) return undefined;
  const first = payload.indexOf(0);
  return first === payload.length - 1 ? latin1(payload.subarray(0, first)) : undefined;
}

export class XenStored {
  readonly store: XsStore;
  readonly quota: XsQuota;
  readonly stats: XenStoredStats = { requests: 0, errors: 0, events: 0, eventsDropped: 0, commits: 0, conflicts: 0 };
  private readonly watches = new WatchTable<XsConnection>();
  private readonly conns = new Set<XsConnection>();
  private readonly introduced = new Set<DomId>();
  private readonly targets = new Map<DomId, DomId>();
  private readonly privDomid: DomId;
  private nextConnId = 1;
  private logging = false;

  constructor(private readonly options: XenStoredOptions = {}) {
    this.store = new XsStore();
    this.quota = { ...CXENSTORED_QUOTA, ...options.quota };
    this.privDomid = options.privilegedDomid ?? asDomId(0);
    this.introduced.add(this.privDomid);
  }

  /** Open connections (for tests and stats). */
  get connections(): ReadonlySet<XsConnection> { return this.conns; }
  /** Registered watches over all connections. */
  get watchCount(): number { return this.watches.size; }

  isIntroduced(domid: DomId): boolean { return this.introduced.has(domid); }

  /** [connect domid opts] opens a connection speaking for domid (socket clients: dom0). */
  connect(domid: DomId, opts: XsConnectionOptions = {}): XsConnection {
    const conn = new XsConnection(this.nextConnId++, domid, domid === this.privDomid, opts);
    conn.caller.target = this.targets.get(domid);
    this.conns.add(conn);
    return conn;
  }

  /**
   * [disconnect conn reason] closes a connection: its watches and transactions
   * go, its outbox is emptied, and its transport is told (onClose).
   */
  disconnect(conn: XsConnection, reason: string): void {
    if (conn.closed) return;
    conn.closed = true;
    this.dropWatchesAndTransactions(conn);
    conn.clearOutbox();
    this.conns.delete(conn);
    conn.options.onClose?.(reason);
  }

  private dropWatchesAndTransactions(conn: XsConnection): void {
    for (const w of conn.watches) this.watches.remove(conn, w.path, w.token);
    conn.watches.clear();
    conn.transactions.clear();
  }

  private domainWatches(domid: DomId): number {
    let n = 0;
    for (const c of this.conns) if (c.caller.domid === domid) n += c.watches.size;
    return n;
  }
  private domainTransactions(domid: DomId): number {
    let n = 0;
    for (const c of this.conns) if (c.caller.domid === domid) n += c.transactions.size;
    return n;
  }

  // ---- domain management (also reachable without a message, for the toolstack) ----

  /** [introduceDomain domid] marks domid as served and fires @introduceDomain. */
  introduceDomain(domid: DomId): Result<void, XsErrno> {
    if (domid === this.privDomid || domid >= DOMID_FIRST_RESERVED) return err('EINVAL');
    if (this.introduced.has(domid)) return ok(undefined);
    this.introduced.add(domid);
    this.deliver(this.fire([this.specialTrigger(XS_SPECIAL_INTRODUCE_DOMAIN)]));
    return ok(undefined);
  }

  /**
   * [releaseDomain domid] stops serving domid: its connections close (their
   * watches and transactions go), and @releaseDomain fires.
   */
  releaseDomain(domid: DomId): Result<void, XsErrno> {
    const r = this.release(domid);
    if (!r.ok) return r;
    this.deliver(this.fire([r.value]));
    return ok(undefined);
  }

  private release(domid: DomId): Result<WatchTrigger, XsErrno> {
    if (domid === this.privDomid) return err('EINVAL');
    if (!this.introduced.has(domid)) return err('ENOENT');
    this.introduced.delete(domid);
    this.targets.delete(domid);
    for (const c of [...this.conns]) if (c.caller.domid === domid) this.disconnect(c, 'domain released');
    this.options.onRelease?.(domid);
    return ok(this.specialTrigger(XS_SPECIAL_RELEASE_DOMAIN));
  }

  private specialTrigger(name: string): WatchTrigger {
    return { path: name, perms: [this.store.special.get(name) ?? [{ id: this.privDomid, perms: XS_PERM.NONE }]] };
  }

  // ---- request handling ----

  /** [process conn msg] handles msg and queues the reply and events on the connections' outboxes. */
  process(conn: XsConnection, msg: XsMsg): void {
    if (conn.closed) return;
    const h = this.handle(conn, msg);
    if (!conn.closed) conn.enqueue(h.reply);
    this.deliver(h.events, conn);
  }

  /** [deliver deliveries] queues each message and wakes each touched connection once. */
  deliver(deliveries: readonly XsDelivery[], alsoWake?: XsConnection): void {
    const touched = new Set<XsConnection>();
    if (alsoWake && !alsoWake.closed) touched.add(alsoWake);
    for (const d of deliveries) {
      if (d.conn.closed) continue;
      if (d.msg.type === XS.WATCH_EVENT && d.conn.queuedEvents >= this.quota.queuedEvents) {
        d.conn.droppedEvents++;
        this.stats.eventsDropped++;
        continue;
      }
      d.conn.enqueue(d.msg);
      touched.add(d.conn);
    }
    for (const c of touched) c.options.onOutput?.();
  }

  /** [handle conn msg] is the reply to msg and the watch events it causes; changes the store. */
  handle(conn: XsConnection, msg: XsMsg): XsHandled {
    this.stats.requests++;
    const triggers: WatchTrigger[] = [];
    const extra: XsDelivery[] = [];
    let r: OpResult;
    const txRes = this.lookupTx(conn, msg);
    if (!txRes.ok) {
      r = txRes;
    } else {
      const tx = txRes.value;
      const ctx: OpContext = { conn, msg, tx, view: tx ?? this.store, triggers, extra };
      // quota_trans_nodes: a transaction may not grow past its budget (ending it is always allowed).
      if (tx && msg.type !== XS.TRANSACTION_END && !conn.caller.privileged && tx.accessed >= this.quota.transactionNodes) {
        r = err('ENOSPC');
      }
      else r = this.dispatch(ctx);
    }
    let reply: XsMsg;
    if (r.ok && r.value.length > XENSTORE_PAYLOAD_MAX) r = err('E2BIG');
    if (r.ok) {
      reply = { type: msg.type, reqId: msg.reqId, txId: msg.txId, payload: r.value };
    } else {
      this.stats.errors++;
      reply = { type: XS.ERROR, reqId: msg.reqId, txId: msg.txId, payload: payloadOf(r.error) };
    }
    const events = [...extra, ...this.fire(triggers)];
    return { reply, events };
  }

  /** Types whose tx_id names a transaction of the connection (the rest ignore it). */
  private static readonly TX_TYPES: ReadonlySet<number> = new Set([
    XS.READ, XS.WRITE, XS.MKDIR, XS.RM, XS.DIRECTORY, XS.DIRECTORY_PART, XS.GET_PERMS, XS.SET_PERMS,
    XS.TRANSACTION_START, XS.TRANSACTION_END,
  ]);

  private lookupTx(conn: XsConnection, msg: XsMsg): Result<XsTransaction | undefined, XsErrno> {
    if (msg.txId === XS_NO_TX || !XenStored.TX_TYPES.has(msg.type)) return ok(undefined);
    const tx = conn.transactions.get(msg.txId);
    return tx ? ok(tx) : err('ENOENT');
  }

  private dispatch(c: OpContext): OpResult {
    switch (c.msg.type) {
      case XS.READ: return this.opRead(c);
      case XS.WRITE: return this.opWrite(c);
      case XS.MKDIR: return this.opMkdir(c);
      case XS.RM: return this.opRm(c);
      case XS.DIRECTORY: return this.opDirectory(c);
      case XS.DIRECTORY_PART: return this.opDirectoryPart(c);
      case XS.GET_PERMS: return this.opGetPerms(c);
      case XS.SET_PERMS: return this.opSetPerms(c);
      case XS.WATCH: return this.opWatch(c);
      case XS.UNWATCH: return this.opUnwatch(c);
      case XS.TRANSACTION_START: return this.opTransactionStart(c);
      case XS.TRANSACTION_END: return this.opTransactionEnd(c);
      case XS.GET_DOMAIN_PATH: return this.opGetDomainPath(c);
      case XS.IS_DOMAIN_INTRODUCED: return this.opIsDomainIntroduced(c);
      case XS.INTRODUCE: return this.opIntroduce(c);
      case XS.RELEASE: return this.opRelease(c);
      case XS.RESUME: return this.opResume(c);
      case XS.SET_TARGET: return this.opSetTarget(c);
      case XS.RESET_WATCHES: return this.opResetWatches(c);
      case XS.CONTROL: return this.opControl(c);
      default: return err('ENOSYS');
    }
  }

  private path(c: OpContext, raw: string | undefined, allowSpecial = false): Result<CanonicalPath, XsErrno> {
    if (raw === undefined) return err('EINVAL');
    return canonicalize(raw, c.conn.caller.domid, {
      allowSpecial,
      privileged: c.conn.caller.privileged,
      maxRelPathLen: this.quota.pathLen,
    });
  }

  /** Record a change: in a transaction it waits for the commit. */
  private changed(c: OpContext, t: WatchTrigger): void {
    if (c.tx) c.tx.triggers.push(t);
    else c.triggers.push(t);
  }

  private opRead(c: OpContext): OpResult {
    const p = this.path(c, onearg(c.msg.payload));
    if (!p.ok) return p;
    const n = getChecked(c.view, c.conn.caller, p.value.path, XS_PERM.READ);
    return n.ok ? ok(n.value.value) : n;
  }

  private opWrite(c: OpContext): OpResult {
    const payload = c.msg.payload;
    const nul = payload.indexOf(0);
    if (nul < 0) return err('EINVAL');
    const p = this.path(c, latin1(payload.subarray(0, nul)));
    if (!p.ok) return p;
    const path = p.value.path;
    const value = payload.slice(nul + 1);
    const caller = c.conn.caller;
    const n = getChecked(c.view, caller, path, XS_PERM.WRITE);
    if (!n.ok && n.error !== 'ENOENT') return n;
    if (!caller.privileged && value.length > this.quota.entrySize) return err('ENOSPC');
    if (n.ok) {
      const node = c.view.modify(path);
      node.value = value;
      this.changed(c, { path, perms: [node.perms] });
    } else {
      const created = createNode(c.view, caller, path, value, this.quota);
      if (!created.ok) return created;
      this.changed(c, { path, perms: [created.value.perms] });
    }
    return ok(OK_PAYLOAD);
  }

  private opMkdir(c: OpContext): OpResult {
    const p = this.path(c, onearg(c.msg.payload));
    if (!p.ok) return p;
    const path = p.value.path;
    const n = getChecked(c.view, c.conn.caller, path, XS_PERM.WRITE);
    if (n.ok) return ok(OK_PAYLOAD);
    if (n.error !== 'ENOENT') return n;
    const created = createNode(c.view, c.conn.caller, path, EMPTY, this.quota);
    if (!created.ok) return created;
    this.changed(c, { path, perms: [created.value.perms] });
    return ok(OK_PAYLOAD);
  }

  private opRm(c: OpContext): OpResult {
    const p = this.path(c, onearg(c.msg.payload));
    if (!p.ok) return p;
    const path = p.value.path;
    const n = getChecked(c.view, c.conn.caller, path, XS_PERM.WRITE);
    if (!n.ok) {
      // Absent is fine if the parent exists (RM "ensures that the path does not exist").
      if (n.error === 'ENOENT' && c.view.get(parentOf(path))) return ok(OK_PAYLOAD);
      return n;
    }
    if (path === '/') return err('EINVAL');
    const perms = n.value.perms;
    const removed = removeSubtree(c.view, path);
    this.changed(c, { path, perms: [perms], removed });
    return ok(OK_PAYLOAD);
  }

  private opDirectory(c: OpContext): OpResult {
    const p = this.path(c, onearg(c.msg.payload));
    if (!p.ok) return p;
    const n = getChecked(c.view, c.conn.caller, p.value.path, XS_PERM.READ);
    if (!n.ok) return n;
    return ok(payloadOf(...n.value.children));
  }

  private opDirectoryPart(c: OpContext): OpResult {
    const strings = splitStrings(c.msg.payload);
    if (strings.length !== 2) return err('EINVAL');
    const p = this.path(c, strings[0]);
    if (!p.ok) return p;
    const n = getChecked(c.view, c.conn.caller, p.value.path, XS_PERM.READ);
    if (!n.ok) return n;
    const off = Number.parseInt(strings[1] as string, 10);
    const start = Number.isFinite(off) && off > 0 ? off : 0;
    const all = payloadOf(...n.value.children);
    const gen = payloadOf(String(n.value.gen));
    if (start >= all.length) return ok(payloadOf(String(n.value.gen), ''));
    // Whole child names from `start` while they fit, then a final NUL if the list ended.
    const maxlen = XENSTORE_PAYLOAD_MAX - gen.length - 1;
    let len = 0;
    while (start + len < all.length) {
      const nul = all.indexOf(0, start + len);
      const clen = nul - (start + len);
      if (len + clen >= maxlen) break;
      len += clen + 1;
    }
    const done = start + len === all.length;
    const out = new Uint8Array(gen.length + len + (done ? 1 : 0));
    out.set(gen, 0);
    out.set(all.subarray(start, start + len), gen.length);
    return ok(out);
  }

  /** Permissions of a special node, or of a real one, checked for `need`. */
  private permsChecked(c: OpContext, path: string, need: number): Result<NodePerms, XsErrno> {
    if (path.charCodeAt(0) === 0x40) {
      const perms = this.store.special.get(path);
      if (!perms) return err('ENOENT');
      return (permForCaller(c.conn.caller, perms) & need) === need ? ok(perms) : err('EACCES');
    }
    const n = getChecked(c.view, c.conn.caller, path, need);
    return n.ok ? ok(n.value.perms) : n;
  }

  private opGetPerms(c: OpContext): OpResult {
    const p = this.path(c, onearg(c.msg.payload), true);
    if (!p.ok) return p;
    const perms = this.permsChecked(c, p.value.path, XS_PERM.READ);
    return perms.ok ? ok(payloadOf(...perms.value.map(permToString))) : perms;
  }

  private opSetPerms(c: OpContext): OpResult {
    const strings = splitStrings(c.msg.payload);
    if (strings.length < 2) return err('EINVAL');
    const caller = c.conn.caller;
    if (!caller.privileged && strings.length - 1 > this.quota.permsPerNode) return err('ENOSPC');
    const perms = parsePerms(strings.slice(1));
    if (!perms.ok) return perms;
    const p = this.path(c, strings[0], true);
    if (!p.ok) return p;
    const path = p.value.path;
    const old = this.permsChecked(c, path, XS_PERM.WRITE | XS_PERM.OWNER);
    if (!old.ok) return old;
    const newOwner = (perms.value[0] as XsPermEntry).id;
    if (!caller.privileged && newOwner !== (old.value[0] as XsPermEntry).id) return err('EPERM');
    if (path.charCodeAt(0) === 0x40) {
      this.store.special.set(path, perms.value);
      return ok(OK_PAYLOAD);
    }
    setNodePerms(c.view, path, perms.value);
    this.changed(c, { path, perms: [old.value, perms.value] });
    return ok(OK_PAYLOAD);
  }

  private watchEvent(conn: XsConnection, eventPath: string, token: string): XsDelivery {
    return { conn, msg: { type: XS.WATCH_EVENT, reqId: 0, txId: 0, payload: payloadOf(eventPath, token) } };
  }

  private opWatch(c: OpContext): OpResult {
    const strings = splitStrings(c.msg.payload);
    if (strings.length !== 2) return err('EINVAL');
    const p = this.path(c, strings[0], true);
    if (!p.ok) return p;
    const token = strings[1] as string;
    const conn = c.conn;
    if (this.watches.find(conn, p.value.path, token)) return err('EEXIST');
    if (!conn.caller.privileged && this.domainWatches(conn.caller.domid) >= this.quota.watches) return err('E2BIG');
    const watch: XsWatch<XsConnection> = {
      owner: conn,
      path: p.value.path,
      token,
      relativeBase: p.value.relative ? domainPath(conn.caller.domid) : undefined,
    };
    this.watches.add(watch);
    conn.watches.add(watch);
    // "When a watch is first set up it is triggered once straight away, with <path> equal to <wpath>."
    const ev = this.watchEvent(conn, WatchTable.eventPathFor(watch, watch.path), token);
    if (ev.msg.payload.length <= XENSTORE_PAYLOAD_MAX) c.extra.push(ev);
    return ok(OK_PAYLOAD);
  }

  private opUnwatch(c: OpContext): OpResult {
    const strings = splitStrings(c.msg.payload);
    if (strings.length !== 2) return err('EINVAL');
    const p = this.path(c, strings[0], true);
    if (!p.ok) return p;
    const w = this.watches.find(c.conn, p.value.path, strings[1] as string);
    if (!w) return err('ENOENT');
    this.watches.remove(c.conn, w.path, w.token);
    c.conn.watches.delete(w);
    return ok(OK_PAYLOAD);
  }

  private opTransactionStart(c: OpContext): OpResult {
    const conn = c.conn;
    if (c.tx) return err('EBUSY');
    if (!conn.caller.privileged && this.domainTransactions(conn.caller.domid) >= this.quota.transactions) return err('ENOSPC');
    let id = conn.nextTxId;
    while (id === 0 || conn.transactions.has(id)) id = (id + 1) >>> 0;
    conn.nextTxId = (id + 1) >>> 0;
    conn.transactions.set(id, new XsTransaction(id as XsTxId, this.store));
    return ok(payloadOf(String(id)));
  }

  private opTransactionEnd(c: OpContext): OpResult {
    const tx = c.tx;
    if (!tx) return err('ENOENT');
    const arg = onearg(c.msg.payload);
    if (arg !== XS_TRANSACTION_COMMIT && arg !== XS_TRANSACTION_ABORT) return err('EINVAL');
    c.conn.transactions.delete(tx.id);
    if (arg === XS_TRANSACTION_ABORT) return ok(OK_PAYLOAD);
    const r = tx.commit(c.conn.caller.privileged ? undefined : this.quota.nodes);
    if (!r.ok) {
      if (r.error.kind === 'conflict') this.stats.conflicts++;
      return err(r.error.kind === 'conflict' ? 'EAGAIN' : 'ENOSPC');
    }
    this.stats.commits++;
    c.triggers.push(...r.value);
    return ok(OK_PAYLOAD);
  }

  private opGetDomainPath(c: OpContext): OpResult {
    const domid = parseDomid(onearg(c.msg.payload));
    return domid === undefined ? err('EINVAL') : ok(payloadOf(domainPath(domid)));
  }

  private opIsDomainIntroduced(c: OpContext): OpResult {
    const domid = parseDomid(onearg(c.msg.payload));
    if (domid === undefined) return err('EINVAL');
    return ok(payloadOf(this.introduced.has(domid) ? 'T' : 'F'));
  }

  private opIntroduce(c: OpContext): OpResult {
    if (!c.conn.caller.privileged) return err('EACCES');
    const s = splitStrings(c.msg.payload);
    if (s.length < 3) return err('EINVAL');
    const domid = parseDomid(s[0]);
    const mfn = /^-?[0-9]{1,20}$/.test(s[1] as string) ? Number(s[1]) : NaN;
    const port = /^[0-9]{1,10}$/.test(s[2] as string) ? Number(s[2]) : NaN;
    if (domid === undefined || domid === this.privDomid || domid >= DOMID_FIRST_RESERVED) return err('EINVAL');
    if (!Number.isSafeInteger(mfn) || !Number.isSafeInteger(port) || port > 0xffff_ffff) return err('EINVAL');
    if (this.introduced.has(domid)) return ok(OK_PAYLOAD);
    const refused = this.options.onIntroduce?.(domid, mfn, port);
    if (refused) return err(refused);
    this.introduced.add(domid);
    c.triggers.push(this.specialTrigger(XS_SPECIAL_INTRODUCE_DOMAIN));
    return ok(OK_PAYLOAD);
  }

  private opRelease(c: OpContext): OpResult {
    if (!c.conn.caller.privileged) return err('EACCES');
    const domid = parseDomid(onearg(c.msg.payload));
    if (domid === undefined) return err('EINVAL');
    const r = this.release(domid);
    if (!r.ok) return r;
    c.triggers.push(r.value);
    return ok(OK_PAYLOAD);
  }

  private opResume(c: OpContext): OpResult {
    if (!c.conn.caller.privileged) return err('EACCES');
    const domid = parseDomid(onearg(c.msg.payload));
    if (domid === undefined) return err('EINVAL');
    return this.introduced.has(domid) ? ok(OK_PAYLOAD) : err('ENOENT');
  }

  private opSetTarget(c: OpContext): OpResult {
    if (!c.conn.caller.privileged) return err('EACCES');
    const s = splitStrings(c.msg.payload);
    if (s.length < 2) return err('EINVAL');
    const domid = parseDomid(s[0]);
    const target = parseDomid(s[1]);
    if (domid === undefined || target === undefined) return err('EINVAL');
    if (!this.introduced.has(domid)) return err('ENOENT');
    this.targets.set(domid, target);
    for (const conn of this.conns) if (conn.caller.domid === domid) conn.caller.target = target;
    return ok(OK_PAYLOAD);
  }

  private opResetWatches(c: OpContext): OpResult {
    this.dropWatchesAndTransactions(c.conn);
    return ok(OK_PAYLOAD);
  }

  /** CONTROL commands (implementation-defined, as in cxenstored control.c, a small subset). */
  private static readonly CONTROL_HELP = [
    'check', 'help', 'log on|off', 'print <string>', 'quota [<domid>]',
  ];

  private opControl(c: OpContext): OpResult {
    if (!c.conn.caller.privileged) return err('EACCES');
    const s = splitStrings(c.msg.payload);
    const [cmd, ...args] = s;
    switch (cmd) {
      case 'help':
        return ok(payloadOf(XenStored.CONTROL_HELP.join('\n') + '\n'));
      case 'check': {
        const problems = this.store.check();
        return ok(payloadOf(problems.length === 0 ? 'OK' : problems.join('\n')));
      }
      case 'print':
        if (args.length < 1) return err('EINVAL');
        this.options.log?.(args.join(' '));
        return ok(OK_PAYLOAD);
      case 'log':
        if (args[0] !== 'on' && args[0] !== 'off') return err('EINVAL');
        this.logging = args[0] === 'on';
        return ok(OK_PAYLOAD);
      case 'quota': {
        if (args.length === 0) {
          const q = this.quota;
          const lines = [
            `nodes: ${q.nodes}`, `watches: ${q.watches}`, `transactions: ${q.transactions}`,
            `entry-size: ${q.entrySize}`, `permissions: ${q.permsPerNode}`,
            `transaction-nodes: ${q.transactionNodes}`, `path-length: ${q.pathLen}`,
          ];
          return ok(payloadOf(lines.join('\n') + '\n'));
        }
        const domid = parseDomid(args[0]);
        if (domid === undefined) return err('EINVAL');
        const lines = [
          `nodes: ${this.store.accounting.nodes(domid)}`,
          `watches: ${this.domainWatches(domid)}`,
          `transactions: ${this.domainTransactions(domid)}`,
        ];
        return ok(payloadOf(lines.join('\n') + '\n'));
      }
      default:
        return err('EINVAL');
    }
  }

  // ---- watch firing ----

  private fire(triggers: readonly WatchTrigger[]): XsDelivery[] {
    const out: XsDelivery[] = [];
    for (const t of triggers) {
      if (this.logging) this.options.log?.(`change ${t.path}`);
      for (const f of this.watches.match(t)) {
        const d = this.watchEvent(f.watch.owner, f.eventPath, f.watch.token);
        // cxenstored: "Don't try to send over-long events."
        if (d.msg.payload.length > XENSTORE_PAYLOAD_MAX) continue;
        out.push(d);
        this.stats.events++;
      }
    }
    return out;
  }
}
