import { expect } from 'chai';
import fc from 'fast-check';
import { PfnPool } from '../../../shared/kernel/page-alloc.ts';
import type { Pfn } from '../../../shared/types.ts';

describe('PfnPool (shared/kernel/page-alloc.ts)', () => {
  it('hands out each pfn of its range once, lowest first, skipping excluded ones', () => {
    const pool = new PfnPool('test', 100, 6, new Set([102, 104]));
    expect(pool.available).to.equal(4);
    const got = [pool.alloc(), pool.alloc(), pool.alloc(), pool.alloc()];
    expect(got).to.deep.equal([100, 101, 103, 105]);
    expect(pool.inUse).to.equal(4);
    expect(pool.tryAlloc()).to.equal(undefined);
    expect(() => pool.alloc()).to.throw(/test: out of pages/);
  });

  it('takes back only what it handed out, once', () => {
    const pool = new PfnPool('p', 0, 4);
    const a = pool.alloc();
    expect(() => pool.release(3 as Pfn)).to.throw(/pfn 3 freed but not allocated/);
    pool.release(a);
    expect(() => pool.release(a)).to.throw(/freed but not allocated/);
    expect(pool.available).to.equal(4);
    expect(pool.inUse).to.equal(0);
    expect(pool.alloc()).to.equal(a); // LIFO: the page just freed comes back first
  });

  it('never hands out a pfn twice under random alloc/release (property)', () => {
    fc.assert(fc.property(fc.array(fc.oneof(fc.constant(-1), fc.nat(50)), { maxLength: 80 }), (ops) => {
      const pool = new PfnPool('q', 10, 20, new Set([15]));
      const held = new Set<number>();
      for (const o of ops) {
        if (o === -1) {
          const p = pool.tryAlloc();
          if (p === undefined) { expect(held.size).to.equal(19); continue; }
          expect(held.has(p)).to.equal(false);
          expect(p).to.be.within(10, 29);
          expect(p).to.not.equal(15);
          held.add(p);
        } else if (held.size > 0) {
          const p = [...held][o % held.size] as Pfn;
          pool.release(p);
          held.delete(p);
        }
        expect(pool.inUse).to.equal(held.size);
        expect(pool.available).to.equal(19 - held.size);
      }
    }), { numRuns: 200 });
  });
});
