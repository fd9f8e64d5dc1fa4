/**
 * blkfront and blkback end to end in one thread: the XenBus handshake with
 * the keys Linux uses, then verified fio jobs (write, then read every block
 * back and check its header) through the real rings, grants and events.
 */
import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { backendPath, frontendPath } from '../../../shared/xenbus/paths.ts';
import { BlkWorld, verifiedJob } from '../../helpers/blk-world.ts';
import { RamDisk, ReadOnlyDisk } from '../../../dom0/devices/disk-store.ts';
import { VDISK_CDROM, VDISK_READONLY, VDISK_REMOVABLE } from '../../../shared/abi/blkif.ts';
import { unwrap } from '../../../shared/result.ts';
import { must } from '../xenbus/helpers.ts';

const XVDA = 51712;

describe('blkfront ⇄ blkback handshake and read-your-writes (one thread)', function () {
  this.timeout(30000);
  let w: BlkWorld;
  afterEach(async () => { await w?.close(); });

  it('connects with the keys Linux writes on both sides', async () => {
    w = await BlkWorld.create({ backend: { maxIndirectSegments: 256, maxRingPageOrder: 4, maxQueues: 4 } });
    const g = await w.addGuest(1, { maxQueues: 1 });
    const dev = await w.addDisk(g, XVDA);
    const id = { type: 'vbd', frontDom: asDomId(1), backDom: asDomId(0), devid: XVDA };
    const rd = async (p: string) => must(await w.xs.dom0.readString(p), p);
    const be = backendPath(id);
    const fe = frontendPath(id);
    expect(await rd(`${be}/state`)).to.equal('4');
    expect(await rd(`${fe}/state`)).to.equal('4');
    for (const [k, v] of Object.entries({
      'feature-persistent': '1', 'feature-max-indirect-segments': '256', 'max-ring-page-order': '4', 'multi-queue-max-queues': '4',
      'feature-flush-cache': '1', 'feature-barrier': '1', 'feature-discard': '1', sectors: '16384', 'sector-size': '512',
      'physical-sector-size': '512', info: '0',
    })) expect(await rd(`${be}/${k}`), k).to.equal(v);
    expect(await rd(`${fe}/protocol`)).to.equal('x86_64-abi');
    expect(await rd(`${fe}/feature-persistent`)).to.equal('1');
    expect(Number(await rd(`${fe}/ring-ref`))).to.be.greaterThan(7);
    expect(Number(await rd(`${fe}/event-channel`))).to.be.greaterThan(0);
    expect((await w.xs.dom0.read(`${fe}/multi-queue-num-queues`)).ok).to.equal(false);
    expect((await w.xs.dom0.read(`${fe}/ring-page-order`)).ok).to.equal(false);
    expect(dev.sectors).to.equal(16384);
    expect(dev.persistent).to.equal(true);
    expect(dev.segsPerRequest).to.equal(256);
    expect(w.backDevice(1)?.mode).to.equal('persistent');
  });

  it('reads back every block a verified fio job wrote, through persistent grants', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1);
    const dev = await w.addDisk(g, XVDA);
    const r = await verifiedJob(w, dev, { size: 2 << 20 }, 1);
    expect(r.writeIos).to.equal(512);
    expect(r.readIos).to.equal(512);
    expect(r.mismatches).to.equal(0);
    expect(r.verified).to.be.greaterThan(0);
    const back = w.backDevice(1)!.snapshot();
    expect(back.rd_req).to.equal(512);
    expect(back.wr_req).to.equal(512);
    expect(back.rd_sect).to.equal(512 * 8);
    expect(back.wr_sect).to.equal(512 * 8);
    expect(back.error_responses).to.equal(0);
    // Persistent: after the pool warmed up, no hypercall per request (one map batch per new page only).
    expect(back.map_hypercalls).to.be.lessThan(40);
    expect(back.unmap_hypercalls).to.equal(0);
    expect(back.persistent_hits).to.be.greaterThan(900);
    const front = dev.counters();
    expect(front.ring_requests).to.equal(1024);
    expect(front.ring_responses).to.equal(1024);
    expect(front.bad_responses).to.equal(0);
    expect(front.notifications_sent! / 1024).to.be.below(0.5);
  });

  it('serves two guests on one dom0, each reading only its own writes', async () => {
    w = await BlkWorld.create();
    const g1 = await w.addGuest(1);
    const g2 = await w.addGuest(2, { persistent: false });
    const d1 = await w.addDisk(g1, XVDA);
    const d2 = await w.addDisk(g2, XVDA);
    const [a, b] = await Promise.all([verifiedJob(w, d1, { size: 1 << 20 }, 1), verifiedJob(w, d2, { size: 1 << 20 }, 2)]);
    expect(a.mismatches).to.equal(0);
    expect(b.mismatches).to.equal(0);
    expect(w.backDevice(1)!.mode).to.equal('persistent');
    expect(w.backDevice(2)!.mode).to.equal('map'); // the guest did not offer feature-persistent
    expect(w.backDevice(2)!.snapshot().grant_maps).to.be.greaterThan(0);
  });

  it('presents read-only media as such: info says so, and guest writes and discards fail before reaching the ring', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const media = new RamDisk({ sectors: 2048 });
    unwrap(media.write(0, new Uint8Array(4096).fill(0x42)), 'master the disc');
    const dev = await w.addDisk(g, 51728, { disk: new ReadOnlyDisk(media), mode: 'r', deviceType: 'cdrom' });
    const info = await w.xs.dom0.readString(`/local/domain/0/backend/vbd/1/51728/info`);
    expect(info.ok && Number(info.value)).to.equal(VDISK_READONLY | VDISK_CDROM | VDISK_REMOVABLE);
    expect(dev.readOnly).to.equal(true);
    const before = w.backDevice(1, 51728)!.snapshot().ring_requests;
    expect(await dev.write(0, new Uint8Array(512))).to.equal('error');
    expect(await dev.discard(0, 8)).to.equal('error');
    expect(w.backDevice(1, 51728)!.snapshot().ring_requests).to.equal(before);
    const b = new Uint8Array(4096);
    expect(await w.within(dev.read(0, b), 'read')).to.equal('ok');
    expect(b.every((x) => x === 0x42)).to.equal(true);
  });

  it('shows blkback\'s counters in the device\'s when given them: costs summed, shared counts apart', async () => {
    w = await BlkWorld.create();
    const peer: { counters?: () => Record<string, number> } = {};
    const g = await w.addGuest(1, { maxQueues: 1, extraCounters: () => peer.counters?.() ?? {} });
    const dev = await w.addDisk(g, XVDA);
    peer.counters = () => ({ ...w.backDevice(1)!.snapshot() });
    await verifiedJob(w, dev, { size: 256 << 10 }, 1);
    const c = dev.counters();
    const b = w.backDevice(1)!.snapshot();
    expect(c.backend_ring_requests).to.equal(b.ring_requests);
    expect(c.ring_requests).to.equal(b.ring_requests);
    expect(c.persistent_hits).to.equal(b.persistent_hits);
    expect(c.notifications_sent).to.be.greaterThan(b.notifications_sent); // the frontend's own sends are added
    expect(c.hypercalls).to.be.at.least(b.hypercalls);
  });
});
