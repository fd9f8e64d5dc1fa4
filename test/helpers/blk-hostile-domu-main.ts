// A domU worker entry for the hostile-frontend tests: a guest with no block
// driver whose agent runs a deliberately unsafe blkif frontend
// (blk-raw-front.ts) on one of its vbds. The XenBus handshake is a real
// one; after it, a test writes any bytes into the ring slots, publishes any
// req_prod, rewrites a request after publishing it, and reads the raw
// response slots — a guest attacking dom0's blkback.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { AgentResult } from '../../shared/kernel/agent.ts';
import type { DomainWorkerData } from '../../toolstack/worker-data.ts';
import { XenstoreFront } from '../../domU/xenstore-front.ts';
import { DomUAgent } from '../../domU/agent.ts';
import { XenbusState } from '../../shared/xenbus/state.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import { BLKIF_REQUEST } from '../../shared/abi/blkif.ts';
import { RawFront, rawRequestBytes, type RawRequest, type RawResponse } from './blk-raw-front.ts';

/** Where the rewritten part of a slot starts: blkif_request.sector_number. */
const REWRITE_FROM = BLKIF_REQUEST.sector_number;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * One request put twice into the same slot: `first` published, then the
 * sector and segments of `second` written over it. The first 16 bytes
 * (operation, nr_segments, handle, id) stay: a response takes the same slot
 * (the ring is a union), so rewriting them after blkback answered would
 * clobber our own response, not attack blkback.
 */
export interface RewriteCase {
  readonly first: RawRequest;
  /** Only its sector and segments are written (bytes 16..111 of the slot). */
  readonly second: RawRequest;
  /** Busy-wait this long (µs) between publishing and rewriting (0: at once). */
  readonly delayUs: number;
}

export class HostileDomUAgent extends DomUAgent {
  private raw: RawFront | undefined;

  constructor(k: DomainKernel, private readonly front: XenstoreFront) { super(k, front); }

  private get r(): RawFront {
    if (this.raw === undefined) throw new Error('no raw frontend: call rawConnect first');
    return this.raw;
  }

  /** [rawConnect devid] does the XenBus handshake for vbd devid as a (hostile) frontend; resolves once Connected. */
  async rawConnect(devid: number, timeoutMs = 10_000): Promise<AgentResult<{ port: number }>> {
    const raw = new RawFront(this.k, this.front.client, devid);
    this.raw = raw;
    const s = await raw.fe.start();
    if (!s.ok) return { ok: false, error: JSON.stringify(s.error) };
    const end = Date.now() + timeoutMs;
    while (raw.fe.state !== XenbusState.Connected) {
      if (Date.now() > end) return { ok: false, error: `frontend stuck in state ${raw.fe.state}` };
      await sleep(2);
    }
    return { ok: true, value: { port: raw.port ?? -1 } };
  }

  /** A page of ours granted to dom0, filled with byte. */
  rawGrantPage(readonly: boolean, byte: number): { gref: number; pfn: number } {
    return this.r.grantPage(readonly, byte);
  }

  rawPageBytes(pfn: number, len = 4096): Uint8Array {
    return this.r.pageBytes(pfn as Parameters<RawFront['pageBytes']>[0], len);
  }

  /**
   * [rawAnswer req] publishes req (a request or raw slot bytes) and returns
   * every response that arrives until the first one, plus any that follow
   * within lingerMs (a duplicate would show there).
   */
  async rawAnswer(req: RawRequest | Uint8Array, timeoutMs = 5000, lingerMs = 10): Promise<RawResponse[]> {
    this.r.send(req);
    return this.collect(1, timeoutMs, lingerMs);
  }

  /**
   * [rawRewrite cases] publishes each case's first request and then writes
   * the sector and segments of its second over the same slot, while blkback
   * may be copying it. Returns every response (blkback answers whichever
   * copy it took, once).
   */
  async rawRewrite(cases: readonly RewriteCase[], timeoutMs = 5000): Promise<RawResponse[]> {
    const r = this.r;
    for (const c of cases) {
      const i = r.send(c.first);
      if (c.delayUs > 0) {
        const end = process.hrtime.bigint() + BigInt(c.delayUs * 1000);
        while (process.hrtime.bigint() < end) { /* let blkback get there first, or not */ }
      }
      (r.region as MemRegion).copyIn(r.slotOffset(i) + REWRITE_FROM, rawRequestBytes(c.second).subarray(REWRITE_FROM));
    }
    return this.collect(cases.length, timeoutMs, 20);
  }

  /** [rawLeap by] publishes req_prod = ours + by: a ring claiming more requests than it holds. */
  rawLeap(by: number): void {
    this.r.publish(this.r.reqProd + by);
  }

  rawState(): { state: number; teardowns: string[]; events: number; reqProd: number } {
    const r = this.r;
    return { state: r.fe.state, teardowns: [...r.teardowns], events: r.events, reqProd: r.reqProd };
  }

  private async collect(n: number, timeoutMs: number, lingerMs: number): Promise<RawResponse[]> {
    const got: RawResponse[] = [];
    const end = Date.now() + timeoutMs;
    while (got.length < n && Date.now() < end) {
      got.push(...this.r.responses());
      if (got.length < n) await sleep(1);
    }
    await sleep(lingerMs);
    got.push(...this.r.responses());
    return got;
  }
}

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, data.kernel);
const store = new XenstoreFront(kernel);
const run = kernel.run();
Comlink.expose(new HostileDomUAgent(kernel, store), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await run;
process.exit(0);
