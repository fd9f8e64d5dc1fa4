/**
 * One-thread throughput of the whole block path (fio, blkfront, rings,
 * events, blkback, a dom0 RAM disk — every vCPU on this thread), printed
 * next to a memcpy baseline measured in the same run. The assertions are
 * about behaviour, not speed: with persistent grants and a busy queue there
 * is no hypercall per I/O and far less than one notification per I/O.
 */
import { expect } from 'chai';
import { Dom0RamStorage } from '../../../dom0/blkback/storage.ts';
import { systemClock } from '../../../domU/workloads/block-device.ts';
import { runFio, type FioJobSpec } from '../../../domU/workloads/fio-engine.ts';
import { unwrap } from '../../../shared/result.ts';
import { asDomId, type MachineAddr } from '../../../shared/types.ts';
import { BlkWorld, type Blkfront } from '../../helpers/blk-world.ts';

const XVDA = 51712;

async function run(w: BlkWorld, dev: Blkfront, spec: Omit<FioJobSpec, 'name'>): Promise<{ iops: number; bytesPerSec: number; perIo: (k: string) => number }> {
  const before = dev.counters();
  const r = unwrap(await runFio([{ name: 'job', ...spec }], { device: dev, clock: systemClock, domid: asDomId(1) }), 'fio');
  const j = r.jobs[0]!;
  const ios = j.ddir[0].ios + j.ddir[1].ios;
  const secs = j.runtimeNs / 1e9;
  const after = dev.counters();
  // Per I/O the device completed (fio does not count the I/Os still in flight when its time runs out).
  const done = (after.io_completed ?? 0) - (before.io_completed ?? 0);
  return { iops: ios / secs, bytesPerSec: (ios * (spec.bs ?? 4096)) / secs, perIo: (k) => ((after[k] ?? 0) - (before[k] ?? 0)) / done };
}

/** memcpy inside machine memory (MachineMemory.copy), 1 MiB at a time over 32 MiB: bytes per second. */
function memcpyBaseline(w: BlkWorld): number {
  const mem = w.m.mem;
  const base = mem.byteLength - (64 << 20);
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < 150) {
    for (let i = 0; i < 32; i++) mem.copy((base + (32 << 20) + i * (1 << 20)) as MachineAddr, (base + i * (1 << 20)) as MachineAddr, 1 << 20);
    n += 32;
  }
  return (n * (1 << 20)) / ((performance.now() - t0) / 1000);
}

describe('one-thread throughput of the block path', function () {
  this.timeout(60000);

  it('runs 4 KiB random reads at iodepth 32 with no hypercall and far below one notification per I/O', async () => {
    const w = await BlkWorld.create();
    try {
      const g = await w.addGuest(1, { maxQueues: 1 });
      const dev = await w.addDisk(g, XVDA, { storage: new Dom0RamStorage(w.dom0, { sectors: (16 << 20) / 512 }) });
      await run(w, dev, { rw: 'write', bs: 1 << 20, iodepth: 4, size: 16 << 20 });
      await run(w, dev, { rw: 'randread', bs: 4096, iodepth: 32, size: 16 << 20, runtime: 0.2, time_based: true }); // warm up
      const r = await run(w, dev, { rw: 'randread', bs: 4096, iodepth: 32, size: 16 << 20, runtime: 0.5, time_based: true });
      const notif = r.perIo('notifications_sent') + r.perIo('notifications_received');
      console.log(`      4 KiB randread QD32 persistent: ${Math.round(r.iops)} IOPS; per I/O: front hypercalls ${r.perIo('hypercalls').toFixed(4)}, notifications sent+received ${notif.toFixed(3)}, grants issued ${r.perIo('grants_issued').toFixed(4)}`);
      const back = w.backDevice(1)!.snapshot();
      expect(r.perIo('hypercalls')).to.equal(0);
      expect(back.hypercalls / back.ring_requests).to.be.below(0.01);
      expect(notif).to.be.below(0.5);
      expect(back.notifications_sent / back.ring_responses).to.be.below(0.25);
    } finally {
      await w.close();
    }
  });

  it('moves 1 MiB sequential reads and writes through indirect persistent requests, measured against memcpy', async () => {
    const w = await BlkWorld.create({ backend: { device: { maxPersistentGrants: 8448 } } });
    try {
      const g = await w.addGuest(1, { maxQueues: 1 });
      const dev = await w.addDisk(g, XVDA, { storage: new Dom0RamStorage(w.dom0, { sectors: (32 << 20) / 512 }) });
      const base = memcpyBaseline(w);
      await run(w, dev, { rw: 'write', bs: 1 << 20, iodepth: 4, size: 32 << 20 });
      for (const rw of ['read', 'write'] as const) {
        await run(w, dev, { rw, bs: 1 << 20, iodepth: 4, size: 32 << 20, runtime: 0.1, time_based: true }); // warm up
        const r = await run(w, dev, { rw, bs: 1 << 20, iodepth: 4, size: 32 << 20, runtime: 0.4, time_based: true });
        console.log(`      1 MiB seq ${rw} QD4: ${(r.bytesPerSec / 1e9).toFixed(2)} GB/s = ${(r.bytesPerSec / base).toFixed(2)}x memcpy (${(base / 1e9).toFixed(1)} GB/s); ${r.perIo('indirect_requests').toFixed(2)} indirect requests per I/O`);
        expect(r.perIo('indirect_requests')).to.equal(1);
        expect(r.bytesPerSec).to.be.greaterThan(0);
      }
      expect(w.backDevice(1)!.snapshot().persistent_overflow_maps).to.equal(0);
    } finally {
      await w.close();
    }
  });
});
