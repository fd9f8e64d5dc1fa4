/**
 * Software fallbacks for what a device would offload: completing a blank
 * (partial) L4 checksum, and segmenting a TCPv4 GSO packet into MSS-sized
 * segments (Linux's skb_checksum_help and skb_gso_segment), for ports and
 * guests that cannot take them as they are.
 *
 * Both work on a private copy of the frame (packet bytes are copied out once;
 * a segment is built in a scratch buffer and copied into fresh local pages).
 * Frames are Ethernet II + IPv4 (IHL ≥ 5) + TCP or UDP; anything else is
 * reported, never guessed at.
 */
import { err, ok, type Result } from '../../shared/result.ts';
import { XEN_NETIF_GSO_TYPE_TCPV4 } from '../../shared/abi/netif.ts';
import { type NetPacket, type PacketPool, MAX_PACKET_BYTES } from './packet.ts';

const ETH_HLEN = 14;
const ETHERTYPE_IPV4 = 0x0800;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

export type OffloadError =
  | { readonly kind: 'not-ipv4'; readonly ethertype: number }
  | { readonly kind: 'bad-ip-header'; readonly ihl: number; readonly len: number }
  | { readonly kind: 'not-tcp-udp'; readonly proto: number }
  | { readonly kind: 'bad-gso'; readonly gsoType: number; readonly gsoSize: number }
  | { readonly kind: 'out-of-buffers' };

function get16(b: Uint8Array, o: number): number { return ((b[o] as number) << 8) | (b[o + 1] as number); }
function put16(b: Uint8Array, o: number, v: number): void { b[o] = (v >>> 8) & 0xff; b[o + 1] = v & 0xff; }
function get32(b: Uint8Array, o: number): number { return (get16(b, o) * 0x10000 + get16(b, o + 2)) >>> 0; }
function put32(b: Uint8Array, o: number, v: number): void { put16(b, o, (v >>> 16) & 0xffff); put16(b, o + 2, v & 0xffff); }

/** Ones'-complement sum of bytes [start, end) as big-endian words (unfolded). */
function onesSum(b: Uint8Array, start: number, end: number, acc = 0): number {
  let s = acc;
  let i = start;
  for (const stop = end - 1; i < stop; i += 2) s += ((b[i] as number) << 8) | (b[i + 1] as number);
  if (i < end) s += (b[i] as number) << 8;
  return s;
}
function fold(acc: number): number {
  let s = acc;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}

interface L3L4 { ip: number; ihl: number; total: number; proto: number; l4: number; l4Len: number }

function parse(b: Uint8Array, len: number): Result<L3L4, OffloadError> {
  if (len < ETH_HLEN + 20) return err({ kind: 'bad-ip-header', ihl: 0, len });
  const et = get16(b, 12);
  if (et !== ETHERTYPE_IPV4) return err({ kind: 'not-ipv4', ethertype: et });
  const ip = ETH_HLEN;
  const ihl = ((b[ip] as number) & 0x0f) * 4;
  const total = get16(b, ip + 2);
  if ((b[ip] as number) >>> 4 !== 4 || ihl < 20 || total < ihl || ip + total > len) return err({ kind: 'bad-ip-header', ihl, len });
  const proto = b[ip + 9] as number;
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) return err({ kind: 'not-tcp-udp', proto });
  return ok({ ip, ihl, total, proto, l4: ip + ihl, l4Len: total - ihl });
}

function pseudo(b: Uint8Array, ip: number, proto: number, l4Len: number): number {
  return onesSum(b, ip + 12, ip + 20, proto + l4Len);
}

/** Writes a full L4 checksum (and the IPv4 header checksum) into the frame in b[0, len). */
function checksumFrame(b: Uint8Array, h: L3L4): void {
  put16(b, h.ip + 10, 0);
  put16(b, h.ip + 10, fold(onesSum(b, h.ip, h.ip + h.ihl)));
  const at = h.l4 + (h.proto === IPPROTO_TCP ? 16 : 6);
  put16(b, at, 0);
  let c = fold(onesSum(b, h.l4, h.l4 + h.l4Len, pseudo(b, h.ip, h.proto, h.l4Len)));
  if (h.proto === IPPROTO_UDP && c === 0) c = 0xffff;
  put16(b, at, c);
}

