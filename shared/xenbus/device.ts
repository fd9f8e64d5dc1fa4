/**
 * What the frontend and backend xenbus drivers share: one device's state,
 * its reconcile loop, state switches in a transaction, error reporting, and
 * the bus that probes devices as their directories appear.
 *
 * Event-driven, never blocking (STYLE.md, "one platform seam"): a watch
 * callback only marks the device dirty and starts the reconcile loop if it is
 * not running; the loop re-reads what it needs from XenStore and acts, one
 * pass at a time, until no event arrived during the last pass. Watch events
 * may be spurious or coalesced, so a pass decides from the states it reads,
 * never from the event.
 *
 * The peer's `state` is hostile: a value parseXenbusState refuses is logged,
 * counted (`stats.badPeerState`) and ignored — the device keeps its state and
 * keeps serving. A hook that fails (or throws, which is our bug) is reported
 * as xenbus_dev_fatal does: a message under error/<device path>/error in the
 * side's domain home, then state Closing. A driver's data path reports its
 * own fatal errors the same way through `fatal()` (or `ctx.fatal`), which
 * runs between passes so it never races the handshake's own state switches.
 */
import { err, ok, type Result } from '../result.ts';
import { invariant } from '../invariant.ts';
import type { XsTxId } from '../abi/xenstore.ts';
import {
  XenbusState, formatXenbusState, isLegalTransition, parseXenbusState, xenbusStateName, type XenbusSide,
} from './state.ts';
import { isXsError, type XsClientError, type XsHandle, type XsResult } from './xs-handle.ts';
import { XENBUS_KEY, errorPath, type XenbusDeviceId } from './paths.ts';

/** A hook's failure: a kind the driver chooses and a message for logs and the error node. */
export interface XenbusHookError {
  readonly kind: string;
  readonly message: string;
}
export type HookResult<T> = Result<T, XenbusHookError> | Promise<Result<T, XenbusHookError>>;

/** Keys a hook asks the driver to publish (in the same transaction as the state switch). */
export type XenbusKeys = Readonly<Record<string, string>>;

/** What a hook gets: where the device lives and a XenStore handle. */
export interface XenbusContext {
  readonly id: XenbusDeviceId;
  readonly xs: XsHandle;
  readonly frontPath: string;
  readonly backPath: string;
  log(line: string): void;
  /**
   * [fatal kind message] is xenbus_dev_fatal for the driver's data path (a
   * frontend that broke the ring protocol, a backend that answered garbage):
   * the message goes to the device's error node and the device switches to
   * Closing. Resolves when both are written (or the device is gone); never
   * rejects. The same as the device's own `fatal()`.
   */
  fatal(kind: string, message: string): Promise<void>;
}

export interface XenbusStats {
  /** Reconcile passes run. */
  passes: number;
  /** State switches written. */
  transitions: number;
  /** Peer `state` values that did not parse (hostile or corrupt peer). */
  badPeerState: number;
  /** Peer states that make no sense from where we are (ignored, Linux's "saw state %d at frontend"). */
  unexpectedPeerState: number;
  /** Hooks that returned an error or threw. */
  hookFailures: number;
  /** XenStore requests that failed unexpectedly. */
  xsErrors: number;
  /** Successful connects (backend: rings mapped; frontend: Connected reached). */
  connects: number;
  disconnects: number;
  /** Frontend: resume paths taken (backend vanished or restarted). Backend: frontend resets handled. */
  resumes: number;
  /** Frontend: refresh hooks run because the backend re-wrote Connected. Backend: republishes. */
  refreshes: number;
  /** Errors reported as xenbus_dev_fatal (failed hooks and the driver's own fatal() calls). */
  fatals: number;
  /**
   * Backend: times the frontend's keys answered another backend's handshake
   * generation (a predecessor's), so we did not connect to them and waited for
   * the frontend to hand over new ones. Frontend: handshakes redone because the
   * backend's generation changed (a restarted backend).
   */
  staleKeys: number;
}

export interface XenbusDeviceOptions {
  /** Log sink (default none). */
  readonly log?: (line: string) => void;
  /** Called after each state switch we wrote. */
  readonly onState?: (state: XenbusState) => void;
  /** Called once when the device unregisters. */
  readonly onUnregister?: (reason: string) => void;
}

