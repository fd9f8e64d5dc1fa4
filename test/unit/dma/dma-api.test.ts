import { expect } from 'chai';
import type { MemoryModel } from '../../../shared/abi/machine.ts';
import type { IommuMode } from '../../../shared/abi/iommu.ts';
import { createDmaApi, type DmaConfig } from '../../../dom0/dma/create-dma.ts';
import { describeDmaError, type DmaApi, type DmaKind } from '../../../dom0/dma/dma-api.ts';
import { mapGrantsForDma, unmapGrantsForDma } from '../../../dom0/dma/grant-dma.ts';
import { unwrap } from '../../../shared/result.ts';
import type { DomId } from '../../../shared/types.ts';
import { consecutivePages, cpuRead, cpuWrite, deviceRead, deviceWrite, dmaWorld, must, pattern, type DmaWorld } from './helpers.ts';

/** Where each implementation applies: memory model × IOMMU mode of its device. */
const CASES: { impl: DmaKind; model: MemoryModel; mode: IommuMode }[] = [
  { impl: 'direct', model: 'pm', mode: 'passthrough' },
  { impl: 'direct', model: 'pm', mode: 'strict' },
  { impl: 'p2m', model: 'p2m', mode: 'passthrough' },
  { impl: 'p2m', model: 'p2m', mode: 'strict' },
  { impl: 'xlate', model: 'vp', mode: 'passthrough' },
  { impl: 'iommu', model: 'vp', mode: 'explicit' },
  { impl: 'iommu', model: 'pm', mode: 'explicit' },
  { impl: 'iommu', model: 'p2m', mode: 'explicit' },
  { impl: 'swiotlb', model: 'p2m', mode: 'passthrough' },
  { impl: 'swiotlb', model: 'pm', mode: 'passthrough' },
  { impl: 'swiotlb', model: 'vp', mode: 'identity' },
];

/** swiotlb pools in small segments: a fragmented test machine has few long free runs. */
function cfgOf(impl: DmaKind): DmaConfig {
  return impl === 'swiotlb' ? { kind: 'swiotlb', poolPages: 64, segmentPages: 16 } : ({ kind: impl } as DmaConfig);
}

function setup(model: MemoryModel, mode: IommuMode, cfg: DmaConfig): { w: DmaWorld; dma: DmaApi; view: ReturnType<DmaWorld['addDevice']>['view'] } {
  const w = dmaWorld(model);
  const { info, view } = w.addDevice(mode);
  const r = createDmaApi(w.dom0, info, cfg);
  if (!r.ok) throw new Error(describeDmaError(r.error));
  return { w, dma: r.value, view };
}

