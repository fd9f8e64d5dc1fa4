import { expect } from 'chai';
import type { MemoryModel } from '../../../shared/abi/machine.ts';
import type { IommuMode } from '../../../shared/abi/iommu.ts';
import { createDmaApi, type DmaConfig } from '../../../dom0/dma/create-dma.ts';
import { describeDmaError, type DmaKind, type DmaPiece } from '../../../dom0/dma/dma-api.ts';
import { DmaDiskDriver, describeDiskDriverError, type DiskIo, type DiskIoResult } from '../../../dom0/dma/disk-driver.ts';
import { mapGrantsForDma } from '../../../dom0/dma/grant-dma.ts';
import { DEVICE_STATUS, FATAL_REASON, MMIO_COMMON } from '../../../dom0/dma/mmio.ts';
import { DISK_DESC, DISK_OP, DISK_REGS, DISK_STATUS, DmaDiskController } from '../../../dom0/devices/dma-disk-controller.ts';
import { RamDisk } from '../../../dom0/devices/disk-store.ts';
import { unwrap } from '../../../shared/result.ts';
import type { DomId, Pfn } from '../../../shared/types.ts';
import { consecutivePages, cpuRead, cpuWrite, dmaWorld, pattern } from './helpers.ts';

function rig(model: MemoryModel, mode: IommuMode, impl: DmaKind, opts: { memBytes?: number } = {}) {
  const w = dmaWorld(model, opts);
  const { info, view } = w.addDevice(mode);
  const disk = new RamDisk({ sectors: 4096 });
  const dev = new DmaDiskController(w.layout, info.blockAddr, disk, { spinUs: 0 });
  const cfg: DmaConfig = impl === 'swiotlb' ? { kind: 'swiotlb', poolPages: 64, segmentPages: 16 } : ({ kind: impl } as DmaConfig);
  const dma = createDmaApi(w.dom0, info, cfg);
  if (!dma.ok) throw new Error(describeDmaError(dma.error));
  // A legacy driver's rings are right (set up through the proper API); only its buffers bypass it.
  const queueDma = impl === 'legacy' ? createDmaApi(w.dom0, info, { kind: mode === 'explicit' ? 'iommu' : model === 'pm' ? 'direct' : model === 'p2m' ? 'p2m' : 'xlate' }) : dma;
  if (!queueDma.ok) throw new Error(describeDmaError(queueDma.error));
  const drv = DmaDiskDriver.attach(w.dom0, dma.value, { entries: 8, queueDma: queueDma.value });
  if (!drv.ok) throw new Error(describeDiskDriverError(drv.error));
  /** Runs device and dom0's event dispatch until neither has anything to do. */
  const pump = () => {
    for (let i = 0; i < 1000; i++) {
      const n = dev.processOnce();
      const e = w.dom0.evtchn.dispatch();
      if (n === 0 && e === 0) return;
    }
    throw new Error('device and driver never went quiet');
  };
  /** One I/O, start to finish. */
  const io = (req: DiskIo): DiskIoResult => {
    let res: DiskIoResult | undefined;
    const s = drv.value.submit(req, (r) => { res = r; });
    if (!s.ok) throw new Error(describeDiskDriverError(s.error));
    drv.value.kick();
    pump();
    if (res === undefined) throw new Error('no completion');
    return res;
  };
  return { w, dev, disk, drv: drv.value, dma: dma.value, view, io, pump };
}

const CASES: { impl: DmaKind; model: MemoryModel; mode: IommuMode }[] = [
  { impl: 'direct', model: 'pm', mode: 'passthrough' },
  { impl: 'p2m', model: 'p2m', mode: 'passthrough' },
  { impl: 'xlate', model: 'vp', mode: 'passthrough' },
  { impl: 'iommu', model: 'vp', mode: 'explicit' },
  { impl: 'swiotlb', model: 'p2m', mode: 'passthrough' },
];

