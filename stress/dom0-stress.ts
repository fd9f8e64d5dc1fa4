/**
 * dom0's side of a stress run, the same in both modes: the vstress backend
 * bus (one VstressBack per guest device, probed through XenBus), the lateeoi
 * echo services that answer guests' pings, and the sinks of event storms.
 * The toolstack (the deterministic world, or the main thread through dom0's
 * agent) tells it when a guest offers a port or goes away.
 */
import { asDomId } from '../shared/types.ts';
import { createBackendBus, type XenbusBackend } from '../shared/xenbus/backend.ts';
import type { XenbusBus } from '../shared/xenbus/device.ts';
import type { XsHandle } from '../shared/xenbus/xs-handle.ts';
import { EchoService, StormSink, type EchoMutant, type StormMutant } from './events.ts';
import { BlkStressBackend, type BlkBackendOptions } from './blk-plugin.ts';
import { NetStressBackend, type NetBackendOptions } from './net-plugin.ts';
import type { StressHost } from './host.ts';
import { VSTRESS_TYPE, VstressBack, VstressDisks, type BackMutant } from './vstress.ts';

/**
 * How long (host.now() units: scheduler steps, or ms on threads) a backend
 * restart waits for the devices the last one disconnected before it may
 * restart them again anyway.
 */
export const RESTART_RECOVERY = 1500;

export interface Dom0StressOptions {
  readonly backMutant?: BackMutant;
  readonly echoMutant?: EchoMutant;
  readonly stormMutant?: StormMutant;
  /** Serve guests' vbds with the real blkback too (blk-plugin.ts). */
  readonly blk?: BlkBackendOptions;
  /** Serve guests' vifs with the real netback too (net-plugin.ts). */
  readonly net?: NetBackendOptions;
}

export class Dom0Stress {
  private bus: XenbusBus<XenbusBackend<unknown>> | undefined;
  readonly disks = new VstressDisks();
  private readonly echoes = new Map<number, EchoService>();
  private readonly storms = new Map<number, StormSink>();
  /** Backend restarts done (an injector's evidence). */
  restarts = 0;
  private restarting = false;
  /** When the last restart began (host.now()). */
  private lastRestartAt = -Infinity;
  /** Devices ("vstress/1/0", "vbd/1/51712") connected before the last restart and not connected again since. */
  private readonly recovering = new Set<string>();
  readonly blk: BlkStressBackend | undefined;
  readonly net: NetStressBackend | undefined;

  constructor(readonly host: StressHost, private readonly xs: XsHandle, private readonly opts: Dom0StressOptions = {}) {
    this.blk = opts.blk === undefined ? undefined : new BlkStressBackend(host, xs, opts.blk);
    this.net = opts.net === undefined ? undefined : new NetStressBackend(host, xs, opts.net);
  }

  /** Grant mappings held by dom0's drivers that keep their own count (blkback); added to dom0's books. */
  driverMappings(): number { return (this.blk?.mappings() ?? 0) + (this.net?.mappings() ?? 0); }

  /** Starts the vstress backend bus on /local/domain/0/backend/vstress, and blkback when asked. */
  async startBackends(): Promise<boolean> {
    if (this.blk !== undefined && !(await this.blk.start())) return false;
    if (this.net !== undefined && !(await this.net.start())) return false;
    return this.startVstress();
  }

  private async startVstress(): Promise<boolean> {
    const bus = createBackendBus<unknown>(this.xs, asDomId(this.host.k.domid), VSTRESS_TYPE, () =>
      new VstressBack(this.host, { mutant: this.opts.backMutant, disks: this.disks }).hooks() as never);
    this.bus = bus;
    const r = await bus.start();
    return r.ok;
  }

  /** Devices whose backend is connected now, as "type/frontDom/devid". */
  private connectedDevices(): Set<string> {
    const out = new Set<string>();
    for (const [rel, d] of this.bus?.registered ?? []) if (d.isConnected) out.add(`${VSTRESS_TYPE}/${rel}`);
    for (const k of this.blk?.connectedDevices() ?? []) out.add(k);
    for (const k of this.net?.connectedDevices() ?? []) out.add(k);
    return out;
  }

  /**
   * [restartRefusal] is why a backend restart cannot happen now, or
   * undefined when it can: one is already under way, or the devices the last
   * restart disconnected have not all connected again (each must redo the
   * handshake: the frontend resumes with new keys), unless that has taken
   * RESTART_RECOVERY (steps, or ms on threads) — a device that never comes
   * back does not stop the injector for good. A restart that lands on a
   * restart still recovering is a storm no device can make progress in.
   */
  restartRefusal(): string | undefined {
    if (this.restarting) return 'a restart is under way';
    if (this.recovering.size === 0 || this.host.now() - this.lastRestartAt >= RESTART_RECOVERY) return undefined;
    const up = this.connectedDevices();
    for (const k of [...this.recovering]) if (up.has(k)) this.recovering.delete(k);
    return this.recovering.size === 0 ? undefined : `${[...this.recovering].join(', ')} still reconnecting`;
  }

  /**
   * [restartBackends] is blkback going away and coming back: every backend
   * disconnects (unmaps, unbinds) and unregisters without touching XenStore,
   * then a new bus probes the directories again and each frontend resumes.
   * False when restartRefusal() says it cannot happen now.
   */
  async restartBackends(): Promise<boolean> {
    if (this.restartRefusal() !== undefined) return false;
    this.restarting = true;
    this.lastRestartAt = this.host.now();
    this.recovering.clear();
    for (const k of this.connectedDevices()) this.recovering.add(k);
    try {
      const bus = this.bus;
      this.bus = undefined;
      if (bus !== undefined) {
        await bus.stop();
        for (const d of [...bus.registered.values()]) await d.stop();
      }
      this.restarts++;
      this.host.note('vstress backends restarted');
      const blk = this.blk === undefined || (await this.blk.restart());
      const net = this.net === undefined || (await this.net.restart());
      return (await this.startVstress()) && blk && net;
    } finally {
      this.restarting = false;
    }
  }

  get backendsRunning(): number { return this.bus?.registered.size ?? 0; }

  /** A guest offered a ping port: bind it and echo. */
  bindPing(guest: number, port: number): void {
    this.echoes.get(guest)?.close();
    this.echoes.set(guest, new EchoService(this.host, guest, port, this.opts.echoMutant));
  }

  /** A guest offered a port it will storm: bind it to a sink. */
  bindStorm(guest: number, port: number): void {
    this.storms.get(guest)?.close();
    this.storms.set(guest, new StormSink(this.host, guest, port, this.opts.stormMutant));
  }

  /** The guest is gone: stop serving its events (its device goes when the toolstack removes its directories). */
  guestGone(guest: number): void {
    for (const k of [...this.recovering]) if (k.split('/')[1] === String(guest)) this.recovering.delete(k);
    this.echoes.get(guest)?.close();
    this.echoes.delete(guest);
    this.storms.get(guest)?.close();
    this.storms.delete(guest);
    this.disks.drop(guest);
    this.blk?.guestGone(guest);
  }

  async stop(): Promise<void> {
    for (const g of [...this.echoes.keys()]) this.guestGone(g);
    await this.blk?.stop();
    await this.net?.stop();
    const bus = this.bus;
    this.bus = undefined;
    if (bus !== undefined) {
      await bus.stop();
      for (const d of [...bus.registered.values()]) await d.stop();
    }
  }
}

