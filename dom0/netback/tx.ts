/**
 * netback TX: the frontend's transmit ring (Linux xen-netback netback.c).
 *
 *  - the producer index is bounded first (XSA-39: "Impossible number of
 *    requests" → the vif is disabled, never looped on); each packet is read
 *    slot by slot ONCE into private memory and validated (tx-request.ts);
 *  - the credit limiter may stop the queue before a packet is consumed;
 *  - the first TX_COPY_LEN (128) bytes are grant-copied into a dom0 header
 *    chunk (gathered across slots if the header is split, XSA-423) and the
 *    rest of each slot is grant-MAPPED read-only — or, in 'copy' mode, the
 *    whole packet is grant-copied into dom0 pages, or, in 'grant' mode, the
 *    rest stays in the frontend's grants (FRAG_GRANT fragments: RX copies
 *    them grant to grant, so a guest-to-guest packet costs no map, no unmap
 *    and one data copy). A batch's copies go in one hypercall (≤ 64 ops),
 *    its maps in one more;
 *  - mapped and granted packets are answered (NETIF_RSP_OKAY) when the last
 *    holder releases them (after every RX copy from them, the net loop's
 *    'done' phase), mapped ones after one batched unmap; copied ones and
 *    those wholly in the header at once. In 'grant' mode a slot's gref is
 *    only checked when its bytes are copied: a bad one fails the receiver's
 *    copy (NETIF_RSP_ERROR there), not the sender's request. Failed copies/maps answer NETIF_RSP_ERROR and undo what
 *    succeeded (XSA-361);
 *  - after each batch the receivers' queues are drained (net loop 'rx'), so
 *    a burst is delivered as it goes instead of piling up.
 */
import { NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY, NETTXF_csum_blank, NETTXF_data_validated } from '../../shared/abi/netif.ts';
import { GNTST } from '../../shared/abi/grant.ts';
import type { BackRing } from '../../shared/ring/back-ring.ts';
import type { NetifTxRequest, NetifTxResponse } from '../../shared/ring/codec.ts';
import { idxSub } from '../../shared/ring/u32.ts';
import { asGref, type GrantHandle, type Pfn } from '../../shared/types.ts';
import { COPY_BATCH_SIZE, GrantCopyBatch, GrantMapBatch } from './grant-batch.ts';
import type { CreditLimiter } from './credit.ts';
import { MAX_TX_SLOTS, TxPacketDesc, parseTxPacket, peekTxSize } from './tx-request.ts';
import { MAX_PENDING_REQS, type QueueContext, type QueueIo } from './common.ts';
import { FRAG_FOREIGN, FRAG_GRANT, FRAG_LOCAL, NET_PAGE, TX_COPY_LEN, type NetPacket, type PacketOwner } from '../net/packet.ts';

/** Packets per TX batch (Linux's NAPI budget). */
const TX_BATCH_PACKETS = 64;
/** TX batches per event before the rest is deferred to the net loop. */
const TX_BATCHES_PER_RUN = 8;

/** A TX packet in flight: what must be unmapped and answered when it is done. */
class TxInflight {
  readonly index: number;
  nIds = 0;
  readonly ids = new Uint16Array(MAX_TX_SLOTS);
  extraCount = 0;
  /** Maps of this packet: dom0 pfn, handle, and the fragment each becomes. */
  nMaps = 0;
  readonly mapPfn = new Int32Array(MAX_TX_SLOTS);
  readonly mapHandle = new Int32Array(MAX_TX_SLOTS);
  readonly mapOk = new Uint8Array(MAX_TX_SLOTS);
  readonly fragOff = new Int32Array(MAX_TX_SLOTS);
  readonly fragLen = new Int32Array(MAX_TX_SLOTS);
  readonly fragGref = new Uint32Array(MAX_TX_SLOTS);
  /** Header chunk (map mode) or -1. */
  chunk = -1;
  hdrLen = 0;
  /** Local pages (copy mode). */
  nPages = 0;
  readonly pages = new Int32Array(MAX_TX_SLOTS);
  /** Copy ops of this packet in the current batch, and its first map in the batch's map list. */
  opFirst = 0;
  opCount = 0;
  mapFirst = 0;
  total = 0;
  flags = 0;
  gsoSize = 0;
  gsoType = 0;
  /** The packet handed to the bridge, while it is alive. */
  pkt: NetPacket | null = null;
  constructor(index: number) { this.index = index; }
}

