/**
 * blkback on the DMA block controller: guest pages are grant-mapped for the
 * device, dom0's DMA API turns them into bus addresses, and the controller
 * moves the data straight between the disk and the guest's frames — in each
 * of dom0's memory models, with persistent grants and with map/unmap.
 */
import { expect } from 'chai';
import { DmaDiskStorage } from '../../../dom0/blkback/dma-storage.ts';
import { createDmaApi, type DmaConfig } from '../../../dom0/dma/create-dma.ts';
import { describeDmaError } from '../../../dom0/dma/dma-api.ts';
import { DmaDiskDriver, describeDiskDriverError } from '../../../dom0/dma/disk-driver.ts';
import { DmaDiskController } from '../../../dom0/devices/dma-disk-controller.ts';
import { RamDisk } from '../../../dom0/devices/disk-store.ts';
import type { IommuMode } from '../../../shared/abi/iommu.ts';
import type { MemoryModel } from '../../../shared/abi/machine.ts';
import { MachineLayout } from '../../../shared/machine-layout.ts';
import { unwrap } from '../../../shared/result.ts';
import { BlkWorld, verifiedJob } from '../../helpers/blk-world.ts';

const XVDA = 51712;

const CASES: { model: MemoryModel; mode: IommuMode; dma: DmaConfig; back: 'persistent' | 'map' }[] = [
  { model: 'pm', mode: 'passthrough', dma: { kind: 'direct' }, back: 'persistent' },
  { model: 'p2m', mode: 'passthrough', dma: { kind: 'p2m' }, back: 'map' },
  { model: 'vp', mode: 'passthrough', dma: { kind: 'xlate' }, back: 'persistent' },
];

describe('blkback on the DMA disk controller (one thread)', function () {
  this.timeout(30000);
  let w: BlkWorld;
  afterEach(async () => { await w?.close(); });

  for (const c of CASES) {
    it(`serves a verified job with ${c.back} grants through the ${c.dma.kind} DMA API of a ${c.model} dom0, the device DMAing into guest frames`, async () => {
      w = await BlkWorld.create({ dom0Model: c.model, backend: { mode: c.back, maxIndirectSegments: 64 } });
      const dev0 = w.m.hv.iommu.addDevice({ name: 'disk0', owner: 0, mode: c.mode });
      if (!dev0.ok) throw new Error(dev0.error);
      const disk = new RamDisk({ sectors: 16384 });
      const ctrl = new DmaDiskController(new MachineLayout(w.m.mem), dev0.value.blockAddr, disk, { spinUs: 0, maxSegs: 256 });
      w.pollers.push(() => ctrl.processOnce());
      const dma = createDmaApi(w.dom0, dev0.value, c.dma);
      if (!dma.ok) throw new Error(describeDmaError(dma.error));
      const drv = DmaDiskDriver.attach(w.dom0, dma.value, { entries: 32, maxSegs: 64 });
      if (!drv.ok) throw new Error(describeDiskDriverError(drv.error));
      const storage = new DmaDiskStorage(drv.value);
      const g = await w.addGuest(1, { maxQueues: 1, persistent: c.back === 'persistent' });
      const dev = await w.addDisk(g, XVDA, { storage });
      const r = await verifiedJob(w, dev, { size: 1 << 20, iodepth: 16 }, 1);
      expect(r.mismatches).to.equal(0);
      // A 128 KiB write goes as one indirect request and one DMA descriptor list.
      const big = new Uint8Array(128 * 1024).map((_, i) => (i * 3) & 0xff);
      expect(await w.within(dev.write(8192, big), 'big write')).to.equal('ok');
      const onDisk = new Uint8Array(big.length);
      unwrap(disk.read(8192, onDisk), 'disk read');
      expect(Buffer.compare(onDisk, big)).to.equal(0);
      expect(await w.within(dev.flush(), 'flush')).to.equal('ok');
      const cc = ctrl.counters();
      expect(cc.reads).to.equal(256);
      expect(cc.writes).to.equal(257);
      expect(cc.flushes).to.equal(1);
      expect(cc.dmaFaults).to.equal(0);
      expect(ctrl.view.counters().strayDma, 'DMA only into frames dom0 owns or has mapped').to.equal(0);
      expect(storage.refused).to.equal(0);
      const b = w.backDevice(1)!.snapshot();
      expect(b.error_responses).to.equal(0);
      expect(drv.value.counters().interrupts).to.be.greaterThan(0);
    });
  }
});
