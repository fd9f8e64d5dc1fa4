/**
 * Netfront: a Xen PV network interface as a guest workload sees it (the
 * NetDevice of domU/workloads/net-device.ts), over one or more netfront
 * queues (queue.ts). Its XenBus side is xenbus.ts; the device object lives
 * as long as the device directory, across backend restarts: while the
 * backend is away, send() has no room and whenWritable() waits for the
 * reconnect (frames in flight at the restart are lost, as in Linux).
 *
 * Sending picks a queue by a flow hash (IPv4 addresses and ports), so one
 * flow keeps its order. A TCPv4 frame longer than the wire MTU is sent as
 * one GSO packet (extra-info slot, gso_size = the MSS) when the backend
 * offers feature-gso-tcpv4 and the device was made with `gso: true` — the
 * device then reports a 64 KiB `mtu`, which is how a workload sees TSO.
 * Checksum offload (option `csumOffload`, as Linux netfront's NETIF_F_IP_CSUM
 * and RXCSUM, on there by default): a workload may send frames with a blank
 * L4 checksum (CHECKSUM_PARTIAL → NETTXF_csum_blank | NETTXF_data_validated),
 * and received packets the backend vouches for (NETRXF_data_validated,
 * possibly with NETRXF_csum_blank) are delivered as CHECKSUM_UNNECESSARY,
 * their checksum left as it came. Without the option, received packets with a
 * blank checksum are completed in software before delivery, so workloads (and
 * captures of what they send) always see valid checksums.
 */
import { CHECKSUM_NONE, CHECKSUM_PARTIAL, CHECKSUM_UNNECESSARY, type ChecksumState, type DeviceCounters, type NetDevice } from '../workloads/net-device.ts';
import { finishChecksum, onesSum } from '../workloads/frames.ts';
import { NETTXF_csum_blank, NETTXF_data_validated, NETRXF_csum_blank, NETRXF_data_validated } from '../../shared/abi/netif.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import type { DomId, Gref, Pfn } from '../../shared/types.ts';
import { NETFRONT_MAX_PACKET, NetfrontQueue, newNetfrontCounters, type NetfrontCounters } from './queue.ts';

export interface NetfrontOptions {
  /** Queues to ask for (capped by the backend's multi-queue-max-queues); default 1. */
  readonly maxQueues?: number;
  /** RX buffers posted per queue (default 256, one ring's worth). */
  readonly rxBuffers?: number;
  /** TX buffer pages per queue (default 256). */
  readonly txBuffers?: number;
  /** Bytes per TX slot, at most 4096 (default 4096); smaller values make frames use more_data chains. */
  readonly txFragBytes?: number;
  /** Send TCP frames above the MTU as GSO and accept GSO on receive (TSO), if the backend can. Default false. */
  readonly gso?: boolean;
  /** Use separate TX and RX event channels when the backend offers them (default true). */
  readonly splitEventChannels?: boolean;
  /** Leave L4 checksums of sent frames to the backend: mark them NETTXF_csum_blank (default false: frames carry full checksums). */
  readonly txCsumBlank?: boolean;
  /**
   * Checksum offload both ways (see the file comment): the device reports
   * `csumOffload`, takes CHECKSUM_PARTIAL sends and passes the backend's
   * data_validated on as CHECKSUM_UNNECESSARY. Default false, so captures of
   * guest traffic carry full checksums (tcpdump on real Xen shows offloaded
   * ones as incorrect).
   */
  readonly csumOffload?: boolean;
  /** How often (ms) to retry revoking quarantined grants (default 20). */
  readonly reclaimMs?: number;
  readonly log?: (line: string) => void;
}

/** What the backend offers and the toolstack configured, as readBackend found it. */
export interface NetbackAdvert {
  readonly sg: boolean;
  readonly gsoTcpv4: boolean;
  readonly split: boolean;
  readonly maxQueues: number;
  /** The wire MTU (backend `mtu`, default 1500). */
  readonly mtu: number;
  /** Our MAC (frontend `mac`). */
  readonly mac: string;
  /** Frontend `trusted` (default 1): 0 means bounce TX data through zeroed pages. */
  readonly trusted: boolean;
}

const ZERO_MAC = '00:00:00:00:00:00';
const CSUM_BLANK = { csumBlank: true } as const;
const ETH_HLEN = 14;

