/**
 * One netback queue: a TX ring (guest → dom0), an RX ring (dom0 → guest)
 * and their event channel(s) — one, or one each with
 * feature-split-event-channels. This file is the control of a queue:
 * mapping the rings and binding the ports (connect), undoing it all
 * (disconnect), and routing events and net-loop work to the data path,
 * whose two halves are tx.ts and rx.ts (Linux xen-netback interface.c's
 * queue set-up; netback.c and rx.c).
 *
 * A frontend that breaks the protocol is reported to the vif (`fatal`),
 * which disables every queue: nothing more is read from or written to the
 * rings, while what dom0 still holds is released normally. Nothing a
 * frontend writes makes this throw.
 */
import { GNTST } from '../../shared/abi/grant.ts';
import { BackRing } from '../../shared/ring/back-ring.ts';
import { NETIF_RX_RING, NETIF_TX_RING } from '../../shared/ring/codec.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { asGref, type GrantHandle, type Pfn, type Port } from '../../shared/types.ts';
import { CreditLimiter, type RateSpec } from './credit.ts';
import type { QueueContext, QueueIo, QueueKeys } from './common.ts';
import { NetbackTx } from './tx.ts';
import { NetbackRx } from './rx.ts';
import type { NetPacket } from '../net/packet.ts';
import type { NetPhase, NetWork } from '../net/loop.ts';

export {
  MAX_PENDING_REQS, newVifCounters,
  type FrontendFeatures, type QueueContext, type QueueKeys, type QueueLimits, type TxMode, type VifCounters,
} from './common.ts';
export { FATAL_SKB_SLOTS } from './tx-request.ts';

export class NetbackQueue implements NetWork {
  private live = false;
  private disabled = false;
  private txPort = -1 as Port;
  private rxPort = -1 as Port;
  private split = false;
  private ringPfns: Pfn[] = [];
  private ringHandles: GrantHandle[] = [];
  private tx: NetbackTx | undefined;
  private rx: NetbackRx | undefined;
  private readonly io: QueueIo;

  constructor(private readonly ctx: QueueContext, readonly index: number) {
    this.io = {
      work: this,
      active: () => this.live && !this.disabled,
      connected: () => this.live,
      notifyTx: () => this.notify(this.txPort),
      notifyRx: () => this.notify(this.rxPort),
      fatal: (reason) => this.ctx.fatal(this.index, reason),
    };
  }

  get connected(): boolean { return this.live; }
  /** Packets waiting for the guest's buffers. */
  get rxQueued(): number { return this.rx?.queued ?? 0; }
  /** TX packets handed to the bridge and not yet answered. */
  get txInflight(): number { return this.tx?.inflight ?? 0; }

