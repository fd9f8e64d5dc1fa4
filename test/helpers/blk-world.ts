/**
 * A whole block path in ONE thread: a hypervisor and guest kernels on one
 * MachineMemory (test/helpers/machine.ts), a real XenStored with dom0 on an
 * in-process client and each guest over a xenstore ring
 * (test/unit/xenbus/helpers.ts), blkback on dom0's backend bus and blkfront
 * on each guest's frontend bus, and an event pump that plays every vCPU:
 * it dispatches each kernel's pending event channels, then yields so that
 * promise continuations (workloads, pushes) run, round after round.
 */
import { RamDisk, type DiskStore } from '../../dom0/devices/disk-store.ts';
import { BlkbackDevice } from '../../dom0/blkback/blkback.ts';
import { DiskStoreStorage, type BlkStorage } from '../../dom0/blkback/storage.ts';
import { blkbackDriver, type BlkbackDriver, type BlkbackDriverOptions } from '../../dom0/blkback/xenbus.ts';
import { Blkfront, type BlkfrontOptions } from '../../domU/blkfront/blkfront.ts';
import { systemClock } from '../../domU/workloads/block-device.ts';
import { runFio, type FioJobSpec } from '../../domU/workloads/fio-engine.ts';
import { unwrap } from '../../shared/result.ts';
import { blkfrontDriver, type BlkfrontDriver } from '../../domU/blkfront/xenbus.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { ok, type Result } from '../../shared/result.ts';
import { asDomId, type DomId } from '../../shared/types.ts';
import { createBackendBus, type XenbusBackend } from '../../shared/xenbus/backend.ts';
import type { XenbusBus, XenbusHookError } from '../../shared/xenbus/device.ts';
import { createFrontendBus, type XenbusFrontend } from '../../shared/xenbus/frontend.ts';
import type { XenbusDeviceId } from '../../shared/xenbus/paths.ts';
import type { MemoryModel } from '../../shared/abi/machine.ts';
import { createDeviceDirs } from '../../toolstack/devices.ts';
import { XenbusState } from '../../shared/xenbus/state.ts';
import { must, world, type Guest, type World } from '../unit/xenbus/helpers.ts';
import { testMachine, type TestMachine } from './machine.ts';
import type { BlkBackendRingLimits } from '../../domU/blkfront/xenbus.ts';
import type { BlkFrontendInfo, BlkbackParams } from '../../dom0/blkback/xenbus.ts';
import { openVbdStorage } from '../../dom0/vbd.ts';

export interface BlkGuest {
  readonly domid: DomId;
  readonly k: DomainKernel;
  readonly xsGuest: Guest;
  readonly front: BlkfrontDriver;
  readonly bus: XenbusBus<XenbusFrontend<BlkBackendRingLimits>>;
}

export interface BlkWorldOptions {
  /** Machine memory (default 160 MiB). */
  readonly memBytes?: number;
  readonly dom0Model?: MemoryModel;
  readonly dom0KiB?: number;
  /** dom0's guest-physical pages for foreign grant mappings (default 16384). */
  readonly dom0ForeignPages?: number;
  /** Backend driver options except openStorage (the world supplies it from addDisk). */
  readonly backend?: Omit<BlkbackDriverOptions, 'openStorage'>;
  /** No blkback at all (a test brings its own backend). */
  readonly noBackend?: boolean;
}

export interface DiskSpec {
  /**
   * The backend's `params` as the toolstack writes them (ram:SIZE, an image
   * path): dom0/vbd.ts opens the medium, as dom0's worker does. Without it,
   * the storage below.
   */
  readonly params?: string;
  /** The storage, or a DiskStore to wrap in DiskStoreStorage (default: an 8 MiB RamDisk). */
  readonly storage?: BlkStorage;
  readonly disk?: DiskStore;
  readonly mode?: 'r' | 'w';
  readonly deviceType?: 'disk' | 'cdrom';
}

export class BlkWorld {
  readonly guests = new Map<number, BlkGuest>();
  private readonly extraKernels: DomainKernel[] = [];
  /** Device models stepped by the pump each round (a DMA controller's processOnce); each returns work done. */
  readonly pollers: (() => number)[] = [];
  private readonly storages = new Map<string, BlkStorage>();
  backend!: BlkbackDriver;
  backBus!: XenbusBus<XenbusBackend<BlkFrontendInfo>>;
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  /** Rounds the pump ran, and rounds in which some event was dispatched. */
  rounds = 0;
  busyRounds = 0;
  readonly lines: string[] = [];