export type PeerState = XenbusState | 'absent' | 'garbage';

/** Why a switch did not happen. */
export type SwitchError =
  /** Our state node is gone: the toolstack removed the directory. */
  | { readonly kind: 'gone' }
  | { readonly kind: 'xenstore'; readonly error: XsClientError };

let tokenSerial = 0;

export abstract class XenbusDevice {
  /** Our state as we last wrote it (or found it at start). */
  protected stateNow: XenbusState = XenbusState.Unknown;
  /** The peer's state as last read. */
  protected peer: PeerState = 'absent';
  readonly stats: XenbusStats = {
    passes: 0, transitions: 0, badPeerState: 0, unexpectedPeerState: 0, hookFailures: 0, xsErrors: 0,
    connects: 0, disconnects: 0, resumes: 0, refreshes: 0, fatals: 0, staleKeys: 0,
  };
  private dirty = false;
  private running = false;
  private stoppedFlag = false;
  private readonly watched: { path: string; token: string }[] = [];
  private idleWaiters: (() => void)[] = [];
  /** fatal() calls waiting for the loop (they run between passes). */
  private fatalQueue: { readonly kind: string; readonly message: string; readonly done: () => void }[] = [];
  protected readonly label: string;

  constructor(
    readonly side: XenbusSide,
    readonly xs: XsHandle,
    protected readonly opts: XenbusDeviceOptions,
    label: string,
  ) {
    this.label = label;
  }

  /** Our state as we last wrote it. */
  get state(): XenbusState { return this.stateNow; }
  /** The peer's state as last read ('absent': no state node; 'garbage': it did not parse). */
  get peerState(): PeerState { return this.peer; }
  /** True once the device has unregistered (or been stopped). */
  get stopped(): boolean { return this.stoppedFlag; }

  /** Where our `state` node lives. */
  protected abstract get ownPath(): string;
  /** One reconcile pass. */
  protected abstract pass(): Promise<void>;
  /** The hook context (valid once the peer's details are known). */
  protected abstract get ctx(): XenbusContext;

  protected log(line: string): void {
    this.opts.log?.(`xenbus ${this.side} ${this.label}: ${line}`);
  }

  // ---- the reconcile loop ----

