/**
 * blkback's persistent-grant cache on its own, with an injected clock:
 * Linux's limit (1056), LRU purge of idle grants down to 5 % below the limit
 * every 100 ms when full, and grants unused for 60 s dropped.
 */
import { expect } from 'chai';
import { RamDisk } from '../../../dom0/devices/disk-store.ts';
import { LRU_INTERVAL_MS, MAX_PERSISTENT_GRANTS, PERSISTENT_GRANT_UNUSED_MS, PersistentGrantCache } from '../../../dom0/blkback/persistent.ts';
import type { GrantHandle, Gref, Pfn } from '../../../shared/types.ts';
import { BlkWorld, verifiedJob } from '../../helpers/blk-world.ts';

function cache(max?: number): { c: PersistentGrantCache; clock: { t: number } } {
  const clock = { t: 1000 };
  return { c: new PersistentGrantCache({ max, clock: () => clock.t }), clock };
}
const add = (c: PersistentGrantCache, gref: number, now: number) => c.add(gref as Gref, (100000 + gref) as Pfn, gref as GrantHandle, false, now);

describe('persistent-grant cache (dom0/blkback/persistent.ts)', () => {
  it('uses Linux\'s defaults: 1056 grants, 60 s unused, 100 ms between purges', () => {
    expect(MAX_PERSISTENT_GRANTS).to.equal(1056);
    expect(PERSISTENT_GRANT_UNUSED_MS).to.equal(60_000);
    expect(LRU_INTERVAL_MS).to.equal(100);
    expect(cache().c.max).to.equal(1056);
  });

  it('hits what it holds, refuses to grow past max, and marks itself overflowing', () => {
    const { c, clock } = cache();
    for (let g = 0; g < 1056; g++) expect(add(c, g, clock.t), `add ${g}`).to.not.equal(undefined);
    expect(c.full).to.equal(true);
    expect(add(c, 5000, clock.t)).to.equal(undefined);
    expect(c.overflow).to.equal(true);
    expect(c.get(17, clock.t)?.pfn).to.equal(100017);
    expect(c.get(5000, clock.t)).to.equal(undefined);
    expect(add(c, 17, clock.t), 'a gref already cached is not added twice').to.equal(undefined);
  });

  it('purges the least recently used idle grants to 5 % below the limit, never an active one, and only once per interval', () => {
    const { c, clock } = cache();
    for (let g = 0; g < 1056; g++) c.put(add(c, g, clock.t + g)!); // idle, used in gref order
    // Grant 0, the least recently used, is in use by a request now.
    expect(c.get(0, clock.t)!.active).to.equal(1);
    clock.t += 50;
    expect(c.purge(clock.t)).to.have.length(0); // < 100 ms since the cache was made
    clock.t += 100;
    const dropped = c.purge(clock.t);
    // num_clean = count - max + max/100*5 = 0 + 10*5 = 50 (Linux's integer division).
    expect(dropped).to.have.length(50);
    expect(dropped.map((g) => g.gref)).to.not.include(0);
    expect(dropped.map((g) => g.gref)).to.deep.equal(Array.from({ length: 50 }, (_, i) => i + 1)); // least recently used first
    expect(c.size).to.equal(1006);
    expect(c.purge(clock.t + 10)).to.have.length(0);
  });

  it('drops grants unused for 60 s on the next purge', () => {
    const { c, clock } = cache(64);
    for (let g = 0; g < 10; g++) c.put(add(c, g, clock.t)!);
    clock.t += 30_000;
    c.put(c.get(3, clock.t)!);
    clock.t += 30_000;
    const dropped = c.purge(clock.t).map((g) => g.gref).sort((a, b) => a - b);
    expect(dropped).to.deep.equal([0, 1, 2, 4, 5, 6, 7, 8, 9]);
    expect(c.has(3)).to.equal(true);
  });

  it('evicts active grants on drain and hands them back for unmapping on their last put', () => {
    const { c, clock } = cache(8);
    const a = add(c, 1, clock.t)!;
    c.put(add(c, 2, clock.t)!);
    const idle = c.drain();
    expect(idle.map((g) => g.gref)).to.deep.equal([2]);
    expect(c.size).to.equal(0);
    expect(a.evicted).to.equal(true);
    expect(c.put(a)).to.equal(true);
  });

  it('in blkback: maps beyond a full cache for one request only, purges LRU, drops grants idle 60 s, data intact', async function () {
    this.timeout(30000);
    // Every reading of the backend's clock moves it on 10 ms: purge intervals pass as work is done.
    const clock = { t: 0 };
    const w = await BlkWorld.create({ backend: { mode: 'persistent', device: { maxPersistentGrants: 100, clock: () => (clock.t += 10) } } });
    try {
      const g = await w.addGuest(1, { maxQueues: 1 });
      const dev = await w.addDisk(g, 51712);
      const r = await verifiedJob(w, dev, { size: 2 << 20, bs: 16384, iodepth: 32 }, 1);
      expect(r.mismatches).to.equal(0);
      const back = w.backDevice(1)!;
      const c = back.snapshot();
      expect(c.persistent_overflow_maps).to.be.greaterThan(0); // 128 pages in use, room for 100
      expect(c.persistent_purged).to.be.greaterThan(0);
      expect(c.persistent_grants).to.be.at.most(100);
      // A minute of silence: the next request purges every idle grant.
      clock.t += 61_000;
      const buf = new Uint8Array(4096);
      expect(await w.within(dev.read(0, buf), 'read')).to.equal('ok');
      const after = back.snapshot();
      expect(after.persistent_grants).to.be.at.most(1);
      expect(after.grant_maps - after.grant_unmaps).to.equal(1 + after.persistent_grants); // ring + what stays cached
    } finally {
      await w.close();
    }
  });

  it('in blkback: one cache per ring, each to its own limit, and none grows into the ballooned pages the rings still need', async function () {
    this.timeout(30000);
    // 2 queues × up to 1056 cached grants each would be 2112 mappings; dom0 has room for 700.
    const w = await BlkWorld.create({ dom0ForeignPages: 700 });
    try {
      const g = await w.addGuest(1, { maxQueues: 2, maxIndirectSegments: 32 });
      const dev = await w.addDisk(g, 51712, { disk: new RamDisk({ sectors: 16384 }) });
      const r = await verifiedJob(w, dev, { size: 6 << 20, bs: 128 * 1024, iodepth: 16 }, 1);
      expect(r.mismatches).to.equal(0);
      const back = w.backDevice(1)!;
      const c = back.snapshot();
      expect(c.error_responses, 'no request failed for want of a page').to.equal(0);
      expect(c.persistent_overflow_maps, 'past the reserve, grants were mapped per request').to.be.greaterThan(0);
      expect(back.rings).to.have.length(2);
      for (const ring of back.rings) expect(ring.cachedGrants, `queue ${ring.queue} cached some`).to.be.greaterThan(0);
      expect(c.persistent_grants).to.equal(back.rings.reduce((n, ring) => n + ring.cachedGrants, 0));
      expect(c.persistent_grants).to.be.below(700);
    } finally {
      await w.close();
    }
  });
});