describe('dom0 DMA API: every implementation moves correct data where it applies', () => {
  for (const c of CASES) {
    describe(`${c.impl} in a ${c.model} dom0 (device IOMMU ${c.mode})`, () => {
      it('lets the device write a three-page buffer the CPU then reads', () => {
        const { w, dma, view } = setup(c.model, c.mode, cfgOf(c.impl));
        const pfns = consecutivePages(w.dom0, 3);
        const len = 2 * 4096 + 50;
        const m = unwrap(dma.mapBuffer([{ pfn: pfns[0]!, offset: 100, len }], 'from-device'), 'map');
        expect(m.bytes).to.equal(len);
        expect(m.pages).to.equal(3);
        const data = pattern(len, 1);
        must(deviceWrite(view, m, data));
        unwrap(dma.unmap(m), 'unmap');
        expect(cpuRead(w.dom0, pfns[0]!, 100, len)).to.deep.equal(data);
        expect(view.counters().strayDma).to.equal(0);
        expect(view.counters().faults).to.equal(0);
      });

      it('lets the device read what the CPU wrote, across several pieces', () => {
        const { w, dma, view } = setup(c.model, c.mode, cfgOf(c.impl));
        const a = w.dom0.ram.alloc();
        const b = consecutivePages(w.dom0, 2);
        const d1 = pattern(700, 2);
        const d2 = pattern(5000, 3);
        cpuWrite(w.dom0, a, 3000, d1);
        cpuWrite(w.dom0, b[0]!, 0, d2);
        const m = unwrap(dma.mapBuffer([{ pfn: a, offset: 3000, len: 700 }, { pfn: b[0]!, offset: 0, len: 5000 }], 'to-device'), 'map');
        const got = must(deviceRead(view, m));
        expect(got.subarray(0, 700)).to.deep.equal(d1);
        expect(got.subarray(700)).to.deep.equal(d2);
        unwrap(dma.unmap(m), 'unmap');
      });

      it("DMAs straight into a guest's page that dom0 grant-mapped, and out of a read-only one", () => {
        const { w, dma, view } = setup(c.model, c.mode, cfgOf(c.impl));
        const gw = w.domU.ram.alloc();
        const gr = w.domU.ram.alloc();
        const guestData = pattern(4096, 4);
        cpuWrite(w.domU, gr, 0, guestData);
        const refW = w.domU.gnttab.grantForeignAccess(0 as DomId, gw, false)!;
        const refR = w.domU.gnttab.grantForeignAccess(0 as DomId, gr, true)!;
        const pages = unwrap(mapGrantsForDma(w.dom0, [
          { domid: w.domU.domid, ref: refW, readonly: false },
          { domid: w.domU.domid, ref: refR, readonly: true },
        ]), 'grant map');
        const [fw, fr] = pages as [typeof pages[0], typeof pages[0]];
        // Device → guest page.
        const mw = unwrap(dma.mapBuffer([{ pfn: fw.pfn, offset: 8, len: 1000 }], 'from-device'), 'map foreign');
        const data = pattern(1000, 5);
        must(deviceWrite(view, mw, data));
        unwrap(dma.unmap(mw), 'unmap');
        expect(cpuRead(w.domU, gw, 8, 1000)).to.deep.equal(data);
        // Guest page → device.
        const mr = unwrap(dma.mapBuffer([{ pfn: fr.pfn, offset: 0, len: 4096 }], 'to-device'), 'map ro');
        expect(must(deviceRead(view, mr))).to.deep.equal(guestData);
        unwrap(dma.unmap(mr), 'unmap');
        expect(unmapGrantsForDma(w.dom0, pages)).to.deep.equal([0, 0]);
        expect(w.domU.gnttab.endForeignAccessRef(refW)).to.equal(true);
        expect(view.counters().strayDma).to.equal(0);
      });

      it('allocates coherent memory that is one bus-contiguous run', () => {
        const { w, dma, view } = setup(c.model, c.mode, cfgOf(c.impl));
        const cb = unwrap(dma.allocCoherent(3 * 4096), 'coherent');
        const data = pattern(3 * 4096, 6);
        must(view.dmaWrite(cb.bus, data));
        const got = new Uint8Array(data.length);
        cb.region.copyOut(0, got);
        expect(got).to.deep.equal(data);
        unwrap(dma.freeCoherent(cb), 'free');
        expect(w.dom0.ram.inUse).to.be.greaterThanOrEqual(0);
      });
    });
  }
});

describe('dom0 DMA API: refusing clearly where an implementation cannot work', () => {
  const refuse = (model: MemoryModel, mode: IommuMode, impl: DmaKind) => {
    const w = dmaWorld(model);
    const { info } = w.addDevice(mode);
    const r = createDmaApi(w.dom0, info, { kind: impl } as DmaConfig);
    expect(r.ok).to.equal(false);
    return r.ok ? undefined : r.error;
  };

  for (const model of ['p2m', 'vp'] as const) {
    it(`refuses direct DMA in a ${model} dom0, naming P==M`, () => {
      const e = refuse(model, 'passthrough', 'direct');
      expect(e).to.deep.include({ kind: 'wrong-memory-model', impl: 'direct', model });
      expect(describeDmaError(e!)).to.match(/P==M/);
    });
  }
  for (const model of ['pm', 'vp'] as const) {
    it(`refuses p2m DMA in a ${model} dom0 (no own pfn-to-mfn list)`, () => {
      expect(refuse(model, 'passthrough', 'p2m')).to.deep.include({ kind: 'wrong-memory-model', impl: 'p2m', model });
    });
  }
  for (const model of ['pm', 'p2m'] as const) {
    it(`refuses xlate DMA in a ${model} dom0`, () => {
      expect(refuse(model, 'passthrough', 'xlate')).to.deep.include({ kind: 'wrong-memory-model', impl: 'xlate', model });
    });
  }
  for (const mode of ['passthrough', 'identity', 'strict'] as const) {
    it(`refuses iommu DMA on a device without an explicit context (${mode})`, () => {
      const e = refuse('vp', mode, 'iommu');
      expect(e).to.deep.include({ kind: 'no-iommu-context', mode });
    });
  }
  for (const impl of ['direct', 'swiotlb'] as const) {
    it(`refuses ${impl} DMA on a device whose IOMMU only knows IOVAs (explicit)`, () => {
      expect(refuse('pm', 'explicit', impl)).to.deep.include({ kind: 'incompatible-iommu-mode', impl });
    });
  }
  it("refuses to drive another domain's device", () => {
    const w = dmaWorld('vp');
    const { info } = w.addDevice('explicit', { owner: w.domU.domid });
    const r = createDmaApi(w.dom0, info, { kind: 'iommu' });
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error.kind).to.equal('not-owner');
  });
  it('refuses a malformed buffer without touching anything', () => {
    const { dma } = setup('pm', 'passthrough', { kind: 'direct' });
    for (const pieces of [[], [{ pfn: 1, offset: 4096, len: 1 }], [{ pfn: 1, offset: 0, len: 0 }], [{ pfn: -1, offset: 0, len: 1 }]]) {
      const r = dma.mapBuffer(pieces as never, 'to-device');
      expect(r.ok).to.equal(false);
      if (!r.ok) expect(r.error.kind).to.equal('bad-buffer');
    }
    expect(dma.counters().mapErrors).to.equal(4);
    expect(dma.counters().maps).to.equal(0);
  });
  it('refuses a pfn with nothing behind it', () => {
    const { w, dma } = setup('p2m', 'passthrough', { kind: 'p2m' });
    const r = dma.mapBuffer([{ pfn: w.dom0.ballooned.alloc(), offset: 0, len: 10 }], 'to-device');
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error.kind).to.equal('no-translation');
  });
});

