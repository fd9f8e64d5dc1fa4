/**
 * `npm run bench -- blk-cost [--quick]`: the CPU cost of one block I/O on the
 * whole split-driver path, in ONE thread, by CPU time — the part of
 * bench/blk.bench.ts that a busy host does not blur (see
 * bench/ring-cost.bench.ts for the method).
 *
 * The machine is test/helpers/blk-world.ts: a hypervisor, dom0 and one guest
 * on one MachineMemory, a real XenStored, blkback on dom0's backend bus with
 * a RAM disk (PrivateRamStorage, what dom0/vbd.ts serves for `ram:`),
 * blkfront on the guest's frontend bus, and an event pump playing every
 * vCPU. A fio job runs in the guest; the figure is this thread's CPU nanoseconds
 * per completed I/O — fio, blkfront, both rings, event channels, blkback and
 * the disk together, every copy included — against the cost of the same
 * work done by the baselines in the same run:
 *  - 4 KiB randread QD32 (persistent grants, one queue): against the plain
 *    SPSC ring's CPU cost per message in one thread at batch 32
 *    (bench/baselines/plain-ring.ts plainSingleThread). In the real bench the
 *    front and the back run on two threads; 0.4x the plain ring's *rate*
 *    leaves each side 2.5x the plain ring's time per message, so this
 *    one-thread total (both sides) should stay under 5x;
 *  - 1 MiB sequential write and read QD32 (persistent grants, 32 indirect
 *    segments as bench/blk.bench.ts's guests use): against copying 1 MiB
 *    within machine memory (MachineMemory.copy). The path copies each byte
 *    twice (the guest's buffer into its granted pages, then blkback's disk
 *    copy), on two threads in the real bench, so 0.4x memcpy *bandwidth*
 *    leaves 5x memcpy's time for both sides together.
 *
 * Run directly (`node --cpu-prof --import tsx bench/blk-cost.bench.ts [rr32|sw|sr ...]`)
 * it runs the quick cells (or the ones named) and prints them: the profile of the data path.
 */
import { pathToFileURL } from 'node:url';
import { DiskStoreStorage, Dom0RamStorage, PrivateRamMedium, PrivateRamStorage } from '../dom0/blkback/storage.ts';
import { RamDisk } from '../dom0/devices/disk-store.ts';
import { systemClock } from '../domU/workloads/block-device.ts';
import { runFio, type FioJobSpec } from '../domU/workloads/fio-engine.ts';
import { unwrap } from '../shared/result.ts';
import { asDomId, type MachineAddr } from '../shared/types.ts';
import { BlkWorld, type Blkfront } from '../test/helpers/blk-world.ts';
import { readThreadCpuNs } from '../shared/kernel/cpu-time.ts';
import { cpuNs, plainSingleThread } from './baselines/plain-ring.ts';
import { figure, median, type Benchmark, type Figure } from './harness.ts';

const XVDA = 51712;
const DISK = 32 << 20;

interface Cell {
  readonly key: string;
  readonly label: string;
  readonly rw: FioJobSpec['rw'];
  readonly bs: number;
}

const CELLS: readonly Cell[] = [
  { key: 'rr32', label: '4 KiB randread QD32', rw: 'randread', bs: 4096 },
  { key: 'sw', label: '1 MiB seq write QD32', rw: 'write', bs: 1 << 20 },
  { key: 'sr', label: '1 MiB seq read QD32', rw: 'read', bs: 1 << 20 },
];

interface Sample {
  /** CPU ns per completed I/O (this thread: every vCPU of the one-thread machine). */
  readonly nsPerIo: number;
  /** Process CPU ns per completed I/O (with V8's GC and compiler threads), and wall ns per I/O. */
  readonly processNsPerIo: number;
  readonly wallNsPerIo: number;
  /** Notifications (sent by either end) per I/O. */
  readonly notifPerIo: number;
}

/** This thread's CPU ns (Linux), else the process's. */
function threadNs(): number {
  return readThreadCpuNs() ?? cpuNs();
}

/** One guest, one queue, a dom0 RAM disk written once; blkfront with Linux's 32 indirect segments. */
async function world(): Promise<{ w: BlkWorld; dev: Blkfront }> {
  const w = await BlkWorld.create({ memBytes: 256 << 20, dom0KiB: 64 << 10 });
  const g = await w.addGuest(1, { maxQueues: 1, maxIndirectSegments: 32 });
  // What vbd serves ram: with; BLK_COST_STORAGE=diskstore: the software disk with its staging copy;
  // BLK_COST_STORAGE=dom0ram: a RAM disk in dom0's own frames.
  const which = process.env.BLK_COST_STORAGE;
  const storage = which === 'diskstore'
    ? new DiskStoreStorage(w.dom0.mem, new RamDisk({ sectors: DISK / 512 }))
    : which === 'dom0ram' ? new Dom0RamStorage(w.dom0, { sectors: DISK / 512 }) : new PrivateRamStorage(w.dom0.mem, new PrivateRamMedium(DISK / 512));
  const dev = await w.addDisk(g, XVDA, { storage });
  unwrap(await runFio([{ name: 'fill', rw: 'write', bs: 1 << 20, iodepth: 8, size: DISK }], { device: dev, clock: systemClock, domid: asDomId(1) }), 'fill');
  return { w, dev };
}