export class Netfront implements NetDevice {
  private queues: NetfrontQueue[] = [];
  private adv: NetbackAdvert | undefined;
  private backDom = 0 as DomId;
  private handler: ((frame: Uint8Array, rxCsum?: ChecksumState) => void) | undefined;
  private writers: (() => void)[] = [];
  private connectWaiters: (() => void)[] = [];
  private isConnected = false;
  /** The queue that last had no room for a frame. */
  private blockedQueue = 0;
  private brokenReason: string | undefined;
  private readonly c: NetfrontCounters = newNetfrontCounters();
  private readonly views: (Uint8Array | undefined)[] = [];
  private readonly quarantined: { pfn: Pfn; ref: Gref }[] = [];
  private reclaimArmed = false;
  /** Handshakes completed (1 + reconnects). */
  connects = 0;

  constructor(readonly k: DomainKernel, readonly devid: number, readonly opts: NetfrontOptions = {}) {}

  // ---- NetDevice ----

  get mac(): string { return this.adv?.mac ?? ZERO_MAC; }
  /** The wire MTU, or a 64 KiB one when GSO sends are on (TSO). */
  get mtu(): number {
    if (this.gsoOn) return NETFRONT_MAX_PACKET - ETH_HLEN;
    return this.adv?.mtu ?? 1500;
  }
  private get gsoOn(): boolean { return this.opts.gso === true && this.adv?.gsoTcpv4 === true && this.adv.sg; }
  /** The backend's MTU, whatever TSO says. */
  get wireMtu(): number { return this.adv?.mtu ?? 1500; }
  get connected(): boolean { return this.isConnected && this.brokenReason === undefined; }
  get numQueues(): number { return this.queues.length; }
  get backend(): NetbackAdvert | undefined { return this.adv; }
  /** Why the device stopped (the backend broke the protocol), if it did. */
  get broken(): string | undefined { return this.brokenReason; }
  /** Pages held back because the backend kept their grants. */
  get quarantinedPages(): number { return this.quarantined.length; }

  /** Checksum offload is on (the option; the backend always takes NETTXF_csum_blank). */
  get csumOffload(): boolean { return this.opts.csumOffload === true; }

  send(frame: Uint8Array, csum: ChecksumState = CHECKSUM_NONE): boolean {
    if (csum === CHECKSUM_PARTIAL && this.opts.csumOffload === true) return this.sendPacket(frame, frame.length, CSUM_BLANK);
    return this.sendPacket(frame, frame.length);
  }

  /**
   * [sendPacket frame len opts] is send() with control over the offloads:
   * csumBlank marks the L4 checksum blank (the receiver completes it).
   */
  sendPacket(frame: Uint8Array, len = frame.length, opts: { readonly csumBlank?: boolean; readonly gsoSize?: number } = {}): boolean {
    const qs = this.queues;
    if (!this.connected || qs.length === 0) {
      this.c.txBusy++;
      return false;
    }
    let gsoSize = opts.gsoSize ?? 0;
    if (len > ETH_HLEN + this.wireMtu && gsoSize === 0) {
      gsoSize = this.gsoOn ? this.mssOf(frame, len) : 0;
      if (gsoSize <= 0 || len > NETFRONT_MAX_PACKET) {
        this.c.txDropped++;
        return true; // taken, not deliverable (an oversized frame a real NIC would drop)
      }
    }
    // Without feature-sg a packet must fit one slot (Linux netfront linearises or drops).
    if (len > Math.min(this.opts.txFragBytes ?? 4096, 4096) && this.adv?.sg !== true) {
      this.c.txDropped++;
      return true;
    }
    const csum = opts.csumBlank ?? this.opts.txCsumBlank === true;
    const flags = csum ? NETTXF_csum_blank | NETTXF_data_validated : 0;
    const qi = qs.length === 1 ? 0 : this.flowHash(frame, len) % qs.length;
    if ((qs[qi] as NetfrontQueue).send(frame, len, gsoSize, flags)) return true;
    this.c.txBusy++;
    this.blockedQueue = qi;
    return false;
  }

  whenWritable(): Promise<void> {
    if (this.writableNow()) return Promise.resolve();
    return new Promise<void>((resolve) => this.writers.push(resolve));
  }

  onReceive(handler: ((frame: Uint8Array, rxCsum?: ChecksumState) => void) | undefined): void {
    this.handler = handler;
  }

  counters(): DeviceCounters {
    const c = this.c;
    return {
      tx_frames: c.txFrames, tx_bytes: c.txBytes, tx_slots: c.txSlots, tx_gso: c.txGso, tx_busy: c.txBusy, tx_dropped: c.txDropped,
      tx_errors: c.txErrors, rx_frames: c.rxFrames, rx_bytes: c.rxBytes, rx_slots: c.rxSlots, rx_gso: c.rxGso, rx_errors: c.rxErrors,
      rx_csum_completed: c.rxCsumCompleted, notifications_sent: c.notificationsSent, notifications_received: c.notificationsReceived,
      ring_requests: c.ringRequests, ring_responses: c.ringResponses, quarantined: c.quarantined,
      hypercalls: this.k.hc.calls, grant_maps: 0, grant_copies: 0,
    };
  }

