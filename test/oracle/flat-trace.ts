/**
 * The trace language of test/helpers/ring-trace.ts, run on the rings'
 * allocation-free path (putRequestFrom / copyRequestInto / putResponseFrom /
 * copyResponseInto with the flat codecs), printing the same lines, so the
 * oracle test can hold that path to the real ring.h macros too.
 */
import { BLKIF_OP_READ } from '../../shared/abi/blkif.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import { unwrap } from '../../shared/result.ts';
import { BLKIF_RING_FLAT, NETIF_RX_RING_FLAT, NETIF_TX_RING_FLAT, blkifId, setBlkifId, type FlatRingTypes } from '../../shared/ring/codec.ts';
import type { Gref } from '../../shared/types.ts';
import { blkId, interpretTrace, netId, openTraceRings, type TraceRing } from '../helpers/ring-trace.ts';

interface FlatAdapter<Req, Rsp> {
  types: FlatRingTypes<Req, Rsp>;
  /** Fills q with the k-th request (ring-oracle.c's). */
  request(q: Req, k: number): void;
  reqId(q: Req): string;
  response(r: Rsp, id: string): void;
  rspId(r: Rsp): string;
}

const blkif: FlatAdapter<ReturnType<typeof BLKIF_RING_FLAT.request.create>, ReturnType<typeof BLKIF_RING_FLAT.response.create>> = {
  types: BLKIF_RING_FLAT,
  request(q, k) {
    q.operation = BLKIF_OP_READ;
    q.handle = 0;
    setBlkifId(q, blkId(k));
    q.sectorNumber = 0;
    q.nrSegments = 0;
  },
  reqId: (q) => blkifId(q).toString(),
  response(r, id) {
    setBlkifId(r, BigInt(id));
    r.operation = 0;
    r.status = 0;
  },
  rspId: (r) => blkifId(r).toString(),
};
const tx: FlatAdapter<ReturnType<typeof NETIF_TX_RING_FLAT.request.create>, ReturnType<typeof NETIF_TX_RING_FLAT.response.create>> = {
  types: NETIF_TX_RING_FLAT,
  request: (q, k) => Object.assign(q, { gref: 0 as Gref, offset: 0, flags: 0, id: netId(k), size: 0 }),
  reqId: (q) => String(q.id),
  response: (r, id) => Object.assign(r, { id: Number(id), status: 0 }),
  rspId: (r) => String(r.id),
};
const rx: FlatAdapter<ReturnType<typeof NETIF_RX_RING_FLAT.request.create>, ReturnType<typeof NETIF_RX_RING_FLAT.response.create>> = {
  types: NETIF_RX_RING_FLAT,
  request: (q, k) => Object.assign(q, { id: netId(k), gref: 0 as Gref }),
  reqId: (q) => String(q.id),
  response: (r, id) => Object.assign(r, { id: Number(id), offset: 0, flags: 0, status: 0 }),
  rspId: (r) => String(r.id),
};

/** [runFlatTrace ring region start ops] is runTrace on the allocation-free path. */
export function runFlatTrace(ring: TraceRing, region: MemRegion, start: number, ops: readonly string[]): string[] {
  switch (ring) {
    case 'blkif': return runWith(blkif, region, start, ops);
    case 'tx': return runWith(tx, region, start, ops);
    case 'rx': return runWith(rx, region, start, ops);
  }
}

function runWith<Req, Rsp>(a: FlatAdapter<Req, Rsp>, region: MemRegion, start: number, ops: readonly string[]): string[] {
  const { request: REQ, response: RSP } = a.types;
  const { front, back } = openTraceRings(region, a.types, start);
  // One request and one response struct, refilled per entry, as drivers use them.
  const q = REQ.create();
  const r = RSP.create();
  return interpretTrace(region, front, back, ops, {
    putRequest: (k) => { a.request(q, k); front.putRequestFrom(REQ, q); },
    takeRequest: () => { unwrap(back.copyRequestInto(REQ, q), 'copyRequestInto'); return a.reqId(q); },
    putResponse: (id) => { a.response(r, id); back.putResponseFrom(RSP, r); },
    takeResponse: () => { unwrap(front.copyResponseInto(RSP, r), 'copyResponseInto'); return a.rspId(r); },
  });
}
