/**
 * A hostile peer on the other end of the ring: impossible producer indices,
 * slots rewritten after they were read, garbage entries. The honest end must
 * flag, answer with an error, or ignore — never throw, never double-fetch —
 * and keep working for good requests afterwards.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import { BLKIF_OP_READ, BLKIF_OP_RESERVED_1, BLKIF_REQUEST, BLKIF_REQUEST_SEGMENT } from '../../../shared/abi/blkif.ts';
import { SRING } from '../../../shared/abi/ring.ts';
import type { WaitResult } from '../../../shared/memory/machine-memory.ts';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { machineRegion, type MemRegion } from '../../../shared/memory/region.ts';
import { unwrap } from '../../../shared/result.ts';
import { BackRing } from '../../../shared/ring/back-ring.ts';
import {
  BLKIF_RING,
  BLKIF_RING_FLAT,
  blkifId,
  blkifRequestCodec,
  blkifRequestFlatCodec,
  blkifResponseFlatCodec,
  type BlkifRequestDirect,
} from '../../../shared/ring/codec.ts';
import { FrontRing } from '../../../shared/ring/front-ring.ts';
import { sharedRingInit } from '../../../shared/ring/sring.ts';
import type { RingIdx } from '../../../shared/ring/u32.ts';
import type { Gref, MachineAddr } from '../../../shared/types.ts';

const mem = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
let nextFrame = 16;
function freshRegion(pages = 1): MemRegion {
  const r = machineRegion(mem, (nextFrame * 4096) as MachineAddr, pages);
  nextFrame += pages;
  r.fill(0, r.byteLength, 0);
  return r;
}

/** A MemRegion that counts every access touching [from, to). */
class CountingRegion implements MemRegion {
  scalarReads = 0;
  copyOuts = 0;
  watch: [number, number] = [0, 0];
  /** How many times each byte of the region was read by a copy. */
  readonly bytesRead = new Map<number, number>();
  constructor(private readonly inner: MemRegion) {}
  get byteLength(): number { return this.inner.byteLength; }
  private hit(off: number, len: number): boolean {
    for (let o = off; o < off + len; o++) this.bytesRead.set(o, (this.bytesRead.get(o) ?? 0) + 1);
    return off < this.watch[1] && off + len > this.watch[0];
  }
  private r(off: number, len: number): void { if (this.hit(off, len)) this.scalarReads++; }
  getU8(o: number): number { this.r(o, 1); return this.inner.getU8(o); }
  setU8(o: number, v: number): void { this.inner.setU8(o, v); }
  getU16(o: number): number { this.r(o, 2); return this.inner.getU16(o); }
  setU16(o: number, v: number): void { this.inner.setU16(o, v); }
  getI16(o: number): number { this.r(o, 2); return this.inner.getI16(o); }
  setI16(o: number, v: number): void { this.inner.setI16(o, v); }
  getU32(o: number): number { this.r(o, 4); return this.inner.getU32(o); }
  setU32(o: number, v: number): void { this.inner.setU32(o, v); }
  getU64(o: number): bigint { this.r(o, 8); return this.inner.getU64(o); }
  setU64(o: number, v: bigint): void { this.inner.setU64(o, v); }
  atomicLoadU32(o: number): number { this.r(o, 4); return this.inner.atomicLoadU32(o); }
  atomicStoreU32(o: number, v: number): void { this.inner.atomicStoreU32(o, v); }
  atomicAddU32(o: number, v: number): number { this.r(o, 4); return this.inner.atomicAddU32(o, v); }
  atomicCmpxchgU32(o: number, e: number, n: number): number { this.r(o, 4); return this.inner.atomicCmpxchgU32(o, e, n); }
  copyOut(o: number, into: Uint8Array, intoOff?: number, len?: number): void {
    if (this.hit(o, len ?? into.length - (intoOff ?? 0))) this.copyOuts++;
    this.inner.copyOut(o, into, intoOff, len);
  }
  copyIn(o: number, from: Uint8Array, fromOff?: number, len?: number): void { this.inner.copyIn(o, from, fromOff, len); }
  // The word copies the rings use on the fast path count as copies too.
  copyOutWords(o: number, into: Int32Array, at: number, words: number): void {
    if (this.hit(o, words * 4)) this.copyOuts++;
    (this.inner as Required<MemRegion>).copyOutWords(o, into, at, words);
  }
  copyInWords(o: number, from: Int32Array, at: number, words: number): void { (this.inner as Required<MemRegion>).copyInWords(o, from, at, words); }
  fill(o: number, len: number, byte?: number): void { this.inner.fill(o, len, byte); }
  wait32(o: number, e: number, t: number): WaitResult { return this.inner.wait32(o, e, t); }
  notify32(o: number, c?: number): number { return this.inner.notify32(o, c); }
}

