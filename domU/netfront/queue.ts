/**
 * One netfront queue (Linux xen-netfront.c's struct netfront_queue): a TX
 * ring and an RX ring, each one page granted to the backend, their event
 * channel(s), and the guest pages behind the slots.
 *
 * TX: a frame is copied into as many buffer pages as it needs (txFragBytes
 * each, a page at most): slot 1 carries the packet's total size and, chained
 * by more_data, later slots their own; a GSO send adds a netif_extra_info
 * slot after slot 1 (NETTXF_extra_info). Each page is granted read-only for
 * the packet's life and revoked when its response comes back; a page whose
 * grant the backend still holds is quarantined, never reused (XSA-396).
 * With an untrusted backend (trusted=0) every page carries nothing but the
 * payload: the rest of it is zeroed (XSA-403's bounce).
 *
 * RX: every buffer page is posted as a writable grant (rx-copy); a response
 * sits in its request's slot, so the buffer behind ring index i is known
 * from i, whatever id the backend writes. Packets are reassembled from their
 * more_data chain (plus a GSO extra-info slot), checked (status, offset +
 * size within the page), and handed to the device; the buffers are revoked,
 * granted again and re-posted after each batch, with a notification only
 * when the backend asked for one (feature-rx-notify).
 *
 * The backend is not trusted: responses are copied once and decoded
 * privately (FrontRing), an impossible rsp_prod or an id we never sent
 * marks the queue broken; it then stops using the rings.
 */
import {
  NETIF_RSP_NULL, NETIF_RSP_OKAY, NETRXF_extra_info, NETRXF_more_data, NETTXF_extra_info,
  NETTXF_more_data, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_GSO_TYPE_TCPV4,
} from '../../shared/abi/netif.ts';
import { XEN_PAGE_SIZE } from '../../shared/abi/ring.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { FrontRing } from '../../shared/ring/front-ring.ts';
import { idxSub } from '../../shared/ring/u32.ts';
import {
  NETIF_RX_RING, NETIF_TX_RING, netifExtraInfoCodec,
  type NetifExtraInfo, type NetifRxRequest, type NetifRxResponse, type NetifTxRequest, type NetifTxResponse,
} from '../../shared/ring/codec.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { asGref, type DomId, type Gref, type GuestAddr, type Pfn, type Port } from '../../shared/types.ts';

/** The largest packet (netif_tx_request.size is a u16). */
export const NETFRONT_MAX_PACKET = 0xffff;
/** RX slots one packet may take before it is an error (Linux: MAX_SKB_FRAGS + 1 … we allow a 64 KiB packet). */
const MAX_RX_SLOTS = 20;

export interface NetfrontCounters {
  txFrames: number;
  txBytes: number;
  txSlots: number;
  txGso: number;
  /** send() refused for want of ring slots or buffers. */
  txBusy: number;
  /** Frames taken and dropped (too big, not connected). */
  txDropped: number;
  /** Responses with an error status. */
  txErrors: number;
  rxFrames: number;
  rxBytes: number;
  rxSlots: number;
  rxGso: number;
  /** Packets dropped as malformed (bad status/offset, too many slots, a grant the backend kept). */
  rxErrors: number;
  /** Checksums completed in software (NETRXF_csum_blank). */
  rxCsumCompleted: number;
  notificationsSent: number;
  notificationsReceived: number;
  ringRequests: number;
  ringResponses: number;
  /** Pages whose grant the backend still held when we revoked it. */
  quarantined: number;
}

export function newNetfrontCounters(): NetfrontCounters {
  return {
    txFrames: 0, txBytes: 0, txSlots: 0, txGso: 0, txBusy: 0, txDropped: 0, txErrors: 0,
    rxFrames: 0, rxBytes: 0, rxSlots: 0, rxGso: 0, rxErrors: 0, rxCsumCompleted: 0,
    notificationsSent: 0, notificationsReceived: 0, ringRequests: 0, ringResponses: 0, quarantined: 0,
  };
}

