/**
 * The frontend half of the xenbus handshake (Linux xen-blkfront.c
 * blkback_changed/talk_to_blkback/blkfront_resume, xen-netfront.c,
 * xenbus_probe_frontend.c), parameterised by the driver's hooks. One
 * XenbusFrontend per device directory /local/domain/<frontDom>/device/<type>/<devid>.
 *
 * Driven by watches on its own directory and on the backend's `state`:
 *
 *  - backend InitWait (or Initialising, for `eager` drivers facing a backend
 *    that skips InitWait) while we are Initialising: `hooks.readBackend`
 *    reads the features (hostile), after the backend's handshake generation
 *    (xensim's own `xensim-generation`, see paths.ts and backend.ts),
 *    `hooks.setup` grants the rings and allocates
 *    event channels and returns our keys; the keys, the generation they
 *    answer (`xensim-generation-ack`) and state Initialised (Connected for
 *    drivers that skip Initialised, as netfront) are written in ONE
 *    transaction, retried on EAGAIN.
 *  - backend Connected: `hooks.connected` reads what the backend published
 *    after connecting (sectors, …) and starts I/O; we go Connected. A backend
 *    that writes Connected again while we are connected: `hooks.refresh` (a
 *    resize, in Linux).
 *  - backend Closing: `hooks.teardown('close')`, Closed (xenbus_frontend_closed).
 *  - backend gone and coming back — its state node vanishes, or reads Closed,
 *    Initialising or InitWait while we are Initialised/Connected — is the
 *    resume path (blkfront_resume + blkif_recover): `hooks.teardown('resume')`
 *    (the driver keeps its in-flight requests to requeue), back to
 *    Initialising, and the handshake again; `setup` and `connected` are told
 *    `resumed: true`. So is a backend generation other than the one our keys
 *    answer, while we are Initialised or Connected: a new backend instance,
 *    which will not connect to keys we made for the one before it.
 *  - a stale backend found Connected while we have given it nothing (we were
 *    restarted, kexec-style): Closing → wait for it to close → Closed →
 *    Initialising (xenbus_reset_frontend).
 *  - `close()`: Closing; when the backend closes too, teardown and Closed.
 *  - our own directory gone (unplugged): teardown('remove'), unregister.
 *
 * Garbage in the backend's `state` is logged and counted; we stay as we are.
 * A failing hook is xenbus_dev_fatal: error node, Closing.
 */
import { type Result } from '../result.ts';
import { DOMID_INVALID, type DomId } from '../types.ts';
import { XenbusState, xenbusStateName } from './state.ts';
import type { XsHandle } from './xs-handle.ts';
import {
  XENBUS_KEY, XENSIM_GENERATION_MAX, XENSIM_KEY, backendPath, domainHome, frontendPath, parseDomidValue,
  type XenbusDeviceId,
} from './paths.ts';
import { describeKeyError, readKey, readUint } from './keys.ts';
import {
  XenbusBus, XenbusDevice, type HookResult, type XenbusBusOptions, type XenbusContext,
  type XenbusDeviceOptions, type XenbusKeys,
} from './device.ts';

/** Why the driver must let go of its rings. */
export type TeardownReason =
  /** The backend went away or restarted: keep in-flight requests, they are requeued after the next connect. */
  | 'resume'
  /** An orderly close (ours or the backend's): fail what is in flight. */
  | 'close'
  /** The device was unplugged or the driver stopped. */
  | 'remove';

export interface HandshakeInfo {
  /** True when this handshake follows a resume: requeue what teardown('resume') kept. */
  readonly resumed: boolean;
}

export interface FrontendHooks<B> {
  /** Read and check the backend's features (feature-*, max-ring-page-order, …). */
  readBackend(ctx: XenbusContext): HookResult<B>;
  /** Grant the rings, allocate event channels; the keys returned are written with Initialised in one transaction. */
  setup(ctx: XenbusContext, backend: B, info: HandshakeInfo): HookResult<XenbusKeys>;
  /** The backend is Connected: read what it published after connecting, start I/O. */
  connected(ctx: XenbusContext, info: HandshakeInfo): HookResult<void>;
  /** The backend wrote Connected again while we were connected: re-read what may have changed. */
  refresh?(ctx: XenbusContext): void | Promise<void>;
  /** Let go of what setup built. Called exactly once per successful setup. */
  teardown(ctx: XenbusContext, reason: TeardownReason): void | Promise<void>;
}

export interface XenbusFrontendOptions extends XenbusDeviceOptions {
  /** Write Connected instead of Initialised with the keys (netfront's handshake). */
  readonly skipInitialised?: boolean;
  /** Start the handshake while the backend is still Initialising (a backend that skips InitWait). */
  readonly eager?: boolean;
}

