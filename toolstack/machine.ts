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
import type { DomUAgent } from '../domU/agent.ts';
import type { KernelOptions } from '../shared/kernel/kernel.ts';
import type { DomainWorkerData, DriverOptions } from './worker-data.ts';
import { vdevToDevid } from '../cli/config/vdev.ts';
import { asDomId } from '../shared/types.ts';

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
export interface DiskAttach {
  /** xvda, hdb, sdc, … (xen-vbd-interface numbering). */
  readonly vdev: string;
  /** `ram:SIZE` for an in-memory disk, or an absolute path to a raw image. */
  readonly target: string;
  readonly access?: 'r' | 'w';
  readonly devtype?: 'disk' | 'cdrom';
  /** Bytes to create an image file with when it does not exist yet. */
  readonly size?: number;
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
    const { onCrash: _c, kernel, entry, kind: givenKind, drivers, ...req } = opts;
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
    const r = await d0.createDeviceDirs({
      type: 'vbd', frontDom: asDomId(domid), backDom: asDomId(0), devid,
      backendKeys: {
        params: disk.target, mode, 'device-type': devtype, type: disk.target.startsWith('ram:') ? 'ram' : 'file',
        removable: devtype === 'cdrom' ? '1' : '0', dev: disk.vdev, ...(disk.size !== undefined ? { size: String(disk.size) } : {}),
      },
      frontendKeys: { 'virtual-device': String(devid), 'device-type': devtype },
    });
    check(r, `attach ${disk.vdev} to d${domid}`);
    return devid;
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
  }

  private async release(domid: number): Promise<void> {
    const d0 = this.dom0;
    if (d0 === undefined || domid === 0) return;
    await d0.release(domid);
    await d0.xsRm(`/local/domain/${domid}`);
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