export interface NetfrontQueueContext {
  readonly k: DomainKernel;
  readonly backDom: DomId;
  readonly trusted: boolean;
  readonly txFragBytes: number;
  readonly counters: NetfrontCounters;
  /** A whole received packet (valid during the call): its bytes, NETRXF_* of its first slot, GSO size. */
  deliver(frame: Uint8Array, len: number, flags: number, gsoSize: number): void;
  /** TX slots came back (the device may resolve whenWritable). */
  txRoom(): void;
  /** The backend broke the protocol: stop this device. */
  broken(reason: string): void;
  /** A page whose grant could not be revoked: keep it out of use until it can be. */
  quarantine(pfn: Pfn, ref: Gref): void;
}

export interface NetfrontQueueOptions {
  readonly rxBuffers: number;
  readonly txBuffers: number;
  readonly split: boolean;
}

/** A mutable request object reused for every slot (the codec copies it out). */
interface TxReq { gref: Gref; offset: number; flags: number; id: number; size: number }

export class NetfrontQueue {
  private live = false;
  private dead = false;
  private tx!: FrontRing<NetifTxRequest, NetifTxResponse>;
  private rx!: FrontRing<NetifRxRequest, NetifRxResponse>;
  private txRingPfn = -1;
  private rxRingPfn = -1;
  private txRingRef = -1;
  private rxRingRef = -1;
  txPort = -1 as Port;
  rxPort = -1 as Port;
  private split = false;
  // TX buffers: a page and a claimed grant ref each; id = index.
  private readonly txPfn: Int32Array;
  private readonly txRef: Int32Array;
  private readonly txBusy: Uint8Array;
  private readonly txFree: Int32Array;
  private txFreeTop = 0;
  // RX buffers
  private readonly rxPfn: Int32Array;
  private readonly rxRef: Int32Array;
  private readonly rxFree: Int32Array;
  private rxFreeTop = 0;
  /** Ring slot → the buffer posted there. */
  private rxAt: Int32Array = new Int32Array(0);
  private readonly txReq: TxReq = { gref: 0 as Gref, offset: 0, flags: 0, id: 0, size: 0 };
  private readonly rxReq = { id: 0, gref: 0 as Gref };
  // RX reassembly (a packet may span batches)
  private readonly asm = new Uint8Array(NETFRONT_MAX_PACKET + XEN_PAGE_SIZE);
  private inPacket = false;
  private pktLen = 0;
  private pktFlags = 0;
  private pktSlots = 0;
  private pktErr = false;
  private pktGso = 0;
  private extrasDue = 0;
  private readonly ps: number;

  constructor(private readonly ctx: NetfrontQueueContext, readonly index: number, readonly opts: NetfrontQueueOptions) {
    this.ps = ctx.k.pageSize;
    this.txPfn = new Int32Array(opts.txBuffers).fill(-1);
    this.txRef = new Int32Array(opts.txBuffers).fill(-1);
    this.txBusy = new Uint8Array(opts.txBuffers);
    this.txFree = new Int32Array(opts.txBuffers);
    this.rxPfn = new Int32Array(opts.rxBuffers).fill(-1);
    this.rxRef = new Int32Array(opts.rxBuffers).fill(-1);
    this.rxFree = new Int32Array(opts.rxBuffers);
  }

  get isLive(): boolean { return this.live && !this.dead; }

  private gpa(pfn: number, off = 0): GuestAddr { return (pfn * this.ps + off) as GuestAddr; }

  // ------------------------------------------------------------ setup

