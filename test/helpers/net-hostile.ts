/**
 * A hostile netfront for tests: it does the XenBus handshake like netfront
 * (so netback maps its rings and binds its port), and then lets the test
 * write anything into its TX ring — raw requests, garbage bytes, a
 * req_prod that leaps — and read what netback answers. It also owns a few
 * granted data pages holding a valid frame, so the test can end with a good
 * request that must still work (the "instance is not broken" check).
 */
import { FrontRing } from '../../shared/ring/front-ring.ts';
import {
  NETIF_RX_RING, NETIF_TX_RING, netifExtraInfoCodec,
  type NetifExtraInfo, type NetifRxRequest, type NetifRxResponse, type NetifTxRequest, type NetifTxResponse,
} from '../../shared/ring/codec.ts';
import { SRING } from '../../shared/abi/ring.ts';
import { ok } from '../../shared/result.ts';
import { asDomId, asGref, type Gref, type Pfn, type Port } from '../../shared/types.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import { createFrontendBus } from '../../shared/xenbus/frontend.ts';
import { NETFRONT_XENBUS_OPTIONS } from '../../domU/netfront/xenbus.ts';
import type { NetGuest, NetWorld } from './net-world.ts';

export interface DataPage { readonly pfn: Pfn; readonly gref: Gref }

export class HostileFront {
  tx!: FrontRing<NetifTxRequest, NetifTxResponse>;
  rx!: FrontRing<NetifRxRequest, NetifRxResponse>;
  txRegion!: MemRegion;
  port = -1 as Port;
  readonly pages: DataPage[] = [];
  connected = false;
  tornDown = 0;

  private constructor(readonly w: NetWorld, readonly g: NetGuest) {}

  /** [attach w name mac] boots a guest whose vif is driven by a HostileFront, and waits until netback connected it. */
  static async attach(w: NetWorld, name: string, mac: string): Promise<HostileFront> {
    const g = await w.addGuest({ name, noFrontend: true });
    const h = new HostileFront(w, g);
    const k = g.k;
    const back = asDomId(0);
    const bus = createFrontendBus(g.xs, g.domid, 'vif', () => ({
      readBackend: () => ok({}),
      setup: () => {
        const page = (): Pfn => {
          const p = k.ram.alloc();
          k.mem.fill(k.gpa(p), k.pageSize, 0);
          return p;
        };
        const txp = page();
        const rxp = page();
        h.txRegion = k.mem.region([txp]);
        h.tx = FrontRing.init(h.txRegion, NETIF_TX_RING);
        h.rx = FrontRing.init(k.mem.region([rxp]), NETIF_RX_RING);
        const txRef = k.gnttab.grantForeignAccess(back, txp, false)!;
        const rxRef = k.gnttab.grantForeignAccess(back, rxp, false)!;
        h.port = k.evtchn.allocUnbound(back);
        for (let i = 0; i < 4; i++) {
          const p = page();
          h.pages.push({ pfn: p, gref: k.gnttab.grantForeignAccess(back, p, true)! });
        }
        return ok({
          'tx-ring-ref': String(txRef), 'rx-ring-ref': String(rxRef), 'event-channel': String(h.port),
          'request-rx-copy': '1', 'feature-rx-notify': '1', 'feature-sg': '1',
        });
      },
      connected: () => { h.connected = true; return ok(undefined); },
      teardown: () => { h.connected = false; h.tornDown++; },
    }), { device: NETFRONT_XENBUS_OPTIONS });
    const s = await bus.start();
    if (!s.ok) throw new Error('hostile bus did not start');
    await w.createVifDirs(g, { mac });
    await w.until(() => h.connected && w.netback.vifs.get(`vif${g.domid}.0`)?.connected === true, () => `hostile ${name} to connect`);
    return h;
  }

  get vifName(): string { return `vif${this.g.domid}.0`; }

  /** [writeData page off bytes] puts bytes in one of our granted data pages. */
  writeData(page: number, off: number, bytes: Uint8Array): DataPage {
    const p = this.pages[page] as DataPage;
    this.g.k.mem.copyIn(this.g.k.gpa(p.pfn, off), bytes);
    return p;
  }

  put(req: { gref: number; offset: number; flags: number; id: number; size: number }): void {
    this.tx.putRequest({ ...req, gref: asGref(req.gref) });
  }

  putExtra(x: NetifExtraInfo): void { this.tx.putRequestWith(netifExtraInfoCodec, x); }

  /** [rawSlot i bytes] writes raw bytes into TX slot i (garbage). */
  rawSlot(i: number, bytes: Uint8Array): void {
    this.txRegion.copyIn(this.tx.shared.slotOffset(i as never), bytes.subarray(0, 12));
  }

  /** Publishes what was put and kicks netback. */
  push(): void {
    this.tx.pushRequests();
    this.kick();
  }

  kick(): void { this.g.k.evtchn.notify(this.port); }

  /** [setReqProd v] stores any producer index (the XSA-39 leap) and kicks netback. */
  setReqProd(v: number): void {
    this.txRegion.atomicStoreU32(SRING.req_prod, v >>> 0);
    this.kick();
  }

  /** TX responses netback has written so far (consumed). */
  responses(): { id: number; status: number }[] {
    const out: { id: number; status: number }[] = [];
    const r = this.tx.hasUnconsumedResponses();
    if (!r.ok) return out;
    for (let n = r.value; n > 0; n--) {
      const x = this.tx.copyResponse();
      if (x.ok) out.push({ id: x.value.id, status: x.value.status });
    }
    return out;
  }
}
