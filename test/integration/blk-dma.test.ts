/**
 * A vbd served through dom0's DMA API and the DMA block controller, across
 * real workers: the toolstack (Machine.attachDisk with `device`, xl's
 * backendtype=phy) plugs a controller into its own device worker, dom0 drives
 * it (attachVbdDmaDisk), and the vbd's params name it ("dma:vbd-1-51712"). blkback maps the guest's grants for the device too,
 * the DMA API turns them into bus addresses, and the controller moves the
 * data between its medium and the guest's own frames: a verified job reads
 * back what it wrote, and no DMA strays outside what dom0 owns or mapped.
 */
import { expect } from 'chai';
import { Machine } from '../../toolstack/machine.ts';
import type { DiskControllerCounters } from '../../dom0/devices/dma-disk-controller.ts';
import type { FioJobSpec } from '../../domU/workloads/fio-engine.ts';
import { unwrap } from '../../shared/result.ts';

const XVDA = 51712;
const SECTORS = 1 << 15; // 16 MiB on the controller

describe('a vbd on the DMA block controller, across real workers', function () {
  this.timeout(120_000);

  for (const mode of ['persistent', 'map'] as const) {
    it(`reads back a verified job's writes with ${mode} grants, the controller DMAing into the guest's frames`, async () => {
      const m = await Machine.boot({ memBytes: 256 << 20 });
      try {
        await m.createDomain({
          name: 'Domain-0', domid: 0, memoryKiB: 64 * 1024, model: 'p2m', privileged: true, drivers: { blkback: { mode, maxIndirectSegments: 64 } },
        });

        const g = await m.createDomain({ name: 'guest1', memoryKiB: 32 * 1024, model: 'vp', drivers: { blkfront: { maxQueues: 1, maxIndirectSegments: 64 } } });
        // xl's backendtype=phy: the toolstack plugs a controller in for dom0, which drives it through its p2m DMA API.
        await m.attachDisk(g.domid, { vdev: 'xvda', target: `ram:${SECTORS / 2048}M`, device: { dma: 'p2m' } });
        const params = unwrap(await m.dom0!.xsRead(`/local/domain/0/backend/vbd/${g.domid}/${XVDA}/params`));
        expect(params).to.equal(`dma:vbd-${g.domid}-${XVDA}`);
        const disk = m.devices.list.find((d) => d.info.name === params.slice(4))!;
        const jobs: FioJobSpec[] = [
          { name: 'w', rw: 'randwrite', bs: 16384, iodepth: 16, size: 4 << 20, verify: true, do_verify: false, randseed: 3 },
          { name: 'big', rw: 'write', bs: 256 * 1024, iodepth: 4, size: 4 << 20, offset: 4 << 20, verify: true, do_verify: false, stonewall: true },
          { name: 'r', rw: 'read', bs: 64 * 1024, iodepth: 8, size: 8 << 20, verify: true, stonewall: true },
        ];
        const r = unwrap(await m.domU(g.domid).runFio(XVDA, jobs));
        for (const j of r.jobs) expect(j.error, `${j.jobname}: ${j.xensim.error_message ?? ''}`).to.equal(0);
        const rj = r.jobs[2]!;
        expect(rj.read.io_bytes).to.equal(8 << 20);
        expect(rj.xensim.verify?.mismatches).to.equal(0);
        expect(rj.xensim.verify?.verified_sectors).to.be.greaterThan(0);

        const back = (await m.dom0!.vbdStats())[0]!.counters;
        expect(back.error_responses).to.equal(0);
        expect(back.rd_req + back.wr_req).to.be.greaterThan(0);
        if (mode === 'persistent') expect(back.persistent_hits).to.be.greaterThan(0);
        const cc = (await disk.control.counters()) as DiskControllerCounters;
        // The controller did the I/O (every blkback request is at least one descriptor), by DMA, with no fault.
        expect(cc.reads).to.be.at.least(back.rd_req);
        expect(cc.writes).to.be.at.least(back.wr_req);
        expect(cc.dmaFaults).to.equal(0);
        expect((await disk.control.iommu()).strayDma, 'DMA only into frames dom0 owns or has mapped').to.equal(0);
        expect((await m.hv.reconcile()).ok).to.equal(true);
        // Unplugging the disk unplugs its controller too; destroying a guest unplugs its disks' controllers.
        await m.detachDisk(g.domid, XVDA);
        expect(m.devices.list.map((d) => d.info.name)).to.not.include(params.slice(4));
        await m.attachDisk(g.domid, { vdev: 'xvdb', target: 'ram:4M', device: { dma: 'swiotlb' } });
        expect(m.devices.list).to.have.length(1);
        await m.destroyDomain(g.domid);
        expect(m.devices.list).to.deep.equal([]);
      } finally {
        await m.shutdown();
      }
    });
  }

  it('refuses a controller dom0 cannot drive, or a medium it cannot hold, leaving no device behind', async () => {
    const m = await Machine.boot({ memBytes: 128 << 20 });
    try {
      await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 32 * 1024, model: 'p2m', privileged: true });
      const g = await m.createDomain({ name: 'guest1', memoryKiB: 16 * 1024, model: 'vp' });
      let e = '';
      await m.attachDisk(g.domid, { vdev: 'xvda', target: 'ram:4M', device: { dma: 'direct' } }).catch((x: Error) => { e = x.message; });
      expect(e).to.contain('dom0 cannot drive the disk controller through the direct DMA API');
      e = '';
      await m.attachDisk(g.domid, { vdev: 'xvdb', target: '/tmp/x.img', device: { dma: 'swiotlb' } }).catch((x: Error) => { e = x.message; });
      expect(e).to.equal('attachDisk: a disk served by a DMA controller needs a ram:SIZE medium, got /tmp/x.img');
      expect(m.devices.list).to.deep.equal([]);
      // No vbd directory was written either.
      expect((await m.dom0!.xsDirectory(`/local/domain/0/backend/vbd/${g.domid}`)).ok).to.equal(false);
    } finally {
      await m.shutdown();
    }
  });
});
