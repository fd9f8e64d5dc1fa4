/**
 * blkfront and blkback put ring entries through the shared flat codecs
 * (BLKIF_RING_FLAT); what they still lay out themselves is an indirect
 * page's segment descriptors. Those must be blkif_request_segment byte for
 * byte (the shared codec's direct segments, pinned to gcc's layout in
 * test/abi), with the padding defined, and blkback must read them back.
 */
import { expect } from 'chai';
import { BLKIF_OP_READ, BLKIF_REQUEST } from '../../../shared/abi/blkif.ts';
import { blkifRequestCodec } from '../../../shared/ring/codec.ts';
import type { Gref } from '../../../shared/types.ts';
import { readU32LE } from '../../../dom0/blkback/wire.ts';
import { putIndirectSegment } from '../../../domU/blkfront/wire.ts';

describe('blkfront / blkback indirect segment descriptors against the shared blkif layout', () => {
  it('writes each descriptor as the shared codec writes a direct segment, over a dirty page image', () => {
    const segs = [{ gref: 9, first: 0, last: 7 }, { gref: 0xfffffffe, first: 1, last: 2 }, { gref: 0x01020304, first: 7, last: 7 }];
    const img = new Uint8Array(4096).fill(0xaa);
    segs.forEach((s, i) => putIndirectSegment(img, i, s.gref, s.first, s.last));
    const b = new Uint8Array(112);
    blkifRequestCodec.encode(b, 0, {
      operation: BLKIF_OP_READ, handle: 0, id: 1n, sectorNumber: 0,
      seg: segs.map((s) => ({ gref: s.gref as Gref, firstSect: s.first, lastSect: s.last })),
    });
    expect(Buffer.compare(img.subarray(0, 24), b.subarray(BLKIF_REQUEST.seg, BLKIF_REQUEST.seg + 24))).to.equal(0);
    expect(img[24], 'the next descriptor is untouched').to.equal(0xaa);
  });

  it('reads back in blkback the grefs blkfront wrote', () => {
    const img = new Uint8Array(64);
    putIndirectSegment(img, 3, 0xdeadbeef, 2, 5);
    expect([readU32LE(img, 24), img[28], img[29], img[30], img[31]]).to.deep.equal([0xdeadbeef, 2, 5, 0, 0]);
  });
});
