/**
 * The backend half of the xenbus handshake (Linux xen-blkback/xenbus.c,
 * xen-netback/xenbus.c, xenbus_probe_backend.c), parameterised by the
 * driver's hooks. One XenbusBackend per device directory
 * /local/domain/<backDom>/backend/<type>/<frontDom>/<devid>.
 *
 * What it does, driven by watches on its own directory and on the
 * frontend's `state`:
 *
 *  - probe (its directory exists and names the frontend): `hooks.probe` opens
 *    the device and returns the features to publish; they are written with
 *    state InitWait and a new handshake generation (xensim's own
 *    `xensim-generation`, below) in one transaction (Initialising is written
 *    again instead when the driver skips InitWait).
 *  - frontend Initialised or Connected while we are not connected: in ONE
 *    read-only transaction, the frontend's state, the generation its keys
 *    answer (`xensim-generation-ack`) and `hooks.readFrontend` (which reads
 *    and checks its keys, hostile); keys that answer another generation are
 *    a predecessor's and are left alone (below); otherwise `hooks.connect`
 *    maps rings and binds event channels and returns the keys to publish
 *    after connecting (sectors, info, …); they go out with Connected in one
 *    transaction. Already Connected: nothing (Linux: "ensure we connect even
 *    when two watches fire in close succession").
 *  - frontend Initialising while we are Closed or Connected: the frontend
 *    reset or resumed: disconnect if connected, back to InitWait.
 *  - frontend Closing: disconnect, Closing. Frontend Closed, or its directory
 *    gone: disconnect, Closed; and if `online` is 0, unregister.
 *  - our own directory gone (the toolstack removed the device): disconnect
 *    and unregister. Our state node re-seeded to Initialising by the
 *    toolstack (the device re-created in place): disconnect and probe again.
 *  - `republish(keys)` while Connected writes keys and Connected again in one
 *    transaction: the resize signal.
 *
 * Backend restarts. A backend instance that dies leaves its directory as it
 * was (Connected, say) and a new instance probes it again; the frontend
 * resumes when it sees the new instance (frontend.ts) and revokes the grants
 * and closes the port it gave the old one. Reading the frontend's state
 * Connected and its ring-ref at that moment says nothing about whether they
 * are still good: connecting to them races the frontend's teardown, and the
 * lost race (map or bind failing) used to close the device for good. So each
 * instance publishes a fresh generation, max(the directory's, the frontend's
 * ack) + 1, and connects only to keys written with an ack of exactly that
 * generation — keys the frontend made after seeing us, which it keeps until
 * it sees another generation. A frontend that writes no ack (one that does
 * not know xensim's generation) is connected to as before. Linux avoids the
 * race differently: its blkback rebinds to the rings in place and blkfront
 * never notices; ours must let a restarted backend change its limits, which
 * needs the frontend to re-read them and so to resume.
 *
 * Garbage in the frontend's `state` is logged and counted; we stay as we are.
 * A failing hook is xenbus_dev_fatal: error node, Closing; so is the
 * driver's own `fatal()` (or `ctx.fatal`) from its data path. A connect that
 * fails after the frontend changed its state or its keys' generation
 * meanwhile is not fatal: the frontend moved on, and the next pass follows it.
 */
import { ok, err, type Result } from '../result.ts';
import type { DomId } from '../types.ts';
import { XenbusState, isLegalTransition, parseXenbusState, xenbusStateName } from './state.ts';
import { inTransaction, isXsError, type XsClientError, type XsHandle, type XsResult } from './xs-handle.ts';
import type { XsTxId } from '../abi/xenstore.ts';
import {
  XENBUS_KEY, XENSIM_GENERATION_MAX, XENSIM_KEY, backendPath, backendTypePath, frontendPath, parseDomidValue,
  type XenbusDeviceId,
} from './paths.ts';
import { readKey, readUint, readUintOr, describeKeyError } from './keys.ts';
import {
  XenbusBus, XenbusDevice, type HookResult, type XenbusBusOptions, type XenbusContext,
  type XenbusDeviceOptions, type XenbusHookError, type XenbusKeys,
} from './device.ts';

