import { expect } from 'chai';
import { unwrap } from '../../../shared/result.ts';
import { asDomId } from '../../../shared/types.ts';
import { systemClock, type BlockDevice, type IoStatus, type WorkloadClock } from '../../../domU/workloads/block-device.ts';
import { Xoshiro128, planGroups, runFio, type FioJobSpec, type FioRunOptions, type FioRunResult } from '../../../domU/workloads/fio-engine.ts';
import { MemBlockDevice, type MemFault, type MemIo } from '../../helpers/mem-block-device.ts';

/**
 * Virtual time for tests: sleepUntil registers a timer; drive() lets all pending
 * work run (one macrotask), then jumps the clock to the earliest timer and fires
 * every timer due. Runs are exact and take no real time.
 */
class VirtualClock implements WorkloadClock {
  private t = 0n;
  private seq = 0;
  private timers: { at: bigint; seq: number; resolve: () => void }[] = [];
  now(): bigint {
    return this.t;
  }
  sleepUntil(at: bigint): Promise<void> {
    return new Promise<void>((resolve) => this.timers.push({ at, seq: this.seq++, resolve }));
  }
  async drive<T>(p: Promise<T>): Promise<T> {
    let done = false;
    let value: T | undefined;
    void p.then((v) => {
      done = true;
      value = v;
    });
    while (!done) {
      await new Promise<void>((r) => setImmediate(r));
      if (done) break;
      if (this.timers.length === 0) throw new Error('virtual clock: nothing scheduled and the run is not done');
      let min = (this.timers[0] as { at: bigint }).at;
      for (const x of this.timers) if (x.at < min) min = x.at;
      if (min > this.t) this.t = min;
      const due = this.timers.filter((x) => x.at <= this.t).sort((a, b) => a.seq - b.seq);
      this.timers = this.timers.filter((x) => x.at > this.t);
      for (const d of due) d.resolve();
    }
    return value as T;
  }
}

const MiB = 1024 * 1024;

async function run(jobs: FioJobSpec[], opts: FioRunOptions, vclock?: VirtualClock): Promise<FioRunResult> {
  const p = runFio(jobs, opts);
  const r = vclock === undefined ? await p : await vclock.drive(p);
  return unwrap(r, 'runFio');
}

function tick(): Promise<void> {
  return new Promise<void>((r) => setImmediate(r));
}