  private constructor(readonly m: TestMachine, readonly dom0: DomainKernel, readonly xs: World, readonly opts: BlkWorldOptions) {}

  static async create(opts: BlkWorldOptions = {}): Promise<BlkWorld> {
    const m = testMachine(opts.memBytes ?? 160 << 20);
    const dom0 = m.domain({
      name: 'Domain-0', domid: 0, memoryKiB: opts.dom0KiB ?? 16 << 10, model: opts.dom0Model ?? 'pm', privileged: true,
      foreignPages: opts.dom0ForeignPages ?? 16384, maxMaptrack: 65536,
    });
    const xs = await world();
    const w = new BlkWorld(m, dom0, xs, opts);
    w.startBackend(opts.backend ?? {});
    if (opts.noBackend !== true) must(await w.backBus.start(), 'backend bus start');
    w.startPump();
    return w;
  }

  private startBackend(o: Omit<BlkbackDriverOptions, 'openStorage'>): void {
    this.backend = blkbackDriver(this.dom0, {
      ...o,
      log: o.log ?? ((l) => this.lines.push(l)),
      openStorage: (id: XenbusDeviceId, params: BlkbackParams): Result<BlkStorage, XenbusHookError> => {
        if (!params.params.startsWith('disk-')) return openVbdStorage(this.dom0, id, params, undefined);
        const s = this.storages.get(`${id.frontDom}/${id.devid}`);
        if (s === undefined) return { ok: false, error: { kind: 'no-disk', message: `no disk for ${id.frontDom}/${id.devid}` } };
        return ok(s);
      },
    });
    this.backBus = createBackendBus(this.xs.dom0, asDomId(0), 'vbd', this.backend.driver, { log: (l) => this.lines.push(l) });
  }

  /**
   * [restartBackend opts] kills the backend driver (its bus and devices stop,
   * their rings disconnect) and starts a new one with other options on the
   * same XenStore directories — a restarted dom0 blkback.
   */
  async restartBackend(o: Omit<BlkbackDriverOptions, 'openStorage'>, between?: () => Promise<void>): Promise<void> {
    await this.backBus.stop();
    for (const b of [...this.backBus.registered.values()]) await b.stop();
    await between?.();
    this.startBackend(o);
    must(await this.backBus.start(), 'backend bus start');
  }

  /** [addGuest domid model kib opts] boots a guest with a blkfront driver on its frontend bus. */
  async addGuest(domid: number, opts: BlkfrontOptions = {}, model: MemoryModel = 'vp', kib = 48 << 10, grantFrames = 64): Promise<BlkGuest> {
    const k = this.m.domain({ name: `guest${domid}`, domid, memoryKiB: kib, model, maxGrantFrames: grantFrames });
    const xsGuest = await this.xs.guest(domid);
    const front = blkfrontDriver(k, { ...opts, log: opts.log ?? ((l) => this.lines.push(l)) });
    const bus = createFrontendBus(xsGuest.xs, asDomId(domid), 'vbd', front.driver, { log: (l) => this.lines.push(l) });
    must(await bus.start(), 'frontend bus start');
    const g: BlkGuest = { domid: asDomId(domid), k, xsGuest, front, bus };
    this.guests.set(domid, g);
    return g;
  }

  /** [addRawGuest domid] boots a guest with no block driver (a test drives its device by hand). */
  async addRawGuest(domid: number, model: MemoryModel = 'vp', kib = 8 << 10): Promise<{ k: DomainKernel; xsGuest: Guest }> {
    const k = this.m.domain({ name: `raw${domid}`, domid, memoryKiB: kib, model, maxGrantFrames: 8 });
    const xsGuest = await this.xs.guest(domid);
    this.extraKernels.push(k);
    return { k, xsGuest };
  }

  /** [createDisk domid devid spec] registers the storage and creates both device directories (libxl's device add). */
  async createDisk(domid: number, devid = 51712, spec: DiskSpec = {}): Promise<BlkStorage | undefined> {
    let storage: BlkStorage | undefined;
    if (spec.params === undefined) {
      storage = spec.storage ?? new DiskStoreStorage(this.dom0.mem, spec.disk ?? new RamDisk({ sectors: 16384 }));
      this.storages.set(`${domid}/${devid}`, storage);
    }
    must(await createDeviceDirs(this.xs.dom0, {
      type: 'vbd', frontDom: asDomId(domid), backDom: asDomId(0), devid,
      backendKeys: { params: spec.params ?? `disk-${domid}-${devid}`, mode: spec.mode ?? 'w', type: 'phy', 'device-type': spec.deviceType ?? 'disk' },
      frontendKeys: { 'virtual-device': String(devid), 'device-type': spec.deviceType ?? 'disk' },
    }), 'createDeviceDirs');
    return storage;
  }