  private rxHeld = false;
  /**
   * [holdRx on] stops (on) or restarts (off) draining received packets: while
   * held, the posted buffers fill up and stay full, so the backend must queue
   * and then drop (rx-buffer starvation). Lasts across reconnects.
   */
  holdRx(on: boolean): void {
    this.rxHeld = on;
    for (const q of this.queues) {
      q.rxHeld = on;
      if (!on) q.rxAction();
    }
  }

  /** [whenConnected] resolves once the device is connected (at once if it is). */
  whenConnected(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise<void>((resolve) => this.connectWaiters.push(resolve));
  }

  // ---- XenBus side (called by xenbus.ts) ----

  /** [setup backDom adv] builds the queues; returns the keys to write (Linux talk_to_netback). */
  setup(backDom: DomId, adv: NetbackAdvert): Result<Record<string, string>, string> {
    this.teardownQueues();
    this.reclaim();
    this.adv = adv;
    this.backDom = backDom;
    this.brokenReason = undefined;
    const n = Math.max(1, Math.min(this.opts.maxQueues ?? 1, adv.maxQueues));
    const split = adv.split && this.opts.splitEventChannels !== false;
    const fragBytes = Math.max(64, Math.min(this.opts.txFragBytes ?? 4096, 4096));
    const ctx = {
      k: this.k,
      backDom,
      trusted: adv.trusted,
      txFragBytes: fragBytes,
      counters: this.c,
      deliver: (frame: Uint8Array, len: number, flags: number, gso: number) => this.deliver(frame, len, flags, gso),
      txRoom: () => this.wakeWriters(),
      broken: (reason: string) => this.setBroken(reason),
      quarantine: (pfn: Pfn, ref: Gref) => this.quarantine(pfn, ref),
    };
    const keys: Record<string, string> = {};
    const qs: NetfrontQueue[] = [];
    for (let i = 0; i < n; i++) {
      const q = new NetfrontQueue(ctx, i, { rxBuffers: this.opts.rxBuffers ?? 256, txBuffers: this.opts.txBuffers ?? 256, split });
      q.rxHeld = this.rxHeld;
      const r = q.setup();
      if (!r.ok) {
        for (const p of qs) p.teardown();
        return err(`queue ${i}: ${r.error}`);
      }
      qs.push(q);
      const prefix = n === 1 ? '' : `queue-${i}/`;
      for (const [key, v] of Object.entries(r.value)) keys[prefix + key] = v;
    }
    this.queues = qs;
    if (n > 1) keys['multi-queue-num-queues'] = String(n);
    keys['request-rx-copy'] = '1';
    keys['feature-rx-notify'] = '1';
    keys['feature-sg'] = '1';
    keys['feature-gso-tcpv4'] = this.opts.gso === true ? '1' : '0';
    keys['feature-no-csum-offload'] = '0';
    return ok(keys);
  }

  /** The backend is Connected: carrier on. */
  connectedToBackend(): void {
    this.isConnected = true;
    this.connects++;
    for (const q of this.queues) q.connected();
    const w = this.connectWaiters.splice(0);
    for (const f of w) f();
    this.wakeWriters();
  }

  /** Let go of the rings (backend gone, closing, unplug). */
  teardown(): void {
    this.isConnected = false;
    this.teardownQueues();
  }

  private teardownQueues(): void {
    const qs = this.queues;
    this.queues = [];
    for (const q of qs) q.teardown();
    if (this.quarantined.length > 0) this.armReclaim();
  }

  // ---- internals ----

  /**
   * Room for a largest frame on the queue that last refused one (with several
   * queues, the next frame most likely belongs to the same flow).
   */
  private writableNow(): boolean {
    if (!this.connected || this.queues.length === 0) return false;
    const slots = Math.ceil((ETH_HLEN + this.mtu) / Math.max(64, Math.min(this.opts.txFragBytes ?? 4096, 4096)));
    const q = this.queues[this.blockedQueue < this.queues.length ? this.blockedQueue : 0] as NetfrontQueue;
    return q.txRoom(slots);
  }

  private wakeWriters(): void {
    if (this.writers.length === 0 || !this.writableNow()) return;
    const w = this.writers;
    this.writers = [];
    for (const f of w) f();
  }

