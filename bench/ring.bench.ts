/**
 * `npm run bench -- ring [--quick]`: request/response throughput and
 * notifications per request of our blkif-layout Xen ring (FrontRing/BackRing
 * over a MemRegion, full 112-byte blkif_request through the flat codecs and
 * the allocation-free putRequestFrom / copyRequestInto path, copy-once
 * reads), closed loop between two workers at queue depth 1, 8 and 32, next to
 * a plain SPSC shared-memory ring with 64-byte messages and the ringbuf.js npm
 * package, all with the same wake scheme, in the same run.
 *
 * Closed loop at depth N: the front puts N requests, pushes once (kicking the
 * back if its event index asks for it), then waits for all N responses; the
 * back drains whatever is published, answers each, and pushes once per drained
 * batch. Both sides, when idle, spin briefly (spin mode) or not at all (sleep
 * mode), then snapshot their wake word, re-arm their event index, re-check,
 * and sleep. A "msg" is one request and its response.
 *
 * Figures: our ring's throughput with baseline = the plain ring at the same
 * depth and mode, target ≥ 0.8; ringbuf.js' throughput against the same
 * baseline (no target); our notifications per request (kicks in both
 * directions / requests) against the plain ring's. Medians of ≥ 3 runs, the
 * three rings interleaved run by run.
 *
 * Equal treatment: the same closed loop, spin budget (clock read every 64
 * polls), event-index re-arm, notify rule and wake words for all three; the
 * same warmup, long enough that JIT compilation is not measured. What differs
 * is each ring's own protocol: the plain ring also publishes its consumer
 * index and reads the peer's (per message on the back); our ring's four
 * indices share one cache line, as ring.h lays them out. The scheduler makes
 * spin mode meaningless once more threads want to run than there are cores;
 * bench/ring-cost.bench.ts measures the CPU cost per message in one thread.
 *
 * This file is also the worker entry for the roles 'xen-front' and 'xen-back'.
 */
import { isMainThread, parentPort, workerData, type Worker } from 'node:worker_threads';
import { BLKIF_OP_WRITE, BLKIF_RSP_OKAY } from '../shared/abi/blkif.ts';
import { MachineMemory, type PageSize } from '../shared/memory/machine-memory.ts';
import { machineRegion, type MemRegion } from '../shared/memory/region.ts';
import { BackRing } from '../shared/ring/back-ring.ts';
import { BLKIF_RING_FLAT } from '../shared/ring/codec.ts';
import { FrontRing } from '../shared/ring/front-ring.ts';
import { sharedRingInit } from '../shared/ring/sring.ts';
import type { RingIdx } from '../shared/ring/u32.ts';
import type { MachineAddr } from '../shared/types.ts';
import { spawnTsWorker } from '../shared/worker/spawn.ts';
import { plainShared } from './baselines/plain-ring.ts';
import { ringbufShared } from './baselines/ringbuf-js.ts';
import { figure, median, type Benchmark, type Figure } from './harness.ts';

export interface PairConfig {
  /** Requests per closed-loop batch (queue depth). */
  readonly depth: number;
  /** Spin this long on the ring before sleeping (0: sleep at once). */
  readonly spinUs: number;
  readonly warmupMs: number;
  readonly measureMs: number;
}
/** What the front reports for the measured window. */
export interface FrontReport {
  readonly msgs: number;
  readonly ms: number;
  readonly kicksToBack: number;
  readonly kicksToFront: number;
  readonly sleeps: number;
}
export interface BackReport {
  readonly msgs: number;
  readonly sleeps: number;
}

// ---------------------------------------------------------------------------
// Our ring's two ends (worker side)

const RING_FRAME = 16;
const BELL_FRAME = 8;
/** Wake words in the bell page; their values count kicks. */
const BELL_BACK = 0;
const BELL_FRONT = 64;
const STOP = 128;

interface XenShared {
  readonly sab: MachineMemory['sab'];
  readonly pageSize: PageSize;
}

function xenShared(): XenShared {
  const mem = MachineMemory.create({ memBytes: 4 << 20, pageSize: 4096 });
  // The frontend's SHARED_RING_INIT, done before either end starts.
  sharedRingInit(machineRegion(mem, (RING_FRAME * 4096) as MachineAddr, 1));
  return { sab: mem.sab, pageSize: mem.pageSize };
}

function regions(sh: XenShared): { ring: MemRegion; bells: MemRegion } {
  const mem = MachineMemory.attach(sh.sab, sh.pageSize);
  return {
    ring: machineRegion(mem, (RING_FRAME * mem.pageSize) as MachineAddr, 1),
    bells: machineRegion(mem, (BELL_FRAME * mem.pageSize) as MachineAddr, 1),
  };
}

function kick(bells: MemRegion, off: number): void {
  // Full barrier: the peer sees our pushed index /before/ the bumped word.
  bells.atomicAddU32(off, 1);
  bells.notify32(off, 1);
}

