/**
 * A netback interface, vif<domid>.<devid> (Linux xen-netback interface.c):
 * one per backend device, alive from probe to remove. It is a port of a
 * dom0 bridge (dummy MAC FE:FF:FF:FF:FF:FF), owns the queues while the
 * frontend is connected, and keeps the counters xentop reports.
 *
 * Packets from the guest (its queues' TX) go to the bridge; packets from the
 * bridge go to one queue's RX, picked by a flow hash of the IPv4 addresses
 * and ports, so one flow stays on one queue (Linux picks by skb hash).
 *
 * A frontend that breaks the protocol disables the vif (Linux's
 * xenvif_fatal_tx_err): its queues stop, and the backend reports it as
 * xenbus_dev_fatal does — an error node, then state Closing — so the
 * frontend's XenBus driver tears down, while every other vif keeps working.
 */
import type { XenbusContext } from '../../shared/xenbus/device.ts';
import type { NetStats } from '../../cli/views/stats.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { DomId } from '../../shared/types.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import type { BridgeAttachment, BridgePort } from '../net/bridge.ts';
import type { NetLoop, NetTimers } from '../net/loop.ts';
import type { NetPacket, PacketPool } from '../net/packet.ts';
import { VIF_DUMMY_MAC } from '../net/vif.ts';
import type { RateSpec } from './credit.ts';
import {
  NetbackQueue, newVifCounters, type FrontendFeatures, type QueueContext, type QueueKeys, type QueueLimits,
  type TxMode, type VifCounters,
} from './queue.ts';

/** What a frontend asked for, read from its directory (hostile; checked by the xenbus hooks). */
export interface FrontendConfig {
  readonly features: FrontendFeatures;
  readonly queues: readonly QueueKeys[];
}

export interface VifConfig {
  readonly name: string;
  readonly frontDom: DomId;
  readonly devid: number;
  readonly k: DomainKernel;
  readonly pool: PacketPool;
  readonly loop: NetLoop;
  readonly timers: NetTimers;
  readonly txMode: TxMode;
  readonly limits: QueueLimits;
  readonly mtu: number;
  readonly log: (line: string) => void;
}

const NO_FEATURES: FrontendFeatures = { sg: false, gsoTcpv4: false, csumOffload: false };

export class NetbackVif implements BridgePort {
  readonly name: string;
  readonly mac = VIF_DUMMY_MAC;
  readonly counters: VifCounters = newVifCounters();
  private queues: NetbackQueue[] = [];
  private fe: FrontendFeatures = NO_FEATURES;
  private port: BridgeAttachment | undefined;
  private xb: XenbusContext | undefined;
  private disabledFlag = false;
  private readonly hdr = new Uint8Array(38);
  /** The last fatal reason, if the vif was disabled. */
  fatalReason: string | undefined;
  rate: RateSpec | undefined;

  constructor(readonly cfg: VifConfig) {
    this.name = cfg.name;
  }

  get acceptsGso(): boolean { return this.fe.gsoTcpv4; }
  get acceptsCsumBlank(): boolean { return this.fe.csumOffload; }
  get maxFrame(): number { return 14 + this.cfg.mtu; }
  get connected(): boolean { return this.queues.length > 0 && !this.disabledFlag; }
  get disabled(): boolean { return this.disabledFlag; }
  get numQueues(): number { return this.queues.length; }
  get features(): FrontendFeatures { return this.fe; }
  /** Packets queued for the guest, over all queues. */
  get rxQueued(): number { return this.queues.reduce((n, q) => n + q.rxQueued, 0); }
  /** Guest TX packets still held (mapped) by dom0, over all queues. */
  get txInflight(): number { return this.queues.reduce((n, q) => n + q.txInflight, 0); }
  get bridge(): string | undefined { return this.port?.bridge.name; }

  /** [plug attachment] records the bridge port this vif was attached as (the hotplug script's job). */
  plug(a: BridgeAttachment): void { this.port = a; }
  unplug(): void {
    this.port?.detach();
    this.port = undefined;
  }

