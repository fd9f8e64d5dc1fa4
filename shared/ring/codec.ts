/**
 * Wire codecs for ring entries: blkif and netif requests and responses.
 *
 * A codec turns one entry into bytes and back, over a *private* Uint8Array.
 * Rings never decode from shared memory: they copy the slot out once (one
 * copyOut, RING_COPY_REQUEST / RING_COPY_RESPONSE) into a private buffer and
 * decode that, so a peer rewriting the slot meanwhile cannot change what was
 * validated (XSA-155). Likewise they encode into a private buffer and copy it
 * in once.
 *
 * Contracts:
 *  - `encode` defines every byte of [off, off + SIZE), padding included, so no
 *    stale private bytes reach a shared page (XSA-216). It throws RangeError
 *    when *our own* caller passes a value the wire cannot carry.
 *  - `decode` never throws on any byte pattern: what cannot be represented
 *    (an unknown layout, a sector beyond 2^53) is a CodecError carrying the
 *    offending value and, for blkif, the id and operation to answer with.
 *    Semantic checks (is this gref ours, is this sector on the disk) belong to
 *    the driver's request validation, not here.
 *
 * Two kinds of codec share each layout:
 *  - RingCodec (blkifRequestCodec, BLKIF_RING, ...): a fresh, readonly object
 *    per entry, the blkif id a bigint. Convenient; allocates per entry.
 *  - FlatCodec (blkifRequestFlatCodec, BLKIF_RING_FLAT, NETIF_*_RING_FLAT):
 *    the data path. One mutable struct per driver, reused for every entry;
 *    encoded and decoded as 32-bit words; nothing allocated unless decoding
 *    fails. The blkif id is opaque as two u32 halves (idLo, idHi). Use with
 *    FrontRing.putRequestFrom / copyResponseInto and BackRing.copyRequestInto
 *    / putResponseFrom.
 * Both produce the same bytes and the same verdicts (test/unit/ring/flat-codec).
 *
 * All values are little-endian, as on x86 and Arm (machine-memory.ts checks
 * the host once; the flat codecs' word views rely on it too).
 */
import {
  BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_INDIRECT,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_REQUEST,
  BLKIF_REQUEST_DISCARD,
  BLKIF_REQUEST_INDIRECT,
  BLKIF_REQUEST_SEGMENT,
  BLKIF_RESPONSE,
  BLKIF_RING_ENTRY_SIZE,
  type BlkifDirectOp,
} from '../abi/blkif.ts';
import {
  NETIF_EXTRA_INFO,
  NETIF_RX_REQUEST,
  NETIF_RX_RESPONSE,
  NETIF_RX_RING_ENTRY_SIZE,
  NETIF_TX_REQUEST,
  NETIF_TX_RESPONSE,
  NETIF_TX_RING_ENTRY_SIZE,
  XEN_NETIF_CTRL_REQUEST,
  XEN_NETIF_CTRL_RESPONSE,
  XEN_NETIF_CTRL_RING_ENTRY_SIZE,
  XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_HASH,
  XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
  XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
} from '../abi/netif.ts';
import { err, ok, type Result } from '../result.ts';
import type { Gref } from '../types.ts';

// ---------------------------------------------------------------------------
// Codec interface and errors

/** Why a slot's bytes could not be decoded. The values are as the peer wrote them. */
export type CodecError =
  | {
      /** blkif: an operation whose layout we do not know (RESERVED_1, or garbage). */
      readonly kind: 'unknown-operation';
      readonly operation: number;
      readonly id: bigint;
    }
  | {
      /** blkif: nr_segments larger than the direct layout holds. */
      readonly kind: 'too-many-segments';
      readonly nrSegments: number;
      readonly max: number;
      readonly operation: number;
      readonly id: bigint;
    }
  | {
      /** blkif: a u64 sector count or number beyond Number.MAX_SAFE_INTEGER. */
      readonly kind: 'value-out-of-range';
      readonly field: 'sector_number' | 'nr_sectors';
      readonly value: bigint;
      readonly operation: number;
      readonly id: bigint;
    }
  | {
      /** netif: an extra-info slot of type NONE or beyond XEN_NETIF_EXTRA_TYPE_MAX. */
      readonly kind: 'unknown-extra-type';
      readonly type: number;
      readonly flags: number;
    };

/** [EntryEncoder T] is the producer's half of a codec: T into SIZE bytes of a private buffer. */
export interface EntryEncoder<T> {
  readonly name: string;
  /** sizeof the C struct: bytes written by encode and read by decode. */
  readonly SIZE: number;
  /** Writes v at bytes[off, off + SIZE), every byte defined (padding zeroed). */
  encode(bytes: Uint8Array, off: number, v: T): void;
}

/** [RingCodec T] encodes and decodes one T in SIZE bytes of a private buffer. */
export interface RingCodec<T> extends EntryEncoder<T> {
  /** Reads a T from bytes[off, off + SIZE); never throws on any content. */
  decode(bytes: Uint8Array, off: number): Result<T, CodecError>;
}

/**
 * [FlatCodec T] is the allocation-free codec of the data path. T is a flat,
 * mutable struct (numbers and fixed-size typed arrays) that the caller makes
 * once with `create()` and reuses for every entry. The codec works on the
 * private slot buffer as SIZE / 4 little-endian 32-bit words (every ring
 * entry is a whole number of words), which is several times cheaper in V8
 * than byte by byte: `decodeWords` overwrites the struct and allocates
 * nothing when the words decode; only a failure builds its CodecError.
 *
 * The layout is the object codec's, byte for byte, and a FlatCodec is still a
 * RingCodec (its byte `encode` and `decode`, which makes a fresh struct, go
 * through a scratch word buffer), so it can serve as a RingTypes' codec.
 */
export interface FlatCodec<T> extends RingCodec<T> {
  /** A zeroed struct to decode into and encode from. */
  create(): T;
  /**
   * Writes v as the words w[0, n) and returns n ≤ SIZE / 4, every byte of
   * them defined (padding zeroed). Words from n on are not part of this entry
   * (a blkif request's unused segments; the union's tail) and its peer never
   * reads them (the protocol bounds them by nr_segments or the operation), so
   * a ring copies only the n words into the slot. What the slot keeps there
   * is data already shared on this ring, never private memory (XSA-216
   * holds). The byte-level `encode` zeroes them instead.
   */
  encodeWords(w: Int32Array, v: T): number;
  /**
   * Reads the entry's words from w into out; never throws on any content. It
   * reads only w[0, entryWords(w)). On failure the fields the error names are
   * as read and the rest of out is unspecified (do not act on it).
   */
  decodeWords(w: Int32Array, out: T): Result<void, CodecError>;
  /** Leading words that say how long the entry is (all SIZE / 4 for fixed-size entries). */
  readonly PREFIX_WORDS: number;
  /**
   * [entryWords w] is how many leading words, PREFIX_WORDS ≤ n ≤ SIZE / 4,
   * decodeWords reads, given the first PREFIX_WORDS words of the private copy
   * (never throws). A ring copies the prefix, then only the rest of the
   * entry: every shared byte is still read exactly once, and the length comes
   * from the private copy, not from the slot (XSA-155).
   */
  entryWords(w: Int32Array): number;
}