  /** [addDisk g devid spec] attaches a disk as the toolstack does; resolves with the connected Blkfront. */
  async addDisk(g: BlkGuest, devid = 51712, spec: DiskSpec = {}): Promise<Blkfront> {
    await this.createDisk(g.domid, devid, spec);
    const dev = await this.until(() => g.front.devices.get(devid), `blkfront ${g.domid}/${devid} to appear`);
    await this.within(dev.whenConnected(), `blkfront ${g.domid}/${devid} to connect`);
    await this.until(() => g.bus.registered.get(String(devid))?.state === XenbusState.Connected, `frontend ${g.domid}/${devid} state Connected`);
    return dev;
  }

  /** The backend device of guest/devid (undefined before probe). */
  backDevice(domid: number, devid = 51712): BlkbackDevice | undefined {
    return this.backend.devices.get(`${domid}/${devid}`);
  }

  // ---- the pump: every vCPU in one thread ----

  startPump(): void {
    if (this.running) return;
    this.running = true;
    this.loop = (async () => {
      const kernels = (): DomainKernel[] => [this.dom0, ...[...this.guests.values()].map((g) => g.k), ...this.extraKernels];
      let busyRun = 0;
      while (this.running) {
        let n = 0;
        for (const k of kernels()) n += k.evtchn.dispatch();
        for (const p of this.pollers) n += p();
        this.rounds++;
        if (n > 0) this.busyRounds++;
        // Busy: let promise continuations (completions, new submissions, pushes) run as
        // microtasks and come straight back; every 64 busy rounds, and whenever idle,
        // yield to the macrotask queue too (timers, I/O, the tests' own polling).
        if (n > 0 && ++busyRun % 64 !== 0) {
          for (let i = 0; i < 4; i++) await Promise.resolve();
          continue;
        }
        busyRun = 0;
        await new Promise<void>((r) => setImmediate(r));
      }
    })();
  }

  async stopPump(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** [until f what ms] runs the world until f() is defined/true. */
  async until<T>(f: () => T | undefined | false, what: string, ms = 5000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = f();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${this.lines.slice(-15).join('\n')}`);
      await new Promise<void>((r) => setImmediate(r));
    }
  }

  /** [within p what ms] is p, or a failure naming what did not happen. */
  async within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out waiting for ${what}\n${this.lines.slice(-15).join('\n')}`)), ms); });
    try {
      return await Promise.race([p, t]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.stopPump();
    await this.backBus.stop();
    for (const g of this.guests.values()) await g.bus.stop();
  }
}

/** [verifiedJob w dev job domid] writes a region with verify headers, then reads and checks all of it (two stonewalled fio jobs). */
export async function verifiedJob(w: BlkWorld, dev: Blkfront, job: Partial<FioJobSpec> & { size: number }, domid: number): Promise<{ writeIos: number; readIos: number; mismatches: number; verified: number }> {
  const specs: FioJobSpec[] = [
    { name: 'w', rw: 'randwrite', bs: 4096, iodepth: 16, verify: true, do_verify: false, randseed: 7, ...job },
    { name: 'r', rw: 'randread', bs: 4096, iodepth: 16, verify: true, stonewall: true, randseed: 8, ...job },
  ];
  const r = unwrap(await w.within(runFio(specs, { device: dev, clock: systemClock, domid: asDomId(domid) }), 'fio', 20000), 'runFio');
  const [wj, rj] = r.jobs;
  if (wj?.error !== 0 || rj?.error !== 0) throw new Error(`fio failed: ${wj?.errorMessage ?? ''} ${rj?.errorMessage ?? ''}`);
  return {
    writeIos: wj?.ddir[1].ios ?? 0,
    readIos: rj?.ddir[0].ios ?? 0,
    mismatches: rj?.verify?.mismatches ?? -1,
    verified: rj?.verify?.verifiedSectors ?? 0,
  };
}


export { Blkfront };