  /** [kick] asks for a reconcile pass (from a watch callback, or after our own change). */
  kick(): void {
    if (this.stoppedFlag) return;
    this.dirty = true;
    if (!this.running) void this.loop();
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      while ((this.dirty || this.fatalQueue.length > 0) && !this.stoppedFlag) {
        // A driver's fatal() first: its Closing must not be undone by a pass that read older states.
        const f = this.fatalQueue.shift();
        if (f !== undefined) {
          try {
            await this.reportFatal(f.kind, f.message);
          } catch (e) {
            this.log(`cannot report the failure: ${e instanceof Error ? e.message : String(e)}`);
          }
          f.done();
          continue;
        }
        this.dirty = false;
        this.stats.passes++;
        try {
          await this.pass();
        } catch (e) {
          // A hook threw (or we broke an invariant): our own bug, but the device stays up and
          // reports it like a failed hook. Nothing escapes this loop: it runs detached.
          this.stats.hookFailures++;
          try {
            await this.reportFatal('exception', e instanceof Error ? e.message : String(e));
          } catch (e2) {
            this.log(`cannot report the failure: ${e2 instanceof Error ? e2.message : String(e2)}`);
          }
        }
      }
    } finally {
      this.running = false;
      // Stopped with fatal() calls still queued: nothing more is written for them.
      for (const f of this.fatalQueue.splice(0)) f.done();
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  /**
   * [idle] resolves when no pass is running or pending (tests and orderly
   * shutdown). A stopped device runs no more passes, whatever was pending:
   * it is idle once the pass in progress (if any) ends.
   */
  idle(): Promise<void> {
    if (!this.running && (this.stoppedFlag || (!this.dirty && this.fatalQueue.length === 0))) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- watches ----

  /** [watchPath path tag] watches path; every event kicks a pass (and runs onEvent first). */
  protected async watchPath(path: string, tag: string, onEvent?: () => void): Promise<XsResult<void>> {
    const token = `xenbus/${this.side}/${this.label}/${tag}#${++tokenSerial}`;
    const r = await this.xs.watch(path, token, () => {
      onEvent?.();
      this.kick();
    });
    if (!r.ok) {
      this.xsFailed(`watch ${path}`, r.error);
      return r;
    }
    // Unregistered while the watch was being set up (stopped mid-start): do not leave it behind.
    if (this.stoppedFlag) await this.xs.unwatch(path, token);
    else this.watched.push({ path, token });
    return r;
  }

  /** [unregister reason] stops the device: watches go, no more passes run. XenStore is left as it is. */
  protected async unregister(reason: string): Promise<void> {
    if (this.stoppedFlag) return;
    this.stoppedFlag = true;
    this.log(`unregistered (${reason})`);
    const w = this.watched.splice(0);
    for (const { path, token } of w) await this.xs.unwatch(path, token);
    this.opts.onUnregister?.(reason);
  }

  // ---- reading ----

  protected xsFailed(what: string, e: XsClientError): void {
    this.stats.xsErrors++;
    this.log(`${what} failed: ${e.kind === 'xs-error' ? e.errno : e.kind}`);
  }

  /** [readState path] is the state at path: 'absent' if there is none, 'garbage' (logged, counted) if it does not parse. */
  protected async readStateAt(path: string, isPeer: boolean): Promise<PeerState | 'error'> {
    const r = await this.xs.readString(path);
    if (!r.ok) {
      // No node, or (for a guest) a missing node under a parent it may not read: Linux's
      // xenbus_read_driver_state reads both as XenbusStateUnknown.
      if (isXsError(r.error, 'ENOENT') || (isPeer && isXsError(r.error, 'EACCES'))) return 'absent';
      this.xsFailed(`read ${path}`, r.error);
      return 'error';
    }
    const s = parseXenbusState(r.value);
    if (s.ok) return s.value;
    if (isPeer) {
      this.stats.badPeerState++;
      this.log(`ignoring peer state "${s.error.raw}" at ${path} (${s.error.reason})`);
    } else {
      this.log(`our own state node holds "${s.error.raw}" (${s.error.reason})`);
    }
    return 'garbage';
  }

  // ---- writing ----

  /**
   * [switchState to keys] publishes keys and our new state in one
   * transaction (retried on EAGAIN), as xenbus_switch_state does: the state
   * node must still exist (else 'gone': the toolstack removed the directory,
   * and nothing is recreated). `rewrite` writes the state even when it is
   * already `to` (the backend's resize signal; a probe's new generation).
   * `remove` names keys of ours removed in the same transaction.
   */
  protected async switchState(to: XenbusState, keys: XenbusKeys = {}, rewrite = false, remove: readonly string[] = []): Promise<Result<void, SwitchError>> {
    invariant(
      (rewrite && to === this.stateNow) || to === this.stateNow || isLegalTransition(this.side, this.stateNow, to),
      `xenbus ${this.side} ${this.label}: illegal switch ${xenbusStateName(this.stateNow)} → ${xenbusStateName(to)}`,
    );
    const own = this.ownPath;
    const r = await this.xs.transaction(async (tx: XsTxId): Promise<XsResult<'gone' | 'done'>> => {
      const cur = await this.xs.readString(`${own}/${XENBUS_KEY.STATE}`, tx);
      if (!cur.ok) return isXsError(cur.error, 'ENOENT') ? ok('gone') : cur;
      for (const [k, v] of Object.entries(keys)) {
        const w = await this.xs.write(`${own}/${k}`, v, tx);
        if (!w.ok) return w;
      }
      for (const k of remove) {
        const d = await this.xs.rm(`${own}/${k}`, tx);
        if (!d.ok) return d;
      }
      if (rewrite || cur.value !== formatXenbusState(to)) {
        const w = await this.xs.write(`${own}/${XENBUS_KEY.STATE}`, formatXenbusState(to), tx);
        if (!w.ok) return w;
      }
      return ok('done');
    });
    if (!r.ok) {
      this.xsFailed(`switch to ${xenbusStateName(to)}`, r.error);
      return err({ kind: 'xenstore', error: r.error });
    }
    if (r.value === 'gone') return err({ kind: 'gone' });
    if (to !== this.stateNow || rewrite) {
      this.log(`${xenbusStateName(this.stateNow)} → ${xenbusStateName(to)}`);
      this.stats.transitions++;
    }
    this.stateNow = to;
    this.opts.onState?.(to);
    return ok(undefined);
  }

  /**
   * [fatal kind message] is xenbus_dev_fatal, for a driver's data path: the
   * message ("<kind>: <message>") goes to our error node
   * (/local/domain/<us>/error/<device path>/error) and we switch to Closing,
   * which the peer answers by closing too. It runs in the reconcile loop
   * between passes, so a pass never overwrites it with a state it chose from
   * older reads. Resolves once done — or at once if the device has stopped;
   * never rejects. Nothing reconnects the device afterwards until the peer
   * closes and comes back (a frontend that returns to Initialising) or the
   * toolstack re-creates it. The driver stops its own rings; the backend
   * disconnects (the disconnect hook) once the frontend closes.
   */
  fatal(kind: string, message: string): Promise<void> {
    if (this.stoppedFlag) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.fatalQueue.push({ kind, message, done: resolve });
      if (!this.running) void this.loop();
    });
  }