  /**
   * [setup] allocates and grants the rings and buffers, allocates the event
   * channel(s) and posts every RX buffer. Returns this queue's XenStore keys
   * (relative names); on failure everything taken is given back.
   */
  setup(): Result<Record<string, string>, string> {
    const k = this.ctx.k;
    const back = this.ctx.backDom;
    const r = this.allocate();
    if (!r.ok) {
      this.release();
      return r;
    }
    this.tx = FrontRing.init(k.mem.region([this.txRingPfn as Pfn]), NETIF_TX_RING);
    this.rx = FrontRing.init(k.mem.region([this.rxRingPfn as Pfn]), NETIF_RX_RING);
    this.rxAt = new Int32Array(this.rx.size).fill(-1);
    // Rings are initialised before the backend may see them.
    k.gnttab.grantForeignAccessRef(asGref(this.txRingRef), back, this.txRingPfn as Pfn, false);
    k.gnttab.grantForeignAccessRef(asGref(this.rxRingRef), back, this.rxRingPfn as Pfn, false);
    try {
      this.split = this.opts.split;
      this.txPort = k.evtchn.allocUnbound(back);
      this.rxPort = this.split ? k.evtchn.allocUnbound(back) : this.txPort;
    } catch (e) {
      this.release();
      return err(`allocating event channels: ${(e as Error).message}`);
    }
    if (this.split) {
      k.evtchn.bind(this.txPort, () => this.onTx());
      k.evtchn.bind(this.rxPort, () => this.onRx());
    } else {
      k.evtchn.bind(this.txPort, () => { this.onTx(); this.onRx(); });
    }
    this.inPacket = false;
    this.extrasDue = 0;
    this.dead = false;
    this.live = true;
    this.postRx();
    this.rx.pushRequests();
    const keys: Record<string, string> = { 'tx-ring-ref': String(this.txRingRef), 'rx-ring-ref': String(this.rxRingRef) };
    if (this.split) {
      keys['event-channel-tx'] = String(this.txPort);
      keys['event-channel-rx'] = String(this.rxPort);
    } else keys['event-channel'] = String(this.txPort);
    return ok(keys);
  }

  private allocate(): Result<void, string> {
    const k = this.ctx.k;
    const page = (): number => k.ram.tryAlloc() ?? -1;
    const ref = (): number => k.gnttab.allocRef() ?? -1;
    this.txRingPfn = page();
    this.rxRingPfn = page();
    // Ring pages start zeroed (SHARED_RING_INIT writes only the header); buffers need not.
    if (this.txRingPfn >= 0) k.mem.fill(this.gpa(this.txRingPfn), this.ps, 0);
    if (this.rxRingPfn >= 0) k.mem.fill(this.gpa(this.rxRingPfn), this.ps, 0);
    this.txRingRef = ref();
    this.rxRingRef = ref();
    if (this.txRingPfn < 0 || this.rxRingPfn < 0) return err('out of guest pages for the rings');
    if (this.txRingRef < 0 || this.rxRingRef < 0) return err('out of grant references for the rings');
    for (let i = 0; i < this.opts.txBuffers; i++) {
      this.txPfn[i] = page();
      this.txRef[i] = ref();
      if (this.txPfn[i] === -1 || this.txRef[i] === -1) return err(`out of pages or grant references for TX buffer ${i}`);
      this.txBusy[i] = 0;
    }
    this.txFreeTop = 0;
    for (let i = this.opts.txBuffers - 1; i >= 0; i--) this.txFree[this.txFreeTop++] = i;
    for (let i = 0; i < this.opts.rxBuffers; i++) {
      this.rxPfn[i] = page();
      this.rxRef[i] = ref();
      if (this.rxPfn[i] === -1 || this.rxRef[i] === -1) return err(`out of pages or grant references for RX buffer ${i}`);
    }
    this.rxFreeTop = 0;
    for (let i = this.opts.rxBuffers - 1; i >= 0; i--) this.rxFree[this.rxFreeTop++] = i;
    return ok(undefined);
  }

  /** Revokes and gives back one page + ref; quarantines it if the backend still holds the grant. */
  private giveBack(pfn: number, ref: number): void {
    const k = this.ctx.k;
    if (ref >= 0) {
      if (!k.gnttab.endForeignAccessRef(asGref(ref))) {
        this.ctx.quarantine(pfn as Pfn, asGref(ref));
        return;
      }
      k.gnttab.freeRef(asGref(ref));
    }
    if (pfn >= 0) k.ram.release(pfn as Pfn);
  }

