/**
 * A whole networked machine in ONE thread, for the network driver tests:
 * the hypervisor (DirectHypercaller), dom0 running xenstored, netback, a
 * packet pool, the net loop and bridge xenbr0, and guests each running
 * netfront over a XenStore client of their own identity. The toolstack's
 * part (domain and device directories) is done as libxl does it.
 *
 * A pump drives every vCPU: it dispatches each kernel's pending events and
 * runs dom0's deferred network work, then yields to the event loop (so
 * workloads, timers and XenStore traffic run), and again.
 */
import { asDomId, type DomId } from '../../shared/types.ts';
import { testMachine, type TestMachine } from './machine.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { MemoryModel } from '../../shared/abi/machine.ts';
import { XenStored } from '../../dom0/xenstore/xenstored.ts';
import { XsLocalClient } from '../../dom0/xenstore/local-client.ts';
import { createDeviceDirs, domainDirs, initiateDeviceRemove, removeDeviceDirs } from '../../toolstack/devices.ts';
import { createBackendBus, type XenbusBackend } from '../../shared/xenbus/backend.ts';
import { createFrontendBus, type XenbusFrontend } from '../../shared/xenbus/frontend.ts';
import type { XenbusBus } from '../../shared/xenbus/device.ts';
import type { XenbusDeviceId } from '../../shared/xenbus/paths.ts';
import type { PacketPool } from '../../dom0/net/packet.ts';
import { realTimers, type NetLoop } from '../../dom0/net/loop.ts';
import type { BridgeSet } from '../../dom0/net/vif.ts';
import type { Bridge } from '../../dom0/net/bridge.ts';
import { Netback, type NetbackFrontendInfo, type NetbackOptions } from '../../dom0/netback/xenbus.ts';
import { NETFRONT_XENBUS_OPTIONS, NetfrontDriver } from '../../domU/netfront/xenbus.ts';
import { startNetfront } from '../../domU/netfront/start.ts';
import { startNetback } from '../../dom0/netback/start.ts';
import type { Netfront, NetbackAdvert, NetfrontOptions } from '../../domU/netfront/netfront.ts';
import { systemClock, type WorkloadClock } from '../../domU/workloads/block-device.ts';
import type { ReconcileReport } from '../../hypervisor/hypervisor.ts';

export interface VifSpecForTest {
  readonly devid?: number;
  readonly mac: string;
  readonly bridge?: string;
  /** The backend's rate key, "bytes,usecs". */
  readonly rate?: string;
  readonly mtu?: number;
  readonly trusted?: boolean;
}

export interface GuestSpec {
  readonly name: string;
  readonly memoryKiB?: number;
  readonly model?: MemoryModel;
  readonly vif?: VifSpecForTest;
  readonly netfront?: NetfrontOptions;
  /** Run no netfront (a test drives the device itself, e.g. a hostile frontend). */
  readonly noFrontend?: boolean;
}

export interface NetGuest {
  readonly k: DomainKernel;
  readonly domid: DomId;
  readonly xs: XsLocalClient;
  readonly nf: NetfrontDriver;
  readonly bus: XenbusBus<XenbusFrontend<NetbackAdvert>>;
  /** Grant references free right after boot (a leak check compares against it). */
  readonly freeRefsAtBoot: number;
  readonly ramFreeAtBoot: number;
  dev: Netfront | undefined;
  readonly vifId: XenbusDeviceId;
  readonly noFrontend: boolean;
}

export interface NetWorldOptions {
  readonly memBytes?: number;
  readonly dom0KiB?: number;
  readonly dom0Model?: MemoryModel;
  readonly netback?: Partial<Omit<NetbackOptions, 'pool' | 'loop' | 'bridges'>>;
  readonly poolPages?: number;
  /** Collect log lines (default: kept in `lines`, printed on failure by the test if it wants). */
  readonly quiet?: boolean;
}

export interface LeakReport {
  readonly reconcile: ReconcileReport;
  readonly dom0Maptrack: number;
  readonly packetsInUse: number;
  readonly poolPagesInUse: number;
  readonly poolChunksInUse: number;
  readonly guests: { readonly name: string; readonly lostRefs: number; readonly lostPages: number; readonly quarantined: number }[];
}

