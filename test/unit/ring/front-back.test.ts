import { expect } from 'chai';
import fc from 'fast-check';
import { BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_OKAY } from '../../../shared/abi/blkif.ts';
import { SRING } from '../../../shared/abi/ring.ts';
import { InvariantError } from '../../../shared/invariant.ts';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { machineRegion, type PagedRegion } from '../../../shared/memory/region.ts';
import { unwrap } from '../../../shared/result.ts';
import { BackRing } from '../../../shared/ring/back-ring.ts';
import { BLKIF_RING, type BlkifRequest, type BlkifRequestDirect } from '../../../shared/ring/codec.ts';
import { FrontRing } from '../../../shared/ring/front-ring.ts';
import { sharedRingInit } from '../../../shared/ring/sring.ts';
import { type RingIdx } from '../../../shared/ring/u32.ts';
import type { Gref, MachineAddr } from '../../../shared/types.ts';
import { randomScript, runTrace } from '../../helpers/ring-trace.ts';

const mem = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
let nextFrame = 16;
/** A fresh, zeroed contiguous region of `pages` machine pages. */
function region(pages = 1): PagedRegion {
  const r = machineRegion(mem, (nextFrame * 4096) as MachineAddr, pages);
  nextFrame += pages;
  r.fill(0, r.byteLength, 0);
  return r;
}

const read = (id: bigint, sector = 0, operation: typeof BLKIF_OP_READ | typeof BLKIF_OP_WRITE = BLKIF_OP_READ): BlkifRequestDirect => ({
  operation,
  handle: 0,
  id,
  sectorNumber: sector,
  seg: [{ gref: 9 as Gref, firstSect: 0, lastSect: 7 }],
});

function pair(r = region(), start?: number) {
  if (start === undefined) return { front: FrontRing.init(r, BLKIF_RING), back: BackRing.init(r, BLKIF_RING), r };
  sharedRingInit(r, start as RingIdx);
  return { front: FrontRing.attach(r, BLKIF_RING, start as RingIdx), back: BackRing.attach(r, BLKIF_RING, start as RingIdx), r };
}