export class NetbackTx implements PacketOwner {
  private readonly copies: GrantCopyBatch;
  private readonly desc = new TxPacketDesc();
  private readonly recs: TxInflight[] = [];
  private readonly freeRecs: number[] = [];
  /** Ballooned pfns for TX maps, and how many are in use. */
  private readonly freeMapPfns: number[] = [];
  private mapPfnsInUse = 0;
  private readonly batchRecs: TxInflight[] = [];
  /** Map requests of the current batch (refs of the frontend, our pfns), and their results. */
  private readonly maps: GrantMapBatch;
  private readonly mapRef: Uint32Array;
  private readonly mapAt: Int32Array;
  private nMapReq = 0;
  /** Unmaps to issue (handles, pfns). */
  private readonly unmapHandle = new Uint32Array(MAX_PENDING_REQS);
  private readonly unmapPfn = new Int32Array(MAX_PENDING_REQS);
  private nUnmap = 0;
  private readonly doneRecs: TxInflight[] = [];
  /** TX stopped for want of in-flight records or map pfns: completions resume it. */
  private txWaiting = false;
  private readonly txRsp = { id: 0, status: 0 };

  constructor(
    private readonly ctx: QueueContext,
    private readonly io: QueueIo,
    private readonly ring: BackRing<NetifTxRequest, NetifTxResponse>,
    private readonly credit: CreditLimiter,
  ) {
    this.copies = new GrantCopyBatch(ctx.k, COPY_BATCH_SIZE);
    this.maps = new GrantMapBatch(ctx.k, MAX_PENDING_REQS);
    this.mapRef = new Uint32Array(this.maps.max);
    this.mapAt = new Int32Array(this.maps.max);
    for (let i = MAX_PENDING_REQS - 1; i >= 0; i--) {
      this.recs[i] = new TxInflight(i);
      this.freeRecs.push(i);
    }
  }

  /** TX packets handed to the bridge and not yet answered. */
  get inflight(): number { return MAX_PENDING_REQS - this.freeRecs.length; }

  /**
   * [teardown] on disconnect: packets still held elsewhere (another vif's RX
   * queue, a NIC) are copied out (orphaned), then everything is unmapped and
   * the map pfns go back to the kernel. Nothing is answered: the ring is going.
   */
  teardown(): void {
    this.credit.stop();
    for (const r of this.recs) if (r.pkt !== null) this.ctx.pool.orphan(r.pkt);
    this.complete(false);
    for (const p of this.freeMapPfns.splice(0)) this.ctx.k.ballooned.release(p as Pfn);
    if (this.mapPfnsInUse !== 0) this.ctx.log(`${this.mapPfnsInUse} TX map pages could not be unmapped; leaked`);
  }

