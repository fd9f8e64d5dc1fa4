/**
 * What a netback queue's parts share: the frontend's negotiated features and
 * keys, the vif's counters and limits, the context a vif hands its queues,
 * and the small interface through which the TX and RX halves (tx.ts, rx.ts)
 * reach their queue (queue.ts): notifications, the fatal path, whether the
 * rings are still served.
 */
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { DomId } from '../../shared/types.ts';
import type { NetPacket, PacketPool } from '../net/packet.ts';
import type { NetLoop, NetTimers, NetWork } from '../net/loop.ts';

/** Linux MAX_PENDING_REQS: TX slots a queue may hold in flight. */
export const MAX_PENDING_REQS = 256;

/**
 * How netback TX takes a packet's bytes past the 128-byte header it copies:
 * 'map' grant-maps them (Linux), 'copy' grant-copies them into dom0 pages,
 * 'grant' leaves them in the frontend's grants until RX copies them grant to
 * grant into the receivers' buffers (no map, no unmap, no second copy).
 */
export type TxMode = 'map' | 'copy' | 'grant';

/** What the frontend negotiated (read from its XenStore keys). */
export interface FrontendFeatures {
  /** feature-sg: may receive a packet in several slots. */
  readonly sg: boolean;
  /** feature-gso-tcpv4: may receive TCPv4 GSO packets. */
  readonly gsoTcpv4: boolean;
  /** !feature-no-csum-offload: may receive packets with a blank checksum. */
  readonly csumOffload: boolean;
}

/** One queue's keys (flat, or under queue-N/). */
export interface QueueKeys {
  readonly txRingRef: number;
  readonly rxRingRef: number;
  /** The frontend's unbound port(s); rx === tx when not split. */
  readonly txPort: number;
  readonly rxPort: number;
  readonly split: boolean;
}

/** Counters of one vif, shared by its queues (xentop's NETTX/NETRX and our per-packet costs). */
export interface VifCounters {
  /** Guest → dom0 (netback TX; the guest's transmit). */
  txPackets: number;
  txBytes: number;
  txGso: number;
  /** Packets answered NETIF_RSP_ERROR (malformed but not fatal, or a failed copy/map). */
  txErrors: number;
  /** Packets dropped for want of dom0 memory. */
  txDropped: number;
  /** Slots consumed from the TX ring. */
  txSlots: number;
  /** dom0 → guest (netback RX; the guest's receive). */
  rxPackets: number;
  rxBytes: number;
  rxGso: number;
  /** Packets whose copy into the guest failed (the guest's buffers were bad). */
  rxErrors: number;
  /** Packets dropped: queue full, drain timeout, too big for a guest without SG, disconnected. */
  rxDropped: number;
  rxSlots: number;
  /** Hypercalls made on the data path (copy, map, unmap batches). */
  hypercalls: number;
  grantCopies: number;
  grantCopyBytes: number;
  grantMaps: number;
  grantUnmaps: number;
  notificationsSent: number;
  notificationsReceived: number;
  /** Times the credit limiter made TX wait. */
  throttled: number;
  /** Queued RX packets copied into dom0 memory because the guest posted no buffers. */
  orphaned: number;
  /** Protocol violations that disabled the vif. */
  fatal: number;
}

export function newVifCounters(): VifCounters {
  return {
    txPackets: 0, txBytes: 0, txGso: 0, txErrors: 0, txDropped: 0, txSlots: 0,
    rxPackets: 0, rxBytes: 0, rxGso: 0, rxErrors: 0, rxDropped: 0, rxSlots: 0,
    hypercalls: 0, grantCopies: 0, grantCopyBytes: 0, grantMaps: 0, grantUnmaps: 0,
    notificationsSent: 0, notificationsReceived: 0, throttled: 0, orphaned: 0, fatal: 0,
  };
}

export interface QueueLimits {
  readonly fatalSlots: number;
  /** RX queue bound in packets (Linux rx_queue_max is in bytes; both are enforced). */
  readonly rxQueuePackets: number;
  readonly rxQueueBytes: number;
  /** Packets queued this long without buffers are dropped (Linux rx_drain_timeout_msecs, 10 s). */
  readonly rxDrainMs: number;
}

/** What a queue needs from its vif. */
export interface QueueContext {
  readonly name: string;
  readonly k: DomainKernel;
  readonly pool: PacketPool;
  readonly loop: NetLoop;
  readonly timers: NetTimers;
  readonly txMode: TxMode;
  readonly frontDom: DomId;
  readonly counters: VifCounters;
  readonly limits: QueueLimits;
  readonly fe: FrontendFeatures;
  /** Hands a packet the guest sent (and our reference) to the bridge. */
  fromGuest(pkt: NetPacket): void;
  /** The frontend broke the protocol: disable the vif. */
  fatal(queue: number, reason: string): void;
  log(line: string): void;
}

/** How the TX and RX halves reach their queue. */
export interface QueueIo {
  /** The queue, for net-loop deferrals ('tx', 'rx', 'done' come back to it). */
  readonly work: NetWork;
  /** The rings are mapped and served (connected, not disabled). */
  active(): boolean;
  /** The rings are mapped (connected), served or not. */
  connected(): boolean;
  /** Kick the frontend's TX (or RX) event channel. */
  notifyTx(): void;
  notifyRx(): void;
  /** The frontend broke the protocol. */
  fatal(reason: string): void;
}
