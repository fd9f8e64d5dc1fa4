/**
 * [createLoopbackPair] makes two NetDevices joined by an in-memory link with
 * configurable latency, loss, duplication and reordering, and a bounded number of
 * frames in transit per direction (send returns false when it is full, like a full
 * TX ring). Randomness is seeded; time comes from the given WorkloadClock.
 *
 * Frames due at the same time are delivered together in one macrotask, so a burst
 * reaches the receiver as a batch (as a netfront RX interrupt would deliver it).
 */
import type { DeviceCounters, WorkloadClock } from '../../domU/workloads/block-device.ts';
import type { NetDevice } from '../../domU/workloads/net-device.ts';
import { Xoshiro128 } from '../../domU/workloads/fio-engine.ts';

export interface LoopbackOptions {
  readonly clock: WorkloadClock;
  /** One-way delay in ns (default 0: next macrotask). */
  readonly latencyNs?: number;
  /** Probability a frame is silently dropped (default 0). */
  readonly lossRate?: number;
  /** Probability a frame is delivered twice (default 0). */
  readonly duplicateRate?: number;
  /** Probability a frame overtakes the one queued before it (default 0). */
  readonly reorderRate?: number;
  /** Frames in transit per direction before send() says no (default 256). */
  readonly txQueueFrames?: number;
  /** Link rate in bits/s for serialization delay (default: infinite). */
  readonly bitsPerSecond?: number;
  readonly mtu?: number;
  readonly seed?: number;
  readonly macA?: string;
  readonly macB?: string;
  /** Called with every frame as it is sent (before loss), e.g. to write a pcap. */
  readonly capture?: (from: 'a' | 'b', frame: Uint8Array, tNs: bigint) => void;
  /** Drop a frame when this says so (deterministic loss for tests), after random loss. */
  readonly dropIf?: (from: 'a' | 'b', frame: Uint8Array, index: number) => boolean;
}

interface InTransit {
  readonly frame: Uint8Array;
  readonly at: bigint;
}

export class LoopbackNetDevice implements NetDevice {
  readonly mtu: number;
  peer!: LoopbackNetDevice;
  private handler: ((frame: Uint8Array) => void) | undefined;
  /** Frames this side sent that are not yet delivered (or dropped at delivery time). */
  private readonly transit: InTransit[] = [];
  private deliveryArmed = false;
  private writable: (() => void)[] = [];
  private linkFreeAt = 0n;
  private sentIndex = 0;
  private readonly c = { tx_frames: 0, tx_bytes: 0, tx_busy: 0, rx_frames: 0, rx_bytes: 0, dropped: 0, duplicated: 0, reordered: 0 };

  constructor(
    readonly mac: string,
    private readonly name: 'a' | 'b',
    private readonly opts: LoopbackOptions,
    private readonly rng: Xoshiro128,
  ) {
    this.mtu = opts.mtu ?? 1500;
  }

  send(frame: Uint8Array): boolean {
    const cap = this.opts.txQueueFrames ?? 256;
    if (this.transit.length >= cap) {
      this.c.tx_busy++;
      return false;
    }
    const clock = this.opts.clock;
    const now = clock.now();
    this.opts.capture?.(this.name, frame, now);
    this.c.tx_frames++;
    this.c.tx_bytes += frame.length;
    const index = this.sentIndex++;
    const lost = (this.opts.lossRate ?? 0) > 0 && this.rng.nextU32() / 0x1_0000_0000 < (this.opts.lossRate ?? 0);
    if (lost || this.opts.dropIf?.(this.name, frame, index) === true) {
      this.c.dropped++;
      return true;
    }
    let at = now + BigInt(Math.round(this.opts.latencyNs ?? 0));
    if (this.opts.bitsPerSecond !== undefined) {
      const start = this.linkFreeAt > now ? this.linkFreeAt : now;
      this.linkFreeAt = start + BigInt(Math.ceil((frame.length * 8 * 1e9) / this.opts.bitsPerSecond));
      at += this.linkFreeAt - now;
    }
    const copy = frame.slice();
    this.enqueue({ frame: copy, at });
    if ((this.opts.duplicateRate ?? 0) > 0 && this.rng.nextU32() / 0x1_0000_0000 < (this.opts.duplicateRate ?? 0)) {
      this.c.duplicated++;
      this.enqueue({ frame: copy, at });
    }
    this.armDelivery();
    return true;
  }

  private enqueue(t: InTransit): void {
    const q = this.transit;
    q.push(t);
    if (q.length >= 2 && (this.opts.reorderRate ?? 0) > 0 && this.rng.nextU32() / 0x1_0000_0000 < (this.opts.reorderRate ?? 0)) {
      const a = q[q.length - 2] as InTransit;
      q[q.length - 2] = { frame: t.frame, at: a.at };
      q[q.length - 1] = { frame: a.frame, at: t.at };
      this.c.reordered++;
    }
  }

  whenWritable(): Promise<void> {
    if (this.transit.length < (this.opts.txQueueFrames ?? 256)) return Promise.resolve();
    return new Promise<void>((r) => this.writable.push(r));
  }

  onReceive(handler: ((frame: Uint8Array) => void) | undefined): void {
    this.handler = handler;
  }

  counters(): DeviceCounters {
    return { ...this.c };
  }

  private armDelivery(): void {
    if (this.deliveryArmed || this.transit.length === 0) return;
    this.deliveryArmed = true;
    const head = this.transit[0] as InTransit;
    void this.opts.clock.sleepUntil(head.at).then(() => this.deliver());
  }

  private deliver(): void {
    this.deliveryArmed = false;
    const now = this.opts.clock.now();
    const q = this.transit;
    let n = 0;
    while (n < q.length && (q[n] as InTransit).at <= now) n++;
    const batch = q.splice(0, n);
    for (const t of batch) this.peer.receive(t.frame);
    if (this.writable.length > 0 && q.length < (this.opts.txQueueFrames ?? 256)) {
      const w = this.writable;
      this.writable = [];
      for (const r of w) r();
    }
    this.armDelivery();
  }

  private receive(frame: Uint8Array): void {
    this.c.rx_frames++;
    this.c.rx_bytes += frame.length;
    this.handler?.(frame);
  }
}

/** [createLoopbackPair opts] is two devices, a and b, wired to each other. */
export function createLoopbackPair(opts: LoopbackOptions): { a: LoopbackNetDevice; b: LoopbackNetDevice } {
  const rng = new Xoshiro128(opts.seed ?? 1);
  const a = new LoopbackNetDevice(opts.macA ?? '00:16:3e:00:00:01', 'a', opts, rng);
  const b = new LoopbackNetDevice(opts.macB ?? '00:16:3e:00:00:02', 'b', opts, rng);
  a.peer = b;
  b.peer = a;
  return { a, b };
}
