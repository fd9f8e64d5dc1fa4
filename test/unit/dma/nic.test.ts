import { expect } from 'chai';
import { createDmaApi, type DmaConfig } from '../../../dom0/dma/create-dma.ts';
import { describeDmaError } from '../../../dom0/dma/dma-api.ts';
import { NicDriver, describeNicDriverError } from '../../../dom0/dma/nic-driver.ts';
import { Nic, NIC_REGS, Wire, type WireEnd, type WireMode } from '../../../dom0/devices/nic.ts';
import type { IommuMode } from '../../../shared/abi/iommu.ts';
import type { MemoryModel } from '../../../shared/abi/machine.ts';
import { unwrap } from '../../../shared/result.ts';
import { dmaWorld, pattern, type DmaWorld } from './helpers.ts';

function nicOn(w: DmaWorld, wire: Wire, end: WireEnd, mode: IommuMode, cfg: DmaConfig, rxEntries = 8) {
  const { info, view } = w.addDevice(mode);
  const nic = new Nic(w.layout, info.blockAddr, wire, end, { spinUs: 0 });
  const dma = createDmaApi(w.dom0, info, cfg);
  if (!dma.ok) throw new Error(describeDmaError(dma.error));
  const drv = NicDriver.attach(w.dom0, dma.value, { txEntries: 8, rxEntries });
  if (!drv.ok) throw new Error(describeNicDriverError(drv.error));
  return { nic, drv: drv.value, view };
}

function rig(model: MemoryModel, mode: IommuMode, impl: DmaConfig['kind'], wireMode: WireMode, rxEntries = 8) {
  const w = dmaWorld(model);
  const wire = Wire.create(wireMode);
  const cfg: DmaConfig = impl === 'swiotlb' ? { kind: 'swiotlb', poolPages: 64, segmentPages: 16 } : ({ kind: impl } as DmaConfig);
  const a = nicOn(w, wire, 0, mode, cfg, rxEntries);
  const b = wireMode === 'pair' ? nicOn(w, wire, 1, mode, cfg, rxEntries) : undefined;
  const pump = () => {
    for (let i = 0; i < 1000; i++) {
      const n = a.nic.processOnce() + (b?.nic.processOnce() ?? 0) + w.dom0.evtchn.dispatch();
      if (n === 0) return;
    }
    throw new Error('NICs never went quiet');
  };
  return { w, wire, a, b, pump };
}

describe('NIC on a wire (one thread)', () => {
  for (const [model, mode, impl] of [['pm', 'passthrough', 'direct'], ['p2m', 'passthrough', 'p2m'], ['vp', 'explicit', 'iommu'], ['p2m', 'passthrough', 'swiotlb']] as const) {
    it(`carries frames both ways between two NICs (${impl} in a ${model} dom0)`, () => {
      const { a, b, pump } = rig(model, mode, impl, 'pair');
      const f1 = pattern(1514, 40);
      const f2 = pattern(60, 41);
      const f3 = pattern(4096, 42);
      unwrap(a.drv.send(f1));
      unwrap(a.drv.send(f3));
      unwrap(b!.drv.send(f2));
      a.drv.kick();
      b!.drv.kick();
      pump();
      expect(b!.drv.take()).to.deep.equal([f1, f3]);
      expect(a.drv.take()).to.deep.equal([f2]);
      expect(a.drv.counters().sent).to.equal(2);
      expect(a.drv.txInFlight).to.equal(0);
      expect(a.view.counters().strayDma + b!.view.counters().strayDma).to.equal(0);
    });
  }

  it('loops frames back to the sending NIC', () => {
    const { a, pump } = rig('vp', 'explicit', 'iommu', 'loopback');
    const frames = [pattern(100, 43), pattern(1500, 44), pattern(64, 45)];
    for (const f of frames) unwrap(a.drv.send(f));
    a.drv.kick();
    pump();
    expect(a.drv.take()).to.deep.equal(frames);
    expect(a.nic.counters().rxFrames).to.equal(3);
  });

  it('holds frames on the wire while no receive buffer is posted, and delivers them once buffers come back', () => {
    const { a, b, pump } = rig('pm', 'passthrough', 'direct', 'pair', 2);
    const frames = Array.from({ length: 6 }, (_, i) => pattern(200 + i, 50 + i));
    const got: Uint8Array[] = [];
    // B's driver takes frames only when polled; with 2 RX buffers the rest must wait on the wire.
    b!.drv.onFrame = (f) => got.push(f);
    for (const f of frames) unwrap(a.drv.send(f));
    a.drv.kick();
    a.nic.processOnce();
    b!.nic.processOnce();
    expect(b!.nic.counters().rxFrames).to.equal(2);
    expect(b!.nic.counters().rxNoBuffer).to.be.greaterThan(0);
    pump();
    expect(got).to.deep.equal(frames);
  });

  it('faults a transmit whose frame the IOMMU does not map, reports it in the descriptor, and keeps going', () => {
    const { a, b, pump } = rig('vp', 'explicit', 'iommu', 'pair');
    // Corrupt the bus address of the next TX descriptor after the driver wrote it.
    unwrap(a.drv.send(pattern(100, 60)));
    a.drv.rings.region.setU32(0, 0x00ff_f000);
    unwrap(a.drv.send(pattern(100, 61)));
    a.drv.kick();
    pump();
    expect(a.drv.counters().txErrors).to.equal(1);
    expect(a.drv.counters().sent).to.equal(1);
    expect(a.nic.counters().dmaFaults).to.equal(1);
    expect(b!.drv.take()).to.deep.equal([pattern(100, 61)]);
    expect(a.drv.mmio.load(NIC_REGS.txHead)).to.equal(2);
  });
});
