/**
 * The network split driver end to end across real workers: netfront in each
 * domU, netback and the bridge xenbr0 in dom0, vifs attached by the
 * toolstack as libxl does, iperf-like verified streams run inside the
 * guests (Machine.iperf). Checks what users see: iperf3's JSON, xentop's NET
 * columns, a pcap of the bridge that tshark and capinfos read, and that
 * detaching a vif leaves nothing behind.
 */
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine } from '../../toolstack/machine.ts';
import { StatsCollector } from '../../toolstack/stats.ts';
import { unwrap } from '../../shared/result.ts';

const MAC1 = '00:16:3e:00:01:01';
const MAC2 = '00:16:3e:00:01:02';

interface Rig { m: Machine; a: number; b: number }

async function boot(): Promise<Rig> {
  const m = await Machine.boot({ memBytes: 256 << 20 });
  await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 64 * 1024, model: 'p2m', privileged: true });
  const a = (await m.createDomain({ name: 'client', memoryKiB: 24 * 1024, model: 'vp' })).domid;
  const b = (await m.createDomain({ name: 'server', memoryKiB: 24 * 1024, model: 'vp' })).domid;
  await m.attachVif(a, { mac: MAC1 });
  await m.attachVif(b, { mac: MAC2 });
  return { m, a, b };
}

type J = Record<string, unknown>;
const get = (o: unknown, path: string): unknown => path.split('.').reduce<unknown>((x, k) => (x as J | undefined)?.[k], o);

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

