import { expect } from 'chai';
import fc from 'fast-check';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { asMfn, type MachineAddr } from '../../../shared/types.ts';

const A = (n: number) => n as MachineAddr;

describe('MachineMemory', () => {
  it('cuts memory into frames of the configured page size', () => {
    const m4 = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
    expect(m4.frames).to.equal(4096);
    expect(m4.frameAddr(asMfn(3))).to.equal(3 * 4096);
    const m16 = MachineMemory.create({ memBytes: 16 << 20, pageSize: 16384 });
    expect(m16.frames).to.equal(1024);
    expect(m16.pageShift).to.equal(14);
  });

  it('refuses sizes that are not whole frames, odd page sizes and absurd sizes', () => {
    expect(() => MachineMemory.create({ memBytes: (16 << 20) + 1, pageSize: 4096 })).to.throw(/multiple of the page size/);
    expect(() => MachineMemory.create({ memBytes: 16 << 20, pageSize: 8192 as 4096 })).to.throw(/page size must be one of/);
    expect(() => MachineMemory.create({ memBytes: 64 * 1024 ** 3, pageSize: 4096 })).to.throw(/exceeds/);
    expect(() => MachineMemory.create({ memBytes: 4 * 1024 ** 3 + 4096 * 1024, pageSize: 4096 })).to.throw(/exceeds the 4294967296-byte limit/);
  });

  it('reads back little-endian scalars and never writes out of bounds', () => {
    const m = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
    m.setU32(A(8), 0x11223344);
    expect(m.getU8(A(8))).to.equal(0x44);
    m.setU64(A(16), 0x0102030405060708n);
    expect(m.getU32(A(16))).to.equal(0x05060708);
    expect(() => m.setU32(A(m.byteLength - 2), 1)).to.throw(RangeError, /outside memory/);
    expect(() => m.frameAddr(asMfn(m.frames))).to.throw(RangeError);
  });

  it('rejects unaligned atomics rather than tearing them', () => {
    const m = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
    expect(() => m.atomicLoad32(A(2))).to.throw(/aligned/);
    expect(m.atomicCmpxchg32(A(4), 0, 7)).to.equal(0);
    expect(m.atomicCmpxchg32(A(4), 0, 9)).to.equal(7);
    expect(m.atomicLoad32(A(4))).to.equal(7);
  });

  it('copies between frames, in and out, in one piece', () => {
    const m = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
    const data = Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff);
    m.copyIn(A(4096), data);
    m.copy(A(3 * 4096), A(4096), 5000);
    const back = new Uint8Array(5000);
    m.copyOut(A(3 * 4096), back);
    expect(Buffer.compare(back, data)).to.equal(0);
    expect(m.equal(A(4096), A(3 * 4096), 5000)).to.equal(true);
  });

  it('copies small ranges as memmove does: apart, overlapping either way, unaligned', () => {
    const m = MachineMemory.create({ memBytes: 4 << 20, pageSize: 4096 });
    const ref = new Uint8Array(8192);
    const fill = () => { for (let i = 0; i < ref.length; i++) ref[i] = (i * 7 + 3) & 0xff; m.copyIn(A(0), ref); };
    const cases: [number, number, number][] = [[0, 4096, 128], [256, 128, 256], [128, 256, 256], [4, 0, 200], [0, 4, 200], [1, 4097, 127], [4000, 4200, 256], [0, 1024, 260]];
    for (const [dst, src, len] of cases) {
      fill();
      m.copy(A(dst), A(src), len);
      ref.copyWithin(dst, src, src + len);
      const got = new Uint8Array(8192);
      m.copyOut(A(0), got);
      expect(Buffer.compare(got, ref), `copy ${len} bytes from ${src} to ${dst}`).to.equal(0);
    }
  });

  it('can be a 4 GiB machine when asked', function () {
    this.timeout(30000);
    const m = MachineMemory.create({ memBytes: 4 * 1024 ** 3, pageSize: 4096 });
    expect(m.frames).to.equal(1 << 20);
    const last = m.frameAddr(asMfn(m.frames - 1));
    m.setU32(A(last + 4092), 0xdeadbeef);
    expect(m.getU32(A(last + 4092))).to.equal(0xdeadbeef);
    expect(m.atomicLoad32(A(last + 4092)) >>> 0).to.equal(0xdeadbeef);
  });
  it('copies small ranges in and out exactly, whatever the alignment, offsets and lengths (property)', () => {
    const m = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
    const pattern = Uint8Array.from({ length: 8192 }, (_, i) => (i * 7 + 3) & 0xff);
    m.copyIn(A(0x10000), pattern);
    // Private buffers of several sizes and byte offsets (some 4-aligned in their buffer, some not),
    // more of them than the word-view cache holds.
    const backing = new ArrayBuffer(4096);
    const bufs = [0, 1, 2, 4, 8, 12, 64, 100, 128, 131].map((o) => new Uint8Array(backing, o, 300));
    bufs.push(new Uint8Array(16), new Uint8Array(112), new Uint8Array(5));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: bufs.length - 1 }), fc.integer({ min: 0, max: 4000 }), fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 300 }), (b, src, off, n) => {
        const into = bufs[b] as Uint8Array;
        const len = Math.min(n, into.length - Math.min(off, into.length));
        const at = Math.min(off, into.length - len);
        const shadow = Uint8Array.from(into);
        m.copyOut(A(0x10000 + src), into, at, len);
        shadow.set(pattern.subarray(src, src + len), at);
        expect(Buffer.compare(into, shadow), 'copyOut').to.equal(0);
        // …and back in at another place, compared with a byte-wise reference.
        into.fill(0x5c, at, at + len);
        m.copyIn(A(0x20000 + src), into, at, len);
        const back = new Uint8Array(len);
        m.copyOut(A(0x20000 + src), back);
        expect(back.every((x) => x === 0x5c), 'copyIn').to.equal(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('never copies out of bounds on either side, and never silently into a buffer that was taken away', () => {
    const m = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
    const buf = new Uint8Array(16);
    expect(() => m.copyOut(A(m.byteLength - 8), buf)).to.throw(RangeError, /outside memory/);
    expect(() => m.copyOut(A(0), buf, 8, 12)).to.throw(RangeError, /outside the buffer/);
    expect(() => m.copyIn(A(0), buf, 4, 16)).to.throw(RangeError, /outside the buffer/);
    expect(() => m.copyIn(A(0), buf, -4, 4)).to.throw(RangeError, /outside the buffer/);
    m.copyOut(A(0), buf); // the view is cached now
    structuredClone(buf.buffer, { transfer: [buf.buffer] }); // detaches buf
    expect(() => m.copyOut(A(0), buf, 0, 16)).to.throw(RangeError, /outside the buffer/);
  });

  it('moves 32-bit words between machine memory and a private Int32Array, checked on both sides', () => {
    const m = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
    const w = Int32Array.from([1, -2, 0x7fffffff, -0x80000000, 5]);
    m.copyInWords(A(0x3000), w, 1, 3);
    expect([m.getI32(A(0x3000)), m.getI32(A(0x3004)), m.getI32(A(0x3008))]).to.deep.equal([-2, 0x7fffffff, -0x80000000]);
    const into = new Int32Array(6);
    m.copyOutWords(A(0x3000), into, 2, 3);
    expect([...into]).to.deep.equal([0, 0, -2, 0x7fffffff, -0x80000000, 0]);
    m.copyOutWords(A(0x3000), into, 0, 0);
    expect(() => m.copyOutWords(A(0x3002), into, 0, 1)).to.throw(RangeError, /aligned/);
    expect(() => m.copyOutWords(A(0x3000), into, 4, 3)).to.throw(RangeError, /private buffer/);
    expect(() => m.copyInWords(A(0x3000), w, -1, 2)).to.throw(RangeError, /private buffer/);
    expect(() => m.copyInWords(A(0x3000), w, 0, 1.5)).to.throw(RangeError, /private buffer/);
    expect(() => m.copyInWords(A(m.byteLength - 4), w, 0, 2)).to.throw(RangeError, /outside memory/);
  });

  it('keeps word copies and atomics exact at the top of a 4 GiB machine (addresses beyond 2^31)', function () {
    this.timeout(30000);
    const m = MachineMemory.create({ memBytes: 4 * 1024 ** 3, pageSize: 4096 });
    const hi = A(4 * 1024 ** 3 - 4096 + 64);
    const w = Int32Array.from([11, 22, 33, 44]);
    m.copyInWords(hi, w, 0, 4);
    expect(m.getU32(A(hi + 12))).to.equal(44);
    expect(m.getU32(A(hi - 2 * 1024 ** 3)), 'nothing wrapped below 2 GiB').to.equal(0);
    const bytes = new Uint8Array(16);
    m.copyOut(hi, bytes);
    expect(bytes[4]).to.equal(22);
    const words = new Int32Array(4);
    m.copyOutWords(hi, words, 0, 4);
    expect([...words]).to.deep.equal([11, 22, 33, 44]);
    m.atomicStore32(A(hi + 16), 77);
    expect(m.atomicLoad32(A(hi + 16))).to.equal(77);
    expect(m.atomicLoad16(A(hi + 16))).to.equal(77);
    expect(m.atomicLoad32(A(hi + 16 - 2 * 1024 ** 3))).to.equal(0);
  });
});
