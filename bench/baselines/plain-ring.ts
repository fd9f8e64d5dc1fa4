/**
 * Baseline for `npm run bench -- ring`: a plain SPSC shared-memory ring pair
 * (one request ring, one response ring) with 64-byte messages, written
 * straight on a SharedArrayBuffer with Atomics — no MemRegion, no codec, no
 * bigint. It uses the same wake scheme as our Xen ring: the consumer's event
 * index (cons + 1 when it goes idle), the (new − event) < (new − old) notify
 * rule, a wake word per direction, spin-then-sleep, re-arm then re-check.
 *
 * This file is also the worker entry for its two roles ('plain-front',
 * 'plain-back'); see bench/ring.bench.ts for the closed-loop protocol.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { BackReport, FrontReport, PairConfig } from '../ring.bench.ts';

/** Slots per ring: the one-page blkif ring's 32. */
export const PLAIN_SLOTS = 32;
/** Bytes per message. */
export const PLAIN_MSG = 64;

// Byte layout of the shared buffer (each word on its own 64-byte line).
const REQ_PROD = 0;
const REQ_CONS = 64;
const REQ_EVENT = 128;
const RSP_PROD = 192;
const RSP_CONS = 256;
const RSP_EVENT = 320;
/** Wake words: bumped by the kicker, waited on by the sleeper (their values count kicks). */
export const BELL_BACK = 384;
export const BELL_FRONT = 448;
const STOP = 512;
const REQ_SLOTS = 1024;
const RSP_SLOTS = REQ_SLOTS + PLAIN_SLOTS * PLAIN_MSG;
const BYTES = RSP_SLOTS + PLAIN_SLOTS * PLAIN_MSG;

/** [plainShared] allocates the shared buffer for one front/back pair. */
export function plainShared(): SharedArrayBuffer {
  return new SharedArrayBuffer(BYTES);
}

const w = (byte: number) => byte >> 2;

/** One direction: an SPSC ring of PLAIN_SLOTS messages with Xen-style event suppression. */
class Spsc {
  private prodPvt = 0;
  private consPvt = 0;
  private readonly slots: Uint8Array[] = [];
  constructor(
    private readonly i32: Int32Array,
    sab: SharedArrayBuffer,
    private readonly prod: number,
    private readonly cons: number,
    private readonly event: number,
    slotBase: number,
  ) {
    for (let i = 0; i < PLAIN_SLOTS; i++) this.slots.push(new Uint8Array(sab, slotBase + i * PLAIN_MSG, PLAIN_MSG));
    Atomics.store(i32, w(event), 1);
  }
  // -- producer side --
  free(): number {
    return PLAIN_SLOTS - ((this.prodPvt - Atomics.load(this.i32, w(this.cons))) >>> 0);
  }
  put(msg: Uint8Array): void {
    (this.slots[this.prodPvt & (PLAIN_SLOTS - 1)] as Uint8Array).set(msg);
    this.prodPvt = (this.prodPvt + 1) >>> 0;
  }
  pushAndCheckNotify(): boolean {
    const old = Atomics.load(this.i32, w(this.prod)) >>> 0;
    const nw = this.prodPvt;
    // Consumer sees messages /before/ the new producer index (release store).
    Atomics.store(this.i32, w(this.prod), nw | 0);
    // Seq-cst: the consumer sees the new index /before/ we read its event.
    const ev = Atomics.load(this.i32, w(this.event)) >>> 0;
    return ((nw - ev) >>> 0) < ((nw - old) >>> 0);
  }
  // -- consumer side --
  available(): number {
    return (Atomics.load(this.i32, w(this.prod)) - this.consPvt) >>> 0;
  }
  take(into: Uint8Array): void {
    into.set(this.slots[this.consPvt & (PLAIN_SLOTS - 1)] as Uint8Array);
    this.consPvt = (this.consPvt + 1) >>> 0;
  }
  /** Publishes consumption (frees slots for the producer). */
  release(): void {
    Atomics.store(this.i32, w(this.cons), this.consPvt | 0);
  }
  finalCheck(): boolean {
    if (this.available() > 0) return true;
    // Seq-cst: the producer sees our new event /before/ we re-read its index.
    Atomics.store(this.i32, w(this.event), (this.consPvt + 1) | 0);
    return this.available() > 0;
  }
  producerIdle(): boolean {
    return Atomics.load(this.i32, w(this.prod)) >>> 0 === this.consPvt;
  }
}

