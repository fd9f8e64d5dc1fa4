/**
 * The real block drivers as a stress plug-in: dom0/blkback on dom0's backend
 * bus and domU/blkfront on each well-behaved guest's frontend bus, probed
 * through XenBus like any vbd, with a verified workload over the Blkfront
 * (the BlockDevice guests' fio runs on). Every write is a fresh generation of
 * a pattern naming (domid, block, generation); every read must return the
 * generation blkback last ACKNOWLEDGED — across backend restarts, which the
 * backend-restart injector does to blkback too.
 *
 * What the plug-in gives the checkers: the workload's books (durability,
 * progress, stalls) and dom0's grant mappings blkback holds (rings,
 * persistent grants, in-flight maps: its grant_maps − grant_unmaps), so the
 * grant-leak checker can hold dom0's maptrack to account.
 *
 * This is how a driver joins the stress: a backend class (start, restart,
 * guestGone, mappings) on dom0's StressHost and a frontend class (start,
 * a workload) on a guest's, plus the toolstack's device directories. netback
 * and netfront join the same way once their stress workload exists.
 */
import { RamDisk, type DiskCounters, type DiskError, type DiskStore } from '../dom0/devices/disk-store.ts';
import { DiskStoreStorage } from '../dom0/blkback/storage.ts';
import { blkbackDriver, type BlkbackDriver } from '../dom0/blkback/xenbus.ts';
import type { Blkfront } from '../domU/blkfront/blkfront.ts';
import { blkfrontDriver, type BlkBackendRingLimits, type BlkfrontDriver } from '../domU/blkfront/xenbus.ts';
import { ok, type Result } from '../shared/result.ts';
import { asDomId } from '../shared/types.ts';
import { createBackendBus, type XenbusBackend } from '../shared/xenbus/backend.ts';
import type { XenbusBus } from '../shared/xenbus/device.ts';
import { createFrontendBus, type XenbusFrontend } from '../shared/xenbus/frontend.ts';
import type { XenbusDeviceId } from '../shared/xenbus/paths.ts';
import type { XsHandle } from '../shared/xenbus/xs-handle.ts';
import type { BlkFrontendInfo } from '../dom0/blkback/xenbus.ts';
import type { StressHost } from './host.ts';
import type { StressPlatform } from './platform.ts';
import { newWorkloadBooks, type WorkloadBooks } from './view.ts';
import { fillPattern } from './vstress.ts';

export const VBD_TYPE = 'vbd';
/** xvda. */
export const VBD_DEVID = 51712;
/** Blocks of 4 KiB on each guest's vbd. */
export const VBD_BLOCKS = 64;
const BLOCK_BYTES = 4096;
const SECTORS_PER_BLOCK = BLOCK_BYTES / 512;

/** The toolstack's keys for a guest's vbd (libxl's disk add). */
export function vbdDeviceSpec(domid: number): { type: string; frontDom: ReturnType<typeof asDomId>; backDom: ReturnType<typeof asDomId>; devid: number; backendKeys: Record<string, string>; frontendKeys: Record<string, string> } {
  return {
    type: VBD_TYPE, frontDom: asDomId(domid), backDom: asDomId(0), devid: VBD_DEVID,
    backendKeys: { params: `stress-d${domid}`, mode: 'w', type: 'phy', 'device-type': 'disk' },
    frontendKeys: { 'virtual-device': String(VBD_DEVID), 'device-type': 'disk' },
  };
}

export type BlkMutant = 'ack-before-write';

/**
 * The medium behind one vbd: it outlives blkback (a restarted backend opens
 * it again), so blkback's close does not close it. The mutant acknowledges a
 * write before storing it, and stores it only after four more writes.
 */
