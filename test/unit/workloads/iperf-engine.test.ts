import { expect } from 'chai';
import { unwrap } from '../../../shared/result.ts';
import type { WorkloadClock } from '../../../domU/workloads/block-device.ts';
import { ETH, IPPROTO_UDP, IPV4, UDP_PAYLOAD_OFFSET } from '../../../domU/workloads/frames.ts';
import { IperfClient, IperfServer, fillPattern, patternMismatches, resolveIperfSpec, runIperf, type IperfSpec } from '../../../domU/workloads/iperf-engine.ts';
import { createLoopbackPair, type LoopbackOptions } from '../../helpers/loopback-net.ts';

/** Virtual time (as in fio-engine.test.ts): run pending work, then jump to the next timer. */
class VirtualClock implements WorkloadClock {
  private t = 1_000_000_000n;
  private seq = 0;
  private timers: { at: bigint; seq: number; resolve: () => void }[] = [];
  now(): bigint {
    return this.t;
  }
  sleepUntil(at: bigint): Promise<void> {
    return new Promise<void>((resolve) => this.timers.push({ at, seq: this.seq++, resolve }));
  }
  async drive<T>(p: Promise<T>): Promise<T> {
    let done = false;
    let value: T | undefined;
    void p.then((v) => {
      done = true;
      value = v;
    });
    while (!done) {
      await new Promise<void>((r) => setImmediate(r));
      if (done) break;
      if (this.timers.length === 0) throw new Error('virtual clock: nothing scheduled and the run is not done');
      let min = (this.timers[0] as { at: bigint }).at;
      for (const x of this.timers) if (x.at < min) min = x.at;
      if (min > this.t) this.t = min;
      const due = this.timers.filter((x) => x.at <= this.t).sort((a, b) => a.seq - b.seq);
      this.timers = this.timers.filter((x) => x.at > this.t);
      for (const d of due) d.resolve();
    }
    return value as T;
  }
}

const MiB = 1024 * 1024;

async function pair(spec: IperfSpec, link: Omit<LoopbackOptions, 'clock'> = {}, clock = new VirtualClock()) {
  const { a, b } = createLoopbackPair({ clock, latencyNs: 50_000, ...link });
  const r = unwrap(await clock.drive(runIperf({ clock, spec, client: { device: a, ip: '10.0.0.2' }, server: { device: b, ip: '10.0.0.3' } })));
  return { ...r, a, b };
}