  /** [action] consumes and forwards what the frontend queued (NAPI poll / xenvif_tx_action). */
  action(): void {
    if (!this.io.active()) return;
    const lim = this.ctx.limits;
    for (let batches = 0; ; ) {
      const u = this.ring.unconsumedRequests();
      if (!u.ok) {
        const e = u.error;
        this.io.fatal(e.kind === 'req-prod-overflow'
          ? `Impossible number of requests. req_prod ${e.reqProd}, req_cons ${e.reqCons}, size ${e.size}`
          : 'impossible TX ring indices');
        return;
      }
      let work = u.value;
      if (work === 0) {
        if (this.txWaiting) return;
        const f = this.ring.finalCheckForRequests();
        if (!f.ok) {
          this.io.fatal(`Impossible number of requests. req_prod ${f.error.kind === 'req-prod-overflow' ? f.error.reqProd : '?'}`);
          return;
        }
        if (!f.value) return;
        continue;
      }
      if (batches++ >= TX_BATCHES_PER_RUN) {
        this.ctx.loop.defer('tx', this.io.work);
        return;
      }
      let stop = false;
      for (let n = 0; work > 0 && n < TX_BATCH_PACKETS; n++) {
        if (this.freeRecs.length === 0 || (this.ctx.txMode === 'map' && MAX_PENDING_REQS - this.mapPfnsInUse < lim.fatalSlots + 1)) {
          this.txWaiting = true; // completions resume us
          stop = true;
          break;
        }
        const peek = peekTxSize(this.ring);
        if (this.credit !== undefined && this.credit.exceeded(peek)) {
          this.ctx.counters.throttled++;
          stop = true; // the credit timer resumes us
          break;
        }
        const before = this.ring.reqCons;
        const r = parseTxPacket(this.ring, work, this.desc, lim.fatalSlots);
        const used = idxSub(this.ring.reqCons, before);
        work -= used;
        this.ctx.counters.txSlots += used;
        this.credit?.charge(Math.max(peek, this.desc.total));
        if (r.kind === 'fatal') {
          this.flush();
          this.io.fatal(r.detail);
          return;
        }
        if (r.kind === 'drop') {
          this.ctx.log(r.detail);
          this.ctx.counters.txErrors++;
          this.respondDesc(NETIF_RSP_ERROR);
          continue;
        }
        // Room for this packet's copies: at most one per slot plus one per dom0 page.
        if (this.copies.room < this.desc.nslots + Math.ceil(this.desc.total / NET_PAGE) + 1 || this.maps.max - this.nMapReq < this.desc.nslots) this.flush();
        this.build();
      }
      this.flush();
      this.push();
      // Deliver what this batch queued on receivers before taking more.
      this.ctx.loop.drain('rx');
      if (stop) return;
    }
  }

  /** Answers every slot of the current descriptor with status (extras NULL). */
  private respondDesc(status: number): void {
    const d = this.desc;
    for (let i = 0; i < d.nslots; i++) this.put(d.ids[i] as number, status);
    for (let i = 0; i < d.extraCount; i++) this.put(0, NETIF_RSP_NULL);
  }

  private put(id: number, status: number): void {
    if (!this.io.active()) return;
    this.txRsp.id = id;
    this.txRsp.status = status;
    this.ring.putResponse(this.txRsp);
  }

  private push(): void {
    if (!this.io.active()) return;
    if (this.ring.pushResponsesAndCheckNotify()) this.io.notifyTx();
  }

  private takeMapPfn(): number {
    let p = this.freeMapPfns.pop();
    if (p === undefined) {
      const q = this.ctx.k.ballooned.tryAlloc();
      if (q === undefined) return -1;
      p = q;
    }
    this.mapPfnsInUse++;
    return p;
  }

