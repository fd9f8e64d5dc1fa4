/**
 * The two ends of a blkif ring driven by real worker threads (for
 * test/integration/ring-workers.test.ts), with Xen-style event suppression and
 * a wake word per direction standing in for an event channel:
 *
 *   kick    = bump the peer's wake word, then notify32 it;
 *   sleep   = snapshot my wake word, re-arm my event index and re-check the
 *             ring (RING_FINAL_CHECK_*), and only then wait32 on the snapshot,
 *             so a kick that lands after the re-check makes the wait return.
 *
 * Before sleeping each side spins briefly on the ring (both threads have a
 * core in this test). Every request carries a sequence number in its id,
 * sector and segment gref; both sides check it so that a lost, duplicated or
 * reordered entry fails the run.
 */
import { BLKIF_OP_WRITE, BLKIF_RSP_OKAY } from '../../shared/abi/blkif.ts';
import type { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { machineRegion, type MemRegion } from '../../shared/memory/region.ts';
import { BackRing } from '../../shared/ring/back-ring.ts';
import { BLKIF_RING, type BlkifRequest } from '../../shared/ring/codec.ts';
import { FrontRing } from '../../shared/ring/front-ring.ts';
import type { RingIdx } from '../../shared/ring/u32.ts';
import type { Gref, MachineAddr } from '../../shared/types.ts';

export interface RingRunConfig {
  /** Machine frame of the first ring page (the ring is contiguous here). */
  readonly ringFrame: number;
  readonly ringPages: number;
  /** Machine frame of the page holding the two wake words. */
  readonly bellFrame: number;
  /** Free-running index the ring starts at (near 2^32 to exercise wrap). */
  readonly start: number;
  readonly total: number;
  /** Spin iterations on the ring before going to sleep. */
  readonly spin: number;
}

export interface RingRunReport {
  readonly role: 'front' | 'back';
  readonly processed: number;
  /** Kicks sent to the peer (pushes whose notify check said yes). */
  readonly kicks: number;
  /** Times this side actually went to sleep on its wake word. */
  readonly sleeps: number;
  /** Sleeps that ended by timeout rather than a kick (a lost wake-up if > 0 while work was pending). */
  readonly timeouts: number;
  readonly ms: number;
}

/** Wake words: one per direction, on separate cache lines. */
export const BELL_FRONT = 0; // the back kicks the front here (responses ready)
export const BELL_BACK = 64; // the front kicks the back here (requests ready)
const SLEEP_MS = 200;

export function ringRegion(mem: MachineMemory, cfg: RingRunConfig): MemRegion {
  return machineRegion(mem, (cfg.ringFrame * mem.pageSize) as MachineAddr, cfg.ringPages);
}
export function bellRegion(mem: MachineMemory, cfg: RingRunConfig): MemRegion {
  return machineRegion(mem, (cfg.bellFrame * mem.pageSize) as MachineAddr, 1);
}

function kick(bells: MemRegion, off: number): void {
  // Full barrier: the peer sees our pushed index /before/ the bumped word.
  bells.atomicAddU32(off, 1);
  bells.notify32(off, 1);
}

/** The request with sequence number k. */
export function seqRequest(k: number): BlkifRequest {
  return {
    operation: BLKIF_OP_WRITE,
    handle: 0x51,
    id: (BigInt(k) << 16n) | 0xbeefn,
    sectorNumber: k * 8,
    seg: [{ gref: (k >>> 0) as Gref, firstSect: 0, lastSect: 7 }],
  };
}

export function runFront(mem: MachineMemory, cfg: RingRunConfig): RingRunReport {
  const ring = FrontRing.attach(ringRegion(mem, cfg), BLKIF_RING, cfg.start as RingIdx);
  const bells = bellRegion(mem, cfg);
  const t0 = performance.now();
  let sent = 0;
  let done = 0;
  let kicks = 0;
  let sleeps = 0;
  let timeouts = 0;
  while (done < cfg.total) {
    let progress = false;
    let free = ring.freeRequests();
    if (free > 0 && sent < cfg.total) {
      while (free-- > 0 && sent < cfg.total) ring.putRequest(seqRequest(sent++));
      if (ring.pushRequestsAndCheckNotify()) {
        kick(bells, BELL_BACK);
        kicks++;
      }
      progress = true;
    }
    const ready = ring.hasUnconsumedResponses();
    if (!ready.ok) throw new Error(`hostile backend? ${JSON.stringify(ready.error)}`);
    for (let n = ready.value; n > 0; n--) {
      const rsp = ring.copyResponse();
      if (!rsp.ok) throw new Error(`undecodable response ${JSON.stringify(rsp.error)}`);
      const expected = (BigInt(done) << 16n) | 0xbeefn;
      if (rsp.value.id !== expected || rsp.value.status !== BLKIF_RSP_OKAY) {
        throw new Error(`response ${done}: got id ${rsp.value.id} status ${rsp.value.status}, expected id ${expected}`);
      }
      done++;
      progress = true;
    }
    if (progress || done >= cfg.total) continue;
    // Idle: spin briefly, then re-arm rsp_event, re-check, and sleep.
    let spun = 0;
    while (spun < cfg.spin && ring.shared.loadRspProd() === ring.rspCons) spun++;
    if (spun < cfg.spin) continue;
    const seen = bells.atomicLoadU32(BELL_FRONT);
    const fin = ring.finalCheckForResponses();
    if (!fin.ok) throw new Error(`hostile backend? ${JSON.stringify(fin.error)}`);
    if (fin.value) continue;
    sleeps++;
    if (bells.wait32(BELL_FRONT, seen, SLEEP_MS) === 'timed-out') timeouts++;
  }
  return { role: 'front', processed: done, kicks, sleeps, timeouts, ms: performance.now() - t0 };
}

export function runBack(mem: MachineMemory, cfg: RingRunConfig): RingRunReport {
  const ring = BackRing.attach(ringRegion(mem, cfg), BLKIF_RING, cfg.start as RingIdx);
  const bells = bellRegion(mem, cfg);
  const t0 = performance.now();
  let seq = 0;
  let kicks = 0;
  let sleeps = 0;
  let timeouts = 0;
  while (seq < cfg.total) {
    const ready = ring.unconsumedRequests();
    if (!ready.ok) throw new Error(`hostile frontend: ${JSON.stringify(ready.error)}`);
    if (ready.value > 0) {
      for (let n = ready.value; n > 0; n--) {
        const got = ring.copyRequest();
        if (!got.ok) throw new Error(`undecodable request ${seq}: ${JSON.stringify(got.error)}`);
        const req = got.value;
        const want = seqRequest(seq);
        if (
          req.id !== want.id ||
          req.sectorNumber !== want.sectorNumber ||
          req.operation !== BLKIF_OP_WRITE ||
          req.seg.length !== 1 ||
          req.seg[0]?.gref !== (seq >>> 0)
        ) {
          throw new Error(`request ${seq}: got id ${req.id} sector ${req.sectorNumber}, expected id ${want.id}`);
        }
        ring.putResponse({ id: req.id, operation: req.operation, status: BLKIF_RSP_OKAY });
        seq++;
      }
      if (ring.pushResponsesAndCheckNotify()) {
        kick(bells, BELL_FRONT);
        kicks++;
      }
      continue;
    }
    let spun = 0;
    while (spun < cfg.spin && ring.shared.loadReqProd() === ring.reqCons) spun++;
    if (spun < cfg.spin) continue;
    const seen = bells.atomicLoadU32(BELL_BACK);
    const fin = ring.finalCheckForRequests();
    if (!fin.ok) throw new Error(`hostile frontend: ${JSON.stringify(fin.error)}`);
    if (fin.value) continue;
    sleeps++;
    if (bells.wait32(BELL_BACK, seen, SLEEP_MS) === 'timed-out') timeouts++;
  }
  return { role: 'back', processed: seq, kicks, sleeps, timeouts, ms: performance.now() - t0 };
}