describe('dom0 DMA API: what each implementation costs', () => {
  it('p2m makes no hypercall and splits a buffer where its machine frames are not contiguous', () => {
    const { w, dma } = setup('p2m', 'passthrough', { kind: 'p2m' });
    const pfns = consecutivePages(w.dom0, 16);
    const before = w.dom0.hc.calls;
    const m = unwrap(dma.mapBuffer([{ pfn: pfns[0]!, offset: 0, len: 16 * 4096 }], 'from-device'), 'map');
    expect(w.dom0.hc.calls - before).to.equal(0);
    const mfns = pfns.map((p) => w.dom0.frameOf(p));
    let runs = 1;
    for (let i = 1; i < 16; i++) if (mfns[i] !== mfns[i - 1]! + 1) runs++;
    expect(m.segments.length).to.equal(runs);
    expect(dma.counters().translations).to.equal(16);
  });
  it('xlate makes one phystomach hypercall per page on every map', () => {
    const { w, dma } = setup('vp', 'passthrough', { kind: 'xlate' });
    const pfns = consecutivePages(w.dom0, 16);
    const before = w.dom0.hc.calls;
    for (let i = 0; i < 3; i++) unwrap(dma.unmap(unwrap(dma.mapBuffer([{ pfn: pfns[0]!, offset: 0, len: 16 * 4096 }], 'to-device'), 'map')), 'unmap');
    expect(w.dom0.hc.calls - before).to.equal(48);
    expect(dma.counters().hypercalls).to.equal(48);
  });
  it('iommu maps and unmaps a 16-page buffer with one hypercall each, as one bus segment', () => {
    const { w, dma } = setup('vp', 'explicit', { kind: 'iommu' });
    const pfns = consecutivePages(w.dom0, 16);
    const before = w.dom0.hc.calls;
    const m = unwrap(dma.mapBuffer([{ pfn: pfns[0]!, offset: 0, len: 16 * 4096 }], 'from-device'), 'map');
    expect(m.segments).to.have.length(1);
    expect(w.dom0.hc.calls - before).to.equal(1);
    unwrap(dma.unmap(m), 'unmap');
    expect(w.dom0.hc.calls - before).to.equal(2);
    const c = dma.counters();
    expect([c.iommuMaps, c.iommuUnmaps]).to.deep.equal([16, 16]);
  });
  it('direct needs nothing per page: one segment, no translation, no hypercall', () => {
    const { w, dma } = setup('pm', 'passthrough', { kind: 'direct' });
    const pfns = consecutivePages(w.dom0, 16);
    const m = unwrap(dma.mapBuffer([{ pfn: pfns[0]!, offset: 0, len: 16 * 4096 }], 'from-device'), 'map');
    expect(m.segments).to.deep.equal([{ bus: pfns[0]! * 4096, len: 16 * 4096 }]);
    expect(dma.counters().translations).to.equal(0);
    expect(dma.counters().hypercalls).to.equal(0);
  });
});