  /** [connect xb fe rate] builds and connects one queue per set of keys. */
  connect(xb: XenbusContext, fe: FrontendConfig, rate: RateSpec | undefined): Result<void, string> {
    this.disconnect();
    this.xb = xb;
    this.fe = fe.features;
    this.rate = rate;
    this.disabledFlag = false;
    this.fatalReason = undefined;
    const ctx: QueueContext = {
      name: this.name,
      k: this.cfg.k,
      pool: this.cfg.pool,
      loop: this.cfg.loop,
      timers: this.cfg.timers,
      txMode: this.cfg.txMode,
      frontDom: this.cfg.frontDom,
      counters: this.counters,
      limits: this.cfg.limits,
      fe: this.fe,
      fromGuest: (pkt) => this.fromGuest(pkt),
      fatal: (q, reason) => this.fatal(q, reason),
      log: (l) => this.logLimited(l),
    };
    const qs: NetbackQueue[] = [];
    for (let i = 0; i < fe.queues.length; i++) {
      const q = new NetbackQueue(ctx, i);
      const r = q.connect(fe.queues[i] as QueueKeys, rate);
      if (!r.ok) {
        for (const p of qs) p.disconnect();
        return err(`queue ${i}: ${r.error}`);
      }
      qs.push(q);
    }
    this.queues = qs;
    return ok(undefined);
  }

  disconnect(): void {
    const qs = this.queues;
    this.queues = [];
    for (const q of qs) q.disconnect();
    this.fe = NO_FEATURES;
  }

  private logWindow = 0;
  private logCount = 0;
  private logSuppressed = 0;
  /** A guest's bad packets are logged at most 10 a second (Linux's net_err_ratelimited). */
  private logLimited(line: string): void {
    const now = this.cfg.timers.now();
    if (now - this.logWindow >= 1000) {
      if (this.logSuppressed > 0) this.cfg.log(`${this.name}: ${this.logSuppressed} messages suppressed`);
      this.logWindow = now;
      this.logCount = 0;
      this.logSuppressed = 0;
    }
    if (++this.logCount <= 10) this.cfg.log(`${this.name}: ${line}`);
    else this.logSuppressed++;
  }

  private fromGuest(pkt: NetPacket): void {
    if (this.port === undefined) {
      this.counters.txDropped++;
      this.cfg.pool.release(pkt);
      return;
    }
    this.port.input(pkt);
  }

  /** BridgePort: a packet for the guest. */
  transmit(pkt: NetPacket): boolean {
    const qs = this.queues;
    if (qs.length === 0 || this.disabledFlag) {
      this.counters.rxDropped++;
      return false;
    }
    const q = qs.length === 1 ? qs[0] : qs[this.flowHash(pkt) % qs.length];
    return (q as NetbackQueue).enqueueRx(pkt);
  }

  /** A hash of the IPv4 addresses and L4 ports (0 for anything else). */
  private flowHash(pkt: NetPacket): number {
    const h = this.hdr;
    const n = Math.min(h.length, pkt.len);
    this.cfg.pool.copyOut(pkt, h, 0, 0, n);
    if (n < 38 || h[12] !== 0x08 || h[13] !== 0x00) return 0;
    const ihl = ((h[14] as number) & 0x0f) * 4;
    let x = 0;
    for (let i = 26; i < 34; i++) x = Math.imul(x ^ (h[i] as number), 0x01000193);
    if (ihl === 20) for (let i = 34; i < 38; i++) x = Math.imul(x ^ (h[i] as number), 0x01000193);
    return (x >>> 0) % 65521;
  }

  /**
   * [fatal queue reason] disables the vif (every queue stops) and reports the
   * error as xenbus_dev_fatal would: error node, then state Closing.
   */
  fatal(queue: number, reason: string): void {
    if (this.disabledFlag) return;
    this.disabledFlag = true;
    this.fatalReason = reason;
    this.counters.fatal++;
    this.cfg.log(`${this.name}: queue ${queue}: ${reason}; disabling the interface`);
    for (const q of this.queues) q.disable();
    const xb = this.xb;
    if (xb === undefined) return;
    // The XenBus device writes the error node and switches to Closing
    // between its handshake passes, so its own idea of the state stays true.
    void xb.fatal('netback', `${this.name} queue ${queue}: ${reason}`);
  }

  /** [netStats] is this vif as xentop shows it, from the guest's side (NETTX = what the guest sent). */
  netStats(): NetStats {
    const c = this.counters;
    return {
      txBytes: BigInt(c.txBytes), txPackets: BigInt(c.txPackets), txErrs: BigInt(c.txErrors), txDrop: BigInt(c.txDropped),
      rxBytes: BigInt(c.rxBytes), rxPackets: BigInt(c.rxPackets), rxErrs: BigInt(c.rxErrors), rxDrop: BigInt(c.rxDropped),
    };
  }
}