/**
 * [completeChecksum pool p] computes p's L4 checksum in software and writes
 * it into p's header (which must be local memory, as netback's copied header
 * is), clearing csumBlank. The whole packet is read once.
 */
export function completeChecksum(pool: PacketPool, p: NetPacket): Result<void, OffloadError> {
  const b = pool.scratchBuffer;
  pool.copyOut(p, b, 0, 0, p.len);
  const h = parse(b, p.len);
  if (!h.ok) return h;
  checksumFrame(b, h.value);
  const at = h.value.l4 + (h.value.proto === IPPROTO_TCP ? 16 : 6);
  if (!pool.writeLocal(p, at, b.subarray(at, at + 2)) || !pool.writeLocal(p, h.value.ip + 10, b.subarray(h.value.ip + 10, h.value.ip + 12))) {
    return err({ kind: 'bad-ip-header', ihl: h.value.ihl, len: p.len });
  }
  p.csumBlank = false;
  return ok(undefined);
}

/** [completeChecksumBytes frame] completes the checksums of a frame held in a private buffer. */
export function completeChecksumBytes(frame: Uint8Array): Result<void, OffloadError> {
  const h = parse(frame, frame.length);
  if (!h.ok) return h;
  checksumFrame(frame, h.value);
  return ok(undefined);
}

const segScratch = new Uint8Array(MAX_PACKET_BYTES);

/**
 * [segmentTcp4 pool p] cuts a TCPv4 GSO packet into segments of at most
 * p.gsoSize payload bytes, each a new local packet with its own IP id, TCP
 * sequence number, flags (FIN and PSH only on the last, CWR only on the
 * first) and full checksums. The caller releases p and owns the results.
 */
export function segmentTcp4(pool: PacketPool, p: NetPacket): Result<NetPacket[], OffloadError> {
  if (p.gsoType !== XEN_NETIF_GSO_TYPE_TCPV4 || p.gsoSize <= 0) return err({ kind: 'bad-gso', gsoType: p.gsoType, gsoSize: p.gsoSize });
  const b = pool.scratchBuffer;
  pool.copyOut(p, b, 0, 0, p.len);
  const h = parse(b, p.len);
  if (!h.ok) return h;
  const { ip, ihl, l4 } = h.value;
  if (h.value.proto !== IPPROTO_TCP) return err({ kind: 'not-tcp-udp', proto: h.value.proto });
  const thl = ((b[l4 + 12] as number) >>> 4) * 4;
  if (thl < 20 || thl > h.value.l4Len) return err({ kind: 'bad-ip-header', ihl, len: p.len });
  const hdr = l4 + thl;
  const payload = ip + h.value.total - hdr;
  const mss = p.gsoSize;
  const seq0 = get32(b, l4 + 4);
  const id0 = get16(b, ip + 4);
  const flags0 = b[l4 + 13] as number;
  const out: NetPacket[] = [];
  const s = segScratch;
  s.set(b.subarray(0, hdr), 0);
  for (let off = 0, i = 0; off < payload || (payload === 0 && i === 0); off += mss, i++) {
    const n = Math.min(mss, payload - off);
    const last = off + n >= payload;
    s.set(b.subarray(hdr + off, hdr + off + n), hdr);
    put16(s, ip + 2, ihl + thl + n);
    put16(s, ip + 4, (id0 + i) & 0xffff);
    put32(s, l4 + 4, (seq0 + off) >>> 0);
    let f = flags0;
    if (!last) f &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) f &= ~TCP_CWR;
    s[l4 + 13] = f;
    checksumFrame(s, { ip, ihl, total: ihl + thl + n, proto: IPPROTO_TCP, l4, l4Len: thl + n });
    const seg = pool.fromBytes(s, 0, hdr + n);
    if (seg === undefined) {
      for (const q of out) pool.release(q);
      return err({ kind: 'out-of-buffers' });
    }
    out.push(seg);
    if (payload === 0) break;
  }
  return ok(out);
}
