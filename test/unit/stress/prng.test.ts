import { expect } from 'chai';
import { Prng, parseSeedRange } from '../../../stress/prng.ts';

describe('stress Prng', () => {
  it('gives the same stream for the same seed and different streams for neighbouring seeds', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const c = new Prng(43);
    const xs = Array.from({ length: 64 }, () => a.next());
    expect(Array.from({ length: 64 }, () => b.next())).to.deep.equal(xs);
    const ys = Array.from({ length: 64 }, () => c.next());
    expect(ys.filter((y, i) => y === xs[i])).to.have.length.below(2);
  });

  it('forks streams named by label, independent of what the parent drew before', () => {
    const a = new Prng(7);
    const f1 = a.fork('scheduler').next();
    for (let i = 0; i < 100; i++) a.next();
    expect(a.fork('scheduler').next()).to.equal(f1);
    expect(a.fork('chaos').next()).to.not.equal(f1);
  });

  it('keeps int, range, pick and weighted inside their bounds and roughly uniform', () => {
    const r = new Prng(1);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[r.int(4)]!++;
    for (const c of counts) expect(c).to.be.within(850, 1150);
    for (let i = 0; i < 200; i++) expect(r.range(5, 9)).to.be.within(5, 9);
    expect(() => r.pick([])).to.throw(RangeError);
    const w = [0, 0, 0];
    for (let i = 0; i < 3000; i++) w[r.weighted([0, 1, 3])]!++;
    expect(w[0]).to.equal(0);
    expect(w[2]! / w[1]!).to.be.within(2.4, 3.8);
    expect(r.bytes(7)).to.have.length(7);
  });

  it('refuses seeds that are not u32 and parses seed ranges', () => {
    expect(() => new Prng(-1)).to.throw(RangeError);
    expect(() => new Prng(2 ** 32)).to.throw(RangeError);
    expect(parseSeedRange('5')).to.deep.equal([5]);
    expect(parseSeedRange('3..6')).to.deep.equal([3, 4, 5, 6]);
    expect(() => parseSeedRange('6..3')).to.throw(RangeError);
    expect(() => parseSeedRange('a..b')).to.throw(RangeError);
    expect(() => parseSeedRange('0..200000')).to.throw(RangeError);
  });
});
