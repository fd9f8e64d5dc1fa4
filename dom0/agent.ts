/**
 * dom0's agent: the generic guest agent plus dom0's services — xenstored,
 * its socket, and introducing/releasing guests — for the toolstack, and the
 * backends' views: blkback's counters per vbd, netback's per vif (xentop's
 * NETTX/NETRX and our per-packet costs), the bridges' port counters, and
 * pcap captures of a vif or a bridge (tcpdump -i vif1.0 / -i xenbr0 -w FILE).
 */
import { GuestAgent, type AgentResult } from '../shared/kernel/agent.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import type { Dom0Services } from './dom0.ts';
import { XsLocalClient } from './xenstore/local-client.ts';
import { domainDirs, createDeviceDirs, initiateDeviceRemove, removeDeviceDirs, type DeviceDirsSpec } from '../toolstack/devices.ts';
import type { XenbusDeviceId } from '../shared/xenbus/paths.ts';
import { asDomId } from '../shared/types.ts';
import type { BlkbackDriver } from './blkback/xenbus.ts';
import type { BlkbackCounters } from './blkback/blkback.ts';
import type { Dom0Network } from './netback/start.ts';
import type { VifCounters } from './netback/common.ts';
import type { BridgeCounters, BridgePortCounters, Bridge } from './net/bridge.ts';
import { PacketCapture } from './net/capture.ts';
import { parseVifName } from './net/vif.ts';
import type { NetStats } from '../cli/views/stats.ts';
import { fileSink, type PcapPrecision } from '../shared/net/pcap.ts';
import type { DeviceInfo } from '../hypervisor/iommu.ts';
import { createDmaApi, type DmaConfig } from './dma/create-dma.ts';
import { describeDmaError, type DmaCounters } from './dma/dma-api.ts';
import { NicPort, describeNicPortError, type NicPortCounters, type NicPortOptions } from './net/nic-port.ts';
import { attachVbdDmaDisk, dmaDiskStats } from './vbd.ts';
import type { DiskDriverOptions } from './dma/disk-driver.ts';

/** One netback interface (vif<domid>.<devid>) as dom0 sees it. */
export interface VifStatsRow {
  readonly name: string;
  readonly frontDom: number;
  readonly devid: number;
  readonly connected: boolean;
  /** The frontend broke the protocol and the vif was disabled (Linux xenvif_fatal_tx_err). */
  readonly disabled: boolean;
  readonly fatalReason?: string;
  readonly numQueues: number;
  /** Packets waiting for the guest to post RX buffers. */
  readonly rxQueued: number;
  /** Guest TX slots held (mapped or copied, not yet answered). */
  readonly txInflight: number;
  /** The credit limit (`rate`), if any. */
  readonly rate?: { readonly bytesPerInterval: number; readonly intervalUs: number };
  readonly counters: Readonly<VifCounters>;
  /** xentop's view (NETTX = what the guest sent), as /proc/net/dev of vifD.N gives it. */
  readonly xentop: NetStats;
}

export interface BridgeStats {
  readonly name: string;
  readonly counters: Readonly<BridgeCounters>;
  readonly ports: { readonly name: string; readonly counters: Readonly<BridgePortCounters> }[];
  /** The learned table, `brctl showmacs`: MAC → port. */
  readonly macs: Readonly<Record<string, string>>;
}

/** How dom0 drives a NIC as a bridge port (nicAttach). */
export interface NicAttachOptions extends Omit<NicPortOptions, 'queueDma'> {
  /** The bridge to plug the NIC into (default xenbr0); it must exist. */
  readonly bridge?: string;
  /** dom0's DMA API for the NIC's buffers (direct, p2m, xlate, iommu, swiotlb; legacy is the bug). */
  readonly dma: DmaConfig;
  /** Where the rings come from, when it is not `dma` (a legacy driver with right rings, wrong buffers). */
  readonly queueDma?: DmaConfig;
}

