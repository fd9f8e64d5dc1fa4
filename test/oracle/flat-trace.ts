/**
 * The trace language of test/helpers/ring-trace.ts, run on the rings'
 * allocation-free path (putRequestFrom / copyRequestInto / putResponseFrom /
 * copyResponseInto with the flat codecs), printing the same lines, so the
 * oracle test can hold that path to the real ring.h macros too.
 */
import { BLKIF_OP_READ } from '../../shared/abi/blkif.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import { unwrap } from '../../shared/result.ts';
import { BackRing } from '../../shared/ring/back-ring.ts';
import { BLKIF_RING_FLAT, NETIF_RX_RING_FLAT, NETIF_TX_RING_FLAT, blkifId, setBlkifId, type FlatRingTypes } from '../../shared/ring/codec.ts';
import { FrontRing } from '../../shared/ring/front-ring.ts';
import { sharedRingInit } from '../../shared/ring/sring.ts';
import { idxSub, type RingIdx } from '../../shared/ring/u32.ts';
import type { Gref } from '../../shared/types.ts';
import { blkId, netId, type TraceRing } from '../helpers/ring-trace.ts';

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
  region.fill(0, region.byteLength, 0);
  const { request: REQ, response: RSP } = a.types;
  let front: FrontRing<Req, Rsp>;
  let back: BackRing<Req, Rsp>;
  if (start === 0) {
    front = FrontRing.init(region, a.types);
    back = BackRing.init(region, a.types);
  } else {
    sharedRingInit(region, start as RingIdx);
    front = FrontRing.attach(region, a.types, start as RingIdx);
    back = BackRing.attach(region, a.types, start as RingIdx);
  }
  const sh = front.shared;
  const q = REQ.create();
  const r = RSP.create();
  const answers: string[] = [];
  let next = 0;
  const out: string[] = [];
  for (const line of ops) {
    const [op, arg] = line.split(' ');
    const n = Number(arg ?? 0);
    switch (op) {
      case 'fput': {
        let k = 0;
        while (k < n && front.freeRequests() > 0) {
          a.request(q, next++);
          front.putRequestFrom(REQ, q);
          k++;
        }
        out.push(`fput k=${k} req_prod_pvt=${front.reqProdPvt}`);
        break;
      }
      case 'fpush': {
        const notify = front.pushRequestsAndCheckNotify();
        out.push(`fpush req_prod=${sh.loadReqProd()} notify=${notify ? 1 : 0}`);
        break;
      }
      case 'bcons': {
        const ids: string[] = [];
        while (ids.length < n && unwrap(back.unconsumedRequests(), 'unconsumedRequests') > 0) {
          unwrap(back.copyRequestInto(REQ, q), 'copyRequestInto');
          const id = a.reqId(q);
          answers.push(id);
          ids.push(id);
        }
        out.push(`bcons ids=${ids.join(',')} k=${ids.length} req_cons=${back.reqCons}`);
        break;
      }
      case 'bfinal': {
        const work = unwrap(back.finalCheckForRequests(), 'finalCheckForRequests');
        out.push(`bfinal work=${work ? 1 : 0} req_event=${sh.loadReqEvent()}`);
        break;
      }
      case 'bput': {
        let k = 0;
        while (k < n && idxSub(back.reqCons, back.rspProdPvt) > 0) {
          a.response(r, answers.shift() as string);
          back.putResponseFrom(RSP, r);
          k++;
        }
        out.push(`bput k=${k} rsp_prod_pvt=${back.rspProdPvt}`);
        break;
      }
      case 'bpush': {
        const notify = back.pushResponsesAndCheckNotify();
        out.push(`bpush rsp_prod=${sh.loadRspProd()} notify=${notify ? 1 : 0}`);
        break;
      }
      case 'fcons': {
        const ids: string[] = [];
        while (ids.length < n && unwrap(front.hasUnconsumedResponses(), 'hasUnconsumedResponses') > 0) {
          unwrap(front.copyResponseInto(RSP, r), 'copyResponseInto');
          ids.push(a.rspId(r));
        }
        out.push(`fcons ids=${ids.join(',')} k=${ids.length} rsp_cons=${front.rspCons}`);
        break;
      }
      case 'ffinal': {
        const work = unwrap(front.finalCheckForResponses(), 'finalCheckForResponses');
        out.push(`ffinal work=${work ? 1 : 0} rsp_event=${sh.loadRspEvent()}`);
        break;
      }
      case 'free':
        out.push(`free n=${front.freeRequests()}`);
        break;
      case 'bunc':
        out.push(`bunc n=${unwrap(back.unconsumedRequests())}`);
        break;
      case 'func':
        out.push(`func n=${unwrap(front.hasUnconsumedResponses())}`);
        break;
      default:
        throw new Error(`unknown trace op ${line}`);
    }
  }
  const bytes = new Uint8Array(region.byteLength);
  region.copyOut(0, bytes);
  out.push(`dump ${Buffer.from(bytes).toString('hex')}`);
  return out;
}
