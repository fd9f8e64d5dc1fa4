/**
 * A vbd served through dom0's DMA API and the DMA block controller, across
 * real workers: the controller runs in its own device worker, dom0 drives
 * it (attachVbdDmaDisk), and the toolstack attaches a disk whose params
 * name it ("dma:disk0"). blkback maps the guest's grants for the device too,
 * the DMA API turns them into bus addresses, and the controller moves the
 * data between its medium and the guest's own frames: a verified job reads
 * back what it wrote, and no DMA strays outside what dom0 owns or mapped.
 */
import { expect } from 'chai';
import type * as Comlink from 'comlink';
import { Machine } from '../../toolstack/machine.ts';
import { DeviceHost } from '../../toolstack/device-host.ts';
import type { DiskControllerCounters } from '../../dom0/devices/dma-disk-controller.ts';
import type { FioJobSpec } from '../../domU/workloads/fio-engine.ts';
import { unwrap } from '../../shared/result.ts';
import type { DmaVbdDom0Agent } from '../helpers/blk-dma-dom0-main.ts';

const XVDA = 51712;
const SECTORS = 1 << 15; // 16 MiB on the controller

describe('a vbd on the DMA block controller, across real workers', function () {
  this.timeout(120_000);

  for (const mode of ['persistent', 'map'] as const) {
    it(`reads back a verified job's writes with ${mode} grants, the controller DMAing into the guest's frames`, async () => {
      const m = await Machine.boot({ memBytes: 256 << 20 });
      try {
        const h0 = await m.createDomain({
          name: 'Domain-0', domid: 0, memoryKiB: 64 * 1024, model: 'p2m', privileged: true, kind: 'dom0',
          entry: new URL('../helpers/blk-dma-dom0-main.ts', import.meta.url), drivers: { blkback: { mode, maxIndirectSegments: 64 } },
        });
        const d0 = h0.agent as unknown as Comlink.Remote<DmaVbdDom0Agent>;
        const host = new DeviceHost(m);
        const disk = await host.add({ kind: 'dma-disk', name: 'disk0', owner: 0, mode: 'passthrough', sectors: SECTORS, maxSegs: 256 });
        expect(unwrap(await d0.attachVbdDmaDisk(disk.info, { kind: 'p2m' }, { entries: 32, maxSegs: 64 }))).to.equal(SECTORS);

        const g = await m.createDomain({ name: 'guest1', memoryKiB: 32 * 1024, model: 'vp', drivers: { blkfront: { maxQueues: 1, maxIndirectSegments: 64 } } });
        await m.attachDisk(g.domid, { vdev: 'xvda', target: 'dma:disk0' });
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
      } finally {
        await m.shutdown();
      }
    });
  }
});
