import { expect } from 'chai';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unwrap } from '../../../shared/result.ts';
import { systemClock } from '../../../domU/workloads/block-device.ts';
import {
  ETH,
  FrameInfo,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4,
  TCP_ACK,
  TCP_PAYLOAD_OFFSET,
  TCP_SYN,
  UDP_PAYLOAD_OFFSET,
  formatIpv4,
  formatMac,
  finishChecksum,
  internetChecksum,
  onesSum,
  parseFrameInto,
  parseIpv4,
  parseMac,
  writeTcpFrame,
  writeUdpFrame,
  type FlowAddr,
} from '../../../domU/workloads/frames.ts';
import { runIperf } from '../../../domU/workloads/iperf-engine.ts';
import { createLoopbackPair } from '../../helpers/loopback-net.ts';
import { completeL4Checksum } from '../../../domU/netfront/netfront.ts';

const flow: FlowAddr = {
  srcMac: unwrap(parseMac('00:16:3e:00:00:01')),
  dstMac: unwrap(parseMac('00:16:3e:00:00:02')),
  srcIp: unwrap(parseIpv4('10.0.0.2')),
  dstIp: unwrap(parseIpv4('10.0.0.3')),
  srcPort: 40000,
  dstPort: 5201,
};

/** A classic pcap (ns timestamps, LINKTYPE_ETHERNET) of the given frames. */
function pcap(frames: readonly { t: bigint; data: Uint8Array }[]): Buffer {
  const parts: Buffer[] = [];
  const g = Buffer.alloc(24);
  g.writeUInt32LE(0xa1b23c4d, 0);
  g.writeUInt16LE(2, 4);
  g.writeUInt16LE(4, 6);
  g.writeUInt32LE(65535, 16);
  g.writeUInt32LE(1, 20);
  parts.push(g);
  for (const f of frames) {
    const h = Buffer.alloc(16);
    h.writeUInt32LE(Number(f.t / 1_000_000_000n), 0);
    h.writeUInt32LE(Number(f.t % 1_000_000_000n), 4);
    h.writeUInt32LE(f.data.length, 8);
    h.writeUInt32LE(f.data.length, 12);
    parts.push(h, Buffer.from(f.data));
  }
  return Buffer.concat(parts);
}