/** The one success value of every decodeWords / copy…Into: nothing to allocate. */
export const DECODED: Result<void, never> = Object.freeze(ok(undefined));

/**
 * What a flat codec defines; `flatCodec` derives the byte-level RingCodec
 * half, and a fixed size (the whole entry is its prefix) when no entryWords.
 */
type FlatCodecSpec<T> = Omit<FlatCodec<T>, 'encode' | 'decode' | 'PREFIX_WORDS' | 'entryWords'> &
  Partial<Pick<FlatCodec<T>, 'PREFIX_WORDS' | 'entryWords'>>;

function flatCodec<T>(spec: FlatCodecSpec<T>): FlatCodec<T> {
  if (spec.SIZE % 4 !== 0) throw new RangeError(`${spec.name}: a flat codec needs a whole number of words, got ${spec.SIZE} bytes`);
  const all = spec.SIZE / 4;
  // Scratch words for the byte-level methods (synchronous, so one per codec will do).
  const words = new Int32Array(spec.SIZE / 4);
  const bytes = new Uint8Array(words.buffer);
  return {
    PREFIX_WORDS: all,
    entryWords: () => all,
    ...spec,
    encode(b, off, v) {
      words.fill(0, spec.encodeWords(words, v));
      b.set(bytes, off);
    },
    decode(b, off) {
      bytes.set(b.subarray(off, off + spec.SIZE));
      const out = spec.create();
      const r = spec.decodeWords(words, out);
      return r.ok ? ok(out) : r;
    },
  };
}

/**
 * [RingTypes Req Rsp] is what DEFINE_RING_TYPES(name, req, rsp) declares: the
 * entry size (the union of both) and the two entry codecs.
 */
export interface RingTypes<Req, Rsp> {
  readonly name: string;
  readonly entryBytes: number;
  readonly request: RingCodec<Req>;
  readonly response: RingCodec<Rsp>;
}

/** [FlatRingTypes Req Rsp] is RingTypes whose codecs also decode into reused structs. */
export interface FlatRingTypes<Req, Rsp> extends RingTypes<Req, Rsp> {
  readonly request: FlatCodec<Req>;
  readonly response: FlatCodec<Rsp>;
}

// ---------------------------------------------------------------------------
// Little-endian helpers over a private Uint8Array

const TWO32 = 0x1_0000_0000;
/** Largest high word of a u64 that still gives a safe integer (2^53 - 1 >> 32). */
const SAFE_HI_MAX = 0x1f_ffff;

function rdU8(b: Uint8Array, o: number): number {
  return b[o] as number;
}
function rdU16(b: Uint8Array, o: number): number {
  return (b[o] as number) | ((b[o + 1] as number) << 8);
}
function rdI16(b: Uint8Array, o: number): number {
  return (rdU16(b, o) << 16) >> 16;
}
function rdU32(b: Uint8Array, o: number): number {
  return ((b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16) | ((b[o + 3] as number) << 24)) >>> 0;
}
function rdU64(b: Uint8Array, o: number): bigint {
  const lo = rdU32(b, o);
  const hi = rdU32(b, o + 4);
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}
function wrU8(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
}
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
/** Private scratch to split a bigint into words without allocating intermediate bigints. */
const SPLIT64 = new BigUint64Array(1);
const SPLIT32 = new Uint32Array(SPLIT64.buffer);
function wrU64Big(b: Uint8Array, o: number, v: bigint): void {
  SPLIT64[0] = v; // callers checked 0 <= v < 2^64
  wrU32(b, o, SPLIT32[0] as number);
  wrU32(b, o + 4, SPLIT32[1] as number);
}
function wrU64Num(b: Uint8Array, o: number, v: number): void {
  wrU32(b, o, v >>> 0);
  wrU32(b, o + 4, Math.floor(v / TWO32));
}