class StressDisk implements DiskStore {
  readonly sectorSize = 512 as const;
  private readonly held: { sector: number; data: Uint8Array; after: number }[] = [];
  constructor(private readonly inner: RamDisk, private readonly mutant?: BlkMutant) {}
  get sectors(): number { return this.inner.sectors; }
  get readOnly(): boolean { return this.inner.readOnly; }
  read(sector: number, into: Uint8Array, off?: number, len?: number): Result<void, DiskError> { return this.inner.read(sector, into, off, len); }
  write(sector: number, from: Uint8Array, off = 0, len = from.length - off): Result<void, DiskError> {
    for (let i = 0; i < this.held.length;) {
      const h = this.held[i] as { sector: number; data: Uint8Array; after: number };
      if (--h.after <= 0) { this.inner.write(h.sector, h.data); this.held.splice(i, 1); } else i++;
    }
    if (this.mutant === 'ack-before-write') {
      // MUTANT: acknowledged now, stored four writes later.
      this.held.push({ sector, data: from.slice(off, off + len), after: 4 });
      return ok(undefined);
    }
    return this.inner.write(sector, from, off, len);
  }
  flush(): Result<void, DiskError> { return this.inner.flush(); }
  discard(sector: number, nrSectors: number): Result<void, DiskError> { return this.inner.discard(sector, nrSectors); }
  close(): Result<void, DiskError> { return ok(undefined); }
  counters(): DiskCounters { return this.inner.counters(); }
}

export interface BlkBackendOptions {
  readonly mutant?: BlkMutant;
  /** blkback's clock for its persistent-grant LRU (the scheduler's steps in deterministic mode). */
  readonly clock?: () => number;
}

/** dom0's side: blkback on /local/domain/0/backend/vbd, one RamDisk per guest. */
export class BlkStressBackend {
  private bus: XenbusBus<XenbusBackend<BlkFrontendInfo>> | undefined;
  private driver: BlkbackDriver | undefined;
  private readonly disks = new Map<string, StressDisk>();
  /** Mappings of drivers that were stopped (their devices are gone from the map but may still hold some). */
  private retiredMappings = 0;
  restarts = 0;

  constructor(private readonly host: StressHost, private readonly xs: XsHandle, private readonly opts: BlkBackendOptions = {}) {}

  private disk(id: XenbusDeviceId): StressDisk {
    const key = `${id.frontDom}/${id.devid}`;
    let d = this.disks.get(key);
    if (d === undefined) {
      d = new StressDisk(new RamDisk({ sectors: VBD_BLOCKS * SECTORS_PER_BLOCK }), this.opts.mutant);
      this.disks.set(key, d);
    }
    return d;
  }

  async start(): Promise<boolean> {
    const k = this.host.k;
    this.driver = blkbackDriver(k, {
      openStorage: (id) => ok(new DiskStoreStorage(k.mem, this.disk(id))),
      maxRingPageOrder: 1,
      maxQueues: 2,
      log: (l) => this.host.note(l),
      device: this.opts.clock === undefined ? {} : { clock: this.opts.clock },
    });
    this.bus = createBackendBus(this.xs, asDomId(k.domid), VBD_TYPE, this.driver.driver, { log: (l) => this.host.note(l) });
    return (await this.bus.start()).ok;
  }

  /** blkback going away and coming back: every device disconnects (unmapping everything), a new driver probes again. */
  async restart(): Promise<boolean> {
    const bus = this.bus;
    const driver = this.driver;
    this.bus = undefined;
    if (bus !== undefined) {
      await bus.stop();
      for (const b of [...bus.registered.values()]) await b.stop();
    }
    if (driver !== undefined) this.retiredMappings += live(driver);
    this.restarts++;
    return this.start();
  }

  guestGone(domid: number): void {
    for (const k of [...this.disks.keys()]) if (k.startsWith(`${domid}/`)) this.disks.delete(k);
  }

  /** Devices blkback has connected now, as "vbd/frontDom/devid". */
  connectedDevices(): string[] {
    return [...this.bus?.registered ?? []].filter(([, d]) => d.isConnected).map(([rel]) => `${VBD_TYPE}/${rel}`);
  }

  /** Grant mappings blkback holds now (its own count: maps − unmaps, rings included). */
  mappings(): number {
    return this.retiredMappings + (this.driver === undefined ? 0 : live(this.driver));
  }

  async stop(): Promise<void> {
    const bus = this.bus;
    this.bus = undefined;
    if (bus === undefined) return;
    await bus.stop();
    for (const b of [...bus.registered.values()]) await b.stop();
  }
}

function live(d: BlkbackDriver): number {
  let n = 0;
  for (const dev of d.devices.values()) n += dev.counters.grant_maps - dev.counters.grant_unmaps;
  return n;
}