describe('fio engine', () => {
  it('keeps exactly iodepth requests in flight, never more, as completions arrive in any order', async () => {
    const dev = new MemBlockDevice({ sectors: 4096, manual: true });
    const p = runFio([{ name: 'qd', rw: 'randread', bs: 4096, iodepth: 8, size: 512 * 1024 }], { device: dev, clock: systemClock });
    let settled = false;
    void p.then(() => (settled = true));
    const rng = new Xoshiro128(9);
    let maxSeen = 0;
    let timesAtDepth = 0;
    while (!settled) {
      await tick();
      const n = dev.pending.length;
      maxSeen = Math.max(maxSeen, n);
      if (n === 8) timesAtDepth++;
      if (n > 0) dev.release(rng.below(n));
    }
    const j = unwrap(await p).jobs[0]!;
    expect(maxSeen).to.equal(8);
    expect(dev.maxInflight).to.equal(8);
    expect(j.maxInflight).to.equal(8);
    expect(timesAtDepth).to.be.greaterThan(100); // it refills to depth after each completion
    expect(j.ddir[0].ios).to.equal(128);
  });

  it('mixes reads and writes in the rwmixread ratio', async () => {
    for (const mix of [70, 0, 100]) {
      const dev = new MemBlockDevice({ sectors: 32768 });
      const j = (await run([{ name: 'mix', rw: 'randrw', rwmixread: mix, bs: 4096, iodepth: 4, size: 16 * MiB }], { device: dev, clock: systemClock })).jobs[0]!;
      const r = j.ddir[0].ios;
      const w = j.ddir[1].ios;
      expect(r + w).to.equal(4096);
      expect(r / (r + w)).to.be.within(mix / 100 - 0.03, mix / 100 + 0.03);
    }
  });

  it('gives numjobs clones disjoint regions by default, and one shared region with offset_increment=0', async () => {
    for (const [inc, expectPerBlock] of [[undefined, 1], [0, 4]] as const) {
      const dev = new MemBlockDevice({ sectors: 8192 });
      dev.logRequests = true;
      const spec: FioJobSpec = { name: 'w', rw: 'write', bs: 4096, numjobs: 4, size: 256 * 1024, iodepth: 2, ...(inc === undefined ? {} : { offset_increment: inc }) };
      const res = await run([spec], { device: dev, clock: systemClock });
      expect(res.jobs.map((j) => j.region.offset)).to.deep.equal(inc === undefined ? [0, 1, 2, 3].map((k) => k * 256 * 1024) : [0, 0, 0, 0]);
      const perBlock = new Map<number, number>();
      for (const io of dev.log) perBlock.set(io.sector, (perBlock.get(io.sector) ?? 0) + 1);
      expect(perBlock.size).to.equal(inc === undefined ? 256 : 64);
      expect([...perBlock.values()].every((n) => n === expectPerBlock)).to.equal(true);
      expect(Math.max(...perBlock.keys())).to.equal((inc === undefined ? 1024 * 1024 : 256 * 1024) / 512 - 8);
    }
  });

  it('lays sections out one after another, and starts each stonewall group again at offset 0', () => {
    const dev = new MemBlockDevice({ sectors: 8192 });
    const plan = unwrap(
      planGroups(
        [
          { name: 'a', rw: 'write', size: 1 * MiB, numjobs: 2 },
          { name: 'b', rw: 'read', size: 512 * 1024 },
          { name: 'c', rw: 'read', size: 1 * MiB, stonewall: true },
        ],
        dev,
      ),
    );
    expect(plan.map((g) => g.map((i) => [i.spec.name, i.clone, i.offset, i.groupid]))).to.deep.equal([
      [
        ['a', 0, 0, 0],
        ['a', 1, MiB, 0],
        ['b', 0, 2 * MiB, 0],
      ],
      [['c', 0, 0, 1]],
    ]);
    const tooBig = planGroups([{ name: 'x', rw: 'read', size: 2 * MiB, numjobs: 3 }], dev);
    expect(tooBig.ok ? undefined : tooBig.error).to.deep.include({ kind: 'region-outside-device', job: 'x', clone: 2, offset: 4 * MiB });
  });

  it('rejects specs fio would reject, naming the job and the value', () => {
    const dev = new MemBlockDevice({ sectors: 8192, maxRequestBytes: 44 * 1024 });
    const bad = (spec: Partial<FioJobSpec>): unknown => {
      const r = planGroups([{ name: 'j', rw: 'read', ...spec }], dev);
      return r.ok ? undefined : r.error;
    };
    expect(bad({ bs: 1000 })).to.deep.equal({ kind: 'bad-bs', job: 'j', bs: 1000 });
    expect(bad({ bs: 64 * 1024 })).to.deep.equal({ kind: 'bs-too-large', job: 'j', bs: 65536, maxRequestBytes: 45056 });
    expect(bad({ iodepth: 0 })).to.deep.equal({ kind: 'bad-iodepth', job: 'j', iodepth: 0 });
    expect(bad({ rwmixread: 101 })).to.deep.equal({ kind: 'bad-rwmixread', job: 'j', rwmixread: 101 });
    expect(bad({ time_based: true })).to.deep.equal({ kind: 'time-based-without-runtime', job: 'j' });
    expect(bad({ rw: 'sideways' as FioJobSpec['rw'] })).to.deep.equal({ kind: 'bad-rw', job: 'j', rw: 'sideways' });
    expect(planGroups([], dev)).to.deep.equal({ ok: false, error: { kind: 'no-jobs' } });
  });

  it('stops after size bytes when not time_based', async () => {
    const dev = new MemBlockDevice({ sectors: 8192 });
    const j = (await run([{ name: 's', rw: 'randwrite', bs: 4096, iodepth: 4, size: 64 * 1024 }], { device: dev, clock: systemClock })).jobs[0]!;
    expect(j.ddir[1].ios).to.equal(16);
    expect(dev.counters().writes).to.equal(16);
  });

  it('runs a time_based job for exactly runtime seconds of (virtual) time', async () => {
    const clock = new VirtualClock();
    const dev = new MemBlockDevice({ sectors: 8192, latencyNs: 100_000, clock });
    const res = await run([{ name: 't', rw: 'read', bs: 4096, size: 64 * 1024, time_based: true, runtime: 0.05 }], { device: dev, clock }, clock);
    const j = res.jobs[0]!;
    expect(j.ddir[0].ios).to.equal(500); // issues at 0, 0.1 ms, … 49.9 ms
    expect(j.runtimeNs).to.equal(50_000_000);
    expect(j.ddir[0].clat.mean).to.equal(100_000);
    expect(j.ddir[0].bwSamples.length).to.equal(0); // shorter than one 500 ms sample, as in fio
  });

  it('ends a size-bound job at runtime when runtime comes first', async () => {
    const clock = new VirtualClock();
    const dev = new MemBlockDevice({ sectors: 65536, latencyNs: 100_000, clock });
    const j = (await run([{ name: 'cap', rw: 'write', bs: 4096, size: 16 * MiB, runtime: 0.02 }], { device: dev, clock }, clock)).jobs[0]!;
    expect(j.ddir[1].ios).to.equal(200);
  });

  it('holds rate_iops', async () => {
    const clock = new VirtualClock();
    const dev = new MemBlockDevice({ sectors: 8192, latencyNs: 10_000, clock });
    const j = (await run([{ name: 'r', rw: 'randread', bs: 4096, iodepth: 4, time_based: true, runtime: 0.1, rate_iops: 2000 }], { device: dev, clock }, clock)).jobs[0]!;
    expect(j.ddir[0].ios).to.be.within(199, 201);
    expect((j.ddir[0].ios * 1e9) / j.runtimeNs).to.be.within(1980, 2020);
  });

  it('does not count I/O issued during ramp_time', async () => {
    const clock = new VirtualClock();
    const dev = new MemBlockDevice({ sectors: 8192, latencyNs: 100_000, clock });
    const j = (await run([{ name: 'ramp', rw: 'read', bs: 4096, size: 64 * 1024, time_based: true, ramp_time: 0.02, runtime: 0.03 }], { device: dev, clock }, clock)).jobs[0]!;
    expect(dev.counters().reads).to.equal(500);
    expect(j.ddir[0].ios).to.equal(300);
    expect(j.runtimeNs).to.equal(30_000_000);
    expect(j.elapsedNs).to.equal(50_000_000);
  });

  it('takes bw and iops samples every bwavgtime / iopsavgtime', async () => {
    const clock = new VirtualClock();
    const dev = new MemBlockDevice({ sectors: 8192, latencyNs: 1_000_000, clock });
    const j = (await run([{ name: 'bw', rw: 'read', bs: 4096, size: 64 * 1024, time_based: true, runtime: 0.1, bwavgtime: 20, iopsavgtime: 10 }], { device: dev, clock }, clock)).jobs[0]!;
    expect(j.ddir[0].bwSamples).to.have.length(5);
    expect(j.ddir[0].iopsSamples).to.have.length(10);
    for (const s of j.ddir[0].iopsSamples) expect(s).to.be.closeTo(1000, 1);
    for (const s of j.ddir[0].bwSamples) expect(s).to.be.closeTo(4000, 4); // 1000 IOPS × 4 KiB
  });

  it('is deterministic for a seed and differs between seeds', async () => {
    const sectorsFor = async (seed: number): Promise<number[]> => {
      const dev = new MemBlockDevice({ sectors: 65536 });
      dev.logRequests = true;
      await run([{ name: 'd', rw: 'randrw', bs: 4096, iodepth: 8, size: 1 * MiB, numjobs: 2 }], { device: dev, clock: systemClock, seed });
      return dev.log.map((io) => (io.op === 'read' ? io.sector : -io.sector));
    };
    const a = await sectorsFor(1);
    expect(await sectorsFor(1)).to.deep.equal(a);
    expect(await sectorsFor(2)).to.not.deep.equal(a);
  });

  it('stops a job at its first I/O error with EIO, unless continue_on_error', async () => {
    const fault = (io: MemIo): MemFault | undefined => (io.seq === 10 ? { kind: 'error' } : undefined);
    const dev = new MemBlockDevice({ sectors: 8192, fault });
    const j = (await run([{ name: 'e', rw: 'randread', bs: 4096, iodepth: 4, size: 1 * MiB }], { device: dev, clock: systemClock })).jobs[0]!;
    expect(j.error).to.equal(5);
    expect(j.errorMessage).to.match(/^Input\/output error: read of 8 sectors at \d+$/);
    expect(j.ddir[0].ios).to.be.within(10, 13);
    expect(j.failedIos).to.equal(1);
    const dev2 = new MemBlockDevice({ sectors: 8192, fault });
    const k = (await run([{ name: 'e', rw: 'randread', bs: 4096, iodepth: 4, size: 1 * MiB, continue_on_error: true }], { device: dev2, clock: systemClock })).jobs[0]!;
    expect(k.error).to.equal(5);
    expect(k.ddir[0].ios).to.equal(255);
  });

  it('reports EOPNOTSUPP for trims on a device without discard, and trims where discard exists', async () => {
    const nodiscard = new MemBlockDevice({ sectors: 8192, discard: false });
    const j = (await run([{ name: 't', rw: 'trim', bs: 65536, size: 1 * MiB }], { device: nodiscard, clock: systemClock })).jobs[0]!;
    expect(j.error).to.equal(95);
    const dev = new MemBlockDevice({ sectors: 8192 });
    const k = (await run([{ name: 't', rw: 'randtrim', bs: 65536, size: 1 * MiB }], { device: dev, clock: systemClock })).jobs[0]!;
    expect(k.error).to.equal(0);
    expect(k.ddir[2].ios).to.equal(16);
    expect(dev.counters().discards).to.equal(16);
  });

  it('issues a flush after every fsync=N writes, with nothing else in flight', async () => {
    const seen: string[] = [];
    const box: { dev?: MemBlockDevice } = {};
    const fault = (io: MemIo): undefined => {
      seen.push(io.op === 'flush' ? `F${box.dev?.inflight}` : 'w');
      return undefined;
    };
    const dev = (box.dev = new MemBlockDevice({ sectors: 8192, fault }));
    const j = (await run([{ name: 'f', rw: 'randwrite', bs: 4096, iodepth: 4, size: 64 * 1024, fsync: 4 }], { device: dev, clock: systemClock })).jobs[0]!;
    expect(seen.join('')).to.equal('wwwwF1'.repeat(3) + 'wwww');
    expect(j.sync.ios).to.equal(3);
  });

  describe('with verify', () => {
    it('reads a write-only job back when done and finds every acknowledged block intact', async () => {
      const dev = new MemBlockDevice({ sectors: 8192 });
      const res = await run([{ name: 'v', rw: 'randwrite', bs: 4096, iodepth: 8, size: 1 * MiB, verify: true }], { device: dev, clock: systemClock });
      const j = res.jobs[0]!;
      expect(j.error).to.equal(0);
      expect(j.ddir[1].ios).to.equal(256);
      const written = new Set<number>();
      for (let b = 0; b < 256; b++) if (res.tracker!.written(b * 8, 8)) written.add(b);
      expect(j.ddir[0].ios).to.equal(written.size); // one verify read per distinct written block
      expect(j.verify).to.include({ mismatches: 0, verifiedSectors: written.size * 8, unverifiedSectors: 0 });
    });

    it('catches a lost write: EILSEQ and a report naming its lba', async () => {
      const dev = new MemBlockDevice({ sectors: 8192, fault: (io) => (io.op === 'write' && io.seq === 4 ? { kind: 'lose-write' } : undefined) });
      const j = (await run([{ name: 'lost', rw: 'write', bs: 4096, size: 256 * 1024, verify: true }], { device: dev, clock: systemClock })).jobs[0]!;
      expect(j.error).to.equal(84);
      expect(j.verify?.mismatches).to.equal(8);
      expect(j.verify?.reports.map((m) => [m.kind, m.lba])).to.deep.equal([32, 33, 34, 35, 36, 37, 38, 39].map((l) => ['unwritten', l]));
    });

    it('catches a stale read in a mixed workload', async () => {
      let reads = 0;
      const fault = (io: MemIo): MemFault | undefined => (io.op === 'read' && ++reads === 300 ? { kind: 'stale-read' } : undefined);
      const dev = new MemBlockDevice({ sectors: 8192, keepHistory: true, fault });
      const j = (await run([{ name: 'rw', rw: 'randrw', bs: 4096, iodepth: 4, size: 64 * 1024, time_based: true, runtime: 0.3, verify: true }], { device: dev, clock: systemClock })).jobs[0]!;
      expect(reads).to.be.greaterThan(300);
      expect(j.verify?.mismatches).to.be.greaterThan(0);
      expect(new Set(j.verify?.reports.map((m) => m.kind))).to.satisfy((k: Set<string>) => [...k].every((x) => x === 'stale' || x === 'unwritten'));
      expect(j.error).to.equal(84);
    });

    it("catches another domain's write that landed in our region, naming that domain", async () => {
      const dev = new MemBlockDevice({ sectors: 8192 });
      const region = { bs: 4096, size: 256 * 1024, verify: true, do_verify: false } as const;
      const mine = await run([{ name: 'mine', rw: 'write', ...region }], { device: dev, clock: systemClock, domid: asDomId(1) });
      // dom2 writes its own region; one of its writes lands on our block 5 instead.
      const stray = new MemBlockDevice({ sectors: 8192, fault: (io) => (io.seq === 3 ? { kind: 'misdirect-write', toSector: 40 } : undefined) });
      stray.data.set(dev.data);
      await run([{ name: 'theirs', rw: 'write', ...region, offset: 512 * 1024 }], { device: stray, clock: systemClock, domid: asDomId(2) });
      const check = await run([{ name: 'check', rw: 'read', bs: 4096, size: 256 * 1024, verify: true }], { device: stray, clock: systemClock, tracker: mine.tracker! });
      const j = check.jobs[0]!;
      expect(j.verify?.mismatches).to.equal(8);
      expect(j.verify?.reports[0]).to.deep.include({ kind: 'misdirected', lba: 40, expectedDomid: 1 });
      expect(j.verify?.reports[0]?.found).to.deep.include({ domid: 2, lba: 1024 + 24 });
    });

    it('never verifies across overlapping in-flight I/O, even with shared regions and reordered completions', async () => {
      const clock = new VirtualClock();
      const rng = new Xoshiro128(5);
      // Writes reach the disk at submission, reads copy at completion: overlapping I/O would race.
      const dev = new MemBlockDevice({ sectors: 8192, clock, latencyNs: () => 1000 + rng.below(50_000), writeApplyAt: 'submit' });
      const res = await run(
        [{ name: 'share', rw: 'randrw', bs: 4096, iodepth: 8, numjobs: 3, offset_increment: 0, size: 32 * 1024, time_based: true, runtime: 0.05, verify: true }],
        { device: dev, clock },
        clock,
      );
      const verified = res.jobs.reduce((n, j) => n + (j.verify?.verifiedSectors ?? 0), 0);
      expect(verified).to.be.greaterThan(1000);
      expect(res.jobs.map((j) => j.verify?.mismatches)).to.deep.equal([0, 0, 0]);
    });
  });

  it('measures its own overhead against devices that complete at once', async function () {
    this.timeout(20_000);
    const OK: Promise<IoStatus> = Promise.resolve('ok');
    const nul: BlockDevice = { sectorSize: 512, sectors: 1 << 22, maxRequestBytes: 1 << 20, readOnly: false, read: () => OK, write: () => OK, flush: () => OK, discard: () => OK, counters: () => ({}) };
    const mem = new MemBlockDevice({ sectors: 1 << 15 });
    const iopsOf = async (device: BlockDevice): Promise<number> => {
      const j = (await run([{ name: 'o', rw: 'randread', bs: 4096, iodepth: 32, time_based: true, runtime: 0.4 }], { device, clock: systemClock })).jobs[0]!;
      return (j.ddir[0].ios * 1e9) / j.runtimeNs;
    };
    const n = await iopsOf(nul);
    const m = await iopsOf(mem);
    console.log(`      engine overhead, 4 KiB randread QD32: ${Math.round(n).toLocaleString('en')} IOPS on a null device (${(1e9 / n).toFixed(0)} ns per I/O), ${Math.round(m).toLocaleString('en')} IOPS on a zero-latency MemBlockDevice`);
    expect(n).to.be.greaterThan(100_000);
    expect(m).to.be.greaterThan(50_000);
  });
});