function checkUint(v: number, bits: 8 | 16 | 32, field: string): void {
  // (v >>> 0) === v: an integer in 0..2^32-1. The limit is spelled out, since
  // V8 does not fold `2 ** bits` and that alone cost more than an encode.
  const limit = bits === 8 ? 0x100 : bits === 16 ? 0x1_0000 : 0x1_0000_0000;
  if (!(v >>> 0 === v && v < limit)) throw new RangeError(`${field} must be a u${bits}, got ${v}`);
}
function checkInt16(v: number, field: string): void {
  if (!(Number.isInteger(v) && v >= -0x8000 && v <= 0x7fff)) throw new RangeError(`${field} must be an i16, got ${v}`);
}
function checkU64Big(v: bigint, field: string): void {
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${field} must be a u64, got ${v}`);
}
function checkSafe(v: number, field: string): void {
  if (!(Number.isSafeInteger(v) && v >= 0)) throw new RangeError(`${field} must be a non-negative safe integer, got ${v}`);
}
function zero(b: Uint8Array, from: number, to: number): void {
  if (from < to) b.fill(0, from, to);
}

// ---------------------------------------------------------------------------
// blkif

/** One (gref, first_sect, last_sect) segment: inclusive 512-byte sectors of one 4 KiB frame. */
export interface BlkifSegment {
  readonly gref: Gref;
  readonly firstSect: number;
  readonly lastSect: number;
}

/** READ / WRITE / WRITE_BARRIER / FLUSH_DISKCACHE in the direct layout; nr_segments = seg.length. */
export interface BlkifRequestDirect {
  readonly operation: BlkifDirectOp;
  readonly handle: number;
  readonly id: bigint;
  readonly sectorNumber: number;
  readonly seg: readonly BlkifSegment[];
}

export interface BlkifRequestDiscard {
  readonly operation: typeof BLKIF_OP_DISCARD;
  /** BLKIF_DISCARD_SECURE or 0 (other bits as sent). */
  readonly flag: number;
  readonly handle: number;
  readonly id: bigint;
  readonly sectorNumber: number;
  readonly nrSectors: number;
}

export interface BlkifRequestIndirect {
  readonly operation: typeof BLKIF_OP_INDIRECT;
  /** As sent; the backend must check it is READ or WRITE. */
  readonly indirectOp: number;
  /** As sent (u16); the backend bounds it by its feature-max-indirect-segments. */
  readonly nrSegments: number;
  readonly id: bigint;
  readonly sectorNumber: number;
  readonly handle: number;
  /** All 8 grefs as sent; only the first ceil(nrSegments / 512) are meaningful. */
  readonly indirectGrefs: readonly Gref[];
}

export type BlkifRequest = BlkifRequestDirect | BlkifRequestDiscard | BlkifRequestIndirect;

export interface BlkifResponse {
  readonly id: bigint;
  readonly operation: number;
  /** BLKIF_RSP_* as an int16 (a hostile backend may send anything). */
  readonly status: number;
}

function isDirectOp(op: number): op is BlkifDirectOp {
  return op === BLKIF_OP_READ || op === BLKIF_OP_WRITE || op === BLKIF_OP_WRITE_BARRIER || op === BLKIF_OP_FLUSH_DISKCACHE;
}

/** Reads a u64 that must be a safe integer; null when it is not. */
function rdSafeU64(b: Uint8Array, o: number): number | null {
  const hi = rdU32(b, o + 4);
  if (hi > SAFE_HI_MAX) return null;
  return hi * TWO32 + rdU32(b, o);
}

/**
 * blkif_request in all three layouts, chosen by `operation`: direct (112 B),
 * discard (32 B) and indirect (64 B). SIZE is the slot's 112 bytes; discard and
 * indirect encodes zero the rest of it.
 */
export const blkifRequestCodec: RingCodec<BlkifRequest> = {
  name: 'blkif_request',
  SIZE: BLKIF_REQUEST.SIZE,
  encode(b, off, v) {
    checkU64Big(v.id, 'blkif id');
    checkSafe(v.sectorNumber, 'sector_number');
    checkUint(v.handle, 16, 'handle');
    switch (v.operation) {
      case BLKIF_OP_DISCARD: {
        const L = BLKIF_REQUEST_DISCARD;
        checkUint(v.flag, 8, 'discard flag');
        checkSafe(v.nrSectors, 'nr_sectors');
        zero(b, off, off + BLKIF_REQUEST.SIZE);
        wrU8(b, off + L.operation, v.operation);
        wrU8(b, off + L.flag, v.flag);
        wrU16(b, off + L.handle, v.handle);
        wrU64Big(b, off + L.id, v.id);
        wrU64Num(b, off + L.sector_number, v.sectorNumber);
        wrU64Num(b, off + L.nr_sectors, v.nrSectors);
        return;
      }
      case BLKIF_OP_INDIRECT: {
        const L = BLKIF_REQUEST_INDIRECT;
        checkUint(v.indirectOp, 8, 'indirect_op');
        checkUint(v.nrSegments, 16, 'indirect nr_segments');
        if (v.indirectGrefs.length > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST) {
          throw new RangeError(`at most ${BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST} indirect grefs, got ${v.indirectGrefs.length}`);
        }
        zero(b, off, off + BLKIF_REQUEST.SIZE);
        wrU8(b, off + L.operation, v.operation);
        wrU8(b, off + L.indirect_op, v.indirectOp);
        wrU16(b, off + L.nr_segments, v.nrSegments);
        wrU64Big(b, off + L.id, v.id);
        wrU64Num(b, off + L.sector_number, v.sectorNumber);
        wrU16(b, off + L.handle, v.handle);
        for (let i = 0; i < v.indirectGrefs.length; i++) {
          const g = v.indirectGrefs[i] as Gref;
          checkUint(g, 32, 'indirect gref');
          wrU32(b, off + L.indirect_grefs + 4 * i, g);
        }
        return;
      }
      default: {
        const L = BLKIF_REQUEST;
        if (!isDirectOp(v.operation)) throw new RangeError(`operation ${String(v.operation)} has no direct layout`);
        if (v.seg.length > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
          throw new RangeError(`at most ${BLKIF_MAX_SEGMENTS_PER_REQUEST} direct segments, got ${v.seg.length}`);
        }
        // The direct layout is the data path: write each byte once, padding
        // explicitly, instead of zeroing the whole slot first.
        wrU8(b, off + L.operation, v.operation);
        wrU8(b, off + L.nr_segments, v.seg.length);
        wrU16(b, off + L.handle, v.handle);
        wrU32(b, off + L.handle + 2, 0); // padding before id
        wrU64Big(b, off + L.id, v.id);
        wrU64Num(b, off + L.sector_number, v.sectorNumber);
        for (let i = 0; i < v.seg.length; i++) {
          const s = v.seg[i] as BlkifSegment;
          checkUint(s.gref, 32, 'segment gref');
          checkUint(s.firstSect, 8, 'first_sect');
          checkUint(s.lastSect, 8, 'last_sect');
          const so = off + L.seg + i * BLKIF_REQUEST_SEGMENT.SIZE;
          wrU32(b, so + BLKIF_REQUEST_SEGMENT.gref, s.gref);
          wrU8(b, so + BLKIF_REQUEST_SEGMENT.first_sect, s.firstSect);
          wrU8(b, so + BLKIF_REQUEST_SEGMENT.last_sect, s.lastSect);
          wrU16(b, so + BLKIF_REQUEST_SEGMENT.last_sect + 1, 0); // tail padding
        }
        zero(b, off + L.seg + v.seg.length * BLKIF_REQUEST_SEGMENT.SIZE, off + L.SIZE); // unused segments
        return;
      }
    }
  },
  decode(b, off) {
    // operation and id sit at the same offsets in all three layouts, so every
    // error below can still be answered with the id the guest sent.
    const operation = rdU8(b, off + BLKIF_REQUEST.operation);
    const id = rdU64(b, off + BLKIF_REQUEST.id);
    const sectorNumber = rdSafeU64(b, off + BLKIF_REQUEST.sector_number);
    if (!isDirectOp(operation) && operation !== BLKIF_OP_DISCARD && operation !== BLKIF_OP_INDIRECT) {
      return err({ kind: 'unknown-operation', operation, id });
    }
    if (sectorNumber === null) {
      return err({ kind: 'value-out-of-range', field: 'sector_number', value: rdU64(b, off + BLKIF_REQUEST.sector_number), operation, id });
    }
    if (operation === BLKIF_OP_DISCARD) {
      const L = BLKIF_REQUEST_DISCARD;
      const nrSectors = rdSafeU64(b, off + L.nr_sectors);
      if (nrSectors === null) {
        return err({ kind: 'value-out-of-range', field: 'nr_sectors', value: rdU64(b, off + L.nr_sectors), operation, id });
      }
      return ok({ operation, flag: rdU8(b, off + L.flag), handle: rdU16(b, off + L.handle), id, sectorNumber, nrSectors });
    }
    if (operation === BLKIF_OP_INDIRECT) {
      const L = BLKIF_REQUEST_INDIRECT;
      const indirectGrefs: Gref[] = [];
      for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) indirectGrefs.push(rdU32(b, off + L.indirect_grefs + 4 * i) as Gref);
      return ok({
        operation,
        indirectOp: rdU8(b, off + L.indirect_op),
        nrSegments: rdU16(b, off + L.nr_segments),
        id,
        sectorNumber,
        handle: rdU16(b, off + L.handle),
        indirectGrefs,
      });
    }
    const L = BLKIF_REQUEST;
    const nr = rdU8(b, off + L.nr_segments);
    if (nr > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
      return err({ kind: 'too-many-segments', nrSegments: nr, max: BLKIF_MAX_SEGMENTS_PER_REQUEST, operation, id });
    }
    const seg: BlkifSegment[] = [];
    for (let i = 0; i < nr; i++) {
      const so = off + L.seg + i * BLKIF_REQUEST_SEGMENT.SIZE;
      seg.push({
        gref: rdU32(b, so + BLKIF_REQUEST_SEGMENT.gref) as Gref,
        firstSect: rdU8(b, so + BLKIF_REQUEST_SEGMENT.first_sect),
        lastSect: rdU8(b, so + BLKIF_REQUEST_SEGMENT.last_sect),
      });
    }
    return ok({ operation, handle: rdU16(b, off + L.handle), id, sectorNumber, seg });
  },
};

export const blkifResponseCodec: RingCodec<BlkifResponse> = {
  name: 'blkif_response',
  SIZE: BLKIF_RESPONSE.SIZE,
  encode(b, off, v) {
    checkU64Big(v.id, 'blkif id');
    checkUint(v.operation, 8, 'operation');
    checkInt16(v.status, 'status');
    wrU64Big(b, off + BLKIF_RESPONSE.id, v.id);
    wrU8(b, off + BLKIF_RESPONSE.operation, v.operation);
    wrU8(b, off + BLKIF_RESPONSE.operation + 1, 0); // padding
    wrU16(b, off + BLKIF_RESPONSE.status, v.status & 0xffff);
    wrU32(b, off + BLKIF_RESPONSE.status + 2, 0); // tail padding
  },
  decode(b, off) {
    return ok({
      id: rdU64(b, off + BLKIF_RESPONSE.id),
      operation: rdU8(b, off + BLKIF_RESPONSE.operation),
      status: rdI16(b, off + BLKIF_RESPONSE.status),
    });
  },
};

/** DEFINE_RING_TYPES(blkif, struct blkif_request, struct blkif_response): 112-byte slots. */
export const BLKIF_RING: RingTypes<BlkifRequest, BlkifResponse> = {
  name: 'blkif',
  entryBytes: BLKIF_RING_ENTRY_SIZE,
  request: blkifRequestCodec,
  response: blkifResponseCodec,
};

// ---------------------------------------------------------------------------
// blkif, flat (the allocation-free data path)

/**
 * [BlkifRequestFlat] is one blkif_request as a reusable struct. Which fields
 * mean something depends on `operation`, as in the C union:
 *  - direct (READ/WRITE/WRITE_BARRIER/FLUSH_DISKCACHE): nrSegments (u8) and
 *    seg*[0 .. nrSegments);
 *  - DISCARD: flag and nrSectors;
 *  - INDIRECT: indirectOp, nrSegments (u16) and all 8 indirectGrefs.
 * The id stays opaque as two u32 halves (it is only echoed back; a frontend
 * may put a shadow index in idLo); `blkifId` / `setBlkifId` convert to the
 * bigint the object codec uses.
 */
export interface BlkifRequestFlat {
  operation: number;
  nrSegments: number;
  handle: number;
  idLo: number;
  idHi: number;
  sectorNumber: number;
  readonly segGref: Uint32Array;
  readonly segFirstSect: Uint8Array;
  readonly segLastSect: Uint8Array;
  indirectOp: number;
  readonly indirectGrefs: Uint32Array;
  flag: number;
  nrSectors: number;
}

/** [BlkifResponseFlat] is one blkif_response as a reusable struct; the id as two u32 halves. */
export interface BlkifResponseFlat {
  idLo: number;
  idHi: number;
  operation: number;
  /** BLKIF_RSP_* as an int16. */
  status: number;
}

/** [blkifId v] is the 64-bit id of a flat request or response as a bigint. */
export function blkifId(v: { readonly idLo: number; readonly idHi: number }): bigint {
  return v.idHi === 0 ? BigInt(v.idLo) : (BigInt(v.idHi) << 32n) | BigInt(v.idLo);
}
/** [setBlkifId v id] stores a u64 id into a flat request or response. */
export function setBlkifId(v: { idLo: number; idHi: number }, id: bigint): void {
  checkU64Big(id, 'blkif id');
  SPLIT64[0] = id;
  v.idLo = SPLIT32[0] as number;
  v.idHi = SPLIT32[1] as number;
}

function isU32(v: number): boolean {
  return v >>> 0 === v;
}
function checkIdHalves(v: { readonly idLo: number; readonly idHi: number }): void {
  if (!isU32(v.idLo) || !isU32(v.idHi)) throw new RangeError(`blkif id halves must be u32, got ${v.idHi}:${v.idLo}`);
}
/** The u64 in words lo, hi as a bigint (error reports only). */
function wordsU64(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

// Word indices of blkif_request (byte offset / 4; see shared/abi/blkif.ts).
// Word 0 holds the u8 operation, then (direct) nr_segments u8 and handle u16,
// (discard) flag u8 and handle u16, (indirect) indirect_op u8 and
// nr_segments u16. Word 1 is padding (discard and indirect agree).
const RQ_ID = BLKIF_REQUEST.id / 4;
const RQ_SECTOR = BLKIF_REQUEST.sector_number / 4;
const RQ_SEG = BLKIF_REQUEST.seg / 4;
const RQ_DISCARD_NR_SECTORS = BLKIF_REQUEST_DISCARD.nr_sectors / 4;
const RQ_INDIRECT_HANDLE = BLKIF_REQUEST_INDIRECT.handle / 4;
const RQ_INDIRECT_GREFS = BLKIF_REQUEST_INDIRECT.indirect_grefs / 4;
const SEG_WORDS = BLKIF_REQUEST_SEGMENT.SIZE / 4;

/** The high u32 of a safe integer (most are below 2^32: no division then). */
function hiWord(v: number): number {
  return v < TWO32 ? 0 : Math.floor(v / TWO32);
}
function zeroWords(w: Int32Array, from: number, to: number): void {
  for (let i = from; i < to; i++) w[i] = 0;
}

export const blkifRequestFlatCodec: FlatCodec<BlkifRequestFlat> = flatCodec<BlkifRequestFlat>({
  name: 'blkif_request',
  SIZE: BLKIF_REQUEST.SIZE,
  create() {
    return {
      operation: 0,
      nrSegments: 0,
      handle: 0,
      idLo: 0,
      idHi: 0,
      sectorNumber: 0,
      segGref: new Uint32Array(BLKIF_MAX_SEGMENTS_PER_REQUEST),
      segFirstSect: new Uint8Array(BLKIF_MAX_SEGMENTS_PER_REQUEST),
      segLastSect: new Uint8Array(BLKIF_MAX_SEGMENTS_PER_REQUEST),
      indirectOp: 0,
      indirectGrefs: new Uint32Array(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
      flag: 0,
      nrSectors: 0,
    };
  },
  encodeWords(w, v) {
    // The same checks as the object codec, on numbers only. The segment and
    // gref arrays are typed, so their elements already have the wire widths.
    checkIdHalves(v);
    checkSafe(v.sectorNumber, 'sector_number');
    checkUint(v.handle, 16, 'handle');
    const op = v.operation;
    w[1] = 0; // padding before id
    w[RQ_ID] = v.idLo;
    w[RQ_ID + 1] = v.idHi;
    w[RQ_SECTOR] = v.sectorNumber >>> 0;
    w[RQ_SECTOR + 1] = hiWord(v.sectorNumber);
    if (op === BLKIF_OP_DISCARD) {
      checkUint(v.flag, 8, 'discard flag');
      checkSafe(v.nrSectors, 'nr_sectors');
      w[0] = op | (v.flag << 8) | (v.handle << 16);
      w[RQ_DISCARD_NR_SECTORS] = v.nrSectors >>> 0;
      w[RQ_DISCARD_NR_SECTORS + 1] = hiWord(v.nrSectors);
      return BLKIF_REQUEST_DISCARD.SIZE / 4;
    }
    if (op === BLKIF_OP_INDIRECT) {
      checkUint(v.indirectOp, 8, 'indirect_op');
      checkUint(v.nrSegments, 16, 'indirect nr_segments');
      w[0] = op | (v.indirectOp << 8) | (v.nrSegments << 16);
      w[RQ_INDIRECT_HANDLE] = v.handle; // and 2 bytes of padding
      for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) w[RQ_INDIRECT_GREFS + i] = v.indirectGrefs[i] as number;
      zeroWords(w, RQ_INDIRECT_GREFS + BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_REQUEST_INDIRECT.SIZE / 4); // tail padding
      return BLKIF_REQUEST_INDIRECT.SIZE / 4;
    }
    if (!isDirectOp(op)) throw new RangeError(`operation ${op} has no direct layout`);
    const nr = v.nrSegments;
    if (!(Number.isInteger(nr) && nr >= 0 && nr <= BLKIF_MAX_SEGMENTS_PER_REQUEST)) {
      throw new RangeError(`at most ${BLKIF_MAX_SEGMENTS_PER_REQUEST} direct segments, got ${nr}`);
    }
    w[0] = op | (nr << 8) | (v.handle << 16);
    for (let i = 0; i < nr; i++) {
      w[RQ_SEG + SEG_WORDS * i] = v.segGref[i] as number;
      // first_sect, last_sect, then 2 bytes of tail padding.
      w[RQ_SEG + SEG_WORDS * i + 1] = (v.segFirstSect[i] as number) | ((v.segLastSect[i] as number) << 8);
    }
    return RQ_SEG + SEG_WORDS * nr; // the unused segments are not part of the entry
  },
  // The header and one segment: enough for the operation, nr_segments, and
  // the whole of a discard request or a one-segment (4 KiB) direct request.
  PREFIX_WORDS: RQ_SEG + SEG_WORDS,
  entryWords(w) {
    const w0 = w[0] as number;
    const op = w0 & 0xff;
    if (op === BLKIF_OP_INDIRECT) return BLKIF_REQUEST_INDIRECT.SIZE / 4;
    if (!isDirectOp(op)) return RQ_SEG + SEG_WORDS; // discard, or an error decoded from the header
    const nr = (w0 >>> 8) & 0xff;
    // More than 11 is an error decoded from the header; its segments are never read.
    return RQ_SEG + SEG_WORDS * (nr === 0 ? 1 : nr <= BLKIF_MAX_SEGMENTS_PER_REQUEST ? nr : 1);
  },
  decodeWords(w, q) {
    // operation and id sit at the same offsets in all three layouts, so every
    // error below can still be answered with the id the guest sent.
    const w0 = w[0] as number;
    const op = w0 & 0xff;
    q.operation = op;
    q.idLo = (w[RQ_ID] as number) >>> 0;
    q.idHi = (w[RQ_ID + 1] as number) >>> 0;
    if (!isDirectOp(op) && op !== BLKIF_OP_DISCARD && op !== BLKIF_OP_INDIRECT) {
      return err({ kind: 'unknown-operation', operation: op, id: blkifId(q) });
    }
    const secLo = (w[RQ_SECTOR] as number) >>> 0;
    const secHi = (w[RQ_SECTOR + 1] as number) >>> 0;
    if (secHi > SAFE_HI_MAX) {
      return err({ kind: 'value-out-of-range', field: 'sector_number', value: wordsU64(secLo, secHi), operation: op, id: blkifId(q) });
    }
    q.sectorNumber = secHi * TWO32 + secLo;
    if (op === BLKIF_OP_DISCARD) {
      const lo = (w[RQ_DISCARD_NR_SECTORS] as number) >>> 0;
      const hi = (w[RQ_DISCARD_NR_SECTORS + 1] as number) >>> 0;
      if (hi > SAFE_HI_MAX) {
        return err({ kind: 'value-out-of-range', field: 'nr_sectors', value: wordsU64(lo, hi), operation: op, id: blkifId(q) });
      }
      q.flag = (w0 >>> 8) & 0xff;
      q.handle = w0 >>> 16;
      q.nrSectors = hi * TWO32 + lo;
      q.nrSegments = 0;
      return DECODED;
    }
    if (op === BLKIF_OP_INDIRECT) {
      q.indirectOp = (w0 >>> 8) & 0xff;
      q.nrSegments = w0 >>> 16;
      q.handle = (w[RQ_INDIRECT_HANDLE] as number) & 0xffff;
      for (let i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; i++) q.indirectGrefs[i] = w[RQ_INDIRECT_GREFS + i] as number;
      return DECODED;
    }
    const nr = (w0 >>> 8) & 0xff;
    if (nr > BLKIF_MAX_SEGMENTS_PER_REQUEST) {
      return err({ kind: 'too-many-segments', nrSegments: nr, max: BLKIF_MAX_SEGMENTS_PER_REQUEST, operation: op, id: blkifId(q) });
    }
    q.nrSegments = nr;
    q.handle = w0 >>> 16;
    for (let i = 0; i < nr; i++) {
      q.segGref[i] = w[RQ_SEG + SEG_WORDS * i] as number;
      const sects = w[RQ_SEG + SEG_WORDS * i + 1] as number;
      q.segFirstSect[i] = sects & 0xff;
      q.segLastSect[i] = (sects >>> 8) & 0xff;
    }
    return DECODED;
  },
});

// Word indices of blkif_response: id (2 words), then operation u8, a padding
// byte and status i16 in one word, then a word of tail padding.
const RS_ID = BLKIF_RESPONSE.id / 4;
const RS_OP_STATUS = BLKIF_RESPONSE.operation / 4;

export const blkifResponseFlatCodec: FlatCodec<BlkifResponseFlat> = flatCodec<BlkifResponseFlat>({
  name: 'blkif_response',
  SIZE: BLKIF_RESPONSE.SIZE,
  create() {
    return { idLo: 0, idHi: 0, operation: 0, status: 0 };
  },
  encodeWords(w, v) {
    checkIdHalves(v);
    checkUint(v.operation, 8, 'operation');
    checkInt16(v.status, 'status');
    w[RS_ID] = v.idLo;
    w[RS_ID + 1] = v.idHi;
    w[RS_OP_STATUS] = v.operation | (v.status << 16);
    w[RS_OP_STATUS + 1] = 0; // tail padding
    return BLKIF_RESPONSE.SIZE / 4;
  },
  decodeWords(w, r) {
    r.idLo = (w[RS_ID] as number) >>> 0;
    r.idHi = (w[RS_ID + 1] as number) >>> 0;
    const opStatus = w[RS_OP_STATUS] as number;
    r.operation = opStatus & 0xff;
    r.status = opStatus >> 16;
    return DECODED;
  },
});

/**
 * DEFINE_RING_TYPES(blkif, …) with the flat codecs: the same 112-byte slots
 * as BLKIF_RING. Drivers on the data path use these structs with
 * putRequestWith / copyRequestInto / putResponseWith / copyResponseInto.
 */
export const BLKIF_RING_FLAT: FlatRingTypes<BlkifRequestFlat, BlkifResponseFlat> = {
  name: 'blkif',
  entryBytes: BLKIF_RING_ENTRY_SIZE,
  request: blkifRequestFlatCodec,
  response: blkifResponseFlatCodec,
};

// ---------------------------------------------------------------------------
// netif

export interface NetifTxRequest {
  readonly gref: Gref;
  readonly offset: number;
  /** NETTXF_* */
  readonly flags: number;
  readonly id: number;
  /** First slot of a packet: the packet's total size; later slots: this fragment's. */
  readonly size: number;
}
export interface NetifTxResponse {
  readonly id: number;
  /** NETIF_RSP_* */
  readonly status: number;
}
export interface NetifRxRequest {
  readonly id: number;
  readonly gref: Gref;
}
export interface NetifRxResponse {
  readonly id: number;
  readonly offset: number;
  /** NETRXF_* */
  readonly flags: number;
  /** Bytes received (> 0) or NETIF_RSP_* (< 0). */
  readonly status: number;
}

export type NetifExtraInfo =
  | {
      readonly type: typeof XEN_NETIF_EXTRA_TYPE_GSO;
      readonly flags: number;
      readonly gso: { readonly size: number; readonly type: number; readonly features: number };
    }
  | {
      readonly type: typeof XEN_NETIF_EXTRA_TYPE_MCAST_ADD | typeof XEN_NETIF_EXTRA_TYPE_MCAST_DEL;
      readonly flags: number;
      /** The 6 bytes of the multicast MAC. */
      readonly addr: readonly number[];
    }
  | {
      readonly type: typeof XEN_NETIF_EXTRA_TYPE_HASH;
      readonly flags: number;
      /** value is the 4 bytes of u.hash.value read as a little-endian u32. */
      readonly hash: { readonly type: number; readonly algorithm: number; readonly value: number };
    };

export interface XenNetifCtrlRequest {
  readonly id: number;
  readonly type: number;
  readonly data: readonly [number, number, number];
}
export interface XenNetifCtrlResponse {
  readonly id: number;
  readonly type: number;
  readonly status: number;
  readonly data: number;
}

export const netifTxRequestCodec: RingCodec<NetifTxRequest> = {
  name: 'netif_tx_request',
  SIZE: NETIF_TX_REQUEST.SIZE,
  encode(b, off, v) {
    checkUint(v.gref, 32, 'gref');
    checkUint(v.offset, 16, 'offset');
    checkUint(v.flags, 16, 'flags');
    checkUint(v.id, 16, 'id');
    checkUint(v.size, 16, 'size');
    wrU32(b, off + NETIF_TX_REQUEST.gref, v.gref);
    wrU16(b, off + NETIF_TX_REQUEST.offset, v.offset);
    wrU16(b, off + NETIF_TX_REQUEST.flags, v.flags);
    wrU16(b, off + NETIF_TX_REQUEST.id, v.id);
    wrU16(b, off + NETIF_TX_REQUEST.size, v.size);
  },
  decode(b, off) {
    return ok({
      gref: rdU32(b, off + NETIF_TX_REQUEST.gref) as Gref,
      offset: rdU16(b, off + NETIF_TX_REQUEST.offset),
      flags: rdU16(b, off + NETIF_TX_REQUEST.flags),
      id: rdU16(b, off + NETIF_TX_REQUEST.id),
      size: rdU16(b, off + NETIF_TX_REQUEST.size),
    });
  },
};

export const netifTxResponseCodec: RingCodec<NetifTxResponse> = {
  name: 'netif_tx_response',
  SIZE: NETIF_TX_RESPONSE.SIZE,
  encode(b, off, v) {
    checkUint(v.id, 16, 'id');
    checkInt16(v.status, 'status');
    wrU16(b, off + NETIF_TX_RESPONSE.id, v.id);
    wrU16(b, off + NETIF_TX_RESPONSE.status, v.status & 0xffff);
  },
  decode(b, off) {
    return ok({ id: rdU16(b, off + NETIF_TX_RESPONSE.id), status: rdI16(b, off + NETIF_TX_RESPONSE.status) });
  },
};

export const netifRxRequestCodec: RingCodec<NetifRxRequest> = {
  name: 'netif_rx_request',
  SIZE: NETIF_RX_REQUEST.SIZE,
  encode(b, off, v) {
    checkUint(v.id, 16, 'id');
    checkUint(v.gref, 32, 'gref');
    wrU16(b, off + NETIF_RX_REQUEST.id, v.id);
    wrU16(b, off + NETIF_RX_REQUEST.pad, 0);
    wrU32(b, off + NETIF_RX_REQUEST.gref, v.gref);
  },
  decode(b, off) {
    return ok({ id: rdU16(b, off + NETIF_RX_REQUEST.id), gref: rdU32(b, off + NETIF_RX_REQUEST.gref) as Gref });
  },
};

export const netifRxResponseCodec: RingCodec<NetifRxResponse> = {
  name: 'netif_rx_response',
  SIZE: NETIF_RX_RESPONSE.SIZE,
  encode(b, off, v) {
    checkUint(v.id, 16, 'id');
    checkUint(v.offset, 16, 'offset');
    checkUint(v.flags, 16, 'flags');
    checkInt16(v.status, 'status');
    wrU16(b, off + NETIF_RX_RESPONSE.id, v.id);
    wrU16(b, off + NETIF_RX_RESPONSE.offset, v.offset);
    wrU16(b, off + NETIF_RX_RESPONSE.flags, v.flags);
    wrU16(b, off + NETIF_RX_RESPONSE.status, v.status & 0xffff);
  },
  decode(b, off) {
    return ok({
      id: rdU16(b, off + NETIF_RX_RESPONSE.id),
      offset: rdU16(b, off + NETIF_RX_RESPONSE.offset),
      flags: rdU16(b, off + NETIF_RX_RESPONSE.flags),
      status: rdI16(b, off + NETIF_RX_RESPONSE.status),
    });
  },
};

/**
 * netif_extra_info: written in a TX request slot (after NETTXF_extra_info) or
 * an RX response slot (after NETRXF_extra_info). Use it with the rings'
 * `putRequestWith` / `copyRequestWith` (and the response equivalents).
 */
export const netifExtraInfoCodec: RingCodec<NetifExtraInfo> = {
  name: 'netif_extra_info',
  SIZE: NETIF_EXTRA_INFO.SIZE,
  encode(b, off, v) {
    const L = NETIF_EXTRA_INFO;
    checkUint(v.flags, 8, 'flags');
    zero(b, off, off + L.SIZE);
    wrU8(b, off + L.type, v.type);
    wrU8(b, off + L.flags, v.flags);
    switch (v.type) {
      case XEN_NETIF_EXTRA_TYPE_GSO:
        checkUint(v.gso.size, 16, 'gso.size');
        checkUint(v.gso.type, 8, 'gso.type');
        checkUint(v.gso.features, 16, 'gso.features');
        wrU16(b, off + L.gso_size, v.gso.size);
        wrU8(b, off + L.gso_type, v.gso.type);
        wrU16(b, off + L.gso_features, v.gso.features);
        return;
      case XEN_NETIF_EXTRA_TYPE_MCAST_ADD:
      case XEN_NETIF_EXTRA_TYPE_MCAST_DEL:
        if (v.addr.length !== 6) throw new RangeError(`a multicast address has 6 bytes, got ${v.addr.length}`);
        for (let i = 0; i < 6; i++) {
          const x = v.addr[i] as number;
          checkUint(x, 8, 'mcast.addr');
          wrU8(b, off + L.mcast_addr + i, x);
        }
        return;
      case XEN_NETIF_EXTRA_TYPE_HASH:
        checkUint(v.hash.type, 8, 'hash.type');
        checkUint(v.hash.algorithm, 8, 'hash.algorithm');
        checkUint(v.hash.value, 32, 'hash.value');
        wrU8(b, off + L.hash_type, v.hash.type);
        wrU8(b, off + L.hash_algorithm, v.hash.algorithm);
        wrU32(b, off + L.hash_value, v.hash.value);
        return;
    }
  },
  decode(b, off) {
    const L = NETIF_EXTRA_INFO;
    const type = rdU8(b, off + L.type);
    const flags = rdU8(b, off + L.flags);
    switch (type) {
      case XEN_NETIF_EXTRA_TYPE_GSO:
        return ok({ type, flags, gso: { size: rdU16(b, off + L.gso_size), type: rdU8(b, off + L.gso_type), features: rdU16(b, off + L.gso_features) } });
      case XEN_NETIF_EXTRA_TYPE_MCAST_ADD:
      case XEN_NETIF_EXTRA_TYPE_MCAST_DEL: {
        const addr: number[] = [];
        for (let i = 0; i < 6; i++) addr.push(rdU8(b, off + L.mcast_addr + i));
        return ok({ type, flags, addr });
      }
      case XEN_NETIF_EXTRA_TYPE_HASH:
        return ok({ type, flags, hash: { type: rdU8(b, off + L.hash_type), algorithm: rdU8(b, off + L.hash_algorithm), value: rdU32(b, off + L.hash_value) } });
      default:
        return err({ kind: 'unknown-extra-type', type, flags });
    }
  },
};

export const xenNetifCtrlRequestCodec: RingCodec<XenNetifCtrlRequest> = {
  name: 'xen_netif_ctrl_request',
  SIZE: XEN_NETIF_CTRL_REQUEST.SIZE,
  encode(b, off, v) {
    const L = XEN_NETIF_CTRL_REQUEST;
    checkUint(v.id, 16, 'id');
    checkUint(v.type, 16, 'type');
    wrU16(b, off + L.id, v.id);
    wrU16(b, off + L.type, v.type);
    for (let i = 0; i < 3; i++) {
      const d = v.data[i] as number;
      checkUint(d, 32, 'data');
      wrU32(b, off + L.data + 4 * i, d);
    }
  },
  decode(b, off) {
    const L = XEN_NETIF_CTRL_REQUEST;
    return ok({
      id: rdU16(b, off + L.id),
      type: rdU16(b, off + L.type),
      data: [rdU32(b, off + L.data), rdU32(b, off + L.data + 4), rdU32(b, off + L.data + 8)] as const,
    });
  },
};

export const xenNetifCtrlResponseCodec: RingCodec<XenNetifCtrlResponse> = {
  name: 'xen_netif_ctrl_response',
  SIZE: XEN_NETIF_CTRL_RESPONSE.SIZE,
  encode(b, off, v) {
    const L = XEN_NETIF_CTRL_RESPONSE;
    checkUint(v.id, 16, 'id');
    checkUint(v.type, 16, 'type');
    checkUint(v.status, 32, 'status');
    checkUint(v.data, 32, 'data');
    wrU16(b, off + L.id, v.id);
    wrU16(b, off + L.type, v.type);
    wrU32(b, off + L.status, v.status);
    wrU32(b, off + L.data, v.data);
  },
  decode(b, off) {
    const L = XEN_NETIF_CTRL_RESPONSE;
    return ok({ id: rdU16(b, off + L.id), type: rdU16(b, off + L.type), status: rdU32(b, off + L.status), data: rdU32(b, off + L.data) });
  },
};

/** DEFINE_RING_TYPES(netif_tx, ...): 12-byte slots. */
export const NETIF_TX_RING: RingTypes<NetifTxRequest, NetifTxResponse> = {
  name: 'netif_tx',
  entryBytes: NETIF_TX_RING_ENTRY_SIZE,
  request: netifTxRequestCodec,
  response: netifTxResponseCodec,
};
/** DEFINE_RING_TYPES(netif_rx, ...): 8-byte slots. */
export const NETIF_RX_RING: RingTypes<NetifRxRequest, NetifRxResponse> = {
  name: 'netif_rx',
  entryBytes: NETIF_RX_RING_ENTRY_SIZE,
  request: netifRxRequestCodec,
  response: netifRxResponseCodec,
};
/** DEFINE_RING_TYPES(xen_netif_ctrl, ...): 16-byte slots. */
export const XEN_NETIF_CTRL_RING: RingTypes<XenNetifCtrlRequest, XenNetifCtrlResponse> = {
  name: 'xen_netif_ctrl',
  entryBytes: XEN_NETIF_CTRL_RING_ENTRY_SIZE,
  request: xenNetifCtrlRequestCodec,
  response: xenNetifCtrlResponseCodec,
};

// ---------------------------------------------------------------------------
// netif, flat (the allocation-free data path)

/** [Mutable T] is T with its fields writable: the reusable struct of a flat codec. */
export type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export type NetifTxRequestFlat = Mutable<NetifTxRequest>;
export type NetifTxResponseFlat = Mutable<NetifTxResponse>;
export type NetifRxRequestFlat = Mutable<NetifRxRequest>;
export type NetifRxResponseFlat = Mutable<NetifRxResponse>;

// netif entries as words (little-endian; see shared/abi/netif.ts):
//   netif_tx_request  [gref] [offset | flags << 16] [id | size << 16]
//   netif_tx_response [id | status << 16]
//   netif_rx_request  [id | pad << 16] [gref]
//   netif_rx_response [id | offset << 16] [flags | status << 16]

export const netifTxRequestFlatCodec: FlatCodec<NetifTxRequestFlat> = flatCodec<NetifTxRequestFlat>({
  name: netifTxRequestCodec.name,
  SIZE: NETIF_TX_REQUEST.SIZE,
  create: () => ({ gref: 0 as Gref, offset: 0, flags: 0, id: 0, size: 0 }),
  encodeWords(w, v) {
    checkUint(v.gref, 32, 'gref');
    checkUint(v.offset, 16, 'offset');
    checkUint(v.flags, 16, 'flags');
    checkUint(v.id, 16, 'id');
    checkUint(v.size, 16, 'size');
    w[NETIF_TX_REQUEST.gref / 4] = v.gref;
    w[NETIF_TX_REQUEST.offset / 4] = v.offset | (v.flags << 16);
    w[NETIF_TX_REQUEST.id / 4] = v.id | (v.size << 16);
    return NETIF_TX_REQUEST.SIZE / 4;
  },
  decodeWords(w, q) {
    const of = w[NETIF_TX_REQUEST.offset / 4] as number;
    const is = w[NETIF_TX_REQUEST.id / 4] as number;
    q.gref = ((w[NETIF_TX_REQUEST.gref / 4] as number) >>> 0) as Gref;
    q.offset = of & 0xffff;
    q.flags = of >>> 16;
    q.id = is & 0xffff;
    q.size = is >>> 16;
    return DECODED;
  },
});

export const netifTxResponseFlatCodec: FlatCodec<NetifTxResponseFlat> = flatCodec<NetifTxResponseFlat>({
  name: netifTxResponseCodec.name,
  SIZE: NETIF_TX_RESPONSE.SIZE,
  create: () => ({ id: 0, status: 0 }),
  encodeWords(w, v) {
    checkUint(v.id, 16, 'id');
    checkInt16(v.status, 'status');
    w[NETIF_TX_RESPONSE.id / 4] = v.id | (v.status << 16);
    return NETIF_TX_RESPONSE.SIZE / 4;
  },
  decodeWords(w, r) {
    const x = w[NETIF_TX_RESPONSE.id / 4] as number;
    r.id = x & 0xffff;
    r.status = x >> 16;
    return DECODED;
  },
});

export const netifRxRequestFlatCodec: FlatCodec<NetifRxRequestFlat> = flatCodec<NetifRxRequestFlat>({
  name: netifRxRequestCodec.name,
  SIZE: NETIF_RX_REQUEST.SIZE,
  create: () => ({ id: 0, gref: 0 as Gref }),
  encodeWords(w, v) {
    checkUint(v.id, 16, 'id');
    checkUint(v.gref, 32, 'gref');
    w[NETIF_RX_REQUEST.id / 4] = v.id; // and the u16 pad, zeroed
    w[NETIF_RX_REQUEST.gref / 4] = v.gref;
    return NETIF_RX_REQUEST.SIZE / 4;
  },
  decodeWords(w, q) {
    q.id = (w[NETIF_RX_REQUEST.id / 4] as number) & 0xffff;
    q.gref = ((w[NETIF_RX_REQUEST.gref / 4] as number) >>> 0) as Gref;
    return DECODED;
  },
});

export const netifRxResponseFlatCodec: FlatCodec<NetifRxResponseFlat> = flatCodec<NetifRxResponseFlat>({
  name: netifRxResponseCodec.name,
  SIZE: NETIF_RX_RESPONSE.SIZE,
  create: () => ({ id: 0, offset: 0, flags: 0, status: 0 }),
  encodeWords(w, v) {
    checkUint(v.id, 16, 'id');
    checkUint(v.offset, 16, 'offset');
    checkUint(v.flags, 16, 'flags');
    checkInt16(v.status, 'status');
    w[NETIF_RX_RESPONSE.id / 4] = v.id | (v.offset << 16);
    w[NETIF_RX_RESPONSE.flags / 4] = v.flags | (v.status << 16);
    return NETIF_RX_RESPONSE.SIZE / 4;
  },
  decodeWords(w, r) {
    const io = w[NETIF_RX_RESPONSE.id / 4] as number;
    const fs = w[NETIF_RX_RESPONSE.flags / 4] as number;
    r.id = io & 0xffff;
    r.offset = io >>> 16;
    r.flags = fs & 0xffff;
    r.status = fs >> 16;
    return DECODED;
  },
});

/** DEFINE_RING_TYPES(netif_tx, ...) with the flat codecs (same 12-byte slots as NETIF_TX_RING). */
export const NETIF_TX_RING_FLAT: FlatRingTypes<NetifTxRequestFlat, NetifTxResponseFlat> = {
  name: 'netif_tx',
  entryBytes: NETIF_TX_RING_ENTRY_SIZE,
  request: netifTxRequestFlatCodec,
  response: netifTxResponseFlatCodec,
};
/** DEFINE_RING_TYPES(netif_rx, ...) with the flat codecs (same 8-byte slots as NETIF_RX_RING). */
export const NETIF_RX_RING_FLAT: FlatRingTypes<NetifRxRequestFlat, NetifRxResponseFlat> = {
  name: 'netif_rx',
  entryBytes: NETIF_RX_RING_ENTRY_SIZE,
  request: netifRxRequestFlatCodec,
  response: netifRxResponseFlatCodec,
};
