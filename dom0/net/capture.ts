/**
 * Packet capture of bridge traffic to classic libpcap files (tcpdump -i
 * vif1.0 / -i xenbr0 -w file), through shared/net/pcap.ts.
 *
 * Timestamps come from an injected clock (simulated ns since the epoch), so
 * captures of a deterministic run are byte-identical. Each frame is copied
 * out of dom0 memory once into a private buffer and written as one record;
 * frames longer than the snaplen are cut with their original length kept.
 */
import { PcapWriter, type PcapSink, type PcapWriterOptions } from '../../shared/net/pcap.ts';
import type { Bridge, BridgeTap } from './bridge.ts';
import { MAX_PACKET_BYTES, type NetPacket, type PacketPool } from './packet.ts';

export interface CaptureOptions extends PcapWriterOptions {
  /** Which frames of a port to keep: 'in' (from the port into the bridge), 'out', or 'both' (default). */
  readonly direction?: 'in' | 'out' | 'both';
}

export class PacketCapture {
  readonly writer: PcapWriter;
  private readonly buf = new Uint8Array(MAX_PACKET_BYTES);
  private untap: (() => void) | undefined;
  /** Records that could not be written (bad timestamp, closed). */
  errors = 0;

  constructor(
    private readonly pool: PacketPool,
    sink: PcapSink,
    private readonly clockNs: () => bigint,
    private readonly opts: CaptureOptions = {},
  ) {
    this.writer = new PcapWriter(sink, opts);
  }

  /**
   * [onBridge bridge port] starts capturing one port of the bridge, or every
   * frame the bridge forwards when port is omitted.
   */
  static onBridge(bridge: Bridge, pool: PacketPool, sink: PcapSink, clockNs: () => bigint, port?: string, opts: CaptureOptions = {}): PacketCapture {
    const c = new PacketCapture(pool, sink, clockNs, opts);
    c.untap = bridge.tap(c.tapFn, port);
    return c;
  }

  /** The tap function to hand to Bridge.tap (or call directly). */
  readonly tapFn: BridgeTap = (pkt, dir) => {
    const want = this.opts.direction ?? 'both';
    if (want !== 'both' && want !== dir) return;
    this.record(pkt);
  };

  /** [record pkt] writes one record for pkt now. */
  record(pkt: NetPacket): void {
    const snap = Math.min(pkt.len, this.writer.snaplen);
    this.pool.copyOut(pkt, this.buf, 0, 0, snap);
    const r = this.writer.writePacket(this.clockNs(), this.buf.subarray(0, snap), pkt.len);
    if (!r.ok) this.errors++;
  }

  get packets(): number { return this.writer.packets; }

  /** [close] stops capturing and ends the file. */
  async close(): Promise<void> {
    this.untap?.();
    this.untap = undefined;
    await this.writer.close();
  }
}
