/**
 * The three ways blkback moves data (persistent grants, batched map/unmap,
 * grant copy), indirect descriptors on and off, several queues and
 * multi-page rings — each proven with a verified fio job and the counters
 * that say the path taken was the one intended.
 */
import { expect } from 'chai';
import { Dom0RamStorage } from '../../../dom0/blkback/storage.ts';
import { BlkWorld, verifiedJob } from '../../helpers/blk-world.ts';

const XVDA = 51712;

function fill(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1103515245) + 12345) >>> 0; b[i] = x >>> 24; }
  return b;
}

describe('blkback data movement and blkif features (one thread)', function () {
  this.timeout(30000);
  let w: BlkWorld;
  afterEach(async () => { await w?.close(); });

  for (const mode of ['persistent', 'map', 'copy'] as const) {
    it(`moves verified data in ${mode} mode, with the grant operations that mode implies`, async () => {
      w = await BlkWorld.create({ backend: { mode } });
      const g = await w.addGuest(1, { persistent: mode === 'persistent', maxQueues: 1 });
      const dev = await w.addDisk(g, XVDA);
      const r = await verifiedJob(w, dev, { size: 1 << 20, iodepth: 8 }, 1);
      expect(r.mismatches).to.equal(0);
      const c = w.backDevice(1)!.snapshot();
      const reqs = c.ring_requests;
      const ringPages = 1; // the one queue's ring page, mapped at connect
      expect(reqs).to.equal(512);
      expect(w.backDevice(1)!.mode).to.equal(mode);
      if (mode === 'persistent') {
        expect(c.grant_copies).to.equal(0);
        expect(c.unmap_hypercalls).to.equal(0);
        expect(c.persistent_hits + c.persistent_misses).to.equal(512);
        expect(c.persistent_misses).to.be.at.most(16); // the frontend's LIFO pool stays small
        expect(c.hypercalls / reqs).to.be.below(0.05);
      } else if (mode === 'map') {
        expect(c.grant_maps - ringPages).to.equal(512);
        expect(c.grant_unmaps).to.equal(512);
        expect(c.grant_copies).to.equal(0);
        // Batched: one map and one unmap hypercall per batch of requests, not per request.
        expect(c.map_hypercalls).to.be.below(reqs / 2);
        expect(c.unmap_hypercalls).to.be.below(reqs / 2);
        expect(c.persistent_hits).to.equal(0);
      } else {
        expect(c.grant_maps - ringPages).to.equal(0);
        expect(c.grant_copies).to.equal(512);
        expect(c.copy_hypercalls).to.be.below(reqs / 2);
      }
      expect(dev.counters().grants_issued).to.be.greaterThan(0);
    });
  }

  it('sends a 1 MiB write as one indirect request when indirect is on, and as 44 KiB requests when it is off', async () => {
    for (const maxIndirect of [256, 0]) {
      w = await BlkWorld.create({ backend: { maxIndirectSegments: maxIndirect } });
      const g = await w.addGuest(1, { maxIndirectSegments: 256 });
      const dev = await w.addDisk(g, XVDA);
      const data = fill(1 << 20, 42);
      const before = w.backDevice(1)!.snapshot().ring_requests;
      expect(await w.within(dev.write(2048, data), 'write')).to.equal('ok');
      const after = w.backDevice(1)!.snapshot();
      const back = new Uint8Array(1 << 20);
      expect(await w.within(dev.read(2048, back), 'read')).to.equal('ok');
      expect(Buffer.compare(back, data)).to.equal(0);
      if (maxIndirect > 0) {
        expect(after.ring_requests - before).to.equal(1);
        expect(after.indirect_requests).to.equal(1);
        expect(dev.segsPerRequest).to.equal(256);
      } else {
        expect(after.ring_requests - before).to.equal(Math.ceil((1 << 20) / (44 * 1024))); // 24
        expect(after.indirect_requests).to.equal(0);
        expect(dev.segsPerRequest).to.equal(11);
      }
      await w.close();
    }
  });

  it('splits an I/O larger than the indirect limit into several indirect requests, each at most that size', async () => {
    w = await BlkWorld.create({ backend: { maxIndirectSegments: 32 } });
    const g = await w.addGuest(1, { maxIndirectSegments: 256 });
    const dev = await w.addDisk(g, XVDA);
    const data = fill(4 << 20, 7);
    const w0 = w.backDevice(1)!.snapshot();
    expect(await w.within(dev.write(0, data), 'write')).to.equal('ok');
    const w1 = w.backDevice(1)!.snapshot();
    expect(w1.indirect_requests - w0.indirect_requests).to.equal(32); // 4 MiB / 128 KiB
    const back = new Uint8Array(4 << 20);
    expect(await w.within(dev.read(0, back), 'read')).to.equal('ok');
    expect(Buffer.compare(back, data)).to.equal(0);
  });

  it('uses every queue it negotiated, each with its own ring and event channel', async () => {
    w = await BlkWorld.create({ backend: { maxQueues: 4 } });
    const g = await w.addGuest(1, { maxQueues: 3 });
    const dev = await w.addDisk(g, XVDA);
    expect(dev.queues).to.have.length(3);
    expect(new Set(dev.queues.map((q) => q.port)).size).to.equal(3);
    const rd = async (p: string) => (await w.xs.dom0.readString(p));
    const fe = `/local/domain/1/device/vbd/${XVDA}`;
    const nq = await rd(`${fe}/multi-queue-num-queues`);
    expect(nq.ok && nq.value).to.equal('3');
    for (let q = 0; q < 3; q++) {
      const rr = await rd(`${fe}/queue-${q}/ring-ref`);
      const ev = await rd(`${fe}/queue-${q}/event-channel`);
      expect(rr.ok && ev.ok).to.equal(true);
    }
    expect((await rd(`${fe}/ring-ref`)).ok).to.equal(false);
    const r = await verifiedJob(w, dev, { size: 1 << 20, iodepth: 24 }, 1);
    expect(r.mismatches).to.equal(0);
    const back = w.backDevice(1)!;
    expect(back.rings).to.have.length(3);
    for (const q of dev.queues) expect(q.ring.rspCons, `queue ${q.index}`).to.be.greaterThan(100);
  });

  it('runs on order-2 rings (four pages, 128 slots) with 100 requests in flight', async () => {
    w = await BlkWorld.create({ backend: { maxRingPageOrder: 4 } });
    const g = await w.addGuest(1, { maxRingPageOrder: 2, maxQueues: 1 });
    const dev = await w.addDisk(g, XVDA, { storage: new Dom0RamStorage(w.dom0, { sectors: 16384 }) });
    const fe = `/local/domain/1/device/vbd/${XVDA}`;
    const order = await w.xs.dom0.readString(`${fe}/ring-page-order`);
    expect(order.ok && order.value).to.equal('2');
    for (let i = 0; i < 4; i++) expect((await w.xs.dom0.readString(`${fe}/ring-ref${i}`)).ok, `ring-ref${i}`).to.equal(true);
    expect(dev.queues[0]!.ring.size).to.equal(128);
    expect(w.backDevice(1)!.rings[0]!.size).to.equal(128);
    const r = await verifiedJob(w, dev, { size: 2 << 20, iodepth: 100 }, 1);
    expect(r.mismatches).to.equal(0);
  });
});
