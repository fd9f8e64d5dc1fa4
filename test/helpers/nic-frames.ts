/**
 * ICMP echo frames for the NIC-port tests: what a guest sends to a host
 * outside the machine (ping without ARP: the guest knows the host's MAC), and
 * the check that an answer is that request's echo reply, byte for byte.
 */
import {
  ETH, ETHERTYPE_IPV4, IPV4, formatMac, get16, get32, internetChecksum, parseIpv4, parseMac, put16, put32,
} from '../../domU/workloads/frames.ts';

/** ICMP echo header after the IPv4 header. */
export const ICMP_ECHO = {
  TYPE: 0, // u8 [TX] 8 request, 0 reply
  CODE: 1, // u8 [TX] 0
  CHECKSUM: 2, // u16 [TX] over the ICMP message
  ID: 4, // u16 [TX]
  SEQ: 6, // u16 [TX]
  SIZE: 8,
} as const;
const IPPROTO_ICMP = 1;
const ICMP_AT = ETH.SIZE + IPV4.SIZE;

export interface PingEnds { readonly srcMac: string; readonly dstMac: string; readonly srcIp: string; readonly dstIp: string }

function must<T>(r: { ok: true; value: T } | { ok: false; error: unknown }): T {
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
}

/** Payload byte i of echo `seq`. */
const payloadByte = (seq: number, i: number): number => (seq * 29 + i * 11 + 3) & 0xff;

/** [echoRequest e id seq payloadLen] is an Ethernet frame holding an ICMP echo request with good checksums. */
export function echoRequest(e: PingEnds, id: number, seq: number, payloadLen: number): Uint8Array {
  const b = new Uint8Array(ICMP_AT + ICMP_ECHO.SIZE + payloadLen);
  b.set(must(parseMac(e.dstMac)), ETH.DST);
  b.set(must(parseMac(e.srcMac)), ETH.SRC);
  put16(b, ETH.TYPE, ETHERTYPE_IPV4);
  const ip = ETH.SIZE;
  b[ip + IPV4.VER_IHL] = 0x45;
  put16(b, ip + IPV4.TOTAL_LEN, IPV4.SIZE + ICMP_ECHO.SIZE + payloadLen);
  put16(b, ip + IPV4.ID, seq & 0xffff);
  put16(b, ip + IPV4.FLAGS_FRAG, 0x4000);
  b[ip + IPV4.TTL] = 64;
  b[ip + IPV4.PROTO] = IPPROTO_ICMP;
  put32(b, ip + IPV4.SRC, must(parseIpv4(e.srcIp)));
  put32(b, ip + IPV4.DST, must(parseIpv4(e.dstIp)));
  put16(b, ip + IPV4.CHECKSUM, internetChecksum(b, ip, ip + IPV4.SIZE));
  b[ICMP_AT + ICMP_ECHO.TYPE] = 8;
  put16(b, ICMP_AT + ICMP_ECHO.ID, id);
  put16(b, ICMP_AT + ICMP_ECHO.SEQ, seq & 0xffff);
  for (let i = 0; i < payloadLen; i++) b[ICMP_AT + ICMP_ECHO.SIZE + i] = payloadByte(seq, i);
  put16(b, ICMP_AT + ICMP_ECHO.CHECKSUM, internetChecksum(b, ICMP_AT, b.length));
  return b;
}

/**
 * [checkEchoReply request reply] is null when reply answers request exactly
 * (MACs and IPs swapped, type 0, every checksum valid, id, seq and payload
 * unchanged), else what is wrong.
 */
export function checkEchoReply(request: Uint8Array, reply: Uint8Array): string | null {
  if (reply.length !== request.length) return `length ${reply.length}, expected ${request.length}`;
  if (formatMac(reply, ETH.DST) !== formatMac(request, ETH.SRC)) return `to ${formatMac(reply, ETH.DST)}, not the sender`;
  if (formatMac(reply, ETH.SRC) !== formatMac(request, ETH.DST)) return `from ${formatMac(reply, ETH.SRC)}, not the pinged host`;
  const ip = ETH.SIZE;
  if (get32(reply, ip + IPV4.SRC) !== get32(request, ip + IPV4.DST) || get32(reply, ip + IPV4.DST) !== get32(request, ip + IPV4.SRC)) return 'IP addresses not swapped';
  if (internetChecksum(reply, ip, ip + IPV4.SIZE) !== 0) return 'bad IPv4 header checksum';
  if (reply[ICMP_AT + ICMP_ECHO.TYPE] !== 0) return `ICMP type ${reply[ICMP_AT + ICMP_ECHO.TYPE]}, not an echo reply`;
  if (internetChecksum(reply, ICMP_AT, reply.length) !== 0) return 'bad ICMP checksum';
  for (const off of [ICMP_AT + ICMP_ECHO.ID, ICMP_AT + ICMP_ECHO.SEQ]) if (get16(reply, off) !== get16(request, off)) return 'id or seq changed';
  for (let i = ICMP_AT + ICMP_ECHO.SIZE; i < reply.length; i++) if (reply[i] !== request[i]) return `payload byte ${i} changed`;
  return null;
}

/** [echoSeq frame] is an ICMP echo frame's sequence number. */
export function echoSeq(frame: Uint8Array): number { return get16(frame, ICMP_AT + ICMP_ECHO.SEQ); }