async function measure(w: BlkWorld, dev: Blkfront, c: Cell, secs: number): Promise<Sample> {
  const back = () => w.backDevice(1)?.snapshot();
  const f0 = dev.counters();
  const b0 = back();
  const t0 = threadNs();
  const p0 = cpuNs();
  const w0 = performance.now();
  const spec: FioJobSpec = { name: c.key, rw: c.rw, bs: c.bs, iodepth: 32, size: DISK, runtime: secs, time_based: true };
  unwrap(await runFio([spec], { device: dev, clock: systemClock, domid: asDomId(1) }), c.key);
  const t1 = threadNs();
  const p1 = cpuNs();
  const w1 = performance.now();
  const f1 = dev.counters();
  const b1 = back();
  const ios = (f1.io_completed ?? 0) - (f0.io_completed ?? 0);
  const notif = ((f1.notifications_sent ?? 0) - (f0.notifications_sent ?? 0)) + ((b1?.notifications_sent ?? 0) - (b0?.notifications_sent ?? 0));
  return { nsPerIo: (t1 - t0) / ios, processNsPerIo: (p1 - p0) / ios, wallNsPerIo: ((w1 - w0) * 1e6) / ios, notifPerIo: notif / ios };
}

/** CPU ns to copy 1 MiB within machine memory (MachineMemory.copy over 32 MiB, cold-ish). */
function memcpyNs(w: BlkWorld): number {
  const mem = w.m.mem;
  const base = mem.byteLength - (64 << 20);
  let n = 0;
  const t0 = threadNs();
  while (threadNs() - t0 < 100e6) {
    for (let i = 0; i < 32; i++) mem.copy((base + (32 << 20) + i * (1 << 20)) as MachineAddr, (base + i * (1 << 20)) as MachineAddr, 1 << 20);
    n += 32;
  }
  return (threadNs() - t0) / n;
}

async function run(quick: boolean, log: (l: string) => void, only?: readonly string[]): Promise<Figure[]> {
  const cells = only === undefined || only.length === 0 ? CELLS : CELLS.filter((c) => only.includes(c.key));
  const runs = quick ? 3 : 5;
  const secs = Number(process.env.BLK_COST_SECS ?? (quick ? 0.3 : 0.8));
  const { w, dev } = await world();
  const samples = new Map<string, Sample[]>();
  const plain: number[] = [];
  const memcpy: number[] = [];
  try {
    for (const c of cells) await measure(w, dev, c, 0.2); // warm up every path
    for (let r = 0; r < runs; r++) {
      plain.push(plainSingleThread(32, 20000));
      memcpy.push(memcpyNs(w));
      for (const c of cells) {
        const s = await measure(w, dev, c, secs);
        samples.set(c.key, [...(samples.get(c.key) ?? []), s]);
        log(`blk-cost run ${r + 1}: ${c.label}: ${(s.nsPerIo / 1000).toFixed(2)} µs thread CPU/I/O (process ${(s.processNsPerIo / 1000).toFixed(2)}, wall ${(s.wallNsPerIo / 1000).toFixed(2)}), ${s.notifPerIo.toFixed(3)} notifications/I/O`);
      }
    }
  } finally {
    await w.close();
  }
  const figures: Figure[] = [];
  const plainBase = { name: 'plain SPSC ring (64 B) QD32, one thread, CPU per message, same run', value: median(plain) / 1000 };
  const memcpyBase = { name: 'MachineMemory.copy of 1 MiB, CPU time, same run', value: median(memcpy) / 1000 };
  for (const c of cells) {
    const s = samples.get(c.key) as Sample[];
    const v = s.map((x) => x.nsPerIo / 1000);
    figures.push(figure({
      name: `${c.label}, 1 domU, persistent, one thread: CPU per I/O (fio + blkfront + blkback + disk)`, value: median(v), unit: 'µs/I/O', better: 'lower',
      baseline: c.bs === 4096 ? plainBase : memcpyBase, target: 5, runs: v,
      baselineRuns: (c.bs === 4096 ? plain : memcpy).map((x) => x / 1000),
    }));
    const n = s.map((x) => x.notifPerIo);
    figures.push(figure({
      name: `${c.label}, 1 domU, persistent, one thread: notifications per I/O`, value: median(n), unit: 'notifications/I/O', better: 'lower',
      baseline: { name: 'one per I/O', value: 1 }, runs: n,
    }));
  }
  return figures;
}

const bench: Benchmark = ({ quick }) => run(quick, (l) => console.error(l));
export default bench;

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const figs = await run(true, (l) => console.log(l), process.argv.slice(2));
  for (const f of figs) console.log(`${f.name}: ${f.value.toFixed(3)} ${f.unit} (baseline ${f.baseline.value.toFixed(3)}: ${f.baseline.name})`);
  process.exit(0);
}
