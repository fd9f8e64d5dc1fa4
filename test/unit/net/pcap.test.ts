import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ETH_P_ARP, ETH_P_IP, buildArpRequest, buildUdpFrame, parseIpv4, xenMac, type Ipv4Addr } from '../../../shared/net/ethernet.ts';
import {
  PCAP_MAGIC_NSEC, PCAP_MAGIC_USEC, PcapFileHdr, PcapReader, PcapRecHdr, PcapWriter, bufferSink, describePcapError,
  encodePcap, fileSink, readPcap, streamSink, summarizePcap, type PcapPacket, type PcapPrecision,
} from '../../../shared/net/pcap.ts';
import { unwrap } from '../../../shared/result.ts';

const ip = (s: string): Ipv4Addr => unwrap(parseIpv4(s));
const T0 = 1_700_000_000_000_000_000n; // 1700000000.000000 s in ns, as in ECOSYSTEM.md §5

/** The two frames of ECOSYSTEM.md §5: an ARP request and a 17-byte UDP datagram. */
function twoFrames(extraNs = 0n): PcapPacket[] {
  return [
    { tsNs: T0, frame: buildArpRequest(xenMac(1), ip('10.0.0.2'), ip('10.0.0.1')) },
    {
      tsNs: T0 + 1_500_000n + extraNs,
      frame: buildUdpFrame({
        srcMac: xenMac(1), dstMac: xenMac(2), srcIp: ip('10.0.0.2'), dstIp: ip('10.0.0.3'),
        srcPort: 40000, dstPort: 9, payload: new TextEncoder().encode('hello from domU 1'),
      }),
    },
  ];
}

function have(tool: string): boolean {
  return spawnSync(tool, ['--version'], { encoding: 'utf8' }).error === undefined;
}
function run(tool: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(tool, args, { encoding: 'utf8' });
  // tshark warns on stderr when run as root; that line says nothing about the file.
  const stderr = r.stderr.split('\n').filter((l) => !/Running as user .* dangerous/.test(l) && l.trim() !== '').join('\n');
  return { status: r.status, stdout: r.stdout, stderr };
}

