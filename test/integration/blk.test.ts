/**
 * The block split driver end to end across real workers: blkfront in each
 * domU, blkback in dom0, disks behind it, fio-like verified workloads.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, openSync, readSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine } from '../../toolstack/machine.ts';
import type { DriverOptions } from '../../toolstack/worker-data.ts';
import type { FioJobSpec } from '../../domU/workloads/fio-engine.ts';
import { VERIFY_MAGIC, VERIFY_HDR } from '../../domU/workloads/verify.ts';
import { unwrap } from '../../shared/result.ts';

const mixed = (name: string, extra: Partial<FioJobSpec> = {}): FioJobSpec => ({
  name, rw: 'randrw', bs: 4096, iodepth: 16, size: 4 << 20, runtime: 0.5, time_based: true, verify: true, ...extra,
});
const readBack = (name: string, size = 4 << 20): FioJobSpec => ({ name, rw: 'read', bs: 64 * 1024, iodepth: 8, size, verify: true });

async function boot(domUs: number, dom0Drivers?: DriverOptions, domUDrivers?: DriverOptions): Promise<{ m: Machine; guests: number[] }> {
  const m = await Machine.boot({ memBytes: 512 << 20 });
  await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 96 * 1024, model: 'p2m', privileged: true, drivers: dom0Drivers });
  const guests: number[] = [];
  for (let i = 1; i <= domUs; i++) {
    const g = await m.createDomain({ name: `guest${i}`, memoryKiB: 32 * 1024, model: 'vp', drivers: domUDrivers });
    await m.attachDisk(g.domid, { vdev: 'xvda', target: 'ram:32M' });
    guests.push(g.domid);
  }
  return { m, guests };
}

function job0(j: { jobs: unknown[] }) {
  return j.jobs[0] as { error: number; read: { io_bytes: number }; write: { io_bytes: number }; xensim: { counters: Record<string, number>; verify?: { mismatches?: number } } };
}

describe('block split driver across real workers', function () {
  this.timeout(180_000);

  for (const n of [1, 2, 4]) {
    it(`reads back every acknowledged write with ${n} domU${n > 1 ? 's' : ''} on one dom0`, async () => {
      const { m, guests } = await boot(n);
      try {
        const runs = await Promise.all(guests.map((d) => m.domU(d).runFio(51712, [mixed(`g${d}`)])));
        for (const r of runs) expect(job0(unwrap(r)).error).to.equal(0);
        // A second pass reads the whole region back and checks every sector's header.
        const back = await Promise.all(guests.map((d) => m.domU(d).runFio(51712, [readBack(`back${d}`)])));
        for (const r of back) {
          const j = job0(unwrap(r));
          expect(j.error).to.equal(0);
          expect(j.read.io_bytes).to.equal(4 << 20);
        }
        const stats = await m.dom0!.vbdStats();
        expect(stats.map((s) => s.frontDom).sort()).to.deep.equal(guests);
        for (const s of stats) expect((s.counters.rd_req ?? 0) + (s.counters.wr_req ?? 0)).to.be.greaterThan(0);
        expect((await m.hv.reconcile()).ok).to.equal(true);
      } finally {
        await m.shutdown();
      }
    });
  }

  for (const mode of ['persistent', 'map', 'copy'] as const) {
    it(`moves data with ${mode} grants, and the counters say so`, async () => {
      const { m, guests } = await boot(1, { blkback: { mode } });
      try {
        const d = guests[0] as number;
        expect(job0(unwrap(await m.domU(d).runFio(51712, [mixed('w')]))).error).to.equal(0);
        expect(job0(unwrap(await m.domU(d).runFio(51712, [readBack('r')]))).error).to.equal(0);
        const c = (await m.dom0!.vbdStats())[0]!.counters;
        const ios = (c.rd_req ?? 0) + (c.wr_req ?? 0);
        if (mode === 'persistent') {
          expect(c.persistent_hits).to.be.greaterThan(ios / 2);
          expect(c.grant_copies).to.equal(0);
          // Mapped once, reused after: far fewer hypercalls than I/Os.
          expect(c.hypercalls).to.be.lessThan(ios / 10);
        } else if (mode === 'map') {
          expect(c.grant_maps).to.be.at.least(ios);
          // Everything mapped for data is unmapped again; only the ring pages stay mapped.
          expect((c.grant_maps ?? 0) - (c.grant_unmaps ?? 0)).to.be.within(1, 16);
          expect(c.persistent_hits).to.equal(0);
        } else {
          expect(c.grant_copies).to.be.at.least(ios);
          // Data moves by copy: only the ring pages (≤ 4 queues × 4) and the indirect requests' descriptor pages are mapped.
          expect(c.grant_maps).to.be.at.most(16 + (c.indirect_requests ?? 0));
        }
      } finally {
        await m.shutdown();
      }
    });
  }

  it('sends a 1 MiB write as one indirect request when indirect is on, and splits it when off', async () => {
    for (const [max, indirect] of [[256, true], [11, false]] as const) {
      const { m, guests } = await boot(1, undefined, { blkfront: { maxIndirectSegments: max } });
      try {
        const d = guests[0] as number;
        const r = job0(unwrap(await m.domU(d).runFio(51712, [{ name: 'big', rw: 'write', bs: 1 << 20, iodepth: 2, size: 8 << 20, verify: true }])));
        expect(r.error).to.equal(0);
        const c = (await m.dom0!.vbdStats())[0]!.counters;
        if (indirect) {
          expect(c.indirect_requests).to.be.at.least(8);
          expect(c.wr_req).to.be.lessThan(16);
        } else {
          expect(c.indirect_requests).to.equal(0);
          expect(c.wr_req).to.be.at.least(8 * 23); // 1 MiB in 44 KiB requests
        }
      } finally {
        await m.shutdown();
      }
    }
  });

  it('uses every queue of a multi-queue device with a multi-page ring', async () => {
    const { m, guests } = await boot(1, { blkback: { maxQueues: 4, maxRingPageOrder: 2 } }, { blkfront: { maxQueues: 4, maxRingPageOrder: 2 } });
    try {
      const d = guests[0] as number;
      expect(job0(unwrap(await m.domU(d).runFio(51712, [mixed('mq', { iodepth: 64 })]))).error).to.equal(0);
      expect(await m.dom0!.xsRead(`/local/domain/${d}/device/vbd/51712/multi-queue-num-queues`)).to.deep.equal({ ok: true, value: '4' });
      expect(await m.dom0!.xsRead(`/local/domain/${d}/device/vbd/51712/ring-page-order`)).to.deep.equal({ ok: true, value: '2' });
      for (let q = 0; q < 4; q++) expect((await m.dom0!.xsRead(`/local/domain/${d}/device/vbd/51712/queue-${q}/ring-ref0`)).ok).to.equal(true);
      const fe = await m.domU(d).blkCounters(51712);
      expect(fe?.ring_requests).to.be.greaterThan(0);
    } finally {
      await m.shutdown();
    }
  });

  it('puts flushed writes in the image file, where a reopen finds them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xensim-blk-'));
    const img = join(dir, 'disk.img');
    const m = await Machine.boot({ memBytes: 256 << 20 });
    try {
      await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 64 * 1024, model: 'p2m', privileged: true });
      const g = await m.createDomain({ name: 'guest1', memoryKiB: 32 * 1024, model: 'vp' });
      await m.attachDisk(g.domid, { vdev: 'xvdb', target: img, size: 16 << 20 });
      const r = job0(unwrap(await m.domU(g.domid).runFio(51728, [{ name: 'seq', rw: 'write', bs: 64 * 1024, iodepth: 4, size: 1 << 20, fsync: 4, verify: true, do_verify: false }])));
      expect(r.error).to.equal(0);
      expect(r.xensim.counters.ring_requests).to.be.greaterThan(0);
    } finally {
      await m.shutdown();
    }
    // The machine is gone; the file keeps the data: sector 0 carries guest 1's header for lba 0.
    const fd = openSync(img, 'r');
    const b = Buffer.alloc(512);
    readSync(fd, b, 0, 512, 0);
    closeSync(fd);
    expect(b.readUInt32LE(VERIFY_HDR.MAGIC)).to.equal(VERIFY_MAGIC);
    expect(b.readUInt16LE(VERIFY_HDR.DOMID)).to.equal(1);
    expect(b.readUInt32LE(VERIFY_HDR.LBA_LO)).to.equal(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it('unplugs a disk cleanly and leaks no grant or frame', async () => {
    const { m, guests } = await boot(1);
    try {
      const d = guests[0] as number;
      expect(job0(unwrap(await m.domU(d).runFio(51712, [mixed('before')]))).error).to.equal(0);
      await m.detachDisk(d, 51712);
      expect((await m.dom0!.xsRead(`/local/domain/0/backend/vbd/${d}/51712/state`)).ok).to.equal(false);
      await m.destroyDomain(d);
      const rec = await m.hv.reconcile();
      expect(rec.ok, JSON.stringify(rec)).to.equal(true);
      expect((await m.hv.domains()).map((x) => x.domid)).to.deep.equal([0]);
    } finally {
      await m.shutdown();
    }
  });
});