/** One NIC port dom0 drives, as nicStats shows it. */
export interface NicPortStats {
  readonly name: string;
  readonly bridge: string;
  readonly mac: string;
  readonly device: string;
  readonly dma: { readonly kind: string; readonly counters: DmaCounters };
  readonly counters: NicPortCounters;
  /** The bridge's counters of this port. */
  readonly port: Readonly<BridgePortCounters> | undefined;
}

export interface CaptureStartOptions {
  readonly snaplen?: number;
  /** Default 'us' (what every tool reads). */
  readonly precision?: PcapPrecision;
  /** For a port: frames into the bridge from it ('in'), out of it ('out'), or both (default). */
  readonly direction?: 'in' | 'out' | 'both';
}

export interface CaptureResult {
  readonly path: string;
  readonly packets: number;
  /** Records that could not be written. */
  readonly errors: number;
}

const copyOf = <T extends object>(c: T | undefined): T | undefined => (c === undefined ? undefined : { ...c });

function xs<T>(r: { ok: true; value: T } | { ok: false; error: unknown }): AgentResult<T> {
  return r.ok ? { ok: true, value: r.value } : { ok: false, error: typeof r.error === 'object' ? JSON.stringify(r.error) : String(r.error) };
}

export class Dom0Agent extends GuestAgent {
  private readonly xs: XsLocalClient;
  private readonly captures = new Map<number, { path: string; capture: PacketCapture }>();
  private nextCapture = 1;
  private readonly nics = new Map<string, NicPort>();
  /** Capture timestamps: the wall clock at start plus the monotonic clock since (strictly ordered). */
  private readonly wall0Ns = BigInt(Date.now()) * 1_000_000n;
  private readonly mono0Ns = process.hrtime.bigint();

  constructor(k: DomainKernel, private readonly svc: Dom0Services, private readonly vbd?: BlkbackDriver, protected net?: Dom0Network) {
    super(k);
    this.xs = new XsLocalClient(svc.xenstored, 0);
  }

  listen(path: string): Promise<AgentResult<string>> { return this.svc.listen(path).then(xs); }
  socketPath(): string | undefined { return this.svc.socketPath; }
  introduce(domid: number, ref: number, port: number): AgentResult<void> { return xs(this.svc.introduce(domid, ref, port)); }
  release(domid: number): void { this.svc.release(domid); }
  introduced(): number[] { return this.svc.introducedDomains(); }

  /** The toolstack's domain home (/local/domain/<id>), laid out as libxl does. */
  async domainDirs(domid: number, name: string): Promise<AgentResult<void>> { return xs(await domainDirs(this.xs, asDomId(domid), name)); }
  async createDeviceDirs(spec: DeviceDirsSpec): Promise<AgentResult<void>> { return xs(await createDeviceDirs(this.xs, spec)); }
  async initiateDeviceRemove(id: XenbusDeviceId): Promise<AgentResult<void>> { return xs(await initiateDeviceRemove(this.xs, id)); }
  async removeDeviceDirs(id: XenbusDeviceId): Promise<AgentResult<void>> { return xs(await removeDeviceDirs(this.xs, id)); }

  /**
   * [attachVbdDmaDisk device cfg opts] drives the DMA block controller the
   * toolstack plugged in for dom0 (DeviceHost.add, kind 'dma-disk') through
   * the DMA API cfg, for vbds whose params are `dma:<device.name>`: blkback
   * then moves their data by programming the controller with bus addresses.
   * Returns the controller's capacity in sectors.
   */
  attachVbdDmaDisk(device: DeviceInfo, cfg: DmaConfig, opts: Omit<DiskDriverOptions, 'queueDma'> = {}): AgentResult<number> {
    const r = attachVbdDmaDisk(this.k, device, cfg, opts);
    return r.ok ? r : { ok: false, error: r.error };
  }