  /** [connect keys rate] maps both rings (one batch) and binds the event channel(s). */
  connect(keys: QueueKeys, rate: RateSpec | undefined): Result<void, string> {
    const k = this.ctx.k;
    const dom = this.ctx.frontDom;
    const pfns: Pfn[] = [];
    for (let i = 0; i < 2; i++) {
      const p = k.ballooned.tryAlloc();
      if (p === undefined) {
        for (const q of pfns) k.ballooned.release(q);
        return err('dom0 is out of ballooned pages for the rings');
      }
      pfns.push(p);
    }
    const [ta, ra] = pfns as [Pfn, Pfn];
    const res = k.gnttab.mapGrantRefs([
      { domid: dom, ref: asGref(keys.txRingRef), readonly: false, hostPfn: ta },
      { domid: dom, ref: asGref(keys.rxRingRef), readonly: false, hostPfn: ra },
    ]);
    this.ctx.counters.hypercalls++;
    const bad = res.findIndex((r) => r.status !== GNTST.okay);
    if (bad >= 0) {
      // XSA-361: unmap whichever of the two did map.
      const undo: { handle: GrantHandle; hostPfn: Pfn }[] = [];
      res.forEach((r, i) => { if (r.status === GNTST.okay) undo.push({ handle: r.handle, hostPfn: pfns[i] as Pfn }); });
      if (undo.length > 0) k.gnttab.unmapGrantRefs(undo);
      for (const q of pfns) k.ballooned.release(q);
      return err(`mapping ${bad === 0 ? 'tx' : 'rx'}-ring-ref ${bad === 0 ? keys.txRingRef : keys.rxRingRef} failed (GNTST ${res[bad]?.status})`);
    }
    this.ringPfns = pfns;
    this.ringHandles = res.map((r) => r.handle);
    try {
      this.txPort = k.evtchn.bindInterdomain(dom, keys.txPort);
      this.split = keys.split;
      this.rxPort = keys.split ? k.evtchn.bindInterdomain(dom, keys.rxPort) : this.txPort;
    } catch (e) {
      if (this.txPort >= 0) k.evtchn.close(this.txPort);
      this.txPort = -1 as Port;
      this.unmapRings();
      return err(`binding event channel ${keys.txPort}/${keys.rxPort} of d${dom}: ${(e as Error).message}`);
    }
    const credit = new CreditLimiter(rate, this.ctx.timers, () => this.ctx.loop.defer('tx', this));
    this.tx = new NetbackTx(this.ctx, this.io, BackRing.init(k.mem.region([ta]), NETIF_TX_RING), credit);
    this.rx = new NetbackRx(this.ctx, this.io, BackRing.init(k.mem.region([ra]), NETIF_RX_RING));
    if (this.split) {
      k.evtchn.bind(this.txPort, () => this.onTxEvent());
      k.evtchn.bind(this.rxPort, () => this.onRxEvent());
    } else {
      k.evtchn.bind(this.txPort, () => { this.onTxEvent(); this.onRxEvent(); });
    }
    this.live = true;
    this.disabled = false;
    // Whatever the frontend queued before we connected.
    this.ctx.loop.defer('tx', this);
    return ok(undefined);
  }

  private unmapRings(): void {
    const k = this.ctx.k;
    if (this.ringHandles.length > 0) {
      const st = k.gnttab.unmapGrantRefs(this.ringHandles.map((h, i) => ({ handle: h, hostPfn: this.ringPfns[i] as Pfn })));
      this.ctx.counters.hypercalls++;
      st.forEach((s, i) => {
        if (s === GNTST.okay) k.ballooned.release(this.ringPfns[i] as Pfn);
        else this.ctx.log(`unmapping ring page ${i} failed (GNTST ${s}); its pfn is leaked`);
      });
    }
    this.ringHandles = [];
    this.ringPfns = [];
  }

  /**
   * [disable] stops serving the rings (the frontend broke the protocol):
   * nothing more is read or written, queued RX packets are dropped; packets
   * already handed on are still unmapped when released.
   */
  disable(): void {
    if (this.disabled) return;
    this.disabled = true;
    this.rx?.dropAll();
  }

  /** [disconnect] undoes connect: every packet of ours is orphaned or released, every map undone, the ports closed. */
  disconnect(): void {
    if (!this.live) return;
    this.live = false;
    const k = this.ctx.k;
    for (const p of new Set([this.txPort, this.rxPort])) {
      if (p < 0) continue;
      try { k.evtchn.close(p); } catch (e) { this.ctx.log(`closing port ${p}: ${(e as Error).message}`); }
    }
    this.txPort = -1 as Port;
    this.rxPort = -1 as Port;
    this.rx?.teardown();
    this.tx?.teardown();
    this.unmapRings();
  }

  /** [enqueueRx pkt] queues a packet for the guest (taking a reference); false if dropped. */
  enqueueRx(pkt: NetPacket): boolean {
    if (this.rx === undefined || !this.live || this.disabled) {
      this.ctx.counters.rxDropped++;
      return false;
    }
    return this.rx.enqueue(pkt);
  }

  private onTxEvent(): void {
    this.ctx.counters.notificationsReceived++;
    this.tx?.action();
  }

  private onRxEvent(): void {
    if (this.split) this.ctx.counters.notificationsReceived++;
    if (this.rxQueued > 0) this.ctx.loop.defer('rx', this);
  }

  runNetWork(phase: NetPhase): void {
    if (phase === 'tx') this.tx?.action();
    else if (phase === 'rx') this.rx?.action();
    else this.tx?.complete(true);
  }

  private notify(port: Port): void {
    if (port < 0) return;
    this.ctx.k.evtchn.notify(port);
    this.ctx.counters.notificationsSent++;
  }
}