function kick(i32: Int32Array, bell: number): void {
  Atomics.add(i32, w(bell), 1);
  Atomics.notify(i32, w(bell), 1);
}

/** Spin up to spinUs while `idle()` holds; true if work appeared. */
function spinFor(spinUs: number, idle: () => boolean): boolean {
  if (spinUs <= 0) return false;
  const until = performance.now() + spinUs / 1000;
  let n = 0;
  while (idle()) {
    if ((++n & 63) === 0 && performance.now() > until) return false;
  }
  return true;
}

function front(sab: SharedArrayBuffer, cfg: PairConfig): FrontReport {
  const i32 = new Int32Array(sab);
  const req = new Spsc(i32, sab, REQ_PROD, REQ_CONS, REQ_EVENT, REQ_SLOTS);
  const rsp = new Spsc(i32, sab, RSP_PROD, RSP_CONS, RSP_EVENT, RSP_SLOTS);
  const msg = new Uint8Array(PLAIN_MSG);
  const msgWords = new Uint32Array(msg.buffer);
  for (let i = 1; i < 16; i++) msgWords[i] = 0x01010101 * i;
  const got = new Uint8Array(PLAIN_MSG);
  const gotWords = new Uint32Array(got.buffer);
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
      m0 = { done, t: now, kb: Atomics.load(i32, w(BELL_BACK)), kf: Atomics.load(i32, w(BELL_FRONT)), sleeps };
    }
    if (measuring && now >= tEnd) {
      const r: FrontReport = {
        msgs: done - m0.done,
        ms: now - m0.t,
        kicksToBack: Atomics.load(i32, w(BELL_BACK)) - m0.kb,
        kicksToFront: Atomics.load(i32, w(BELL_FRONT)) - m0.kf,
        sleeps: sleeps - m0.sleeps,
      };
      Atomics.store(i32, w(STOP), 1);
      kick(i32, BELL_BACK);
      return r;
    }
    // One closed-loop batch: depth requests out, then wait for all depth responses.
    if (req.free() < cfg.depth) throw new Error('plain ring: request ring unexpectedly full');
    for (let i = 0; i < cfg.depth; i++) {
      msgWords[0] = seq++;
      req.put(msg);
    }
    if (req.pushAndCheckNotify()) kick(i32, BELL_BACK);
    let pending = cfg.depth;
    while (pending > 0) {
      let n = rsp.available();
      if (n > 0) {
        while (n-- > 0) {
          rsp.take(got);
          if (gotWords[0] !== (done >>> 0)) throw new Error(`plain ring: response ${gotWords[0]} for ${done}`);
          done++;
          pending--;
        }
        rsp.release();
        continue;
      }
      if (spinFor(cfg.spinUs, () => rsp.producerIdle())) continue;
      const seen = Atomics.load(i32, w(BELL_FRONT));
      if (rsp.finalCheck()) continue;
      sleeps++;
      Atomics.wait(i32, w(BELL_FRONT), seen, 1000);
    }
  }
}

function back(sab: SharedArrayBuffer, cfg: PairConfig): BackReport {
  const i32 = new Int32Array(sab);
  const req = new Spsc(i32, sab, REQ_PROD, REQ_CONS, REQ_EVENT, REQ_SLOTS);
  const rsp = new Spsc(i32, sab, RSP_PROD, RSP_CONS, RSP_EVENT, RSP_SLOTS);
  const got = new Uint8Array(PLAIN_MSG);
  const gotWords = new Uint32Array(got.buffer);
  const out = new Uint8Array(PLAIN_MSG);
  const outWords = new Uint32Array(out.buffer);
  let seq = 0;
  let sleeps = 0;
  while (Atomics.load(i32, w(STOP)) === 0) {
    let n = req.available();
    if (n > 0) {
      while (n-- > 0) {
        req.take(got);
        if (gotWords[0] !== (seq >>> 0)) throw new Error(`plain ring: request ${gotWords[0]} for ${seq}`);
        if (rsp.free() === 0) throw new Error('plain ring: response ring unexpectedly full');
        outWords[0] = gotWords[0] as number;
        rsp.put(out);
        seq++;
      }
      req.release();
      if (rsp.pushAndCheckNotify()) kick(i32, BELL_FRONT);
      continue;
    }
    if (spinFor(cfg.spinUs, () => req.producerIdle() && Atomics.load(i32, w(STOP)) === 0)) continue;
    const seen = Atomics.load(i32, w(BELL_BACK));
    if (req.finalCheck() || Atomics.load(i32, w(STOP)) !== 0) continue;
    sleeps++;
    Atomics.wait(i32, w(BELL_BACK), seen, 1000);
  }
  return { msgs: seq, sleeps };
}