/** The part of a device id the frontend knows before reading its directory. */
export type FrontendDeviceId = Pick<XenbusDeviceId, 'type' | 'frontDom' | 'devid'>;

export class XenbusFrontend<B = unknown> extends XenbusDevice {
  readonly path: string;
  private backDom: DomId = DOMID_INVALID;
  private backPath = '';
  private watchedBackPath = '';
  private started = false;
  private detailsOk = false;
  private setUp = false;
  private connectedDone = false;
  private everConnected = false;
  private resumePending = false;
  private resetting = false;
  private wantOnline = true;
  private closeRequested = false;
  private peerSeen = false;
  private peerEvents = 0;
  private peerEventsHandled = 0;
  /** The backend generation our current keys answer (undefined: the backend publishes none). */
  private ackedGeneration: number | undefined;
  private context: XenbusContext;

  constructor(
    xs: XsHandle,
    readonly fid: FrontendDeviceId,
    private readonly hooks: FrontendHooks<B>,
    private readonly options: XenbusFrontendOptions = {},
  ) {
    super('frontend', xs, options, `${fid.type}/${fid.devid}`);
    this.path = frontendPath(fid);
    this.context = this.makeContext();
  }

  private makeContext(): XenbusContext {
    const id: XenbusDeviceId = { ...this.fid, backDom: this.backDom };
    return {
      id, xs: this.xs, frontPath: this.path, backPath: this.backPath, log: (l) => this.log(l), fatal: (k, m) => this.fatal(k, m),
    };
  }

  protected get ownPath(): string { return this.path; }
  protected get ctx(): XenbusContext { return this.context; }
  /** The backend's directory (empty until read from ours). */
  get backendPath(): string { return this.backPath; }
  /** True between a successful `connected` hook and the next teardown. */
  get isConnected(): boolean { return this.connectedDone; }
  /** The backend handshake generation our keys answer (undefined before a handshake, or when the backend has none). */
  get answeredGeneration(): number | undefined { return this.setUp ? this.ackedGeneration : undefined; }

  /** [start] watches our directory, then runs the first pass (which watches the backend's state). */
  async start(): Promise<Result<void, unknown>> {
    const r = await this.watchPath(this.path, 'own');
    if (r.ok) this.kick();
    return r;
  }

  /** [close] asks for an orderly close (Closing; Closed once the backend closes too). No reconnect until open(). */
  close(): void {
    this.wantOnline = false;
    this.closeRequested = true;
    this.kick();
  }

  /** [open] allows connecting again after close(). */
  open(): void {
    this.wantOnline = true;
    this.closeRequested = false;
    if (this.stateNow === XenbusState.Closed) this.resetting = true;
    this.kick();
  }

  /** [stop] unregisters without touching XenStore (our domain is going away); tears down first. */
  async stop(): Promise<void> {
    await this.idle();
    await this.teardown('remove');
    await this.unregister('stopped');
  }

  private async teardown(reason: TeardownReason): Promise<void> {
    if (!this.setUp) return;
    this.setUp = false;
    this.connectedDone = false;
    this.stats.disconnects++;
    await this.hooks.teardown(this.context, reason);
  }

  /** Our `backend` and `backend-id`, as the toolstack wrote them, must name a backend dir of this device. */
  private async readDetails(): Promise<boolean> {
    const be = await readKey(this.xs, this.path, XENBUS_KEY.BACKEND);
    const bid = await readKey(this.xs, this.path, XENBUS_KEY.BACKEND_ID);
    if (!be.ok || !bid.ok) {
      const e = !be.ok ? be.error : !bid.ok ? bid.error : undefined;
      if (e) this.log(`waiting for the toolstack: ${describeKeyError(e)}`);
      return false;
    }
    const backDom = parseDomidValue(bid.value);
    const expected = backDom === undefined ? undefined : backendPath({ ...this.fid, backDom });
    if (backDom === undefined || be.value !== expected) {
      this.stats.unexpectedPeerState++;
      this.log(`backend = "${be.value}", backend-id = "${bid.value}" do not name a backend of ${this.path}; waiting`);
      return false;
    }
    this.backDom = backDom;
    this.backPath = be.value;
    this.context = this.makeContext();
    if (this.watchedBackPath !== this.backPath) {
      if (this.watchedBackPath !== '') this.log(`backend moved to ${this.backPath}`);
      this.watchedBackPath = this.backPath;
      const w = await this.watchPath(`${this.backPath}/${XENBUS_KEY.STATE}`, 'peer', () => { this.peerEvents++; });
      if (!w.ok) return false;
    }
    return true;
  }

