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
} from '../../../shared/abi/blkif.ts';
import { NETIF_EXTRA_INFO, XEN_NETIF_EXTRA_TYPE_NONE } from '../../../shared/abi/netif.ts';
import { unwrap } from '../../../shared/result.ts';
import {
  blkifRequestCodec,
  blkifResponseCodec,
  netifExtraInfoCodec,
  netifRxRequestCodec,
  netifRxResponseCodec,
  netifTxRequestCodec,
  netifTxResponseCodec,
  xenNetifCtrlRequestCodec,
  xenNetifCtrlResponseCodec,
  type BlkifRequest,
  type NetifExtraInfo,
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

const extraInfo: fc.Arbitrary<NetifExtraInfo> = fc.oneof(
  fc.record({ type: fc.constant(1 as const), flags: u8, gso: fc.record({ size: u16, type: u8, features: u16 }) }),
  fc.record({ type: fc.constantFrom(2 as const, 3 as const), flags: u8, addr: fc.array(u8, { minLength: 6, maxLength: 6 }) }),
  fc.record({ type: fc.constant(4 as const), flags: u8, hash: fc.record({ type: u8, algorithm: u8, value: u32 }) }),
);

function roundTrips<T>(codec: RingCodec<T>, arb: fc.Arbitrary<T>): void {
  fc.assert(
    fc.property(arb, (v) => {
      const zeros = new Uint8Array(codec.SIZE + 8);
      const junk = new Uint8Array(codec.SIZE + 8).fill(0xaa);
      codec.encode(zeros, 4, v);
      codec.encode(junk, 4, v);
      // Every byte of the entry is defined by encode: no stale bytes leak (XSA-216).
      expect(Buffer.from(junk.subarray(4, 4 + codec.SIZE)).equals(Buffer.from(zeros.subarray(4, 4 + codec.SIZE)))).to.equal(true);
      // …and encode writes nothing outside it.
      expect([...junk.subarray(0, 4), ...junk.subarray(4 + codec.SIZE)].every((b) => b === 0xaa)).to.equal(true);
      expect(unwrap(codec.decode(junk, 4))).to.deep.equal(v);
    }),
    { numRuns: 300 },
  );
}

describe('ring entry codecs', () => {
  it('round-trips every blkif request layout and defines every byte of the 112-byte slot (property)', () => roundTrips(blkifRequestCodec, blkifRequest));
  it('round-trips blkif responses (property)', () => roundTrips(blkifResponseCodec, fc.record({ id: u64, operation: u8, status: i16 })));
  it('round-trips netif tx requests and responses (property)', () => {
    roundTrips(netifTxRequestCodec, fc.record({ gref, offset: u16, flags: u16, id: u16, size: u16 }));
    roundTrips(netifTxResponseCodec, fc.record({ id: u16, status: i16 }));
  });
  it('round-trips netif rx requests and responses (property)', () => {
    roundTrips(netifRxRequestCodec, fc.record({ id: u16, gref }));
    roundTrips(netifRxResponseCodec, fc.record({ id: u16, offset: u16, flags: u16, status: i16 }));
  });
  it('round-trips netif extra info of every type (property)', () => roundTrips(netifExtraInfoCodec, extraInfo));
  it('round-trips control-ring requests and responses (property)', () => {
    roundTrips(xenNetifCtrlRequestCodec, fc.record({ id: u16, type: u16, data: fc.tuple(u32, u32, u32) }));
    roundTrips(xenNetifCtrlResponseCodec, fc.record({ id: u16, type: u16, status: u32, data: u32 }));
  });

  it('keeps the blkif id a full 64-bit bigint, high bit included', () => {
    const b = new Uint8Array(BLKIF_REQUEST.SIZE);
    const id = 0xffff_ffff_ffff_fffen;
    blkifRequestCodec.encode(b, 0, { operation: BLKIF_OP_READ, handle: 0, id, sectorNumber: 0, seg: [] });
    expect(Buffer.from(b.subarray(8, 16)).toString('hex')).to.equal('feffffffffffffff');
    expect(unwrap(blkifRequestCodec.decode(b, 0)).id).to.equal(id);
  });

  it('rejects a sector_number or nr_sectors above MAX_SAFE_INTEGER with the value, id and operation', () => {
    const b = new Uint8Array(BLKIF_REQUEST.SIZE);
    blkifRequestCodec.encode(b, 0, { operation: BLKIF_OP_WRITE, handle: 0, id: 9n, sectorNumber: Number.MAX_SAFE_INTEGER, seg: [] });
    expect(unwrap(blkifRequestCodec.decode(b, 0)).sectorNumber).to.equal(Number.MAX_SAFE_INTEGER);
    writeU64LE(b, BLKIF_REQUEST.sector_number, 1n << 53n);
    expect(blkifRequestCodec.decode(b, 0)).to.deep.equal({
      ok: false,
      error: { kind: 'value-out-of-range', field: 'sector_number', value: 1n << 53n, operation: BLKIF_OP_WRITE, id: 9n },
    });
    const d = new Uint8Array(BLKIF_REQUEST.SIZE);
    blkifRequestCodec.encode(d, 0, { operation: BLKIF_OP_DISCARD, flag: 0, handle: 0, id: 1n, sectorNumber: 0, nrSectors: 8 });
    writeU64LE(d, BLKIF_REQUEST_DISCARD.nr_sectors, 0xffff_ffff_ffff_ffffn);
    const r = blkifRequestCodec.decode(d, 0);
    expect(r.ok ? null : r.error).to.deep.include({ kind: 'value-out-of-range', field: 'nr_sectors', value: 0xffff_ffff_ffff_ffffn });
  });

  it('rejects unknown operations and over-long segment lists, keeping the id to answer with', () => {
    const b = new Uint8Array(BLKIF_REQUEST.SIZE);
    blkifRequestCodec.encode(b, 0, { operation: BLKIF_OP_READ, handle: 0, id: 77n, sectorNumber: 0, seg: [] });
    b[BLKIF_REQUEST.operation] = 200;
    expect(blkifRequestCodec.decode(b, 0)).to.deep.equal({ ok: false, error: { kind: 'unknown-operation', operation: 200, id: 77n } });
    b[BLKIF_REQUEST.operation] = BLKIF_OP_READ;
    b[BLKIF_REQUEST.nr_segments] = 12;
    expect(blkifRequestCodec.decode(b, 0)).to.deep.equal({ ok: false, error: { kind: 'too-many-segments', nrSegments: 12, max: 11, operation: 0, id: 77n } });
  });

  it('rejects an extra-info slot of type NONE or beyond MAX', () => {
    const b = new Uint8Array(NETIF_EXTRA_INFO.SIZE);
    b[NETIF_EXTRA_INFO.type] = XEN_NETIF_EXTRA_TYPE_NONE;
    b[NETIF_EXTRA_INFO.flags] = 1;
    expect(netifExtraInfoCodec.decode(b, 0)).to.deep.equal({ ok: false, error: { kind: 'unknown-extra-type', type: 0, flags: 1 } });
    b[NETIF_EXTRA_INFO.type] = 5;
    expect(netifExtraInfoCodec.decode(b, 0).ok).to.equal(false);
  });

  it('refuses to encode values the wire cannot carry (our own bug, so it throws)', () => {
    const b = new Uint8Array(BLKIF_REQUEST.SIZE);
    const base = { operation: BLKIF_OP_READ, handle: 0, id: 1n, sectorNumber: 0, seg: [] } as const;
    expect(() => blkifRequestCodec.encode(b, 0, { ...base, id: -1n })).to.throw(RangeError, /u64/);
    expect(() => blkifRequestCodec.encode(b, 0, { ...base, id: 1n << 64n })).to.throw(RangeError, /u64/);
    expect(() => blkifRequestCodec.encode(b, 0, { ...base, sectorNumber: 2 ** 53 })).to.throw(RangeError, /sector_number/);
    expect(() => blkifRequestCodec.encode(b, 0, { ...base, handle: 0x10000 })).to.throw(RangeError, /handle/);
    const seg = Array.from({ length: 12 }, () => ({ gref: 1 as Gref, firstSect: 0, lastSect: 7 }));
    expect(() => blkifRequestCodec.encode(b, 0, { ...base, seg })).to.throw(RangeError, /11 direct segments/);
    expect(() => netifTxRequestCodec.encode(b, 0, { gref: 1 as Gref, offset: 0, flags: 0, id: 0, size: 70000 })).to.throw(RangeError, /size/);
    expect(() => blkifResponseCodec.encode(b, 0, { id: 1n, operation: 0, status: 40000 })).to.throw(RangeError, /status/);
  });

  it('never throws while decoding arbitrary bytes, whatever the codec (fuzz)', () => {
    const codecs: RingCodec<unknown>[] = [
      blkifRequestCodec, blkifResponseCodec, netifTxRequestCodec, netifTxResponseCodec, netifRxRequestCodec,
      netifRxResponseCodec, netifExtraInfoCodec, xenNetifCtrlRequestCodec, xenNetifCtrlResponseCodec,
    ];
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 112, maxLength: 112 }), (bytes) => {
        for (const c of codecs) {
          const r = c.decode(bytes, 0);
          expect(r.ok === true || r.ok === false).to.equal(true);
        }
      }),
      { numRuns: 500 },
    );
  });
});

/** Writes a little-endian u64 into a private buffer, as a hostile guest would. */
function writeU64LE(b: Uint8Array, off: number, v: bigint): void {
  for (let i = 0; i < 8; i++) b[off + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}
