import { expect } from 'chai';
import fc from 'fast-check';
import { asRingIdx, idxAdd, idxSlot, idxSub, notifyNeeded, type RingIdx } from '../../../shared/ring/u32.ts';

const idx = (n: number) => n as RingIdx;
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

describe('ring index arithmetic (u32)', () => {
  it('wraps additions and differences at 2^32 without special cases', () => {
    expect(idxAdd(idx(0xffff_ffff), 1)).to.equal(0);
    expect(idxAdd(idx(0xffff_fff0), 0x20)).to.equal(0x10);
    expect(idxSub(idx(0x10), idx(0xffff_fff0))).to.equal(0x20);
    expect(idxSub(idx(5), idx(5))).to.equal(0);
    expect(idxSub(idx(4), idx(5))).to.equal(0xffff_ffff);
    expect(idxSlot(idx(0xffff_ffff), 32)).to.equal(31);
    expect(idxSlot(idx(0x8000_0021), 32)).to.equal(1);
  });

  it('refuses ring indices that are not u32', () => {
    expect(() => asRingIdx(-1)).to.throw(RangeError);
    expect(() => asRingIdx(2 ** 32)).to.throw(RangeError);
    expect(() => asRingIdx(1.5)).to.throw(RangeError);
    expect(asRingIdx(0xffff_ffff)).to.equal(0xffff_ffff);
  });

  it('keeps (a + n) - a == n for any a and n up to 2^31 (property)', () => {
    fc.assert(
      fc.property(u32, fc.integer({ min: 0, max: 0x7fff_ffff }), (a, n) => {
        const b = idxAdd(idx(a), n);
        expect(b).to.be.within(0, 0xffff_ffff);
        expect(idxSub(b, idx(a))).to.equal(n);
      }),
    );
  });

  it('notifies iff the event index lies in (old, new], modulo 2^32 (property)', () => {
    fc.assert(
      fc.property(u32, fc.integer({ min: 0, max: 4096 }), u32, (old, pushed, event) => {
        const newIdx = idxAdd(idx(old), pushed);
        const d = idxSub(idx(event), idx(old)); // where the event lies, counted from old
        const expected = d >= 1 && d <= pushed;
        expect(notifyNeeded(newIdx, idx(old), idx(event))).to.equal(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('notifies iff the event index lies in (old, new] right around 2^32 (property)', () => {
    const nearWrap = fc.integer({ min: 0xffff_ff00, max: 0xffff_ffff });
    fc.assert(
      fc.property(nearWrap, fc.integer({ min: 0, max: 512 }), fc.integer({ min: -600, max: 600 }), (old, pushed, rel) => {
        const event = idxAdd(idx(old), rel < 0 ? 2 ** 32 + rel : rel);
        const newIdx = idxAdd(idx(old), pushed);
        // Unbounded model: compare positions on the number line relative to old.
        const expected = rel >= 1 && rel <= pushed;
        expect(notifyNeeded(newIdx, idx(old), event)).to.equal(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('never notifies for an empty push and always notifies when the event is the first new index', () => {
    fc.assert(
      fc.property(u32, u32, (old, event) => {
        expect(notifyNeeded(idx(old), idx(old), idx(event))).to.equal(false);
        expect(notifyNeeded(idxAdd(idx(old), 1), idx(old), idxAdd(idx(old), 1))).to.equal(true);
      }),
    );
  });
});