  protected async pass(): Promise<void> {
    const S = XenbusState;
    const own = await this.readStateAt(`${this.path}/${XENBUS_KEY.STATE}`, false);
    if (own === 'error') return;
    if (own === 'absent') {
      await this.teardown('remove');
      await this.unregister('device directory removed');
      return;
    }
    if (!this.started) {
      this.started = true;
      this.stateNow = own === 'garbage' ? S.Unknown : own;
      if (this.stateNow !== S.Initialising && this.stateNow !== S.Unknown) {
        // Left behind by an earlier instance of us (xenbus_reset_frontend): close, then start clean.
        this.resetting = true;
        if (this.stateNow !== S.Closing && this.stateNow !== S.Closed) {
          this.log(`found in ${xenbusStateName(this.stateNow)} at start; resetting`);
          const r = await this.switchState(S.Closing);
          if (!r.ok) return;
        }
      }
    } else if (own === S.Initialising && this.stateNow !== S.Initialising) {
      // The toolstack re-created the device in place: treat it as a resume against a new backend.
      this.log('state re-seeded to Initialising by the toolstack');
      if (this.setUp) this.resumePending = this.everConnected;
      await this.teardown('resume');
      this.stateNow = S.Initialising;
      this.detailsOk = false;
      this.peerSeen = false;
    }
    if (!this.detailsOk) {
      this.detailsOk = await this.readDetails();
      if (!this.detailsOk) return;
    }
    const eventsBefore = this.peerEvents;
    const be = await this.readStateAt(`${this.backPath}/${XENBUS_KEY.STATE}`, true);
    if (be === 'error' || be === 'garbage') return; // counted; keep going as we are
    const peerWrote = eventsBefore > this.peerEventsHandled;
    this.peerEventsHandled = eventsBefore;
    this.peer = be;
    const gone = be === 'absent' || be === S.Unknown;
    const wasSeen = this.peerSeen;
    if (!gone) this.peerSeen = true;

    if (this.closeRequested && this.stateNow !== S.Closing && this.stateNow !== S.Closed) {
      this.closeRequested = false;
      if (this.stateNow === S.Unknown) return; // nothing started; wantOnline keeps it so
      await this.switchState(S.Closing);
      this.kick(); // the backend may already be closed
      return;
    }
    if ((this.stateNow === S.Initialised || this.stateNow === S.Connected) && this.setUp
      && this.ackedGeneration !== undefined && !gone && be !== S.Closing) {
      const g = await this.readGeneration();
      if (g === 'error') return;
      if (g !== undefined && g !== this.ackedGeneration) {
        // A new backend instance: it will not take the keys we made for the one before; make new ones.
        this.stats.staleKeys++;
        return this.resume(be, `backend generation ${this.ackedGeneration} → ${g}`);
      }
    }
    switch (this.stateNow) {
      case S.Unknown:
        if (!this.wantOnline) return;
        await this.switchState(S.Initialising);
        this.kick();
        return;
      case S.Closed: {
        if (!this.wantOnline) return;
        const backAgain = be === S.Initialising || be === S.InitWait;
        const backDown = gone || be === S.Closed;
        // After a reset: once the backend is down (or back). After the backend closed us: once it is back.
        if (backAgain || (this.resetting && backDown)) {
          this.resetting = false;
          await this.switchState(S.Initialising);
          this.kick();
        }
        return;
      }
      case S.Initialising:
        if (!this.wantOnline) return;
        if (be === S.InitWait || (this.options.eager === true && be === S.Initialising)) return this.handshake();
        if (be === S.Connected && !this.resetting) {
          // A backend connected to an earlier instance of us: walk it through Closed first.
          this.log('backend is Connected to a previous frontend; resetting it');
          this.resetting = true;
          await this.switchState(S.Closing);
          return;
        }
        if (be === S.Closing) {
          this.resetting = true;
          await this.switchState(S.Closed);
        }
        return;
      case S.Initialised:
        if (be === S.Connected) return this.connectNow();
        if (be === S.Closing) return this.closeAfterBackend();
        if ((gone && wasSeen) || be === S.Closed) return this.resume(be);
        // A backend back in Initialising restarted, unless it is one that connects from there (eager).
        if (be === S.Initialising && this.options.eager !== true) return this.resume(be);
        return; // InitWait: the backend has not seen our keys yet
      case S.Connected:
        if (be === S.Connected) {
          if (!this.connectedDone) return this.connectNow();
          if (peerWrote && this.hooks.refresh) {
            this.stats.refreshes++;
            await this.hooks.refresh(this.context);
          }
          return;
        }
        if (be === S.Closing) return this.closeAfterBackend();
        if ((gone && wasSeen) || be === S.Closed) return this.resume(be);
        // Before the backend connected (skipInitialised) these are its normal waiting states;
        // after, they mean it restarted.
        if ((be === S.Initialising || be === S.InitWait) && this.connectedDone) return this.resume(be);
        return;
      case S.Closing:
        if (gone || be === S.Closing || be === S.Closed) {
          await this.teardown('close');
          await this.switchState(S.Closed);
          this.kick();
        }
        return;
      default:
        this.stats.unexpectedPeerState++;
        this.log(`nothing to do in ${xenbusStateName(this.stateNow)} with the backend ${be === 'absent' ? 'absent' : xenbusStateName(be)}`);
        return;
    }
  }