export class NetWorld {
  readonly guests: NetGuest[] = [];
  readonly clock: WorkloadClock = systemClock;
  private running = false;
  private timer: NodeJS.Immediate | undefined;
  private kernels: DomainKernel[] = [];
  /** Pump passes that found events. */
  busyPasses = 0;

  private constructor(
    readonly m: TestMachine,
    readonly dom0: DomainKernel,
    readonly xenstored: XenStored,
    readonly dom0xs: XsLocalClient,
    readonly pool: PacketPool,
    readonly loop: NetLoop,
    readonly bridges: BridgeSet,
    public netback: Netback,
    public backBus: XenbusBus<XenbusBackend<NetbackFrontendInfo>>,
    /** Log lines of every driver, newest last. */
    readonly lines: string[],
  ) {
    this.kernels.push(dom0);
  }

  static async create(opts: NetWorldOptions = {}): Promise<NetWorld> {
    const m = testMachine(opts.memBytes ?? 112 << 20);
    const dom0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: opts.dom0KiB ?? 32 * 1024, model: opts.dom0Model ?? 'pm', privileged: true, hcbufPages: 8 });
    const xenstored = new XenStored();
    const dom0xs = new XsLocalClient(xenstored, 0);
    const r = await domainDirs(dom0xs, asDomId(0), 'Domain-0');
    if (!r.ok) throw new Error(`domainDirs 0: ${JSON.stringify(r.error)}`);
    const lines: string[] = [];
    const log = (l: string): void => { lines.push(l); };
    const net = await startNetback(dom0, dom0xs, { poolPages: opts.poolPages ?? 2048, netback: { timers: realTimers, ...opts.netback }, log });
    if (!net.ok) throw new Error(`startNetback: ${JSON.stringify(net.error)}`);
    const { pool, loop, bridges, netback, bus: backBus } = net.value;
    const nbOpts: NetbackOptions = { ...netback.opts };
    const w = new NetWorld(m, dom0, xenstored, dom0xs, pool, loop, bridges, netback, backBus, lines);
    w.nbOpts = nbOpts;
    w.start();
    return w;
  }

  get bridge(): Bridge { return this.bridges.ensure('xenbr0'); }

  /** [addGuest spec] boots a guest with netfront and (if spec.vif) a vif, and waits for it to connect. */
  async addGuest(spec: GuestSpec): Promise<NetGuest> {
    const k = this.m.domain({ name: spec.name, memoryKiB: spec.memoryKiB ?? 12 * 1024, model: spec.model ?? 'vp' });
    const domid = asDomId(k.domid);
    const r = await domainDirs(this.dom0xs, domid, spec.name);
    if (!r.ok) throw new Error(`domainDirs ${domid}: ${JSON.stringify(r.error)}`);
    this.xenstored.introduceDomain(domid);
    const xs = new XsLocalClient(this.xenstored, domid);
    const log = (l: string): void => { this.lines.push(l); };
    let nf: NetfrontDriver;
    let bus: XenbusBus<XenbusFrontend<NetbackAdvert>>;
    if (spec.noFrontend === true) {
      // A driver the test runs itself: the bus exists (for the types) but never starts.
      nf = new NetfrontDriver(k, { log, ...spec.netfront });
      bus = createFrontendBus(xs, domid, 'vif', nf.driver, { log, device: NETFRONT_XENBUS_OPTIONS });
    } else {
      const net = await startNetfront(k, xs, { log, ...spec.netfront });
      if (!net.ok) throw new Error(`startNetfront: ${JSON.stringify(net.error)}`);
      nf = net.value.driver;
      bus = net.value.bus;
    }
    const g: NetGuest = {
      k, domid, xs, nf, bus, freeRefsAtBoot: k.gnttab.freeCount, ramFreeAtBoot: k.ram.available, dev: undefined,
      vifId: { type: 'vif', frontDom: domid, backDom: asDomId(0), devid: spec.vif?.devid ?? 0 },
      noFrontend: spec.noFrontend === true,
    };
    this.kernels.push(k);
    this.guests.push(g);
    if (spec.vif !== undefined) {
      if (spec.noFrontend === true) await this.createVifDirs(g, spec.vif);
      else g.dev = await this.plugVif(g, spec.vif);
    }
    return g;
  }

  /** [plugVif g vif] creates the device directories (libxl) and waits for the guest's netfront to connect. */
  async plugVif(g: NetGuest, vif: VifSpecForTest, waitConnected = true): Promise<Netfront> {
    const id = await this.createVifDirs(g, vif);
    const dev = await g.nf.device(id.devid);
    if (waitConnected) await this.until(() => dev.connected && this.netback.vifs.get(`vif${g.domid}.${id.devid}`)?.connected === true, () => `vif${g.domid}.${id.devid} to connect`);
    return dev;
  }

  /** [createVifDirs g vif] is the toolstack's part alone: both device directories, as libxl writes them. */
  async createVifDirs(g: NetGuest, vif: VifSpecForTest, sides: 'both' | 'backend' = 'both'): Promise<XenbusDeviceId> {
    const id: XenbusDeviceId = { ...g.vifId, devid: vif.devid ?? 0 };
    this.vifSpecs.set(`${g.domid}/${id.devid}`, { g, vif });
    const backendKeys: Record<string, string> = {
      mac: vif.mac, bridge: vif.bridge ?? 'xenbr0', type: 'vif', script: '/etc/xen/scripts/vif-bridge', mtu: String(vif.mtu ?? 1500),
    };
    if (vif.rate !== undefined) backendKeys.rate = vif.rate;
    const frontendKeys: Record<string, string> = { mac: vif.mac, mtu: String(vif.mtu ?? 1500) };
    if (vif.trusted !== undefined) frontendKeys.trusted = vif.trusted ? '1' : '0';
    const r = await createDeviceDirs(this.dom0xs, { ...id, backendKeys, frontendKeys, sides });
    if (!r.ok) throw new Error(`createDeviceDirs: ${JSON.stringify(r.error)}`);
    return id;
  }

  /** [unplugVif g devid] is libxl's orderly remove: online=0 + Closing, wait for both ends, remove the directories. */
  async unplugVif(g: NetGuest, devid = 0): Promise<void> {
    const id: XenbusDeviceId = { ...g.vifId, devid };
    this.vifSpecs.delete(`${g.domid}/${devid}`);
    const r = await initiateDeviceRemove(this.dom0xs, id);
    if (!r.ok) throw new Error(`initiateDeviceRemove: ${JSON.stringify(r.error)}`);
    await this.until(() => !this.backBus.registered.has(`${g.domid}/${devid}`), () => `backend of vif${g.domid}.${devid} to unregister`);
    const d = await removeDeviceDirs(this.dom0xs, id);
    if (!d.ok) throw new Error(`removeDeviceDirs: ${JSON.stringify(d.error)}`);
    if (!g.noFrontend) await this.until(() => !g.bus.registered.has(String(devid)), () => `frontend of vif${g.domid}.${devid} to unregister`);
    const dev = g.nf.devices.get(devid) ?? g.dev;
    if (dev !== undefined) await this.until(() => dev.reclaim() === 0, () => `vif${g.domid}.${devid}: quarantined grants to come back`);
  }

  // ---- the pump ----

  start(): void {
    if (this.running) return;
    this.running = true;
    const tick = (): void => {
      if (!this.running) return;
      this.pumpOnce();
      this.timer = setImmediate(tick);
    };
    this.timer = setImmediate(tick);
    NetWorld.live.add(this);
  }

  /** Worlds whose pump runs: a test that failed before shutdown() leaves one behind. */
  private static readonly live = new Set<NetWorld>();
  /** [stopAll] stops every pump (an afterEach hook, so a failed test does not keep mocha alive). */
  static stopAll(): void {
    for (const w of NetWorld.live) w.stop();
  }

  stop(): void {
    NetWorld.live.delete(this);
    this.running = false;
    if (this.timer !== undefined) clearImmediate(this.timer);
    this.timer = undefined;
  }

  private nbOpts!: NetbackOptions;
  private readonly vifSpecs = new Map<string, { g: NetGuest; vif: VifSpecForTest }>();

  /**
   * [restartNetback] is a backend restart (a driver domain rebooting): every
   * backend device stops, the netback goes, a new one starts, and the
   * toolstack re-creates each backend directory in Initialising. Frontends
   * see their backend come back and reconnect (the resume path).
   */
  async restartNetback(): Promise<void> {
    for (const d of [...this.backBus.registered.values()]) await d.stop();
    await this.backBus.stop();
    this.netback.shutdown();
    this.netback = new Netback(this.dom0, this.nbOpts);
    this.backBus = createBackendBus(this.dom0xs, asDomId(0), 'vif', this.netback.driver, { log: (l) => this.lines.push(l) });
    const s = await this.backBus.start();
    if (!s.ok) throw new Error('backend bus did not restart');
    for (const { g, vif } of this.vifSpecs.values()) await this.createVifDirs(g, vif, 'backend');
  }

  private readonly paused = new Set<DomainKernel>();
  /** [pause g] stops running g's vCPU (its events wait, as for a descheduled guest); [resume] runs it again. */
  pause(g: NetGuest): void { this.paused.add(g.k); }
  resume(g: NetGuest): void { this.paused.delete(g.k); }

  /** [pumpOnce] dispatches every kernel's events and dom0's net work until quiet (bounded). */
  pumpOnce(): number {
    let total = 0;
    // Guests first, until they are quiet, then dom0 once: dom0 then finds whole bursts on the
    // rings (as a busy backend thread would) instead of ping-ponging one packet at a time.
    for (let round = 0; round < 256; round++) {
      let n = 0;
      for (let g = 0; g < 64; g++) {
        let m = 0;
        for (let i = 1; i < this.kernels.length; i++) {
          const k = this.kernels[i] as DomainKernel;
          if (!this.paused.has(k)) m += k.evtchn.dispatch();
        }
        n += m;
        if (m === 0) break;
      }
      n += this.dom0.evtchn.dispatch();
      this.loop.run();
      total += n;
      if (n === 0) break;
    }
    if (total > 0) this.busyPasses++;
    return total;
  }

  /** [until cond what ms] lets everything run until cond holds; fails after ms. */
  async until(cond: () => boolean, what: () => string, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what()}\n${this.lines.slice(-25).join('\n')}`);
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  async settle(ms = 20): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) await new Promise<void>((r) => setImmediate(r));
  }

  /** Simulated wall clock for captures: a fixed epoch plus the monotonic clock. */
  readonly epochNs = (): bigint => 1_700_000_000_000_000_000n + process.hrtime.bigint() - this.t0;
  private readonly t0 = process.hrtime.bigint();

  /** [shutdown] unplugs every vif, then reports what was left behind. */
  async shutdown(): Promise<LeakReport> {
    for (const g of this.guests) {
      const devids = new Set([...g.nf.devices.keys()]);
      if (g.noFrontend) for (const k of this.backBus.registered.keys()) if (k.startsWith(`${g.domid}/`)) devids.add(Number(k.split('/')[1]));
      for (const devid of devids) await this.unplugVif(g, devid);
    }
    await this.settle(5);
    this.stop();
    this.pool.trim();
    const hv = this.m.hv;
    return {
      reconcile: hv.reconcile(),
      dom0Maptrack: hv.domain(0)?.maptrackInUse ?? -1,
      packetsInUse: this.pool.stats.packetsInUse,
      poolPagesInUse: this.pool.stats.pagesInUse,
      poolChunksInUse: this.pool.stats.chunksInUse,
      guests: this.guests.map((g) => ({
        name: g.k.boot.name,
        lostRefs: g.freeRefsAtBoot - g.k.gnttab.freeCount,
        lostPages: g.ramFreeAtBoot - g.k.ram.available,
        quarantined: [...g.nf.devices.values()].reduce((n, d) => n + d.quarantinedPages, g.dev?.quarantinedPages ?? 0),
      })),
    };
  }
}

/** [macOf n] is 00:16:3e:00:00:<n>. */
export function macOf(n: number): string {
  return `00:16:3e:00:00:${n.toString(16).padStart(2, '0')}`;
}
