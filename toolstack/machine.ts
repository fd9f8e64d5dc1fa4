/**
 * The toolstack: boots a machine (the hypervisor worker plus one worker per
 * domain), creates and destroys domains, handles crashes by each domain's
 * on_crash policy, and reads statistics — all over comlink, the control plane.
 * Payload never crosses here: it moves through grants and rings.
 */
import * as Comlink from 'comlink';
import type { Worker } from 'node:worker_threads';
import { DCB, MACHINE_HEADER } from '../shared/abi/machine.ts';
import { MachineLayout } from '../shared/machine-layout.ts';
import { MachineMemory, type PageSize } from '../shared/memory/machine-memory.ts';
import { spawnTsWorker } from '../shared/worker/spawn.ts';
import { parentEndpoint } from '../shared/worker/endpoint.ts';
import type { MachineAddr } from '../shared/types.ts';
import type { HypervisorControl } from '../hypervisor/control.ts';
import type { CreateDomainRequest, DomainBootInfo, HypervisorOptions } from '../hypervisor/hypervisor.ts';
import type { GuestAgent } from '../shared/kernel/agent.ts';
import type { Dom0Agent } from '../dom0/agent.ts';
import type { DomUAgent, IperfClientRunOptions } from '../domU/agent.ts';
import type { IperfClientReport, IperfServerReport, IperfSpec } from '../domU/workloads/iperf-engine.ts';
import { toIperf3Json } from '../domU/workloads/iperf-json.ts';
import type { KernelOptions } from '../shared/kernel/kernel.ts';
import type { DomainWorkerData, DriverOptions } from './worker-data.ts';
import type { DeviceDirsSpec } from './devices.ts';
import { vdevToDevid } from '../cli/config/vdev.ts';
import { parseRamSize } from '../cli/config/diskspec.ts';
import { libxlConfigOf, type LibxlDomainConfigJson } from './libxl-config.ts';
import { parseMac, parseVifRate, randomXenMac, VIF_DEFAULTS, type VifRate, type VifSpec } from '../cli/config/vifspec.ts';
import { asDomId } from '../shared/types.ts';
import { DeviceHost, type DeviceHandle } from './device-host.ts';
import type { Wire, WireEnd } from '../dom0/devices/nic.ts';
import type { DmaConfig } from '../dom0/dma/create-dma.ts';
import type { DmaKind } from '../dom0/dma/dma-api.ts';
import type { IommuMode } from '../shared/abi/iommu.ts';

export interface MachineOptions extends HypervisorOptions {
  /** Machine memory in bytes (default 256 MiB). */
  readonly memBytes?: number;
  readonly pageSize?: PageSize;
  /** Hypervisor spin window after the last hypercall (µs); 0 = never spin. */
  readonly hvSpinUs?: number;
}

export type OnCrash = 'destroy' | 'preserve' | 'restart';

export interface DomainOptions extends CreateDomainRequest {
  readonly onCrash?: OnCrash;
  readonly kernel?: KernelOptions;
  /** The worker entry to run (default: dom0/main.ts for domid 0, domU/main.ts otherwise). */
  readonly entry?: URL;
  /** What the entry is, when it is not the default (it decides XenStore wiring). */
  readonly kind?: 'dom0' | 'domU' | 'custom';
  /** Driver settings handed to the domain's worker. */
  readonly drivers?: DriverOptions;
}

/** A virtual disk to attach (the parts of an xl diskspec xensim acts on). */
/** dom0's (and any privileged backend domain's) default foreign pages and maptrack entries. */
export const DOM0_FOREIGN_PAGES = 36_864;
export const DOM0_MAX_MAPTRACK = 40_960;

export interface DiskAttach {
  /** xvda, hdb, sdc, … (xen-vbd-interface numbering). */
  readonly vdev: string;
  /** `ram:SIZE` for an in-memory disk, or an absolute path to a raw image. */
  readonly target: string;
  readonly access?: 'r' | 'w';
  readonly devtype?: 'disk' | 'cdrom';
  /** Bytes to create an image file with when it does not exist yet. */
  readonly size?: number;
  /**
   * Serve the disk as a physical one: a DMA block controller holding the
   * `ram:SIZE` medium, plugged in for dom0 and driven through dom0's DMA API
   * `dma` (what dom0's memory model allows), its IOMMU context `iommu`
   * (default: explicit for the `iommu` DMA API, passthrough otherwise). blkback
   * then maps the guest's grants for the device and the controller moves the
   * data (xl's backendtype=phy). Without it a `ram:` disk is emulated in
   * software in dom0 (backendtype=qdisk): blkback copies the data itself.
   */
  readonly device?: { readonly dma: DmaKind | DmaConfig; readonly iommu?: IommuMode; readonly lazy?: boolean };
}

/**
 * A network interface to attach: the fields of a parsed xl vifspec
 * (cli/config/vifspec.ts VifSpec fits) that xensim acts on. Every field is
 * optional, as in xl.
 */