export interface BackendHooks<F> {
  /** The device directory exists: open the device; the keys returned (features) are published with InitWait. */
  probe(ctx: XenbusContext): HookResult<XenbusKeys>;
  /** The frontend says Initialised/Connected: read and check its keys (ring-ref, event-channel, …). */
  readFrontend(ctx: XenbusContext): HookResult<F>;
  /** Map the rings, bind the event channels; the keys returned are published with Connected. */
  connect(ctx: XenbusContext, frontend: F): HookResult<XenbusKeys>;
  /** Undo connect (unmap, unbind). Called exactly once per successful connect. */
  disconnect(ctx: XenbusContext): void | Promise<void>;
  /** The device goes away (unregister): close it. */
  remove?(ctx: XenbusContext): void | Promise<void>;
}

/** What one read-only transaction saw of the frontend before connecting. */
type FrontendSnapshot<F> =
  /** Its state is no longer Initialised/Connected: nothing to connect to. */
  | { readonly kind: 'moved'; readonly state: XenbusState | 'absent' | 'garbage' }
  /** Its keys answer another backend generation (`ack`; undefined = a malformed ack). */
  | { readonly kind: 'stale'; readonly state: XenbusState; readonly ack: number | undefined }
  /** Keys for us (or a frontend without acks): the readFrontend hook's verdict on them. */
  | { readonly kind: 'keys'; readonly state: XenbusState; readonly ack: number | undefined; readonly read: Result<F, XenbusHookError> };

/** [readAck xs frontPath tx] is the frontend's generation ack: a number, 'missing', or undefined when malformed. */
async function readAck(xs: XsHandle, frontPath: string, tx?: XsTxId): Promise<Result<number | 'missing' | undefined, XsClientError>> {
  const r = await readUint(xs, frontPath, XENSIM_KEY.GENERATION_ACK, XENSIM_GENERATION_MAX, tx);
  if (r.ok) return r;
  switch (r.error.kind) {
    case 'missing': return ok('missing');
    case 'bad-value': return ok(undefined);
    case 'xenstore': return err(r.error.error);
  }
}

export interface XenbusBackendOptions extends XenbusDeviceOptions {
  /** Stay in Initialising after probe and connect straight from there (a backend that needs nothing first). */
  readonly skipInitWait?: boolean;
}

export class XenbusBackend<F = unknown> extends XenbusDevice {
  readonly id: XenbusDeviceId;
  readonly path: string;
  readonly frontPath: string;
  private detailsOk = false;
  private probed = false;
  private connected = false;
  /** The frontend's state node has existed since we probed. */
  private peerSeen = false;
  /** Our handshake generation (xensim-generation), set at each probe; 0 before the first. */
  private generation = 0;
  /** The stale ack last logged (so a frontend slow to resume is logged once, not every pass). */
  private staleLogged: number | undefined | 'none' = 'none';
  private readonly context: XenbusContext;

  constructor(
    xs: XsHandle,
    id: XenbusDeviceId,
    private readonly hooks: BackendHooks<F>,
    private readonly options: XenbusBackendOptions = {},
  ) {
    super('backend', xs, options, `${id.type}/${id.frontDom}/${id.devid}`);
    this.id = id;
    this.path = backendPath(id);
    this.frontPath = frontendPath(id);
    this.context = {
      id, xs, frontPath: this.frontPath, backPath: this.path, log: (l) => this.log(l), fatal: (k, m) => this.fatal(k, m),
    };
  }

  protected get ownPath(): string { return this.path; }
  protected get ctx(): XenbusContext { return this.context; }
  /** True while the rings are mapped (connect succeeded, disconnect not yet run). */
  get isConnected(): boolean { return this.connected; }
  /** Our handshake generation (xensim's own `xensim-generation`; 0 before the first probe). */
  get handshakeGeneration(): number { return this.generation; }

  /** [start] watches our directory and the frontend's state, then runs the first pass. */
  async start(): Promise<Result<void, unknown>> {
    const a = await this.watchPath(this.path, 'own');
    if (!a.ok) return a;
    const b = await this.watchPath(`${this.frontPath}/${XENBUS_KEY.STATE}`, 'peer');
    if (!b.ok) return b;
    this.kick();
    return a;
  }

