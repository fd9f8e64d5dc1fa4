/**
 * netback's credit scheduler on a fake clock: how much a vif may send per
 * interval, the 128 KiB burst allowance, the timer that resumes a throttled
 * queue, and the `rate` key libxl writes.
 */
import { expect } from 'chai';
import { CreditLimiter, parseRateKey } from '../../../dom0/netback/credit.ts';
import type { NetTimers } from '../../../dom0/net/loop.ts';
import { parseVifRate } from '../../../cli/config/vifspec.ts';

class FakeTimers implements NetTimers {
  t = 0;
  private q: { at: number; fn: () => void; live: boolean }[] = [];
  now(): number { return this.t; }
  after(ms: number, fn: () => void): () => void {
    const e = { at: this.t + ms, fn, live: true };
    this.q.push(e);
    return () => { e.live = false; };
  }
  /** Advance to t, firing due timers in order. */
  advance(to: number): void {
    for (;;) {
      const due = this.q.filter((e) => e.live && e.at <= to).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.t = due.at;
      due.live = false;
      due.fn();
    }
    this.q = this.q.filter((e) => e.live);
    this.t = to;
  }
}

describe('netback credit scheduler (rate=)', () => {
  it('reads the rate key libxl writes from a vifspec rate', () => {
    const r = parseVifRate('8Mb/s@10ms');
    expect(r.ok).to.equal(true);
    if (!r.ok) return;
    expect(`${r.value.bytesPerInterval},${r.value.intervalUsecs}`).to.equal('10000,10000');
    expect(parseRateKey('10000,10000')).to.deep.equal({ bytesPerInterval: 10000, intervalUs: 10000 });
    for (const bad of ['', '10000', '10000,', '-1,5', '1,2,3', 'x,1', '1e3,5']) expect(parseRateKey(bad), bad).to.equal(undefined);
  });

  it('lets exactly the credit through per interval, and a timer resumes the queue at the next window', () => {
    const t = new FakeTimers();
    let resumed = 0;
    const c = new CreditLimiter({ bytesPerInterval: 10_000, intervalUs: 10_000 }, t, () => { resumed++; });
    let sent = 0;
    const pump = (): void => {
      while (!c.exceeded(1000)) {
        c.charge(1000);
        sent += 1000;
      }
    };
    pump();
    expect(sent).to.equal(10_000); // the first window's credit
    for (let ms = 1; ms <= 1000; ms++) {
      const before = resumed;
      t.advance(ms);
      if (resumed > before) pump();
    }
    // One second: 100 windows of 10 000 bytes (the first was spent at t = 0).
    expect(sent).to.be.within(1_000_000, 1_010_000);
    expect(resumed).to.be.within(99, 101);
    expect(c.throttled).to.be.within(99, 102);
  });

  it('lets idle credit accumulate to a 128 KiB burst, never more, so a 64 KiB GSO packet can always go', () => {
    const t = new FakeTimers();
    const c = new CreditLimiter({ bytesPerInterval: 1000, intervalUs: 1000 }, t, () => {});
    expect(c.exceeded(65535)).to.equal(true); // 1000 bytes of credit now
    // The replenish timer gives one interval's worth; checks after each interval add one more.
    for (let ms = 1; ms <= 200; ms++) {
      t.advance(ms);
      c.exceeded(1_000_000); // a check that cannot pass, but adds the interval's credit
    }
    expect(c.exceeded(131072)).to.equal(false);
    c.charge(131072);
    expect(c.exceeded(1)).to.equal(true);
  });

  it('never limits a vif without a rate', () => {
    const c = new CreditLimiter(undefined, new FakeTimers(), () => {});
    for (let i = 0; i < 1000; i++) {
      expect(c.exceeded(65535)).to.equal(false);
      c.charge(65535);
    }
    expect(c.unlimited).to.equal(true);
  });
});
