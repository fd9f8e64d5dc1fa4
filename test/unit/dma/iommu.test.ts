import { expect } from 'chai';
import { createDmaApi } from '../../../dom0/dma/create-dma.ts';
import { describeDmaError } from '../../../dom0/dma/dma-api.ts';
import { mapGrantsForDma } from '../../../dom0/dma/grant-dma.ts';
import type { IommuDma } from '../../../dom0/dma/iommu-dma.ts';
import { IovaAllocator } from '../../../dom0/dma/iova.ts';
import { XEN_ERRNO } from '../../../shared/abi/xen.ts';
import { unwrap } from '../../../shared/result.ts';
import type { BusAddr, DomId } from '../../../shared/types.ts';
import { consecutivePages, cpuRead, cpuWrite, deviceRead, deviceWrite, dmaWorld, must, pattern } from './helpers.ts';

function iommu(opts: { lazy?: boolean; flushQueuePages?: number } = {}) {
  const w = dmaWorld('vp');
  const { info, view } = w.addDevice('explicit', { lazy: opts.lazy, lazyBatch: 100_000 });
  const r = createDmaApi(w.dom0, info, { kind: 'iommu', flushQueuePages: opts.flushQueuePages });
  if (!r.ok) throw new Error(describeDmaError(r.error));
  return { w, dma: r.value as IommuDma, view, info };
}

describe('iommu DMA: faults on unmapped and read-only bus addresses, touching no memory', () => {
  it('faults a device access to a bus address nobody mapped', () => {
    const { view } = iommu();
    const r = view.dmaWrite((1 << 20) as BusAddr, pattern(64, 1));
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error).to.deep.include({ reason: 'not-mapped', write: true });
    expect(view.counters().faults).to.equal(1);
  });

  it('faults a DMA running off the end of a mapping before writing any of it', () => {
    const { w, dma, view } = iommu();
    const p = w.dom0.ram.alloc();
    const before = pattern(4096, 2);
    cpuWrite(w.dom0, p, 0, before);
    const m = unwrap(dma.mapBuffer([{ pfn: p, offset: 0, len: 4096 }], 'from-device'), 'map');
    // One page mapped; the device writes two.
    const r = view.dmaWrite(m.segments[0]!.bus, pattern(8192, 3));
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error.reason).to.equal('not-mapped');
    expect(cpuRead(w.dom0, p, 0, 4096)).to.deep.equal(before);
  });

  it('faults a device write to a page mapped for to-device DMA (read-only), leaving it as it was', () => {
    const { w, dma, view } = iommu();
    const p = w.dom0.ram.alloc();
    const before = pattern(4096, 4);
    cpuWrite(w.dom0, p, 0, before);
    const m = unwrap(dma.mapBuffer([{ pfn: p, offset: 0, len: 4096 }], 'to-device'), 'map');
    expect(must(deviceRead(view, m))).to.deep.equal(before);
    const r = deviceWrite(view, m, pattern(4096, 5));
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error).to.deep.include({ reason: 'read-only', write: true, bus: m.segments[0]!.bus });
    expect(cpuRead(w.dom0, p, 0, 4096)).to.deep.equal(before);
    expect(view.counters().faults).to.equal(1);
  });

  it("refuses (EPERM from Xen) to map a read-only grant for a device to write, leaving nothing mapped", () => {
    const { w, dma, view } = iommu();
    const g = w.domU.ram.alloc();
    const ref = w.domU.gnttab.grantForeignAccess(0 as DomId, g, true)!;
    const [f] = unwrap(mapGrantsForDma(w.dom0, [{ domid: w.domU.domid, ref, readonly: true }]), 'grant');
    const mine = w.dom0.ram.alloc();
    const r = dma.mapBuffer([{ pfn: mine, offset: 0, len: 4096 }, { pfn: f!.pfn, offset: 0, len: 4096 }], 'from-device');
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error).to.deep.include({ kind: 'hypercall-failed', errno: -XEN_ERRNO.EPERM, pfn: f!.pfn });
    // The entry Xen installed for our own page was taken out again.
    const c = view.counters();
    expect(c.maps).to.equal(c.unmaps);
    const ok = unwrap(dma.mapBuffer([{ pfn: f!.pfn, offset: 0, len: 4096 }], 'to-device'), 'map ro for reading');
    expect(ok.segments).to.have.length(1);
  });
});

