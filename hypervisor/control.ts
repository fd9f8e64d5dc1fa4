/**
 * The hypervisor's control-plane API, served over comlink to the toolstack
 * (the orchestrator): domain lifecycle, reconciliation, statistics. Payload
 * data never travels this way.
 */
import type { CreateDomainRequest, DomainBootInfo, Hypervisor, ReconcileReport } from './hypervisor.ts';
import type { HypercallServer } from './hypercall-server.ts';
import type { AddDeviceRequest, DeviceInfo } from './iommu.ts';

export interface DomainSummary {
  readonly domid: number;
  readonly name: string;
  readonly state: string;
  readonly model: string;
  readonly pages: number;
  readonly ownedFrames: number;
  readonly grantFrames: number;
  readonly activeGrants: number;
  readonly maptrackInUse: number;
  readonly openPorts: number;
}

export type ControlResult<T> = { ok: true; value: T } | { ok: false; error: string };

export class HypervisorControl {
  constructor(private readonly hv: Hypervisor, private readonly server: HypercallServer) {}

  createDomain(req: CreateDomainRequest): ControlResult<DomainBootInfo> {
    const r = this.hv.createDomain(req);
    if (r.ok) return { ok: true, value: r.value };
    const e = r.error;
    const msg = e.kind === 'bad-config' ? e.message
      : e.kind === 'domid-in-use' ? `domid ${e.domid} is in use`
      : e.kind === 'no-free-slot' ? `no free domain slot (${e.slots} in use)`
      : `out of memory: wanted ${e.wanted} frames, ${e.free} free`;
    return { ok: false, error: msg };
  }
  destroyDomain(domid: number): ControlResult<'destroyed' | 'zombie'> {
    const r = this.hv.destroyDomain(domid);
    return r.ok ? { ok: true, value: r.value } : { ok: false, error: `no such domain: ${domid}` };
  }
  crash(domid: number): boolean { return this.hv.crash(domid); }
  shutdown(domid: number): boolean { return this.hv.shutdown(domid); }
  pause(domid: number): boolean { return this.hv.pause(domid).ok; }
  unpause(domid: number): boolean { return this.hv.unpause(domid).ok; }
  reconcile(): ReconcileReport { return this.hv.reconcile(); }
  freeFrames(): number { return this.hv.allocator.freeCount; }
  domains(): DomainSummary[] {
    return [...this.hv.domains.values()].map((d) => ({
      domid: d.domid, name: d.name, state: d.state, model: d.model, pages: d.spec.pages, ownedFrames: d.owned.size,
      grantFrames: d.grantFrames.length, activeGrants: d.active.size, maptrackInUse: d.maptrackInUse,
      openPorts: d.ports.filter((p) => p.state !== 0).length,
    }));
  }
  counters(): { hypercalls: number; byOp: Record<number, number> } {
    return { hypercalls: this.hv.counters.hypercalls, byOp: Object.fromEntries(this.hv.counters.byOp) };
  }
  /** The frame table entry of one frame (for tests and tools). */
  frameInfo(mfn: number): { owner: number; type: number; mapcount: number; m2p: number } {
    return this.hv.frameTable.info(mfn as never);
  }
  /** Plugs a DMA-capable device into the IOMMU for its owner (the domain that drives it). */
  addDevice(req: AddDeviceRequest): ControlResult<DeviceInfo> {
    const r = this.hv.iommu.addDevice(req);
    return r.ok ? { ok: true, value: r.value } : { ok: false, error: r.error };
  }
  removeDevice(id: number): boolean { return this.hv.iommu.removeDevice(id); }
  devices(): DeviceInfo[] { return this.hv.iommu.list(); }
  stop(): void { this.server.stop(); }
}
