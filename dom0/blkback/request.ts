/**
 * Validation of one request's private copy (blkback.c dispatch_rw_block_io,
 * dispatch_discard_io, xen_blkbk_parse_indirect, xen_vbd_translate). Parsing
 * only: nothing here maps, copies or submits. Every check runs on memory the
 * frontend can no longer change (the ring's private slot copy, and the
 * private copy of each indirect page), never on the shared page.
 *
 * A refusal is a code from REJECT, each naming what the guest got wrong; the
 * code decides the wire status (BLKIF_RSP_ERROR or BLKIF_RSP_EOPNOTSUPP)
 * and is counted per device so a test can tell which check fired.
 */
import {
  BLKIF_DISCARD_SECURE, BLKIF_MAX_SEGMENTS_PER_REQUEST, BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT,
  BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_SECTORS_PER_FRAME,
} from '../../shared/abi/blkif.ts';
import type { BlkifRequestFlat, CodecError } from '../../shared/ring/codec.ts';

/** What a request asks the device to do, once its operation is understood. */
export type BlkReqKind = 'read' | 'write' | 'flush' | 'barrier' | 'discard';

/** Why a request was refused. 0 is "accepted". */
export const REJECT = {
  none: 0,
  /** Guest sent an operation we do not know (RESERVED_1, garbage): Linux answers EOPNOTSUPP. */
  unknownOperation: 1,
  /** READ/WRITE with 0 segments, or more than 11 direct segments. */
  badSegmentCount: 2,
  /** A segment with first_sect > last_sect, or last_sect beyond the 4 KiB frame (>= 8). */
  badSegment: 3,
  /** Sectors beyond the disk (or a sector_number beyond 2^53). */
  beyondDisk: 4,
  /** A write or discard to a read-only disk. */
  readOnly: 5,
  /** INDIRECT whose indirect_op is not READ or WRITE. */
  badIndirectOp: 6,
  /** INDIRECT with 0 segments or more than we advertised in feature-max-indirect-segments. */
  badIndirectCount: 7,
  /** INDIRECT while we advertised no indirect segments. */
  indirectNotOffered: 8,
  /** FLUSH/BARRIER/DISCARD the device does not offer (or a secure discard it cannot do). */
  notSupported: 9,
  /** A grant the frontend named could not be mapped or copied (bad ref, wrong domain, read-only). */
  badGrant: 10,
  /** The storage failed the request (a medium error). */
  ioError: 11,
} as const;
export type RejectCode = (typeof REJECT)[keyof typeof REJECT];

export const REJECT_NAMES: readonly string[] = [
  'none', 'unknown-operation', 'bad-segment-count', 'bad-segment', 'beyond-disk', 'read-only',
  'bad-indirect-op', 'bad-indirect-count', 'indirect-not-offered', 'not-supported', 'bad-grant', 'io-error',
];

/** [rejectStatus code] is the wire status a refusal is answered with. */
export function rejectStatus(code: RejectCode): number {
  return code === REJECT.unknownOperation || code === REJECT.notSupported ? BLKIF_RSP_EOPNOTSUPP : BLKIF_RSP_ERROR;
}

/** What the device offers, for the checks. */
export interface DeviceLimits {
  readonly sectors: number;
  readonly readOnly: boolean;
  /** feature-max-indirect-segments we advertised (0: none). */
  readonly maxIndirectSegments: number;
  readonly flush: boolean;
  readonly barrier: boolean;
  readonly discard: boolean;
  readonly discardSecure: boolean;
}

/** The part of a pending request the header check fills in. */
export interface ParsedHeader {
  kind: BlkReqKind;
  /** Segments the request carries (direct or indirect). */
  nsegs: number;
  indirect: boolean;
  /** Indirect pages holding the segment descriptors. */
  nIndirectPages: number;
  sector: number;
  /** Discard only: sectors to discard. */
  nrSectors: number;
  secure: boolean;
}

/** Segment descriptors per indirect page (a 4 KiB frame of blkif_request_segment). */
export const SEGS_PER_INDIRECT_FRAME = 512;

/**
 * [decodeReject e] is the refusal for a slot the flat codec could not decode
 * (BackRing.copyRequestInto): an operation we do not know is EOPNOTSUPP, as
 * Linux answers it; a sector or discard length beyond 2^53 lies beyond any
 * disk; more than 11 direct segments is a bad count. The codec has set the
 * id and operation, so the refusal is answered with the id the guest sent.
 */
export function decodeReject(e: CodecError): RejectCode {
  switch (e.kind) {
    case 'unknown-operation': return REJECT.unknownOperation;
    case 'value-out-of-range': return REJECT.beyondDisk;
    case 'too-many-segments': return REJECT.badSegmentCount;
    default: return REJECT.unknownOperation;
  }
}