describe('FrontRing and BackRing (single thread, one MachineMemory)', () => {
  it('initialises the shared page as SHARED_RING_INIT does: producers 0, events 1, header zeroed', () => {
    const r = region();
    r.fill(0, r.byteLength, 0xee);
    const front = FrontRing.init(r, BLKIF_RING);
    expect(r.atomicLoadU32(SRING.req_prod)).to.equal(0);
    expect(r.atomicLoadU32(SRING.rsp_prod)).to.equal(0);
    expect(r.atomicLoadU32(SRING.req_event)).to.equal(1);
    expect(r.atomicLoadU32(SRING.rsp_event)).to.equal(1);
    for (let o = SRING.pvt; o < SRING.ring; o++) expect(r.getU8(o), `header byte ${o}`).to.equal(0);
    expect(front.size).to.equal(32);
    expect(front.freeRequests()).to.equal(32);
  });

  it('carries a request to the back end and its response back, with the id echoed', () => {
    const { front, back } = pair();
    front.putRequest(read(0x1122334455667788n, 4096));
    expect(front.pushRequestsAndCheckNotify()).to.equal(true);
    expect(unwrap(back.unconsumedRequests())).to.equal(1);
    const req = unwrap(back.copyRequest());
    expect(req).to.deep.equal(read(0x1122334455667788n, 4096));
    back.putResponse({ id: req.id, operation: req.operation, status: BLKIF_RSP_OKAY });
    expect(back.pushResponsesAndCheckNotify()).to.equal(true);
    expect(unwrap(front.hasUnconsumedResponses())).to.equal(1);
    expect(unwrap(front.copyResponse())).to.deep.equal({ id: 0x1122334455667788n, operation: BLKIF_OP_READ, status: 0 });
    expect(front.freeRequests()).to.equal(32);
  });

  it('reproduces the real macros\' notification trace: 3 pushes notify once, the idle back re-arms at 4', () => {
    const ops = ['fput 1', 'fpush', 'fput 1', 'fpush', 'fput 1', 'fpush', 'bcons 3', 'bfinal', 'bput 1', 'bpush', 'bput 1', 'bpush', 'bput 1', 'bpush', 'free'];
    const t = runTrace('blkif', region(), 0, ops).filter((l) => /push|final|free/.test(l));
    expect(t).to.deep.equal([
      'fpush req_prod=1 notify=1',
      'fpush req_prod=2 notify=0',
      'fpush req_prod=3 notify=0',
      'bfinal work=0 req_event=4',
      'bpush rsp_prod=1 notify=1',
      'bpush rsp_prod=2 notify=0',
      'bpush rsp_prod=3 notify=0',
      'free n=29',
    ]);
  });

  it('fills exactly RING_SIZE requests and refuses one more as a caller bug', () => {
    const { front } = pair();
    for (let i = 0; i < 32; i++) front.putRequest(read(BigInt(i)));
    expect(front.full()).to.equal(true);
    expect(() => front.putRequest(read(99n))).to.throw(InvariantError, /full/);
  });

  it('does not let the back end copy a request it has not seen published, nor answer one it has not consumed', () => {
    const { front, back } = pair();
    front.putRequest(read(1n));
    expect(() => back.copyRequest()).to.throw(InvariantError, /no request seen/);
    front.pushRequests();
    expect(() => back.copyRequest()).to.throw(InvariantError, /no request seen/); // must read req_prod first
    expect(unwrap(back.unconsumedRequests())).to.equal(1);
    expect(() => back.putResponse({ id: 1n, operation: 0, status: 0 })).to.throw(InvariantError, /no consumed request/);
    unwrap(back.copyRequest());
    expect(() => front.copyResponse()).to.throw(InvariantError, /no response seen/);
  });

  it('final check re-arms the event index only when idle, and the batching variant arms it further ahead', () => {
    const { front, back, r } = pair();
    expect(unwrap(back.finalCheckForRequests())).to.equal(false);
    expect(r.atomicLoadU32(SRING.req_event)).to.equal(1);
    front.putRequest(read(1n));
    expect(front.pushRequestsAndCheckNotify()).to.equal(true);
    expect(unwrap(back.finalCheckForRequests())).to.equal(true); // work: req_event untouched
    unwrap(back.copyRequest());
    expect(unwrap(back.finalCheckForRequests(8))).to.equal(false);
    expect(r.atomicLoadU32(SRING.req_event)).to.equal(1 + 8);
    // The front only notifies once the 8th request past req_cons is published.
    for (let i = 0; i < 7; i++) {
      front.putRequest(read(BigInt(i + 2)));
      expect(front.pushRequestsAndCheckNotify(), `push ${i + 2}`).to.equal(false);
    }
    front.putRequest(read(9n));
    expect(front.pushRequestsAndCheckNotify()).to.equal(true);
    expect(() => back.finalCheckForRequests(33)).to.throw(InvariantError);
  });

  it('the front final check closes the race with a response pushed just after it re-armed', () => {
    const { front, back } = pair();
    front.putRequest(read(7n));
    front.pushRequests();
    unwrap(back.unconsumedRequests());
    unwrap(back.copyRequest());
    expect(unwrap(front.finalCheckForResponses())).to.equal(false); // idle: rsp_event = 1
    back.putResponse({ id: 7n, operation: 0, status: 0 });
    expect(back.pushResponsesAndCheckNotify(), 'the re-armed front must be kicked').to.equal(true);
    expect(unwrap(front.finalCheckForResponses())).to.equal(true);
  });

  it('keeps FrontRing and BackRing distinct types', () => {
    const { front, back } = pair();
    // @ts-expect-error a frontend cannot consume requests
    expect(() => front.copyRequest()).to.throw(TypeError);
    // @ts-expect-error a backend cannot produce requests
    expect(() => back.putRequest(read(1n))).to.throw(TypeError);
    // @ts-expect-error one end is not the other
    const asBack: BackRing<BlkifRequest, unknown> = front;
    void asBack;
  });

  it('behaves the same whatever the starting index, including across 2^32 (property)', () => {
    const norm = (lines: string[], start: number) =>
      lines
        .filter((l) => !l.startsWith('dump'))
        .map((l) => l.replace(/(req_prod|req_prod_pvt|req_cons|req_event|rsp_prod|rsp_prod_pvt|rsp_cons|rsp_event)=(\d+)/g, (_m, k: string, v: string) => `${k}=${(Number(v) - start) >>> 0}`));
    const r = region();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1 << 30 }), fc.oneof(fc.constant(0xfffffff0), fc.integer({ min: 0xffffff00, max: 0xffffffff }), fc.integer({ min: 1, max: 0xffffffff })), (seed, start) => {
        const ops = randomScript(seed, 300, 32);
        expect(norm(runTrace('blkif', r, start, ops), start)).to.deep.equal(norm(runTrace('blkif', r, 0, ops), 0));
      }),
      { numRuns: 40 },
    );
  });

  it('delivers every request once and every response in order on random schedules (property)', () => {
    const r = region();
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1 << 30 }), fc.constantFrom(0, 0xfffffff0), (seed, start) => {
        const t = runTrace('blkif', r, start, randomScript(seed, 400, 32));
        const ids = (prefix: string) => t.filter((l) => l.startsWith(prefix)).flatMap((l) => (/ids=([\d,]*)/.exec(l)?.[1] ?? '').split(',').filter((x) => x !== ''));
        const consumed = ids('bcons');
        const completed = ids('fcons');
        expect(new Set(consumed).size).to.equal(consumed.length);
        expect(completed).to.deep.equal(consumed.slice(0, completed.length));
      }),
      { numRuns: 40 },
    );
  });

  it('wraps a one-page ring ~150 times across 2^32 (from 0xFFFFFFF0) without losing a request', () => {
    const { front, back } = pair(region(), 0xfffffff0);
    let sent = 0;
    let done = 0;
    for (let round = 0; round < 300; round++) {
      const n = 1 + (round % 32);
      for (let i = 0; i < n && front.freeRequests() > 0; i++, sent++) front.putRequest(read(BigInt(sent), sent * 8, BLKIF_OP_WRITE));
      front.pushRequests();
      let k = unwrap(back.unconsumedRequests());
      while (k-- > 0) {
        const q = unwrap(back.copyRequest());
        expect(q.sectorNumber).to.equal(Number(q.id) * 8);
        back.putResponse({ id: q.id, operation: q.operation, status: 0 });
      }
      back.pushResponses();
      let m = unwrap(front.hasUnconsumedResponses());
      while (m-- > 0) expect(unwrap(front.copyResponse()).id).to.equal(BigInt(done++));
    }
    expect(done).to.equal(sent);
    expect(front.rspCons).to.equal((0xfffffff0 + sent) >>> 0);
    expect(front.rspCons).to.be.lessThan(0xfffffff0); // it really wrapped
  });
});