export interface VifAttach {
  /** DEVID (default: the lowest devid the domain does not use). */
  readonly devid?: number;
  /** aa:bb:cc:dd:ee:ff; absent, or all zero: a random address in Xen's OUI 00:16:3e (libxl's rule). */
  readonly mac?: string;
  /** The dom0 bridge the backend plugs vifD.N into (default xenbr0). */
  readonly bridge?: string;
  /** `rate=` as xl parses it, or its text ("10Mb/s@20ms"); null or absent = unlimited. */
  readonly rate?: VifRate | string | null;
  /** Written to the backend directory (libxl's `ip`, for vif-route); nothing routes by it. */
  readonly ip?: string | null;
  /** Wire MTU (default 1500). */
  readonly mtu?: number;
  /** Frontend `trusted` (default: not written, which netfront reads as trusted). */
  readonly trusted?: boolean | null;
  /** Backend domain id (default 0); it must run netback. */
  readonly backendDomid?: number;
  /** Hotplug script: written for tools that read it, never run. */
  readonly script?: string;
  /** HVM emulated NIC model: ignored (PV vifs only). */
  readonly model?: string | null;
}

/** What attachVif made (also what detachVif needs). */
export interface VifAttached {
  readonly domid: number;
  readonly devid: number;
  readonly backendDomid: number;
  readonly mac: string;
  readonly bridge: string;
  /** The backend interface's name, vif<domid>.<devid>. */
  readonly vifname: string;
  readonly mtu: number;
  /** The backend `rate` key ("bytes,usecs"), if limited. */
  readonly rateKey?: string;
  readonly ip?: string;
}

/** [vifAttachOf v] is the part of a parsed xl vifspec attachVif takes (the backend name resolves elsewhere). */
export function vifAttachOf(v: VifSpec): VifAttach {
  return {
    devid: v.devid, ...(v.mac_generated ? {} : { mac: v.mac }), bridge: v.bridge, rate: v.rate, ip: v.ip, mtu: v.mtu,
    trusted: v.trusted, script: v.script,
  };
}

/** A physical NIC for dom0 to drive as a port of one of its bridges (Machine.attachNic). */
export interface NicAttach {
  /** The port's name on the bridge, and the device's (default eth<N>). */
  readonly name?: string;
  /** dom0's bridge (default xenbr0). */
  readonly bridge?: string;
  /** dom0's DMA API for the NIC: a kind, or a configuration with its options. */
  readonly dma: DmaKind | DmaConfig;
  /** Where the rings come from, when not from `dma` (a legacy driver's rings). */
  readonly queueDma?: DmaKind | DmaConfig;
  /** The NIC's IOMMU context (default: explicit for the iommu DMA API, passthrough otherwise). */
  readonly mode?: IommuMode;
  readonly dmaMaskBits?: number;
  /** The cable (default: a new pair wire, the NIC on end 0, end 1 free for a host outside). */
  readonly wire?: Wire | 'pair' | 'loopback';
  readonly end?: WireEnd;
  readonly mac?: string;
  readonly mtu?: number;
  readonly txEntries?: number;
  readonly rxEntries?: number;
  readonly txQueueLen?: number;
  /** The NIC model's loop: spin before sleeping (µs), longest sleep (ms). */
  readonly spinUs?: number;
  readonly idleMs?: number;
}

/** What attachNic made. */
export interface NicAttached {
  readonly name: string;
  readonly bridge: string;
  readonly device: DeviceHandle;
  readonly wire: Wire;
  readonly end: WireEnd;
}

/** One end of a network stream: a guest's vif and the IPv4 address it speaks as. */
export interface StreamEnd {
  readonly domid: number;
  /** Default 0. */
  readonly devid?: number;
  readonly ip: string;
}

export interface NetStreamOptions {
  readonly client: StreamEnd;
  readonly server: StreamEnd;
  /** iperf3's client options (-u, -t, -n, -l, -P, -b, -w, -p, -i, -O). */
  readonly spec: IperfSpec;
  readonly seed?: number;
  /** After the client is done, how long the server may wait for every stream to close (default 2000 ms). */
  readonly closeWaitMs?: number;
  readonly tuning?: IperfClientRunOptions['tuning'];
  /** Called once the server listens and the client is about to start (a test's hook to act mid-stream). */
  readonly onStart?: () => void;
}

export interface NetStreamResult {
  /** `iperf3 -c … -J`'s shape, with xensim's counters (device, backend, per packet) under `xensim`. */
  readonly json: Record<string, unknown>;
  readonly client: IperfClientReport;
  readonly server: IperfServerReport;
  /** netback's counters of each end's vif over the test (deltas), when dom0 serves them. */
  readonly backend: { readonly client?: Record<string, number>; readonly server?: Record<string, number> };
}

export interface DomainHandle {
  readonly domid: number;
  readonly name: string;
  readonly boot: DomainBootInfo;
  readonly agent: Comlink.Remote<GuestAgent>;
  readonly kind: 'dom0' | 'domU' | 'custom';
  readonly worker: Worker;
  /** Settles when the worker exits (cleanly or not). */
  readonly exited: Promise<number>;
  crashed: boolean;
}