  /** [reportFatal kind message] writes the error node (best effort) and switches to Closing; from inside the loop only. */
  protected async reportFatal(kind: string, message: string): Promise<void> {
    this.stats.fatals++;
    this.log(`fatal (${kind}): ${message}`);
    const owner = this.side === 'frontend' ? this.ctx.id.frontDom : this.ctx.id.backDom;
    const w = await this.xs.write(errorPath(owner, this.ownPath), `${kind}: ${message}`);
    if (!w.ok) this.log(`cannot write the error node: ${w.error.kind === 'xs-error' ? w.error.errno : w.error.kind}`);
    if (this.stateNow !== XenbusState.Closing && this.stateNow !== XenbusState.Closed && this.stateNow !== XenbusState.Unknown) {
      await this.switchState(XenbusState.Closing);
    }
  }

  /** [hookFailed stage e] counts and reports a failed hook (fatal). */
  protected async hookFailed(stage: string, e: XenbusHookError): Promise<void> {
    this.stats.hookFailures++;
    await this.reportFatal(e.kind, `${stage}: ${e.message}`);
  }
}

// ---- the bus: probing devices as their directories appear ----

export interface XenbusBusOptions {
  readonly log?: (line: string) => void;
}

/** A device the bus created; it tells the bus when it goes. */
export interface XenbusBusDevice {
  start(): Promise<unknown>;
  readonly stopped: boolean;
}

/**
 * XenbusBus watches a directory of device directories — the backend's
 * `backend/<type>` (two levels: <frontDom>/<devid>) or a frontend's
 * `device/<type>` (one level: <devid>) — and creates a device for each new
 * one, as xenbus_probe_{backend,frontend} do. A device that unregistered is
 * not probed again until its directory has gone and come back. Once `stop()`
 * has resolved the bus creates no more devices, so `registered` is final: a
 * driver going away stops exactly those (a scan still running when stop() was
 * called used to create devices afterwards that nobody stopped — two backend
 * instances then served one device, found by the stress tests).
 */
export class XenbusBus<D extends XenbusBusDevice> {
  private readonly devices = new Map<string, D>();
  /** Device dirs whose device unregistered while the dir stayed. */
  private readonly retired = new Set<string>();
  private token = '';
  private scanning = false;
  private scanWaiters: (() => void)[] = [];
  private stoppedFlag = false;
  private rescan = false;
  private readonly pendingPaths = new Set<string>();
  private fullScan = false;
  /** Scans run (for tests and stats). */
  scans = 0;

  constructor(
    private readonly xs: XsHandle,
    /** The watched directory, e.g. /local/domain/0/backend/vbd. */
    readonly base: string,
    /** Path components below base that name one device (2 for backends, 1 for frontends). */
    private readonly depth: 1 | 2,
    /** Makes the device for a directory; `rel` is its components below base ("1/51712"). */
    private readonly create: (rel: readonly string[], onUnregister: () => void) => D | undefined,
    private readonly opts: XenbusBusOptions = {},
  ) {}

