/**
 * A test-only, deliberately unsafe blkif frontend: it does the XenBus
 * handshake like a real one (one ring page, one event channel), then lets a
 * test write ANY bytes into the ring slots, publish any req_prod, and read
 * the raw response slots — the hostile guest of the adversarial tests. It
 * touches memory only through its own kernel's MMU (MemRegion methods), like
 * any guest.
 */
import { BLKIF_REQUEST, BLKIF_REQUEST_SEGMENT, BLKIF_RESPONSE, BLKIF_RING_ENTRY_SIZE } from '../../shared/abi/blkif.ts';
import { SRING } from '../../shared/abi/ring.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import { ok } from '../../shared/result.ts';
import { sharedRingInit } from '../../shared/ring/sring.ts';
import { asDomId, type Gref, type Pfn, type Port } from '../../shared/types.ts';
import { XenbusFrontend, type FrontendHooks } from '../../shared/xenbus/frontend.ts';
import type { XsHandle } from '../../shared/xenbus/xs-handle.ts';

export interface RawRequest {
  op: number;
  nrSegments?: number;
  id: number;
  idHi?: number;
  sector: number | bigint;
  segs?: readonly { gref: number; first: number; last: number }[];
}

export interface RawResponse {
  readonly id: number;
  readonly idHi: number;
  readonly op: number;
  readonly status: number;
  /** The 16 raw bytes of the response slot. */
  readonly bytes: Uint8Array;
}

/** [rawRequestBytes r] is a 112-byte blkif_request slot with exactly what r says (no checks at all). */
export function rawRequestBytes(r: RawRequest): Uint8Array {
  const b = Buffer.alloc(BLKIF_REQUEST.SIZE);
  b.writeUInt8(r.op & 0xff, BLKIF_REQUEST.operation);
  b.writeUInt8((r.nrSegments ?? r.segs?.length ?? 0) & 0xff, BLKIF_REQUEST.nr_segments);
  b.writeUInt32LE(r.id >>> 0, BLKIF_REQUEST.id);
  b.writeUInt32LE((r.idHi ?? 0) >>> 0, BLKIF_REQUEST.id + 4);
  b.writeBigUInt64LE(BigInt(r.sector), BLKIF_REQUEST.sector_number);
  (r.segs ?? []).slice(0, 11).forEach((s, i) => {
    const o = BLKIF_REQUEST.seg + i * BLKIF_REQUEST_SEGMENT.SIZE;
    b.writeUInt32LE(s.gref >>> 0, o);
    b.writeUInt8(s.first & 0xff, o + 4);
    b.writeUInt8(s.last & 0xff, o + 5);
  });
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

export class RawFront {
  readonly fe: XenbusFrontend<unknown>;
  region: MemRegion | null = null;
  ringPfn: Pfn | null = null;
  port: Port | null = null;
  events = 0;
  teardowns: string[] = [];
  /** Our private req_prod and rsp_cons. */
  reqProd = 0;
  rspCons = 0;

  constructor(readonly k: DomainKernel, xs: XsHandle, devid: number, persistent = false, protocol = 'x86_64-abi') {
    const backDom = asDomId(0);
    const hooks: FrontendHooks<unknown> = {
      readBackend: () => ok(undefined),
      setup: () => {
        const pfn = k.ram.alloc();
        k.mem.fill(k.gpa(pfn), 4096, 0);
        const region = k.mem.region([pfn]);
        sharedRingInit(region);
        const ref = k.gnttab.grantForeignAccess(backDom, pfn, false) as Gref;
        const port = k.evtchn.allocUnbound(backDom);
        k.bindHandler(port, () => { this.events++; });
        this.region = region;
        this.ringPfn = pfn;
        this.port = port;
        this.reqProd = 0;
        this.rspCons = 0;
        return ok({ 'ring-ref': String(ref), 'event-channel': String(port), protocol, 'feature-persistent': persistent ? '1' : '0' });
      },
      connected: () => ok(undefined),
      teardown: (_ctx, reason) => { this.teardowns.push(reason); },
    };
    this.fe = new XenbusFrontend<unknown>(xs, { type: 'vbd', frontDom: asDomId(k.domid), devid }, hooks);
  }

  private get r(): MemRegion {
    if (this.region === null) throw new Error('raw front not set up');
    return this.region;
  }

  slotOffset(i: number): number { return SRING.ring + (i & 31) * BLKIF_RING_ENTRY_SIZE; }

  /** Writes raw bytes into the slot of request index i (default: the next one). */
  writeSlot(bytes: Uint8Array, i = this.reqProd): void {
    this.r.copyIn(this.slotOffset(i), bytes);
  }

  /** Puts r in the next slot and publishes it (and notifies). Returns its index. */
  send(r: RawRequest | Uint8Array): number {
    const i = this.reqProd;
    this.writeSlot(r instanceof Uint8Array ? r : rawRequestBytes(r), i);
    this.publish(i + 1);
    return i;
  }

  /** Stores req_prod = prod (anything at all) and kicks the backend. */
  publish(prod: number): void {
    this.reqProd = prod >>> 0;
    this.r.atomicStoreU32(SRING.req_prod, this.reqProd);
    this.k.evtchn.notify(this.port as Port);
  }

  /** Every response published since the last call. */
  responses(): RawResponse[] {
    const out: RawResponse[] = [];
    const prod = this.r.atomicLoadU32(SRING.rsp_prod);
    while (this.rspCons !== prod) {
      const bytes = new Uint8Array(BLKIF_RESPONSE.SIZE);
      this.r.copyOut(this.slotOffset(this.rspCons), bytes);
      const b = Buffer.from(bytes);
      out.push({ id: b.readUInt32LE(0), idHi: b.readUInt32LE(4), op: b.readUInt8(BLKIF_RESPONSE.operation), status: b.readInt16LE(BLKIF_RESPONSE.status), bytes });
      this.rspCons = (this.rspCons + 1) >>> 0;
    }
    this.r.atomicStoreU32(SRING.rsp_event, (this.rspCons + 1) >>> 0);
    return out;
  }

  /** A fresh page of ours granted to dom0, filled with byte. */
  grantPage(readonly: boolean, byte = 0): { gref: Gref; pfn: Pfn } {
    const pfn = this.k.ram.alloc();
    this.k.mem.fill(this.k.gpa(pfn), 4096, byte);
    const gref = this.k.gnttab.grantForeignAccess(asDomId(0), pfn, readonly) as Gref;
    return { gref, pfn };
  }

  pageBytes(pfn: Pfn, len = 4096): Uint8Array {
    const b = new Uint8Array(len);
    this.k.mem.copyOut(this.k.gpa(pfn), b);
    return b;
  }
}