/** A guest's side: blkfront on its frontend bus, and a verified read/write workload on xvda. */
export class BlkStressFrontend {
  private driver: BlkfrontDriver | undefined;
  private bus: XenbusBus<XenbusFrontend<BlkBackendRingLimits>> | undefined;
  readonly work: WorkloadBooks;
  private readonly acked = new Map<number, number>();
  private readonly unknown = new Set<number>();
  private readonly busy = new Set<number>();
  private nextGen = 1;
  private inflight = 0;
  private lastAcked = -1;

  constructor(private readonly host: StressHost, private readonly xs: XsHandle, private readonly depth: number, private readonly persistent: boolean) {
    this.work = newWorkloadBooks('vbd-io', host.k.domid, false);
    host.books.workloads.push(this.work);
  }

  async start(): Promise<boolean> {
    const k = this.host.k;
    this.driver = blkfrontDriver(k, { maxQueues: 1, maxIndirectSegments: 11, persistent: this.persistent, maxRequestBytes: 44 * 1024, log: (l) => this.host.note(l) });
    this.bus = createFrontendBus(this.xs, asDomId(k.domid), VBD_TYPE, this.driver.driver, { log: (l) => this.host.note(l) });
    const r = await this.bus.start();
    if (!r.ok) return false;
    this.host.spawn('vbd-io', (p) => this.loop(p));
    return true;
  }

  /** xvda once it has connected at least once (after that blkfront holds requests across a resume itself). */
  private device(): Blkfront | undefined {
    const d = this.driver?.devices.get(VBD_DEVID);
    if (d !== undefined && d.isConnected) this.seen = d;
    return this.seen;
  }
  private seen: Blkfront | undefined;

  private async loop(p: StressPlatform): Promise<void> {
    const w = this.work;
    await p.until(() => this.device() !== undefined || p.stopping, 'vbd:connect');
    while (!p.stopping) {
      await p.until(() => p.stopping || this.inflight < this.depth, 'vbd:slot');
      if (p.stopping) break;
      const dev = this.device();
      if (dev === undefined) { await p.sleep(50, 'vbd:disconnected'); continue; }
      await p.point('vbd:issue');
      this.issue(p, dev);
    }
    const drained = await p.until(() => this.inflight === 0, 'vbd:drain', 6000);
    if (!drained) w.stuck = `${this.inflight} vbd requests still unanswered after the drain`;
    w.done = true;
  }

  private issue(p: StressPlatform, dev: Blkfront): void {
    const rng = p.rng;
    const write = rng.chance(0.55);
    const block = !write && this.lastAcked >= 0 && rng.chance(0.5) ? this.lastAcked : rng.int(VBD_BLOCKS);
    if (this.busy.has(block)) return;
    const k = this.host.k;
    const buf = new Uint8Array(BLOCK_BYTES);
    const gen = write ? this.nextGen++ : 0;
    if (write) fillPattern(buf, k.domid, block, gen);
    this.busy.add(block);
    this.inflight++;
    this.work.ops++;
    const sector = block * SECTORS_PER_BLOCK;
    const op = write ? dev.write(sector, buf) : dev.read(sector, buf);
    void op.then((st) => {
      this.inflight--;
      this.busy.delete(block);
      if (st !== 'ok') {
        this.work.errors++;
        this.host.note(`vbd-io ${write ? 'write' : 'read'} of block ${block}: ${st}`);
        if (write) this.unknown.add(block);
        return;
      }
      this.work.okOps++;
      if (write) {
        this.acked.set(block, gen);
        this.unknown.delete(block);
        this.lastAcked = block;
        return;
      }
      if (this.unknown.has(block)) return;
      const want = this.acked.get(block) ?? 0;
      const expect = new Uint8Array(BLOCK_BYTES);
      fillPattern(expect, k.domid, block, want);
      if (Buffer.compare(buf, expect) !== 0) {
        const word = (i: number) => ((buf[i] as number) | ((buf[i + 1] as number) << 8) | ((buf[i + 2] as number) << 16) | ((buf[i + 3] as number) << 24)) >>> 0;
        const got = word(0) === 0x5354_5253 ? `gen ${word(12)}` : buf.every((b) => b === 0) ? 'zeros' : 'unrecognised bytes';
        const msg = `d${k.domid} xvda block ${block}: read back ${got} after blkback acknowledged gen ${want}`;
        this.work.verifyFailures.push(msg);
        this.host.books.durability.push(msg);
      }
    });
  }

  async stop(): Promise<void> { await this.bus?.stop(); }
}
