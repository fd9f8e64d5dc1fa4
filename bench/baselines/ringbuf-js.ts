/**
 * Baseline for `npm run bench -- ring`: the `ringbuf.js` npm package (a
 * wait-free SPSC ring on a SharedArrayBuffer), one ring per direction,
 * 64-byte messages pushed and popped one by one.
 *
 * ringbuf.js has no wake-up scheme, so we add the same one as our Xen ring:
 * each consumer counts what it consumed and, when idle, publishes an event
 * index (count + 1); the producer counts what it pushed and kicks iff
 * (new − event) < (new − old). Wake words, spin-then-sleep and re-arm then
 * re-check are as in bench/baselines/plain-ring.ts.
 *
 * Worker entry for the roles 'ringbuf-front' and 'ringbuf-back'.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { RingBuffer } from 'ringbuf.js';
import type { BackReport, FrontReport, PairConfig } from '../ring.bench.ts';
import { PLAIN_MSG, PLAIN_SLOTS } from './plain-ring.ts';

// Control words (byte offsets, one cache line each).
const REQ_PROD = 0; // messages pushed so far (a counter for the notify rule)
const REQ_EVENT = 64;
const RSP_PROD = 128;
const RSP_EVENT = 192;
const BELL_BACK = 256;
const BELL_FRONT = 320;
const STOP = 384;
const CONTROL_BYTES = 448;

export interface RingbufShared {
  readonly control: SharedArrayBuffer;
  readonly req: SharedArrayBuffer;
  readonly rsp: SharedArrayBuffer;
}

/** [ringbufShared] allocates the buffers for one front/back pair. */
export function ringbufShared(): RingbufShared {
  const control = new SharedArrayBuffer(CONTROL_BYTES);
  const i32 = new Int32Array(control);
  Atomics.store(i32, REQ_EVENT >> 2, 1);
  Atomics.store(i32, RSP_EVENT >> 2, 1);
  return {
    control,
    req: RingBuffer.getStorageForCapacity(PLAIN_SLOTS * PLAIN_MSG, Uint8Array),
    rsp: RingBuffer.getStorageForCapacity(PLAIN_SLOTS * PLAIN_MSG, Uint8Array),
  };
}

const w = (byte: number) => byte >> 2;

class Side {
  private pushed = 0;
  private consumed = 0;
  constructor(
    private readonly i32: Int32Array,
    readonly rb: RingBuffer,
    private readonly prod: number,
    private readonly event: number,
  ) {}
  push(msg: Uint8Array): void {
    if (this.rb.push(msg) !== PLAIN_MSG) throw new Error('ringbuf.js: ring unexpectedly full');
    this.pushed = (this.pushed + 1) >>> 0;
  }
  pushAndCheckNotify(): boolean {
    const old = Atomics.load(this.i32, w(this.prod)) >>> 0;
    const nw = this.pushed;
    Atomics.store(this.i32, w(this.prod), nw | 0);
    const ev = Atomics.load(this.i32, w(this.event)) >>> 0;
    return ((nw - ev) >>> 0) < ((nw - old) >>> 0);
  }
  available(): number {
    return Math.floor(this.rb.availableRead() / PLAIN_MSG);
  }
  pop(into: Uint8Array): void {
    if (this.rb.pop(into, PLAIN_MSG) !== PLAIN_MSG) throw new Error('ringbuf.js: short pop');
    this.consumed = (this.consumed + 1) >>> 0;
  }
  finalCheck(): boolean {
    if (this.available() > 0) return true;
    Atomics.store(this.i32, w(this.event), (this.consumed + 1) | 0);
    return this.available() > 0;
  }
}

function kick(i32: Int32Array, bell: number): void {
  Atomics.add(i32, w(bell), 1);
  Atomics.notify(i32, w(bell), 1);
}

function spinFor(spinUs: number, idle: () => boolean): boolean {
  if (spinUs <= 0) return false;
  const until = performance.now() + spinUs / 1000;
  let n = 0;
  while (idle()) {
    if ((++n & 63) === 0 && performance.now() > until) return false;
  }
  return true;
}

function front(sh: RingbufShared, cfg: PairConfig): FrontReport {
  const i32 = new Int32Array(sh.control);
  const req = new Side(i32, new RingBuffer(sh.req, Uint8Array), REQ_PROD, REQ_EVENT);
  const rsp = new Side(i32, new RingBuffer(sh.rsp, Uint8Array), RSP_PROD, RSP_EVENT);
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
    for (let i = 0; i < cfg.depth; i++) {
      msgWords[0] = seq++;
      req.push(msg);
    }
    if (req.pushAndCheckNotify()) kick(i32, BELL_BACK);
    let pending = cfg.depth;
    while (pending > 0) {
      let n = rsp.available();
      if (n > 0) {
        while (n-- > 0) {
          rsp.pop(got);
          if (gotWords[0] !== (done >>> 0)) throw new Error(`ringbuf.js: response ${gotWords[0]} for ${done}`);
          done++;
          pending--;
        }
        continue;
      }
      if (spinFor(cfg.spinUs, () => rsp.rb.empty())) continue;
      const seen = Atomics.load(i32, w(BELL_FRONT));
      if (rsp.finalCheck()) continue;
      sleeps++;
      Atomics.wait(i32, w(BELL_FRONT), seen, 1000);
    }
  }
}

function back(sh: RingbufShared, cfg: PairConfig): BackReport {
  const i32 = new Int32Array(sh.control);
  const req = new Side(i32, new RingBuffer(sh.req, Uint8Array), REQ_PROD, REQ_EVENT);
  const rsp = new Side(i32, new RingBuffer(sh.rsp, Uint8Array), RSP_PROD, RSP_EVENT);
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
        req.pop(got);
        if (gotWords[0] !== (seq >>> 0)) throw new Error(`ringbuf.js: request ${gotWords[0]} for ${seq}`);
        outWords[0] = gotWords[0] as number;
        rsp.push(out);
        seq++;
      }
      if (rsp.pushAndCheckNotify()) kick(i32, BELL_FRONT);
      continue;
    }
    if (spinFor(cfg.spinUs, () => req.rb.empty() && Atomics.load(i32, w(STOP)) === 0)) continue;
    const seen = Atomics.load(i32, w(BELL_BACK));
    if (req.finalCheck() || Atomics.load(i32, w(STOP)) !== 0) continue;
    sleeps++;
    Atomics.wait(i32, w(BELL_BACK), seen, 1000);
  }
  return { msgs: seq, sleeps };
}

if (!isMainThread) {
  const data = workerData as { role?: string; shared: RingbufShared; cfg: PairConfig };
  if (data.role === 'ringbuf-front') parentPort?.postMessage(front(data.shared, data.cfg));
  else if (data.role === 'ringbuf-back') parentPort?.postMessage(back(data.shared, data.cfg));
}