  private release(): void {
    this.giveBack(this.txRingPfn, this.txRingRef);
    this.giveBack(this.rxRingPfn, this.rxRingRef);
    this.txRingPfn = this.rxRingPfn = this.txRingRef = this.rxRingRef = -1;
    for (let i = 0; i < this.opts.txBuffers; i++) {
      this.giveBack(this.txPfn[i] as number, this.txRef[i] as number);
      this.txPfn[i] = -1;
      this.txRef[i] = -1;
      this.txBusy[i] = 0;
    }
    for (let i = 0; i < this.opts.rxBuffers; i++) {
      this.giveBack(this.rxPfn[i] as number, this.rxRef[i] as number);
      this.rxPfn[i] = -1;
      this.rxRef[i] = -1;
    }
    this.txFreeTop = 0;
    this.rxFreeTop = 0;
  }

  /** [connected] the backend is Connected: kick it once for whatever is already on the rings. */
  connected(): void {
    if (!this.isLive) return;
    this.notify(this.txPort);
    if (this.split) this.notify(this.rxPort);
  }

  /**
   * [teardown] stops using the rings: ports closed, every grant revoked (or
   * the page quarantined while the backend still holds it), pages freed.
   * In-flight TX frames are lost (Linux frees them too).
   */
  teardown(): void {
    if (this.txRingPfn < 0 && !this.live) return;
    const k = this.ctx.k;
    this.live = false;
    for (const p of new Set([this.txPort, this.rxPort])) {
      if (p < 0) continue;
      try { k.evtchn.close(p); } catch { /* the port is gone already */ }
    }
    this.txPort = -1 as Port;
    this.rxPort = -1 as Port;
    this.release();
  }

  private notify(port: Port): void {
    if (port < 0) return;
    this.ctx.k.evtchn.notify(port);
    this.ctx.counters.notificationsSent++;
  }

  private fail(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    this.ctx.broken(`queue ${this.index}: ${reason}`);
  }

  // ------------------------------------------------------------ TX

  /** [txRoom slots] tells whether a packet of `slots` data slots (+1 extra) fits now. */
  txRoom(slots: number): boolean {
    return this.isLive && this.txFreeTop >= slots && this.tx.freeRequests() >= slots + 1;
  }

  /**
   * [send frame len gsoSize flags] queues one packet (NETTXF_* csum flags in
   * `flags`); false when the ring or the buffers are full (nothing done).
   */
  send(frame: Uint8Array, len: number, gsoSize: number, flags: number): boolean {
    const c = this.ctx.counters;
    const fb = this.ctx.txFragBytes;
    const slots = len <= fb ? 1 : Math.ceil(len / fb);
    if (!this.txRoom(slots)) return false;
    const k = this.ctx.k;
    const back = this.ctx.backDom;
    const req = this.txReq;
    for (let i = 0, off = 0; i < slots; i++, off += fb) {
      const b = this.txFree[--this.txFreeTop] as number;
      this.txBusy[b] = 1;
      const pfn = this.txPfn[b] as number;
      const n = Math.min(fb, len - off);
      k.mem.copyIn(this.gpa(pfn), frame, off, n);
      // XSA-403: an untrusted backend sees nothing on the page but this payload.
      if (!this.ctx.trusted && n < XEN_PAGE_SIZE) k.mem.fill(this.gpa(pfn, n), XEN_PAGE_SIZE - n, 0);
      const ref = this.txRef[b] as number as Gref;
      k.gnttab.grantForeignAccessRef(ref, back, pfn as Pfn, true);
      req.gref = ref;
      req.offset = 0;
      req.id = b;
      req.size = i === 0 ? len : n;
      req.flags = (i < slots - 1 ? NETTXF_more_data : 0) | (i === 0 ? flags | (gsoSize > 0 ? NETTXF_extra_info : 0) : 0);
      this.tx.putRequest(req);
      if (i === 0 && gsoSize > 0) {
        this.tx.putRequestWith(netifExtraInfoCodec, { type: XEN_NETIF_EXTRA_TYPE_GSO, flags: 0, gso: { size: gsoSize, type: XEN_NETIF_GSO_TYPE_TCPV4, features: 0 } });
        c.ringRequests++;
      }
    }
    c.txSlots += slots;
    c.ringRequests += slots;
    c.txFrames++;
    c.txBytes += len;
    if (gsoSize > 0) c.txGso++;
    // Release store inside: back sees requests /before/ updated producer index.
    if (this.tx.pushRequestsAndCheckNotify()) this.notify(this.txPort);
    return true;
  }