const write3 = (id: bigint): BlkifRequestDirect => ({
  operation: 1,
  handle: 5,
  id,
  sectorNumber: 2048,
  seg: [
    { gref: 10 as Gref, firstSect: 0, lastSect: 7 },
    { gref: 11 as Gref, firstSect: 0, lastSect: 7 },
    { gref: 12 as Gref, firstSect: 0, lastSect: 3 },
  ],
});

describe('rings facing a hostile peer', () => {
  it('flags a req_prod that leaps more than a ring ahead as req-prod-overflow, and serves again once it is sane', () => {
    const r = freshRegion();
    const front = FrontRing.init(r, BLKIF_RING);
    const back = BackRing.init(r, BLKIF_RING);
    front.putRequest(write3(1n));
    front.pushRequests();
    r.atomicStoreU32(SRING.req_prod, 33); // the guest claims 33 requests in a 32-slot ring
    const res = back.unconsumedRequests();
    expect(res.ok).to.equal(false);
    if (!res.ok) expect(res.error).to.deep.equal({ kind: 'req-prod-overflow', reqProd: 33, reqCons: 0, rspProdPvt: 0, size: 32 });
    const fin = back.finalCheckForRequests();
    expect(fin.ok ? 'ok' : fin.error.kind).to.equal('req-prod-overflow');
    expect(back.reqCons, 'nothing was consumed').to.equal(0);
    expect(() => back.copyRequest(), 'the bogus index was not taken as seen').to.throw(/no request seen/);
    // Exactly a ring's worth is legal.
    r.atomicStoreU32(SRING.req_prod, 32);
    expect(unwrap(back.unconsumedRequests())).to.equal(32);
    // Ends with a good request that must succeed.
    r.atomicStoreU32(SRING.req_prod, 1);
    expect(unwrap(back.unconsumedRequests())).to.equal(1);
    expect(unwrap(back.copyRequest())).to.deep.equal(write3(1n));
  });

  it('flags req_prod leaps and regressions near 2^32 too, whatever the leap (property)', () => {
    const r = freshRegion();
    fc.assert(
      fc.property(fc.integer({ min: 0xffffff00, max: 0xffffffff }), fc.integer({ min: 0, max: 31 }), fc.oneof(fc.integer({ min: -40, max: 40 }), fc.integer({ min: 0, max: 0xffffffff })), (start, consumed, rel) => {
        const bogus = (start + rel) >>> 0;
        sharedRingInit(r, start as RingIdx);
        const front = FrontRing.attach(r, BLKIF_RING, start as RingIdx);
        const back = BackRing.attach(r, BLKIF_RING, start as RingIdx);
        for (let i = 0; i < consumed; i++) front.putRequest(write3(BigInt(i)));
        front.pushRequests();
        unwrap(back.unconsumedRequests());
        for (let i = 0; i < consumed; i++) unwrap(back.copyRequest());
        r.atomicStoreU32(SRING.req_prod, bogus);
        const ahead = (bogus - start) >>> 0; // requests the guest claims beyond our responses
        const legal = ahead >= consumed && ahead <= 32;
        const res = back.unconsumedRequests();
        expect(res.ok).to.equal(legal);
        if (res.ok) expect(res.value).to.equal(ahead - consumed);
      }),
      { numRuns: 500 },
    );
  });

  it('copies a request slot out exactly once, with no scalar read of it, before decoding', () => {
    const inner = freshRegion();
    const front = FrontRing.init(inner, BLKIF_RING);
    front.putRequest(write3(77n));
    front.pushRequests();
    const counting = new CountingRegion(inner);
    const back = BackRing.init(counting, BLKIF_RING);
    counting.watch = [SRING.ring, SRING.ring + BLKIF_REQUEST.SIZE];
    unwrap(back.unconsumedRequests());
    unwrap(back.copyRequest());
    expect(counting.copyOuts).to.equal(1);
    expect(counting.scalarReads).to.equal(0);
  });

  it('keeps the private copy unchanged when the guest rewrites the slot after it was copied (XSA-155)', () => {
    const r = freshRegion();
    const front = FrontRing.init(r, BLKIF_RING);
    const back = BackRing.init(r, BLKIF_RING);
    front.putRequest(write3(5n));
    front.pushRequests();
    unwrap(back.unconsumedRequests());
    const req = unwrap(back.copyRequest());
    const before = structuredClone(req);
    // The guest now rewrites everything a backend would validate.
    const slot = front.requestSlot(0 as RingIdx);
    r.setU8(slot + BLKIF_REQUEST.nr_segments, 11);
    r.setU64(slot + BLKIF_REQUEST.id, 0xffffn);
    r.setU64(slot + BLKIF_REQUEST.sector_number, 0xffff_ffff_ffffn);
    r.setU32(slot + BLKIF_REQUEST.seg + BLKIF_REQUEST_SEGMENT.gref, 0xdead);
    r.setU8(slot + BLKIF_REQUEST.seg + BLKIF_REQUEST_SEGMENT.last_sect, 200);
    expect(req).to.deep.equal(before);
    expect(req.id).to.equal(5n);
    if (req.operation === 1) expect(req.seg.map((s) => s.gref)).to.deep.equal([10, 11, 12]);
  });

  it('copies a response slot out once too (RING_COPY_RESPONSE), so a backend cannot change it after the check', () => {
    const inner = freshRegion();
    const counting = new CountingRegion(inner);
    const front = FrontRing.init(counting, BLKIF_RING);
    const back = BackRing.init(inner, BLKIF_RING);
    front.putRequest(write3(3n));
    front.pushRequests();
    unwrap(back.unconsumedRequests());
    unwrap(back.copyRequest());
    back.putResponse({ id: 3n, operation: 1, status: 0 });
    back.pushResponses();
    counting.watch = [SRING.ring, SRING.ring + 16];
    unwrap(front.hasUnconsumedResponses());
    const rsp = unwrap(front.copyResponse());
    inner.setU64(SRING.ring, 999n);
    expect(rsp.id).to.equal(3n);
    expect(counting.copyOuts).to.equal(1);
    expect(counting.scalarReads).to.equal(0);
  });

  it('flags a backend that publishes more responses than requests were pushed (rsp-prod-overflow)', () => {
    const r = freshRegion();
    const front = FrontRing.init(r, BLKIF_RING);
    front.putRequest(write3(1n));
    front.putRequest(write3(2n));
    front.pushRequests();
    front.putRequest(write3(3n)); // put but not pushed: no backend can answer it
    r.atomicStoreU32(SRING.rsp_prod, 3);
    const res = front.hasUnconsumedResponses();
    expect(res.ok ? 'ok' : res.error).to.deep.equal({ kind: 'rsp-prod-overflow', rspProd: 3, rspCons: 0, reqProd: 2, size: 32 });
    expect(front.responseProdOverflow(33 as RingIdx)).to.equal(true);
    expect(front.responseProdOverflow(32 as RingIdx)).to.equal(false);
    r.atomicStoreU32(SRING.rsp_prod, 2);
    expect(unwrap(front.hasUnconsumedResponses())).to.equal(2);
  });

  it('answers undecodable requests with their id and keeps serving the ring', () => {
    const r = freshRegion();
    const front = FrontRing.init(r, BLKIF_RING);
    const back = BackRing.init(r, BLKIF_RING);
    // Three bad requests written raw by a hostile guest, then a good one.
    const put = (mutate: (off: number) => void, id: bigint) => {
      const off = front.requestSlot();
      front.putRequest(write3(id));
      mutate(off);
    };
    put((o) => r.setU8(o + BLKIF_REQUEST.operation, BLKIF_OP_RESERVED_1), 100n);
    put((o) => r.setU8(o + BLKIF_REQUEST.nr_segments, 12), 101n);
    put((o) => r.setU64(o + BLKIF_REQUEST.sector_number, 1n << 53n), 102n);
    front.putRequest(write3(103n));
    front.pushRequests();
    expect(unwrap(back.unconsumedRequests())).to.equal(4);
    const got = [back.copyRequest(), back.copyRequest(), back.copyRequest(), back.copyRequest()];
    expect(got.map((g) => (g.ok ? 'ok' : g.error.kind))).to.deep.equal(['unknown-operation', 'too-many-segments', 'value-out-of-range', 'ok']);
    const ids = got.map((g) => (g.ok ? g.value.id : g.error.kind === 'unknown-extra-type' ? -1n : g.error.id));
    expect(ids).to.deep.equal([100n, 101n, 102n, 103n]);
    for (const id of ids) back.putResponse({ id, operation: BLKIF_OP_READ, status: -1 });
    back.pushResponses();
    expect(unwrap(front.hasUnconsumedResponses())).to.equal(4);
  });

  it('never throws while decoding any slot content, and stays usable afterwards (fuzz)', () => {
    const r = freshRegion();
    const front = FrontRing.init(r, BLKIF_RING);
    const back = BackRing.init(r, BLKIF_RING);
    const kinds = new Set<string>();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: BLKIF_REQUEST.SIZE, maxLength: BLKIF_REQUEST.SIZE }), (bytes) => {
        const off = front.requestSlot();
        front.putRequest(write3(0n));
        r.copyIn(off, bytes); // the guest scribbles over its slot before publishing
        front.pushRequests();
        unwrap(back.unconsumedRequests());
        const res = back.copyRequest();
        kinds.add(res.ok ? 'ok' : res.error.kind);
        back.putResponse({ id: 0n, operation: 0, status: -1 });
        back.pushResponses();
        unwrap(front.hasUnconsumedResponses());
        unwrap(front.copyResponse());
        // Re-decoding the same bytes privately gives the same verdict.
        const again = blkifRequestCodec.decode(bytes, 0);
        expect(again.ok).to.equal(res.ok);
      }),
      { numRuns: 1000 },
    );
    expect(kinds.has('unknown-operation')).to.equal(true);
    // The instance is not broken: a good request goes through.
    front.putRequest(write3(42n));
    front.pushRequests();
    expect(unwrap(back.unconsumedRequests())).to.equal(1);
    expect(unwrap(back.copyRequest())).to.deep.equal(write3(42n));
  });
  it('copies a request slot out exactly once on the fast path too, and the guest cannot change the private copy after (XSA-155)', () => {
    const inner = freshRegion();
    const front = FrontRing.init(inner, BLKIF_RING);
    front.putRequest(write3(77n));
    front.pushRequests();
    const counting = new CountingRegion(inner);
    const back = BackRing.init(counting, BLKIF_RING_FLAT);
    counting.watch = [SRING.ring, SRING.ring + BLKIF_REQUEST.SIZE];
    unwrap(back.unconsumedRequests());
    counting.bytesRead.clear();
    const q = blkifRequestFlatCodec.create();
    expect(back.copyRequestInto(blkifRequestFlatCodec, q).ok).to.equal(true);
    // The header and its first segment, then the other two segments: every
    // byte of the entry read exactly once, nothing past it, no scalar read.
    const entryBytes = BLKIF_REQUEST.seg + 3 * BLKIF_REQUEST_SEGMENT.SIZE;
    expect(counting.copyOuts).to.equal(2);
    expect([...counting.bytesRead.keys()].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: entryBytes }, (_, k) => SRING.ring + k));
    expect([...counting.bytesRead.values()].every((n) => n === 1)).to.equal(true);
    expect(counting.scalarReads).to.equal(0);
    const before = { nr: q.nrSegments, grefs: [...q.segGref], id: blkifId(q), sector: q.sectorNumber };
    // The guest rewrites everything a backend would validate.
    inner.setU8(SRING.ring + BLKIF_REQUEST.nr_segments, 11);
    inner.setU64(SRING.ring + BLKIF_REQUEST.id, 0xffffn);
    inner.setU64(SRING.ring + BLKIF_REQUEST.sector_number, 0xffff_ffff_ffffn);
    inner.setU32(SRING.ring + BLKIF_REQUEST.seg + BLKIF_REQUEST_SEGMENT.gref, 0xdead);
    expect({ nr: q.nrSegments, grefs: [...q.segGref], id: blkifId(q), sector: q.sectorNumber }).to.deep.equal(before);
    expect([before.nr, before.id, before.grefs.slice(0, 3)]).to.deep.equal([3, 77n, [10, 11, 12]]);
  });

  it('copies a response slot out once on the fast path, so a backend cannot change it after the check', () => {
    const inner = freshRegion();
    const counting = new CountingRegion(inner);
    const front = FrontRing.init(counting, BLKIF_RING_FLAT);
    const back = BackRing.init(inner, BLKIF_RING);
    front.putRequestWith(blkifRequestCodec, write3(3n));
    front.pushRequests();
    unwrap(back.unconsumedRequests());
    unwrap(back.copyRequest());
    back.putResponse({ id: 3n, operation: 1, status: 0 });
    back.pushResponses();
    counting.watch = [SRING.ring, SRING.ring + 16];
    unwrap(front.hasUnconsumedResponses());
    const rsp = blkifResponseFlatCodec.create();
    front.copyResponseInto(blkifResponseFlatCodec, rsp);
    inner.setU64(SRING.ring, 999n);
    expect(blkifId(rsp)).to.equal(3n);
    expect(counting.copyOuts).to.equal(1);
    expect(counting.scalarReads).to.equal(0);
  });

  it('never throws on any slot content on the fast path, gives the object path\'s verdict, and stays usable (fuzz)', () => {
    const r = freshRegion();
    const front = FrontRing.init(r, BLKIF_RING);
    const back = BackRing.init(r, BLKIF_RING_FLAT);
    const q = blkifRequestFlatCodec.create();
    const rsp = blkifResponseFlatCodec.create();
    fc.assert(
      fc.property(fc.uint8Array({ minLength: BLKIF_REQUEST.SIZE, maxLength: BLKIF_REQUEST.SIZE }), (bytes) => {
        const off = front.requestSlot();
        front.putRequest(write3(0n));
        r.copyIn(off, bytes); // the guest scribbles over its slot before publishing
        front.pushRequests();
        unwrap(back.unconsumedRequests());
        const res = back.copyRequestInto(blkifRequestFlatCodec, q);
        const want = blkifRequestCodec.decode(bytes, 0);
        expect(res.ok).to.equal(want.ok);
        if (!res.ok && !want.ok) expect(res.error).to.deep.equal(want.error);
        back.putResponseFrom(blkifResponseFlatCodec, Object.assign(rsp, { idLo: q.idLo, idHi: q.idHi, operation: q.operation, status: -1 }));
        back.pushResponses();
        unwrap(front.hasUnconsumedResponses());
        expect(unwrap(front.copyResponse()).status).to.equal(-1);
      }),
      { numRuns: 1000 },
    );
    front.putRequest(write3(42n));
    front.pushRequests();
    expect(unwrap(back.unconsumedRequests())).to.equal(1);
    expect(back.copyRequestInto(blkifRequestFlatCodec, q).ok).to.equal(true);
    expect(blkifId(q)).to.equal(42n);
  });
});
