/**
 * Flush, barrier and discard through the whole path: what the guest asks
 * for reaches the medium (a FileDisk's flush is an fdatasync: the bytes are
 * in the file for whoever opens it next), and an EOPNOTSUPP clears the
 * feature in blkfront as Linux's blkif_interrupt does.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDisk } from '../../../dom0/devices/disk-store-file.ts';
import { RamDisk } from '../../../dom0/devices/disk-store.ts';
import { DiskStoreStorage } from '../../../dom0/blkback/storage.ts';
import { unwrap } from '../../../shared/result.ts';
import { BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_WRITE_BARRIER } from '../../../shared/abi/blkif.ts';
import { BlkWorld } from '../../helpers/blk-world.ts';
import { GatedStorage, RefusingStorage } from '../../helpers/blk-storage.ts';

const XVDA = 51712;

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('flush, barrier and discard (one thread)', function () {
  this.timeout(30000);
  let w: BlkWorld;
  let dir = '';
  afterEach(async () => {
    await w?.close();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  it('discards on a RamDisk: the range reads back as zeros and the rest is kept', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const ram = new RamDisk({ sectors: 16384 });
    const dev = await w.addDisk(g, XVDA, { disk: ram });
    const data = pattern(256 * 1024, 3);
    expect(await w.within(dev.write(0, data), 'write')).to.equal('ok');
    expect(await w.within(dev.discard(128, 256), 'discard')).to.equal('ok'); // 128 KiB from 64 KiB
    const back = new Uint8Array(data.length);
    expect(await w.within(dev.read(0, back), 'read')).to.equal('ok');
    expect(Buffer.compare(back.subarray(0, 65536), data.subarray(0, 65536))).to.equal(0);
    expect(back.subarray(65536, 65536 + 131072).every((x) => x === 0)).to.equal(true);
    expect(Buffer.compare(back.subarray(196608), data.subarray(196608))).to.equal(0);
    expect(await w.within(dev.flush(), 'flush')).to.equal('ok');
    const c = w.backDevice(1)!.snapshot();
    expect(c.ds_req).to.equal(1);
    expect(c.f_req).to.equal(1);
    expect(ram.counters().discards).to.equal(1);
    expect(ram.counters().flushes).to.equal(1);
    // Out of range and zero-length discards are refused in the guest.
    expect(await dev.discard(16384 - 1, 2)).to.equal('error');
    expect(await dev.discard(0, 0)).to.equal('error');
  });

  it('makes a FileDisk write durable only on flush: a reopened image shows it after, not before', async () => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-blk-'));
    const path = join(dir, 'disk.img');
    const disk = unwrap(FileDisk.open({ path, sectors: 8192, volatileWriteCache: true }), 'open');
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const dev = await w.addDisk(g, XVDA, { disk });
    const data = pattern(64 * 1024, 9);
    expect(await w.within(dev.write(1000, data), 'write')).to.equal('ok');
    const peek = (): Uint8Array => {
      const other = unwrap(FileDisk.open({ path, readOnly: true }), 'reopen');
      const b = new Uint8Array(data.length);
      unwrap(other.read(1000, b), 'read file');
      other.close();
      return b;
    };
    expect(Buffer.compare(peek(), data), 'in the file before flush').to.not.equal(0);
    expect(await w.within(dev.flush(), 'flush')).to.equal('ok');
    expect(Buffer.compare(peek(), data), 'in the file after flush').to.equal(0);
    expect(disk.counters().flushes).to.equal(1);
  });

  it('clears flush after the backend answers EOPNOTSUPP, then completes later flushes at once', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const storage = new RefusingStorage(new DiskStoreStorage(w.dom0.mem, new RamDisk({ sectors: 4096 })), ['flush', 'discard']);
    const dev = await w.addDisk(g, XVDA, { storage });
    expect(dev.flushOp).to.equal(BLKIF_OP_FLUSH_DISKCACHE);
    expect(await w.within(dev.flush(), 'flush')).to.equal('eopnotsupp');
    expect(dev.flushOp).to.equal(-1);
    const reqs = w.backDevice(1)!.snapshot().ring_requests;
    expect(await w.within(dev.flush(), 'flush 2')).to.equal('ok');
    expect(await w.within(dev.discard(0, 8), 'discard')).to.equal('eopnotsupp');
    expect(await w.within(dev.discard(0, 8), 'discard 2')).to.equal('eopnotsupp');
    // The second flush and the second discard never reached the ring.
    expect(w.backDevice(1)!.snapshot().ring_requests).to.equal(reqs + 1);
    expect(storage.refused).to.equal(2);
    expect(dev.counters().features_cleared).to.equal(2);
    // Data still flows.
    const d = pattern(4096, 1);
    expect(await w.within(dev.write(8, d), 'write')).to.equal('ok');
  });

  it('uses WRITE_BARRIER when that is all the backend offers, and holds it until earlier writes are answered', async () => {
    w = await BlkWorld.create({ backend: { device: { barrier: true } } });
    const gate = new GatedStorage(new DiskStoreStorage(w.dom0.mem, new RamDisk({ sectors: 4096 }), { flush: false }));
    const g = await w.addGuest(1, { maxQueues: 1 });
    const dev = await w.addDisk(g, XVDA, { storage: gate });
    expect(dev.flushOp).to.equal(BLKIF_OP_WRITE_BARRIER);
    gate.hold = true;
    const writes = [0, 8, 16].map((s) => dev.write(s, pattern(4096, s)));
    await w.until(() => gate.heldCount === 3 || undefined, 'writes at the medium');
    let flushed = false;
    const f = dev.flush().then((s) => { flushed = true; return s; });
    await w.until(() => w.backDevice(1)!.snapshot().f_req === 1 || undefined, 'barrier consumed');
    for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
    expect(flushed).to.equal(false); // drained first
    gate.hold = false;
    gate.release();
    expect(await w.within(Promise.all(writes), 'writes')).to.deep.equal(['ok', 'ok', 'ok']);
    expect(await w.within(f, 'barrier')).to.equal('ok');
    // Nothing after the barrier ran before it: the medium saw three writes and then nothing else (no flush op on a cacheless disk).
    expect(gate.seen.map((s) => s.op)).to.deep.equal(['write', 'write', 'write']);
  });
});
