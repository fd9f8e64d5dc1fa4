import { expect } from 'chai';
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

  it('can be a 4 GiB machine when asked', function () {
    this.timeout(30000);
    const m = MachineMemory.create({ memBytes: 4 * 1024 ** 3, pageSize: 4096 });
    expect(m.frames).to.equal(1 << 20);
    const last = m.frameAddr(asMfn(m.frames - 1));
    m.setU32(A(last + 4092), 0xdeadbeef);
    expect(m.getU32(A(last + 4092))).to.equal(0xdeadbeef);
    expect(m.atomicLoad32(A(last + 4092)) >>> 0).to.equal(0xdeadbeef);
  });
});