  private onTx(): void {
    this.ctx.counters.notificationsReceived++;
    this.txGc();
  }

  /** Consumes TX responses: each answered buffer is revoked and freed (xennet_tx_buf_gc). */
  txGc(): void {
    if (!this.isLive) return;
    const c = this.ctx.counters;
    const k = this.ctx.k;
    let freed = 0;
    for (;;) {
      const r = this.tx.hasUnconsumedResponses();
      if (!r.ok) return this.fail(`TX rsp_prod ${r.error.kind === 'rsp-prod-overflow' ? r.error.rspProd : '?'} is beyond what we requested`);
      for (let n = r.value; n > 0; n--) {
        const rsp = this.tx.copyResponse();
        c.ringResponses++;
        if (!rsp.ok) continue;
        if (rsp.value.status === NETIF_RSP_NULL) continue; // an extra-info slot's answer
        const id = rsp.value.id;
        if (id >= this.opts.txBuffers || this.txBusy[id] !== 1) return this.fail(`Response has incorrect id (${id})`);
        this.txBusy[id] = 0;
        if (rsp.value.status !== NETIF_RSP_OKAY) c.txErrors++;
        if (k.gnttab.endForeignAccessRef(asGref(this.txRef[id] as number))) {
          this.txFree[this.txFreeTop++] = id;
          freed++;
        } else {
          // The backend still maps the page: it is not ours to reuse (XSA-396).
          this.ctx.quarantine(this.txPfn[id] as Pfn, asGref(this.txRef[id] as number));
          this.txPfn[id] = -1;
          this.txRef[id] = -1;
          c.quarantined++;
        }
      }
      // Linux xennet_tx_buf_gc: ask to hear again only when half of what is still outstanding
      // is answered, so completions of a busy ring come in batches, not one event each.
      const outstanding = idxSub(this.tx.reqProdPvt, this.tx.rspCons);
      const f = this.tx.finalCheckForResponses(Math.min(this.tx.size, (outstanding >>> 1) + 1));
      if (!f.ok) return this.fail('TX rsp_prod is beyond what we requested');
      if (!f.value) break;
    }
    if (freed > 0) this.ctx.txRoom();
  }

  // ------------------------------------------------------------ RX

  /** Posts every free RX buffer at req_prod_pvt, each granted writable to the backend. */
  private postRx(): void {
    const k = this.ctx.k;
    const back = this.ctx.backDom;
    const mask = this.rx.size - 1;
    const req = this.rxReq;
    while (this.rxFreeTop > 0 && this.rx.freeRequests() > 0) {
      const b = this.rxFree[--this.rxFreeTop] as number;
      if (this.rxPfn[b] === -1) continue; // quarantined
      const ref = this.rxRef[b] as number as Gref;
      k.gnttab.grantForeignAccessRef(ref, back, this.rxPfn[b] as number as Pfn, false);
      this.rxAt[this.rx.reqProdPvt & mask] = b;
      req.id = b;
      req.gref = ref;
      this.rx.putRequest(req);
      this.ctx.counters.ringRequests++;
    }
  }

  private onRx(): void {
    if (this.split) this.ctx.counters.notificationsReceived++;
    this.rxAction();
  }

  /**
   * While set, RX responses are left on the ring and no buffer is re-posted:
   * a guest that has stopped draining its receive queue (a test's stand-in
   * for a stuck or descheduled guest). Clearing it does not consume; call rxAction.
   */
  rxHeld = false;

