/**
 * A test-only blkif backend that does the XenBus handshake honestly (one
 * queue, one ring page) and then lets the test decide every response: which
 * id, which operation, which status, and even a bogus rsp_prod — the hostile
 * (or simply buggy) backend a frontend must survive. It decodes requests with
 * the shared codec (shared/ring/codec.ts), so it also checks what blkfront
 * puts on the wire.
 */
import { BLKIF_RESPONSE } from '../../shared/abi/blkif.ts';
import { SRING } from '../../shared/abi/ring.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { GNTST } from '../../shared/abi/grant.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import { err, ok } from '../../shared/result.ts';
import { BackRing } from '../../shared/ring/back-ring.ts';
import { BLKIF_RING, type BlkifRequest, type BlkifResponse } from '../../shared/ring/codec.ts';
import { asGref, type Pfn, type Port } from '../../shared/types.ts';
import { XenbusBackend, type BackendHooks } from '../../shared/xenbus/backend.ts';
import { readUint } from '../../shared/xenbus/keys.ts';
import type { XenbusDeviceId } from '../../shared/xenbus/paths.ts';
import type { XsHandle } from '../../shared/xenbus/xs-handle.ts';

export class RawBack {
  readonly be: XenbusBackend<{ ref: number; port: number }>;
  ring: BackRing<BlkifRequest, BlkifResponse> | null = null;
  region: MemRegion | null = null;
  port: Port | null = null;
  events = 0;

  constructor(readonly k: DomainKernel, xs: XsHandle, id: XenbusDeviceId, features: Record<string, string>) {
    const hooks: BackendHooks<{ ref: number; port: number }> = {
      probe: () => ok({ 'max-ring-page-order': '0', 'multi-queue-max-queues': '1', ...features }),
      readFrontend: async (ctx) => {
        const ref = await readUint(ctx.xs, ctx.frontPath, 'ring-ref');
        const port = await readUint(ctx.xs, ctx.frontPath, 'event-channel');
        if (!ref.ok || !port.ok) return err({ kind: 'keys', message: 'no ring-ref/event-channel' });
        return ok({ ref: ref.value, port: port.value });
      },
      connect: (_ctx, f) => {
        const pfn = k.ballooned.alloc();
        const [m] = k.gnttab.mapGrantRefs([{ domid: id.frontDom, ref: asGref(f.ref), readonly: false, hostPfn: pfn }]);
        if (m?.status !== GNTST.okay) return err({ kind: 'map', message: `map ${f.ref}: ${m?.status}` });
        this.region = k.mem.region([pfn as Pfn]);
        this.ring = BackRing.init(this.region, BLKIF_RING);
        this.port = k.evtchn.bindInterdomain(id.frontDom, f.port);
        k.bindHandler(this.port, () => { this.events++; });
        return ok({ sectors: features.sectors ?? '8192', info: '0', 'sector-size': '512' });
      },
      disconnect: () => {},
    };
    this.be = new XenbusBackend(xs, id, hooks);
  }

  private get r(): BackRing<BlkifRequest, BlkifResponse> {
    if (this.ring === null) throw new Error('raw back not connected');
    return this.ring;
  }

  /** Every request published since the last call, decoded from a private copy. */
  requests(): BlkifRequest[] {
    const out: BlkifRequest[] = [];
    const n = this.r.unconsumedRequests();
    if (!n.ok) throw new Error(`frontend overflowed the ring: ${JSON.stringify(n.error)}`);
    for (let i = 0; i < n.value; i++) {
      const q = this.r.copyRequest();
      if (!q.ok) throw new Error(`undecodable request: ${JSON.stringify(q.error)}`);
      out.push(q.value);
    }
    return out;
  }

  /** Puts one response (any id, op, status) and pushes it; notifies always. */
  respond(id: bigint, operation: number, status: number): void {
    this.r.putResponse({ id, operation, status });
    this.r.pushResponses();
    this.k.evtchn.notify(this.port as Port);
  }

  /** Stores a raw rsp_prod (a lie) and notifies. */
  lieRspProd(v: number): void {
    (this.region as MemRegion).atomicStoreU32(SRING.rsp_prod, v >>> 0);
    this.k.evtchn.notify(this.port as Port);
  }

  /** The grant's page content, mapped for a moment (what the frontend put there). */
  readGrant(domid: number, gref: number, len = 4096): Uint8Array | number {
    const pfn = this.k.ballooned.alloc();
    const [m] = this.k.gnttab.mapGrantRefs([{ domid: domid as never, ref: asGref(gref), readonly: true, hostPfn: pfn }]);
    if (m?.status !== GNTST.okay) { this.k.ballooned.release(pfn); return m?.status ?? -1; }
    const b = new Uint8Array(len);
    this.k.mem.copyOut(this.k.gpa(pfn), b);
    this.k.gnttab.unmapGrantRefs([{ handle: m.handle, hostPfn: pfn }]);
    this.k.ballooned.release(pfn);
    return b;
  }

  /** Writes into a granted page (a read's data), mapped writable for a moment; returns the GNTST status. */
  writeGrant(domid: number, gref: number, data: Uint8Array): number {
    const pfn = this.k.ballooned.alloc();
    const [m] = this.k.gnttab.mapGrantRefs([{ domid: domid as never, ref: asGref(gref), readonly: false, hostPfn: pfn }]);
    if (m?.status !== GNTST.okay) { this.k.ballooned.release(pfn); return m?.status ?? -1; }
    this.k.mem.copyIn(this.k.gpa(pfn), data);
    this.k.gnttab.unmapGrantRefs([{ handle: m.handle, hostPfn: pfn }]);
    this.k.ballooned.release(pfn);
    return GNTST.okay;
  }
}

export { BLKIF_RESPONSE };
