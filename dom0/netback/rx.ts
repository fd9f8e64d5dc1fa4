/**
 * netback RX: packets for the guest, into the buffers it posted (Linux
 * xen-netback rx.c).
 *
 *  - the vif queues packets here (a bounded queue: packets and bytes; drops
 *    counted); each needs ceil(len / 4 KiB) posted buffers, +1 slot for a GSO
 *    extra-info after the first;
 *  - data is grant-copied into the buffers, up to RX_COPY_BATCH (256) ops
 *    per hypercall, and the responses of each batch are written in order
 *    after its copies (a failed copy answers NETIF_RSP_ERROR) and pushed at
 *    once ("push responses earlier", PERF-FACTS P11). Linux stops at 64
 *    (COPY_BATCH_SIZE) to bound per-queue memory; here a hypercall is a
 *    cross-thread round trip (PERF-FACTS §3.1), so a ring's worth of 64 KiB
 *    packets (about 15 of 17 slots each) goes in one instead of five;
 *  - with too few buffers posted, the queue asks for a notification when
 *    enough are (req_event = req_cons + needed, feature-rx-notify) and
 *    orphans what it holds, so a stalled guest never holds another guest's
 *    TX slots; packets older than the drain timeout are dropped.
 */
import { NETIF_RSP_ERROR, NETRXF_csum_blank, NETRXF_data_validated, NETRXF_extra_info, NETRXF_more_data, XEN_NETIF_EXTRA_TYPE_GSO } from '../../shared/abi/netif.ts';
import { GNTST } from '../../shared/abi/grant.ts';
import type { BackRing } from '../../shared/ring/back-ring.ts';
import { netifExtraInfoCodec, type NetifRxRequest, type NetifRxResponse } from '../../shared/ring/codec.ts';
import { idxAdd } from '../../shared/ring/u32.ts';
import { GrantCopyBatch } from './grant-batch.ts';
import { GNTTAB_COPY } from '../../shared/abi/grant.ts';

/** Grant copies per RX hypercall at most (a whole 256-slot ring), if the hypercall buffer holds them. */
const RX_COPY_BATCH = 256;
import type { QueueContext, QueueIo } from './common.ts';
import { FRAG_LOCAL, NET_PAGE, type NetPacket } from '../net/packet.ts';

/** An RX response to write after the batch's copies: a data slot or a GSO extra slot. */
interface RxSlot {
  id: number;
  flags: number;
  bytes: number;
  extra: boolean;
  gsoSize: number;
  gsoType: number;
  opFirst: number;
  opCount: number;
  /** Index in the batch's packet list. */
  pkt: number;
}

export class NetbackRx {
  private readonly copies: GrantCopyBatch;
  private readonly rxq: (NetPacket | undefined)[];
  private rxHead = 0;
  private rxCount = 0;
  private rxBytesQueued = 0;
  private readonly rxSlots: RxSlot[] = [];
  private nRxSlots = 0;
  private readonly rxBatchPkts: NetPacket[] = [];
  private readonly rxPktErr: boolean[] = [];
  private readonly rxRsp = { id: 0, offset: 0, flags: 0, status: 0 };
  private drainCancel: (() => void) | undefined;
  private rxStalled = false;

  constructor(
    private readonly ctx: QueueContext,
    private readonly io: QueueIo,
    private readonly ring: BackRing<NetifRxRequest, NetifRxResponse>,
  ) {
    this.copies = new GrantCopyBatch(ctx.k, Math.min(RX_COPY_BATCH, Math.floor(ctx.k.hc.bufBytes / GNTTAB_COPY.SIZE)));
    this.rxq = new Array<NetPacket | undefined>(ctx.limits.rxQueuePackets);
  }

  /** Packets waiting for the guest's buffers. */
  get queued(): number { return this.rxCount; }

  /** [teardown] on disconnect: the drain timer stops, queued packets are dropped. */
  teardown(): void {
    this.drainCancel?.();
    this.drainCancel = undefined;
    this.dropAll();
  }

  /** [enqueue pkt] queues a packet for the guest (taking a reference); false if dropped. */
  enqueue(pkt: NetPacket): boolean {
    const lim = this.ctx.limits;
    if (!this.io.active() || this.rxCount >= lim.rxQueuePackets || this.rxBytesQueued + pkt.len > lim.rxQueueBytes) {
      this.ctx.counters.rxDropped++;
      return false;
    }
    this.ctx.pool.ref(pkt);
    pkt.queuedAt = this.ctx.timers.now();
    this.rxq[(this.rxHead + this.rxCount) % this.rxq.length] = pkt;
    this.rxCount++;
    this.rxBytesQueued += pkt.len;
    // A queue already waiting for buffers holds nobody's grants.
    if (this.rxStalled && pkt.hasForeign() && this.ctx.pool.orphan(pkt)) this.ctx.counters.orphaned++;
    if (!this.rxStalled) this.ctx.loop.defer('rx', this.io.work);
    return true;
  }

