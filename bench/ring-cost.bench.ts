/**
 * `npm run bench -- ring-cost [--quick]`: the CPU cost of one request and its
 * response on our blkif ring, in ONE thread, with no wake-ups — the part of
 * bench/ring.bench.ts that does not depend on the scheduler, so it is far less
 * noisy on a shared machine.
 *
 * Each iteration is the closed loop of the ring bench at depth N done by one
 * thread: the front puts N requests and pushes (checking for a notify), the
 * back reads req_prod, copies each request out once, decodes it, answers it
 * and pushes, then the front reads rsp_prod and copies each response out. The
 * figure is CPU nanoseconds per message (request + response; process CPU
 * time, so time spent descheduled does not count), against the plain
 * SPSC ring (bench/baselines/plain-ring.ts) doing the same loop with 64-byte
 * messages; the cross-thread bench's ≥ 0.8x throughput target needs this
 * ratio well under 1/0.8.
 *
 * Two ring paths are measured:
 *  - "objects": the RingCodec API (putRequest / copyRequest / putResponse /
 *    copyResponse with BLKIF_RING), a fresh decoded object and bigint id per
 *    entry;
 *  - "fast": the allocation-free path drivers should use (putRequestFrom /
 *    copyRequestInto / putResponseFrom / copyResponseInto with
 *    BLKIF_RING_FLAT), encoding from and decoding into reused structs.
 * Each over a machine-memory region (the hypervisor's view) and a domain's
 * P2M-checked region (what a guest or dom0 driver holds).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { BLKIF_OP_WRITE, BLKIF_RSP_OKAY } from '../shared/abi/blkif.ts';
import { P2M } from '../shared/abi/p2m.ts';
import { DomainMemory } from '../shared/memory/domain-memory.ts';
import { MachineMemory } from '../shared/memory/machine-memory.ts';
import { machineRegion, type MemRegion } from '../shared/memory/region.ts';
import { BackRing } from '../shared/ring/back-ring.ts';
import { BLKIF_RING, BLKIF_RING_FLAT, type BlkifSegment } from '../shared/ring/codec.ts';
import { FrontRing } from '../shared/ring/front-ring.ts';
import type { DomId, Gref, MachineAddr, Pfn } from '../shared/types.ts';
import { spawnTsWorker } from '../shared/worker/spawn.ts';
import { cpuNs, plainSingleThread } from './baselines/plain-ring.ts';
import { figure, median, type Benchmark, type Figure } from './harness.ts';

const RING_FRAME = 16;
const P2M_FRAME = 4;
const FAULTS_FRAME = 5;
const RING_PFN = 3;

type RegionKind = 'machine' | 'domain';

/** A one-page ring region of the given kind over fresh memory, SHARED_RING_INIT done. */
function ringRegion(kind: RegionKind): MemRegion {
  const mem = MachineMemory.create({ memBytes: 4 << 20, pageSize: 4096 });
  if (kind === 'machine') return machineRegion(mem, (RING_FRAME * 4096) as MachineAddr, 1);
  // A domain whose pfn RING_PFN is machine frame RING_FRAME, present and writable.
  const p2mAddr = (P2M_FRAME * 4096) as MachineAddr;
  mem.setU32((p2mAddr + RING_PFN * P2M.ENTRY_BYTES) as MachineAddr, RING_FRAME | P2M.PRESENT | P2M.WRITABLE);
  const dm = new DomainMemory(mem, { domid: 1 as DomId, p2mAddr, p2mEntries: 16, faultCounterAddr: (FAULTS_FRAME * 4096) as MachineAddr });
  return dm.region([RING_PFN as Pfn]);
}

const SEG: readonly BlkifSegment[] = [{ gref: 8 as Gref, firstSect: 0, lastSect: 7 }];

/** The objects path: what bench/ring.bench.ts did before the fast path existed. */
function objectsLoop(kind: RegionKind, depth: number, batches: number): number {
  const region = ringRegion(kind);
  const front = FrontRing.init(region, BLKIF_RING);
  const back = BackRing.init(region, BLKIF_RING);
  let seq = 0;
  let bseq = 0;
  let done = 0;
  let kicks = 0;
  const t0 = cpuNs();
  for (let b = 0; b < batches; b++) {
    for (let i = 0; i < depth; i++) {
      front.putRequest({ operation: BLKIF_OP_WRITE, handle: 0, id: BigInt(seq), sectorNumber: seq * 8, seg: SEG });
      seq++;
    }
    if (front.pushRequestsAndCheckNotify()) kicks++;
    const ready = back.unconsumedRequests();
    if (!ready.ok) throw new Error(ready.error.kind);
    for (let n = ready.value; n > 0; n--) {
      const req = back.copyRequest();
      if (!req.ok || req.value.id !== BigInt(bseq)) throw new Error(`bad request for ${bseq}`);
      back.putResponse({ id: req.value.id, operation: req.value.operation, status: BLKIF_RSP_OKAY });
      bseq++;
    }
    if (back.pushResponsesAndCheckNotify()) kicks++;
    const got = front.hasUnconsumedResponses();
    if (!got.ok) throw new Error(got.error.kind);
    for (let n = got.value; n > 0; n--) {
      const rsp = front.copyResponse();
      if (!rsp.ok || rsp.value.id !== BigInt(done)) throw new Error(`bad response for ${done}`);
      done++;
    }
  }
  const ns = (cpuNs() - t0) / done;
  if (done !== depth * batches || kicks < 0) throw new Error('lost messages');
  return ns;
}