  /** Devices currently registered, by their path below base ("1/51712"). */
  get registered(): ReadonlyMap<string, D> { return this.devices; }

  async start(): Promise<XsResult<void>> {
    this.token = `xenbus/bus/${this.base}#${++tokenSerial}`;
    return this.xs.watch(this.base, this.token, (path) => this.changed(path));
  }

  /** [stop] stops watching and waits for a scan in flight; afterwards no device is created. Registered devices keep running. */
  async stop(): Promise<void> {
    this.stoppedFlag = true;
    if (this.token !== '') await this.xs.unwatch(this.base, this.token);
    this.token = '';
    if (this.scanning) await new Promise<void>((resolve) => this.scanWaiters.push(resolve));
  }

  private changed(path: string): void {
    if (this.stoppedFlag) return;
    if (path === this.base) this.fullScan = true;
    else if (path.startsWith(`${this.base}/`)) {
      const rel = path.slice(this.base.length + 1).split('/');
      // Deeper paths are keys inside a device dir: the device's own business.
      if (rel.length > this.depth) return;
      this.pendingPaths.add(rel.join('/'));
    } else return;
    if (this.scanning) { this.rescan = true; return; }
    void this.scan();
  }

  private async scan(): Promise<void> {
    this.scanning = true;
    try {
      await this.scanLoop();
    } catch (e) {
      // A driver's factory threw: log it; the bus keeps watching (it runs detached).
      this.opts.log?.(`xenbus bus ${this.base}: scan failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      this.scanning = false;
      for (const w of this.scanWaiters.splice(0)) w();
    }
  }

  private async scanLoop(): Promise<void> {
    do {
      if (this.stoppedFlag) return;
      this.rescan = false;
      this.scans++;
      const full = this.fullScan;
      this.fullScan = false;
      const paths = [...this.pendingPaths];
      this.pendingPaths.clear();
      // rel → whether an event named exactly that device dir (it was created, removed or re-created).
      const found = new Map<string, boolean>();
      if (full) for (const rel of await this.list()) found.set(rel, false);
      for (const p of paths) {
        const parts = p.split('/');
        // A shallower event (a whole <frontDom> dir) lists what is below it.
        if (parts.length < this.depth) { for (const rel of await this.list(parts)) if (!found.has(rel)) found.set(rel, false); }
        else found.set(p, true);
      }
      for (const [rel, exact] of found) await this.consider(rel, exact);
      if (full) {
        for (const rel of [...this.retired]) if (!found.has(rel)) this.retired.delete(rel);
      }
    } while (this.rescan || this.pendingPaths.size > 0 || this.fullScan);
  }

  /** Device dirs below base (or below base/prefix), as "a/b" paths. */
  private async list(prefix: readonly string[] = []): Promise<string[]> {
    const out: string[] = [];
    const walk = async (parts: readonly string[]): Promise<void> => {
      if (parts.length === this.depth) { out.push(parts.join('/')); return; }
      const r = await this.xs.directory([this.base, ...parts].join('/'));
      if (!r.ok) return; // gone, or not ours to read: nothing to probe
      for (const c of r.value) await walk([...parts, c]);
    };
    await walk(prefix);
    return out;
  }

  private async consider(rel: string, exact: boolean): Promise<void> {
    const exists = await this.xs.directory(`${this.base}/${rel}`);
    if (!exists.ok) {
      // Gone: its device (if any) sees that through its own watch; it may be probed again later.
      this.retired.delete(rel);
      return;
    }
    if (this.devices.has(rel) || this.stoppedFlag) return;
    // A retired device's dir is probed again only when the dir itself was (re)created.
    if (this.retired.has(rel) && !exact) return;
    this.retired.delete(rel);
    const parts = rel.split('/');
    const dev = this.create(parts, () => {
      if (this.devices.get(rel) === dev) this.devices.delete(rel);
      this.retired.add(rel);
    });
    if (dev === undefined) {
      this.opts.log?.(`xenbus bus ${this.base}: no device for ${rel}`);
      this.retired.add(rel);
      return;
    }
    this.devices.set(rel, dev);
    await dev.start();
  }
}
