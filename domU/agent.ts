/**
 * A domU's agent: the generic guest agent plus the guest's XenStore client,
 * its block devices and its network interfaces, so tools and tests see the
 * guest as it sees itself (XenStore permissions apply) and can run fio-like
 * and iperf-like workloads inside it.
 *
 * Network streams between two guests: start a server on one
 * (iperfServerStart), run a client on the other (iperfClient), stop the
 * server (iperfServerStop) and join both reports with toIperf3Json — which
 * Machine.iperf does in one call. Both ends read process.hrtime, one clock
 * for every worker of the process.
 */
import { GuestAgent, type AgentResult } from '../shared/kernel/agent.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import type { XenstoreFront, StoreInfo } from './xenstore-front.ts';
import type { BlkfrontDriver } from './blkfront/xenbus.ts';
import type { NetfrontDriver } from './netfront/xenbus.ts';
import { runFio, type FioJobSpec } from './workloads/fio-engine.ts';
import { toFioJson, type FioJson } from './workloads/fio-json.ts';
import { VerifyTracker } from './workloads/verify.ts';
import { systemClock, type DeviceCounters } from './workloads/block-device.ts';
import { asDomId } from '../shared/types.ts';
import type { Netfront } from './netfront/netfront.ts';
import {
  IperfClient, IperfServer, type IperfClientOptions, type IperfClientReport, type IperfServerReport, type IperfSpec,
} from './workloads/iperf-engine.ts';

function xs<T>(r: { ok: true; value: T } | { ok: false; error: unknown }): AgentResult<T> {
  return r.ok ? { ok: true, value: r.value } : { ok: false, error: typeof r.error === 'object' ? JSON.stringify(r.error) : String(r.error) };
}

export interface RunFioOptions {
  readonly seed?: number;
  /** Keep verify state across runs on this device (write, then read back later). Default true. */
  readonly keepVerifyState?: boolean;
  /** Give up waiting for the device to connect after this long (default 10 s). */
  readonly connectTimeoutMs?: number;
}

/** One network interface as the guest sees it (`ip link` plus netfront's own state). */
export interface VifInfo {
  readonly devid: number;
  readonly mac: string;
  /** What workloads may send: the wire MTU, or 65522 with GSO sends on. */
  readonly mtu: number;
  readonly wireMtu: number;
  readonly connected: boolean;
  readonly numQueues: number;
  /** Handshakes completed (1, plus one per backend restart). */
  readonly connects: number;
  /** Why the device stopped, if the backend broke the protocol. */
  readonly broken?: string;
  readonly quarantinedPages: number;
  readonly counters: DeviceCounters;
}

/** What leak checks compare before attaching and after detaching. */
export interface GuestResources {
  readonly freeGrantRefs: number;
  readonly freeRamPages: number;
  /** Pages netfront holds back because a backend kept their grants. */
  readonly quarantinedPages: number;
}

export interface IperfServerStartOptions {
  readonly ip: string;
  /** Default 5201. */
  readonly port?: number;
  /** TCP receive window (default 256 KiB). */
  readonly window?: number;
  readonly connectTimeoutMs?: number;
}

export interface IperfServerStopOptions {
  /** Wait until this many streams were closed by their sender (default: none). */
  readonly streams?: number;
  /** Longest wait for them (default 1000 ms). */
  readonly waitMs?: number;
}

export interface IperfClientRunOptions {
  readonly ip: string;
  readonly serverIp: string;
  readonly serverMac: string;
  readonly spec: IperfSpec;
  readonly seed?: number;
  readonly connectTimeoutMs?: number;
  /** Engine tuning (RTO bounds, stall timeout, burst, first port). */
  readonly tuning?: Partial<Pick<IperfClientOptions, 'basePort' | 'minRtoMs' | 'maxRtoMs' | 'initialRtoMs' | 'stallTimeoutMs' | 'burst'>>;
}

export class DomUAgent extends GuestAgent {
  private readonly trackers = new Map<number, VerifyTracker>();
  private readonly servers = new Map<number, IperfServer>();
  private nextServer = 1;