const DOMU_ENTRY = new URL('../domU/main.ts', import.meta.url);
const DOM0_ENTRY = new URL('../dom0/main.ts', import.meta.url);
const HV_ENTRY = new URL('../hypervisor/main.ts', import.meta.url);

function waitReady(w: Worker, tag: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: unknown) => {
      if (typeof m === 'object' && m !== null && (m as { xensim?: string }).xensim === tag) { cleanup(); resolve(); }
    };
    const onErr = (e: Error) => { cleanup(); reject(e); };
    const onExit = (code: number) => { cleanup(); reject(new Error(`worker exited with code ${code} before it was ready`)); };
    const cleanup = () => { w.off('message', onMsg); w.off('error', onErr); w.off('exit', onExit); };
    w.on('message', onMsg); w.on('error', onErr); w.on('exit', onExit);
  });
}

function check(r: { ok: boolean; error?: string }, what: string): void {
  if (!r.ok) throw new Error(`toolstack: ${what}: ${r.error}`);
}

export class Machine {
  readonly layout: MachineLayout;
  readonly hv: Comlink.Remote<HypervisorControl>;
  private readonly domains = new Map<number, DomainHandle>();
  private readonly specs = new Map<number, DomainOptions>();
  /** Attached vifs by "<domid>/<devid>", and the directories written for them. */
  private readonly vifs = new Map<string, VifAttached>();
  private readonly vifDirs = new Map<string, DeviceDirsSpec>();
  private deviceHost: DeviceHost | undefined;
  private readonly nics = new Map<string, NicAttached>();
  /** Disks attached, by "<domid>/<devid>" (for configs and for destroy). */
  private readonly disks = new Map<string, { readonly domid: number; readonly devid: number; readonly attach: DiskAttach }>();
  /** DMA block controllers serving vbds, by "<domid>/<devid>". */
  private readonly diskDevices = new Map<string, DeviceHandle>();
  /** Crash events seen, for tools and tests. */
  readonly crashes: { domid: number; name: string; error: string; action: OnCrash }[] = [];

  private constructor(
    readonly mem: MachineMemory,
    private readonly hvWorker: Worker,
  ) {
    this.layout = new MachineLayout(mem);
    const kick = () => {
      // Wake the hypervisor out of its doorbell wait so it serves the message.
      mem.atomicStore32(MACHINE_HEADER.hvControl as MachineAddr, 1);
      mem.atomicAdd32(MACHINE_HEADER.hvDoorbell as MachineAddr, 1);
      mem.notify32(MACHINE_HEADER.hvDoorbell as MachineAddr);
    };
    this.hv = Comlink.wrap<HypervisorControl>(parentEndpoint(hvWorker, kick));
  }

  /** [boot opts] starts the hypervisor on a fresh machine. */
  static async boot(opts: MachineOptions = {}): Promise<Machine> {
    const mem = MachineMemory.create({ memBytes: opts.memBytes ?? 256 * 1024 * 1024, pageSize: opts.pageSize ?? 4096 });
    const { memBytes: _m, pageSize: _p, hvSpinUs, ...hvOpts } = opts;
    const w = spawnTsWorker(HV_ENTRY, { sab: mem.sab, pageSize: mem.pageSize, options: { ...hvOpts, spinUs: hvSpinUs } });
    await waitReady(w, 'hypervisor-ready');
    return new Machine(mem, w);
  }

  /** [createDomain opts] builds a domain in the hypervisor and starts its worker. */
  async createDomain(opts: DomainOptions): Promise<DomainHandle> {
    const { onCrash: _c, kernel, entry, kind: givenKind, drivers, ...given } = opts;
    // A backend domain maps its guests' grants into its foreign pages, each mapping a maptrack
    // entry: blkback's persistent cache alone is 1056 grants per ring, plus a ring of maps
    // while the cache is full and the ring pages (~2113 per ring), so 4 guests x 4 queues
    // need ~34k. Xen's own limits are per-domain settings; these are dom0's defaults here.
    const backend = given.privileged === true || given.domid === 0;
    const req: CreateDomainRequest = backend
      ? { ...given, foreignPages: given.foreignPages ?? DOM0_FOREIGN_PAGES, maxMaptrack: given.maxMaptrack ?? DOM0_MAX_MAPTRACK }
      : given;
    const r = await this.hv.createDomain(req);
    if (!r.ok) throw new Error(`cannot create domain '${opts.name}': ${r.error}`);
    const boot = r.value;
    const data: DomainWorkerData = { sab: this.mem.sab, pageSize: this.mem.pageSize, boot, kernel, drivers };
    const kind: DomainHandle['kind'] = givenKind ?? (entry !== undefined ? 'custom' : boot.domid === 0 ? 'dom0' : 'domU');
    const worker = spawnTsWorker(entry ?? (kind === 'dom0' ? DOM0_ENTRY : DOMU_ENTRY), data as unknown as Record<string, unknown>);
    const mem = this.mem;
    const kick = () => {
      mem.atomicStore32(this.layout.dcbField(boot.slot, DCB.control), 1);
      mem.atomicAdd32(this.layout.dcbField(boot.slot, DCB.wake), 1);
      mem.notify32(this.layout.dcbField(boot.slot, DCB.wake), 1);
    };
    let lastError = '';
    worker.on('error', (e) => { lastError = e instanceof Error ? e.message : String(e); });
    const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
    const ready = waitReady(worker, 'domain-ready');
    const handle: DomainHandle = { domid: boot.domid, name: boot.name, boot, agent: Comlink.wrap<GuestAgent>(parentEndpoint(worker, kick)), kind, worker, exited, crashed: false };
    this.domains.set(boot.domid, handle);
    this.specs.set(boot.domid, opts);
    void exited.then((code) => this.onExit(handle, code, lastError));
    await ready;
    if (kind === 'dom0') await this.dom0Entries(handle);
    else if (kind === 'domU') await this.introduce(handle);
    return handle;
  }