  private setBroken(reason: string): void {
    if (this.brokenReason !== undefined) return;
    this.brokenReason = reason;
    this.opts.log?.(`netfront vif/${this.devid}: backend broke the protocol: ${reason}; device stopped`);
  }

  private quarantine(pfn: Pfn, ref: Gref): void {
    this.quarantined.push({ pfn, ref });
    this.armReclaim();
  }

  private armReclaim(): void {
    if (this.reclaimArmed) return;
    this.reclaimArmed = true;
    // Unref'd: a backend that never lets go must not keep the process alive.
    setTimeout(() => {
      this.reclaimArmed = false;
      if (this.reclaim() > 0) this.armReclaim();
    }, this.opts.reclaimMs ?? 20).unref();
  }

  /** [reclaim] retries revoking quarantined grants; returns how many pages are still held. */
  reclaim(): number {
    const k = this.k;
    for (let i = this.quarantined.length - 1; i >= 0; i--) {
      const q = this.quarantined[i] as { pfn: Pfn; ref: Gref };
      if (k.gnttab.endForeignAccessRef(q.ref)) {
        k.gnttab.freeRef(q.ref);
        k.ram.release(q.pfn);
        this.quarantined.splice(i, 1);
      }
    }
    return this.quarantined.length;
  }

  private view(len: number, buf: Uint8Array): Uint8Array {
    let v = this.views[len];
    if (v === undefined || v.buffer !== buf.buffer) this.views[len] = v = buf.subarray(0, len);
    return v;
  }

  private deliver(frame: Uint8Array, len: number, flags: number, _gso: number): void {
    if (this.opts.csumOffload === true && (flags & (NETRXF_data_validated | NETRXF_csum_blank)) !== 0) {
      // The backend vouches for it (Linux netfront: CHECKSUM_UNNECESSARY, or CHECKSUM_PARTIAL, which local delivery trusts).
      this.handler?.(this.view(len, frame), CHECKSUM_UNNECESSARY);
      return;
    }
    if ((flags & NETRXF_csum_blank) !== 0) {
      completeL4Checksum(frame, len);
      this.c.rxCsumCompleted++;
    }
    this.handler?.(this.view(len, frame), CHECKSUM_NONE);
  }

  /** MSS of a TCPv4 frame (MTU − IP header − TCP header), or 0 if it is not one. */
  private mssOf(frame: Uint8Array, len: number): number {
    if (len < ETH_HLEN + 40 || frame[12] !== 0x08 || frame[13] !== 0x00 || frame[ETH_HLEN + 9] !== 6) return 0;
    const ihl = ((frame[ETH_HLEN] as number) & 0x0f) * 4;
    const thl = ((frame[ETH_HLEN + ihl + 12] as number) >>> 4) * 4;
    return this.wireMtu - ihl - thl;
  }

  /** A hash of the IPv4 addresses and L4 ports, so one flow always uses one queue. */
  private flowHash(frame: Uint8Array, len: number): number {
    if (len < 38 || frame[12] !== 0x08 || frame[13] !== 0x00) return 0;
    let x = 0;
    for (let i = 26; i < 38; i++) x = Math.imul(x ^ (frame[i] as number), 0x01000193);
    return (x >>> 0) % 65521;
  }
}

/** Completes a blank TCP/UDP checksum over IPv4 in place (what the stack does for CHECKSUM_PARTIAL). */
export function completeL4Checksum(frame: Uint8Array, len: number): void {
  if (len < ETH_HLEN + 20 || frame[12] !== 0x08 || frame[13] !== 0x00) return;
  const ip = ETH_HLEN;
  const ihl = ((frame[ip] as number) & 0x0f) * 4;
  const total = ((frame[ip + 2] as number) << 8) | (frame[ip + 3] as number);
  const proto = frame[ip + 9] as number;
  if (ihl < 20 || ip + total > len || (proto !== 6 && proto !== 17)) return;
  const l4 = ip + ihl;
  const l4Len = total - ihl;
  const at = l4 + (proto === 6 ? 16 : 6);
  if (at + 2 > ip + total) return;
  frame[at] = 0;
  frame[at + 1] = 0;
  let acc = proto + l4Len;
  for (let i = ip + 12; i < ip + 20; i += 2) acc += ((frame[i] as number) << 8) | (frame[i + 1] as number);
  let c = finishChecksum(onesSum(frame, l4, l4 + l4Len, acc));
  if (proto === 17 && c === 0) c = 0xffff;
  frame[at] = c >>> 8;
  frame[at + 1] = c & 0xff;
}
