/**
 * A host on the far end of a NIC's wire, outside the machine: what a frame
 * reaches once it has left through dom0's NIC. It has a MAC (and optionally an
 * IPv4 address) and answers what is addressed to it, without ARP:
 *
 *  - an ICMP echo request (IPv4, to its MAC) gets an echo reply — MACs and IP
 *    addresses swapped, type 8 → 0, the ICMP checksum adjusted (RFC 1624);
 *  - any other frame to its MAC, or to broadcast, comes back as it was with
 *    the MACs swapped (an echo server at layer 2);
 *  - frames for other MACs are counted and ignored (a switch would not have
 *    sent them; a flooding bridge does).
 *
 * It plugs no doorbell into the wire (it is not a NIC of the machine): it
 * sleeps on the wire channel's tail (Wire.waitFrames), and after answering it
 * rings the doorbell of the NIC at the other end, so the NIC wakes at once.
 * Runs in its own worker (nic-host-main.ts) or is served by hand in one thread.
 */
import type { Wire, WireEnd } from './nic.ts';
import { MAX_FRAME } from './nic.ts';

export interface OutsideHostOptions {
  /** aa:bb:cc:dd:ee:ff, unicast. */
  readonly mac: string;
}

export interface OutsideHostCounters {
  /** Frames taken off the wire. */
  received: number;
  /** Echo replies to ICMP echo requests. */
  pings: number;
  /** Other frames sent back with swapped MACs. */
  echoes: number;
  /** Frames addressed to another host. */
  ignored: number;
  /** Answers the wire dropped (its channel was full). */
  wireDrops: number;
  /** Distinct source MACs seen, in order of first appearance. */
  sources: string[];
}

function parseMacBytes(mac: string): Uint8Array {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new RangeError(`not a MAC address: ${mac}`);
  const b = Uint8Array.from(parts.map((p) => parseInt(p, 16)));
  if (((b[0] as number) & 1) !== 0) throw new RangeError(`${mac} is a multicast address`);
  return b;
}

const macText = (b: Uint8Array, off: number): string =>
  Array.from(b.subarray(off, off + 6), (x) => x.toString(16).padStart(2, '0')).join(':');

/** Ethernet header (the sender writes it; the host rewrites it in its answer). */
const ETH = {
  dst: 0, // 6 bytes destination MAC
  src: 6, // 6 bytes source MAC
  type: 12, // u16 BE EtherType
  SIZE: 14,
} as const;
/** The IPv4 header fields the host reads or swaps. */
const IP4 = {
  verIhl: 0, // u8 version << 4 | header length in words
  proto: 9, // u8 protocol
  src: 12, // u32 BE source address
  dst: 16, // u32 BE destination address
} as const;
/** ICMP echo header after the IPv4 header. */
const ICMP = {
  type: 0, // u8 8 request, 0 reply
  code: 1, // u8 0
  csum: 2, // u16 BE ones'-complement checksum of the ICMP message
} as const;
const ETHERTYPE_IPV4 = 0x0800;
const IPPROTO_ICMP = 1;
const ICMP_ECHO_REQUEST = 8;
const ICMP_ECHO_REPLY = 0;

export class OutsideHost {
  readonly mac: Uint8Array;
  private readonly buf = new Uint8Array(MAX_FRAME);
  private readonly tmp = new Uint8Array(6);
  private readonly seen = new Set<string>();
  private readonly c: OutsideHostCounters = { received: 0, pings: 0, echoes: 0, ignored: 0, wireDrops: 0, sources: [] };

  /**
   * @param ringPeer rings the doorbell at a machine address (the NIC at the
   *   other end); called after a batch of answers.
   */
  constructor(readonly wire: Wire, readonly end: WireEnd, opts: OutsideHostOptions, private readonly ringPeer: (doorbell: number) => void) {
    this.mac = parseMacBytes(opts.mac);
  }

  counters(): OutsideHostCounters { return { ...this.c, sources: [...this.c.sources] }; }

  /** [serveOnce] answers every frame waiting on the wire; returns how many it took. */
  serveOnce(): number {
    let n = 0;
    let sent = 0;
    for (;;) {
      const len = this.wire.recv(this.end, this.buf);
      if (len < 0) break;
      n++;
      this.c.received++;
      if (len < ETH.SIZE || len > this.buf.length) {
        this.c.ignored++;
        continue;
      }
      const b = this.buf;
      const src = macText(b, ETH.src);
      if (!this.seen.has(src)) {
        this.seen.add(src);
        this.c.sources.push(src);
      }
      const broadcast = b.subarray(ETH.dst, ETH.dst + 6).every((x) => x === 0xff);
      const mine = b.subarray(ETH.dst, ETH.dst + 6).every((x, i) => x === this.mac[i]);
      if (!mine && !broadcast) {
        this.c.ignored++;
        continue;
      }
      // Back to the sender, from me.
      b.copyWithin(ETH.dst, ETH.src, ETH.src + 6);
      b.set(this.mac, ETH.src);
      if (mine && this.isEchoRequest(b, len)) {
        this.answerPing(b);
        this.c.pings++;
      } else this.c.echoes++;
      if (this.wire.send(this.end, b, 0, len)) sent++;
      else this.c.wireDrops++;
    }
    if (sent > 0) {
      const bell = this.wire.doorbellOf(this.wire.peer(this.end));
      if (bell !== 0) this.ringPeer(bell);
    }
    return n;
  }

  private isEchoRequest(b: Uint8Array, len: number): boolean {
    if (len < ETH.SIZE + 20 + 8) return false;
    if ((((b[ETH.type] as number) << 8) | (b[ETH.type + 1] as number)) !== ETHERTYPE_IPV4) return false;
    const ip = ETH.SIZE;
    const vi = b[ip + IP4.verIhl] as number;
    if (vi >> 4 !== 4) return false;
    const ihl = (vi & 0xf) * 4;
    if (ihl < 20 || len < ip + ihl + 8) return false;
    return b[ip + IP4.proto] === IPPROTO_ICMP && b[ip + ihl + ICMP.type] === ICMP_ECHO_REQUEST && b[ip + ihl + ICMP.code] === 0;
  }

  /** Turns the echo request in b into its reply: swap addresses, type 8 → 0, checksum adjusted. */
  private answerPing(b: Uint8Array): void {
    const ip = ETH.SIZE;
    const ihl = ((b[ip + IP4.verIhl] as number) & 0xf) * 4;
    // Swapping source and destination leaves the IPv4 header checksum as it was (a sum commutes).
    this.tmp.set(b.subarray(ip + IP4.src, ip + IP4.src + 4));
    b.copyWithin(ip + IP4.src, ip + IP4.dst, ip + IP4.dst + 4);
    b.set(this.tmp.subarray(0, 4), ip + IP4.dst);
    const icmp = ip + ihl;
    b[icmp + ICMP.type] = ICMP_ECHO_REPLY;
    // RFC 1624: HC' = ~(~HC + ~m + m'), the 16-bit word (type, code) going from 0x0800 to 0x0000.
    const hc = ((b[icmp + ICMP.csum] as number) << 8) | (b[icmp + ICMP.csum + 1] as number);
    let sum = (~hc & 0xffff) + (~(ICMP_ECHO_REQUEST << 8) & 0xffff) + (ICMP_ECHO_REPLY << 8);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    const nc = ~sum & 0xffff;
    b[icmp + ICMP.csum] = nc >> 8;
    b[icmp + ICMP.csum + 1] = nc & 0xff;
  }
}
