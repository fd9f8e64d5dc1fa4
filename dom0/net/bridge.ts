/**
 * A learning Ethernet bridge in dom0 (Linux's bridge as `xenbr0`): vifs and
 * a NIC plug into it as ports, it learns which source MAC sits behind which
 * port, forwards unicast frames to the learned port, and floods broadcast,
 * multicast and unknown unicast to every other port. Entries age out after
 * `ageingMs` (Linux's 300 s default).
 *
 * A port is anything that can take packets out (BridgePort.transmit) and
 * hands packets in with Bridge.input. What a port cannot take is fixed up
 * here first, once per input packet: GSO packets are segmented for ports
 * without GSO, blank checksums completed for ports without checksum offload,
 * oversized frames dropped (counted on the port).
 *
 * Reference counting: input takes the caller's reference; each port that
 * keeps the packet takes its own (the bridge refs before transmit and
 * releases after). Captures (per port and for the whole bridge) see each
 * frame as it crosses: a port's capture sees frames entering the bridge from
 * it ('in') and frames the bridge sends out of it ('out'), as `tcpdump -i
 * vif1.0` would; the bridge capture sees every frame the bridge forwards.
 */
import { completeChecksum, segmentTcp4 } from './offload.ts';
import type { NetPacket, PacketPool } from './packet.ts';
import { realTimers, type NetTimers } from './loop.ts';

export interface BridgePort {
  /** Interface name: vif<domid>.<devid>, eth0, … */
  readonly name: string;
  /** The port's own MAC (netback vifs use FE:FF:FF:FF:FF:FF); never learned as a host. */
  readonly mac: string;
  /** Takes GSO packets as they are (else the bridge segments them first). */
  readonly acceptsGso: boolean;
  /** Takes packets whose L4 checksum is still blank (else the bridge completes it first). */
  readonly acceptsCsumBlank: boolean;
  /** Largest non-GSO frame the port carries (14 + MTU). */
  readonly maxFrame: number;
  /**
   * [transmit pkt] sends pkt out of the port. A port that keeps pkt beyond
   * the call takes its own reference (pool.ref). Returns false if the port
   * dropped it (the port counts why).
   */
  transmit(pkt: NetPacket): boolean;
}

export interface BridgePortCounters {
  /** Frames that entered the bridge from this port. */
  rxPackets: number;
  rxBytes: number;
  /** Frames the bridge sent out of this port. */
  txPackets: number;
  txBytes: number;
  /** Frames for this port it refused, or the bridge could not fix up (oversize, segmentation failure). */
  txDropped: number;
  /** Frames from this port addressed to a host behind this same port (filtered). */
  filtered: number;
}

export interface BridgeCounters {
  forwarded: number;
  flooded: number;
  /** Frames flooded because the destination was unknown unicast. */
  unknownUnicast: number;
  learned: number;
  moved: number;
  aged: number;
  dropped: number;
  segmented: number;
  checksummed: number;
}

/** Sees frames crossing a port or the bridge: (packet, direction). The packet is valid during the call only. */
export type BridgeTap = (pkt: NetPacket, dir: 'in' | 'out', port: string) => void;

interface PortEntry {
  readonly port: BridgePort;
  readonly index: number;
  readonly counters: BridgePortCounters;
  readonly taps: BridgeTap[];
  attached: boolean;
}

interface FdbEntry { port: PortEntry; seenAt: number }

export interface BridgeOptions {
  /** MAC ageing time (default 300 000 ms). */
  readonly ageingMs?: number;
  readonly timers?: NetTimers;
}

/** A handle a port uses to hand packets in. */
export interface BridgeAttachment {
  readonly bridge: Bridge;
  readonly name: string;
  /** [input pkt] hands one packet (and the caller's reference) to the bridge. */
  input(pkt: NetPacket): void;
  readonly counters: Readonly<BridgePortCounters>;
  detach(): void;
}

function macKey(b: Uint8Array, off: number): number {
  // 48 bits as an exact double: the top 16 bits times 2^32, plus the low 32.
  return ((b[off] as number) * 0x100 + (b[off + 1] as number)) * 0x1_0000_0000
    + ((((b[off + 2] as number) << 24) | ((b[off + 3] as number) << 16) | ((b[off + 4] as number) << 8) | (b[off + 5] as number)) >>> 0);
}

export function formatMacKey(k: number): string {
  const out: string[] = [];
  let x = k;
  for (let i = 0; i < 6; i++) {
    out.unshift((x % 256).toString(16).padStart(2, '0'));
    x = Math.floor(x / 256);
  }
  return out.join(':');
}

export class Bridge {
  private readonly ports: PortEntry[] = [];
  private readonly byName = new Map<string, PortEntry>();
  private readonly fdb = new Map<number, FdbEntry>();
  private readonly taps: BridgeTap[] = [];
  private readonly ageingMs: number;
  private readonly timers: NetTimers;
  private readonly hdr = new Uint8Array(14);
  private serial = 0;
  readonly counters: BridgeCounters = { forwarded: 0, flooded: 0, unknownUnicast: 0, learned: 0, moved: 0, aged: 0, dropped: 0, segmented: 0, checksummed: 0 };