  /** Turns the validated descriptor into copy ops (and map requests) in the current batch. */
  private build(): void {
    const d = this.desc;
    const pool = this.ctx.pool;
    const dom = this.ctx.frontDom;
    const rec = this.recs[this.freeRecs.pop() as number] as TxInflight;
    rec.nIds = d.nslots;
    rec.ids.set(d.ids.subarray(0, d.nslots));
    rec.extraCount = d.extraCount;
    rec.nMaps = 0;
    rec.nPages = 0;
    rec.chunk = -1;
    rec.total = d.total;
    rec.flags = d.flags;
    rec.gsoSize = d.gsoSize;
    rec.gsoType = d.gsoType;
    rec.opFirst = this.copies.count;
    rec.mapFirst = this.nMapReq;
    if (this.ctx.txMode === 'copy') {
      // The whole packet into dom0 pages, filled in order.
      let page = -1;
      let pageOff = NET_PAGE;
      for (let s = 0; s < d.nslots; s++) {
        let done = 0;
        const size = d.sizes[s] as number;
        while (done < size) {
          if (pageOff === NET_PAGE) {
            page = pool.allocPage();
            if (page < 0) return this.failBuild(rec);
            rec.pages[rec.nPages++] = page;
            pageOff = 0;
          }
          const n = Math.min(size - done, NET_PAGE - pageOff);
          this.copies.fromGref(d.grefs[s] as number, dom, (d.offsets[s] as number) + done, page, pageOff, n);
          done += n;
          pageOff += n;
        }
      }
    } else {
      // Header: the first min(128, total) bytes, from as many slots as they span.
      const grant = this.ctx.txMode === 'grant';
      const hdr = Math.min(TX_COPY_LEN, d.total);
      rec.chunk = pool.allocChunk();
      if (rec.chunk < 0) return this.failBuild(rec);
      rec.hdrLen = hdr;
      const cpfn = pool.chunkPfn(rec.chunk);
      const coff = pool.chunkOff(rec.chunk);
      let need = hdr;
      for (let s = 0; s < d.nslots; s++) {
        const size = d.sizes[s] as number;
        const take = Math.min(need, size);
        if (take > 0) this.copies.fromGref(d.grefs[s] as number, dom, d.offsets[s] as number, cpfn, coff + hdr - need, take);
        need -= take;
        const rest = size - take;
        if (rest > 0 && grant) {
          const m = rec.nMaps++;
          rec.mapPfn[m] = -1;
          rec.mapOk[m] = 0;
          rec.fragOff[m] = (d.offsets[s] as number) + take;
          rec.fragLen[m] = rest;
          rec.fragGref[m] = d.grefs[s] as number;
        } else if (rest > 0) {
          const mp = this.takeMapPfn();
          if (mp < 0) return this.failBuild(rec);
          const m = rec.nMaps++;
          rec.mapPfn[m] = mp;
          rec.mapOk[m] = 0;
          rec.fragOff[m] = (d.offsets[s] as number) + take;
          rec.fragLen[m] = rest;
          rec.fragGref[m] = d.grefs[s] as number;
          this.mapRef[this.nMapReq] = d.grefs[s] as number;
          this.mapAt[this.nMapReq] = mp;
          this.nMapReq++;
        }
      }
    }
    rec.opCount = this.copies.count - rec.opFirst;
    this.batchRecs.push(rec);
  }

  /** dom0 ran out of memory for this packet: undo what buildTx put in the batch, answer errors. */
  private failBuild(rec: TxInflight): void {
    const pool = this.ctx.pool;
    for (let i = 0; i < rec.nPages; i++) pool.freePage(rec.pages[i] as number);
    if (rec.chunk >= 0) pool.freeChunk(rec.chunk);
    rec.chunk = -1;
    if (this.ctx.txMode !== 'grant') {
      for (let i = 0; i < rec.nMaps; i++) this.freeMapPfns.push(rec.mapPfn[i] as number);
      this.mapPfnsInUse -= rec.nMaps;
    }
    rec.nMaps = 0;
    this.nMapReq = rec.mapFirst;
    this.copies.count = rec.opFirst;
    this.freeRecs.push(rec.index);
    this.ctx.counters.txDropped++;
    this.respondDesc(NETIF_RSP_ERROR);
  }

