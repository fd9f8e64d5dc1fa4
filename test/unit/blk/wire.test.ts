/**
 * blkfront's and blkback's allocation-free codecs agree byte for byte with
 * the shared blkif codecs (shared/ring/codec.ts, pinned to gcc's layout in
 * test/abi), and define every byte they write.
 */
import { expect } from 'chai';
import { BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE } from '../../../shared/abi/blkif.ts';
import { blkifRequestCodec, blkifResponseCodec, type BlkifRequest } from '../../../shared/ring/codec.ts';
import type { Gref } from '../../../shared/types.ts';
import { backRequestCodec, backResponseCodec, newBackRequest } from '../../../dom0/blkback/wire.ts';
import { frontRequestCodec, frontResponseCodec, newFrontRequest } from '../../../domU/blkfront/wire.ts';

function sharedBytes(r: BlkifRequest): Uint8Array {
  const b = new Uint8Array(112);
  blkifRequestCodec.encode(b, 0, r);
  return b;
}

describe('blkfront / blkback wire codecs against the shared blkif codecs', () => {
  it('encode a direct request exactly as the shared codec does, over a dirty buffer', () => {
    const q = newFrontRequest();
    Object.assign(q, { operation: BLKIF_OP_WRITE, nrSegments: 3, handle: 0x1234, idLo: 0x89abcdef, idHi: 0x01234567, sector: 2 ** 40 + 17 });
    [[9, 0, 7], [10, 1, 2], [0xfffffffe, 7, 7]].forEach(([g, f, l], i) => { q.segGref[i] = g!; q.segFirst[i] = f!; q.segLast[i] = l!; });
    const mine = new Uint8Array(112).fill(0xaa);
    frontRequestCodec.encode(mine, 0, q);
    const theirs = sharedBytes({
      operation: BLKIF_OP_WRITE, handle: 0x1234, id: 0x0123456789abcdefn, sectorNumber: 2 ** 40 + 17,
      seg: [{ gref: 9 as Gref, firstSect: 0, lastSect: 7 }, { gref: 10 as Gref, firstSect: 1, lastSect: 2 }, { gref: 0xfffffffe as Gref, firstSect: 7, lastSect: 7 }],
    });
    expect(Buffer.compare(mine, theirs)).to.equal(0);
  });

  it('encode indirect and discard requests exactly as the shared codec does', () => {
    const q = newFrontRequest();
    Object.assign(q, { operation: BLKIF_OP_INDIRECT, indirectOp: BLKIF_OP_READ, nrSegments: 700, nIndirect: 2, idLo: 5, idHi: 6, sector: 99 });
    q.indirectGrefs[0] = 77; q.indirectGrefs[1] = 78;
    const mine = new Uint8Array(112).fill(0x55);
    frontRequestCodec.encode(mine, 0, q);
    const grefs = [77, 78, 0, 0, 0, 0, 0, 0] as Gref[];
    expect(Buffer.compare(mine, sharedBytes({ operation: BLKIF_OP_INDIRECT, indirectOp: BLKIF_OP_READ, nrSegments: 700, id: (6n << 32n) | 5n, sectorNumber: 99, handle: 0, indirectGrefs: grefs }))).to.equal(0);
    const d = newFrontRequest();
    Object.assign(d, { operation: BLKIF_OP_DISCARD, discardFlag: 1, idLo: 1, idHi: 0, sector: 12345, nrSectors: 2 ** 33 });
    const dm = new Uint8Array(112).fill(0x55);
    frontRequestCodec.encode(dm, 0, d);
    expect(Buffer.compare(dm, sharedBytes({ operation: BLKIF_OP_DISCARD, flag: 1, handle: 0, id: 1n, sectorNumber: 12345, nrSectors: 2 ** 33 }))).to.equal(0);
  });

  it('decode in blkback what the shared codec encoded, sector beyond 2^53 included', () => {
    const into = newBackRequest();
    const c = backRequestCodec(into);
    const b = sharedBytes({ operation: BLKIF_OP_READ, handle: 3, id: 0xffffffff00000001n, sectorNumber: 2 ** 52, seg: [{ gref: 1234 as Gref, firstSect: 2, lastSect: 5 }] });
    expect(c.decode(b, 0).ok).to.equal(true);
    expect([into.operation, into.nrSegments, into.handle, into.idLo, into.idHi, into.sector]).to.deep.equal([BLKIF_OP_READ, 1, 3, 1, 0xffffffff, 2 ** 52]);
    expect([into.segGref[0], into.segFirst[0], into.segLast[0]]).to.deep.equal([1234, 2, 5]);
    const huge = new Uint8Array(b);
    Buffer.from(huge.buffer).writeBigUInt64LE(1n << 60n, 16);
    c.decode(huge, 0);
    expect(into.sector).to.equal(-1);
    const ind = sharedBytes({ operation: BLKIF_OP_INDIRECT, indirectOp: BLKIF_OP_WRITE, nrSegments: 513, id: 9n, sectorNumber: 8, handle: 0, indirectGrefs: [5, 6, 0, 0, 0, 0, 0, 0] as Gref[] });
    c.decode(ind, 0);
    expect([into.operation, into.indirectOp, into.nrSegments, into.indirectGrefs[0], into.indirectGrefs[1]]).to.deep.equal([BLKIF_OP_INDIRECT, BLKIF_OP_WRITE, 513, 5, 6]);
  });

  it('write responses with every byte defined, read back the same by the shared codec and by blkfront', () => {
    const mine = new Uint8Array(16).fill(0xff);
    backResponseCodec.encode(mine, 0, { idLo: 0xdeadbeef, idHi: 7, operation: BLKIF_OP_WRITE, status: -2 });
    const theirs = new Uint8Array(16);
    blkifResponseCodec.encode(theirs, 0, { id: (7n << 32n) | 0xdeadbeefn, operation: BLKIF_OP_WRITE, status: -2 });
    expect(Buffer.compare(mine, theirs)).to.equal(0);
    const into = { idLo: 0, idHi: 0, operation: 0, status: 0 };
    frontResponseCodec(into).decode(mine, 0);
    expect(into).to.deep.equal({ idLo: 0xdeadbeef, idHi: 7, operation: BLKIF_OP_WRITE, status: -2 });
  });
});