  /** [stop] unregisters without touching XenStore (our domain is going away); disconnects first. */
  async stop(): Promise<void> {
    await this.idle();
    await this.doDisconnect();
    await this.unregister('stopped');
  }

  /**
   * [republish keys] writes keys and Connected again in one transaction: the
   * frontend re-reads what changed (Linux blkback's resize). Only while Connected.
   */
  async republish(keys: XenbusKeys): Promise<boolean> {
    if (this.stateNow !== XenbusState.Connected || this.stopped) return false;
    const r = await this.switchState(XenbusState.Connected, keys, true);
    if (r.ok) this.stats.refreshes++;
    return r.ok;
  }

  private async doDisconnect(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    this.stats.disconnects++;
    await this.hooks.disconnect(this.context);
  }

  /** The frontend's directory and id, as the toolstack wrote them, must name the device we serve. */
  private async checkDetails(): Promise<boolean> {
    const fe = await readKey(this.xs, this.path, XENBUS_KEY.FRONTEND);
    const fid = await readKey(this.xs, this.path, XENBUS_KEY.FRONTEND_ID);
    if (!fe.ok || !fid.ok) {
      const e = !fe.ok ? fe.error : !fid.ok ? fid.error : undefined;
      if (e) this.log(`waiting for the toolstack: ${describeKeyError(e)}`);
      return false;
    }
    if (fe.value !== this.frontPath || parseDomidValue(fid.value) !== this.id.frontDom) {
      this.stats.unexpectedPeerState++;
      this.log(`frontend = "${fe.value}", frontend-id = "${fid.value}" do not name ${this.frontPath}; not serving`);
      return false;
    }
    return true;
  }

  /**
   * [nextGeneration] is the generation a new probe publishes: one more than
   * both the one in our directory (a predecessor's) and the frontend's ack,
   * so that no key the frontend wrote before it can answer it. Undefined on
   * XenStore trouble (logged).
   */
  private async nextGeneration(): Promise<number | undefined> {
    const own = await readUint(this.xs, this.path, XENSIM_KEY.GENERATION, XENSIM_GENERATION_MAX);
    if (!own.ok && own.error.kind === 'xenstore') { this.xsFailed('read our generation', own.error.error); return undefined; }
    const ack = await readAck(this.xs, this.frontPath);
    // EACCES: a frontend dir we may not read (not created yet): no ack to step over.
    if (!ack.ok && !isXsError(ack.error, 'EACCES')) { this.xsFailed('read the frontend\'s generation ack', ack.error); return undefined; }
    const a = ack.ok && typeof ack.value === 'number' ? ack.value : 0;
    const g = Math.max(own.ok ? own.value : 0, a, this.generation) + 1;
    return g > XENSIM_GENERATION_MAX ? 1 : g;
  }

  /**
   * [snapshotFrontend] reads, in one read-only transaction, the frontend's
   * state, its generation ack and (when the keys are for us) what
   * `hooks.readFrontend` makes of its keys: one consistent picture, since the
   * frontend writes its keys, its ack and its state in one transaction too.
   * The hook may run more than once (the transaction is retried on EAGAIN);
   * it only reads. Undefined on XenStore trouble (logged).
   */
  private async snapshotFrontend(): Promise<FrontendSnapshot<F> | undefined> {
    const S = XenbusState;
    let threw: { e: unknown } | undefined;
    const r = await this.xs.transaction(async (tx: XsTxId): Promise<XsResult<FrontendSnapshot<F>>> => {
      const st = await this.xs.readString(`${this.frontPath}/${XENBUS_KEY.STATE}`, tx);
      if (!st.ok) {
        if (isXsError(st.error, 'ENOENT') || isXsError(st.error, 'EACCES')) return ok({ kind: 'moved', state: 'absent' });
        return st;
      }
      const parsed = parseXenbusState(st.value);
      if (!parsed.ok) return ok({ kind: 'moved', state: 'garbage' });
      const state = parsed.value;
      if (state !== S.Initialised && state !== S.Connected) return ok({ kind: 'moved', state });
      const ack = await readAck(this.xs, this.frontPath, tx);
      if (!ack.ok) return ack;
      if (ack.value !== 'missing' && ack.value !== this.generation) return ok({ kind: 'stale', state, ack: ack.value });
      try {
        const read = await this.hooks.readFrontend({ ...this.context, xs: inTransaction(this.xs, tx) });
        return ok({ kind: 'keys', state, ack: ack.value === 'missing' ? undefined : ack.value, read });
      } catch (e) {
        threw = { e };
        return err({ kind: 'disconnected', reason: 'readFrontend threw' });
      }
    });
    if (threw !== undefined) throw threw.e; // our bug, or the driver's: the loop reports it
    if (!r.ok) { this.xsFailed('read the frontend', r.error); return undefined; }
    return r.value;
  }