  /** Issues the batch's copies and maps, then hands good packets to the bridge and answers bad ones. */
  private flush(): void {
    if (this.batchRecs.length === 0) return;
    const c = this.ctx.counters;
    const pool = this.ctx.pool;
    const before = { h: this.copies.hypercalls, n: this.copies.copies, b: this.copies.bytes };
    this.copies.flush();
    c.hypercalls += this.copies.hypercalls - before.h;
    c.grantCopies += this.copies.copies - before.n;
    c.grantCopyBytes += this.copies.bytes - before.b;
    const nm = this.nMapReq;
    this.nMapReq = 0;
    if (nm > 0) this.mapBatch(nm);
    const grant = this.ctx.txMode === 'grant';
    const kind = grant ? FRAG_GRANT : FRAG_FOREIGN;
    const recs = this.batchRecs.splice(0);
    for (const rec of recs) {
      let good = true;
      for (let i = 0; i < rec.opCount; i++) if (this.copies.status[rec.opFirst + i] !== GNTST.okay) good = false;
      for (let m = 0; m < rec.nMaps && !grant; m++) {
        if (this.maps.status[rec.mapFirst + m] === GNTST.okay) {
          rec.mapOk[m] = 1;
          rec.mapHandle[m] = this.maps.handle[rec.mapFirst + m] as number;
          c.grantMaps++;
        } else good = false;
      }
      if (!good) {
        // XSA-361: undo what succeeded for this packet, answer it with errors.
        for (let m = 0; m < rec.nMaps; m++) {
          if (rec.mapOk[m] === 1) this.queueUnmap(rec.mapHandle[m] as number, rec.mapPfn[m] as number);
          else if (!grant) {
            this.freeMapPfns.push(rec.mapPfn[m] as number);
            this.mapPfnsInUse--;
          }
          rec.mapOk[m] = 0;
        }
        for (let i = 0; i < rec.nPages; i++) pool.freePage(rec.pages[i] as number);
        if (rec.chunk >= 0) pool.freeChunk(rec.chunk);
        c.txErrors++;
        this.respondRec(rec, NETIF_RSP_ERROR);
        this.freeRecs.push(rec.index);
        continue;
      }
      const pkt = pool.get();
      if (this.ctx.txMode === 'copy') {
        let left = rec.total;
        for (let i = 0; i < rec.nPages; i++) {
          const pg = rec.pages[i] as number;
          pool.ownPage(pkt, pg);
          const n = Math.min(NET_PAGE, left);
          pkt.addFrag(FRAG_LOCAL, pg, 0, n);
          left -= n;
        }
        this.respondRec(rec, NETIF_RSP_OKAY);
        this.freeRecs.push(rec.index);
      } else {
        pool.ownChunk(pkt, rec.chunk);
        pkt.addFrag(FRAG_LOCAL, pool.chunkPfn(rec.chunk), pool.chunkOff(rec.chunk), rec.hdrLen);
        for (let m = 0; m < rec.nMaps; m++) {
          pkt.addFrag(kind, rec.mapPfn[m] as number, rec.fragOff[m] as number, rec.fragLen[m] as number, rec.fragGref[m] as number, this.ctx.frontDom);
        }
        rec.chunk = -1; // the packet owns it now
        if (rec.nMaps === 0) {
          // Wholly in the copied header: nothing of the guest's is held, answer now.
          this.respondRec(rec, NETIF_RSP_OKAY);
          this.freeRecs.push(rec.index);
        } else {
          pkt.owner = this;
          pkt.ownerTag = rec.index;
          rec.pkt = pkt;
        }
      }
      pkt.csumBlank = (rec.flags & NETTXF_csum_blank) !== 0;
      pkt.dataValidated = (rec.flags & NETTXF_data_validated) !== 0;
      pkt.gsoSize = rec.gsoSize;
      pkt.gsoType = rec.gsoType;
      c.txPackets++;
      c.txBytes += pkt.len;
      if (pkt.gsoSize > 0) c.txGso++;
      this.ctx.fromGuest(pkt);
    }
    this.unmapNow();
  }