describe('iommu DMA: strict and lazy IOTLB invalidation', () => {
  it('strict: a device access right after unmap faults, with no stale IOTLB hit', () => {
    const { w, dma, view } = iommu({ lazy: false });
    const p = w.dom0.ram.alloc();
    const m = unwrap(dma.mapBuffer([{ pfn: p, offset: 0, len: 4096 }], 'from-device'), 'map');
    must(deviceWrite(view, m, pattern(4096, 6)));
    unwrap(dma.unmap(m), 'unmap');
    const r = deviceWrite(view, m, pattern(4096, 7));
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error.reason).to.equal('not-mapped');
    expect(view.counters().staleHits).to.equal(0);
    expect(cpuRead(w.dom0, p, 0, 4096)).to.deep.equal(pattern(4096, 6));
  });

  it('lazy: the device still hits the stale IOTLB entry after unmap until the flush, and the IOVA is not reused before it', () => {
    const { w, dma, view } = iommu({ lazy: true, flushQueuePages: 1000 });
    const p = w.dom0.ram.alloc();
    const m = unwrap(dma.mapBuffer([{ pfn: p, offset: 0, len: 4096 }], 'from-device'), 'map');
    must(deviceWrite(view, m, pattern(4096, 8)));
    unwrap(dma.unmap(m), 'unmap');
    expect(dma.flushQueueLength).to.equal(1);
    // The stale entry still works — the hazard lazy invalidation accepts.
    must(deviceWrite(view, m, pattern(4096, 9)));
    expect(view.counters().staleHits).to.equal(1);
    expect(cpuRead(w.dom0, p, 0, 4096)).to.deep.equal(pattern(4096, 9));
    // A new mapping gets another IOVA while the old one waits for the flush.
    const q = w.dom0.ram.alloc();
    const m2 = unwrap(dma.mapBuffer([{ pfn: q, offset: 0, len: 4096 }], 'from-device'), 'map 2');
    expect(m2.segments[0]!.bus).to.not.equal(m.segments[0]!.bus);
    dma.flush();
    const r = deviceWrite(view, m, pattern(4096, 10));
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error.reason).to.equal('not-mapped');
    expect(view.counters().staleHits).to.equal(1);
    expect(dma.counters().iommuFlushes).to.equal(1);
  });

  it('lazy: drains its flush queue with one IOMMUOP_flush per flushQueuePages unmapped pages', () => {
    const { w, dma } = iommu({ lazy: true, flushQueuePages: 32 });
    const p = consecutivePages(w.dom0, 4);
    for (let i = 0; i < 20; i++) unwrap(dma.unmap(unwrap(dma.mapBuffer([{ pfn: p[0]!, offset: 0, len: 4 * 4096 }], 'to-device'), 'map')), 'unmap');
    const c = dma.counters();
    expect(c.iommuFlushes).to.equal(Math.floor((20 * 4) / 32));
    expect(c.hypercalls - 1).to.equal(40 + c.iommuFlushes); // 1 query, then map + unmap per I/O, plus the flushes
  });
});

describe('IOVA allocation', () => {
  it('hands out aligned blocks, never page 0, and merges freed buddies back', () => {
    const a = new IovaAllocator(1, 64);
    expect(a.freePages).to.equal(63);
    const x = a.alloc(4)!;
    const y = a.alloc(3)!;
    const z = a.alloc(1)!;
    for (const [s, n] of [[x, 4], [y, 4], [z, 1]] as const) expect(s % n).to.equal(0);
    expect([x, y, z]).to.not.include(0);
    a.release(x, 4); a.release(y, 3); a.release(z, 1);
    expect(a.freePages).to.equal(63);
    // A freed block is reused as it is (the size cache)…
    expect(a.alloc(4)).to.equal(y);
    a.release(y, 4);
    // …and drained back into the buddy lists when a larger block is needed.
    expect(a.alloc(32)).to.equal(32);
    expect(a.alloc(64)).to.equal(undefined);
    // Top-down: a fresh space hands out its highest pages first.
    expect(new IovaAllocator(1, 64).alloc(1)).to.equal(63);
    expect(new IovaAllocator(1, 64).alloc(4)).to.equal(60);
  });
});

describe('a device whose owner dies', () => {
  it('is cut off at once (every DMA faults) but keeps its block until the toolstack removes it', () => {
    const w = dmaWorld('vp');
    const { info, view } = w.addDevice('passthrough', { owner: w.domU.domid });
    const p = w.domU.ram.alloc();
    expect(view.dmaRead((w.domU.mem.translatePfn(p, false) as number) as BusAddr, new Uint8Array(1)).ok).to.equal(true);
    unwrap(w.m.hv.destroyDomain(w.domU.domid) as never);
    const r = view.dmaRead(0 as BusAddr, new Uint8Array(1));
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error.reason).to.equal('device-removed');
    // Still listed (owner -1), its block still Xen's: a device model that is still running writes only there.
    const listed = w.m.hv.iommu.list().find((d) => d.id === info.id);
    expect(listed?.owner).to.equal(-1);
    expect(w.m.hv.frameTable.owner(w.m.mem.frameOf(info.blockAddr as never))).to.equal(0x7ff2);
    expect(w.m.hv.iommu.removeDevice(info.id)).to.equal(true);
    expect(w.m.hv.iommu.list().find((d) => d.id === info.id)).to.equal(undefined);
  });
});