describe('pcap writer and reader', () => {
  it('writes the 24-byte global header and 16-byte record headers exactly', () => {
    const bytes = unwrap(encodePcap(twoFrames()));
    const g = bytes.subarray(0, PcapFileHdr.SIZE).toString('hex');
    expect(g).to.equal('d4c3b2a1' + '0200' + '0400' + '00000000' + '00000000' + 'ffff0000' + '01000000');
    const r1 = bytes.subarray(PcapFileHdr.SIZE, PcapFileHdr.SIZE + PcapRecHdr.SIZE).toString('hex');
    expect(r1).to.equal('00f15365' + '00000000' + '2a000000' + '2a000000'); // 1700000000 s, 0 µs, 42, 42
    const r2at = PcapFileHdr.SIZE + PcapRecHdr.SIZE + 42;
    expect(bytes.subarray(r2at, r2at + PcapRecHdr.SIZE).toString('hex')).to.equal('00f15365' + 'dc050000' + '3b000000' + '3b000000'); // 1500 µs, 59
    expect(bytes.length).to.equal(24 + 16 + 42 + 16 + 59);
    expect(unwrap(encodePcap([], { precision: 'ns' })).readUInt32LE(0)).to.equal(PCAP_MAGIC_NSEC);
  });

  it('round-trips records in both precisions, truncating to µs only in µs files', () => {
    const pkts = twoFrames(123n); // 1.500123 ms after T0
    for (const precision of ['us', 'ns'] as const) {
      const c = unwrap(readPcap(unwrap(encodePcap(pkts, { precision }))));
      expect(c.header).to.deep.equal({ byteOrder: 'le', precision, versionMajor: 2, versionMinor: 4, thiszone: 0, sigfigs: 0, snaplen: 65535, linktype: 1 });
      expect(c.records.map((r) => r.tsNs)).to.deep.equal([T0, T0 + (precision === 'ns' ? 1_500_123n : 1_500_000n)]);
      expect(c.records.map((r) => Buffer.from(r.data))).to.deep.equal(pkts.map((p) => Buffer.from(p.frame)));
    }
  });

  it('round-trips arbitrary packets and timestamps (property)', () => {
    const pkt = fc.record({
      tsNs: fc.bigInt({ min: 0n, max: 0xffff_ffffn * 1_000_000_000n + 999_999_999n }),
      frame: fc.uint8Array({ maxLength: 300 }),
    });
    fc.assert(fc.property(fc.array(pkt, { maxLength: 20 }), fc.constantFrom<PcapPrecision>('us', 'ns'), (pkts, precision) => {
      const c = unwrap(readPcap(unwrap(encodePcap(pkts, { precision }))));
      expect(c.records.length).to.equal(pkts.length);
      c.records.forEach((r, i) => {
        const p = pkts[i] as PcapPacket;
        expect(r.tsNs).to.equal(precision === 'ns' ? p.tsNs : p.tsNs - (p.tsNs % 1000n));
        expect(Buffer.from(r.data).equals(Buffer.from(p.frame))).to.equal(true);
        expect(r.origLen).to.equal(p.frame.length);
      });
    }), { numRuns: 100 });
  });

  it('cuts frames at snaplen and keeps the original length', () => {
    const big = new Uint8Array(1000).fill(7);
    const c = unwrap(readPcap(unwrap(encodePcap([{ tsNs: T0, frame: big }], { snaplen: 128 }))));
    expect(c.records[0]).to.deep.include({ inclLen: 128, origLen: 1000 });
    expect(summarizePcap(c)).to.deep.include({ packets: 1, bytesCaptured: 128, bytesOnWire: 1000, cutAtSnaplen: 1 });
  });

  it('refuses timestamps it cannot store, bad lengths, and writes after close', async () => {
    const w = new PcapWriter(bufferSink());
    expect(w.writePacket(-1n, new Uint8Array(1))).to.deep.equal({ ok: false, error: { kind: 'bad-timestamp', tsNs: -1n } });
    const tooLate = 0x1_0000_0000n * 1_000_000_000n;
    expect(w.writePacket(tooLate, new Uint8Array(1))).to.deep.equal({ ok: false, error: { kind: 'bad-timestamp', tsNs: tooLate } });
    expect(w.writePacket(T0, new Uint8Array(10), 5)).to.deep.equal({ ok: false, error: { kind: 'bad-length', frameLen: 10, origLen: 5 } });
    expect(w.packets).to.equal(0);
    await w.close();
    expect(w.writePacket(T0, new Uint8Array(1))).to.deep.equal({ ok: false, error: { kind: 'closed' } });
  });

  it('reads big-endian captures too', () => {
    const le = unwrap(encodePcap(twoFrames()));
    const be = toBigEndian(le);
    expect(be.readUInt32BE(0)).to.equal(PCAP_MAGIC_USEC);
    const a = unwrap(readPcap(le));
    const b = unwrap(readPcap(be));
    expect(b.header.byteOrder).to.equal('be');
    expect(b.records.map((r) => [r.tsNs, r.inclLen, Buffer.from(r.data).toString('hex')]))
      .to.deep.equal(a.records.map((r) => [r.tsNs, r.inclLen, Buffer.from(r.data).toString('hex')]));
  });

  it('reports a capture cut inside a record as truncated, keeping the whole records before it', () => {
    const bytes = unwrap(encodePcap(twoFrames()));
    const cutData = bytes.subarray(0, bytes.length - 10);
    const e = readPcap(cutData);
    expect(e).to.deep.equal({ ok: false, error: { kind: 'truncated', index: 1, offset: 82, part: 'record-data', need: 59, have: 49, recordsRead: 1 } });
    if (!e.ok) expect(describePcapError(e.error)).to.match(/cut short in the middle of a packet: record 2 at byte 82/);
    const cutHeader = bytes.subarray(0, 82 + 7);
    expect(readPcap(cutHeader)).to.deep.include({ ok: false });
    const rd = unwrap(PcapReader.open(cutHeader));
    expect(unwrap(rd.next())?.index).to.equal(0);
    const n2 = rd.next();
    expect(n2.ok ? null : n2.error).to.deep.include({ kind: 'truncated', part: 'record-header', have: 7, recordsRead: 1 });
    expect(rd.next().ok, 'the error sticks').to.equal(false);
    expect(readPcap(bytes.subarray(0, 20))).to.deep.equal({ ok: false, error: { kind: 'short-header', len: 20, need: 24 } });
  });

  it('refuses files that are not classic pcap, and records that claim absurd sizes', () => {
    const pcapng = Buffer.from('0a0d0d0a' + '00'.repeat(24), 'hex');
    expect(readPcap(pcapng)).to.deep.equal({ ok: false, error: { kind: 'bad-magic', magic: 0x0a0d0d0a } });
    const bytes = Buffer.from(unwrap(encodePcap(twoFrames())));
    bytes.writeUInt32LE(0x7fff_ffff, PcapFileHdr.SIZE + PcapRecHdr.inclLen);
    expect(readPcap(bytes)).to.deep.equal({ ok: false, error: { kind: 'bad-record', index: 0, offset: 24, inclLen: 0x7fff_ffff, limit: 262144 } });
  });

  it('summarises a capture: counts, time span, order and EtherTypes', () => {
    const pkts = [...twoFrames(), { tsNs: T0 + 1_000n, frame: new Uint8Array(10) }];
    const s = summarizePcap(unwrap(readPcap(unwrap(encodePcap(pkts, { precision: 'ns' })))));
    expect(s).to.deep.include({ packets: 3, bytesCaptured: 42 + 59 + 10, firstTsNs: T0, lastTsNs: T0 + 1_000n, inTimeOrder: false });
    expect([...s.byEthertype]).to.deep.equal([[ETH_P_ARP, 1], [ETH_P_IP, 1], [-1, 1]]);
  });

  it('writes the same bytes through a file sink, a stream sink and a buffer sink', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xensim-pcap-'));
    try {
      const expected = unwrap(encodePcap(twoFrames()));
      const viaFile = join(dir, 'f.pcap');
      const wf = new PcapWriter(fileSink(viaFile));
      for (const p of twoFrames()) unwrap(wf.writePacket(p.tsNs, p.frame));
      await wf.close();
      expect(readFileSync(viaFile).equals(expected)).to.equal(true);
      const viaStream = join(dir, 's.pcap');
      const ws = new PcapWriter(streamSink(createWriteStream(viaStream)));
      for (const p of twoFrames()) unwrap(ws.writePacket(p.tsNs, p.frame));
      await ws.close();
      expect(readFileSync(viaStream).equals(expected)).to.equal(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pcap files as tshark and capinfos read them', function () {
  let dir: string;
  before(function () {
    for (const tool of ['tshark', 'capinfos']) {
      if (!have(tool)) {
        console.warn(`SKIPPED: pcap checks against real tools because ${tool} is not installed (apt-get install tshark)`);
        this.skip();
      }
    }
  });
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'xensim-tshark-')); });
  afterEach(() => { rmSync(dir, { recursive: true, force: true }); });

  const FIELDS = [
    'frame.number', 'frame.time_epoch', 'frame.len', 'eth.src', 'eth.dst', 'eth.type', 'arp.opcode', 'arp.src.proto_ipv4', 'arp.dst.proto_ipv4',
    'ip.src', 'ip.dst', 'ip.checksum.status', 'udp.srcport', 'udp.dstport', 'udp.length', 'udp.checksum.status',
  ];
  function fields(path: string): string[][] {
    const args = ['-r', path, '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-T', 'fields', ...FIELDS.flatMap((f) => ['-e', f])];
    const r = run('tshark', args);
    expect(r.status, r.stderr).to.equal(0);
    return r.stdout.trimEnd().split('\n').map((l) => l.split('\t'));
  }

  it('decodes our ARP and UDP frames: MACs, IPs, ports, and checksums good (µs file)', function () {
    this.timeout(30000);
    const path = join(dir, 'two.pcap');
    writeFileSync(path, unwrap(encodePcap(twoFrames())));
    const rows = fields(path);
    expect(rows).to.deep.equal([
      ['1', '1700000000.000000000', '42', '00:16:3e:00:00:01', 'ff:ff:ff:ff:ff:ff', '0x0806', '1', '10.0.0.2', '10.0.0.1', '', '', '', '', '', '', ''],
      ['2', '1700000000.001500000', '59', '00:16:3e:00:00:01', '00:16:3e:00:00:02', '0x0800', '', '', '', '10.0.0.2', '10.0.0.3', '1', '40000', '9', '25', '1'],
    ]);
    const summary = run('tshark', ['-r', path]);
    expect(summary.stdout).to.match(/Xensourc_00:00:01 → Broadcast\s+ARP 42 Who has 10\.0\.0\.1\? Tell 10\.0\.0\.2/);
    expect(summary.stdout).to.match(/10\.0\.0\.2 → 10\.0\.0\.3\s+UDP 59 40000 → 9 Len=17/);
  });

  it('keeps nanoseconds in an ns file, and capinfos agrees on type, count, precision and order', function () {
    this.timeout(30000);
    const path = join(dir, 'ns.pcap');
    writeFileSync(path, unwrap(encodePcap(twoFrames(123n), { precision: 'ns' })));
    expect(fields(path).map((r) => r[1])).to.deep.equal(['1700000000.000000000', '1700000000.001500123']);
    const info = run('capinfos', [path]);
    expect(info.status, info.stderr).to.equal(0);
    expect(info.stdout).to.match(/File type:\s+Wireshark\/tcpdump\/\.\.\. - nanosecond pcap/);
    expect(info.stdout).to.match(/File encapsulation:\s+Ethernet/);
    expect(info.stdout).to.match(/Number of packets:\s+2\b/);
    expect(info.stdout).to.match(/File timestamp precision:\s+nanoseconds \(9\)/);
    expect(info.stdout).to.match(/Strict time order:\s+True/);
    expect(info.stdout).to.match(/Packet size limit:\s+file hdr: 65535 bytes/);
    const us = join(dir, 'us.pcap');
    writeFileSync(us, unwrap(encodePcap(twoFrames())));
    expect(run('capinfos', [us]).stdout).to.match(/File timestamp precision:\s+microseconds \(6\)/);
  });

  it('sees a corrupted IPv4 checksum as bad, so the good verdict above means something', function () {
    this.timeout(30000);
    const path = join(dir, 'bad.pcap');
    const bytes = Buffer.from(unwrap(encodePcap(twoFrames())));
    const ipChecksumAt = 24 + 16 + 42 + 16 + 14 + 10;
    bytes[ipChecksumAt] = (bytes[ipChecksumAt] as number) ^ 0xff;
    writeFileSync(path, bytes);
    expect(fields(path)[1]?.[11], 'ip.checksum.status 0 = bad').to.equal('0');
    const expert = run('tshark', ['-r', path, '-o', 'ip.check_checksum:TRUE', '-q', '-z', 'expert']);
    expect(expert.stdout).to.match(/Bad checksum/);
  });

  it('has tshark and capinfos report a truncated file as cut short, as our reader does', function () {
    this.timeout(30000);
    const path = join(dir, 'cut.pcap');
    const bytes = unwrap(encodePcap(twoFrames()));
    writeFileSync(path, bytes.subarray(0, bytes.length - 10));
    const t = run('tshark', ['-r', path]);
    expect(t.status).to.equal(2);
    expect(t.stderr).to.match(/cut short in the middle of a packet/);
    expect(t.stdout, 'the whole first record is still decoded').to.match(/ARP 42 Who has 10\.0\.0\.1/);
    const c = run('capinfos', [path]);
    expect(c.status).to.not.equal(0);
    expect(c.stderr + c.stdout).to.match(/cut short in the middle of a packet/);
    expect(readPcap(readFileSync(path))).to.deep.include({ ok: false });
  });

  it('reads a big-endian file the way our reader does', function () {
    this.timeout(30000);
    const path = join(dir, 'be.pcap');
    writeFileSync(path, toBigEndian(unwrap(encodePcap(twoFrames()))));
    expect(fields(path).map((r) => r.slice(0, 6))).to.deep.equal([
      ['1', '1700000000.000000000', '42', '00:16:3e:00:00:01', 'ff:ff:ff:ff:ff:ff', '0x0806'],
      ['2', '1700000000.001500000', '59', '00:16:3e:00:00:01', '00:16:3e:00:00:02', '0x0800'],
    ]);
  });
});

/** Rewrites a little-endian capture with every header field big-endian (frames untouched). */
function toBigEndian(le: Buffer): Buffer {
  const be = Buffer.from(le);
  be.writeUInt32BE(le.readUInt32LE(0), 0);
  be.writeUInt16BE(le.readUInt16LE(4), 4);
  be.writeUInt16BE(le.readUInt16LE(6), 6);
  for (const o of [8, 12, 16, 20]) be.writeUInt32BE(le.readUInt32LE(o), o);
  let at = PcapFileHdr.SIZE;
  while (at < le.length) {
    const incl = le.readUInt32LE(at + 8);
    for (let o = 0; o < 16; o += 4) be.writeUInt32BE(le.readUInt32LE(at + o), at + o);
    at += PcapRecHdr.SIZE + incl;
  }
  return be;
}