/** Spin up to spinUs while idle() holds; true if work appeared. */
function spinFor(spinUs: number, idle: () => boolean): boolean {
  if (spinUs <= 0) return false;
  const until = performance.now() + spinUs / 1000;
  let n = 0;
  while (idle()) {
    if ((++n & 63) === 0 && performance.now() > until) return false;
  }
  return true;
}

function xenFront(sh: XenShared, cfg: PairConfig): FrontReport {
  const { ring: region, bells } = regions(sh);
  // xenShared() already did SHARED_RING_INIT: attach, as the back does.
  const ring = FrontRing.attach(region, BLKIF_RING_FLAT, 0 as RingIdx);
  const { request: reqCodec, response: rspCodec } = BLKIF_RING_FLAT;
  // One request struct refilled per message, one response struct decoded into.
  const req = reqCodec.create();
  req.operation = BLKIF_OP_WRITE;
  req.handle = 0;
  req.nrSegments = 1;
  req.segGref[0] = 8;
  req.segFirstSect[0] = 0;
  req.segLastSect[0] = 7;
  const rsp = rspCodec.create();
  let seq = 0;
  let done = 0;
  let sleeps = 0;
  const t0 = performance.now();
  const tMeasure = t0 + cfg.warmupMs;
  const tEnd = tMeasure + cfg.measureMs;
  let measuring = false;
  let m0 = { done: 0, t: 0, kb: 0, kf: 0, sleeps: 0 };
  for (;;) {
    const now = performance.now();
    if (!measuring && now >= tMeasure) {
      measuring = true;
      m0 = { done, t: now, kb: bells.atomicLoadU32(BELL_BACK), kf: bells.atomicLoadU32(BELL_FRONT), sleeps };
    }
    if (measuring && now >= tEnd) {
      const r: FrontReport = {
        msgs: done - m0.done,
        ms: now - m0.t,
        kicksToBack: bells.atomicLoadU32(BELL_BACK) - m0.kb,
        kicksToFront: bells.atomicLoadU32(BELL_FRONT) - m0.kf,
        sleeps: sleeps - m0.sleeps,
      };
      bells.atomicStoreU32(STOP, 1);
      kick(bells, BELL_BACK);
      return r;
    }
    for (let i = 0; i < cfg.depth; i++) {
      // The id carries the sequence number (low half; the high half stays 0).
      req.idLo = seq >>> 0;
      req.sectorNumber = seq * 8;
      ring.putRequestFrom(reqCodec, req);
      seq++;
    }
    if (ring.pushRequestsAndCheckNotify()) kick(bells, BELL_BACK);
    let pending = cfg.depth;
    while (pending > 0) {
      const ready = ring.hasUnconsumedResponses();
      if (!ready.ok) throw new Error(`ring bench: ${ready.error.kind}`);
      let n = ready.value;
      if (n > 0) {
        while (n-- > 0) {
          const got = ring.copyResponseInto(rspCodec, rsp);
          if (!got.ok || rsp.idLo !== done >>> 0 || rsp.idHi !== 0) throw new Error(`ring bench: bad response for ${done}`);
          done++;
          pending--;
        }
        continue;
      }
      if (spinFor(cfg.spinUs, () => ring.shared.loadRspProd() === ring.rspCons)) continue;
      const seen = bells.atomicLoadU32(BELL_FRONT);
      const fin = ring.finalCheckForResponses();
      if (!fin.ok) throw new Error(`ring bench: ${fin.error.kind}`);
      if (fin.value) continue;
      sleeps++;
      bells.wait32(BELL_FRONT, seen, 1000);
    }
  }
}

function xenBack(sh: XenShared, cfg: PairConfig): BackReport {
  const { ring: region, bells } = regions(sh);
  const ring = BackRing.init(region, BLKIF_RING_FLAT);
  const { request: reqCodec, response: rspCodec } = BLKIF_RING_FLAT;
  const req = reqCodec.create(); // the private decoded copy, reused
  const rsp = rspCodec.create();
  let seq = 0;
  let sleeps = 0;
  while (bells.atomicLoadU32(STOP) === 0) {
    const ready = ring.unconsumedRequests();
    if (!ready.ok) throw new Error(`ring bench: ${ready.error.kind}`);
    let n = ready.value;
    if (n > 0) {
      while (n-- > 0) {
        const got = ring.copyRequestInto(reqCodec, req);
        if (!got.ok || req.idLo !== seq >>> 0 || req.nrSegments !== 1) throw new Error(`ring bench: bad request for ${seq}`);
        // Echo the opaque id.
        rsp.idLo = req.idLo;
        rsp.idHi = req.idHi;
        rsp.operation = req.operation;
        rsp.status = BLKIF_RSP_OKAY;
        ring.putResponseFrom(rspCodec, rsp);
        seq++;
      }
      if (ring.pushResponsesAndCheckNotify()) kick(bells, BELL_FRONT);
      continue;
    }
    if (spinFor(cfg.spinUs, () => ring.shared.loadReqProd() === ring.reqCons && bells.atomicLoadU32(STOP) === 0)) continue;
    const seen = bells.atomicLoadU32(BELL_BACK);
    const fin = ring.finalCheckForRequests();
    if (!fin.ok) throw new Error(`ring bench: ${fin.error.kind}`);
    if (fin.value || bells.atomicLoadU32(STOP) !== 0) continue;
    sleeps++;
    bells.wait32(BELL_BACK, seen, 1000);
  }
  return { msgs: seq, sleeps };
}