describe('DMA disk controller driven through each DMA API (one thread)', () => {
  for (const c of CASES) {
    it(`writes and reads back 64 KiB through ${c.impl} in a ${c.model} dom0, completing by interrupt`, () => {
      const { w, disk, drv, io, dev, view } = rig(c.model, c.mode, c.impl);
      const src = consecutivePages(w.dom0, 16);
      const dst = consecutivePages(w.dom0, 16);
      const data = pattern(65536, 30);
      cpuWrite(w.dom0, src[0]!, 0, data);
      const wr = io({ op: 'write', sector: 64, buffer: [{ pfn: src[0]!, offset: 0, len: 65536 }] });
      expect(wr).to.deep.equal({ status: DISK_STATUS.okay, bytes: 65536 });
      const onDisk = new Uint8Array(65536);
      unwrap(disk.read(64, onDisk));
      expect(onDisk).to.deep.equal(data);
      const rd = io({ op: 'read', sector: 64, buffer: [{ pfn: dst[0]!, offset: 0, len: 65536 }] });
      expect(rd.status).to.equal(DISK_STATUS.okay);
      expect(cpuRead(w.dom0, dst[0]!, 0, 65536)).to.deep.equal(data);
      expect(drv.counters().interrupts).to.equal(2);
      expect(dev.counters().interrupts).to.equal(2);
      expect(view.counters().strayDma).to.equal(0);
      expect(drv.inflight).to.equal(0);
    });
  }

  it("reads from disk straight into a guest's grant-mapped page, and writes one to disk", () => {
    const { w, disk, io } = rig('p2m', 'passthrough', 'p2m');
    const g = w.domU.ram.alloc();
    const data = pattern(4096, 31);
    unwrap(disk.write(100, data));
    const ref = w.domU.gnttab.grantForeignAccess(0 as DomId, g, false)!;
    const [f] = unwrap(mapGrantsForDma(w.dom0, [{ domid: w.domU.domid, ref, readonly: false }]), 'grant');
    expect(io({ op: 'read', sector: 100, buffer: [{ pfn: f!.pfn, offset: 0, len: 4096 }] }).status).to.equal(0);
    expect(cpuRead(w.domU, g, 0, 4096)).to.deep.equal(data);
    const out = pattern(4096, 32);
    cpuWrite(w.domU, g, 0, out);
    expect(io({ op: 'write', sector: 200, buffer: [{ pfn: f!.pfn, offset: 0, len: 4096 }] }).status).to.equal(0);
    const back = new Uint8Array(4096);
    unwrap(disk.read(200, back));
    expect(back).to.deep.equal(out);
  });

  it('keeps many requests in flight and suppresses interrupts and doorbells to about one per batch', () => {
    const { w, drv, pump } = rig('pm', 'passthrough', 'direct');
    const pages = consecutivePages(w.dom0, 8);
    let done = 0;
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 8; i++) unwrap(drv.submit({ op: 'write', sector: i * 8, buffer: [{ pfn: pages[i]!, offset: 0, len: 4096 }] }, () => { done++; }));
      drv.kick();
      pump();
    }
    expect(done).to.equal(32);
    expect(drv.counters().kicks).to.be.at.most(4);
    expect(drv.counters().interrupts).to.be.at.most(4);
  });

  it('answers hostile descriptors with an error status each and keeps serving', () => {
    const { w, drv, pump, dev, io } = rig('vp', 'explicit', 'iommu');
    const results: number[] = [];
    const raw = (f: (b: Buffer) => void) => {
      const b = Buffer.alloc(DISK_DESC.SIZE);
      f(b);
      unwrap(drv.submitRaw(b, (r) => results.push(r.status)));
    };
    raw((b) => { b.writeUInt8(9, DISK_DESC.op); b.writeUInt16LE(1, DISK_DESC.nrSegs); });
    raw((b) => { b.writeUInt8(DISK_OP.read, DISK_DESC.op); b.writeUInt16LE(0, DISK_DESC.nrSegs); });
    raw((b) => { b.writeUInt8(DISK_OP.read, DISK_DESC.op); b.writeUInt16LE(1, DISK_DESC.nrSegs); b.writeUInt32LE(1 << 24, DISK_DESC.inline); b.writeUInt32LE(512, DISK_DESC.inline + 8); });
    raw((b) => { b.writeUInt8(DISK_OP.read, DISK_DESC.op); b.writeUInt16LE(1, DISK_DESC.nrSegs); b.writeUInt32LE(4096, DISK_DESC.inline); b.writeUInt32LE(100, DISK_DESC.inline + 8); });
    raw((b) => { b.writeUInt8(DISK_OP.read, DISK_DESC.op); b.writeUInt16LE(5, DISK_DESC.nrSegs); b.writeUInt32LE(1 << 25, DISK_DESC.sglBus); });
    drv.kick();
    pump();
    expect(results).to.deep.equal([DISK_STATUS.notSupported, DISK_STATUS.badDescriptor, DISK_STATUS.dmaError, DISK_STATUS.badDescriptor, DISK_STATUS.dmaError]);
    expect(dev.counters().dmaFaults).to.equal(2);
    // Out-of-range sector: the medium refuses.
    const p = w.dom0.ram.alloc();
    expect(io({ op: 'read', sector: 4096, buffer: [{ pfn: p, offset: 0, len: 512 }] }).status).to.equal(DISK_STATUS.ioError);
    // And a good request still works.
    expect(io({ op: 'read', sector: 0, buffer: [{ pfn: p, offset: 0, len: 512 }] }).status).to.equal(DISK_STATUS.okay);
  });

  it('stops (fatal, with the reason) when the driver claims more descriptors than the queue holds, and runs again after a reset', () => {
    const { w, drv, dev, dma } = rig('pm', 'passthrough', 'direct');
    drv.mmio.store(DISK_REGS.sqTail, 100);
    dev.processOnce();
    expect(drv.deviceStatus()).to.deep.equal({ status: DEVICE_STATUS.fatal, fatalReason: FATAL_REASON.producerOverflow });
    drv.detach();
    dev.processOnce();
    expect(drv.mmio.load(MMIO_COMMON.status)).to.equal(DEVICE_STATUS.running);
    const again = unwrap(DmaDiskDriver.attach(w.dom0, dma, { entries: 8 }) as never) as DmaDiskDriver;
    const p = w.dom0.ram.alloc();
    let st = -99;
    unwrap(again.submit({ op: 'read', sector: 0, buffer: [{ pfn: p as Pfn, offset: 0, len: 512 } as DmaPiece] }, (r) => { st = r.status; }));
    again.kick();
    for (let i = 0; i < 5; i++) { dev.processOnce(); w.dom0.evtchn.dispatch(); }
    expect(st).to.equal(DISK_STATUS.okay);
  });

  it('legacy driver in a PV dom0: the disk read lands in the guest frame the pfn names, and the audit reports it', () => {
    const { w, io, view, disk } = rig('p2m', 'passthrough', 'legacy');
    const k = w.dom0;
    let victim = -1;
    for (let pfn = 0; pfn < k.boot.ramPages && victim < 0; pfn++) if (w.m.hv.frameTable.owner(pfn as never) === w.domU.domid) victim = pfn;
    expect(victim).to.be.greaterThan(0);
    const data = pattern(4096, 33);
    unwrap(disk.write(0, data));
    expect(io({ op: 'read', sector: 0, buffer: [{ pfn: victim as Pfn, offset: 0, len: 4096 }] }).status).to.equal(DISK_STATUS.okay);
    expect(view.counters().strayDma).to.be.greaterThan(0);
    expect(view.counters().lastStrayOwner).to.equal(w.domU.domid);
    expect(cpuRead(w.domU, w.m.hv.frameTable.m2p(victim as never), 0, 4096)).to.deep.equal(data);
  });

  it('legacy driver with an IOMMU: the request fails with a DMA error and memory is untouched', () => {
    const { w, io, view } = rig('vp', 'explicit', 'legacy');
    const p = w.dom0.ram.alloc();
    expect(io({ op: 'read', sector: 0, buffer: [{ pfn: p, offset: 0, len: 4096 }] }).status).to.equal(DISK_STATUS.dmaError);
    expect(view.counters().faults).to.be.greaterThan(0);
  });
});
