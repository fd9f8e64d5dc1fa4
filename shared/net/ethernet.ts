/**
 * Ethernet II, IPv4, UDP and ARP: just enough to build and read the frames a
 * vif carries, byte-exact (checked against tshark in test/unit/net).
 *
 * Wire order is big-endian ("network order") throughout; every multi-byte
 * field below is written and read with explicit shifts. Frames are plain
 * Uint8Arrays without FCS, as netfront/netback and pcap carry them.
 */
import { err, ok, type Result } from '../result.ts';
import type { Brand } from '../types.ts';

// ---------------------------------------------------------------- MAC

/** A MAC address in canonical form: six lowercase two-digit hex bytes joined by ':'. */
export type MacAddr = Brand<string, 'MacAddr'>;

export const MAC_LEN = 6;
/** Xen's OUI (XenSource): libxl picks random vif MACs under it; tshark shows it as `Xensourc_`. */
export const XEN_OUI = [0x00, 0x16, 0x3e] as const;
export const BROADCAST_MAC = 'ff:ff:ff:ff:ff:ff' as MacAddr;
export const ZERO_MAC = '00:00:00:00:00:00' as MacAddr;

export type MacError = { readonly kind: 'bad-mac'; readonly text: string };

const MAC_RE = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;

/** [parseMac s] accepts `00:16:3e:0a:0b:0c` (or `-` separators, any case) and returns the canonical form. */
export function parseMac(text: string): Result<MacAddr, MacError> {
  if (!MAC_RE.test(text)) return err({ kind: 'bad-mac', text });
  return ok(text.toLowerCase().replaceAll('-', ':') as MacAddr);
}

/** [macToBytes m] is m's six bytes. */
export function macToBytes(m: MacAddr): Uint8Array {
  const b = new Uint8Array(MAC_LEN);
  for (let i = 0; i < MAC_LEN; i++) b[i] = parseInt(m.slice(i * 3, i * 3 + 2), 16);
  return b;
}

/** [macFromBytes b off] reads six bytes at off as a MAC. */
export function macFromBytes(b: Uint8Array, off = 0): MacAddr {
  if (off < 0 || off + MAC_LEN > b.length) throw new RangeError(`MAC at ${off} outside ${b.length} bytes`);
  const parts: string[] = [];
  for (let i = 0; i < MAC_LEN; i++) parts.push((b[off + i] as number).toString(16).padStart(2, '0'));
  return parts.join(':') as MacAddr;
}

/** [xenMac n] is 00:16:3e followed by the 24-bit n (e.g. xenMac(1) = 00:16:3e:00:00:01). */
export function xenMac(n: number): MacAddr {
  if (!Number.isInteger(n) || n < 0 || n > 0xff_ffff) throw new RangeError(`xenMac wants a 24-bit number, got ${n}`);
  return macFromBytes(Uint8Array.of(...XEN_OUI, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff));
}

/** Group (multicast or broadcast) addresses have the low bit of the first byte set. */
export function isMulticastMac(m: MacAddr): boolean {
  return (parseInt(m.slice(0, 2), 16) & 1) === 1;
}

// ---------------------------------------------------------------- Ethernet II

export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_8021Q = 0x8100;
export const ETH_P_IPV6 = 0x86dd;

/** Ethernet II header (no 802.1Q tag, no FCS). */
export const EthHdr = {
  /** u8[6] destination MAC */
  dst: 0,
  /** u8[6] source MAC */
  src: 6,
  /** u16 BE EtherType */
  ethertype: 12,
  SIZE: 14,
} as const;

/** Smallest frame on the wire without FCS (60 + 4 = 64). Frames we capture need no padding. */
export const ETH_ZLEN = 60;

export interface EthFrame {
  readonly dst: MacAddr;
  readonly src: MacAddr;
  readonly ethertype: number;
  /** The bytes after the header (a view into the frame, not a copy). */
  readonly payload: Uint8Array;
}

export type EthError = { readonly kind: 'short-frame'; readonly len: number; readonly need: number };

