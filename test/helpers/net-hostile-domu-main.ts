// A domU worker entry whose vif is driven by a hostile netfront, for the
// cross-worker hostile tests: it does the XenBus handshake like netfront (so
// dom0's netback maps its rings and binds its port), and then, when the
// test asks, writes garbage into its TX ring, chains more slots than
// netback allows, or makes req_prod leap. Everything else is a normal domU
// (XenStore, agent), so the toolstack attaches its vif as any other.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { AgentResult } from '../../shared/kernel/agent.ts';
import type { DomainWorkerData } from '../../toolstack/worker-data.ts';
import { XenstoreFront } from '../../domU/xenstore-front.ts';
import { DomUAgent } from '../../domU/agent.ts';
import { FrontRing } from '../../shared/ring/front-ring.ts';
import { NETIF_RX_RING, NETIF_TX_RING, type NetifRxRequest, type NetifRxResponse, type NetifTxRequest, type NetifTxResponse } from '../../shared/ring/codec.ts';
import { NETTXF_more_data } from '../../shared/abi/netif.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import { createFrontendBus } from '../../shared/xenbus/frontend.ts';
import { NETFRONT_XENBUS_OPTIONS } from '../../domU/netfront/xenbus.ts';
import { ok } from '../../shared/result.ts';
import { asDomId, asGref, type Gref, type Pfn, type Port } from '../../shared/types.ts';
import type { RingIdx } from '../../shared/ring/u32.ts';

interface Rings {
  readonly tx: FrontRing<NetifTxRequest, NetifTxResponse>;
  readonly rx: FrontRing<NetifRxRequest, NetifRxResponse>;
  readonly txRegion: MemRegion;
  readonly port: Port;
  /** A page granted read-only to the backend, holding junk. */
  readonly dataRef: Gref;
}

export class HostileDomUAgent extends DomUAgent {
  private rings: Rings | undefined;
  private connectedFlag = false;
  private tornDownCount = 0;
  private seed = 12345;

  /** [hostileStart] starts a vif bus whose devices do netfront's handshake and then obey the test. */
  async hostileStart(): Promise<AgentResult<void>> {
    const k = this.k;
    const back = asDomId(0);
    const bus = createFrontendBus(store.client, asDomId(k.domid), 'vif', () => ({
      readBackend: () => ok({}),
      setup: () => {
        const page = (): Pfn => {
          const p = k.ram.alloc();
          k.mem.fill(k.gpa(p), k.pageSize, 0);
          return p;
        };
        const txp = page();
        const rxp = page();
        const data = page();
        k.mem.fill(k.gpa(data), k.pageSize, 0xa5);
        const txRegion = k.mem.region([txp]);
        const tx = FrontRing.init(txRegion, NETIF_TX_RING);
        const rx = FrontRing.init(k.mem.region([rxp]), NETIF_RX_RING);
        const txRef = k.gnttab.grantForeignAccess(back, txp, false);
        const rxRef = k.gnttab.grantForeignAccess(back, rxp, false);
        const dataRef = k.gnttab.grantForeignAccess(back, data, true);
        if (txRef === undefined || rxRef === undefined || dataRef === undefined) throw new Error('out of grant references');
        const port = k.evtchn.allocUnbound(back);
        this.rings = { tx, rx, txRegion, port, dataRef };
        return ok({
          'tx-ring-ref': String(txRef), 'rx-ring-ref': String(rxRef), 'event-channel': String(port),
          'request-rx-copy': '1', 'feature-rx-notify': '1', 'feature-sg': '1',
        });
      },
      connected: () => { this.connectedFlag = true; return ok(undefined); },
      teardown: () => { this.connectedFlag = false; this.tornDownCount++; },
    }), { device: NETFRONT_XENBUS_OPTIONS });
    const s = await bus.start();
    return s.ok ? { ok: true, value: undefined } : { ok: false, error: JSON.stringify(s.error) };
  }

  hostileState(): { connected: boolean; tornDown: number } { return { connected: this.connectedFlag, tornDown: this.tornDownCount }; }

  private kick(r: Rings): void { this.k.evtchn.notify(r.port); }

  /** [garbage n] fills the next n TX slots with random bytes and publishes them. */
  garbage(n: number): AgentResult<void> {
    const r = this.rings;
    if (r === undefined) return { ok: false, error: 'not set up' };
    const b = new Uint8Array(12);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < b.length; j++) {
        this.seed = (Math.imul(this.seed, 1103515245) + 12345) >>> 0;
        b[j] = this.seed >>> 24;
      }
      const idx = (r.tx.reqProdPvt + i) >>> 0;
      r.txRegion.copyIn(r.tx.shared.slotOffset(idx as RingIdx), b);
    }
    r.tx.shared.storeReqProd(((r.tx.reqProdPvt + n) >>> 0) as RingIdx);
    this.kick(r);
    return { ok: true, value: undefined };
  }

  /** [tooManySlots n] publishes one packet chained over n slots (more_data), far past fatal_skb_slots. */
  tooManySlots(n: number): AgentResult<void> {
    const r = this.rings;
    if (r === undefined) return { ok: false, error: 'not set up' };
    for (let i = 0; i < n; i++) {
      r.tx.putRequest({ gref: asGref(r.dataRef), offset: 0, flags: i < n - 1 ? NETTXF_more_data : 0, id: i, size: i === 0 ? n * 60 : 60 });
    }
    r.tx.pushRequests();
    this.kick(r);
    return { ok: true, value: undefined };
  }

  /** [leap by] stores req_prod = req_prod_pvt + by (the XSA-39 leap) and kicks netback. */
  leap(by: number): AgentResult<void> {
    const r = this.rings;
    if (r === undefined) return { ok: false, error: 'not set up' };
    r.tx.shared.storeReqProd(((r.tx.reqProdPvt + by) >>> 0) as RingIdx);
    this.kick(r);
    return { ok: true, value: undefined };
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