  /** The DMA disks dom0 drives: which vbd each serves and its DMA API's counters (maps, bounces, hypercalls, ...). */
  vbdDmaStats(): { name: string; user: string | null; dma: DmaCounters }[] { return dmaDiskStats(this.k); }

  /** Block backends served here: xentop's VBD counters per device ("<frontDom>/<devid>"). */
  vbdStats(): { key: string; frontDom: number; devid: number; counters: BlkbackCounters }[] {
    return [...(this.vbd?.devices ?? new Map()).entries()].map(([key, dev]) => {
      const [f, d] = key.split('/').map(Number) as [number, number];
      return { key, frontDom: f, devid: d, counters: dev.snapshot() };
    });
  }

  async xsRead(path: string): Promise<AgentResult<string>> { return xs(await this.xs.readString(path)); }
  async xsWrite(path: string, value: string): Promise<AgentResult<void>> { return xs(await this.xs.write(path, value)); }
  async xsDirectory(path: string): Promise<AgentResult<string[]>> { return xs(await this.xs.directory(path)); }
  async xsRm(path: string): Promise<AgentResult<void>> { return xs(await this.xs.rm(path)); }
  async xsSetPerms(path: string, perms: string[]): Promise<AgentResult<void>> { return xs(await this.xs.setPerms(path, perms)); }
  async xsGetPerms(path: string): Promise<AgentResult<string[]>> { return xs(await this.xs.getPerms(path)); }

  // ---- network ----

  /** Every netback interface served here (or only domid's), in (domid, devid) order. */
  vifStats(domid?: number): VifStatsRow[] {
    const vifs = [...(this.net?.netback.vifs.values() ?? [])].filter((v) => domid === undefined || v.cfg.frontDom === domid);
    vifs.sort((a, b) => a.cfg.frontDom - b.cfg.frontDom || a.cfg.devid - b.cfg.devid);
    return vifs.map((v) => ({
      name: v.name, frontDom: v.cfg.frontDom, devid: v.cfg.devid, connected: v.connected, disabled: v.disabled,
      ...(v.fatalReason !== undefined ? { fatalReason: v.fatalReason } : {}), numQueues: v.numQueues,
      rxQueued: v.rxQueued, txInflight: v.txInflight,
      ...(v.rate !== undefined ? { rate: { bytesPerInterval: v.rate.bytesPerInterval, intervalUs: v.rate.intervalUs } } : {}),
      counters: { ...v.counters }, xentop: v.netStats(),
    }));
  }

  /** [netStats domid] is xentop's per-vif counters of domid, in devid order. */
  netStats(domid: number): NetStats[] { return this.net?.netback.netStats(domid) ?? []; }

  /** dom0's bridges with their port counters and learned MACs. */
  bridgeStats(): BridgeStats[] {
    const set = this.net?.bridges;
    if (set === undefined) return [];
    return set.names.map((n) => {
      const b = set.get(n) as Bridge;
      return {
        name: n, counters: { ...b.counters },
        ports: b.portNames.map((p) => ({ name: p, counters: { ...(b.portCounters(p) as BridgePortCounters) } })),
        macs: Object.fromEntries(b.macs()),
      };
    });
  }

