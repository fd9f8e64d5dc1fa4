/**
 * A tiny operation language run on our FrontRing + BackRing over one shared
 * region, printing the same lines as test/oracle/ring-oracle.c prints for the
 * real ring.h macros, so the two traces can be compared line by line.
 * Operations clamp themselves to what is legal (see ring-oracle.c).
 */
import { BLKIF_OP_READ } from '../../shared/abi/blkif.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import { unwrap } from '../../shared/result.ts';
import { BackRing } from '../../shared/ring/back-ring.ts';
import {
  BLKIF_RING,
  NETIF_RX_RING,
  NETIF_TX_RING,
  type BlkifRequest,
  type BlkifResponse,
  type NetifRxRequest,
  type NetifRxResponse,
  type NetifTxRequest,
  type NetifTxResponse,
  type RingTypes,
} from '../../shared/ring/codec.ts';
import { FrontRing } from '../../shared/ring/front-ring.ts';
import { sharedRingInit } from '../../shared/ring/sring.ts';
import { idxSub, type RingIdx } from '../../shared/ring/u32.ts';
import type { Gref } from '../../shared/types.ts';

export type TraceRing = 'blkif' | 'tx' | 'rx';

const U64 = (1n << 64n) - 1n;
/** The id of the k-th request (ring-oracle.c's blk_id / net_id). */
export function blkId(k: number): bigint {
  return (BigInt(k) * 0x9e3779b97f4a7c15n) & U64;
}
export function netId(k: number): number {
  return Math.imul(k, 40503) & 0xffff;
}

interface Adapter<Req, Rsp> {
  types: RingTypes<Req, Rsp>;
  request(k: number): Req;
  reqId(r: Req): string;
  response(id: string): Rsp;
  rspId(r: Rsp): string;
}

const blkifAdapter: Adapter<BlkifRequest, BlkifResponse> = {
  types: BLKIF_RING,
  request: (k) => ({ operation: BLKIF_OP_READ, handle: 0, id: blkId(k), sectorNumber: 0, seg: [] }),
  reqId: (r) => r.id.toString(),
  response: (id) => ({ id: BigInt(id), operation: 0, status: 0 }),
  rspId: (r) => r.id.toString(),
};
const txAdapter: Adapter<NetifTxRequest, NetifTxResponse> = {
  types: NETIF_TX_RING,
  request: (k) => ({ gref: 0 as Gref, offset: 0, flags: 0, id: netId(k), size: 0 }),
  reqId: (r) => String(r.id),
  response: (id) => ({ id: Number(id), status: 0 }),
  rspId: (r) => String(r.id),
};
const rxAdapter: Adapter<NetifRxRequest, NetifRxResponse> = {
  types: NETIF_RX_RING,
  request: (k) => ({ id: netId(k), gref: 0 as Gref }),
  reqId: (r) => String(r.id),
  response: (id) => ({ id: Number(id), offset: 0, flags: 0, status: 0 }),
  rspId: (r) => String(r.id),
};

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/**
 * [runTrace ring region start ops] runs ops on a fresh ring over region
 * (zeroed first) whose indices start at start, and returns the printed lines,
 * ending with `dump <hex of the region>`.
 */
export function runTrace(ring: TraceRing, region: MemRegion, start: number, ops: readonly string[]): string[] {
  switch (ring) {
    case 'blkif': return runWith(blkifAdapter, region, start, ops);
    case 'tx': return runWith(txAdapter, region, start, ops);
    case 'rx': return runWith(rxAdapter, region, start, ops);
  }
}

function runWith<Req, Rsp>(a: Adapter<Req, Rsp>, region: MemRegion, start: number, ops: readonly string[]): string[] {
  const { front, back } = openTraceRings(region, a.types, start);
  return interpretTrace(region, front, back, ops, {
    putRequest: (k) => front.putRequest(a.request(k)),
    takeRequest: () => a.reqId(unwrap(back.copyRequest(), 'copyRequest')),
    putResponse: (id) => back.putResponse(a.response(id)),
    takeResponse: () => a.rspId(unwrap(front.copyResponse(), 'copyResponse')),
  });
}

/** [openTraceRings region types start] zeroes region and makes both ends over it, indices starting at start. */
export function openTraceRings<Req, Rsp>(region: MemRegion, types: RingTypes<Req, Rsp>, start: number): { front: FrontRing<Req, Rsp>; back: BackRing<Req, Rsp> } {
  region.fill(0, region.byteLength, 0);
  if (start === 0) return { front: FrontRing.init(region, types), back: BackRing.init(region, types) };
  sharedRingInit(region, start as RingIdx);
  return { front: FrontRing.attach(region, types, start as RingIdx), back: BackRing.attach(region, types, start as RingIdx) };
}

/** How one ring path moves entries: the k-th request in, a request out (its id), a response for an id in, a response out (its id). */
export interface TraceEntries {
  putRequest(k: number): void;
  takeRequest(): string;
  putResponse(id: string): void;
  takeResponse(): string;
}

/**
 * [interpretTrace region front back ops e] runs the trace language on the
 * two ends, moving entries through e, and returns the printed lines, ending
 * with `dump <hex of the region>`.
 */
export function interpretTrace<Req, Rsp>(region: MemRegion, front: FrontRing<Req, Rsp>, back: BackRing<Req, Rsp>, ops: readonly string[], e: TraceEntries): string[] {
  const sh = front.shared;
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
          e.putRequest(next++);
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
          const id = e.takeRequest();
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
          e.putResponse(answers.shift() as string);
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
        while (ids.length < n && unwrap(front.hasUnconsumedResponses(), 'hasUnconsumedResponses') > 0) ids.push(e.takeResponse());
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
  out.push(`dump ${hex(bytes)}`);
  return out;
}

/** [mulberry32 seed] is a small seeded PRNG returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * [randomScript seed count size] is a random but reproducible script of
 * count operations for a ring of size slots: batches from 1 to a bit over a
 * ring, interleaved pushes and final checks on both sides.
 */
export function randomScript(seed: number, count: number, size: number): string[] {
  const rnd = mulberry32(seed);
  const amount = (): number => (rnd() < 0.7 ? 1 + Math.floor(rnd() * 4) : 1 + Math.floor(rnd() * (size + 3)));
  const ops: string[] = [];
  const table: readonly [number, () => string][] = [
    [20, () => `fput ${amount()}`],
    [12, () => 'fpush'],
    [18, () => `bcons ${amount()}`],
    [7, () => 'bfinal'],
    [15, () => `bput ${amount()}`],
    [10, () => 'bpush'],
    [11, () => `fcons ${amount()}`],
    [5, () => 'ffinal'],
    [1, () => 'free'],
    [1, () => 'bunc'],
    [1, () => 'func'],
  ];
  const total = table.reduce((s, [w]) => s + w, 0);
  for (let i = 0; i < count; i++) {
    let r = rnd() * total;
    for (const [w, make] of table) {
      if (r < w) {
        ops.push(make());
        break;
      }
      r -= w;
    }
  }
  return ops;
}