/** The fast path: flat structs decoded into, no allocation per message. */
function flatLoop(kind: RegionKind, depth: number, batches: number): number {
  const region = ringRegion(kind);
  const front = FrontRing.init(region, BLKIF_RING_FLAT);
  const back = BackRing.init(region, BLKIF_RING_FLAT);
  const { request: reqCodec, response: rspCodec } = BLKIF_RING_FLAT;
  const out = reqCodec.create(); // the front's request, refilled per message
  out.operation = BLKIF_OP_WRITE;
  out.nrSegments = 1;
  out.segGref[0] = 8;
  out.segFirstSect[0] = 0;
  out.segLastSect[0] = 7;
  const req = reqCodec.create(); // the back's private decoded copy
  const rspOut = rspCodec.create();
  const rsp = rspCodec.create();
  let seq = 0;
  let bseq = 0;
  let done = 0;
  let kicks = 0;
  const t0 = cpuNs();
  for (let b = 0; b < batches; b++) {
    for (let i = 0; i < depth; i++) {
      out.idLo = seq;
      out.sectorNumber = seq * 8;
      front.putRequestFrom(reqCodec, out);
      seq++;
    }
    if (front.pushRequestsAndCheckNotify()) kicks++;
    const ready = back.unconsumedRequests();
    if (!ready.ok) throw new Error(ready.error.kind);
    for (let n = ready.value; n > 0; n--) {
      const r = back.copyRequestInto(reqCodec, req);
      if (!r.ok || req.idLo !== bseq) throw new Error(`bad request for ${bseq}`);
      rspOut.idLo = req.idLo;
      rspOut.idHi = req.idHi;
      rspOut.operation = req.operation;
      rspOut.status = BLKIF_RSP_OKAY;
      back.putResponseFrom(rspCodec, rspOut);
      bseq++;
    }
    if (back.pushResponsesAndCheckNotify()) kicks++;
    const got = front.hasUnconsumedResponses();
    if (!got.ok) throw new Error(got.error.kind);
    for (let n = got.value; n > 0; n--) {
      const r = front.copyResponseInto(rspCodec, rsp);
      if (!r.ok || rsp.idLo !== done) throw new Error(`bad response for ${done}`);
      done++;
    }
  }
  const ns = (cpuNs() - t0) / done;
  if (done !== depth * batches || kicks < 0) throw new Error('lost messages');
  return ns;
}

export type Path = 'plain' | 'objects-machine' | 'objects-domain' | 'flat-machine' | 'flat-domain';
const PATHS: readonly Path[] = ['plain', 'objects-machine', 'objects-domain', 'flat-machine', 'flat-domain'];
const LABEL: Record<Path, string> = {
  plain: 'plain SPSC ring (64 B), one thread',
  'objects-machine': 'xen blkif ring, RingCodec objects, machine region',
  'objects-domain': 'xen blkif ring, RingCodec objects, domain region',
  'flat-machine': 'xen blkif ring, flat structs, machine region',
  'flat-domain': 'xen blkif ring, flat structs, domain region',
};

export function runPath(path: Path, depth: number, batches: number): number {
  switch (path) {
    case 'plain': return plainSingleThread(depth, batches);
    case 'objects-machine': return objectsLoop('machine', depth, batches);
    case 'objects-domain': return objectsLoop('domain', depth, batches);
    case 'flat-machine': return flatLoop('machine', depth, batches);
    case 'flat-domain': return flatLoop('domain', depth, batches);
  }
}

const DEPTHS = [1, 8, 32] as const;

interface CostJob {
  readonly path: Path;
  readonly depth: number;
  readonly batches: number;
  readonly runs: number;
}

/**
 * One worker per (path, depth, round): a driver thread runs one kind of ring
 * on one kind of region, so each path gets its own JIT feedback instead of
 * code made polymorphic by the other paths sharing the process.
 */
function inWorker(job: CostJob): Promise<number[]> {
  const w = spawnTsWorker(new URL(import.meta.url), { role: 'ring-cost', job });
  return new Promise<number[]>((resolve, reject) => {
    w.once('message', (m: number[]) => resolve(m));
    w.once('error', reject);
  }).finally(() => void w.terminate());
}

if (!isMainThread) {
  const data = workerData as { role?: string; job: CostJob };
  if (data.role === 'ring-cost') {
    const { path, depth, batches, runs } = data.job;
    // Warm the path up (JIT) before timing it.
    for (let i = 0; i < 3; i++) runPath(path, depth, Math.ceil(batches / 4));
    const out: number[] = [];
    for (let r = 0; r < runs; r++) out.push(runPath(path, depth, batches));
    parentPort?.postMessage(out);
  }
}

const bench: Benchmark = async ({ quick }) => {
  const rounds = 3;
  const runsPerRound = quick ? 2 : 3;
  const msgsPerRun = quick ? 200_000 : 600_000;
  const figures: Figure[] = [];
  for (const depth of DEPTHS) {
    const batches = Math.ceil(msgsPerRun / depth);
    const ns: Record<Path, number[]> = { plain: [], 'objects-machine': [], 'objects-domain': [], 'flat-machine': [], 'flat-domain': [] };
    for (let r = 0; r < rounds; r++) {
      // Rounds interleave the paths, so drift on a shared machine hits them alike.
      for (const p of PATHS) ns[p].push(...(await inWorker({ path: p, depth, batches, runs: runsPerRound })));
    }
    const plain = { name: `${LABEL.plain} QD${depth}`, value: median(ns.plain) };
    for (const p of PATHS) {
      if (p === 'plain') continue;
      figures.push(figure({ name: `${LABEL[p]} QD${depth}: cost`, value: median(ns[p]), unit: 'ns/msg', better: 'lower', baseline: plain, runs: ns[p] }));
    }
    console.error(`ring-cost QD${depth}: ` + PATHS.map((p) => `${p} ${median(ns[p]).toFixed(1)}`).join('  ') + ' ns/msg');
  }
  return figures;
};

export default bench;