function putU16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}
function getU16(b: Uint8Array, off: number): number {
  return ((b[off] as number) << 8) | (b[off + 1] as number);
}
function putU32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}
function getU32(b: Uint8Array, off: number): number {
  return (((b[off] as number) << 24) | ((b[off + 1] as number) << 16) | ((b[off + 2] as number) << 8) | (b[off + 3] as number)) >>> 0;
}

/** [buildEthernet dst src ethertype payload] is header + payload (no padding, no FCS). */
export function buildEthernet(dst: MacAddr, src: MacAddr, ethertype: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(EthHdr.SIZE + payload.length);
  f.set(macToBytes(dst), EthHdr.dst);
  f.set(macToBytes(src), EthHdr.src);
  putU16(f, EthHdr.ethertype, ethertype);
  f.set(payload, EthHdr.SIZE);
  return f;
}

/** [parseEthernet frame] splits an Ethernet II frame. A frame shorter than the header is an error. */
export function parseEthernet(frame: Uint8Array): Result<EthFrame, EthError> {
  if (frame.length < EthHdr.SIZE) return err({ kind: 'short-frame', len: frame.length, need: EthHdr.SIZE });
  return ok({
    dst: macFromBytes(frame, EthHdr.dst),
    src: macFromBytes(frame, EthHdr.src),
    ethertype: getU16(frame, EthHdr.ethertype),
    payload: frame.subarray(EthHdr.SIZE),
  });
}

// ---------------------------------------------------------------- IPv4

/** An IPv4 address as an unsigned 32-bit number (10.0.0.1 = 0x0a000001). */
export type Ipv4Addr = Brand<number, 'Ipv4Addr'>;
export type Ipv4Error = { readonly kind: 'bad-ipv4'; readonly text: string };

/** [parseIpv4 s] accepts dotted-quad decimal only ("10.0.0.1"; no octal, no shorthand). */
export function parseIpv4(text: string): Result<Ipv4Addr, Ipv4Error> {
  const parts = text.split('.');
  if (parts.length !== 4) return err({ kind: 'bad-ipv4', text });
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return err({ kind: 'bad-ipv4', text });
    v = v * 256 + Number(p);
  }
  return ok(v as Ipv4Addr);
}
export function formatIpv4(a: Ipv4Addr): string {
  return [a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff].join('.');
}

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

/** IPv4 header without options (IHL = 5). */
export const Ipv4Hdr = {
  /** u8 version (high nibble, 4) and IHL in 32-bit words (low nibble) */
  versionIhl: 0,
  /** u8 DSCP/ECN */
  tos: 1,
  /** u16 BE header + payload length */
  totalLength: 2,
  /** u16 BE identification */
  id: 4,
  /** u16 BE flags (DF = 0x4000, MF = 0x2000) and fragment offset */
  flagsFrag: 6,
  /** u8 time to live */
  ttl: 8,
  /** u8 protocol (IPPROTO_*) */
  protocol: 9,
  /** u16 BE header checksum (RFC 791: ones' complement of the ones' complement sum) */
  checksum: 10,
  /** u32 BE source address */
  src: 12,
  /** u32 BE destination address */
  dst: 16,
  SIZE: 20,
} as const;

export const IP_DF = 0x4000;

/**
 * [internetChecksum b off len] is the RFC 1071 checksum of b[off, off+len):
 * the ones' complement of the ones' complement sum of big-endian 16-bit
 * words, an odd last byte padded with zero. `initial` carries a partial sum
 * (a pseudo-header).
 */