  private popRx(): NetPacket {
    const p = this.rxq[this.rxHead] as NetPacket;
    this.rxq[this.rxHead] = undefined;
    this.rxHead = (this.rxHead + 1) % this.rxq.length;
    this.rxCount--;
    this.rxBytesQueued -= p.len;
    return p;
  }

  /** [dropAll] drops every queued packet (disconnect, or a disabled vif). */
  dropAll(): void {
    while (this.rxCount > 0) {
      this.ctx.counters.rxDropped++;
      this.ctx.pool.release(this.popRx());
    }
  }

  /** Slots a packet needs in the guest's RX ring. */
  private slotsFor(p: NetPacket): number {
    return Math.ceil(p.len / NET_PAGE) + (p.gsoSize > 0 ? 1 : 0);
  }

  /** [action] delivers queued packets into the buffers the frontend posted (xenvif_rx_action). */
  action(): void {
    if (!this.io.active()) return;
    const fe = this.ctx.fe;
    const c = this.ctx.counters;
    let avail = 0;
    while (this.rxCount > 0) {
      const pkt = this.rxq[this.rxHead] as NetPacket;
      const dataSlots = Math.ceil(pkt.len / NET_PAGE);
      if (pkt.dead || pkt.len === 0 || (dataSlots > 1 && !fe.sg) || (pkt.gsoSize > 0 && !fe.gsoTcpv4) || this.slotsFor(pkt) > this.ring.size) {
        c.rxDropped++;
        this.ctx.pool.release(this.popRx());
        continue;
      }
      const need = this.slotsFor(pkt);
      if (avail < need) {
        const u = this.ring.unconsumedRequests();
        if (!u.ok) {
          this.flush();
          this.io.fatal(`Impossible number of RX requests. req_prod ${u.error.kind === 'req-prod-overflow' ? u.error.reqProd : '?'}`);
          return;
        }
        avail = u.value;
        if (avail < need) {
          // Ask to be told when enough buffers are posted (feature-rx-notify), then look once more:
          // seq-cst store then load, so front sees the new req_event /before/ we re-read req_prod
          // (RING_FINAL_CHECK's race, with the event index set `need` ahead as ring.h suggests).
          this.ring.shared.storeReqEvent(idxAdd(this.ring.reqCons, need));
          const again = this.ring.unconsumedRequests();
          if (!again.ok || again.value < need) {
            this.flush();
            this.stall();
            return;
          }
          avail = again.value;
        }
      }
      if (this.copies.room < pkt.nfrags + need + 1) this.flush();
      this.popRx();
      this.build(pkt, need);
      avail -= need;
    }
    this.rxStalled = false;
    this.flush();
  }

  /** Consumes `need` posted buffers for pkt and adds the copies into them to the batch. */
  private build(pkt: NetPacket, need: number): void {
    const dom = this.ctx.frontDom;
    const pi = this.rxBatchPkts.length;
    this.rxBatchPkts.push(pkt);
    this.rxPktErr[pi] = false;
    let frag = 0;
    let fragPos = 0;
    let left = pkt.len;
    const gso = pkt.gsoSize > 0;
    for (let j = 0; j < need; j++) {
      // A netif_rx_request always decodes; its gref is checked by Xen when we copy.
      const q = this.ring.copyRequest();
      const id = q.ok ? q.value.id : 0;
      const gref = q.ok ? (q.value.gref as number) : 0;
      const slot = this.rxSlot();
      slot.id = id;
      slot.pkt = pi;
      slot.opFirst = this.copies.count;
      slot.opCount = 0;
      if (gso && j === 1) {
        slot.extra = true;
        slot.gsoSize = pkt.gsoSize;
        slot.gsoType = pkt.gsoType;
        slot.flags = 0;
        slot.bytes = 0;
        continue;
      }
      slot.extra = false;
      const n = Math.min(NET_PAGE, left);
      // Fill this buffer from as many fragments as it spans.
      let dst = 0;
      while (dst < n) {
        const fl = pkt.fragLen[frag] as number;
        const take = Math.min(fl - fragPos, n - dst);
        if (pkt.fragKind[frag] !== FRAG_LOCAL) {
          // Mapped or not, another guest's page: Xen copies grant to grant.
          this.copies.grefToGref(pkt.fragGref[frag] as number, pkt.fragDom[frag] as number, (pkt.fragOff[frag] as number) + fragPos, gref, dom, dst, take);
        } else {
          this.copies.toGref(pkt.fragPfn[frag] as number, (pkt.fragOff[frag] as number) + fragPos, gref, dom, dst, take);
        }
        dst += take;
        fragPos += take;
        if (fragPos === fl) {
          frag++;
          fragPos = 0;
        }
      }
      slot.opCount = this.copies.count - slot.opFirst;
      left -= n;
      slot.bytes = n;
      let flags = left > 0 ? NETRXF_more_data : 0;
      if (j === 0) {
        if (gso) flags |= NETRXF_extra_info;
        if (pkt.csumBlank) flags |= NETRXF_csum_blank | NETRXF_data_validated;
        else if (pkt.dataValidated) flags |= NETRXF_data_validated;
      }
      slot.flags = flags;
    }
  }

