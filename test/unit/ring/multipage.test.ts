import { expect } from 'chai';
import { BLKIF_OP_WRITE, BLKIF_MAX_SEGMENTS_PER_REQUEST } from '../../../shared/abi/blkif.ts';
import { XEN_PAGE_SIZE } from '../../../shared/abi/ring.ts';
import { InvariantError } from '../../../shared/invariant.ts';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { PagedRegion, machineRegion } from '../../../shared/memory/region.ts';
import { unwrap } from '../../../shared/result.ts';
import { BackRing } from '../../../shared/ring/back-ring.ts';
import {
  BLKIF_RING,
  BLKIF_RING_FLAT,
  NETIF_RX_RING,
  NETIF_TX_RING,
  XEN_NETIF_CTRL_RING,
  blkifId,
  setBlkifId,
  type BlkifRequestDirect,
  type BlkifSegment,
  type RingTypes,
} from '../../../shared/ring/codec.ts';
import { FrontRing } from '../../../shared/ring/front-ring.ts';
import { sharedRingInit } from '../../../shared/ring/sring.ts';
import { idxSub, type RingIdx } from '../../../shared/ring/u32.ts';
import type { Gref, MachineAddr } from '../../../shared/types.ts';

const mem = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });

/** A region of `pages` frames scattered (reversed, with gaps) over machine memory. */
function scattered(pages: number, base: number): PagedRegion {
  const r = new PagedRegion(mem, pages, (p) => ((base + 2 * (pages - 1 - p)) * 4096) as MachineAddr);
  r.fill(0, r.byteLength, 0);
  return r;
}

function request(k: number): BlkifRequestDirect {
  const seg: BlkifSegment[] = [];
  for (let s = 0; s < BLKIF_MAX_SEGMENTS_PER_REQUEST; s++) seg.push({ gref: ((k * 16 + s) >>> 0) as Gref, firstSect: s % 8, lastSect: 7 });
  return { operation: BLKIF_OP_WRITE, handle: k & 0xffff, id: BigInt(k) * 0x1_0000_0001n, sectorNumber: k * 88, seg };
}

describe('multi-page rings (ring-page-order 0..4)', () => {
  it('sizes blkif, netif tx/rx and ctrl rings of 1..16 pages as RING_SIZE does', () => {
    const expected: [RingTypes<unknown, unknown>, number[]][] = [
      [BLKIF_RING as RingTypes<unknown, unknown>, [32, 64, 128, 256, 512]],
      [NETIF_TX_RING as RingTypes<unknown, unknown>, [256, 512, 1024, 2048, 4096]],
      [NETIF_RX_RING as RingTypes<unknown, unknown>, [256, 512, 1024, 2048, 4096]],
      [XEN_NETIF_CTRL_RING as RingTypes<unknown, unknown>, [128, 256, 512, 1024, 2048]],
    ];
    for (const [types, sizes] of expected) {
      for (let order = 0; order <= 4; order++) {
        const r = scattered(1 << order, 1000);
        expect(FrontRing.init(r, types).size, `${types.name} order ${order}`).to.equal(sizes[order]);
        expect(BackRing.init(r, types).size).to.equal(sizes[order]);
      }
    }
  });

  it('refuses a region beyond 16 pages or too small for the header and one entry', () => {
    expect(() => FrontRing.init(machineRegion(mem, (3000 * 4096) as MachineAddr, 17), NETIF_RX_RING)).to.throw(InvariantError, /16 pages/);
    const tiny = new PagedRegion(mem, 1, () => (3100 * 4096) as MachineAddr);
    const short = Object.assign(Object.create(tiny) as PagedRegion, { byteLength: 64 + 111 });
    expect(() => BackRing.init(short, BLKIF_RING)).to.throw(InvariantError, /header and one entry/);
  });

  for (let order = 0; order <= 4; order++) {
    it(`carries full 11-segment requests through every slot of a ${1 << order}-page blkif ring over scattered frames, wrapping twice`, () => {
      const pages = 1 << order;
      const r = scattered(pages, 200 + order * 40);
      const start = 0xffff_ffff - 40;
      sharedRingInit(r, start as RingIdx);
      const front = FrontRing.attach(r, BLKIF_RING, start as RingIdx);
      const back = BackRing.attach(r, BLKIF_RING, start as RingIdx);
      const size = front.size;
      let k = 0;
      let done = 0;
      // Slots straddling a page boundary (112-byte entries) are split across non-adjacent frames.
      const straddling = Array.from({ length: size }, (_, s) => s).filter((s) => Math.floor((64 + s * 112) / XEN_PAGE_SIZE) !== Math.floor((64 + s * 112 + 111) / XEN_PAGE_SIZE));
      if (order >= 2) expect(straddling.length).to.be.greaterThan(0);
      for (let lap = 0; lap < 2; lap++) {
        while (front.freeRequests() > 0) front.putRequest(request(k++));
        front.pushRequests();
        expect(unwrap(back.unconsumedRequests())).to.equal(size);
        for (let i = 0; i < size; i++) {
          const q = unwrap(back.copyRequest());
          expect(q).to.deep.equal(request(done + i));
          back.putResponse({ id: q.id, operation: q.operation, status: 0 });
        }
        back.pushResponses();
        expect(unwrap(front.hasUnconsumedResponses())).to.equal(size);
        for (let i = 0; i < size; i++) expect(unwrap(front.copyResponse()).id).to.equal(request(done++).id);
      }
      expect(idxSub(front.rspCons, start as RingIdx)).to.equal(2 * size);
    });
  }
});