describe('network split driver across real workers', function () {
  this.timeout(60_000);
  let rig: Rig;
  before(async () => { rig = await boot(); });
  after(async () => { await rig?.m.shutdown(); });

  it('writes the vif directories libxl writes, and both ends connect', async () => {
    const { m, a } = rig;
    const d0 = m.dom0!;
    const be = `/local/domain/0/backend/vif/${a}/0`;
    const fe = `/local/domain/${a}/device/vif/0`;
    const read = async (p: string) => unwrap(await d0.xsRead(p));
    expect(await read(`${be}/frontend`)).to.equal(fe);
    expect(await read(`${be}/frontend-id`)).to.equal(String(a));
    expect(await read(`${be}/mac`)).to.equal(MAC1);
    expect(await read(`${be}/bridge`)).to.equal('xenbr0');
    expect(await read(`${be}/handle`)).to.equal('0');
    expect(await read(`${be}/script`)).to.equal('/etc/xen/scripts/vif-bridge');
    expect(await read(`${be}/online`)).to.equal('1');
    expect(await read(`${fe}/backend`)).to.equal(be);
    expect(await read(`${fe}/backend-id`)).to.equal('0');
    expect(await read(`${fe}/handle`)).to.equal('0');
    expect(await read(`${fe}/mac`)).to.equal(MAC1);
    const v = unwrap(await m.domU(a).waitVif(0));
    expect(v.mac).to.equal(MAC1);
    expect(v.connected).to.equal(true);
    // netfront's keys, and both ends Connected.
    expect(await read(`${fe}/request-rx-copy`)).to.equal('1');
    expect((await d0.xsRead(`${fe}/tx-ring-ref`)).ok).to.equal(true);
    const until = Date.now() + 5000;
    while ((await read(`${be}/state`)) !== '4' && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(await read(`${be}/state`)).to.equal('4');
    expect(await read(`${fe}/state`)).to.equal('4');
    const br = (await d0.bridgeStats()).find((x) => x.name === 'xenbr0');
    expect(br?.ports.map((p) => p.name)).to.include.members([`vif${a}.0`, `vif${rig.b}.0`]);
  });

  it('carries a verified TCP stream from one domU to another through the bridge, in iperf3 JSON', async () => {
    const { m, a, b } = rig;
    const r = await m.iperf({ client: { domid: a, ip: '10.0.0.1' }, server: { domid: b, ip: '10.0.0.2' }, spec: { protocol: 'tcp', bytes: 8 << 20, interval: 0.1 } });
    const j = r.json;
    expect(get(j, 'error')).to.equal(undefined);
    expect(get(j, 'start.test_start.protocol')).to.equal('TCP');
    expect(get(j, 'end.sum_sent.bytes')).to.equal(8 << 20);
    expect(get(j, 'end.sum_received.bytes')).to.equal(8 << 20);
    expect(get(j, 'end.sum_received.bits_per_second') as number).to.be.greaterThan(0);
    const intervals = get(j, 'intervals') as J[];
    expect(intervals.length).to.be.greaterThan(0);
    expect(get(intervals[0], 'sum.bytes') as number).to.be.greaterThan(0);
    expect(get(intervals[0], 'streams.0.socket')).to.be.a('number');
    // Every byte checked against the sender's pattern, in order, once.
    expect(r.server.streams).to.have.length(1);
    expect(r.server.streams[0]?.corruptBytes).to.equal(0);
    expect(r.server.streams[0]?.closed).to.equal(true);
    expect(Object.values(r.server.endpoint.rxErrors).reduce((n, x) => n + (x ?? 0), 0)).to.equal(0);
    // Our per-packet counters: dom0's netback moved it by grant copy (RX) and map or copy (TX).
    const per = get(j, 'xensim.per_packet') as Record<string, number>;
    expect(per.packets).to.be.greaterThan((8 << 20) / 1500);
    expect(per.backend_grant_copies).to.be.greaterThan(0);
    expect(per.backend_hypercalls).to.be.greaterThan(0).and.lessThan(4);
    expect(r.backend.client?.txBytes).to.be.greaterThan(8 << 20);
    expect(r.backend.server?.rxBytes).to.be.greaterThan(8 << 20);
  });

  it('sends 64 KiB TCP segments as single GSO packets between two TSO guests, and destroying them leaves no zombie', async () => {
    const { m } = rig;
    const g = [];
    for (const n of [1, 2]) {
      const d = (await m.createDomain({ name: `tso${n}`, memoryKiB: 24 * 1024, model: 'vp', drivers: { netfront: { gso: true } } })).domid;
      await m.attachVif(d, { mac: `00:16:3e:00:01:3${n}` });
      g.push(d);
    }
    const [c, sv] = g as [number, number];
    expect(unwrap(await m.domU(c).waitVif(0)).mtu).to.be.greaterThan(60000);
    const r = await m.iperf({ client: { domid: c, ip: '10.0.3.1' }, server: { domid: sv, ip: '10.0.3.2' }, spec: { protocol: 'tcp', bytes: 16 << 20, length: 64 * 1024, interval: 0 } });
    expect(get(r.json, 'end.sum_received.bytes')).to.equal(16 << 20);
    expect(r.server.streams[0]?.corruptBytes).to.equal(0);
    // Whole 64 KiB segments crossed dom0 as one packet each, and arrived whole.
    expect(r.backend.client?.txGso).to.be.greaterThan(200);
    expect(r.backend.server?.rxGso).to.be.greaterThan(200);
    expect(r.backend.client?.txPackets).to.be.lessThan(2000);
    for (const d of g) expect(await m.destroyDomain(d)).to.equal('destroyed');
    expect((await m.dom0!.vifStats()).map((v) => v.frontDom)).to.not.include.members(g);
    const rec = await m.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });

  it('shows the traffic in xentop\'s NETS, NETTX and NETRX columns', async () => {
    const { m, a, b } = rig;
    const s = await new StatsCollector(m).sample();
    const da = s.domains.find((d) => d.domid === a)!;
    const db = s.domains.find((d) => d.domid === b)!;
    expect(da.nets).to.have.length(1);
    expect(Number(da.nets[0]!.txBytes)).to.be.greaterThan(8 << 20);
    expect(Number(db.nets[0]!.rxBytes)).to.be.greaterThan(8 << 20);
    expect(Number(db.nets[0]!.rxDrop)).to.equal(0);
  });

  it('loses no datagram of a paced UDP stream', async () => {
    const { m, a, b } = rig;
    const r = await m.iperf({ client: { domid: a, ip: '10.0.0.1' }, server: { domid: b, ip: '10.0.0.2' }, spec: { protocol: 'udp', time: 0.6, bitrate: 100e6, interval: 0.2 } });
    const j = r.json;
    expect(get(j, 'start.test_start.protocol')).to.equal('UDP');
    expect(get(j, 'end.sum_received.lost_packets')).to.equal(0);
    expect(get(j, 'end.sum_received.packets') as number).to.be.greaterThan(1000);
    expect(get(j, 'end.sum_received.bytes')).to.equal(get(j, 'end.sum_sent.bytes'));
    expect(r.server.streams[0]?.outOfOrder).to.equal(0);
    expect(r.server.streams[0]?.corruptBytes).to.equal(0);
  });

  it('captures the bridge while a stream runs, in a pcap tshark and capinfos read without complaint', async function () {
    if (!has('tshark') || !has('capinfos')) {
      console.warn('SKIPPED: pcap check against tshark/capinfos because tshark is not installed');
      this.skip();
    }
    const { m, a, b } = rig;
    const d0 = m.dom0!;
    const dir = mkdtempSync(join(tmpdir(), 'xensim-net-'));
    const path = join(dir, 'xenbr0.pcap');
    try {
      const id = unwrap(await d0.captureStart('xenbr0', path));
      const vifId = unwrap(await d0.captureStart(`vif${a}.0`, join(dir, 'vif.pcap'), { direction: 'in' }));
      const r = await m.iperf({ client: { domid: a, ip: '10.0.0.1' }, server: { domid: b, ip: '10.0.0.2' }, spec: { protocol: 'tcp', bytes: 2 << 20, interval: 0 } });
      expect(get(r.json, 'end.sum_received.bytes')).to.equal(2 << 20);
      const cap = unwrap(await d0.captureStop(id));
      const vcap = unwrap(await d0.captureStop(vifId));
      expect(cap.errors).to.equal(0);
      expect(cap.packets).to.be.greaterThan((2 << 20) / 1500);
      // The client's port saw only what the client sent (data), the bridge both directions.
      expect(vcap.packets).to.be.greaterThan(0).and.lessThan(cap.packets);
      const info = execFileSync('capinfos', ['-M', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(info).to.match(/File type:\s+(Wireshark\/tcpdump\/\.\.\. - )?pcap\b/);
      expect(info).to.match(/File encapsulation:\s+ether/i);
      expect(info).to.match(new RegExp(`Number of packets:\\s+${cap.packets}\\b`));
      expect(info).to.match(/Strict time order:\s+True/);
      const expert = execFileSync('tshark', ['-r', path, '-o', 'ip.check_checksum:TRUE', '-q', '-z', 'expert,error'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(expert).to.not.match(/Errors \(/);
      const fields = execFileSync('tshark', ['-r', path, '-c', '20', '-T', 'fields', '-e', 'eth.src', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'tcp.dstport'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      expect(fields).to.include(MAC1).and.include('10.0.0.1').and.include('5201');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('holds a vif attached with rate=40Mb/s to its credit limit', async () => {
    const { m, a, b } = rig;
    const v = await m.attachVif(a, { devid: 2, mac: '00:16:3e:00:01:22', rate: '40Mb/s' });
    // xl's 40Mb/s with the default 50 ms interval: 5 MB/s, 250000 bytes of credit every 50000 us.
    expect(v.rateKey).to.equal('250000,50000');
    expect(unwrap(await m.dom0!.xsRead(`/local/domain/0/backend/vif/${a}/2/rate`))).to.equal('250000,50000');
    const r = await m.iperf({ client: { domid: a, devid: 2, ip: '10.0.2.1' }, server: { domid: b, ip: '10.0.0.2' }, spec: { protocol: 'tcp', bytes: 3 << 20, interval: 0 } });
    expect(get(r.json, 'end.sum_received.bytes')).to.equal(3 << 20);
    const bps = get(r.json, 'end.sum_received.bits_per_second') as number;
    expect(bps).to.be.within(20e6, 44e6);
    expect(r.backend.client?.throttled).to.be.greaterThan(0);
    expect((await m.dom0!.vifStats(a)).find((x) => x.devid === 2)?.rate).to.deep.equal({ bytesPerInterval: 250000, intervalUs: 50000 });
    await m.detachVif(a, 2);
  });

  it('refuses a vif it cannot make, as xl would, and writes nothing for it', async () => {
    const { m, a } = rig;
    const refused = async (spec: Parameters<Machine['attachVif']>[1], domid = a) => {
      try {
        await m.attachVif(domid, spec);
      } catch (e) {
        return (e as Error).message;
      }
      return 'attached';
    };
    expect(await refused({ devid: 5, mac: '00:16:3e:zz:00:01' })).to.match(/Invalid parameter `mac'/);
    expect(await refused({ devid: 5, mac: '01:16:3e:00:00:01' })).to.match(/multicast/);
    expect(await refused({ devid: 5, rate: '10Mbit' })).to.match(/invalid rate/);
    expect(await refused({ devid: 0 })).to.match(/already has vif devid 0/);
    expect(await refused({ devid: 5 }, 0)).to.match(/not a running domU/);
    expect((await m.dom0!.xsRead(`/local/domain/0/backend/vif/${a}/5/state`)).ok).to.equal(false);
  });

  it('detaches a vif and leaks no grant, frame or mapping; a new one gets a Xen MAC and works', async () => {
    const { m, a, b } = rig;
    const d0 = m.dom0!;
    const dom = async (id: number) => (await m.hv.domains()).find((d) => d.domid === id)!;
    const maptrack0 = (await dom(0)).maptrackInUse;
    const before = await m.domU(a).resources();
    const grants0 = (await dom(a)).activeGrants;
    const v = await m.attachVif(a, { devid: 1 });
    expect(v.mac).to.match(/^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
    expect(v.vifname).to.equal(`vif${a}.1`);
    expect(unwrap(await m.domU(a).waitVif(1)).connected).to.equal(true);
    expect((await dom(0)).maptrackInUse).to.be.greaterThan(maptrack0);
    // It carries traffic.
    const r = await m.iperf({ client: { domid: a, devid: 1, ip: '10.0.1.1' }, server: { domid: b, ip: '10.0.0.2' }, spec: { protocol: 'tcp', bytes: 1 << 20, interval: 0 } });
    expect(get(r.json, 'end.sum_received.bytes')).to.equal(1 << 20);
    await m.detachVif(a, 1);
    expect((await d0.xsRead(`/local/domain/0/backend/vif/${a}/1/state`)).ok).to.equal(false);
    expect((await d0.xsRead(`/local/domain/${a}/device/vif/1/state`)).ok).to.equal(false);
    expect((await d0.vifStats(a)).map((x) => x.devid)).to.deep.equal([0]);
    expect((await d0.bridgeStats())[0]?.ports.map((p) => p.name)).to.not.include(`vif${a}.1`);
    expect(m.vifsOf(a).map((x) => x.devid)).to.deep.equal([0]);
    const after = await m.domU(a).resources();
    expect(after).to.deep.equal(before);
    expect((await dom(a)).activeGrants).to.equal(grants0);
    expect((await dom(0)).maptrackInUse).to.equal(maptrack0);
    const rec = await m.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });
});