  constructor(readonly name: string, private readonly pool: PacketPool, opts: BridgeOptions = {}) {
    this.ageingMs = opts.ageingMs ?? 300_000;
    this.timers = opts.timers ?? realTimers;
  }

  /** [attach port] plugs a port in (brctl addif); the name must be unique on the bridge. */
  attach(port: BridgePort): BridgeAttachment {
    if (this.byName.has(port.name)) throw new Error(`${this.name}: a port named ${port.name} is already attached`);
    const e: PortEntry = {
      port, index: this.serial++, attached: true, taps: [],
      counters: { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0, filtered: 0 },
    };
    this.ports.push(e);
    this.byName.set(port.name, e);
    return {
      bridge: this,
      name: port.name,
      input: (pkt) => this.input(e, pkt),
      counters: e.counters,
      detach: () => this.detach(e),
    };
  }

  private detach(e: PortEntry): void {
    if (!e.attached) return;
    e.attached = false;
    const i = this.ports.indexOf(e);
    if (i >= 0) this.ports.splice(i, 1);
    this.byName.delete(e.port.name);
    for (const [k, f] of this.fdb) if (f.port === e) this.fdb.delete(k);
  }

  /** Port names, in attach order. */
  get portNames(): string[] { return this.ports.map((p) => p.port.name); }

  portCounters(name: string): Readonly<BridgePortCounters> | undefined { return this.byName.get(name)?.counters; }

  /** The learned table: MAC → port name (`brctl showmacs`). */
  macs(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [k, f] of this.fdb) out.set(formatMacKey(k), f.port.port.name);
    return out;
  }

  /** [tap fn port] adds a capture of one port (or of the whole bridge when port is omitted); returns its removal. */
  tap(fn: BridgeTap, port?: string): () => void {
    const list = port === undefined ? this.taps : this.byName.get(port)?.taps;
    if (list === undefined) throw new Error(`${this.name}: no port named ${port}`);
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  private input(from: PortEntry, pkt: NetPacket): void {
    const c = from.counters;
    c.rxPackets++;
    c.rxBytes += pkt.len;
    if (!from.attached || pkt.dead || pkt.len < 14) {
      this.counters.dropped++;
      this.pool.release(pkt);
      return;
    }
    for (const t of from.taps) t(pkt, 'in', from.port.name);
    for (const t of this.taps) t(pkt, 'in', from.port.name);
    const h = this.hdr;
    this.pool.copyOut(pkt, h, 0, 0, 14);
    const now = this.timers.now();
    // Learn the source (never a multicast/broadcast source, which no host may own).
    if (((h[6] as number) & 1) === 0) {
      const src = macKey(h, 6);
      const f = this.fdb.get(src);
      if (f === undefined) {
        this.fdb.set(src, { port: from, seenAt: now });
        this.counters.learned++;
      } else {
        if (f.port !== from) this.counters.moved++;
        f.port = from;
        f.seenAt = now;
      }
    }
    if (((h[0] as number) & 1) === 0) {
      const dst = this.fdb.get(macKey(h, 0));
      if (dst !== undefined && now - dst.seenAt > this.ageingMs) {
        this.fdb.delete(macKey(h, 0));
        this.counters.aged++;
      } else if (dst !== undefined) {
        if (dst.port === from) {
          c.filtered++;
        } else {
          this.counters.forwarded++;
          const segs = this.output(dst.port, pkt, undefined);
          if (segs !== undefined) for (const q of segs) this.pool.release(q);
        }
        this.pool.release(pkt);
        return;
      } else this.counters.unknownUnicast++;
    }
    this.counters.flooded++;
    let segs: NetPacket[] | undefined;
    for (let i = 0; i < this.ports.length; i++) {
      const to = this.ports[i] as PortEntry;
      if (to === from) continue;
      segs = this.output(to, pkt, segs);
    }
    if (segs !== undefined) for (const s of segs) this.pool.release(s);
    this.pool.release(pkt);
  }

  /** Sends pkt (or its segments, made at most once per input packet) out of one port; returns the segments. */
  private output(to: PortEntry, pkt: NetPacket, segs: NetPacket[] | undefined): NetPacket[] | undefined {
    const port = to.port;
    if (pkt.gsoSize > 0 && !port.acceptsGso) {
      let s = segs;
      if (s === undefined) {
        const r = segmentTcp4(this.pool, pkt);
        if (!r.ok) {
          to.counters.txDropped++;
          return undefined;
        }
        s = r.value;
        this.counters.segmented++;
      }
      for (const q of s) this.send(to, q);
      return s;
    }
    if (pkt.csumBlank && !port.acceptsCsumBlank) {
      if (!completeChecksum(this.pool, pkt).ok) {
        to.counters.txDropped++;
        return segs;
      }
      this.counters.checksummed++;
    }
    if (pkt.gsoSize === 0 && pkt.len > port.maxFrame) {
      to.counters.txDropped++;
      return segs;
    }
    this.send(to, pkt);
    return segs;
  }

  private send(to: PortEntry, pkt: NetPacket): void {
    for (const t of to.taps) t(pkt, 'out', to.port.name);
    this.pool.ref(pkt);
    const took = to.port.transmit(pkt);
    this.pool.release(pkt);
    if (took) {
      to.counters.txPackets++;
      to.counters.txBytes += pkt.len;
    } else to.counters.txDropped++;
  }
}