  /** dom0's agent, when dom0 runs the dom0 kernel (xenstored lives there). */
  get dom0(): Comlink.Remote<Dom0Agent> | undefined {
    const h = this.domains.get(0);
    return h?.kind === 'dom0' ? (h.agent as unknown as Comlink.Remote<Dom0Agent>) : undefined;
  }
  domU(domid: number): Comlink.Remote<DomUAgent> {
    const h = this.domains.get(domid);
    if (h?.kind !== 'domU') throw new Error(`d${domid} is not a running domU`);
    return h.agent as unknown as Comlink.Remote<DomUAgent>;
  }

  private async dom0Entries(h: DomainHandle): Promise<void> {
    const d0 = this.dom0;
    if (d0 === undefined) return;
    check(await d0.domainDirs(0, h.name), 'create /local/domain/0');
  }

  /**
   * As xl does after building a guest: create /local/domain/<id> as libxl
   * lays it out, and tell xenstored about the guest's ring (XS_INTRODUCE).
   */
  private async introduce(h: DomainHandle): Promise<void> {
    const d0 = this.dom0;
    if (d0 === undefined) return;
    const info = await this.domU(h.domid).storeInfo();
    check(await d0.domainDirs(h.domid, h.name), `create /local/domain/${h.domid}`);
    check(await d0.introduce(h.domid, info.ref, info.port), 'introduce');
  }

  /**
   * [attachDisk domid disk] creates the vbd's frontend and backend directories
   * as libxl does (dom0 is the backend); the guest's blkfront and dom0's
   * blkback then connect through XenBus. Returns the device id (xvda = 51712).
   */
  async attachDisk(domid: number, disk: DiskAttach): Promise<number> {
    const d0 = this.dom0;
    if (d0 === undefined) throw new Error('attachDisk: no dom0 to serve the disk');
    const v = vdevToDevid(disk.vdev);
    if (!v.ok) throw new Error(v.error.message);
    const devid = v.value.devid;
    const devtype = disk.devtype ?? 'disk';
    const mode = disk.access ?? (devtype === 'cdrom' ? 'r' : 'w');
    let params = disk.target;
    if (disk.device !== undefined) params = await this.plugDiskDevice(domid, devid, disk.target, disk.device);
    const r = await d0.createDeviceDirs({
      type: 'vbd', frontDom: asDomId(domid), backDom: asDomId(0), devid,
      backendKeys: {
        params, mode, 'device-type': devtype, type: disk.target.startsWith('ram:') ? 'ram' : 'file',
        removable: devtype === 'cdrom' ? '1' : '0', dev: disk.vdev, ...(disk.size !== undefined ? { size: String(disk.size) } : {}),
      },
      frontendKeys: { 'virtual-device': String(devid), 'device-type': devtype },
    });
    if (!r.ok) await this.unplugDiskDevice(domid, devid);
    check(r, `attach ${disk.vdev} to d${domid}`);
    this.disks.set(`${domid}/${devid}`, { domid, devid, attach: disk });
    return devid;
  }

  /** The DMA block controller for a `ram:` disk, plugged in and driven by dom0; returns the vbd's params (dma:NAME). */
  private async plugDiskDevice(domid: number, devid: number, target: string, dev: NonNullable<DiskAttach['device']>): Promise<string> {
    const d0 = this.dom0;
    if (d0 === undefined) throw new Error('attachDisk: no dom0 to drive the disk controller');
    if (!target.startsWith('ram:')) throw new Error(`attachDisk: a disk served by a DMA controller needs a ram:SIZE medium, got ${target}`);
    const bytes = parseRamSize(target.slice(4));
    if (bytes === null || bytes === 0 || bytes % 512 !== 0) throw new Error(`attachDisk: ${target}: expected ram:SIZE of whole 512-byte sectors (e.g. ram:64M)`);
    const key = `${domid}/${devid}`;
    if (this.diskDevices.has(key)) throw new Error(`attachDisk: d${domid} already has a disk controller for devid ${devid}`);
    const dma: DmaConfig = typeof dev.dma === 'string' ? ({ kind: dev.dma } as DmaConfig) : dev.dma;
    const name = `vbd-${domid}-${devid}`;
    // blkback offers up to 256 indirect segments: one request must fit one controller descriptor.
    const device = await this.devices.add({
      kind: 'dma-disk', name, owner: 0, mode: dev.iommu ?? (dma.kind === 'iommu' ? 'explicit' : 'passthrough'), sectors: bytes / 512, maxSegs: 256,
      ...(dev.lazy === true ? { lazy: true } : {}),
    });
    const a = await d0.attachVbdDmaDisk(device.info, dma, { entries: 32, maxSegs: 256 });
    if (!a.ok) {
      await this.devices.remove(device);
      throw new Error(`attachDisk: dom0 cannot drive the disk controller through the ${dma.kind} DMA API: ${a.error}`);
    }
    this.diskDevices.set(key, device);
    return `dma:${name}`;
  }

