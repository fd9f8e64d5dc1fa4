/**
 * The flat (allocation-free) codecs against the object codecs: same bytes,
 * same verdicts, same values, on every layout and on arbitrary bytes.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import {
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_INDIRECT,
  BLKIF_OP_READ,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_REQUEST,
  BLKIF_REQUEST_DISCARD,
  BLKIF_REQUEST_INDIRECT,
} from '../../../shared/abi/blkif.ts';
import { unwrap } from '../../../shared/result.ts';
import {
  DECODED,
  blkifId,
  blkifRequestCodec,
  blkifRequestFlatCodec,
  blkifResponseCodec,
  blkifResponseFlatCodec,
  netifRxRequestCodec,
  netifRxRequestFlatCodec,
  netifRxResponseCodec,
  netifRxResponseFlatCodec,
  netifTxRequestCodec,
  netifTxRequestFlatCodec,
  netifTxResponseCodec,
  netifTxResponseFlatCodec,
  setBlkifId,
  type BlkifRequest,
  type BlkifRequestFlat,
  type BlkifResponse,
  type BlkifResponseFlat,
  type FlatCodec,
  type RingCodec,
} from '../../../shared/ring/codec.ts';
import type { Gref } from '../../../shared/types.ts';

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const i16 = fc.integer({ min: -0x8000, max: 0x7fff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const sector = fc.oneof(fc.integer({ min: 0, max: 1 << 30 }), fc.constant(Number.MAX_SAFE_INTEGER), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const gref = u32.map((g) => g as Gref);

const blkifRequest: fc.Arbitrary<BlkifRequest> = fc.oneof(
  fc.record({
    operation: fc.constantFrom(BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_OP_FLUSH_DISKCACHE),
    handle: u16,
    id: u64,
    sectorNumber: sector,
    seg: fc.array(fc.record({ gref, firstSect: u8, lastSect: u8 }), { maxLength: 11 }),
  }),
  fc.record({ operation: fc.constant(BLKIF_OP_DISCARD), flag: u8, handle: u16, id: u64, sectorNumber: sector, nrSectors: sector }),
  fc.record({
    operation: fc.constant(BLKIF_OP_INDIRECT),
    indirectOp: u8,
    nrSegments: u16,
    id: u64,
    sectorNumber: sector,
    handle: u16,
    indirectGrefs: fc.array(gref, { minLength: 8, maxLength: 8 }),
  }),
);

/** The flat struct carrying the same request as the object v. */
function toFlat(v: BlkifRequest): BlkifRequestFlat {
  const q = blkifRequestFlatCodec.create();
  q.operation = v.operation;
  q.handle = v.handle;
  setBlkifId(q, v.id);
  q.sectorNumber = v.sectorNumber;
  switch (v.operation) {
    case BLKIF_OP_DISCARD:
      q.flag = v.flag;
      q.nrSectors = v.nrSectors;
      break;
    case BLKIF_OP_INDIRECT:
      q.indirectOp = v.indirectOp;
      q.nrSegments = v.nrSegments;
      q.indirectGrefs.set(v.indirectGrefs);
      break;
    default:
      q.nrSegments = v.seg.length;
      v.seg.forEach((s, i) => {
        q.segGref[i] = s.gref;
        q.segFirstSect[i] = s.firstSect;
        q.segLastSect[i] = s.lastSect;
      });
  }
  return q;
}

/** The object a flat struct decoded from the wire stands for (only the fields its layout defines). */
function fromFlat(q: BlkifRequestFlat): BlkifRequest {
  const id = blkifId(q);
  if (q.operation === BLKIF_OP_DISCARD) {
    return { operation: BLKIF_OP_DISCARD, flag: q.flag, handle: q.handle, id, sectorNumber: q.sectorNumber, nrSectors: q.nrSectors };
  }
  if (q.operation === BLKIF_OP_INDIRECT) {
    return { operation: BLKIF_OP_INDIRECT, indirectOp: q.indirectOp, nrSegments: q.nrSegments, id, sectorNumber: q.sectorNumber, handle: q.handle, indirectGrefs: [...q.indirectGrefs] as Gref[] };
  }
  const seg = [];
  for (let i = 0; i < q.nrSegments; i++) seg.push({ gref: q.segGref[i] as Gref, firstSect: q.segFirstSect[i] as number, lastSect: q.segLastSect[i] as number });
  return { operation: q.operation as typeof BLKIF_OP_READ, handle: q.handle, id, sectorNumber: q.sectorNumber, seg };
}

