import { expect } from 'chai';
import { createDmaApi } from '../../../dom0/dma/create-dma.ts';
import { describeDmaError, type DmaApi } from '../../../dom0/dma/dma-api.ts';
import { createContiguousRegion } from '../../../dom0/dma/frames.ts';
import type { SwiotlbDma } from '../../../dom0/dma/swiotlb.ts';
import { unwrap } from '../../../shared/result.ts';
import type { Pfn } from '../../../shared/types.ts';
import { consecutivePages, cpuRead, cpuWrite, deviceRead, deviceWrite, dmaWorld, must, pattern } from './helpers.ts';

function swiotlb(model: 'pm' | 'p2m' | 'vp', opts: { dmaMaskBits?: number; forceBounce?: boolean; poolPages?: number; memBytes?: number } = {}) {
  const w = dmaWorld(model, { memBytes: opts.memBytes });
  const { info, view } = w.addDevice('passthrough', { dmaMaskBits: opts.dmaMaskBits });
  const r = createDmaApi(w.dom0, info, { kind: 'swiotlb', poolPages: opts.poolPages ?? 64, segmentPages: 16, forceBounce: opts.forceBounce });
  if (!r.ok) throw new Error(describeDmaError(r.error));
  return { w, dma: r.value as DmaApi & SwiotlbDma, view };
}

/** Two consecutive pfns of a PV dom0 whose machine frames are not consecutive. */
function straddlingPair(k: ReturnType<typeof dmaWorld>['dom0']): Pfn[] {
  for (;;) {
    const p = consecutivePages(k, 2);
    if (k.frameOf(p[1]!) !== k.frameOf(p[0]!) + 1) return p;
  }
}

