/**
 * blkfront's view of the blkif ring: allocation-free codecs for what the
 * frontend writes (requests, in all three layouts) and reads (responses).
 *
 *  - A request is built in one reused `FrontRequest` per queue and encoded
 *    into the FrontRing's private slot buffer with every one of the 112
 *    bytes defined (padding and unused segments zeroed), then copied into
 *    the slot in one piece.
 *  - A response is copied out of its slot once by the FrontRing
 *    (RING_COPY_RESPONSE: the backend is not trusted either) and decoded from
 *    that private copy into one reused `FrontResponse`.
 *
 * The request id is our own: the shadow slot in the low word, the slot's
 * generation in the high word (shadow.ts), so a response naming a slot that
 * is free, or a slot's earlier use, is recognised and ignored.
 */
import {
  BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT,
  BLKIF_REQUEST, BLKIF_REQUEST_DISCARD, BLKIF_REQUEST_INDIRECT, BLKIF_REQUEST_SEGMENT, BLKIF_RESPONSE,
  BLKIF_RING_ENTRY_SIZE,
} from '../../shared/abi/blkif.ts';
import { ok, type Result } from '../../shared/result.ts';
import type { CodecError, RingCodec, RingTypes } from '../../shared/ring/codec.ts';

const TWO32 = 0x1_0000_0000;

function wrU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}
function wrU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}
function wrU64(b: Uint8Array, o: number, v: number): void {
  wrU32(b, o, v >>> 0);
  wrU32(b, o + 4, Math.floor(v / TWO32));
}
function rdU32(b: Uint8Array, o: number): number {
  return ((b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16) | ((b[o + 3] as number) << 24)) >>> 0;
}

/**
 * [FrontRequest] is the request being built. `operation` picks the layout:
 * direct (READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE: seg*[0..nrSegments)),
 * INDIRECT (indirectOp, nrSegments, indirectGrefs[0..nIndirect)) or DISCARD
 * (discardFlag, nrSectors).
 */
export interface FrontRequest {
  operation: number;
  nrSegments: number;
  handle: number;
  idLo: number;
  idHi: number;
  sector: number;
  readonly segGref: number[];
  readonly segFirst: number[];
  readonly segLast: number[];
  indirectOp: number;
  nIndirect: number;
  readonly indirectGrefs: number[];
  discardFlag: number;
  nrSectors: number;
}

export function newFrontRequest(): FrontRequest {
  return {
    operation: 0, nrSegments: 0, handle: 0, idLo: 0, idHi: 0, sector: 0,
    segGref: new Array<number>(BLKIF_MAX_SEGMENTS_PER_REQUEST).fill(0),
    segFirst: new Array<number>(BLKIF_MAX_SEGMENTS_PER_REQUEST).fill(0),
    segLast: new Array<number>(BLKIF_MAX_SEGMENTS_PER_REQUEST).fill(0),
    indirectOp: 0, nIndirect: 0, indirectGrefs: new Array<number>(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST).fill(0),
    discardFlag: 0, nrSectors: 0,
  };
}

export interface FrontResponse {
  idLo: number;
  idHi: number;
  operation: number;
  status: number;
}

/** blkif_request from a FrontRequest: all 112 bytes defined. */
export const frontRequestCodec: RingCodec<FrontRequest> = {
  name: 'blkif_request (blkfront)',
  SIZE: BLKIF_REQUEST.SIZE,
  encode(b, off, v) {
    b.fill(0, off, off + BLKIF_REQUEST.SIZE);
    b[off] = v.operation;
    wrU32(b, off + BLKIF_REQUEST.id, v.idLo);
    wrU32(b, off + BLKIF_REQUEST.id + 4, v.idHi);
    wrU64(b, off + BLKIF_REQUEST.sector_number, v.sector);
    if (v.operation === BLKIF_OP_INDIRECT) {
      const L = BLKIF_REQUEST_INDIRECT;
      b[off + L.indirect_op] = v.indirectOp;
      wrU16(b, off + L.nr_segments, v.nrSegments);
      wrU16(b, off + L.handle, v.handle);
      for (let i = 0; i < v.nIndirect; i++) wrU32(b, off + L.indirect_grefs + 4 * i, v.indirectGrefs[i] as number);
      return;
    }
    if (v.operation === BLKIF_OP_DISCARD) {
      const L = BLKIF_REQUEST_DISCARD;
      b[off + L.flag] = v.discardFlag;
      wrU16(b, off + L.handle, v.handle);
      wrU64(b, off + L.nr_sectors, v.nrSectors);
      return;
    }
    const L = BLKIF_REQUEST;
    b[off + L.nr_segments] = v.nrSegments;
    wrU16(b, off + L.handle, v.handle);
    for (let i = 0; i < v.nrSegments; i++) {
      const so = off + L.seg + i * BLKIF_REQUEST_SEGMENT.SIZE;
      wrU32(b, so + BLKIF_REQUEST_SEGMENT.gref, v.segGref[i] as number);
      b[so + BLKIF_REQUEST_SEGMENT.first_sect] = v.segFirst[i] as number;
      b[so + BLKIF_REQUEST_SEGMENT.last_sect] = v.segLast[i] as number;
    }
  },
  decode() {
    throw new RangeError('blkfront never reads requests');
  },
};

/** blkif_response into one reused FrontResponse (never fails: any bytes are a response). */
export function frontResponseCodec(into: FrontResponse): RingCodec<FrontResponse> {
  const r: Result<FrontResponse, CodecError> = ok(into);
  return {
    name: 'blkif_response (blkfront)',
    SIZE: BLKIF_RESPONSE.SIZE,
    encode() {
      throw new RangeError('blkfront never writes responses');
    },
    decode(b, off) {
      into.idLo = rdU32(b, off + BLKIF_RESPONSE.id);
      into.idHi = rdU32(b, off + BLKIF_RESPONSE.id + 4);
      into.operation = b[off + BLKIF_RESPONSE.operation] as number;
      const s = (b[off + BLKIF_RESPONSE.status] as number) | ((b[off + BLKIF_RESPONSE.status + 1] as number) << 8);
      into.status = (s << 16) >> 16;
      return r;
    },
  };
}

export function frontRingTypes(rsp: FrontResponse): RingTypes<FrontRequest, FrontResponse> {
  return { name: 'blkif', entryBytes: BLKIF_RING_ENTRY_SIZE, request: frontRequestCodec, response: frontResponseCodec(rsp) };
}

/** Writes one blkif_request_segment (8 bytes, padding zeroed) into a private indirect-page image. */
export function putIndirectSegment(b: Uint8Array, i: number, gref: number, first: number, last: number): void {
  const o = i * BLKIF_REQUEST_SEGMENT.SIZE;
  wrU32(b, o + BLKIF_REQUEST_SEGMENT.gref, gref);
  b[o + BLKIF_REQUEST_SEGMENT.first_sect] = first;
  b[o + BLKIF_REQUEST_SEGMENT.last_sect] = last;
  b[o + 6] = 0;
  b[o + 7] = 0;
}