describe('frames', () => {
  it('computes the RFC 1071 checksum of a known IPv4 header', () => {
    const hdr = Buffer.from('450000730000400040110000c0a80001c0a800c7', 'hex');
    expect(internetChecksum(hdr)).to.equal(0xb861);
    hdr.writeUInt16BE(0xb861, 10);
    expect(internetChecksum(hdr)).to.equal(0);
  });

  it('sums any range at any alignment exactly as the 16-bit word loop does', () => {
    /** The reference: RFC 1071's loop, one big-endian word at a time. */
    const reference = (b: Uint8Array, start: number, end: number, acc: number): number => {
      let s = acc;
      for (let i = start; i < end; i += 2) s += ((b[i] as number) << 8) | (i + 1 < end ? (b[i + 1] as number) : 0);
      return finishChecksum(s);
    };
    const backing = new Uint8Array(70_000);
    fc.assert(fc.property(
      fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 66_000 }), fc.integer({ min: 0, max: 0x3ffff }),
      fc.constantFrom('random', 'zeros', 'ones'), fc.integer(),
      (viewOff, start, len, acc, fill, seed) => {
        let x = seed | 1;
        for (let i = 0; i < backing.length; i++) {
          x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
          backing[i] = fill === 'random' ? x & 0xff : fill === 'zeros' ? 0 : 0xff;
        }
        const b = backing.subarray(viewOff);
        expect(finishChecksum(onesSum(b, start, start + len, acc))).to.equal(reference(b, start, start + len, acc));
      },
    ), { numRuns: 120 });
  });

  it('parses and formats MAC and IPv4 addresses, rejecting malformed ones', () => {
    expect(formatMac(unwrap(parseMac('00:16:3E:0a:ff:01')))).to.equal('00:16:3e:0a:ff:01');
    expect(formatIpv4(unwrap(parseIpv4('192.168.1.254')))).to.equal('192.168.1.254');
    expect(parseMac('00:16:3e:00:00')).to.deep.equal({ ok: false, error: { kind: 'bad-mac', text: '00:16:3e:00:00' } });
    expect(parseIpv4('10.0.0.256').ok).to.equal(false);
    expect(parseIpv4('10.0.01.1').ok).to.equal(false);
  });

  it('builds a UDP frame whose IPv4 and UDP checksums verify, and parses it back', () => {
    const buf = new Uint8Array(1514);
    buf.set(new TextEncoder().encode('hello, xen'), UDP_PAYLOAD_OFFSET);
    const len = writeUdpFrame(buf, flow, 10, 0x1234);
    expect(len).to.equal(14 + 20 + 8 + 10);
    const frame = buf.subarray(0, len);
    expect(internetChecksum(frame, ETH.SIZE, ETH.SIZE + IPV4.SIZE)).to.equal(0);
    const info = new FrameInfo();
    expect(parseFrameInto(frame, info)).to.equal(null);
    expect(info).to.include({ proto: IPPROTO_UDP, srcPort: 40000, dstPort: 5201, ipId: 0x1234, payloadOffset: UDP_PAYLOAD_OFFSET, payloadLength: 10 });
    expect(formatIpv4(info.srcIp)).to.equal('10.0.0.2');
  });

  it('builds TCP frames (with SYN options) that parse back with every field', () => {
    const buf = new Uint8Array(1514);
    const info = new FrameInfo();
    const syn = buf.subarray(0, writeTcpFrame(buf, flow, { seq: 0xfffffff0, ack: 0, flags: TCP_SYN, window: 65535, synOptions: { mss: 1460, wscale: 7 } }, 0, 1));
    expect(parseFrameInto(syn, info)).to.equal(null);
    expect(info).to.include({ proto: IPPROTO_TCP, seq: 0xfffffff0, flags: TCP_SYN, window: 65535, mss: 1460, wscale: 7, payloadLength: 0 });
    buf.fill(0xab, TCP_PAYLOAD_OFFSET, TCP_PAYLOAD_OFFSET + 1460);
    const data = buf.subarray(0, writeTcpFrame(buf, flow, { seq: 7, ack: 99, flags: TCP_ACK, window: 512 }, 1460, 2));
    expect(data.length).to.equal(1514);
    expect(parseFrameInto(data, info)).to.equal(null);
    expect(info).to.include({ seq: 7, ack: 99, flags: TCP_ACK, window: 512, mss: 0, wscale: -1, payloadOffset: TCP_PAYLOAD_OFFSET, payloadLength: 1460 });
  });

  it('leaves the L4 checksum to the device when asked (CHECKSUM_PARTIAL): pseudo-header sum only, and completing it gives the full frame', () => {
    for (const proto of ['tcp', 'udp'] as const) {
      const full = new Uint8Array(1514);
      const partial = new Uint8Array(1514);
      for (const b of [full, partial]) b.fill(0x5c, TCP_PAYLOAD_OFFSET - 12, 1514);
      const write = (b: Uint8Array, csumPartial: boolean): number => proto === 'tcp'
        ? writeTcpFrame(b, flow, { seq: 9, ack: 1, flags: TCP_ACK, window: 100 }, 1000, 4, csumPartial)
        : writeUdpFrame(b, flow, 1000, 4, csumPartial);
      const len = write(full, false);
      expect(write(partial, true)).to.equal(len);
      const at = ETH.SIZE + IPV4.SIZE + (proto === 'tcp' ? 16 : 6);
      // Only the L4 checksum differs, and the partial frame fails a software check until completed.
      expect(Buffer.from(partial.subarray(0, at)).equals(Buffer.from(full.subarray(0, at)))).to.equal(true);
      expect(Buffer.from(partial.subarray(at + 2, len)).equals(Buffer.from(full.subarray(at + 2, len)))).to.equal(true);
      const info = new FrameInfo();
      expect(parseFrameInto(partial.subarray(0, len), info)).to.equal('bad-l4-checksum');
      expect(parseFrameInto(partial.subarray(0, len), info, false)).to.equal(null);
      // The field holds the folded pseudo-header sum (Linux's ~csum_tcpudp_magic(.., 0)), which a device completes.
      const l4Len = len - ETH.SIZE - IPV4.SIZE;
      const pseudo = (flow.srcIp >>> 16) + (flow.srcIp & 0xffff) + (flow.dstIp >>> 16) + (flow.dstIp & 0xffff) + (proto === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP) + l4Len;
      expect(((partial[at] as number) << 8) | (partial[at + 1] as number)).to.equal(0xffff - finishChecksum(pseudo));
      completeL4Checksum(partial, len);
      expect(Buffer.from(partial.subarray(0, len)).equals(Buffer.from(full.subarray(0, len)))).to.equal(true);
    }
  });

  it('refuses damaged frames with the reason', () => {
    const buf = new Uint8Array(1514);
    const len = writeTcpFrame(buf, flow, { seq: 1, ack: 1, flags: TCP_ACK, window: 1 }, 100, 3);
    const info = new FrameInfo();
    const damaged = (at: number, xor: number): string | null => {
      const f = buf.slice(0, len);
      f[at] = (f[at] as number) ^ xor;
      return parseFrameInto(f, info);
    };
    expect(damaged(ETH.SIZE + IPV4.TTL, 1)).to.equal('bad-ip-checksum');
    expect(damaged(TCP_PAYLOAD_OFFSET + 50, 4)).to.equal('bad-l4-checksum');
    expect(damaged(ETH.TYPE, 0xff)).to.equal('not-ipv4');
    expect(parseFrameInto(buf.subarray(0, 20), info)).to.equal('runt');
    expect(parseFrameInto(buf.subarray(0, len - 1), info)).to.equal('bad-length');
  });

  it('produces captures that tshark decodes with good IPv4, TCP and UDP checksums', async function () {
    this.timeout(60_000);
    if (spawnSync('tshark', ['--version']).status !== 0) {
      console.warn('SKIPPED: tshark check of our frames because tshark is not installed');
      this.skip();
    }
    const frames: { t: bigint; data: Uint8Array }[] = [];
    const capture = (_from: 'a' | 'b', f: Uint8Array, t: bigint): void => {
      frames.push({ t: 1_700_000_000_000_000_000n + t - t0, data: f.slice() });
    };
    const t0 = systemClock.now();
    for (const protocol of ['tcp', 'udp'] as const) {
      const { a, b } = createLoopbackPair({ clock: systemClock, capture, lossRate: protocol === 'tcp' ? 0.05 : 0, seed: 4 });
      const r = unwrap(await runIperf({ clock: systemClock, spec: { protocol, bytes: 64 * 1024, bitrate: 0, length: protocol === 'udp' ? 1000 : 8192 }, client: { device: a, ip: '10.0.0.2' }, server: { device: b, ip: '10.0.0.3' } }));
      expect(r.client.error).to.equal(undefined);
    }
    const dir = mkdtempSync(join(tmpdir(), 'xensim-pcap-'));
    try {
      const file = join(dir, 'iperf.pcap');
      writeFileSync(file, pcap(frames));
      const out = spawnSync(
        'tshark',
        ['-r', file, '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=,',
          '-e', 'frame.protocols', '-e', 'ip.checksum.status', '-e', 'tcp.checksum.status', '-e', 'udp.checksum.status', '-e', 'tcp.flags.syn', '-e', 'udp.dstport'],
        { encoding: 'utf8' },
      );
      expect(out.status, out.stderr).to.equal(0);
      const rows = out.stdout.trim().split('\n').map((l) => l.split(','));
      expect(rows).to.have.length(frames.length);
      const protos = new Set(rows.map((r) => r[0]));
      expect([...protos].sort()).to.deep.equal(['eth:ethertype:ip:tcp', 'eth:ethertype:ip:tcp:data', 'eth:ethertype:ip:udp:data']);
      // Wireshark's checksum status: 1 = good, 0 = bad, 2 = unverified.
      for (const r of rows) {
        expect(r[1], r.join(',')).to.equal('1');
        expect(r[2] === '1' || r[3] === '1', r.join(',')).to.equal(true);
      }
      expect(rows.some((r) => r[4] === '1')).to.equal(true); // SYNs decoded as such
      expect(rows.filter((r) => r[5] === '5201').length).to.be.greaterThan(60);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