  /** [frontendMoved state ack] holds when the frontend's state or generation ack is no longer what we connected to. */
  private async frontendMoved(state: XenbusState, ack: number | undefined): Promise<boolean> {
    const now = await this.readStateAt(`${this.frontPath}/${XENBUS_KEY.STATE}`, true);
    if (now !== state) return true;
    const a = await readAck(this.xs, this.frontPath);
    return a.ok && (a.value === 'missing' ? undefined : a.value) !== ack;
  }

  protected async pass(): Promise<void> {
    const S = XenbusState;
    const own = await this.readStateAt(`${this.path}/${XENBUS_KEY.STATE}`, false);
    if (own === 'error') return;
    if (own === 'absent') {
      await this.doDisconnect();
      await this.hooks.remove?.(this.context);
      await this.unregister('device directory removed');
      return;
    }
    if (!this.probed) {
      if (own !== 'garbage') this.stateNow = own;
      if (!this.detailsOk) {
        this.detailsOk = await this.checkDetails();
        if (!this.detailsOk) return;
      }
      const feats = await this.hooks.probe(this.context);
      if (!feats.ok) return this.hookFailed('probe', feats.error);
      const gen = await this.nextGeneration();
      if (gen === undefined) return;
      this.probed = true;
      const to = this.options.skipInitWait && this.stateNow === S.Initialising ? S.Initialising : S.InitWait;
      // A directory left in Closing (or a stranger state) by an earlier instance: through Closed first.
      if (to !== this.stateNow && !isLegalTransition('backend', this.stateNow, to)) {
        const c = await this.switchState(S.Closed);
        if (!c.ok) return;
      }
      // The state is written even if unchanged: the frontend watches only our state node, and must see the new generation.
      const r = await this.switchState(to, { ...feats.value, [XENSIM_KEY.GENERATION]: String(gen) }, true);
      if (!r.ok) return;
      this.generation = gen;
      this.staleLogged = 'none';
    } else if (own === S.Initialising && this.stateNow !== S.Initialising) {
      // The toolstack re-created the device in place: start over.
      this.log(`state re-seeded to Initialising by the toolstack; probing again`);
      await this.doDisconnect();
      this.stateNow = S.Initialising;
      this.probed = false;
      this.detailsOk = false;
      this.peerSeen = false;
      this.kick();
      return;
    }

    const fe = await this.readStateAt(`${this.frontPath}/${XENBUS_KEY.STATE}`, true);
    if (fe === 'error' || fe === 'garbage') return; // counted; keep serving as we are
    this.peer = fe;
    if (fe !== 'absent' && fe !== S.Unknown) this.peerSeen = true;
    switch (fe) {
      case S.Initialising:
        if (this.stateNow === S.Connected || this.stateNow === S.Closed) {
          // Frontend reset or resume: Linux blkback's "prepare for reconnect".
          if (this.stateNow === S.Connected) this.stats.resumes++;
          await this.doDisconnect();
          await this.switchState(S.InitWait);
        }
        return;
      case S.Initialised:
      case S.Connected: {
        if (this.stateNow === S.Connected || this.stateNow === S.Closing || this.stateNow === S.Closed) return;
        const snap = await this.snapshotFrontend();
        if (snap === undefined) return; // XenStore trouble, logged; the next event retries
        if (snap.kind === 'moved') { this.kick(); return; }
        if (snap.kind === 'stale') {
          // A predecessor's keys: the frontend revokes them once it sees our generation, then hands over new ones.
          this.stats.staleKeys++;
          if (this.staleLogged !== snap.ack) {
            this.staleLogged = snap.ack;
            this.log(`frontend is ${xenbusStateName(snap.state)} with keys for generation ${snap.ack ?? '(malformed)'}, ours is ${this.generation}; waiting for new ones`);
          }
          return;
        }
        const f = snap.read;
        if (!f.ok) return this.hookFailed('reading the frontend', f.error);
        await this.doDisconnect(); // idempotent precondition, as blkback's xen_blkif_disconnect
        const keys = await this.hooks.connect(this.context, f.value);
        if (!keys.ok) {
          if (await this.frontendMoved(snap.state, snap.ack)) {
            this.log(`connect failed (${keys.error.kind}: ${keys.error.message}) after the frontend moved on; following it`);
            this.kick();
            return;
          }
          return this.hookFailed('connect', keys.error);
        }
        this.connected = true;
        this.stats.connects++;
        const r = await this.switchState(S.Connected, keys.value);
        if (!r.ok) await this.doDisconnect();
        return;
      }
      case S.Closing:
        await this.doDisconnect();
        if (this.stateNow !== S.Closing && this.stateNow !== S.Closed) await this.switchState(S.Closing);
        return;
      case 'absent':
      case S.Unknown:
      case S.Closed: {
        // A frontend directory not created yet is waited for; one that went away closes us.
        if (fe !== S.Closed && !this.peerSeen) return;
        await this.doDisconnect();
        if (this.stateNow !== S.Closed) {
          const r = await this.switchState(S.Closed);
          if (!r.ok) return;
        }
        const online = await readUintOr(this.xs, this.path, XENBUS_KEY.ONLINE, 1, 1);
        if (online.ok && online.value === 0) {
          await this.hooks.remove?.(this.context);
          await this.unregister('offline and closed');
        }
        return;
      }
      default:
        // InitWait, Reconfiguring, Reconfigured: nothing a frontend should say to a backend here.
        this.stats.unexpectedPeerState++;
        this.log(`ignoring frontend state ${xenbusStateName(fe)} while ${xenbusStateName(this.stateNow)}`);
        return;
    }
  }
}

