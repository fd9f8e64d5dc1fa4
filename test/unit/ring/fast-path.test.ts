/**
 * The rings' allocation-free data path (putRequestFrom / copyRequestInto /
 * putResponseFrom / copyResponseInto with the flat codecs), against the
 * object path it must be interchangeable with.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { BLKIF_OP_READ, BLKIF_OP_RESERVED_1, BLKIF_OP_WRITE, BLKIF_REQUEST, BLKIF_RSP_OKAY } from '../../../shared/abi/blkif.ts';
import { SRING } from '../../../shared/abi/ring.ts';
import { InvariantError } from '../../../shared/invariant.ts';
import { MachineMemory, type WaitResult } from '../../../shared/memory/machine-memory.ts';
import { hasWordCopies, machineRegion, type MemRegion, type PagedRegion } from '../../../shared/memory/region.ts';
import { unwrap } from '../../../shared/result.ts';
import { BackRing } from '../../../shared/ring/back-ring.ts';
import {
  BLKIF_RING,
  BLKIF_RING_FLAT,
  DECODED,
  NETIF_RX_RING_FLAT,
  NETIF_TX_RING_FLAT,
  blkifId,
  setBlkifId,
  type BlkifRequestDirect,
  type BlkifRequestFlat,
} from '../../../shared/ring/codec.ts';
import { FrontRing } from '../../../shared/ring/front-ring.ts';
import { sharedRingInit } from '../../../shared/ring/sring.ts';
import type { RingIdx } from '../../../shared/ring/u32.ts';
import type { Gref, MachineAddr } from '../../../shared/types.ts';

const mem = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
let nextFrame = 16;
function region(pages = 1): PagedRegion {
  const r = machineRegion(mem, (nextFrame * 4096) as MachineAddr, pages);
  nextFrame += pages;
  r.fill(0, r.byteLength, 0);
  return r;
}

/** The same region without the optional word copies: the rings fall back to byte copies. */
class BytesOnlyRegion implements MemRegion {
  constructor(private readonly r: MemRegion) {}
  get byteLength(): number { return this.r.byteLength; }
  getU8(o: number): number { return this.r.getU8(o); }
  setU8(o: number, v: number): void { this.r.setU8(o, v); }
  getU16(o: number): number { return this.r.getU16(o); }
  setU16(o: number, v: number): void { this.r.setU16(o, v); }
  getI16(o: number): number { return this.r.getI16(o); }
  setI16(o: number, v: number): void { this.r.setI16(o, v); }
  getU32(o: number): number { return this.r.getU32(o); }
  setU32(o: number, v: number): void { this.r.setU32(o, v); }
  getU64(o: number): bigint { return this.r.getU64(o); }
  setU64(o: number, v: bigint): void { this.r.setU64(o, v); }
  atomicLoadU32(o: number): number { return this.r.atomicLoadU32(o); }
  atomicStoreU32(o: number, v: number): void { this.r.atomicStoreU32(o, v); }
  atomicAddU32(o: number, v: number): number { return this.r.atomicAddU32(o, v); }
  atomicCmpxchgU32(o: number, e: number, n: number): number { return this.r.atomicCmpxchgU32(o, e, n); }
  copyOut(o: number, into: Uint8Array, intoOff?: number, len?: number): void { this.r.copyOut(o, into, intoOff, len); }
  copyIn(o: number, from: Uint8Array, fromOff?: number, len?: number): void { this.r.copyIn(o, from, fromOff, len); }
  fill(o: number, len: number, byte?: number): void { this.r.fill(o, len, byte); }
  wait32(o: number, e: number, t: number): WaitResult { return this.r.wait32(o, e, t); }
  notify32(o: number, c?: number): number { return this.r.notify32(o, c); }
}

const { request: REQ, response: RSP } = BLKIF_RING_FLAT;

