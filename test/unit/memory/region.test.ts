/**
 * PagedRegion: a byte range over frames scattered in machine memory, each
 * access translated afresh; and machineRegion, its contiguous special case.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { PagedRegion, hasWordCopies, machineRegion } from '../../../shared/memory/region.ts';
import type { MachineAddr } from '../../../shared/types.ts';

const mem = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
const A = (n: number) => n as MachineAddr;

/** A 4-page region whose page p is machine frame frames[p]; counts translations. */
function scattered(frames: number[]) {
  const calls: [number, boolean][] = [];
  const r = new PagedRegion(mem, frames.length, (p, write) => {
    calls.push([p, write]);
    return A((frames[p] as number) * 4096);
  });
  return { r, calls };
}

describe('PagedRegion', () => {
  it('copies ranges across scattered pages byte for byte, by bytes and by words (property)', () => {
    const frames = [40, 37, 52, 38];
    const { r } = scattered(frames);
    const shadow = new Uint8Array(r.byteLength);
    const at = (off: number) => A((frames[Math.floor(off / 4096)] as number) * 4096 + (off % 4096));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: r.byteLength - 1 }), fc.integer({ min: 0, max: 9000 }), fc.integer({ min: 0, max: 255 }), fc.boolean(), (off0, n0, seed, words) => {
        const off = words ? off0 & ~3 : off0;
        const len = Math.min(words ? n0 & ~3 : n0, r.byteLength - off);
        const data = Uint8Array.from({ length: len }, (_, i) => (seed + i * 13) & 0xff);
        if (words) {
          const w = new Int32Array(len / 4);
          new Uint8Array(w.buffer).set(data);
          r.copyInWords(off, w, 0, len / 4);
        } else {
          r.copyIn(off, data);
        }
        shadow.set(data, off);
        // Read back both ways, and check the bytes landed in the right frames.
        const out = new Uint8Array(len);
        r.copyOut(off, out);
        expect(Buffer.compare(out, data)).to.equal(0);
        const ow = new Int32Array(Math.floor(len / 4));
        if (words) {
          r.copyOutWords(off, ow, 0, ow.length);
          expect(Buffer.compare(new Uint8Array(ow.buffer), data)).to.equal(0);
        }
        for (const probe of [off, off + len - 1, off + (len >> 1)]) {
          if (probe >= off && probe < off + len) expect(mem.getU8(at(probe))).to.equal(shadow[probe]);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('translates on every access, one page at a time, so a changed mapping is followed at once', () => {
    const frames = [60, 61];
    const { r, calls } = scattered(frames);
    r.copyOutWords(4096 - 8, new Int32Array(4), 0, 4); // straddles: two translations, for reading
    expect(calls).to.deep.equal([[0, false], [1, false]]);
    calls.length = 0;
    r.copyInWords(16, Int32Array.from([7]), 0, 1);
    r.setU32(20, 9);
    expect(calls).to.deep.equal([[0, true], [0, true]]);
    frames[0] = 62; // the page is now another frame (remapped)
    r.copyInWords(16, Int32Array.from([8]), 0, 1);
    expect(mem.getU32(A(62 * 4096 + 16))).to.equal(8);
    expect(mem.getU32(A(60 * 4096 + 16))).to.equal(7);
  });

  it('refuses accesses outside the region, and translates nothing for an empty copy at its end', () => {
    const { r, calls } = scattered([70, 71]);
    expect(() => r.copyOutWords(8192 - 4, new Int32Array(2), 0, 2)).to.throw(RangeError, /outside/);
    expect(() => r.copyIn(-1, new Uint8Array(1))).to.throw(RangeError, /outside/);
    expect(() => r.getU32(4094)).to.throw(RangeError, /straddles/);
    expect(() => r.copyOutWords(2, new Int32Array(1), 0, 1)).to.throw(RangeError, /aligned/);
    r.copyOut(8192, new Uint8Array(0));
    r.copyInWords(8192, new Int32Array(0), 0, 0);
    expect(calls.filter(([p]) => p >= 2)).to.deep.equal([]);
  });

  it('propagates a translation fault instead of touching any frame', () => {
    const r = new PagedRegion(mem, 1, () => {
      throw new Error('page not present');
    });
    expect(() => r.copyOutWords(0, new Int32Array(1), 0, 1)).to.throw(/not present/);
    expect(() => r.atomicLoadU32(0)).to.throw(/not present/);
  });

  it('offers word copies, and a machineRegion over contiguous frames agrees with a translated region over the same frames', () => {
    const c = machineRegion(mem, A(80 * 4096), 2);
    const { r } = scattered([80, 81]);
    expect(hasWordCopies(c) && hasWordCopies(r)).to.equal(true);
    c.copyInWords(4096 - 4, Int32Array.from([0x11223344, 0x55667788]), 0, 2);
    const viaScattered = new Int32Array(2);
    r.copyOutWords(4096 - 4, viaScattered, 0, 2);
    expect([...viaScattered]).to.deep.equal([0x11223344, 0x55667788]);
    c.atomicStoreU32(4096 + 8, 5);
    expect(r.atomicLoadU32(4096 + 8)).to.equal(5);
    expect(mem.getU32(A(81 * 4096 + 8))).to.equal(5);
  });
});