  /** [readGeneration] is the backend's handshake generation: undefined when missing or malformed, 'error' on XenStore trouble. */
  private async readGeneration(): Promise<number | undefined | 'error'> {
    const r = await readUint(this.xs, this.backPath, XENSIM_KEY.GENERATION, XENSIM_GENERATION_MAX);
    if (r.ok) return r.value;
    if (r.error.kind !== 'xenstore') return undefined;
    this.xsFailed(`read ${this.backPath}/${XENSIM_KEY.GENERATION}`, r.error.error);
    return 'error';
  }

  private async handshake(): Promise<void> {
    // The generation BEFORE the features: if a new backend instance replaces the one we read in between,
    // our ack names the old generation, which the new one refuses and we then notice; the other order
    // could ack the new generation with keys made from the old instance's features. No transaction
    // needed (a guest's transactions are a quota a hostile neighbour of the driver may have used up).
    const gen = await this.readGeneration();
    if (gen === 'error') return;
    const b = await this.hooks.readBackend(this.context);
    if (!b.ok) return this.hookFailed('reading the backend', b.error);
    await this.teardown('resume'); // nothing should be set up here; be safe
    const info: HandshakeInfo = { resumed: this.resumePending };
    const keys = await this.hooks.setup(this.context, b.value, info);
    if (!keys.ok) return this.hookFailed('setup', keys.error);
    this.setUp = true;
    this.connectedDone = false;
    this.ackedGeneration = gen;
    // The ack goes with the keys it vouches for; a backend without generations gets none (and no stale one).
    const ack: XenbusKeys = gen === undefined ? {} : { [XENSIM_KEY.GENERATION_ACK]: String(gen) };
    const r = await this.switchState(this.options.skipInitialised ? XenbusState.Connected : XenbusState.Initialised,
      { ...keys.value, ...ack }, false, gen === undefined ? [XENSIM_KEY.GENERATION_ACK] : []);
    if (!r.ok) {
      // Gone: the next pass unregisters. XenStore trouble: let go and try again on the next event.
      await this.teardown(r.error.kind === 'gone' ? 'remove' : 'resume');
    }
  }

  private async connectNow(): Promise<void> {
    const r = await this.hooks.connected(this.context, { resumed: this.resumePending });
    if (!r.ok) return this.hookFailed('connected', r.error);
    this.connectedDone = true;
    this.everConnected = true;
    this.resumePending = false;
    this.stats.connects++;
    if (this.stateNow !== XenbusState.Connected) await this.switchState(XenbusState.Connected);
  }

  private async closeAfterBackend(): Promise<void> {
    await this.teardown('close');
    await this.switchState(XenbusState.Closed);
  }

  private async resume(be: XenbusState | 'absent', why?: string): Promise<void> {
    this.log(`${why ?? `backend ${be === 'absent' ? 'vanished' : `went ${xenbusStateName(be)}`}`}; resuming`);
    this.stats.resumes++;
    if (this.setUp) this.resumePending = this.everConnected || this.resumePending;
    await this.teardown('resume');
    await this.switchState(XenbusState.Initialising);
    this.kick(); // a backend already in InitWait is answered at once
  }
}

export type FrontendDriver<B> = (id: FrontendDeviceId) => FrontendHooks<B> | undefined;

export interface XenbusFrontendBusOptions extends XenbusBusOptions {
  readonly device?: Omit<XenbusFrontendOptions, 'onUnregister'>;
}

/**
 * [createFrontendBus xs frontDom type driver opts] watches
 * /local/domain/<frontDom>/device/<type> and runs a XenbusFrontend for every
 * <devid> directory that appears (xenbus_probe_frontend). Call `start()`.
 */
export function createFrontendBus<B>(
  xs: XsHandle, frontDom: DomId, type: string, driver: FrontendDriver<B>, opts: XenbusFrontendBusOptions = {},
): XenbusBus<XenbusFrontend<B>> {
  return new XenbusBus<XenbusFrontend<B>>(xs, `${domainHome(frontDom)}/device/${type}`, 1, (rel, onUnregister) => {
    const devid = /^[0-9]{1,10}$/.test(rel[0] ?? '') ? Number(rel[0]) : NaN;
    if (!Number.isInteger(devid) || devid > 0x7fff_ffff) return undefined;
    const fid: FrontendDeviceId = { type, frontDom, devid };
    const hooks = driver(fid);
    if (hooks === undefined) return undefined;
    return new XenbusFrontend<B>(xs, fid, hooks, { ...opts.device, log: opts.device?.log ?? opts.log, onUnregister });
  }, opts);
}