  private respondRec(rec: TxInflight, status: number): void {
    for (let i = 0; i < rec.nIds; i++) this.put(rec.ids[i] as number, status);
    for (let i = 0; i < rec.extraCount; i++) this.put(0, NETIF_RSP_NULL);
  }

  /** Issues the batch's maps (one hypercall; a PV dom0 goes through its GrantTable, which keeps its pfn→mfn list). */
  private mapBatch(n: number): void {
    const k = this.ctx.k;
    const dom = this.ctx.frontDom;
    if (GrantMapBatch.usable(k)) {
      this.maps.mapAll(n, dom, this.mapRef, this.mapAt, true);
    } else {
      const reqs = Array.from({ length: n }, (_, i) => ({ domid: dom, ref: asGref(this.mapRef[i] as number), readonly: true, hostPfn: this.mapAt[i] as Pfn }));
      k.gnttab.mapGrantRefs(reqs).forEach((r, i) => {
        this.maps.status[i] = r.status;
        this.maps.handle[i] = r.handle;
      });
    }
    this.ctx.counters.hypercalls++;
  }

  private queueUnmap(handle: number, pfn: number): void {
    if (this.nUnmap === MAX_PENDING_REQS) this.unmapNow();
    this.unmapHandle[this.nUnmap] = handle;
    this.unmapPfn[this.nUnmap] = pfn;
    this.nUnmap++;
  }

  /** Issues the queued unmaps in one hypercall; pfns that unmapped go back to the free list. */
  private unmapNow(): void {
    const n = this.nUnmap;
    if (n === 0) return;
    this.nUnmap = 0;
    const k = this.ctx.k;
    let st: ArrayLike<number>;
    if (GrantMapBatch.usable(k)) {
      this.maps.unmapAll(n, this.unmapHandle, this.unmapPfn);
      st = this.maps.status;
    } else {
      st = k.gnttab.unmapGrantRefs(Array.from({ length: n }, (_, i) => ({ handle: this.unmapHandle[i] as GrantHandle, hostPfn: this.unmapPfn[i] as Pfn })));
    }
    this.ctx.counters.hypercalls++;
    for (let i = 0; i < n; i++) {
      if (st[i] === GNTST.okay) {
        this.ctx.counters.grantUnmaps++;
        this.freeMapPfns.push(this.unmapPfn[i] as number);
        this.mapPfnsInUse--;
      } else this.ctx.log(`unmap of handle ${this.unmapHandle[i]} failed (GNTST ${st[i]}); pfn ${this.unmapPfn[i]} leaked`);
    }
  }

  /** The last holder of a mapped TX packet let go: unmap and answer in the 'done' phase. */
  packetReleased(pkt: NetPacket): void {
    const rec = this.recs[pkt.ownerTag];
    if (rec === undefined || rec.pkt !== pkt) return;
    rec.pkt = null;
    this.doneRecs.push(rec);
    if (this.io.connected()) this.ctx.loop.defer('done', this.io.work);
  }

  /** [complete respond] unmaps and answers every finished TX packet (respond=false on disconnect). */
  complete(respond: boolean): void {
    if (this.doneRecs.length === 0) return;
    const recs = this.doneRecs.splice(0);
    for (const rec of recs) {
      for (let m = 0; m < rec.nMaps; m++) {
        if (rec.mapOk[m] === 1) this.queueUnmap(rec.mapHandle[m] as number, rec.mapPfn[m] as number);
        rec.mapOk[m] = 0;
      }
    }
    this.unmapNow();
    for (const rec of recs) {
      if (respond) this.respondRec(rec, NETIF_RSP_OKAY);
      rec.nMaps = 0;
      this.freeRecs.push(rec.index);
    }
    if (respond) this.push();
    // Slots came back: requests the ring held back (all slots unanswered) or that waited for
    // in-flight records can go now; the frontend may not notify again for them.
    if (this.io.active()) {
      this.txWaiting = false;
      this.ctx.loop.defer('tx', this.io.work);
    }
  }
}