  /** [diskDevice domid devid] is the DMA block controller serving that vbd, if it is a physical disk. */
  diskDevice(domid: number, devid: number): DeviceHandle | undefined { return this.diskDevices.get(`${domid}/${devid}`); }

  private async unplugDiskDevice(domid: number, devid: number): Promise<void> {
    const key = `${domid}/${devid}`;
    const device = this.diskDevices.get(key);
    if (device === undefined) return;
    this.diskDevices.delete(key);
    await this.devices.remove(device);
  }

  /** [detachDisk domid devid] unplugs the vbd as xl block-detach does: Closing, then the directories go. */
  async detachDisk(domid: number, devid: number, timeoutMs = 10_000): Promise<void> {
    const d0 = this.dom0;
    if (d0 === undefined) return;
    const id = { type: 'vbd', frontDom: asDomId(domid), backDom: asDomId(0), devid };
    check(await d0.initiateDeviceRemove(id), 'initiate remove');
    const end = Date.now() + timeoutMs;
    for (;;) {
      const st = await d0.xsRead(`/local/domain/0/backend/vbd/${domid}/${devid}/state`);
      if (!st.ok || st.value === '6' || Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    check(await d0.removeDeviceDirs(id), 'remove device directories');
    this.disks.delete(`${domid}/${devid}`);
    await this.unplugDiskDevice(domid, devid);
  }

  /**
   * [attachVif domid spec] plugs a network interface into a running domU as
   * `xl network-attach` does: it writes both device directories as libxl
   * does (libxl__device_nic_add; XEN-FACTS.md §3), in Initialising, and the
   * guest's netfront and the backend domain's netback connect through
   * XenBus (netback plugs vif<domid>.<devid> into the bridge). Returns what
   * it made; the device is connected once `domU(domid).vifs()` says so.
   *
   *   backend/vif/<domid>/<devid>: frontend, frontend-id, online, state, handle,
   *       mac, bridge, script, type, mtu, [rate = "bytes,usecs"], [ip], vifname
   *   device/vif/<devid>: backend, backend-id, state, handle, mac, mtu, [trusted]
   */
  async attachVif(domid: number, spec: VifAttach = {}): Promise<VifAttached> {
    const d0 = this.dom0;
    if (d0 === undefined) throw new Error('attachVif: no dom0 to write the device directories');
    if (this.domains.get(domid)?.kind !== 'domU') throw new Error(`attachVif: d${domid} is not a running domU`);
    const backDom = spec.backendDomid ?? 0;
    if (this.domains.get(backDom) === undefined) throw new Error(`attachVif: backend domain d${backDom} is not running`);
    let devid = spec.devid;
    if (devid === undefined) for (devid = 0; this.vifs.has(`${domid}/${devid}`); devid++);
    if (!Number.isSafeInteger(devid) || devid < 0) throw new Error(`attachVif: devid ${devid} is not a non-negative integer`);
    if (this.vifs.has(`${domid}/${devid}`)) throw new Error(`attachVif: d${domid} already has vif devid ${devid}`);
    let mac = spec.mac?.toLowerCase();
    if (mac !== undefined) {
      const b = parseMac(mac);
      if (b === null) throw new Error(`attachVif: Invalid parameter \`mac'. ("${mac}")`);
      if (((b[0] ?? 0) & 1) !== 0) throw new Error(`attachVif: mac ${mac} is a multicast address`);
      mac = b.map((x) => x.toString(16).padStart(2, '0')).join(':');
      if (b.every((x) => x === 0)) mac = undefined; // libxl's "default"
    }
    if (mac === undefined) {
      const used = new Set([...this.vifs.values()].map((v) => v.mac));
      do mac = randomXenMac(); while (used.has(mac));
    }
    let rate: VifRate | null = null;
    if (typeof spec.rate === 'string') {
      const r = parseVifRate(spec.rate);
      if (!r.ok) throw new Error(`attachVif: ${r.error}`);
      rate = r.value;
    } else if (spec.rate != null) rate = spec.rate;
    const mtu = spec.mtu ?? VIF_DEFAULTS.mtu;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new Error(`attachVif: mtu ${mtu} is not in 68..65535`);
    const bridge = spec.bridge ?? VIF_DEFAULTS.bridge;
    const vifname = `vif${domid}.${devid}`;
    const rateKey = rate === null ? undefined : `${rate.bytesPerInterval},${rate.intervalUsecs}`;
    const ip = spec.ip ?? undefined;
    const dirs: DeviceDirsSpec = {
      type: 'vif', frontDom: asDomId(domid), backDom: asDomId(backDom), devid,
      backendKeys: {
        mac, bridge, script: spec.script ?? VIF_DEFAULTS.script, type: 'vif', mtu: String(mtu), vifname,
        ...(rateKey !== undefined ? { rate: rateKey } : {}), ...(ip !== undefined ? { ip } : {}),
      },
      frontendKeys: {
        mac, mtu: String(mtu),
        ...(spec.trusted != null ? { trusted: spec.trusted ? '1' : '0' } : {}),
      },
    };
    check(await d0.createDeviceDirs(dirs), `attach vif ${devid} to d${domid}`);
    this.vifDirs.set(`${domid}/${devid}`, dirs);
    const made: VifAttached = { domid, devid, backendDomid: backDom, mac, bridge, vifname, mtu, ...(rateKey !== undefined ? { rateKey } : {}), ...(ip !== undefined ? { ip } : {}) };
    this.vifs.set(`${domid}/${devid}`, made);
    return made;
  }

  /**
   * [recreateVifBackends backendDomid] writes the backend directory of every
   * vif that domain serves afresh, in Initialising (libxl adding a device
   * with only its backend entries): what the toolstack does once a restarted
   * netback watches again. Frontends see their backend come back and
   * reconnect. Returns how many directories it wrote.
   */
  async recreateVifBackends(backendDomid = 0): Promise<number> {
    const d0 = this.dom0;
    if (d0 === undefined) throw new Error('recreateVifBackends: no dom0');
    let n = 0;
    for (const dirs of this.vifDirs.values()) {
      if (dirs.backDom !== backendDomid) continue;
      check(await d0.createDeviceDirs({ ...dirs, sides: 'backend' }), `re-create backend/vif/${dirs.frontDom}/${dirs.devid}`);
      n++;
    }
    return n;
  }

  /** The vifs attached to domid (every domain's when omitted), in devid order. */
  vifsOf(domid?: number): VifAttached[] {
    return [...this.vifs.values()].filter((v) => domid === undefined || v.domid === domid).sort((a, b) => a.domid - b.domid || a.devid - b.devid);
  }

  /**
   * [detachVif domid devid] unplugs the vif as `xl network-detach` does:
   * online = 0 and backend Closing; netfront closes, revokes its grants and
   * frees its pages, netback unmaps the rings, closes its ports and leaves
   * the bridge, the backend goes Closed; then both directories go.
   */
  async detachVif(domid: number, devid: number, timeoutMs = 10_000): Promise<void> {
    const d0 = this.dom0;
    if (d0 === undefined) return;
    const v = this.vifs.get(`${domid}/${devid}`);
    const backDom = v?.backendDomid ?? 0;
    const id = { type: 'vif', frontDom: asDomId(domid), backDom: asDomId(backDom), devid };
    const be = `/local/domain/${backDom}/backend/vif/${domid}/${devid}`;
    const fe = `/local/domain/${domid}/device/vif/${devid}`;
    check(await d0.initiateDeviceRemove(id), 'initiate remove');
    const end = Date.now() + timeoutMs;
    // Both ends Closed (the frontend has let go of its grants), or a guest that is gone.
    for (;;) {
      const b = await d0.xsRead(`${be}/state`);
      const f = await d0.xsRead(`${fe}/state`);
      const closed = (x: typeof b) => !x.ok || x.value === '6';
      if ((closed(b) && closed(f)) || Date.now() > end) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    check(await d0.removeDeviceDirs(id), 'remove device directories');
    this.vifs.delete(`${domid}/${devid}`);
    this.vifDirs.delete(`${domid}/${devid}`);
  }

  /** The machine's DMA devices and outside hosts (made on first use; stopped first at shutdown). */
  get devices(): DeviceHost {
    this.deviceHost ??= new DeviceHost(this);
    return this.deviceHost;
  }

  /**
   * [attachNic spec] plugs a physical NIC into the machine for dom0 (its
   * IOMMU context, its model in a device worker, on a wire), and has dom0
   * drive it through the DMA API spec.dma as a port of spec.bridge — `brctl
   * addif xenbr0 eth0` on a host whose eth0 driver uses the DMA API. Frames
   * the bridge floods or forwards there leave on the wire; frames on the wire
   * enter the bridge. A host outside goes on the wire's free end
   * (devices.addOutsideHost).
   */
  async attachNic(spec: NicAttach): Promise<NicAttached> {
    const d0 = this.dom0;
    if (d0 === undefined) throw new Error('attachNic: no dom0 to drive the NIC');
    const name = spec.name ?? `eth${this.nics.size}`;
    if (this.nics.has(name)) throw new Error(`attachNic: dom0 already has a NIC named ${name}`);
    const cfg = (c: DmaKind | DmaConfig): DmaConfig => (typeof c === 'string' ? ({ kind: c } as DmaConfig) : c);
    const dma = cfg(spec.dma);
    const wire = spec.wire === undefined || typeof spec.wire === 'string' ? DeviceHost.wire(spec.wire ?? 'pair') : spec.wire;
    const end = spec.end ?? 0;
    const device = await this.devices.add({
      kind: 'nic', name, owner: 0, mode: spec.mode ?? (dma.kind === 'iommu' ? 'explicit' : 'passthrough'), wire, end,
      ...(spec.dmaMaskBits !== undefined ? { dmaMaskBits: spec.dmaMaskBits } : {}),
      ...(spec.spinUs !== undefined ? { spinUs: spec.spinUs } : {}), ...(spec.idleMs !== undefined ? { idleMs: spec.idleMs } : {}),
    });
    const bridge = spec.bridge ?? VIF_DEFAULTS.bridge;
    const r = await d0.nicAttach(device.info, {
      name, bridge, dma, ...(spec.queueDma !== undefined ? { queueDma: cfg(spec.queueDma) } : {}),
      ...(spec.mac !== undefined ? { mac: spec.mac } : {}), ...(spec.mtu !== undefined ? { mtu: spec.mtu } : {}),
      ...(spec.txEntries !== undefined ? { txEntries: spec.txEntries } : {}), ...(spec.rxEntries !== undefined ? { rxEntries: spec.rxEntries } : {}),
      ...(spec.txQueueLen !== undefined ? { txQueueLen: spec.txQueueLen } : {}),
    });
    if (!r.ok) {
      await this.devices.remove(device);
      throw new Error(`attachNic: ${r.error}`);
    }
    const made: NicAttached = { name, bridge, device, wire, end };
    this.nics.set(name, made);
    return made;
  }

  /** [detachNic name] has dom0 take the NIC out of its bridge and let go of it, then unplugs the device. */
  async detachNic(name: string): Promise<void> {
    const n = this.nics.get(name);
    if (n === undefined) return;
    this.nics.delete(name);
    const d0 = this.dom0;
    if (d0 !== undefined) check(await d0.nicDetach(name), `detach NIC ${name}`);
    await this.devices.remove(n.device);
  }

  /** The NICs dom0 drives, in attach order. */
  get nicList(): NicAttached[] { return [...this.nics.values()]; }

  /**
   * [iperf opts] runs an iperf3-like stream from one guest's vif to
   * another's: a server listens in the server guest, the client runs in the
   * client guest (both workers read one clock, process.hrtime), then the
   * server reports once every stream closed. Joins both reports, with
   * dom0's netback counters of both vifs over the run, into iperf3's JSON.
   */
  async iperf(opts: NetStreamOptions): Promise<NetStreamResult> {
    const cdev = opts.client.devid ?? 0;
    const sdev = opts.server.devid ?? 0;
    const cu = this.domU(opts.client.domid);
    const su = this.domU(opts.server.domid);
    const sv = await su.waitVif(sdev);
    if (!sv.ok) throw new Error(`iperf: ${sv.error}`);
    const cv = await cu.waitVif(cdev);
    if (!cv.ok) throw new Error(`iperf: ${cv.error}`);
    const d0 = this.dom0;
    const backendOf = async (domid: number, devid: number): Promise<Record<string, number> | undefined> => {
      const row = (await d0?.vifStats(domid))?.find((r) => r.devid === devid);
      return row === undefined ? undefined : { ...row.counters };
    };
    const b0 = { client: await backendOf(opts.client.domid, cdev), server: await backendOf(opts.server.domid, sdev) };
    const id = await su.iperfServerStart(sdev, { ip: opts.server.ip, ...(opts.spec.port !== undefined ? { port: opts.spec.port } : {}), ...(opts.spec.window !== undefined ? { window: opts.spec.window } : {}) });
    if (!id.ok) throw new Error(`iperf server: ${id.error}`);
    opts.onStart?.();
    const t0 = Date.now();
    let c: Awaited<ReturnType<DomUAgent['iperfClient']>>;
    try {
      c = await cu.iperfClient(cdev, {
        ip: opts.client.ip, serverIp: opts.server.ip, serverMac: sv.value.mac, spec: opts.spec,
        ...(opts.seed !== undefined ? { seed: opts.seed } : {}), ...(opts.tuning !== undefined ? { tuning: opts.tuning } : {}),
      });
    } catch (e) {
      await su.iperfServerStop(id.value);
      throw e;
    }
    const s = await su.iperfServerStop(id.value, { streams: c.ok ? c.value.spec.parallel : 0, waitMs: opts.closeWaitMs ?? 2000 });
    if (!c.ok) throw new Error(`iperf client: ${c.error}`);
    if (!s.ok) throw new Error(`iperf server: ${s.error}`);
    const delta = (a: Record<string, number> | undefined, b: Record<string, number> | undefined): Record<string, number> | undefined =>
      a === undefined || b === undefined ? undefined : Object.fromEntries(Object.entries(b).map(([k, v]) => [k, v - (a[k] ?? 0)]));
    const b1 = { client: await backendOf(opts.client.domid, cdev), server: await backendOf(opts.server.domid, sdev) };
    const backend = { ...(b1.client ? { client: delta(b0.client, b1.client) ?? b1.client } : {}), ...(b1.server ? { server: delta(b0.server, b1.server) ?? b1.server } : {}) };
    const json = toIperf3Json(c.value, s.value, { timestampMs: t0, backend });
    return { json, client: c.value, server: s.value, backend };
  }

  private async release(domid: number): Promise<void> {
    const d0 = this.dom0;
    const vifs = this.vifsOf(domid);
    for (const v of vifs) {
      this.vifs.delete(`${domid}/${v.devid}`);
      this.vifDirs.delete(`${domid}/${v.devid}`);
    }
    const disks = [...this.disks.values()].filter((d) => d.domid === domid);
    for (const d of disks) this.disks.delete(`${domid}/${d.devid}`);
    if (d0 === undefined || domid === 0) return;
    // libxl__devices_destroy: the backends let go of the guest's rings (else it stays a zombie).
    for (const v of vifs) await d0.removeDeviceDirs({ type: 'vif', frontDom: asDomId(domid), backDom: asDomId(v.backendDomid), devid: v.devid });
    await d0.release(domid);
    await d0.xsRm(`/local/domain/${domid}`);
    // Physical disks: their controllers go once blkback has let go of them.
    for (const d of disks) await this.unplugDiskDevice(domid, d.devid);
  }

  /**
   * [domainConfigs] is every running domain's configuration as `xl list -l`
   * prints it (libxl_domain_config JSON), from what the toolstack created.
   */
  domainConfigs(): { domid: number; config: LibxlDomainConfigJson }[] {
    return [...this.domains.values()].sort((a, b) => a.domid - b.domid).map((h) => {
      const spec = this.specs.get(h.domid);
      return {
        domid: h.domid,
        config: libxlConfigOf({
          name: h.name, memoryKiB: spec?.memoryKiB ?? 0, model: spec?.model ?? 'pm', onCrash: spec?.onCrash ?? 'destroy',
          disks: [...this.disks.values()].filter((d) => d.domid === h.domid).map((d) => ({ ...d.attach, physical: d.attach.device !== undefined })),
          nics: this.vifsOf(h.domid).map((v) => ({ devid: v.devid, backendDomid: v.backendDomid, mac: v.mac, bridge: v.bridge, mtu: v.mtu, ...(v.ip !== undefined ? { ip: v.ip } : {}), ...(v.rateKey !== undefined ? { rateKey: v.rateKey } : {}) })),
        }),
      };
    });
  }

  domain(domid: number): DomainHandle | undefined { return this.domains.get(domid); }
  get domainList(): DomainHandle[] { return [...this.domains.values()]; }

  private stopping = new Set<number>();

  /** A worker that exits without being asked to is a crashed domain. */
  private async onExit(h: DomainHandle, code: number, error: string): Promise<void> {
    if (this.stopping.has(h.domid) || this.domains.get(h.domid) !== h) return;
    h.crashed = true;
    const spec = this.specs.get(h.domid);
    const action = spec?.onCrash ?? 'destroy';
    this.crashes.push({ domid: h.domid, name: h.name, error: error || `exit code ${code}`, action });
    await this.hv.crash(h.domid);
    if (action === 'preserve') return;
    this.domains.delete(h.domid);
    await this.release(h.domid);
    await this.hv.destroyDomain(h.domid);
    if (action === 'restart' && spec !== undefined) {
      const { domid: _d, ...again } = spec;
      await this.createDomain(again);
    }
  }

  /** [destroyDomain domid] stops the domain's worker, then tears it down in Xen (it may stay a zombie). */
  async destroyDomain(domid: number): Promise<'destroyed' | 'zombie'> {
    const h = this.domains.get(domid);
    if (h !== undefined) {
      this.stopping.add(domid);
      this.domains.delete(domid);
      await h.worker.terminate();
      this.stopping.delete(domid);
    }
    await this.release(domid);
    const r = await this.hv.destroyDomain(domid);
    if (!r.ok) throw new Error(r.error);
    return r.value;
  }

  private readonly shutdownHooks: (() => Promise<void>)[] = [];
  /** [onShutdown fn] runs fn first when the machine shuts down (device hosts stop their workers). */
  onShutdown(fn: () => Promise<void>): void { this.shutdownHooks.push(fn); }

  /** Stops every worker and the hypervisor. */
  async shutdown(): Promise<void> {
    for (const fn of this.shutdownHooks.splice(0)) await fn();
    for (const h of [...this.domains.values()]) {
      this.stopping.add(h.domid);
      await h.worker.terminate();
    }
    this.domains.clear();
    await this.hv.stop();
    await Promise.race([new Promise((r) => this.hvWorker.once('exit', r)), new Promise((r) => setTimeout(r, 2000))]);
    await this.hvWorker.terminate();
  }
}