export function internetChecksum(b: Uint8Array, off = 0, len = b.length - off, initial = 0): number {
  let sum = initial;
  let i = off;
  const end = off + len;
  for (; i + 1 < end; i += 2) sum += getU16(b, i);
  if (i < end) sum += (b[i] as number) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

export interface Ipv4Fields {
  readonly src: Ipv4Addr;
  readonly dst: Ipv4Addr;
  readonly protocol: number;
  /** Bytes after the header. */
  readonly payloadLength: number;
  readonly ttl?: number;
  readonly id?: number;
  readonly tos?: number;
  /** Set Don't Fragment (default true, as Linux does for UDP with PMTU discovery). */
  readonly dontFragment?: boolean;
}

/** [buildIpv4Header f] is a 20-byte header with a correct checksum. */
export function buildIpv4Header(f: Ipv4Fields): Uint8Array {
  const total = Ipv4Hdr.SIZE + f.payloadLength;
  if (!Number.isInteger(f.payloadLength) || f.payloadLength < 0 || total > 0xffff) {
    throw new RangeError(`IPv4 payload length ${f.payloadLength} does not fit a 16-bit total length`);
  }
  const h = new Uint8Array(Ipv4Hdr.SIZE);
  h[Ipv4Hdr.versionIhl] = 0x45;
  h[Ipv4Hdr.tos] = f.tos ?? 0;
  putU16(h, Ipv4Hdr.totalLength, total);
  putU16(h, Ipv4Hdr.id, f.id ?? 0);
  putU16(h, Ipv4Hdr.flagsFrag, (f.dontFragment ?? true) ? IP_DF : 0);
  h[Ipv4Hdr.ttl] = f.ttl ?? 64;
  h[Ipv4Hdr.protocol] = f.protocol;
  putU32(h, Ipv4Hdr.src, f.src);
  putU32(h, Ipv4Hdr.dst, f.dst);
  putU16(h, Ipv4Hdr.checksum, internetChecksum(h)); // computed with the field still zero
  return h;
}

export interface Ipv4Packet {
  readonly headerLength: number;
  readonly totalLength: number;
  readonly protocol: number;
  readonly ttl: number;
  readonly src: Ipv4Addr;
  readonly dst: Ipv4Addr;
  /** Summing the header including its checksum field gives zero. */
  readonly checksumOk: boolean;
  readonly payload: Uint8Array;
}
export type Ipv4ParseError =
  | { readonly kind: 'short-packet'; readonly len: number; readonly need: number }
  | { readonly kind: 'not-ipv4'; readonly version: number }
  | { readonly kind: 'bad-ihl'; readonly ihl: number };

/** [parseIpv4Packet b] reads an IPv4 header (options skipped) from the start of b. */
export function parseIpv4Packet(b: Uint8Array): Result<Ipv4Packet, Ipv4ParseError> {
  if (b.length < Ipv4Hdr.SIZE) return err({ kind: 'short-packet', len: b.length, need: Ipv4Hdr.SIZE });
  const vi = b[Ipv4Hdr.versionIhl] as number;
  if (vi >>> 4 !== 4) return err({ kind: 'not-ipv4', version: vi >>> 4 });
  const ihl = vi & 0xf;
  if (ihl < 5) return err({ kind: 'bad-ihl', ihl });
  const headerLength = ihl * 4;
  const totalLength = getU16(b, Ipv4Hdr.totalLength);
  if (b.length < headerLength || totalLength < headerLength || b.length < totalLength) {
    return err({ kind: 'short-packet', len: b.length, need: Math.max(headerLength, totalLength) });
  }
  return ok({
    headerLength,
    totalLength,
    protocol: b[Ipv4Hdr.protocol] as number,
    ttl: b[Ipv4Hdr.ttl] as number,
    src: getU32(b, Ipv4Hdr.src) as Ipv4Addr,
    dst: getU32(b, Ipv4Hdr.dst) as Ipv4Addr,
    checksumOk: internetChecksum(b, 0, headerLength) === 0,
    payload: b.subarray(headerLength, totalLength),
  });
}

// ---------------------------------------------------------------- UDP

export const UdpHdr = {
  /** u16 BE source port */
  srcPort: 0,
  /** u16 BE destination port */
  dstPort: 2,
  /** u16 BE header + payload length */
  length: 4,
  /** u16 BE checksum over the IPv4 pseudo-header, header and payload; 0 = none */
  checksum: 6,
  SIZE: 8,
} as const;

/**
 * [buildUdp src dst srcPort dstPort payload] is a UDP header + payload with
 * the checksum computed over the IPv4 pseudo-header (src, dst, 0, 17, length).
 * A computed 0 is sent as 0xffff (RFC 768).
 */
export function buildUdp(src: Ipv4Addr, dst: Ipv4Addr, srcPort: number, dstPort: number, payload: Uint8Array): Uint8Array {
  const len = UdpHdr.SIZE + payload.length;
  if (len > 0xffff - Ipv4Hdr.SIZE) throw new RangeError(`UDP payload of ${payload.length} bytes is too long`);
  const u = new Uint8Array(len);
  putU16(u, UdpHdr.srcPort, srcPort);
  putU16(u, UdpHdr.dstPort, dstPort);
  putU16(u, UdpHdr.length, len);
  u.set(payload, UdpHdr.SIZE);
  const pseudo = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + IPPROTO_UDP + len;
  const c = internetChecksum(u, 0, len, pseudo);
  putU16(u, UdpHdr.checksum, c === 0 ? 0xffff : c);
  return u;
}

export interface UdpFrameFields {
  readonly srcMac: MacAddr;
  readonly dstMac: MacAddr;
  readonly srcIp: Ipv4Addr;
  readonly dstIp: Ipv4Addr;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly payload: Uint8Array;
  readonly ttl?: number;
  readonly id?: number;
}

/** [buildUdpFrame f] is a whole Ethernet/IPv4/UDP frame with both checksums correct. */
export function buildUdpFrame(f: UdpFrameFields): Uint8Array {
  const udp = buildUdp(f.srcIp, f.dstIp, f.srcPort, f.dstPort, f.payload);
  const ipFields: Ipv4Fields = { src: f.srcIp, dst: f.dstIp, protocol: IPPROTO_UDP, payloadLength: udp.length, ttl: f.ttl, id: f.id };
  const ip = buildIpv4Header(ipFields);
  const packet = new Uint8Array(ip.length + udp.length);
  packet.set(ip, 0);
  packet.set(udp, ip.length);
  return buildEthernet(f.dstMac, f.srcMac, ETH_P_IP, packet);
}

// ---------------------------------------------------------------- ARP

/** ARP for IPv4 over Ethernet (RFC 826). */
export const ArpHdr = {
  /** u16 BE hardware type (1 = Ethernet) */
  htype: 0,
  /** u16 BE protocol type (0x0800) */
  ptype: 2,
  /** u8 hardware address length (6) */
  hlen: 4,
  /** u8 protocol address length (4) */
  plen: 5,
  /** u16 BE operation (1 request, 2 reply) */
  oper: 6,
  /** u8[6] sender hardware address */
  sha: 8,
  /** u32 BE sender protocol address */
  spa: 14,
  /** u8[6] target hardware address (zero in a request) */
  tha: 18,
  /** u32 BE target protocol address */
  tpa: 24,
  SIZE: 28,
} as const;

export const ARPOP_REQUEST = 1;
export const ARPOP_REPLY = 2;

/**
 * [buildArpRequest senderMac senderIp targetIp] is the 42-byte broadcast
 * "Who has targetIp? Tell senderIp" frame.
 */
export function buildArpRequest(senderMac: MacAddr, senderIp: Ipv4Addr, targetIp: Ipv4Addr): Uint8Array {
  const a = new Uint8Array(ArpHdr.SIZE);
  putU16(a, ArpHdr.htype, 1);
  putU16(a, ArpHdr.ptype, ETH_P_IP);
  a[ArpHdr.hlen] = MAC_LEN;
  a[ArpHdr.plen] = 4;
  putU16(a, ArpHdr.oper, ARPOP_REQUEST);
  a.set(macToBytes(senderMac), ArpHdr.sha);
  putU32(a, ArpHdr.spa, senderIp);
  // tha stays zero: unknown, that is the question
  putU32(a, ArpHdr.tpa, targetIp);
  return buildEthernet(BROADCAST_MAC, senderMac, ETH_P_ARP, a);
}
