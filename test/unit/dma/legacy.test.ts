import { expect } from 'chai';
import { createDmaApi } from '../../../dom0/dma/create-dma.ts';
import { describeDmaError, type DmaKind } from '../../../dom0/dma/dma-api.ts';
import type { IommuMode } from '../../../shared/abi/iommu.ts';
import type { MemoryModel } from '../../../shared/abi/machine.ts';
import { unwrap } from '../../../shared/result.ts';
import type { Mfn, Pfn } from '../../../shared/types.ts';
import { cpuRead, cpuWrite, deviceWrite, dmaWorld, must, pattern } from './helpers.ts';

/**
 * A dom0 RAM pfn whose number happens to be a machine frame of the guest: a
 * legacy driver handing that pfn to a device as a bus address aims the DMA
 * at the guest's page.
 */
function victimPfn(w: ReturnType<typeof dmaWorld>): Pfn {
  const k = w.dom0;
  for (let pfn = k.boot.ramBase; pfn < k.boot.ramBase + k.boot.ramPages; pfn++) {
    if (pfn < w.m.mem.frames && w.m.hv.frameTable.owner(pfn as Mfn) === w.domU.domid) return pfn as Pfn;
  }
  throw new Error('no dom0 pfn collides with a guest frame');
}

function world(model: MemoryModel, mode: IommuMode, impl: DmaKind) {
  const w = dmaWorld(model);
  const { info, view } = w.addDevice(mode);
  const r = createDmaApi(w.dom0, info, { kind: impl } as never);
  if (!r.ok) throw new Error(describeDmaError(r.error));
  return { w, dma: r.value, view };
}

describe('legacy driver (bypassing the DMA API): pseudo-physical addresses as bus addresses', () => {
  for (const model of ['vp', 'p2m'] as const) {
    it(`in a ${model} dom0 without an IOMMU, corrupts the guest frame the pfn names, and the audit says whose`, () => {
      const { w, dma, view } = world(model, 'passthrough', 'legacy');
      const pfn = victimPfn(w);
      const guestPfn = w.m.hv.frameTable.m2p(pfn as number as Mfn);
      const guestBefore = cpuRead(w.domU, guestPfn, 0, 4096);
      const m = unwrap(dma.mapBuffer([{ pfn, offset: 0, len: 4096 }], 'from-device'), 'legacy map');
      expect(m.segments).to.deep.equal([{ bus: pfn * 4096, len: 4096 }]);
      const data = pattern(4096, 20);
      must(deviceWrite(view, m, data)); // no IOMMU: the write goes through…
      const c = view.counters();
      expect(c.strayDma).to.equal(1); // …and the audit catches it
      expect(c.lastStrayMfn).to.equal(pfn);
      expect(c.lastStrayOwner).to.equal(w.domU.domid);
      expect(cpuRead(w.domU, guestPfn, 0, 4096)).to.deep.equal(data);
      expect(cpuRead(w.domU, guestPfn, 0, 4096)).to.not.deep.equal(guestBefore);
      // dom0's own buffer never received the data.
      expect(cpuRead(w.dom0, pfn, 0, 4096)).to.not.deep.equal(data);
    });
  }

  it('with an IOMMU (explicit context), faults instead and touches nothing', () => {
    const { w, dma, view } = world('vp', 'explicit', 'legacy');
    const pfn = victimPfn(w);
    const guestPfn = w.m.hv.frameTable.m2p(pfn as number as Mfn);
    const guestBefore = cpuRead(w.domU, guestPfn, 0, 4096);
    const m = unwrap(dma.mapBuffer([{ pfn, offset: 0, len: 4096 }], 'from-device'), 'legacy map');
    const r = deviceWrite(view, m, pattern(4096, 21));
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error).to.deep.include({ kind: 'iommu-fault', reason: 'not-mapped', bus: pfn * 4096 });
    expect(view.counters().faults).to.equal(1);
    expect(view.counters().strayDma).to.equal(0);
    expect(cpuRead(w.domU, guestPfn, 0, 4096)).to.deep.equal(guestBefore);
  });

  it('with a strict IOMMU in a PV dom0, faults a pfn that is not one of its own frames', () => {
    const { w, dma, view } = world('p2m', 'strict', 'legacy');
    const pfn = victimPfn(w);
    const m = unwrap(dma.mapBuffer([{ pfn, offset: 0, len: 4096 }], 'from-device'), 'legacy map');
    const r = deviceWrite(view, m, pattern(4096, 22));
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error.reason).to.equal('not-mapped');
  });

  it('in a P==M dom0 is harmless (pfn = mfn), which is why such drivers survived', () => {
    const { w, dma, view } = world('pm', 'passthrough', 'legacy');
    const p = w.dom0.ram.alloc();
    const m = unwrap(dma.mapBuffer([{ pfn: p, offset: 0, len: 4096 }], 'from-device'), 'legacy map');
    const data = pattern(4096, 23);
    must(deviceWrite(view, m, data));
    expect(cpuRead(w.dom0, p, 0, 4096)).to.deep.equal(data);
    expect(view.counters().strayDma).to.equal(0);
  });

  it('the same buffer through the DMA API lands in dom0 with no stray DMA', () => {
    const { w, dma, view } = world('vp', 'passthrough', 'xlate');
    const pfn = victimPfn(w);
    const data = pattern(4096, 24);
    cpuWrite(w.dom0, pfn, 0, new Uint8Array(4096));
    const m = unwrap(dma.mapBuffer([{ pfn, offset: 0, len: 4096 }], 'from-device'), 'map');
    must(deviceWrite(view, m, data));
    unwrap(dma.unmap(m), 'unmap');
    expect(cpuRead(w.dom0, pfn, 0, 4096)).to.deep.equal(data);
    expect(view.counters().strayDma).to.equal(0);
  });
});
