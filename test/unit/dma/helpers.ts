/**
 * Shared set-up for the DMA unit tests: a one-thread machine with dom0 in a
 * chosen memory model, a guest, devices plugged into the IOMMU, and a "device"
 * that moves bytes at bus segments through IommuView (what hardware would do).
 */
import type { MemoryModel } from '../../../shared/abi/machine.ts';
import type { IommuMode } from '../../../shared/abi/iommu.ts';
import type { DeviceInfo } from '../../../hypervisor/iommu.ts';
import type { DomainKernel } from '../../../shared/kernel/kernel.ts';
import { IommuView, describeIommuFault, type IommuFault } from '../../../shared/dma/iommu-view.ts';
import { MachineLayout } from '../../../shared/machine-layout.ts';
import { type Result, err, ok } from '../../../shared/result.ts';
import type { DmaMapping } from '../../../dom0/dma/dma-api.ts';
import type { GuestAddr, Pfn } from '../../../shared/types.ts';
import { testMachine, type TestMachine } from '../../helpers/machine.ts';

export interface DmaWorld {
  readonly m: TestMachine;
  readonly dom0: DomainKernel;
  readonly domU: DomainKernel;
  readonly layout: MachineLayout;
  addDevice(mode: IommuMode, opts?: { dmaMaskBits?: number; lazy?: boolean; lazyBatch?: number; owner?: number }): { info: DeviceInfo; view: IommuView };
}

export function dmaWorld(model: MemoryModel, opts: { memBytes?: number; dom0KiB?: number } = {}): DmaWorld {
  const m = testMachine(opts.memBytes ?? (48 << 20));
  const dom0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: opts.dom0KiB ?? 12 * 1024, model, privileged: true });
  const domU = m.domain({ name: 'guest', memoryKiB: 4 * 1024, model: 'vp' });
  const layout = new MachineLayout(m.mem);
  let n = 0;
  return {
    m, dom0, domU, layout,
    addDevice(mode, o = {}) {
      const r = m.hv.iommu.addDevice({ name: `dev${n++}`, owner: o.owner ?? dom0.domid, mode, dmaMaskBits: o.dmaMaskBits, lazy: o.lazy, lazyBatch: o.lazyBatch });
      if (!r.ok) throw new Error(r.error);
      return { info: r.value, view: new IommuView(layout, r.value.blockAddr) };
    },
  };
}

/** A deterministic pattern of len bytes (seeded). */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    b[i] = s & 0xff;
  }
  return b;
}

/** The device writes data across the mapping's bus segments, in order. */
export function deviceWrite(view: IommuView, m: DmaMapping, data: Uint8Array): Result<void, IommuFault> {
  let off = 0;
  for (const s of m.segments) {
    const r = view.dmaWrite(s.bus, data, off, s.len);
    if (!r.ok) return r;
    off += s.len;
  }
  return off === data.length ? ok(undefined) : err({ kind: 'iommu-fault', device: view.device, bus: -1, write: true, reason: 'not-mapped' });
}

/** The device reads the mapping's bus segments, in order. */
export function deviceRead(view: IommuView, m: DmaMapping): Result<Uint8Array, IommuFault> {
  const out = new Uint8Array(m.bytes);
  let off = 0;
  for (const s of m.segments) {
    const r = view.dmaRead(s.bus, out, off, s.len);
    if (!r.ok) return r;
    off += s.len;
  }
  return ok(out);
}

export function must<T>(r: Result<T, IommuFault>): T {
  if (!r.ok) throw new Error(describeIommuFault(r.error));
  return r.value;
}

/** Reads len bytes of k's memory at pfn+off through its MMU. */
export function cpuRead(k: DomainKernel, pfn: number, off: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  k.mem.copyOut((pfn * k.pageSize + off) as GuestAddr, b);
  return b;
}
export function cpuWrite(k: DomainKernel, pfn: number, off: number, data: Uint8Array): void {
  k.mem.copyIn((pfn * k.pageSize + off) as GuestAddr, data);
}

/** n consecutive RAM pfns of k (the pool hands them out low first). */
export function consecutivePages(k: DomainKernel, n: number): Pfn[] {
  const got: Pfn[] = [];
  for (let i = 0; i < n; i++) got.push(k.ram.alloc());
  for (let i = 1; i < n; i++) if (got[i] !== (got[i - 1] as number) + 1) throw new Error('pages are not consecutive');
  return got;
}