if (!isMainThread) {
  const data = workerData as { role?: string; shared: XenShared; cfg: PairConfig };
  if (data.role === 'xen-front') parentPort?.postMessage(xenFront(data.shared, data.cfg));
  else if (data.role === 'xen-back') parentPort?.postMessage(xenBack(data.shared, data.cfg));
}

// ---------------------------------------------------------------------------
// Driver (main thread)

type Impl = 'xen' | 'plain' | 'ringbuf';
const IMPLS: readonly Impl[] = ['xen', 'plain', 'ringbuf'];
const DEPTHS = [1, 8, 32] as const;
const MODES = [
  { name: 'spin', spinUs: 20 },
  { name: 'sleep', spinUs: 0 },
] as const;

function result<T>(w: Worker, role: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${role} did not finish in 60 s`)), 60_000);
    w.once('message', (m: T) => {
      clearTimeout(timer);
      resolve(m);
    });
    w.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export async function runPair(impl: Impl, cfg: PairConfig): Promise<FrontReport> {
  const entry =
    impl === 'xen' ? new URL(import.meta.url) : impl === 'plain' ? new URL('./baselines/plain-ring.ts', import.meta.url) : new URL('./baselines/ringbuf-js.ts', import.meta.url);
  const data: Record<string, unknown> =
    impl === 'xen' ? { shared: xenShared(), cfg } : impl === 'plain' ? { sab: plainShared(), cfg } : { shared: ringbufShared(), cfg };
  const back = spawnTsWorker(entry, { ...data, role: `${impl}-back` });
  const backDone = result<BackReport>(back, `${impl} back`);
  const front = spawnTsWorker(entry, { ...data, role: `${impl}-front` });
  const frontDone = result<FrontReport>(front, `${impl} front`);
  try {
    const [f] = await Promise.all([frontDone, backDone]);
    return f;
  } finally {
    await Promise.all([front.terminate(), back.terminate()]);
  }
}

const LABEL: Record<Impl, string> = { xen: 'xen blkif ring', plain: 'plain SPSC ring (64 B)', ringbuf: 'ringbuf.js (64 B)' };

const bench: Benchmark = async ({ quick }) => {
  const runs = quick ? 3 : 7;
  // Long enough for both workers to start and for TurboFan to finish with the
  // hot loops of every ring, even on a loaded machine: a short warmup measured
  // JIT compilation, which costs more the more code a ring runs (ours: the
  // region, codec and ring layers; the plain ring: one tiny loop).
  const warmupMs = quick ? 300 : 500;
  const measureMs = quick ? 300 : 600;
  const figures: Figure[] = [];
  for (const mode of MODES) {
    for (const depth of DEPTHS) {
      const cfg: PairConfig = { depth, spinUs: mode.spinUs, warmupMs, measureMs };
      const rate: Record<Impl, number[]> = { xen: [], plain: [], ringbuf: [] };
      const notes: Record<Impl, number[]> = { xen: [], plain: [], ringbuf: [] };
      for (let r = 0; r < runs; r++) {
        // Interleave the rings run by run so drift hits them alike.
        for (const impl of IMPLS) {
          const f = await runPair(impl, cfg);
          rate[impl].push(f.msgs / (f.ms / 1000));
          notes[impl].push((f.kicksToBack + f.kicksToFront) / f.msgs);
        }
      }
      const tag = `QD${depth} ${mode.name}`;
      const plain = { name: `${LABEL.plain} ${tag}`, value: median(rate.plain) };
      figures.push(
        figure({ name: `${LABEL.xen} ${tag}: throughput`, value: median(rate.xen), unit: 'msg/s', better: 'higher', baseline: plain, target: 0.8, runs: rate.xen, baselineRuns: rate.plain }),
        figure({ name: `${LABEL.ringbuf} ${tag}: throughput`, value: median(rate.ringbuf), unit: 'msg/s', better: 'higher', baseline: plain, runs: rate.ringbuf, baselineRuns: rate.plain }),
        figure({
          name: `${LABEL.xen} ${tag}: notifications/request`,
          value: median(notes.xen),
          unit: 'kicks/msg',
          better: 'lower',
          baseline: { name: `${LABEL.plain} ${tag}`, value: median(notes.plain) },
          runs: notes.xen,
          baselineRuns: notes.plain,
        }),
      );
      console.error(
        `ring ${tag}: xen ${median(rate.xen).toFixed(0)}  plain ${median(rate.plain).toFixed(0)}  ringbuf.js ${median(rate.ringbuf).toFixed(0)} msg/s; ` +
          `kicks/msg xen ${median(notes.xen).toFixed(4)} plain ${median(notes.plain).toFixed(4)} ringbuf.js ${median(notes.ringbuf).toFixed(4)}`,
      );
    }
  }
  return figures;
};

export default bench;