function rspToFlat(v: BlkifResponse): BlkifResponseFlat {
  const r = blkifResponseFlatCodec.create();
  setBlkifId(r, v.id);
  r.operation = v.operation;
  r.status = v.status;
  return r;
}

/** The private words of an entry's bytes (as a ring's private slot holds them). */
function wordsOf(bytes: Uint8Array): Int32Array {
  const w = new Int32Array(Math.ceil(bytes.length / 4));
  new Uint8Array(w.buffer).set(bytes);
  return w;
}

/** Encoding with the flat codec gives the object codec's bytes; both decode to the same entry. */
function sameAsObject<T, F>(obj: RingCodec<T>, flat: FlatCodec<F>, arb: fc.Arbitrary<T>, toF: (v: T) => F, fromF: (f: F) => T): void {
  fc.assert(
    fc.property(arb, (v) => {
      const want = new Uint8Array(obj.SIZE);
      obj.encode(want, 0, v);
      const got = new Uint8Array(flat.SIZE + 8).fill(0xaa);
      flat.encode(got, 4, toF(v));
      expect(Buffer.from(got.subarray(4, 4 + flat.SIZE)).toString('hex')).to.equal(Buffer.from(want).toString('hex'));
      expect([...got.subarray(0, 4), ...got.subarray(4 + flat.SIZE)].every((b) => b === 0xaa), 'writes nothing outside the entry').to.equal(true);
      // encodeWords: the first n words are the entry's bytes, whatever the buffer held before.
      const w = new Int32Array(flat.SIZE / 4).fill(0x5a5a5a5a);
      const n = flat.encodeWords(w, toF(v));
      expect(n).to.be.within(1, flat.SIZE / 4);
      expect([...w.subarray(0, n)]).to.deep.equal([...wordsOf(want).subarray(0, n)]);
      // Decoding the wire bytes into a reused (dirty) struct gives back v.
      const out = flat.create();
      flat.decodeWords(wordsOf(want), toF(v)); // leave other values behind in a different struct
      expect(flat.decodeWords(wordsOf(want), out)).to.equal(DECODED);
      expect(fromF(out)).to.deep.equal(v);
      expect(fromF(unwrap(flat.decode(want, 0)))).to.deep.equal(v);
    }),
    { numRuns: 300 },
  );
}

