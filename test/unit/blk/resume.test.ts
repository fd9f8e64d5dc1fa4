/**
 * Backend restart with requests in flight (Linux blkfront_resume +
 * blkif_recover): the frontend keeps every request the dead backend never
 * answered, reconnects to the new backend, re-splits them to the NEW limits
 * and re-issues them. Nothing acknowledged is lost, nothing is acknowledged
 * twice, and the old backend's late completions never reach the guest.
 */
import { expect } from 'chai';
import { RamDisk } from '../../../dom0/devices/disk-store.ts';
import { DiskStoreStorage } from '../../../dom0/blkback/storage.ts';
import { asDomId } from '../../../shared/types.ts';
import { backendPath } from '../../../shared/xenbus/paths.ts';
import { XenbusState } from '../../../shared/xenbus/state.ts';
import { BlkWorld } from '../../helpers/blk-world.ts';
import { GatedStorage } from '../../helpers/blk-storage.ts';
import { must } from '../xenbus/helpers.ts';

const XVDA = 51712;
const IO = 128 * 1024;
const SECT = IO / 512;

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; b[i] = x >>> 24; }
  return b;
}

describe('backend restart with requests in flight (one thread)', function () {
  this.timeout(30000);
  let w: BlkWorld;
  afterEach(async () => { await w?.close(); });

  // Old parts are re-split to the new limit, never merged: 128 KiB → 3 × ≤44 KiB, and 3 × ≤44 KiB stay 3.
  for (const [from, to, newRequests] of [
    [{ mode: 'persistent', maxIndirectSegments: 256 }, { mode: 'map', maxIndirectSegments: 0 }, 96],
    [{ mode: 'map', maxIndirectSegments: 0 }, { mode: 'persistent', maxIndirectSegments: 64 }, 96],
  ] as const) {
    it(`re-issues 32 requests after ${from.mode}/${from.maxIndirectSegments} → ${to.mode}/${to.maxIndirectSegments}, split to the new limits, none lost or answered twice`, async () => {
      w = await BlkWorld.create({ backend: { mode: from.mode, maxIndirectSegments: from.maxIndirectSegments } });
      const g = await w.addGuest(1, { maxQueues: 2, maxIndirectSegments: 256 });
      const gate = new GatedStorage(new DiskStoreStorage(w.dom0.mem, new RamDisk({ sectors: 65536 })));
      const dev = await w.addDisk(g, XVDA, { storage: gate });
      // Acknowledged before the restart: must survive it.
      const early = pattern(IO, 999);
      expect(await w.within(dev.write(0, early), 'early write')).to.equal('ok');
      for (let i = 0; i < 16; i++) expect(await w.within(dev.write((16 + i) * SECT, pattern(IO, 500 + i)), 'pre-write')).to.equal('ok');

      // 32 in flight: 16 writes and 16 reads, held before the medium.
      gate.open = false;
      const acks = new Array<number>(32).fill(0);
      const readBufs = Array.from({ length: 16 }, () => new Uint8Array(IO));
      const ios: Promise<string>[] = [];
      for (let i = 0; i < 32; i++) {
        const p = i < 16 ? dev.write((40 + i) * SECT, pattern(IO, i)) : dev.read((i) * SECT, readBufs[i - 16] as Uint8Array);
        ios.push(p.then((s) => { acks[i]!++; return s; }));
      }
      // As many as the rings hold (2 queues × 32 slots); the rest wait in the frontend.
      const oldPerIo = Math.ceil(IO / (dev.segsPerRequest * 4096));
      await w.until(() => gate.queuedCount === Math.min(32 * oldPerIo, 64) || undefined, 'requests at the backend');
      const old = w.backDevice(1)!;
      const oldRsp = old.snapshot().ring_responses;
      expect(dev.backlog).to.equal(32 * oldPerIo);

      // The backend dies (its state left Closed) and a new one, with other limits, takes over.
      const be = backendPath({ type: 'vbd', frontDom: asDomId(1), backDom: asDomId(0), devid: XVDA });
      const fe = g.bus.registered.get(String(XVDA))!;
      await w.restartBackend({ mode: to.mode, maxIndirectSegments: to.maxIndirectSegments }, async () => {
        must(await w.xs.dom0.write(`${be}/state`, String(XenbusState.Closed)), 'state Closed');
        await w.until(() => fe.state === XenbusState.Initialising || undefined, 'frontend to resume');
      });
      await w.within(dev.whenConnected(), 'reconnect');
      expect(dev.counters().requeued).to.equal(32 * oldPerIo);
      const neu = w.backDevice(1)!;
      expect(neu).to.not.equal(old);
      expect(dev.segsPerRequest).to.equal(to.maxIndirectSegments > 11 ? to.maxIndirectSegments : 11);

      // Everything reaches the medium now, the dead backend's copies included.
      gate.openGate();
      const st = await w.within(Promise.all(ios), 'the 32 I/Os');
      expect(st).to.deep.equal(new Array(32).fill('ok'));
      for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
      expect(acks).to.deep.equal(new Array(32).fill(1));
      const nc = neu.snapshot();
      expect(nc.ring_requests).to.equal(newRequests);
      expect(nc.indirect_requests).to.equal(0); // no re-issued part needs more than 11 segments
      expect(nc.error_responses).to.equal(0);
      expect(old.snapshot().ring_responses).to.equal(oldRsp); // the dead ring answered nothing
      expect(dev.counters().bad_responses).to.equal(0);
      // Reads saw the data written before the restart; writes and early data are all there.
      for (let i = 0; i < 16; i++) expect(Buffer.compare(readBufs[i]!, pattern(IO, 500 + i)), `read ${i}`).to.equal(0);
      const back = new Uint8Array(IO);
      for (let i = 0; i < 16; i++) {
        expect(await w.within(dev.read((40 + i) * SECT, back), 'read back')).to.equal('ok');
        expect(Buffer.compare(back, pattern(IO, i)), `write ${i}`).to.equal(0);
      }
      expect(await w.within(dev.read(0, back), 'early')).to.equal('ok');
      expect(Buffer.compare(back, early)).to.equal(0);
      // The old backend let go of every page once its I/O finished: the guest got them all back.
      expect(dev.retryRetired()).to.equal(0);
      expect(old.rings).to.have.length(0);
    });
  }

  it('fails what is in flight on an orderly close instead of keeping it', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const gate = new GatedStorage(new DiskStoreStorage(w.dom0.mem, new RamDisk({ sectors: 4096 })));
    const dev = await w.addDisk(g, XVDA, { storage: gate });
    gate.open = false;
    const p = dev.write(0, pattern(4096, 1));
    await w.until(() => gate.queuedCount === 1 || undefined, 'in flight');
    g.bus.registered.get(String(XVDA))!.close();
    expect(await w.within(p, 'failed write')).to.equal('error');
    gate.openGate();
  });
});