describe('iperf engine', () => {
  it('derives the stream pattern from the offset alone, so any slice can be regenerated and checked', () => {
    const whole = new Uint8Array(1000);
    fillPattern(whole, 0, 40000, 12345, 1000);
    const piece = new Uint8Array(333);
    fillPattern(piece, 0, 40000, 12345 + 101, 333);
    expect(Buffer.from(piece).equals(Buffer.from(whole.subarray(101, 434)))).to.equal(true);
    expect(patternMismatches(whole, 0, 40000, 12345, 1000)).to.equal(0);
    expect(patternMismatches(whole, 0, 40001, 12345, 1000)).to.be.greaterThan(900);
    whole[7] = (whole[7] as number) ^ 1;
    expect(patternMismatches(whole, 0, 40000, 12345, 1000)).to.equal(1);
    // A segment delivered at the wrong offset does not pass for the right one.
    const seg = new Uint8Array(1460);
    fillPattern(seg, 0, 40000, 10 * 1460, 1460);
    for (const k of [9, 11, 12, 100, 4096]) expect(patternMismatches(seg, 0, 40000, k * 1460, 1460), `segment ${k}`).to.be.greaterThan(1400);
  });

  it('delivers every TCP byte in order over a clean link', async () => {
    const { client, server } = await pair({ protocol: 'tcp', bytes: 4 * MiB, parallel: 2 });
    expect(client.error).to.equal(undefined);
    expect(client.streams.reduce((n, s) => n + s.bytes, 0)).to.equal(4 * MiB);
    expect(server.streams).to.have.length(2);
    expect(server.streams.reduce((n, s) => n + s.bytes, 0)).to.equal(4 * MiB);
    for (const s of server.streams) expect(s).to.include({ closed: true, corruptBytes: 0, duplicateSegments: 0 });
    expect(client.streams.map((s) => s.retransmits)).to.deep.equal([0, 0]);
    expect(client.endpoint.rxErrors).to.deep.equal({});
  });

  it('delivers every TCP byte in order over a lossy, reordering, duplicating link, retransmitting what was lost', async () => {
    const { client, server, a } = await pair({ protocol: 'tcp', bytes: 2 * MiB, parallel: 3, length: 64 * 1024 }, { lossRate: 0.03, reorderRate: 0.03, duplicateRate: 0.01, seed: 11 });
    expect(client.error).to.equal(undefined);
    expect(a.counters().dropped).to.be.greaterThan(20);
    expect(client.streams.reduce((n, s) => n + s.retransmits, 0)).to.be.greaterThan(0);
    expect(server.streams.reduce((n, s) => n + s.bytes, 0)).to.equal(2 * MiB);
    for (const s of server.streams) {
      expect(s.closed).to.equal(true);
      expect(s.corruptBytes).to.equal(0);
    }
    expect(server.streams.reduce((n, s) => n + s.outOfOrderSegments, 0)).to.be.greaterThan(0);
  });

  it('recovers from a lost SYN, a lost FIN and a lost tail segment by timeout', async () => {
    let seenData = 0;
    const dropIf = (from: 'a' | 'b', f: Uint8Array, i: number): boolean => {
      if (from !== 'a') return false;
      if (i === 0) return true; // the first SYN
      const flags = f[ETH.SIZE + IPV4.SIZE + 13] as number;
      if (flags & 0x01 && !(dropIf as { finDropped?: boolean }).finDropped) return ((dropIf as { finDropped?: boolean }).finDropped = true);
      if (f.length > 1000 && ++seenData === 64) return true; // the last data segment (64 × 1 KiB-ish)
      return false;
    };
    const { client, server } = await pair({ protocol: 'tcp', bytes: 64 * 1460 }, { dropIf });
    expect(client.error).to.equal(undefined);
    expect(server.streams[0]).to.include({ bytes: 64 * 1460, closed: true, corruptBytes: 0 });
    expect(client.streams[0]!.retransmits).to.be.greaterThan(1);
  });

  it('fails, not hangs, when the server never answers', async () => {
    const clock = new VirtualClock();
    const { a } = createLoopbackPair({ clock });
    const client = unwrap(IperfClient.create({ device: a, clock, localIp: '10.0.0.2', serverIp: '10.0.0.3', serverMac: '00:16:3e:00:00:02', spec: { time: 1 }, stallTimeoutMs: 500 }));
    const r = await clock.drive(client.run());
    expect(r.error).to.match(/made no progress for 500 ms/);
  });

  it('runs for -t seconds and reports one interval per -i', async () => {
    const { client, server } = await pair({ protocol: 'tcp', time: 0.2, interval: 0.05, window: 128 * 1024 });
    expect(client.error).to.equal(undefined);
    expect(client.intervals).to.have.length(4);
    expect(client.intervals.map((row) => row[0]!.endNs)).to.deep.equal([50e6, 100e6, 150e6, 200e6]);
    const sent = client.streams[0]!.bytes;
    expect(client.intervals.reduce((n, row) => n + row[0]!.bytes, 0)).to.equal(sent);
    expect(client.streams[0]!.endNs).to.be.within(0.19e9, 0.2e9);
    expect(server.streams[0]!.bytes).to.equal(sent);
    expect(client.streams[0]!.meanRttUs).to.be.at.least(100); // 2 × 50 µs of link, plus any queueing
  });

  it('paces UDP at the bitrate and counts loss exactly as the link dropped it', async () => {
    let dataIndex = 0;
    const dropped: number[] = [];
    const dropIf = (from: 'a' | 'b', f: Uint8Array): boolean => {
      if (from !== 'a' || f.length < 100) return false;
      if (++dataIndex % 10 === 5) {
        dropped.push(dataIndex);
        return true;
      }
      return false;
    };
    const { client, server } = await pair({ protocol: 'udp', time: 0.1, bitrate: 10e6, length: 1250, interval: 0.05 }, { dropIf });
    const s = server.streams[0]!;
    expect(client.streams[0]!.packets).to.equal(100); // 10 Mbit/s × 0.1 s / (1250 × 8)
    expect(s.packets).to.equal(dropped.includes(100) ? 99 : 100);
    expect(s.lostPackets).to.equal(dropped.filter((i) => i < 100).length);
    expect(s.outOfOrder).to.equal(0);
    expect(s.corruptBytes).to.equal(0);
    expect(s.closed).to.equal(true);
    expect(client.intervals.map((row) => row[0]!.packets)).to.deep.equal([50, 50]);
  });

  it('counts reordered UDP datagrams as iperf3 does, without inflating loss', async () => {
    const { server, a } = await pair({ protocol: 'udp', blockcount: 2000, bitrate: 0, length: 1000 }, { reorderRate: 0.05, seed: 3 });
    const s = server.streams[0]!;
    expect(a.counters().reordered).to.be.greaterThan(50);
    // A swap can move a datagram that was itself swapped: at most one late arrival per swap.
    expect(s.outOfOrder).to.be.within(50, a.counters().reordered ?? 0);
    expect(s.lostPackets).to.equal(0);
    expect(s.packets).to.equal(2000);
  });

  it('copes with a tiny TX queue (backpressure) and still delivers everything', async () => {
    const { client, server } = await pair({ protocol: 'tcp', bytes: 1 * MiB, parallel: 4 }, { txQueueFrames: 3 });
    expect(client.error).to.equal(undefined);
    expect(client.endpoint.sendBusy).to.be.greaterThan(0);
    expect(server.streams.reduce((n, s) => n + s.bytes, 0)).to.equal(1 * MiB);
  });

  it('excludes the -O omit period from the totals', async () => {
    const { client } = await pair({ protocol: 'udp', time: 0.1, omit: 0.05, bitrate: 8e6, length: 1000, interval: 0.05 });
    expect(client.intervals.map((row) => row[0]!.omitted)).to.deep.equal([true, false, false]);
    expect(client.streams[0]!.packets).to.equal(100); // 8 Mbit/s × 0.1 s / 8000 bit, omit period not counted
  });

  it('rejects impossible options', () => {
    expect(resolveIperfSpec({ protocol: 'udp', length: 1500 }, 1500)).to.deep.equal({ ok: false, error: { kind: 'datagram-too-large', length: 1500, max: 1472 } });
    expect(resolveIperfSpec({ parallel: 0 }, 1500).ok).to.equal(false);
    expect(resolveIperfSpec({}, 1500)).to.deep.include({ ok: true });
    const r = resolveIperfSpec({ protocol: 'udp' }, 1500);
    expect(r.ok && r.value).to.include({ time: 10, length: 1460, bitrate: 1e6, port: 5201 });
  });

  it('ignores frames that are not for it, counting them', async () => {
    const clock = new VirtualClock();
    const { a, b } = createLoopbackPair({ clock });
    const server = unwrap(IperfServer.create({ device: b, clock, localIp: '10.0.0.3' }));
    server.start();
    const junk = new Uint8Array(60);
    junk[ETH.TYPE] = 0x86; // IPv6 ethertype: not ours
    junk[ETH.TYPE + 1] = 0xdd;
    a.send(junk);
    const udpToOtherPort = new Uint8Array(UDP_PAYLOAD_OFFSET + 16);
    udpToOtherPort[ETH.TYPE] = 0x08;
    a.send(udpToOtherPort); // a zero IPv4 header: bad version
    await clock.drive(clock.sleepUntil(clock.now() + 1000n));
    expect(server.counters.rxErrors).to.deep.equal({ 'not-ipv4': 1, 'bad-ip-header': 1 });
    expect(server.report().streams).to.have.length(0);
    expect(IPPROTO_UDP).to.equal(17);
  });
});