/** [kindOfOperation op] is what a direct operation asks for (anything else: read, for a header that is refused anyway). */
function kindOfOperation(op: number): BlkReqKind {
  switch (op) {
    case BLKIF_OP_WRITE: return 'write';
    case BLKIF_OP_FLUSH_DISKCACHE: return 'flush';
    case BLKIF_OP_WRITE_BARRIER: return 'barrier';
    case BLKIF_OP_DISCARD: return 'discard';
    default: return 'read';
  }
}

/** [refusedHeader q out] resets `out` for a request refused before its header was checked. */
export function refusedHeader(q: BlkifRequestFlat, out: ParsedHeader): void {
  out.kind = kindOfOperation(q.operation);
  out.nsegs = 0;
  out.indirect = false;
  out.nIndirectPages = 0;
  out.secure = false;
  out.nrSectors = 0;
  out.sector = 0;
}

/**
 * [checkHeader q lim out] validates everything in the slot except the
 * segments: the operation, the segment count against what we offered, and
 * for discard its range. q is the private copy the flat codec decoded
 * (BLKIF_RING_FLAT: unknown operations, sectors beyond 2^53 and more than 11
 * direct segments were refused by decodeReject already). Fills `out` and
 * returns REJECT.none, or a refusal.
 */
export function checkHeader(q: BlkifRequestFlat, lim: DeviceLimits, out: ParsedHeader): RejectCode {
  out.indirect = false;
  out.nIndirectPages = 0;
  out.secure = false;
  out.nrSectors = 0;
  out.sector = q.sectorNumber;
  switch (q.operation) {
    case BLKIF_OP_READ:
    case BLKIF_OP_WRITE:
      out.kind = q.operation === BLKIF_OP_READ ? 'read' : 'write';
      out.nsegs = q.nrSegments;
      if (q.nrSegments === 0 || q.nrSegments > BLKIF_MAX_SEGMENTS_PER_REQUEST) return REJECT.badSegmentCount;
      if (out.kind === 'write' && lim.readOnly) return REJECT.readOnly;
      break;
    case BLKIF_OP_FLUSH_DISKCACHE:
    case BLKIF_OP_WRITE_BARRIER: {
      const barrier = q.operation === BLKIF_OP_WRITE_BARRIER;
      out.kind = barrier ? 'barrier' : 'flush';
      out.nsegs = q.nrSegments;
      if (!(barrier ? lim.barrier : lim.flush)) return REJECT.notSupported;
      if (q.nrSegments > BLKIF_MAX_SEGMENTS_PER_REQUEST) return REJECT.badSegmentCount;
      if (q.nrSegments > 0 && lim.readOnly) return REJECT.readOnly;
      break;
    }
    case BLKIF_OP_INDIRECT: {
      if (lim.maxIndirectSegments === 0) return REJECT.indirectNotOffered;
      if (q.indirectOp !== BLKIF_OP_READ && q.indirectOp !== BLKIF_OP_WRITE) return REJECT.badIndirectOp;
      out.kind = q.indirectOp === BLKIF_OP_READ ? 'read' : 'write';
      out.indirect = true;
      out.nsegs = q.nrSegments;
      if (q.nrSegments === 0 || q.nrSegments > lim.maxIndirectSegments) return REJECT.badIndirectCount;
      out.nIndirectPages = Math.ceil(q.nrSegments / SEGS_PER_INDIRECT_FRAME);
      if (out.kind === 'write' && lim.readOnly) return REJECT.readOnly;
      break;
    }
    case BLKIF_OP_DISCARD:
      out.kind = 'discard';
      out.nsegs = 0;
      if (!lim.discard) return REJECT.notSupported;
      out.secure = (q.flag & BLKIF_DISCARD_SECURE) !== 0;
      if (out.secure && !lim.discardSecure) return REJECT.notSupported;
      if (lim.readOnly) return REJECT.readOnly;
      out.nrSectors = q.nrSectors;
      if (q.sectorNumber + q.nrSectors > lim.sectors) return REJECT.beyondDisk;
      return REJECT.none;
    default:
      return REJECT.unknownOperation;
  }
  return REJECT.none;
}

/**
 * [checkSegments first last n sector lim] validates n private segment
 * descriptors: first_sect <= last_sect < 8 in each, and the sectors they add
 * up to lie on the disk. Returns [REJECT.none, total sectors] packed as
 * total >= 0, or a negated refusal code.
 */
export function checkSegments(first: ArrayLike<number>, last: ArrayLike<number>, n: number, sector: number, lim: DeviceLimits): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const f = first[i] as number;
    const l = last[i] as number;
    if (f > l || l >= BLKIF_SECTORS_PER_FRAME) return -REJECT.badSegment;
    total += l - f + 1;
  }
  if (sector + total > lim.sectors) return -REJECT.beyondDisk;
  return total;
}
