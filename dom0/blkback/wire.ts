/**
 * blkback's view of the blkif ring: allocation-free codecs for the two
 * things the backend touches on the data path.
 *
 *  - Requests are decoded from the ring's *private* copy of the slot
 *    (BackRing.copyRequestWith copies the 112 bytes out once, XSA-155) into
 *    one reused `BackRequest` per ring. Decoding never fails: every byte
 *    pattern yields a struct, and request.ts validates that struct only.
 *  - Responses are encoded from a private, fully-defined `BackResponse`: all
 *    16 bytes of blkif_response, padding included, are written (XSA-216: no
 *    stale bytes in the slot), then copied into the slot in one piece.
 *
 * The shared codecs in shared/ring/codec.ts build a fresh object (and a
 * bigint id) per entry; at a million requests a second that garbage is the
 * cost, so the backend keeps its own flat structs. The byte layout is the
 * same (shared/abi/blkif.ts), and test/unit/blk checks them against each other.
 */
import {
  BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT,
  BLKIF_REQUEST, BLKIF_REQUEST_DISCARD, BLKIF_REQUEST_INDIRECT, BLKIF_REQUEST_SEGMENT, BLKIF_RESPONSE,
  BLKIF_RING_ENTRY_SIZE,
} from '../../shared/abi/blkif.ts';
import { ok, type Result } from '../../shared/result.ts';
import type { CodecError, RingCodec, RingTypes } from '../../shared/ring/codec.ts';

const TWO32 = 0x1_0000_0000;

function rdU16(b: Uint8Array, o: number): number {
  return (b[o] as number) | ((b[o + 1] as number) << 8);
}
function rdU32(b: Uint8Array, o: number): number {
  return ((b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16) | ((b[o + 3] as number) << 24)) >>> 0;
}
function wrU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}
/** A u64 as a number, or -1 when it is beyond 2^53 (no disk is that large: such a sector is out of range). */
function rdU64Safe(b: Uint8Array, o: number): number {
  const hi = rdU32(b, o + 4);
  if (hi > 0x1f_ffff) return -1;
  return hi * TWO32 + rdU32(b, o);
}

/**
 * [BackRequest] is the private copy of one request slot, decoded. Which
 * fields mean something depends on `operation` (as sent: anything 0..255).
 */
export interface BackRequest {
  operation: number;
  /** Direct: nr_segments (u8). Indirect: nr_segments (u16). */
  nrSegments: number;
  handle: number;
  /** The id as two u32 words, echoed verbatim in the response. */
  idLo: number;
  idHi: number;
  /** sector_number, or -1 if it does not fit 2^53. */
  sector: number;
  /** Direct segments: seg[0 .. min(nrSegments, 11)). */
  readonly segGref: number[];
  readonly segFirst: number[];
  readonly segLast: number[];
  /** Indirect: indirect_op as sent, and all 8 indirect_grefs. */
  indirectOp: number;
  readonly indirectGrefs: number[];
  /** Discard: flag and nr_sectors (-1 if beyond 2^53). */
  discardFlag: number;
  nrSectors: number;
}

export function newBackRequest(): BackRequest {
  return {
    operation: 0, nrSegments: 0, handle: 0, idLo: 0, idHi: 0, sector: 0,
    segGref: new Array<number>(BLKIF_MAX_SEGMENTS_PER_REQUEST).fill(0),
    segFirst: new Array<number>(BLKIF_MAX_SEGMENTS_PER_REQUEST).fill(0),
    segLast: new Array<number>(BLKIF_MAX_SEGMENTS_PER_REQUEST).fill(0),
    indirectOp: 0, indirectGrefs: new Array<number>(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST).fill(0),
    discardFlag: 0, nrSectors: 0,
  };
}

/** The private response a backend writes: every field defined. */
export interface BackResponse {
  idLo: number;
  idHi: number;
  operation: number;
  /** BLKIF_RSP_*. */
  status: number;
}