  /**
   * [captureStart target path opts] starts writing a classic pcap file at
   * path of every frame crossing target: a bridge ("xenbr0", everything it
   * forwards) or a vif ("vif1.0", its port on its bridge). Returns the
   * capture's id for captureStop.
   */
  captureStart(target: string, path: string, opts: CaptureStartOptions = {}): AgentResult<number> {
    const net = this.net;
    if (net === undefined) return { ok: false, error: 'this domain runs no netback' };
    let bridge = net.bridges.get(target);
    let port: string | undefined;
    if (bridge === undefined) {
      if (parseVifName(target) === undefined && !this.nics.has(target)) return { ok: false, error: `${target}: no such bridge, vif or NIC` };
      bridge = net.bridges.names.map((n) => net.bridges.get(n) as Bridge).find((b) => b.portNames.includes(target));
      if (bridge === undefined) return { ok: false, error: `${target} is not plugged into any bridge` };
      port = target;
    }
    let capture: PacketCapture;
    try {
      const clock = (): bigint => this.wall0Ns + (process.hrtime.bigint() - this.mono0Ns);
      capture = PacketCapture.onBridge(bridge, net.pool, fileSink(path), clock, port, {
        ...(opts.snaplen !== undefined ? { snaplen: opts.snaplen } : {}), ...(opts.precision !== undefined ? { precision: opts.precision } : {}),
        ...(opts.direction !== undefined ? { direction: opts.direction } : {}),
      });
    } catch (e) {
      return { ok: false, error: `cannot capture ${target} to ${path}: ${e instanceof Error ? e.message : String(e)}` };
    }
    const id = this.nextCapture++;
    this.captures.set(id, { path, capture });
    return { ok: true, value: id };
  }

  /** [captureStop id] stops the capture and closes its file. */
  async captureStop(id: number): Promise<AgentResult<CaptureResult>> {
    const c = this.captures.get(id);
    if (c === undefined) return { ok: false, error: `no capture ${id}` };
    this.captures.delete(id);
    await c.capture.close();
    return { ok: true, value: { path: c.path, packets: c.capture.packets, errors: c.capture.errors } };
  }

  // ---- physical NICs ----

  /**
   * [nicAttach device opts] drives the NIC the toolstack plugged in for dom0
   * (DeviceHost.add with owner 0) through the DMA API opts.dma, and plugs it
   * into opts.bridge as a port (brctl addif xenbr0 eth0). Returns the port's name.
   */
  nicAttach(device: DeviceInfo, opts: NicAttachOptions): AgentResult<string> {
    const net = this.net;
    if (net === undefined) return { ok: false, error: 'this domain runs no network (netback and bridges)' };
    const bridgeName = opts.bridge ?? 'xenbr0';
    const bridge = net.bridges.get(bridgeName);
    if (bridge === undefined) return { ok: false, error: `no bridge named ${bridgeName}` };
    const dma = createDmaApi(this.k, device, opts.dma);
    if (!dma.ok) return { ok: false, error: describeDmaError(dma.error) };
    let queueDma = dma.value;
    if (opts.queueDma !== undefined) {
      const q = createDmaApi(this.k, device, opts.queueDma);
      if (!q.ok) return { ok: false, error: describeDmaError(q.error) };
      queueDma = q.value;
    }
    const { bridge: _b, dma: _d, queueDma: _q, ...portOpts } = opts;
    const name = portOpts.name ?? `eth${this.nics.size}`;
    if (this.nics.has(name)) return { ok: false, error: `dom0 already drives a NIC named ${name}` };
    const p = NicPort.attach(this.k, dma.value, bridge, net.pool, net.loop, { ...portOpts, name, queueDma });
    if (!p.ok) return { ok: false, error: describeNicPortError(p.error) };
    this.nics.set(name, p.value);
    return { ok: true, value: name };
  }

  /** Every NIC port dom0 drives: its driver's, its DMA API's and its bridge port's counters. */
  nicStats(): NicPortStats[] {
    return [...this.nics.entries()].map(([name, p]) => ({
      name, bridge: p.bridge?.name ?? '', mac: p.mac, device: p.dma.device.name,
      dma: { kind: p.dma.kind, counters: p.dma.counters() }, counters: p.counters(),
      port: copyOf(p.bridge?.portCounters(name)),
    }));
  }

  /** [nicDetach name] takes the NIC port out of its bridge and stops driving the NIC (its buffers unmapped). */
  nicDetach(name: string): AgentResult<void> {
    const p = this.nics.get(name);
    if (p === undefined) return { ok: false, error: `dom0 drives no NIC named ${name}` };
    p.detach();
    this.nics.delete(name);
    return { ok: true, value: undefined };
  }
}
