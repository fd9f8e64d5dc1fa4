/**
 * Credit-based TX rate limiting, as Linux netback does it for a vif's
 * `rate` (backend key "rate" = "<bytes>,<usecs>", written by libxl from the
 * vifspec's rate=RATE/s@INTERVAL; cli/config/vifspec.ts):
 *
 *  - every `intervalUs` the queue may send `bytesPerInterval` more bytes;
 *    unused credit accumulates up to a burst of max(128 KiB, bytesPerInterval)
 *    so a 64 KiB GSO packet can always go (tx_add_credit);
 *  - a packet bigger than the credit left stops the queue until the next
 *    window opens, when a timer resumes it (tx_credit_exceeded). The request
 *    stays on the ring, unconsumed.
 */
import type { NetTimers } from '../net/loop.ts';

/** Linux: "allow a burst big enough to transmit a jumbo packet of up to 128kB". */
const MIN_BURST = 131072;

export interface RateSpec {
  readonly bytesPerInterval: number;
  readonly intervalUs: number;
}

/** [parseRateKey s] reads the backend's "rate" key ("bytes,usecs"); undefined for anything malformed. */
export function parseRateKey(s: string): RateSpec | undefined {
  const m = /^([0-9]{1,16}),([0-9]{1,10})$/.exec(s);
  if (m === null) return undefined;
  const bytes = Number(m[1]);
  const us = Number(m[2]);
  if (!Number.isSafeInteger(bytes) || us > 0xffff_ffff) return undefined;
  return { bytesPerInterval: bytes, intervalUs: us };
}

export class CreditLimiter {
  private remaining: number;
  private windowStart: number;
  private readonly maxBurst: number;
  private cancel: (() => void) | undefined;
  /** Times a packet had to wait for credit. */
  throttled = 0;

  constructor(
    readonly rate: RateSpec | undefined,
    private readonly timers: NetTimers,
    private readonly onReplenish: () => void,
  ) {
    const b = rate?.bytesPerInterval ?? Infinity;
    this.remaining = b;
    this.maxBurst = Math.max(MIN_BURST, b);
    this.windowStart = timers.now();
  }

  get unlimited(): boolean {
    return this.rate === undefined || this.rate.intervalUs === 0 || this.rate.bytesPerInterval >= Number.MAX_SAFE_INTEGER;
  }

  private addCredit(): void {
    const b = this.rate?.bytesPerInterval ?? 0;
    this.remaining = Math.min(this.remaining + b, this.maxBurst);
  }

  /**
   * [exceeded size] is tx_credit_exceeded: true if a packet of size bytes
   * must wait (a timer then calls onReplenish). False means it may go; the
   * caller then charges it with [charge].
   */
  exceeded(size: number): boolean {
    if (this.unlimited || size <= this.remaining) return false;
    if (this.cancel !== undefined) return true; // a replenish is already due
    const intervalMs = (this.rate?.intervalUs ?? 0) / 1000;
    const now = this.timers.now();
    const next = this.windowStart + intervalMs;
    if (now >= next) {
      this.windowStart = now;
      this.addCredit();
    }
    if (size <= this.remaining) return false;
    this.throttled++;
    const at = this.windowStart + intervalMs;
    this.windowStart = at;
    this.cancel = this.timers.after(Math.max(0, at - now), () => {
      this.cancel = undefined;
      // A late timer starts the window when the credit actually came (Linux keeps the
      // planned start, which lets a late timer and the next check both add credit).
      this.windowStart = Math.max(this.windowStart, this.timers.now());
      this.addCredit();
      this.onReplenish();
    });
    return true;
  }

  /** [charge size] takes size bytes of credit (never below zero). */
  charge(size: number): void {
    if (this.unlimited) return;
    this.remaining = Math.max(0, this.remaining - size);
  }

  /** [stop] cancels a pending replenish (disconnect). */
  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
  }
}
