/**
 * Backpressure, never loss: a full ring, an exhausted grant table and a
 * backend out of request slots (xentop's VBD_OO) all make requests wait, and
 * every one of them completes with its data intact once room comes back.
 */
import { expect } from 'chai';
import { RamDisk } from '../../../dom0/devices/disk-store.ts';
import { DiskStoreStorage } from '../../../dom0/blkback/storage.ts';
import { BlkWorld, verifiedJob } from '../../helpers/blk-world.ts';
import { GatedStorage } from '../../helpers/blk-storage.ts';

const XVDA = 51712;

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed * 101) & 0xff;
  return b;
}

describe('backpressure (one thread)', function () {
  this.timeout(30000);
  let w: BlkWorld;
  afterEach(async () => { await w?.close(); });

  it('queues requests beyond the ring in the frontend and issues them as slots free up', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const gate = new GatedStorage(new DiskStoreStorage(w.dom0.mem, new RamDisk({ sectors: 8192 })));
    const dev = await w.addDisk(g, XVDA, { storage: gate });
    gate.hold = true;
    const ps = Array.from({ length: 100 }, (_, i) => dev.write(i * 8, pattern(4096, i)));
    await w.until(() => gate.heldCount === 32 || undefined, 'a ring full at the backend');
    expect(dev.backlog).to.equal(100);
    expect(dev.queues[0]!.waitingCount).to.equal(68);
    expect(dev.counters().ring_full_stalls).to.be.greaterThan(0);
    gate.hold = false;
    gate.release();
    expect(await w.within(Promise.all(ps), 'all writes')).to.deep.equal(new Array(100).fill('ok'));
    const b = new Uint8Array(4096);
    for (const i of [0, 31, 32, 99]) {
      expect(await w.within(dev.read(i * 8, b), 'read')).to.equal('ok');
      expect(Buffer.compare(b, pattern(4096, i))).to.equal(0);
    }
  });

  it('waits for grant references when the guest\'s grant table is exhausted, then completes every write', async () => {
    w = await BlkWorld.create({ backend: { mode: 'map' } });
    // One grant frame: 512 entries, 8 reserved, one for the ring: fewer than four 1 MiB writes need.
    const g = await w.addGuest(1, { maxQueues: 1, persistent: false }, 'vp', 48 << 10, 1);
    const dev = await w.addDisk(g, XVDA);
    const datas = [0, 1, 2, 3].map((i) => pattern(1 << 20, i));
    const ps = datas.map((d, i) => dev.write(i * 2048, d));
    expect(await w.within(Promise.all(ps), 'writes')).to.deep.equal(['ok', 'ok', 'ok', 'ok']);
    expect(dev.counters().grant_stalls).to.be.greaterThan(0);
    const b = new Uint8Array(1 << 20);
    for (let i = 0; i < 4; i++) {
      expect(await w.within(dev.read(i * 2048, b), 'read')).to.equal('ok');
      expect(Buffer.compare(b, datas[i]!)).to.equal(0);
    }
    expect(g.k.gnttab.freeCount).to.equal(512 - 8 - 1); // every data grant revoked and freed
  });

  it('resumes every ring parked on a full storage queue when another ring\'s I/O completes (the queue is the device\'s)', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 4 });
    const storage = new GatedStorage(new DiskStoreStorage(w.dom0.mem, new RamDisk({ sectors: 16384 })), 2);
    const dev = await w.addDisk(g, XVDA, { storage });
    expect(dev.queues.length).to.equal(4);
    storage.hold = true;
    const ps = Array.from({ length: 64 }, (_, i) => dev.write(i * 8, pattern(4096, i + 7)));
    await w.until(() => storage.heldCount === 2 || undefined, 'the storage queue full');
    for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
    expect(w.backDevice(1)!.snapshot().oo_req).to.be.greaterThan(0);
    // Only the ring whose I/O completes is interrupted; its siblings parked on the shared queue must resume too.
    storage.hold = false;
    storage.release();
    expect(await w.within(Promise.all(ps), 'writes on every ring')).to.deep.equal(new Array(64).fill('ok'));
  });

  it('stops consuming when its storage queue is full (oo_req) and resumes on completion, losing nothing', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const storage = new GatedStorage(new DiskStoreStorage(w.dom0.mem, new RamDisk({ sectors: 16384 })), 4);
    const dev = await w.addDisk(g, XVDA, { storage });
    storage.hold = true;
    const ps = Array.from({ length: 16 }, (_, i) => dev.write(i * 8, pattern(4096, i + 50)));
    await w.until(() => storage.heldCount === 4 || undefined, 'four at the medium');
    for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
    const c = w.backDevice(1)!;
    expect(storage.heldCount).to.equal(4);
    expect(c.snapshot().oo_req).to.be.greaterThan(0);
    expect(c.vbdStats(XVDA).ooReqs).to.equal(c.snapshot().oo_req);
    storage.hold = false;
    storage.release();
    expect(await w.within(Promise.all(ps), 'writes')).to.deep.equal(new Array(16).fill('ok'));
    const r = await verifiedJob(w, dev, { size: 1 << 20, iodepth: 32 }, 1);
    expect(r.mismatches).to.equal(0);
  });
});