describe('swiotlb: bouncing exactly when swiotlb-xen would', () => {
  it('does not bounce a piece within one page below the mask', () => {
    const { w, dma } = swiotlb('p2m');
    const p = w.dom0.ram.alloc();
    const m1 = unwrap(dma.mapBuffer([{ pfn: p, offset: 0, len: 4096 }], 'from-device'), 'map');
    const m2 = unwrap(dma.mapBuffer([{ pfn: p, offset: 100, len: 200 }], 'to-device'), 'map');
    expect(m1.segments).to.deep.equal([{ bus: w.dom0.frameOf(p) * 4096, len: 4096 }]);
    expect(m2.segments).to.deep.equal([{ bus: w.dom0.frameOf(p) * 4096 + 100, len: 200 }]);
    expect(dma.counters().bounces).to.equal(0);
    expect(dma.counters().bouncedBytes).to.equal(0);
  });

  it('does not bounce pfn-contiguous pages that are machine-contiguous (made so by XENMEM_exchange)', () => {
    const { w, dma } = swiotlb('p2m');
    const p = consecutivePages(w.dom0, 4);
    unwrap(createContiguousRegion(w.dom0, p, 64), 'exchange');
    for (let i = 1; i < 4; i++) expect(w.dom0.frameOf(p[i]!)).to.equal(w.dom0.frameOf(p[0]!) + i);
    const m = unwrap(dma.mapBuffer([{ pfn: p[0]!, offset: 10, len: 4 * 4096 - 10 }], 'from-device'), 'map');
    expect(m.segments).to.deep.equal([{ bus: w.dom0.frameOf(p[0]!) * 4096 + 10, len: 4 * 4096 - 10 }]);
    expect(dma.counters().bounces).to.equal(0);
  });

  it('does not bounce pfn-contiguous pages of a P==M dom0, and bounces everything when forced', () => {
    const { w, dma } = swiotlb('pm');
    const p = consecutivePages(w.dom0, 3);
    const m = unwrap(dma.mapBuffer([{ pfn: p[0]!, offset: 0, len: 3 * 4096 }], 'to-device'), 'map');
    expect(m.segments).to.deep.equal([{ bus: p[0]! * 4096, len: 3 * 4096 }]);
    expect(dma.counters().bounces).to.equal(0);
    const f = swiotlb('pm', { forceBounce: true });
    const q = consecutivePages(f.w.dom0, 3);
    const mf = unwrap(f.dma.mapBuffer([{ pfn: q[0]!, offset: 0, len: 3 * 4096 }], 'to-device'), 'map');
    expect(mf.segments[0]!.bus).to.not.equal(q[0]! * 4096);
    expect(f.dma.counters().bouncedBytes).to.equal(3 * 4096);
  });

  it('bounces a piece that straddles non-contiguous machine frames, and counts its bytes', () => {
    const { w, dma, view } = swiotlb('p2m');
    const p = straddlingPair(w.dom0);
    const len = 4096 + 300;
    // from-device: the CPU sees the device's data only after unmap copies it back.
    const old = pattern(len, 9);
    cpuWrite(w.dom0, p[0]!, 1000, old);
    const m = unwrap(dma.mapBuffer([{ pfn: p[0]!, offset: 1000, len }], 'from-device'), 'map');
    expect(m.segments).to.have.length(1);
    const data = pattern(len, 10);
    must(deviceWrite(view, m, data));
    expect(cpuRead(w.dom0, p[0]!, 1000, len)).to.deep.equal(old);
    unwrap(dma.unmap(m), 'unmap');
    expect(cpuRead(w.dom0, p[0]!, 1000, len)).to.deep.equal(data);
    // to-device: the device reads the bounce slot, filled at map time.
    const out = pattern(len, 11);
    cpuWrite(w.dom0, p[0]!, 1000, out);
    const m2 = unwrap(dma.mapBuffer([{ pfn: p[0]!, offset: 1000, len }], 'to-device'), 'map');
    expect(must(deviceRead(view, m2))).to.deep.equal(out);
    unwrap(dma.unmap(m2), 'unmap');
    const c = dma.counters();
    expect(c.bounces).to.equal(2);
    expect(c.bouncedBytes).to.equal(2 * len);
    // Map copies in (both directions), unmap copies back (from-device only).
    expect(c.bounceCopyBytes).to.equal(3 * len);
    expect(dma.poolPagesInUse).to.equal(0);
  });

  it("bounces a page beyond the device's DMA mask into a pool made to sit below it", () => {
    const maskBits = 24; // 16 MiB: the pool must be exchanged below it
    const { w, dma, view } = swiotlb('p2m', { dmaMaskBits: maskBits, memBytes: 64 << 20 });
    let high: Pfn | undefined;
    let low: Pfn | undefined;
    while (high === undefined || low === undefined) {
      const p = w.dom0.ram.alloc();
      if (w.dom0.frameOf(p) * 4096 >= 2 ** maskBits) high ??= p;
      else low ??= p;
    }
    const ml = unwrap(dma.mapBuffer([{ pfn: low, offset: 0, len: 4096 }], 'from-device'), 'map low');
    expect(dma.counters().bounces).to.equal(0);
    expect(ml.segments[0]!.bus).to.equal(w.dom0.frameOf(low) * 4096);
    const mh = unwrap(dma.mapBuffer([{ pfn: high, offset: 0, len: 4096 }], 'from-device'), 'map high');
    expect(dma.counters().bounces).to.equal(1);
    expect(dma.counters().bouncedBytes).to.equal(4096);
    expect(mh.segments[0]!.bus + 4096).to.be.at.most(2 ** maskBits);
    const data = pattern(4096, 12);
    must(deviceWrite(view, mh, data));
    unwrap(dma.unmap(mh), 'unmap');
    expect(cpuRead(w.dom0, high, 0, 4096)).to.deep.equal(data);
    expect(view.counters().faults).to.equal(0);
  });

  it('keeps the original untouched until syncForCpu, and lets syncForDevice resend CPU changes', () => {
    const { w, dma, view } = swiotlb('p2m', { forceBounce: true });
    const p = w.dom0.ram.alloc();
    const m = unwrap(dma.mapBuffer([{ pfn: p, offset: 0, len: 512 }], 'bidirectional'), 'map');
    const d1 = pattern(512, 13);
    must(deviceWrite(view, m, d1));
    unwrap(dma.syncForCpu(m), 'sync cpu');
    expect(cpuRead(w.dom0, p, 0, 512)).to.deep.equal(d1);
    const d2 = pattern(512, 14);
    cpuWrite(w.dom0, p, 0, d2);
    unwrap(dma.syncForDevice(m), 'sync dev');
    expect(must(deviceRead(view, m))).to.deep.equal(d2);
    unwrap(dma.unmap(m), 'unmap');
  });

  it('reports a full pool ("swiotlb buffer is full") and recovers once buffers are unmapped', () => {
    const { w, dma } = swiotlb('p2m', { forceBounce: true, poolPages: 16 });
    const p = consecutivePages(w.dom0, 17);
    const maps = [];
    for (let i = 0; i < 16; i++) maps.push(unwrap(dma.mapBuffer([{ pfn: p[i]!, offset: 0, len: 4096 }], 'to-device'), 'map'));
    const full = dma.mapBuffer([{ pfn: p[16]!, offset: 0, len: 4096 }], 'to-device');
    expect(full.ok).to.equal(false);
    if (!full.ok) {
      expect(full.error.kind).to.equal('bounce-pool-full');
      expect(describeDmaError(full.error)).to.match(/swiotlb buffer is full/);
    }
    unwrap(dma.unmap(maps[3]!), 'unmap');
    expect(dma.mapBuffer([{ pfn: p[16]!, offset: 0, len: 4096 }], 'to-device').ok).to.equal(true);
  });

  it('allocates coherent buffers machine-contiguous and below the mask', () => {
    const maskBits = 24;
    const { w, dma, view } = swiotlb('p2m', { dmaMaskBits: maskBits, memBytes: 64 << 20 });
    const cb = unwrap(dma.allocCoherent(5 * 4096), 'coherent');
    expect(cb.bus + 5 * 4096).to.be.at.most(2 ** maskBits);
    for (let i = 0; i < 5; i++) expect(w.dom0.frameOf(cb.pfns[i]!) * 4096).to.equal(cb.bus + i * 4096);
    must(view.dmaWrite(cb.bus, pattern(5 * 4096, 15)));
    expect(view.counters().faults).to.equal(0);
  });
});
