import { expect } from 'chai';
import fc from 'fast-check';
import { FrameAllocator, xorshift32 } from '../../../hypervisor/frame-allocator.ts';
import { testMachine } from '../../helpers/machine.ts';
import type { Mfn } from '../../../shared/types.ts';

const M = (n: number) => n as Mfn;

/** Number of places where consecutive frames of a list are not adjacent in machine memory. */
function breaks(mfns: readonly number[]): number {
  let n = 0;
  for (let i = 1; i < mfns.length; i++) if (mfns[i] !== (mfns[i - 1] as number) + 1) n++;
  return n;
}

describe('FrameAllocator', () => {
  it('hands out scattered frames: distinct, previously free, and not one contiguous run', () => {
    const a = new FrameAllocator(10_000, 100, 10_000, 7);
    const r = a.allocScattered(200);
    if (!r.ok) throw new Error('allocScattered failed');
    const got = r.value;
    expect(new Set(got).size).to.equal(200);
    for (const m of got) {
      expect(m).to.be.within(100, 9_999);
      expect(a.isFree(m)).to.equal(false);
    }
    expect(a.freeCount).to.equal(9_900 - 200);
    // Neither in order nor as a run: most neighbours are far apart.
    expect(breaks(got)).to.be.greaterThan(150);
    const sorted = [...got].sort((x, y) => x - y);
    expect(breaks(sorted)).to.be.greaterThan(100);
  });

  it('gives the lowest run of consecutive free frames for contiguous requests, honouring alignment', () => {
    const a = new FrameAllocator(64, 0, 64, 1);
    // Punch holes so that the first fitting run is at 10.
    for (const m of [0, 1, 2, 3, 4, 5, 6, 7, 9, 20]) expect(a.take(M(m))).to.equal(true);
    const r = a.allocContiguous(5);
    expect(r).to.deep.equal({ ok: true, value: 10 });
    for (let m = 10; m < 15; m++) expect(a.isFree(M(m))).to.equal(false);
    expect(a.isFree(M(8))).to.equal(true); // a single-frame hole is skipped, not split
    const aligned = a.allocContiguous(5, 8);
    expect(aligned).to.deep.equal({ ok: true, value: 24 }); // 16..20 is aligned but 20 is taken
    expect(a.take(M(8))).to.equal(true);
    expect(a.take(M(8))).to.equal(false);
  });

  it('fails cleanly when exhausted, taking nothing', () => {
    const a = new FrameAllocator(128, 64, 128, 3);
    const before = a.freeCount;
    expect(a.allocScattered(65)).to.deep.equal({ ok: false, error: { kind: 'out-of-memory', wanted: 65, free: 64 } });
    expect(a.allocContiguous(65)).to.deep.equal({ ok: false, error: { kind: 'out-of-memory', wanted: 65, free: 64 } });
    expect(a.freeCount).to.equal(before);
    // Enough frames in total, but no run long enough: a distinct error, still nothing taken.
    for (let m = 64; m < 128; m += 4) a.take(M(m));
    const free = a.freeCount;
    expect(a.allocContiguous(4)).to.deep.equal({ ok: false, error: { kind: 'no-contiguous-run', wanted: 4, free } });
    expect(a.freeCount).to.equal(free);
    expect(a.allocContiguous(3).ok).to.equal(true);
    // Everything out: the next single frame fails too.
    const rest = a.allocScattered(a.freeCount);
    expect(rest.ok).to.equal(true);
    expect(a.freeCount).to.equal(0);
    expect(a.allocScattered(1).ok).to.equal(false);
  });

  it('throws on a double free and keeps its books unchanged', () => {
    const a = new FrameAllocator(32, 0, 32, 1);
    const r = a.allocScattered(1);
    if (!r.ok) throw new Error('alloc');
    const m = r.value[0] as Mfn;
    a.free(m);
    const count = a.freeCount;
    expect(() => a.free(m)).to.throw(RangeError, /double free/);
    expect(a.freeCount).to.equal(count);
    // And a frame that was never handed out.
    expect(() => a.free(M(5))).to.throw(RangeError, /double free/);
  });

  it('replays placement from the seed, and another seed places differently', () => {
    const run = (seed: number) => {
      const a = new FrameAllocator(4096, 16, 4096, seed);
      const out: number[] = [];
      for (let i = 0; i < 5; i++) {
        const r = a.allocScattered(20);
        if (!r.ok) throw new Error('alloc');
        out.push(...r.value);
        a.free(r.value[3] as Mfn);
      }
      return out;
    };
    expect(run(42)).to.deep.equal(run(42));
    expect(run(42)).to.not.deep.equal(run(43));
    // The PRNG itself: a known seed gives a fixed, non-degenerate stream.
    const g1 = xorshift32(1);
    const g2 = xorshift32(1);
    const s = Array.from({ length: 8 }, () => g1());
    expect(Array.from({ length: 8 }, () => g2())).to.deep.equal(s);
    expect(new Set(s).size).to.equal(8);
    expect(xorshift32(0)()).to.not.equal(0); // seed 0 is remapped, never a stuck stream
  });

  it('places a domain\'s RAM the same way on two machines booted with the same seed', () => {
    const place = (seed: number) => {
      const m = testMachine(16 << 20, { seed });
      const r = m.hv.createDomain({ name: 'g', memoryKiB: 512, model: 'vp' });
      if (!r.ok) throw new Error('create');
      const d = m.hv.domain(r.value.domid);
      if (d === undefined) throw new Error('no domain');
      return Array.from({ length: d.spec.pages }, (_, pfn) => d.p2m.lookup(pfn as never));
    };
    expect(place(9)).to.deep.equal(place(9));
    expect(place(9)).to.not.deep.equal(place(10));
  });

  it('stays consistent under random alloc/free sequences (property)', () => {
    type Op = { k: 'scatter'; n: number } | { k: 'contig'; n: number; align: number } | { k: 'free'; pick: number } | { k: 'take'; m: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ k: fc.constant('scatter' as const), n: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ k: fc.constant('contig' as const), n: fc.integer({ min: 1, max: 24 }), align: fc.constantFrom(1, 2, 4, 8) }),
      fc.record({ k: fc.constant('free' as const), pick: fc.nat() }),
      fc.record({ k: fc.constant('take' as const), m: fc.integer({ min: 0, max: 255 }) }),
    );
    fc.assert(fc.property(fc.integer({ min: 1, max: 0xffff }), fc.array(op, { maxLength: 60 }), (seed, ops) => {
      const FIRST = 16;
      const a = new FrameAllocator(256, FIRST, 256, seed);
      const used = new Set<number>();
      for (const o of ops) {
        if (o.k === 'scatter') {
          const r = a.allocScattered(o.n);
          if (o.n > 240 - used.size) { expect(r.ok).to.equal(false); continue; }
          if (!r.ok) throw new Error('scatter failed with enough frames');
          for (const m of r.value) { expect(used.has(m)).to.equal(false); expect(m).to.be.within(FIRST, 255); used.add(m); }
        } else if (o.k === 'contig') {
          const r = a.allocContiguous(o.n, o.align);
          if (r.ok) {
            expect(r.value % o.align).to.equal(0);
            for (let m = r.value; m < r.value + o.n; m++) { expect(used.has(m)).to.equal(false); used.add(m); }
          } else {
            // Refused only if no aligned free run of that length exists.
            for (let s = FIRST; s + o.n <= 256; s++) {
              if (s % o.align !== 0) continue;
              let fits = true;
              for (let m = s; m < s + o.n; m++) if (used.has(m)) { fits = false; break; }
              expect(fits, `run at ${s} was free`).to.equal(false);
            }
          }
        } else if (o.k === 'free') {
          if (used.size === 0) continue;
          const m = [...used][o.pick % used.size] as number;
          a.free(m as Mfn);
          used.delete(m);
          expect(() => a.free(m as Mfn)).to.throw(RangeError);
        } else {
          const wasFree = o.m >= FIRST && !used.has(o.m);
          expect(a.take(o.m as Mfn)).to.equal(wasFree);
          if (wasFree) used.add(o.m);
        }
        expect(a.freeCount).to.equal(240 - used.size);
      }
      for (let m = 0; m < 256; m++) expect(a.isFree(m as Mfn)).to.equal(m >= FIRST && !used.has(m));
    }), { numRuns: 200 });
  });
});

describe('FrameAllocator low (DMA) zone', () => {
  it('keeps scattered allocations out of the low zone until the rest is used up', () => {
    const a = new FrameAllocator(1000, 0, 1000, 5, 200);
    const r = a.allocScattered(800);
    expect(r.ok).to.equal(true);
    if (r.ok) expect(r.value.every((m) => m >= 200)).to.equal(true);
    // The low zone is still one long run for a contiguous request below a limit.
    const run = a.allocContiguous(150, 1, 200);
    expect(run.ok && run.value).to.equal(0);
    // Past the high zone, scattered allocations fall back to the low one.
    const more = a.allocScattered(50);
    expect(more.ok && more.value.every((m) => m >= 150 && m < 200)).to.equal(true);
    expect(a.freeCount).to.equal(0);
  });
});