/**
 * [backRequestCodec into] decodes every slot into the same `into` struct.
 * decode always succeeds; the returned Result object is reused too.
 */
export function backRequestCodec(into: BackRequest): RingCodec<BackRequest> {
  const r: Result<BackRequest, CodecError> = ok(into);
  return {
    name: 'blkif_request (blkback private copy)',
    SIZE: BLKIF_REQUEST.SIZE,
    encode() {
      throw new RangeError('blkback never writes requests');
    },
    decode(b, off) {
      const q = into;
      const op = b[off + BLKIF_REQUEST.operation] as number;
      q.operation = op;
      q.idLo = rdU32(b, off + BLKIF_REQUEST.id);
      q.idHi = rdU32(b, off + BLKIF_REQUEST.id + 4);
      q.sector = rdU64Safe(b, off + BLKIF_REQUEST.sector_number);
      if (op === BLKIF_OP_INDIRECT) {
        const L = BLKIF_REQUEST_INDIRECT;
        q.indirectOp = b[off + L.indirect_op] as number;
        q.nrSegments = rdU16(b, off + L.nr_segments);
        q.handle = rdU16(b, off + L.handle);
        for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) q.indirectGrefs[i] = rdU32(b, off + L.indirect_grefs + 4 * i);
      } else if (op === BLKIF_OP_DISCARD) {
        const L = BLKIF_REQUEST_DISCARD;
        q.discardFlag = b[off + L.flag] as number;
        q.handle = rdU16(b, off + L.handle);
        q.nrSectors = rdU64Safe(b, off + L.nr_sectors);
        q.nrSegments = 0;
      } else {
        const L = BLKIF_REQUEST;
        const nr = b[off + L.nr_segments] as number;
        q.nrSegments = nr;
        q.handle = rdU16(b, off + L.handle);
        const n = nr < BLKIF_MAX_SEGMENTS_PER_REQUEST ? nr : BLKIF_MAX_SEGMENTS_PER_REQUEST;
        for (let i = 0; i < n; i++) {
          const so = off + L.seg + i * BLKIF_REQUEST_SEGMENT.SIZE;
          q.segGref[i] = rdU32(b, so + BLKIF_REQUEST_SEGMENT.gref);
          q.segFirst[i] = b[so + BLKIF_REQUEST_SEGMENT.first_sect] as number;
          q.segLast[i] = b[so + BLKIF_REQUEST_SEGMENT.last_sect] as number;
        }
      }
      return r;
    },
  };
}

/** blkif_response, encoded from a private struct with every byte defined (XSA-216). */
export const backResponseCodec: RingCodec<BackResponse> = {
  name: 'blkif_response (blkback)',
  SIZE: BLKIF_RESPONSE.SIZE,
  encode(b, off, v) {
    wrU32(b, off + BLKIF_RESPONSE.id, v.idLo);
    wrU32(b, off + BLKIF_RESPONSE.id + 4, v.idHi);
    b[off + BLKIF_RESPONSE.operation] = v.operation & 0xff;
    b[off + BLKIF_RESPONSE.operation + 1] = 0; // padding
    b[off + BLKIF_RESPONSE.status] = v.status & 0xff;
    b[off + BLKIF_RESPONSE.status + 1] = (v.status >> 8) & 0xff;
    wrU32(b, off + BLKIF_RESPONSE.status + 2, 0); // tail padding
  },
  decode() {
    throw new RangeError('blkback never reads responses');
  },
};

/** DEFINE_RING_TYPES(blkif, …) as blkback sees it: requests decoded into `into`, responses from BackResponse. */
export function backRingTypes(into: BackRequest): RingTypes<BackRequest, BackResponse> {
  return { name: 'blkif', entryBytes: BLKIF_RING_ENTRY_SIZE, request: backRequestCodec(into), response: backResponseCodec };
}

/** [readU32LE b o] reads a little-endian u32 from a private buffer (indirect descriptors). */
export { rdU32 as readU32LE };