/**
 * [cpuNs] is the CPU time this process has used, in nanoseconds (user +
 * system, microsecond resolution). Single-thread cost benchmarks time with it
 * rather than the wall clock, so that time the thread spends descheduled on a
 * busy machine is not counted.
 */
export function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

/**
 * [plainSingleThread depth batches] runs the closed loop of the ring bench in
 * ONE thread — depth requests put and pushed, the back takes, answers and
 * pushes them, the front takes the responses — `batches` times, and returns
 * the CPU nanoseconds per message (request + response). No wake-ups and no idle
 * re-arming: this is the CPU cost of the data path alone, the denominator of
 * bench/ring-cost.bench.ts.
 */
export function plainSingleThread(depth: number, batches: number): number {
  const sab = plainShared();
  const i32 = new Int32Array(sab);
  const req = new Spsc(i32, sab, REQ_PROD, REQ_CONS, REQ_EVENT, REQ_SLOTS);
  const rsp = new Spsc(i32, sab, RSP_PROD, RSP_CONS, RSP_EVENT, RSP_SLOTS);
  const msg = new Uint8Array(PLAIN_MSG);
  const msgWords = new Uint32Array(msg.buffer);
  for (let i = 1; i < 16; i++) msgWords[i] = 0x01010101 * i;
  const got = new Uint8Array(PLAIN_MSG);
  const gotWords = new Uint32Array(got.buffer);
  const bgot = new Uint8Array(PLAIN_MSG);
  const bgotWords = new Uint32Array(bgot.buffer);
  const out = new Uint8Array(PLAIN_MSG);
  const outWords = new Uint32Array(out.buffer);
  let seq = 0;
  let bseq = 0;
  let done = 0;
  let kicks = 0;
  const t0 = cpuNs();
  for (let b = 0; b < batches; b++) {
    // Front: one batch out.
    if (req.free() < depth) throw new Error('plain ring: request ring unexpectedly full');
    for (let i = 0; i < depth; i++) {
      msgWords[0] = seq++;
      req.put(msg);
    }
    if (req.pushAndCheckNotify()) kicks++;
    // Back: drain and answer.
    let n = req.available();
    while (n-- > 0) {
      req.take(bgot);
      if (bgotWords[0] !== (bseq >>> 0)) throw new Error(`plain ring: request ${bgotWords[0]} for ${bseq}`);
      if (rsp.free() === 0) throw new Error('plain ring: response ring unexpectedly full');
      outWords[0] = bgotWords[0] as number;
      rsp.put(out);
      bseq++;
    }
    req.release();
    if (rsp.pushAndCheckNotify()) kicks++;
    // Front: take the responses.
    let m = rsp.available();
    while (m-- > 0) {
      rsp.take(got);
      if (gotWords[0] !== (done >>> 0)) throw new Error(`plain ring: response ${gotWords[0]} for ${done}`);
      done++;
    }
    rsp.release();
  }
  const ns = (cpuNs() - t0) / done;
  if (done !== depth * batches || kicks < 0) throw new Error('plain ring: lost messages');
  return ns;
}

if (!isMainThread) {
  const data = workerData as { role?: string; sab: SharedArrayBuffer; cfg: PairConfig };
  if (data.role === 'plain-front') parentPort?.postMessage(front(data.sab, data.cfg));
  else if (data.role === 'plain-back') parentPort?.postMessage(back(data.sab, data.cfg));
}