/** A direct request with k segments, every field derived from n. */
function directFlat(n: number, segs: number, q: BlkifRequestFlat = REQ.create()): BlkifRequestFlat {
  q.operation = n % 2 === 0 ? BLKIF_OP_READ : BLKIF_OP_WRITE;
  q.handle = n & 0xffff;
  setBlkifId(q, (BigInt(n) << 32n) | 0xabcdn);
  q.sectorNumber = n * 8;
  q.nrSegments = segs;
  for (let i = 0; i < segs; i++) {
    q.segGref[i] = (n * 16 + i) >>> 0;
    q.segFirstSect[i] = i % 8;
    q.segLastSect[i] = 7;
  }
  return q;
}
function directObject(n: number, segs: number): BlkifRequestDirect {
  const seg = [];
  for (let i = 0; i < segs; i++) seg.push({ gref: ((n * 16 + i) >>> 0) as Gref, firstSect: i % 8, lastSect: 7 });
  return { operation: n % 2 === 0 ? BLKIF_OP_READ : BLKIF_OP_WRITE, handle: n & 0xffff, id: (BigInt(n) << 32n) | 0xabcdn, sectorNumber: n * 8, seg };
}

describe('the allocation-free ring data path', () => {
  it('carries a request and its response through reused structs, the id echoed as two halves', () => {
    const r = region();
    expect(hasWordCopies(r)).to.equal(true);
    const front = FrontRing.init(r, BLKIF_RING_FLAT);
    const back = BackRing.init(r, BLKIF_RING_FLAT);
    const out = directFlat(5, 3);
    expect(front.putRequestFrom(REQ, out)).to.equal(0);
    expect(front.pushRequestsAndCheckNotify()).to.equal(true);
    expect(unwrap(back.unconsumedRequests())).to.equal(1);
    const req = REQ.create();
    // Success returns the one shared DECODED value: nothing allocated per entry.
    expect(back.copyRequestInto(REQ, req)).to.equal(DECODED);
    expect(blkifId(req)).to.equal((5n << 32n) | 0xabcdn);
    expect([req.nrSegments, [...req.segGref.subarray(0, 3)], req.sectorNumber, req.handle]).to.deep.equal([3, [80, 81, 82], 40, 5]);
    const rsp = RSP.create();
    rsp.idLo = req.idLo;
    rsp.idHi = req.idHi;
    rsp.operation = req.operation;
    rsp.status = BLKIF_RSP_OKAY;
    back.putResponseFrom(RSP, rsp);
    expect(back.pushResponsesAndCheckNotify()).to.equal(true);
    expect(unwrap(front.hasUnconsumedResponses())).to.equal(1);
    const got = RSP.create();
    expect(front.copyResponseInto(RSP, got)).to.equal(DECODED);
    expect(got).to.deep.equal({ idLo: 0xabcd, idHi: 5, operation: BLKIF_OP_WRITE, status: 0 });
  });

  it('is interchangeable with the object path on either end, with or without word copies (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 0xfffff }), fc.integer({ min: 0, max: 11 })), { minLength: 1, maxLength: 80 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0xffff_ff00, max: 0xffff_ffff }),
        (reqs, flatFront, wordCopies, start) => {
          const base = region();
          const r = wordCopies ? base : new BytesOnlyRegion(base);
          expect(hasWordCopies(r)).to.equal(wordCopies);
          sharedRingInit(r, start as RingIdx);
          const front = FrontRing.attach(r, BLKIF_RING, start as RingIdx);
          const back = BackRing.attach(r, BLKIF_RING, start as RingIdx);
          const q = REQ.create();
          const rsp = RSP.create();
          let i = 0;
          while (i < reqs.length) {
            const batch = reqs.slice(i, i + front.freeRequests());
            for (const [n, segs] of batch) {
              if (flatFront) front.putRequestFrom(REQ, directFlat(n, segs, q));
              else front.putRequest(directObject(n, segs));
            }
            front.pushRequests();
            expect(unwrap(back.unconsumedRequests())).to.equal(batch.length);
            for (const [n, segs] of batch) {
              // The other end uses the other path.
              if (flatFront) {
                expect(unwrap(back.copyRequest())).to.deep.equal(directObject(n, segs));
                back.putResponse({ id: directObject(n, segs).id, operation: BLKIF_OP_READ, status: -1 });
              } else {
                expect(back.copyRequestInto(REQ, q).ok).to.equal(true);
                expect(q.nrSegments).to.equal(segs);
                expect([...q.segGref.subarray(0, segs)]).to.deep.equal(directObject(n, segs).seg.map((s) => s.gref));
                expect(blkifId(q)).to.equal(directObject(n, segs).id);
                Object.assign(rsp, { idLo: q.idLo, idHi: q.idHi, operation: BLKIF_OP_READ, status: -1 });
                back.putResponseFrom(RSP, rsp);
              }
            }
            back.pushResponses();
            expect(unwrap(front.hasUnconsumedResponses())).to.equal(batch.length);
            for (const [n, segs] of batch) {
              if (flatFront) {
                expect(front.copyResponseInto(RSP, rsp).ok).to.equal(true);
                expect(blkifId(rsp)).to.equal(directObject(n, segs).id);
                expect(rsp.status).to.equal(-1);
              } else {
                expect(unwrap(front.copyResponse())).to.deep.equal({ id: directObject(n, segs).id, operation: BLKIF_OP_READ, status: -1 });
              }
            }
            i += batch.length;
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('copies only the words of a request: a short request reuses a slot without the old segments reappearing', () => {
    const r = region();
    const front = FrontRing.init(r, BLKIF_RING_FLAT);
    const back = BackRing.init(r, BLKIF_RING_FLAT);
    const q = REQ.create();
    const rsp = RSP.create();
    // Fill every slot with 11-segment requests, answer them, then reuse slot 0 for a 1-segment one.
    for (let n = 0; n < 32; n++) front.putRequestFrom(REQ, directFlat(1000 + n, 11, q));
    front.pushRequests();
    unwrap(back.unconsumedRequests());
    for (let n = 0; n < 32; n++) {
      back.copyRequestInto(REQ, q);
      back.putResponseFrom(RSP, Object.assign(rsp, { idLo: q.idLo, idHi: q.idHi, operation: q.operation, status: 0 }));
    }
    back.pushResponses();
    unwrap(front.hasUnconsumedResponses());
    for (let n = 0; n < 32; n++) front.copyResponseInto(RSP, rsp);
    const slot = front.requestSlot();
    front.putRequestFrom(REQ, directFlat(7, 1, q));
    front.pushRequests();
    // The slot's tail still holds shared bytes of the old request (never private memory)…
    expect(r.getU32(slot + BLKIF_REQUEST.seg + 8 * 10)).to.equal((1000 * 16 + 10) >>> 0);
    // …and the backend, reading nr_segments from its private copy, never looks at them.
    unwrap(back.unconsumedRequests());
    const got = REQ.create();
    expect(back.copyRequestInto(REQ, got).ok).to.equal(true);
    expect(got.nrSegments).to.equal(1);
    expect(got.segGref[0]).to.equal(7 * 16);
    expect(blkifId(got)).to.equal((7n << 32n) | 0xabcdn);
  });

  it('consumes an undecodable slot, reports the error with the id, and keeps serving', () => {
    const r = region();
    const front = FrontRing.init(r, BLKIF_RING_FLAT);
    const back = BackRing.init(r, BLKIF_RING_FLAT);
    const off = front.requestSlot();
    front.putRequestFrom(REQ, directFlat(3, 1));
    r.setU8(off + BLKIF_REQUEST.operation, BLKIF_OP_RESERVED_1); // the guest scribbles after encoding
    front.putRequestFrom(REQ, directFlat(4, 1));
    front.pushRequests();
    expect(unwrap(back.unconsumedRequests())).to.equal(2);
    const q = REQ.create();
    const bad = back.copyRequestInto(REQ, q);
    expect(bad.ok ? 'ok' : bad.error).to.deep.equal({ kind: 'unknown-operation', operation: BLKIF_OP_RESERVED_1, id: (3n << 32n) | 0xabcdn });
    expect(back.reqCons).to.equal(1);
    expect(back.copyRequestInto(REQ, q)).to.equal(DECODED);
    expect(blkifId(q)).to.equal((4n << 32n) | 0xabcdn);
  });

  it('refuses, as the object path does, to overfill the ring or to copy what was not seen', () => {
    const r = region();
    const front = FrontRing.init(r, BLKIF_RING_FLAT);
    const back = BackRing.init(r, BLKIF_RING_FLAT);
    const q = directFlat(1, 1);
    expect(() => back.copyRequestInto(REQ, REQ.create())).to.throw(InvariantError, /no request seen/);
    for (let i = 0; i < 32; i++) front.putRequestFrom(REQ, q);
    expect(() => front.putRequestFrom(REQ, q)).to.throw(InvariantError, /ring is full/);
    front.pushRequests();
    expect(() => back.putResponseFrom(RSP, RSP.create())).to.throw(InvariantError, /no consumed request/);
    expect(() => front.copyResponseInto(RSP, RSP.create())).to.throw(InvariantError, /no response seen/);
    expect(r.atomicLoadU32(SRING.req_prod)).to.equal(32);
  });

  it('carries netif tx and rx entries across 2^32 through the flat codecs', () => {
    for (const types of [NETIF_TX_RING_FLAT, NETIF_RX_RING_FLAT] as const) {
      const r = region();
      const start = 0xffff_fff0;
      sharedRingInit(r, start as RingIdx);
      const front = FrontRing.attach(r, types, start as RingIdx);
      const back = BackRing.attach(r, types, start as RingIdx);
      const q = types.request.create();
      const got = types.request.create();
      const rsp = types.response.create();
      const gotRsp = types.response.create();
      for (let round = 0; round < 3; round++) {
        for (let k = 0; k < 20; k++) {
          Object.assign(q, { id: (round * 20 + k) & 0xffff, gref: (0xfffffff0 + k) >>> 0 });
          front.putRequestFrom(types.request, q as never);
        }
        front.pushRequests();
        expect(unwrap(back.unconsumedRequests())).to.equal(20);
        for (let k = 0; k < 20; k++) {
          expect(back.copyRequestInto(types.request, got as never).ok).to.equal(true);
          expect([got.id, got.gref]).to.deep.equal([(round * 20 + k) & 0xffff, (0xfffffff0 + k) >>> 0]);
          Object.assign(rsp, { id: got.id, status: -2 });
          back.putResponseFrom(types.response, rsp as never);
        }
        back.pushResponses();
        expect(unwrap(front.hasUnconsumedResponses())).to.equal(20);
        for (let k = 0; k < 20; k++) {
          front.copyResponseInto(types.response, gotRsp as never);
          expect([gotRsp.id, gotRsp.status]).to.deep.equal([(round * 20 + k) & 0xffff, -2]);
        }
      }
      expect(front.rspCons).to.equal((start + 60) >>> 0);
    }
  });
  it('answers the per-batch queries with shared, frozen Results: nothing allocated, nothing a caller can change', () => {
    const r = region();
    const front = FrontRing.init(r, BLKIF_RING_FLAT);
    const back = BackRing.init(r, BLKIF_RING_FLAT);
    const none = back.unconsumedRequests();
    expect(back.unconsumedRequests()).to.equal(none);
    front.putRequestFrom(REQ, directFlat(1, 1));
    front.putRequestFrom(REQ, directFlat(2, 1));
    front.pushRequests();
    const two = back.unconsumedRequests();
    expect(two).to.deep.equal({ ok: true, value: 2 });
    expect(front.hasUnconsumedResponses()).to.equal(none);
    expect(Object.isFrozen(two)).to.equal(true);
    expect(() => Object.assign(two, { value: 3 })).to.throw(TypeError);
    expect(back.unconsumedRequests()).to.equal(two);
    expect(back.finalCheckForRequests()).to.equal(back.finalCheckForRequests());
    expect(unwrap(back.finalCheckForRequests())).to.equal(true);
  });
});