/** A backend driver: makes the hooks for each device the bus probes (undefined: not ours, skip). */
export type BackendDriver<F> = (id: XenbusDeviceId) => BackendHooks<F> | undefined;

export interface XenbusBackendBusOptions extends XenbusBusOptions {
  readonly device?: Omit<XenbusBackendOptions, 'onUnregister'>;
}

/**
 * [createBackendBus xs backDom type driver opts] watches
 * /local/domain/<backDom>/backend/<type> and runs a XenbusBackend for every
 * <frontDom>/<devid> directory that appears (xenbus_probe_backend). Call
 * `start()` on the result.
 */
export function createBackendBus<F>(
  xs: XsHandle, backDom: DomId, type: string, driver: BackendDriver<F>, opts: XenbusBackendBusOptions = {},
): XenbusBus<XenbusBackend<F>> {
  return new XenbusBus<XenbusBackend<F>>(xs, backendTypePath(backDom, type), 2, (rel, onUnregister) => {
    const frontDom = parseDomidValue(rel[0] ?? '');
    const devid = /^[0-9]{1,10}$/.test(rel[1] ?? '') ? Number(rel[1]) : NaN;
    if (frontDom === undefined || !Number.isInteger(devid) || devid > 0x7fff_ffff) return undefined;
    const id: XenbusDeviceId = { type, frontDom, backDom, devid };
    const hooks = driver(id);
    if (hooks === undefined) return undefined;
    return new XenbusBackend<F>(xs, id, hooks, { ...opts.device, log: opts.device?.log ?? opts.log, onUnregister: onUnregister });
  }, opts);
}