describe('flat ring entry codecs (the allocation-free data path)', () => {
  it('encode blkif requests of every layout to the object codec\'s bytes, and decode them back (property)', () => {
    sameAsObject(blkifRequestCodec, blkifRequestFlatCodec, blkifRequest, toFlat, fromFlat);
  });

  it('encode blkif responses to the object codec\'s bytes, and decode them back (property)', () => {
    sameAsObject(blkifResponseCodec, blkifResponseFlatCodec, fc.record({ id: u64, operation: u8, status: i16 }), rspToFlat, (r) => ({
      id: blkifId(r),
      operation: r.operation,
      status: r.status,
    }));
  });

  it('encode netif tx/rx requests and responses to the object codecs\' bytes, and decode them back (property)', () => {
    const same = <T extends object>(v: T): T => ({ ...v });
    sameAsObject(netifTxRequestCodec, netifTxRequestFlatCodec, fc.record({ gref, offset: u16, flags: u16, id: u16, size: u16 }), same, same);
    sameAsObject(netifTxResponseCodec, netifTxResponseFlatCodec, fc.record({ id: u16, status: i16 }), same, same);
    sameAsObject(netifRxRequestCodec, netifRxRequestFlatCodec, fc.record({ id: u16, gref }), same, same);
    sameAsObject(netifRxResponseCodec, netifRxResponseFlatCodec, fc.record({ id: u16, offset: u16, flags: u16, status: i16 }), same, same);
  });

  it('give the same verdict, error and values as the object codec on arbitrary bytes (fuzz)', () => {
    const out = blkifRequestFlatCodec.create();
    const kinds = new Set<string>();
    const interesting = fc.uint8Array({ minLength: BLKIF_REQUEST.SIZE, maxLength: BLKIF_REQUEST.SIZE }).chain((b) =>
      fc.record({ op: fc.integer({ min: 0, max: 8 }), nr: fc.integer({ min: 0, max: 14 }), hiSector: fc.boolean() }).map(({ op, nr, hiSector }) => {
        // Mostly known operations and plausible counts, so every branch is reached.
        const c = Uint8Array.from(b);
        c[BLKIF_REQUEST.operation] = op;
        c[BLKIF_REQUEST.nr_segments] = nr;
        if (!hiSector) c[BLKIF_REQUEST.sector_number + 7] = 0;
        return c;
      }),
    );
    fc.assert(
      fc.property(fc.oneof(interesting, fc.uint8Array({ minLength: 112, maxLength: 112 })), (bytes) => {
        const want = blkifRequestCodec.decode(bytes, 0);
        const got = blkifRequestFlatCodec.decodeWords(wordsOf(bytes), out);
        kinds.add(want.ok ? 'ok' : want.error.kind);
        expect(got.ok).to.equal(want.ok);
        if (want.ok) expect(fromFlat(out)).to.deep.equal(want.value);
        else if (!got.ok) expect(got.error).to.deep.equal(want.error);
        // Responses and netif entries never fail, and agree too.
        expect(rspToFlat(unwrap(blkifResponseCodec.decode(bytes, 0)))).to.deep.equal(unwrap(blkifResponseFlatCodec.decode(bytes, 0)));
        expect(unwrap(netifTxRequestFlatCodec.decode(bytes, 0))).to.deep.equal(unwrap(netifTxRequestCodec.decode(bytes, 0)));
        expect(unwrap(netifRxResponseFlatCodec.decode(bytes, 0))).to.deep.equal(unwrap(netifRxResponseCodec.decode(bytes, 0)));
      }),
      { numRuns: 2000 },
    );
    expect([...kinds].sort()).to.deep.equal(['ok', 'too-many-segments', 'unknown-operation', 'value-out-of-range']);
  });

  it('read only the words entryWords names, so a ring may copy just those (property)', () => {
    const a = blkifRequestFlatCodec.create();
    const b = blkifRequestFlatCodec.create();
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: BLKIF_REQUEST.SIZE, maxLength: BLKIF_REQUEST.SIZE }),
        fc.integer({ min: 0, max: 12 }),
        fc.constantFrom(BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT, 4, 200),
        fc.uint8Array({ minLength: BLKIF_REQUEST.SIZE, maxLength: BLKIF_REQUEST.SIZE }),
        (bytes, nr, op, junk) => {
          bytes[BLKIF_REQUEST.operation] = op;
          bytes[BLKIF_REQUEST.nr_segments] = nr;
          bytes[BLKIF_REQUEST.sector_number + 7] = 0;
          const full = wordsOf(bytes);
          const n = blkifRequestFlatCodec.entryWords(full.subarray(0, blkifRequestFlatCodec.PREFIX_WORDS));
          expect(n).to.be.within(blkifRequestFlatCodec.PREFIX_WORDS, BLKIF_REQUEST.SIZE / 4);
          // Past word n, anything at all: the decode must not notice.
          const partial = wordsOf(junk);
          partial.set(full.subarray(0, n));
          const ra = blkifRequestFlatCodec.decodeWords(full, a);
          const rb = blkifRequestFlatCodec.decodeWords(partial, b);
          expect(rb.ok).to.equal(ra.ok);
          if (ra.ok) expect(fromFlat(b)).to.deep.equal(fromFlat(a));
          else if (!rb.ok) expect(rb.error).to.deep.equal(ra.error);
        },
      ),
      { numRuns: 1000 },
    );
    // Fixed-size entries are their own prefix.
    expect(blkifResponseFlatCodec.PREFIX_WORDS).to.equal(4);
    expect(blkifResponseFlatCodec.entryWords(new Int32Array(4))).to.equal(4);
  });

  it('define only the words of the entry: header and used segments, the discard or the indirect struct', () => {
    const w = new Int32Array(BLKIF_REQUEST.SIZE / 4);
    const q = blkifRequestFlatCodec.create();
    q.operation = BLKIF_OP_WRITE;
    for (let nr = 0; nr <= 11; nr++) {
      q.nrSegments = nr;
      expect(blkifRequestFlatCodec.encodeWords(w, q), `${nr} segments`).to.equal((BLKIF_REQUEST.seg + 8 * nr) / 4);
    }
    q.operation = BLKIF_OP_DISCARD;
    expect(blkifRequestFlatCodec.encodeWords(w, q)).to.equal(BLKIF_REQUEST_DISCARD.SIZE / 4);
    q.operation = BLKIF_OP_INDIRECT;
    expect(blkifRequestFlatCodec.encodeWords(w, q)).to.equal(BLKIF_REQUEST_INDIRECT.SIZE / 4);
    expect(blkifResponseFlatCodec.encodeWords(new Int32Array(4), blkifResponseFlatCodec.create())).to.equal(4);
  });

  it('keep the 64-bit id as two u32 halves, convertible to and from the bigint', () => {
    const r = blkifResponseFlatCodec.create();
    setBlkifId(r, 0xfedc_ba98_7654_3210n);
    expect([r.idHi, r.idLo]).to.deep.equal([0xfedcba98, 0x76543210]);
    expect(blkifId(r)).to.equal(0xfedc_ba98_7654_3210n);
    setBlkifId(r, 7n);
    expect([r.idHi, r.idLo, blkifId(r)]).to.deep.equal([0, 7, 7n]);
    expect(() => setBlkifId(r, -1n)).to.throw(RangeError, /u64/);
    expect(() => setBlkifId(r, 1n << 64n)).to.throw(RangeError, /u64/);
  });

  it('refuse to encode values the wire cannot carry (our own bug, so they throw)', () => {
    const w = new Int32Array(BLKIF_REQUEST.SIZE / 4);
    const good = (): BlkifRequestFlat => Object.assign(blkifRequestFlatCodec.create(), { operation: BLKIF_OP_READ, nrSegments: 1 });
    expect(() => blkifRequestFlatCodec.encodeWords(w, good())).to.not.throw();
    expect(() => blkifRequestFlatCodec.encodeWords(w, { ...good(), idLo: -1 })).to.throw(RangeError, /id halves/);
    expect(() => blkifRequestFlatCodec.encodeWords(w, { ...good(), idHi: 2 ** 32 })).to.throw(RangeError, /id halves/);
    expect(() => blkifRequestFlatCodec.encodeWords(w, { ...good(), sectorNumber: 2 ** 53 })).to.throw(RangeError, /sector_number/);
    expect(() => blkifRequestFlatCodec.encodeWords(w, { ...good(), handle: 0x10000 })).to.throw(RangeError, /handle/);
    expect(() => blkifRequestFlatCodec.encodeWords(w, { ...good(), nrSegments: 12 })).to.throw(RangeError, /11 direct segments/);
    expect(() => blkifRequestFlatCodec.encodeWords(w, { ...good(), operation: 4 })).to.throw(RangeError, /no direct layout/);
    expect(() => blkifResponseFlatCodec.encodeWords(new Int32Array(4), { idLo: 0, idHi: 0, operation: 0, status: 40000 })).to.throw(RangeError, /status/);
    expect(() => netifTxRequestFlatCodec.encodeWords(new Int32Array(3), { gref: 1 as Gref, offset: 0, flags: 0, id: 0, size: 70000 })).to.throw(RangeError, /size/);
  });
});
