/**
 * Frames for the network driver tests: UDP and TCP frames with real
 * checksums (domU/workloads/frames.ts), recognisable payloads, and a
 * receiver that records what a NetDevice hands it.
 */
import {
  FrameInfo, TCP_ACK, TCP_PAYLOAD_OFFSET, UDP_PAYLOAD_OFFSET, parseFrameInto, parseIpv4, parseMac, writeTcpFrame, writeUdpFrame,
  type FlowAddr,
} from '../../domU/workloads/frames.ts';
import type { NetDevice } from '../../domU/workloads/net-device.ts';

export interface Ends { readonly srcMac: string; readonly dstMac: string; readonly srcIp: string; readonly dstIp: string }

function must<T>(r: { ok: true; value: T } | { ok: false; error: unknown }): T {
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
}

export function flow(e: Ends, srcPort = 40000, dstPort = 9): FlowAddr {
  return {
    srcMac: must(parseMac(e.srcMac)), dstMac: must(parseMac(e.dstMac)),
    srcIp: must(parseIpv4(e.srcIp)), dstIp: must(parseIpv4(e.dstIp)), srcPort, dstPort,
  };
}

/** Payload byte i of frame `seq`: recognisable and different for every frame. */
export function payloadByte(seq: number, i: number): number {
  return (seq * 31 + i * 7 + (i >>> 8)) & 0xff;
}

/** [udpFrame f seq payloadLen] is a UDP frame with a patterned payload and good checksums. */
export function udpFrame(f: FlowAddr, seq: number, payloadLen: number): Uint8Array {
  const b = new Uint8Array(UDP_PAYLOAD_OFFSET + payloadLen);
  for (let i = 0; i < payloadLen; i++) b[UDP_PAYLOAD_OFFSET + i] = payloadByte(seq, i);
  const len = writeUdpFrame(b, f, payloadLen, seq & 0xffff);
  return b.subarray(0, len);
}

/** [tcpFrame f seq payloadLen] is a TCP segment (ACK|PSH) with a patterned payload and good checksums. */
export function tcpFrame(f: FlowAddr, seq: number, payloadLen: number, tcpSeq = 1000): Uint8Array {
  const b = new Uint8Array(TCP_PAYLOAD_OFFSET + payloadLen);
  for (let i = 0; i < payloadLen; i++) b[TCP_PAYLOAD_OFFSET + i] = payloadByte(seq, i);
  const len = writeTcpFrame(b, f, { seq: tcpSeq, ack: 1, flags: TCP_ACK | 0x08, window: 1000 }, payloadLen, seq & 0xffff);
  return b.subarray(0, len);
}

/** Records every frame a device receives (copies), with parse results. */
export class Sink {
  readonly frames: Uint8Array[] = [];
  readonly errors: string[] = [];
  bytes = 0;
  private readonly info = new FrameInfo();
  /** keep: copy every frame; parse: check every frame's headers and checksums (a full receive stack's cost). */
  constructor(dev: NetDevice, private readonly keep = true, parse = true) {
    dev.onReceive((f) => {
      this.bytes += f.length;
      const e = parse ? parseFrameInto(f, this.info) : null;
      if (e !== null) this.errors.push(e);
      if (this.keep) this.frames.push(f.slice());
      else this.count++;
    });
  }
  count = 0;
  get received(): number { return this.keep ? this.frames.length : this.count; }
}

/** [sendAll dev frames] sends every frame, waiting for room when the device is full. */
export async function sendAll(dev: NetDevice, frames: readonly Uint8Array[]): Promise<void> {
  for (const f of frames) {
    while (!dev.send(f)) await dev.whenWritable();
  }
}