  constructor(k: DomainKernel, private readonly store: XenstoreFront, private readonly blk?: BlkfrontDriver, protected readonly net?: NetfrontDriver) { super(k); }

  storeInfo(): StoreInfo { return this.store.info; }
  async xsRead(path: string): Promise<AgentResult<string>> { return xs(await this.store.client.readString(path)); }
  async xsWrite(path: string, value: string): Promise<AgentResult<void>> { return xs(await this.store.client.write(path, value)); }
  async xsDirectory(path: string): Promise<AgentResult<string[]>> { return xs(await this.store.client.directory(path)); }
  async xsRm(path: string): Promise<AgentResult<void>> { return xs(await this.store.client.rm(path)); }

  /** The guest's block devices by devid, with whether each is connected. */
  blkDevices(): { devid: number; connected: boolean; sectors: number }[] {
    return [...(this.blk?.devices.values() ?? [])].map((d) => ({ devid: d.devid, connected: d.isConnected, sectors: d.sectors }));
  }
  blkCounters(devid: number): DeviceCounters | undefined { return this.blk?.devices.get(devid)?.counters(); }

  /**
   * Runs fio-like jobs on block device devid inside this guest (verify as the
   * jobs ask) and returns fio's JSON, with xensim's per-I/O counters.
   */
  async runFio(devid: number, specs: FioJobSpec[], opts: RunFioOptions = {}): Promise<AgentResult<FioJson>> {
    // The toolstack may have just created the device: the frontend bus probes it
    // when its XenStore watch fires, so give it until the connect timeout.
    const deadline = Date.now() + (opts.connectTimeoutMs ?? 10_000);
    let dev = this.blk?.devices.get(devid);
    while (dev === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
      dev = this.blk?.devices.get(devid);
    }
    if (dev === undefined) return { ok: false, error: `d${this.k.domid} has no block device ${devid}` };
    const connected = await Promise.race([
      dev.whenConnected().then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), Math.max(0, deadline - Date.now()))),
    ]);
    if (!connected) return { ok: false, error: `block device ${devid} of d${this.k.domid} did not connect` };
    let tracker = this.trackers.get(devid);
    if (tracker === undefined || opts.keepVerifyState === false) {
      tracker = new VerifyTracker(asDomId(this.k.domid), dev.sectors);
      this.trackers.set(devid, tracker);
    }
    const r = await runFio(specs, { device: dev, clock: systemClock, seed: opts.seed, domid: asDomId(this.k.domid), tracker, cpuUsage: () => process.cpuUsage() });
    if (!r.ok) return { ok: false, error: JSON.stringify(r.error) };
    return { ok: true, value: toFioJson(r.value) };
  }

  // ---- network ----

  /** The guest's network interfaces, in devid order. */
  vifs(): VifInfo[] {
    return [...(this.net?.devices.values() ?? [])].sort((a, b) => a.devid - b.devid).map((d) => ({
      devid: d.devid, mac: d.mac, mtu: d.mtu, wireMtu: d.wireMtu, connected: d.connected, numQueues: d.numQueues,
      connects: d.connects, ...(d.broken !== undefined ? { broken: d.broken } : {}), quarantinedPages: d.quarantinedPages,
      counters: d.counters(),
    }));
  }

  netCounters(devid: number): DeviceCounters | undefined { return this.net?.devices.get(devid)?.counters(); }

  /** Free grant references and RAM pages now, and pages quarantined by netfront. */
  resources(): GuestResources {
    let q = 0;
    for (const d of this.net?.devices.values() ?? []) { d.reclaim(); q += d.quarantinedPages; }
    return { freeGrantRefs: this.k.gnttab.freeCount, freeRamPages: this.k.ram.available, quarantinedPages: q };
  }

  /** [holdRx devid on] stops (or restarts) draining vif devid's received packets: rx-buffer starvation on demand. */
  holdRx(devid: number, on: boolean): AgentResult<void> {
    const d = this.net?.devices.get(devid);
    if (d === undefined) return { ok: false, error: `d${this.k.domid} has no vif ${devid}` };
    d.holdRx(on);
    return { ok: true, value: undefined };
  }

  /** [waitVif devid timeoutMs] waits for vif devid to be probed and connected; then it is as vifs() shows it. */
  async waitVif(devid: number, timeoutMs = 10_000): Promise<AgentResult<VifInfo>> {
    const d = await this.connectedVif(devid, timeoutMs);
    if (!d.ok) return d;
    const info = this.vifs().find((v) => v.devid === devid);
    return info === undefined ? { ok: false, error: `vif ${devid} of d${this.k.domid} went away` } : { ok: true, value: info };
  }

  private async connectedVif(devid: number, timeoutMs = 10_000): Promise<AgentResult<Netfront>> {
    const net = this.net;
    if (net === undefined) return { ok: false, error: `d${this.k.domid} runs no netfront` };
    const timeout = <T>(p: Promise<T>, ms: number): Promise<T | undefined> => {
      let t: NodeJS.Timeout | undefined;
      return Promise.race([p, new Promise<undefined>((r) => { t = setTimeout(() => r(undefined), Math.max(0, ms)); })]).finally(() => clearTimeout(t));
    };
    const deadline = Date.now() + timeoutMs;
    const dev = await timeout(net.device(devid), timeoutMs);
    if (dev === undefined) return { ok: false, error: `d${this.k.domid} has no vif ${devid}` };
    const up = await timeout(dev.whenConnected().then(() => true), deadline - Date.now());
    if (up !== true) return { ok: false, error: `vif ${devid} of d${this.k.domid} did not connect` };
    return { ok: true, value: dev };
  }

  /** [iperfServerStart devid opts] listens on vif devid (iperf3 -s); returns the server's id. */
  async iperfServerStart(devid: number, opts: IperfServerStartOptions): Promise<AgentResult<number>> {
    const dev = await this.connectedVif(devid, opts.connectTimeoutMs);
    if (!dev.ok) return dev;
    const s = IperfServer.create({
      device: dev.value, clock: systemClock, localIp: opts.ip, cpuUsage: () => process.cpuUsage(),
      ...(opts.port !== undefined ? { port: opts.port } : {}), ...(opts.window !== undefined ? { window: opts.window } : {}),
    });
    if (!s.ok) return { ok: false, error: JSON.stringify(s.error) };
    s.value.start();
    const id = this.nextServer++;
    this.servers.set(id, s.value);
    return { ok: true, value: id };
  }

  /** [iperfServerStop id opts] waits for the senders to close (if asked), stops listening and reports. */
  async iperfServerStop(id: number, opts: IperfServerStopOptions = {}): Promise<AgentResult<IperfServerReport>> {
    const s = this.servers.get(id);
    if (s === undefined) return { ok: false, error: `no iperf server ${id} in d${this.k.domid}` };
    if ((opts.streams ?? 0) > 0) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([s.whenClosed(opts.streams ?? 0), new Promise<void>((r) => { t = setTimeout(r, opts.waitMs ?? 1000); })]).finally(() => clearTimeout(t));
    }
    s.stop();
    this.servers.delete(id);
    return { ok: true, value: s.report() };
  }

  /** [iperfClient devid opts] runs an iperf3 client on vif devid to a server in another guest; its report. */
  async iperfClient(devid: number, opts: IperfClientRunOptions): Promise<AgentResult<IperfClientReport>> {
    const dev = await this.connectedVif(devid, opts.connectTimeoutMs);
    if (!dev.ok) return dev;
    const c = IperfClient.create({
      ...opts.tuning, device: dev.value, clock: systemClock, localIp: opts.ip, serverIp: opts.serverIp, serverMac: opts.serverMac,
      spec: opts.spec, cpuUsage: () => process.cpuUsage(), ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    });
    if (!c.ok) return { ok: false, error: JSON.stringify(c.error) };
    return { ok: true, value: await c.value.run() };
  }
}