  /** Consumes RX responses, reassembles and delivers packets, re-posts the buffers. */
  rxAction(): void {
    if (!this.isLive || this.rxHeld) return;
    const c = this.ctx.counters;
    const k = this.ctx.k;
    const mask = this.rx.size - 1;
    for (;;) {
      const r = this.rx.hasUnconsumedResponses();
      if (!r.ok) return this.fail(`RX rsp_prod ${r.error.kind === 'rsp-prod-overflow' ? r.error.rspProd : '?'} is beyond what we posted`);
      for (let n = r.value; n > 0; n--) {
        const slot = this.rx.rspCons & mask;
        const b = this.rxAt[slot] as number;
        this.rxAt[slot] = -1;
        c.ringResponses++;
        // Whatever the response says, the buffer was the backend's until now: take it back.
        let bufOk = b >= 0;
        if (bufOk && !k.gnttab.endForeignAccessRef(asGref(this.rxRef[b] as number))) {
          this.ctx.quarantine(this.rxPfn[b] as Pfn, asGref(this.rxRef[b] as number));
          this.rxPfn[b] = -1;
          this.rxRef[b] = -1;
          c.quarantined++;
          bufOk = false;
        }
        if (b >= 0) this.rxFree[this.rxFreeTop++] = b;
        if (this.extrasDue > 0) {
          const e = this.rx.copyResponseWith(netifExtraInfoCodec);
          this.extrasDue--;
          if (!e.ok) this.pktErr = true;
          else this.extra(e.value);
          continue;
        }
        const rr = this.rx.copyResponse();
        if (!rr.ok) continue;
        const rsp = rr.value;
        if (!this.inPacket) {
          this.inPacket = true;
          this.pktLen = 0;
          this.pktSlots = 0;
          this.pktErr = false;
          this.pktGso = 0;
          this.pktFlags = rsp.flags;
          if ((rsp.flags & NETRXF_extra_info) !== 0) this.extrasDue = 1;
        }
        this.pktSlots++;
        c.rxSlots++;
        const st = rsp.status;
        if (!bufOk || st < 0 || rsp.offset + st > XEN_PAGE_SIZE || this.pktSlots > MAX_RX_SLOTS || this.pktLen + st > NETFRONT_MAX_PACKET) {
          this.pktErr = true;
        } else if (st > 0) {
          k.mem.copyOut(this.gpa(this.rxPfn[b] as number, rsp.offset), this.asm, this.pktLen, st);
          this.pktLen += st;
        }
        if ((rsp.flags & NETRXF_more_data) === 0 && this.extrasDue === 0) this.finishPacket();
        else if ((rsp.flags & NETRXF_more_data) === 0) this.pktFlags |= 0x8000; // ends once its extras are read
      }
      // Give the buffers back before looking again, so the backend can go on.
      this.postRx();
      if (this.rx.pushRequestsAndCheckNotify()) this.notify(this.rxPort);
      const f = this.rx.finalCheckForResponses();
      if (!f.ok) return this.fail('RX rsp_prod is beyond what we posted');
      if (!f.value) break;
    }
  }

  private extra(e: NetifExtraInfo): void {
    if (e.type === XEN_NETIF_EXTRA_TYPE_GSO) {
      if (e.gso.size === 0 || e.gso.type !== XEN_NETIF_GSO_TYPE_TCPV4) this.pktErr = true;
      else this.pktGso = e.gso.size;
    }
    if ((e.flags & XEN_NETIF_EXTRA_FLAG_MORE) !== 0) this.extrasDue++;
    if (this.extrasDue === 0 && (this.pktFlags & 0x8000) !== 0) this.finishPacket();
  }

  private finishPacket(): void {
    const c = this.ctx.counters;
    this.inPacket = false;
    const flags = this.pktFlags & 0x7fff;
    if (this.pktErr || this.pktLen < 14) {
      c.rxErrors++;
      return;
    }
    c.rxFrames++;
    c.rxBytes += this.pktLen;
    if (this.pktGso > 0) c.rxGso++;
    this.ctx.deliver(this.asm, this.pktLen, flags, this.pktGso);
  }
}
