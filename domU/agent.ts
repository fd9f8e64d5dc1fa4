/**
 * A domU's agent: the generic guest agent plus the guest's XenStore client
 * and its block devices, so tools and tests see the guest as it sees itself
 * (XenStore permissions apply) and can run fio-like workloads inside it.
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

export class DomUAgent extends GuestAgent {
  private readonly trackers = new Map<number, VerifyTracker>();

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
}
