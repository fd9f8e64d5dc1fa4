/**
 * The dom0 bridge with test ports (learning, flooding, filtering, ageing,
 * per-port counters, segmentation and checksum fix-ups for ports that need
 * them), and pcap captures of real vif traffic read back by tshark and
 * capinfos.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testMachine } from '../../helpers/machine.ts';
import { NetWorld, macOf } from '../../helpers/net-world.ts';
import { flow, tcpFrame, udpFrame } from '../../helpers/net-frames.ts';
import { Bridge, type BridgePort } from '../../../dom0/net/bridge.ts';
import { PacketPool, type NetPacket } from '../../../dom0/net/packet.ts';
import type { NetTimers } from '../../../dom0/net/loop.ts';
import { PacketCapture } from '../../../dom0/net/capture.ts';
import { fileSink, readPcap } from '../../../shared/net/pcap.ts';
import { runIperf } from '../../../domU/workloads/iperf-engine.ts';
import { FrameInfo, parseFrameInto } from '../../../domU/workloads/frames.ts';
import { XEN_NETIF_GSO_TYPE_TCPV4 } from '../../../shared/abi/netif.ts';
import type { Netfront } from '../../../domU/netfront/netfront.ts';

class FakeTimers implements NetTimers {
  t = 0;
  now(): number { return this.t; }
  after(): () => void { return () => {}; }
}

class TestPort implements BridgePort {
  readonly got: Uint8Array[] = [];
  constructor(readonly name: string, readonly pool: PacketPool, readonly acceptsGso = true, readonly acceptsCsumBlank = true, readonly maxFrame = 1514, readonly mac = 'fe:ff:ff:ff:ff:ff') {}
  transmit(pkt: NetPacket): boolean {
    this.got.push(this.pool.bytes(pkt));
    return true;
  }
}

function rig() {
  const m = testMachine(32 << 20);
  const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 8192, model: 'pm', privileged: true });
  const pool = new PacketPool(d0, { maxPages: 512 });
  const timers = new FakeTimers();
  const br = new Bridge('xenbr0', pool, { timers, ageingMs: 300_000 });
  const ports = ['vif1.0', 'vif2.0', 'vif3.0'].map((n) => new TestPort(n, pool));
  const att = ports.map((p) => br.attach(p));
  const send = (i: number, frame: Uint8Array) => att[i]!.input(pool.fromBytes(frame, 0, frame.length)!);
  return { m, pool, timers, br, ports, att, send };
}

const E = (a: number, b: number) => ({ srcMac: macOf(a), dstMac: macOf(b), srcIp: `10.0.0.${a}`, dstIp: `10.0.0.${b}` });

// A test that fails before shutdown() must not leave its pump running (mocha would never exit).
afterEach(() => NetWorld.stopAll());

describe('dom0 bridge (learning, flooding, fix-ups)', () => {
  it('floods unknown destinations, learns sources, then forwards unicast to one port only', () => {
    const { br, ports, send, pool } = rig();
    send(0, udpFrame(flow(E(1, 2)), 1, 10));
    expect(ports.map((p) => p.got.length)).to.deep.equal([0, 1, 1]);
    expect(br.counters.unknownUnicast).to.equal(1);
    send(1, udpFrame(flow(E(2, 1)), 2, 10));
    expect(ports.map((p) => p.got.length)).to.deep.equal([1, 1, 1]);
    send(0, udpFrame(flow(E(1, 2)), 3, 10));
    expect(ports.map((p) => p.got.length)).to.deep.equal([1, 2, 1]);
    expect(br.macs()).to.deep.equal(new Map([[macOf(1), 'vif1.0'], [macOf(2), 'vif2.0']]));
    expect(br.portCounters('vif1.0')).to.deep.include({ rxPackets: 2, txPackets: 1 });
    expect(br.portCounters('vif3.0')).to.deep.include({ rxPackets: 0, txPackets: 1 });
    expect(pool.stats.packetsInUse).to.equal(0);
  });

  it('floods broadcast to every other port, never learns a multicast source, filters same-port traffic', () => {
    const { br, ports, send } = rig();
    const bcast = udpFrame(flow({ ...E(1, 2), dstMac: 'ff:ff:ff:ff:ff:ff' }), 1, 10);
    send(0, bcast);
    expect(ports.map((p) => p.got.length)).to.deep.equal([0, 1, 1]);
    send(2, udpFrame(flow({ ...E(3, 1), srcMac: '01:00:5e:00:00:01' }), 2, 10));
    expect(br.macs().has('01:00:5e:00:00:01')).to.equal(false);
    // A host behind vif1.0 talking to another host behind vif1.0: filtered.
    send(0, udpFrame(flow(E(4, 1)), 3, 10));
    expect(br.portCounters('vif1.0')!.filtered).to.equal(1);
    expect(ports[0]!.got.length).to.equal(1);
  });

  it('forgets a MAC after the ageing time and floods again', () => {
    const { br, ports, send, timers } = rig();
    send(1, udpFrame(flow(E(2, 1)), 1, 10));
    timers.t = 200_000;
    send(0, udpFrame(flow(E(1, 2)), 2, 10));
    expect(ports[2]!.got.length).to.equal(1); // only the first flood
    timers.t = 600_000;
    send(0, udpFrame(flow(E(1, 2)), 3, 10));
    expect(br.counters.aged).to.equal(1);
    expect(ports[2]!.got.length).to.equal(2);
  });

  it('segments GSO packets and completes blank checksums for ports that cannot take them', () => {
    const { br, pool, att } = rig();
    const plain = new TestPort('eth0', pool, false, false, 1514);
    br.attach(plain);
    const big = tcpFrame(flow(E(1, 9)), 1, 5000, 77);
    const p = pool.fromBytes(big, 0, big.length)!;
    p.gsoSize = 1460;
    p.gsoType = XEN_NETIF_GSO_TYPE_TCPV4;
    att[0]!.input(p);
    expect(plain.got.length).to.equal(4); // 1460 × 3 + 620
    const info = new FrameInfo();
    let seq = 77;
    for (const f of plain.got) {
      expect(parseFrameInto(f, info)).to.equal(null);
      expect(info.seq).to.equal(seq);
      seq += info.payloadLength;
    }
    expect(seq - 77).to.equal(5000);
    // The GSO-capable ports got the packet whole.
    expect(br.portCounters('vif2.0')!.txBytes).to.equal(big.length);
    // A blank checksum: completed for eth0 only.
    const u = udpFrame(flow(E(1, 9)), 2, 100);
    const blank = u.slice();
    blank[40] = 0;
    blank[41] = 0;
    const q = pool.fromBytes(blank, 0, blank.length)!;
    q.csumBlank = true;
    att[0]!.input(q);
    expect(Buffer.from(plain.got.at(-1)!).equals(Buffer.from(u))).to.equal(true);
    expect(pool.stats.packetsInUse).to.equal(0);
  });
});

function have(tool: string): boolean {
  return spawnSync(tool, ['--version'], { encoding: 'utf8' }).error === undefined;
}
function run(tool: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(tool, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  const stderr = r.stderr.split('\n').filter((l) => !/Running as user .* dangerous/.test(l) && l.trim() !== '').join('\n');
  return { status: r.status, stdout: r.stdout, stderr };
}

describe('pcap captures of vif and bridge traffic, read by tshark and capinfos', function () {
  this.timeout(60000);
  let dir: string;
  before(function () {
    for (const tool of ['tshark', 'capinfos']) {
      if (!have(tool)) {
        console.warn(`SKIPPED: pcap checks of bridge captures because ${tool} is not installed (apt-get install tshark)`);
        this.skip();
      }
    }
  });
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'xensim-netcap-')); });
  afterEach(() => { rmSync(dir, { recursive: true, force: true }); });

  it('captures a TCP and a UDP stream on vif1.0 and on the bridge with every checksum good and no expert errors', async () => {
    const w = await NetWorld.create();
    const a = await w.addGuest({ name: 'client', vif: { mac: macOf(1) } });
    const b = await w.addGuest({ name: 'server', vif: { mac: macOf(2) } });
    const vifPath = join(dir, 'vif.pcap');
    const brPath = join(dir, 'xenbr0.pcap');
    const capVif = PacketCapture.onBridge(w.bridge, w.pool, fileSink(vifPath), w.epochNs, `vif${a.domid}.0`);
    const capBr = PacketCapture.onBridge(w.bridge, w.pool, fileSink(brPath), w.epochNs, undefined, { precision: 'ns' });
    for (const protocol of ['tcp', 'udp'] as const) {
      const r = await runIperf({
        clock: w.clock, spec: { protocol, bytes: 256 << 10, interval: 0, ...(protocol === 'udp' ? { bitrate: 50e6 } : {}) },
        client: { device: a.dev as Netfront, ip: '10.0.0.1' }, server: { device: b.dev as Netfront, ip: '10.0.0.2' },
      });
      expect(r.ok && r.value.server.streams[0]?.bytes).to.equal(256 << 10);
    }
    await capVif.close();
    await capBr.close();
    const leak = await w.shutdown();
    expect(leak.reconcile.ok).to.equal(true);

    const vif = readPcap(new Uint8Array(readFileSync(vifPath)));
    expect(vif.ok).to.equal(true);
    const nVif = vif.ok ? vif.value.records.length : 0;
    expect(nVif).to.equal(capVif.packets);
    for (const path of [vifPath, brPath]) {
      const f = run('tshark', ['-r', path, '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE',
        '-T', 'fields', '-e', 'ip.checksum.status', '-e', 'tcp.checksum.status', '-e', 'udp.checksum.status', '-e', 'eth.src']);
      expect(f.status, f.stderr).to.equal(0);
      const rows = f.stdout.trimEnd().split('\n').map((l) => l.split('\t'));
      expect(rows.length).to.be.greaterThan(100);
      // Status 1 is "good" for every checksum tshark checked; none is 0 ("bad").
      for (const r of rows) {
        expect(r[0], r.join(' ')).to.equal('1');
        expect(r.slice(1, 3).filter((x) => x !== '').every((x) => x === '1'), r.join(' ')).to.equal(true);
      }
      const expert = run('tshark', ['-r', path, '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-q', '-z', 'expert,error']);
      expect(expert.status, expert.stderr).to.equal(0);
      expect(expert.stdout, 'expert errors').to.not.match(/Errors \(\d+\)/);
      const info = run('capinfos', [path]);
      expect(info.status, info.stderr).to.equal(0);
      expect(info.stdout).to.match(/File encapsulation:\s+Ethernet/);
      expect(info.stdout).to.match(/Strict time order:\s+True/);
    }
    const summary = run('tshark', ['-r', vifPath]);
    expect(summary.stdout).to.match(/10\.0\.0\.1 → 10\.0\.0\.2\s+TCP/);
    expect(summary.stdout).to.match(/10\.0\.0\.1 → 10\.0\.0\.2\s+UDP/);
    expect(run('capinfos', [brPath]).stdout).to.match(/nanosecond/);
  });
});