describe('multi-page rings on the allocation-free path', () => {
  const { request: REQ, response: RSP } = BLKIF_RING_FLAT;
  for (const order of [0, 2, 4]) {
    it(`carries requests of 0..11 segments through every slot of a ${1 << order}-page ring over scattered frames, straddling slots split word by word`, () => {
      const pages = 1 << order;
      const r = scattered(pages, 600 + order * 40);
      const start = 0xffff_ffff - 70;
      sharedRingInit(r, start as RingIdx);
      const front = FrontRing.attach(r, BLKIF_RING_FLAT, start as RingIdx);
      const back = BackRing.attach(r, BLKIF_RING_FLAT, start as RingIdx);
      const out = REQ.create();
      const got = REQ.create();
      const rsp = RSP.create();
      /** Request k: segment count varies so that short requests land on slots that held long ones. */
      const fill = (k: number): void => {
        const want = request(k);
        out.operation = want.operation;
        out.handle = want.handle;
        setBlkifId(out, want.id);
        out.sectorNumber = want.sectorNumber;
        out.nrSegments = (k * 7) % 12;
        want.seg.forEach((sg, i) => {
          out.segGref[i] = sg.gref;
          out.segFirstSect[i] = sg.firstSect;
          out.segLastSect[i] = sg.lastSect;
        });
      };
      let k = 0;
      let done = 0;
      for (let lap = 0; lap < 3; lap++) {
        while (front.freeRequests() > 0) {
          fill(k++);
          front.putRequestFrom(REQ, out);
        }
        front.pushRequests();
        const n = unwrap(back.unconsumedRequests());
        expect(n).to.equal(front.size);
        for (let i = 0; i < n; i++) {
          expect(back.copyRequestInto(REQ, got).ok).to.equal(true);
          const want = request(done + i);
          const nr = ((done + i) * 7) % 12;
          expect(got.nrSegments).to.equal(nr);
          expect(blkifId(got)).to.equal(want.id);
          expect([...got.segGref.subarray(0, nr)]).to.deep.equal(want.seg.slice(0, nr).map((sg) => sg.gref));
          expect([...got.segFirstSect.subarray(0, nr)]).to.deep.equal(want.seg.slice(0, nr).map((sg) => sg.firstSect));
          back.putResponseFrom(RSP, Object.assign(rsp, { idLo: got.idLo, idHi: got.idHi, operation: got.operation, status: 0 }));
        }
        back.pushResponses();
        expect(unwrap(front.hasUnconsumedResponses())).to.equal(n);
        for (let i = 0; i < n; i++) {
          front.copyResponseInto(RSP, rsp);
          expect(blkifId(rsp)).to.equal(request(done++).id);
        }
      }
      expect(idxSub(front.rspCons, start as RingIdx)).to.equal(3 * front.size);
    });
  }
});

describe('odd-size stress (mirage 1023/1024 style)', () => {
  /**
   * Pushes `total` requests through a ring, the front putting batches of
   * `put`, the back consuming batches of `take` and answering every one, the
   * front reaping batches of `reap`, from an index just below 2^32; checks
   * FIFO order, no loss, no duplicate, and the free-slot accounting.
   */
  function stress<Req, Rsp>(types: RingTypes<Req, Rsp>, pages: number, total: number, put: number, take: number, reap: number, mk: (k: number) => Req, idOfReq: (r: Req) => number, rsp: (r: Req) => Rsp, idOfRsp: (r: Rsp) => number): void {
    const r = scattered(pages, 2000);
    const start = 0xffff_fff0;
    sharedRingInit(r, start as RingIdx);
    const front = FrontRing.attach(r, types, start as RingIdx);
    const back = BackRing.attach(r, types, start as RingIdx);
    let sent = 0;
    let consumed = 0;
    let reaped = 0;
    let guard = 0;
    while (reaped < total) {
      if (++guard > 1_000_000) throw new Error('stress made no progress');
      for (let i = 0; i < put && sent < total && front.freeRequests() > 0; i++) front.putRequest(mk(sent++));
      front.pushRequests();
      let n = Math.min(take, unwrap(back.unconsumedRequests()));
      while (n-- > 0) {
        const q = unwrap(back.copyRequest());
        expect(idOfReq(q)).to.equal(consumed++ & 0xffff);
        back.putResponse(rsp(q));
      }
      back.pushResponses();
      let m = Math.min(reap, unwrap(front.hasUnconsumedResponses()));
      while (m-- > 0) expect(idOfRsp(unwrap(front.copyResponse()))).to.equal(reaped++ & 0xffff);
      expect(front.freeRequests()).to.equal(front.size - (sent - reaped));
    }
    expect(unwrap(front.hasUnconsumedResponses())).to.equal(0);
    expect(unwrap(back.unconsumedRequests())).to.equal(0);
  }

  for (const total of [1023, 1024]) {
    for (const [put, take, reap] of [[1, 1, 1], [7, 5, 3], [31, 33, 32], [32, 32, 32], [33, 31, 1023], [1023, 7, 1024]] as const) {
      it(`moves ${total} blkif requests with batches put ${put} / take ${take} / reap ${reap} across 2^32`, () => {
        stress(BLKIF_RING, 1, total, put, take, reap, (k) => request(k & 0xffff), (q) => q.operation === BLKIF_OP_WRITE ? q.handle : -1, (q) => ({ id: q.id, operation: q.operation, status: 0 }), (s) => Number(s.id / 0x1_0000_0001n) & 0xffff);
      });
    }
    it(`moves ${total} netif tx requests through a 2-page ring with odd batches across 2^32`, () => {
      stress(NETIF_TX_RING, 2, total, 511, 257, 1023, (k) => ({ gref: k as Gref, offset: 0, flags: 0, id: k & 0xffff, size: 60 }), (q) => q.id, (q) => ({ id: q.id, status: 0 }), (s) => s.id);
    });
  }
});