  private rxSlot(): RxSlot {
    let s = this.rxSlots[this.nRxSlots];
    if (s === undefined) {
      s = { id: 0, flags: 0, bytes: 0, extra: false, gsoSize: 0, gsoType: 0, opFirst: 0, opCount: 0, pkt: 0 };
      this.rxSlots[this.nRxSlots] = s;
    }
    this.nRxSlots++;
    return s;
  }

  /** Issues the batch's copies, writes the responses in order, pushes them (early, every batch). */
  private flush(): void {
    const n = this.nRxSlots;
    if (n === 0 && this.rxBatchPkts.length === 0) return;
    const c = this.ctx.counters;
    const before = { h: this.copies.hypercalls, n: this.copies.copies, b: this.copies.bytes };
    this.copies.flush();
    c.hypercalls += this.copies.hypercalls - before.h;
    c.grantCopies += this.copies.copies - before.n;
    c.grantCopyBytes += this.copies.bytes - before.b;
    const r = this.rxRsp;
    for (let i = 0; i < n; i++) {
      const s = this.rxSlots[i] as RxSlot;
      if (s.extra) {
        if (this.io.active()) {
          this.ring.putResponseWith(netifExtraInfoCodec, { type: XEN_NETIF_EXTRA_TYPE_GSO, flags: 0, gso: { size: s.gsoSize, type: s.gsoType, features: 0 } });
        }
        continue;
      }
      let status = s.bytes;
      for (let o = 0; o < s.opCount; o++) {
        if (this.copies.status[s.opFirst + o] !== GNTST.okay) {
          status = NETIF_RSP_ERROR;
          this.rxPktErr[s.pkt] = true;
        }
      }
      r.id = s.id;
      r.offset = 0;
      r.flags = s.flags;
      r.status = status;
      if (this.io.active()) this.ring.putResponse(r);
    }
    c.rxSlots += n;
    this.nRxSlots = 0;
    const pool = this.ctx.pool;
    for (let i = 0; i < this.rxBatchPkts.length; i++) {
      const p = this.rxBatchPkts[i] as NetPacket;
      if (this.rxPktErr[i] === true) c.rxErrors++;
      else {
        c.rxPackets++;
        c.rxBytes += p.len;
        if (p.gsoSize > 0) c.rxGso++;
      }
      pool.release(p);
    }
    this.rxBatchPkts.length = 0;
    if (this.io.active() && this.ring.pushResponsesAndCheckNotify()) this.io.notifyRx();
  }

  /** The guest has too few buffers: free every sender, and drop what waits too long. */
  private stall(): void {
    this.rxStalled = true;
    const pool = this.ctx.pool;
    for (let i = 0; i < this.rxCount; i++) {
      const p = this.rxq[(this.rxHead + i) % this.rxq.length] as NetPacket;
      if (p.hasForeign() && pool.orphan(p)) this.ctx.counters.orphaned++;
    }
    this.armDrain();
  }

  private armDrain(): void {
    if (this.drainCancel !== undefined || this.rxCount === 0) return;
    const oldest = (this.rxq[this.rxHead] as NetPacket).queuedAt;
    const at = oldest + this.ctx.limits.rxDrainMs;
    this.drainCancel = this.ctx.timers.after(Math.max(1, at - this.ctx.timers.now()), () => {
      this.drainCancel = undefined;
      if (!this.io.connected()) return;
      const now = this.ctx.timers.now();
      while (this.rxCount > 0 && (this.rxq[this.rxHead] as NetPacket).queuedAt + this.ctx.limits.rxDrainMs <= now) {
        this.ctx.counters.rxDropped++;
        this.ctx.pool.release(this.popRx());
      }
      if (this.rxCount > 0) {
        this.ctx.loop.defer('rx', this.io.work);
        this.armDrain();
      }
    });
  }
}
