/**
 * netfront ↔ netback ↔ bridge ↔ netback ↔ netfront in one thread: the
 * handshake and its XenStore keys, frames both ways, multi-slot packets,
 * GSO extra-info slots, both TX modes, untrusted backends, and no grant,
 * mapping, packet or frame left behind.
 */
import { expect } from 'chai';
import { NetWorld, macOf, type NetGuest } from '../../helpers/net-world.ts';
import { Sink, flow, payloadByte, sendAll, tcpFrame, udpFrame } from '../../helpers/net-frames.ts';
import type { Pfn } from '../../../shared/types.ts';
import type { Netfront } from '../../../domU/netfront/netfront.ts';

async function twoGuests(w: NetWorld, a: Parameters<NetWorld['addGuest']>[0]['netfront'] = {}, b = a) {
  const g1 = await w.addGuest({ name: 'guest1', vif: { mac: macOf(1) }, netfront: a });
  const g2 = await w.addGuest({ name: 'guest2', vif: { mac: macOf(2) }, netfront: b });
  return { g1, g2, d1: g1.dev as Netfront, d2: g2.dev as Netfront };
}

async function expectClean(w: NetWorld): Promise<void> {
  const leak = await w.shutdown();
  expect(leak.reconcile.ok, JSON.stringify(leak.reconcile)).to.equal(true);
  expect(leak.dom0Maptrack, 'dom0 grant mappings left').to.equal(0);
  expect(leak.packetsInUse, 'packets left').to.equal(0);
  expect(leak.poolPagesInUse, 'pool pages left').to.equal(0);
  expect(leak.poolChunksInUse, 'header chunks left').to.equal(0);
  for (const g of leak.guests) {
    expect(g, `guest ${g.name}`).to.deep.equal({ name: g.name, lostRefs: 0, lostPages: 0, quarantined: 0 });
  }
}

const ENDS_12 = { srcMac: macOf(1), dstMac: macOf(2), srcIp: '10.0.0.1', dstIp: '10.0.0.2' };
const ENDS_21 = { srcMac: macOf(2), dstMac: macOf(1), srcIp: '10.0.0.2', dstIp: '10.0.0.1' };

// A test that fails before shutdown() must not leave its pump running (mocha would never exit).
afterEach(() => NetWorld.stopAll());

describe('netfront and netback through a bridge (one thread)', function () {
  this.timeout(20000);

  it('connects with the keys Linux writes and exchanges frames both ways, byte for byte', async () => {
    const w = await NetWorld.create();
    const { g1, d1, d2 } = await twoGuests(w);
    const fe = `/local/domain/${g1.domid}/device/vif/0`;
    const be = `/local/domain/0/backend/vif/${g1.domid}/0`;
    const rd = async (p: string) => { const r = await w.dom0xs.readString(p); return r.ok ? r.value : undefined; };
    expect(await rd(`${be}/feature-rx-copy`)).to.equal('1');
    expect(await rd(`${be}/feature-sg`)).to.equal('1');
    expect(await rd(`${be}/feature-split-event-channels`)).to.equal('1');
    expect(await rd(`${be}/multi-queue-max-queues`)).to.equal('4');
    expect(await rd(`${fe}/request-rx-copy`)).to.equal('1');
    expect(await rd(`${fe}/feature-rx-notify`)).to.equal('1');
    expect(await rd(`${fe}/tx-ring-ref`)).to.match(/^[0-9]+$/);
    expect(await rd(`${fe}/event-channel-tx`)).to.match(/^[0-9]+$/);
    expect(await rd(`${fe}/event-channel-rx`)).to.match(/^[0-9]+$/);
    expect(await rd(`${fe}/event-channel`)).to.equal(undefined);
    expect(await rd(`${fe}/state`)).to.equal('4');
    expect(await rd(`${be}/state`)).to.equal('4');
    expect(d1.mac).to.equal(macOf(1));
    expect(w.bridge.portNames).to.deep.equal([`vif${g1.domid}.0`, `vif${g1.domid + 1}.0`]);

    const s1 = new Sink(d1);
    const s2 = new Sink(d2);
    const f12 = flow(ENDS_12);
    const f21 = flow(ENDS_21);
    const out12 = Array.from({ length: 40 }, (_, i) => udpFrame(f12, i, 18 + i * 37));
    const out21 = Array.from({ length: 40 }, (_, i) => udpFrame(f21, 100 + i, 1472 - i));
    await Promise.all([sendAll(d1, out12), sendAll(d2, out21)]);
    await w.until(() => s2.received === 40 && s1.received === 40, () => `frames: ${s1.received}, ${s2.received}`);
    expect(s2.frames.map((f) => Buffer.from(f).toString('hex'))).to.deep.equal(out12.map((f) => Buffer.from(f).toString('hex')));
    expect(s1.frames.map((f) => Buffer.from(f).toString('hex'))).to.deep.equal(out21.map((f) => Buffer.from(f).toString('hex')));
    expect(s1.errors.concat(s2.errors)).to.deep.equal([]);
    // The first frames were flooded (unknown destination); then the bridge knew both.
    expect(w.bridge.macs().get(macOf(1))).to.equal(`vif${g1.domid}.0`);
    const vif = w.netback.vifs.get(`vif${g1.domid}.0`)!;
    expect(vif.counters.txPackets).to.equal(40);
    expect(vif.counters.rxPackets).to.equal(40);
    expect(vif.counters.fatal).to.equal(0);
    await expectClean(w);
  });

  for (const txMode of ['map', 'copy', 'grant'] as const) {
    it(`carries multi-slot packets (more_data chains) in ${txMode} mode, and a tap on the vif reads every byte`, async () => {
      const w = await NetWorld.create({ netback: { txMode } });
      const { d1, d2, g1 } = await twoGuests(w, { txFragBytes: 256 });
      const s2 = new Sink(d2);
      const f12 = flow(ENDS_12);
      const seen: Uint8Array[] = [];
      w.bridge.tap((p, dir) => { if (dir === 'in') seen.push(w.pool.bytes(p)); }, `vif${g1.domid}.0`);
      const out = Array.from({ length: 30 }, (_, i) => udpFrame(f12, i, 1000 + i * 15));
      await sendAll(d1, out);
      await w.until(() => s2.received === 30, () => `frames: ${s2.received}`);
      const hex = (fs: Uint8Array[]) => fs.map((f) => Buffer.from(f).toString('hex'));
      expect(hex(s2.frames)).to.deep.equal(hex(out));
      // Whatever holds the bytes (our pages, mapped grants, or unmapped grants read by a grant copy).
      expect(hex(seen)).to.deep.equal(hex(out));
      const c = d1.counters();
      expect(c.tx_slots).to.equal(out.reduce((n, f) => n + Math.ceil(f.length / 256), 0));
      const vc = w.netback.vifs.get(`vif${g1.domid}.0`)!.counters;
      if (txMode === 'map') expect(vc.grantMaps).to.be.greaterThan(0);
      else expect(vc.grantMaps).to.equal(0);
      await expectClean(w);
    });
  }

  it('sends TCP frames above the MTU as GSO and hands them whole to a GSO guest, segmented to one without', async () => {
    const w = await NetWorld.create();
    const g1 = await w.addGuest({ name: 'gso1', vif: { mac: macOf(1) }, netfront: { gso: true } });
    const g2 = await w.addGuest({ name: 'gso2', vif: { mac: macOf(2) }, netfront: { gso: true } });
    const g3 = await w.addGuest({ name: 'plain3', vif: { mac: macOf(3) } });
    const [d1, d2, d3] = [g1.dev!, g2.dev!, g3.dev!];
    expect(d1.mtu).to.equal(65521);
    expect(d3.mtu).to.equal(1500);
    const s1 = new Sink(d1);
    const s2 = new Sink(d2);
    const s3 = new Sink(d3);
    // Let the bridge learn where guests 2 and 3 are, so what follows is forwarded, not flooded.
    await sendAll(d2, [udpFrame(flow(ENDS_21), 1, 10)]);
    await sendAll(d3, [udpFrame(flow({ ...ENDS_21, srcMac: macOf(3), srcIp: '10.0.0.3' }), 2, 10)]);
    await w.until(() => s1.received === 2, () => 'learning frames');
    const [n2, n3] = [s2.received, s3.received];
    const big = tcpFrame(flow(ENDS_12), 1, 60000, 5000);
    await sendAll(d1, [big]);
    await w.until(() => s2.received === n2 + 1, () => `gso frames ${s2.received}`);
    expect(Buffer.from(s2.frames[n2]!).equals(Buffer.from(big))).to.equal(true);
    expect(d1.counters().tx_gso).to.equal(1);
    expect(d2.counters().rx_gso).to.equal(1);
    // To guest 3 (no feature-gso-tcpv4): 60000 / 1460 → 42 segments with good checksums.
    const to3 = tcpFrame(flow({ ...ENDS_12, dstMac: macOf(3), dstIp: '10.0.0.3' }), 2, 60000, 7000);
    await sendAll(d1, [to3]);
    await w.until(() => s3.received === n3 + 42, () => `segments ${s3.received}`);
    expect(s3.errors).to.deep.equal([]);
    const segs = s3.frames.slice(n3);
    expect(segs.every((f) => f.length <= 1514)).to.equal(true);
    const payload = Buffer.concat(segs.map((f) => Buffer.from(f.subarray(54))));
    expect(payload.equals(Buffer.from(to3.subarray(54)))).to.equal(true);
    expect(w.bridge.counters.segmented).to.equal(1);
    await expectClean(w);
  });

  it('zeroes the rest of every TX page for an untrusted backend (XSA-403), and not for a trusted one', async () => {
    for (const trusted of [true, false]) {
      const w = await NetWorld.create();
      const g1 = await w.addGuest({ name: 'u1', vif: { mac: macOf(1), trusted } });
      const g2 = await w.addGuest({ name: 'u2', vif: { mac: macOf(2) } });
      const s2 = new Sink(g2.dev!);
      const f12 = flow(ENDS_12);
      // A big frame leaves its bytes in a page; a small one after it reuses the page.
      await sendAll(g1.dev!, [udpFrame(f12, 1, 1400)]);
      await w.until(() => s2.received === 1, () => 'first frame');
      await sendAll(g1.dev!, [udpFrame(f12, 2, 20)]);
      await w.until(() => s2.received === 2, () => 'second frame');
      // Trusted: the small frame's page still holds the big one's bytes. Untrusted: only zeros after it.
      if (trusted) expect(stale(g1)).to.be.greaterThan(0);
      else expect(stale(g1)).to.equal(0);
      await expectClean(w);
    }
  });

  it('carries a blank checksum (csum_blank) to an offloading guest, which completes it before the workload sees it', async () => {
    const w = await NetWorld.create();
    const { d1, d2, g1 } = await twoGuests(w);
    const s2 = new Sink(d2);
    const good = udpFrame(flow(ENDS_12), 7, 700);
    const blank = good.slice();
    blank[40] = 0x12; // whatever the sender left in the UDP checksum field
    blank[41] = 0x34;
    const seen: Uint8Array[] = [];
    w.bridge.tap((p, dir) => { if (dir === 'in') seen.push(w.pool.bytes(p)); }, `vif${g1.domid}.0`);
    expect(d1.sendPacket(blank, blank.length, { csumBlank: true })).to.equal(true);
    await w.until(() => s2.received === 1, () => 'the frame');
    // On the wire (the vif's capture) the checksum is still blank; the guest got it completed.
    expect(Buffer.from(seen[0]!).equals(Buffer.from(blank))).to.equal(true);
    expect(Buffer.from(s2.frames[0]!).equals(Buffer.from(good))).to.equal(true);
    expect(s2.errors).to.deep.equal([]);
    expect(d2.counters().rx_csum_completed).to.equal(1);
    await expectClean(w);
  });

  it('refuses a backend without feature-rx-copy, as Linux netfront does', async () => {
    const w = await NetWorld.create({ netback: { features: { rxCopy: false } } });
    const g = await w.addGuest({ name: 'norx', vif: undefined });
    const dev = await w.plugVif(g, { mac: macOf(1) }, false);
    await w.until(() => w.lines.some((l) => /backend does not support copying receive path/.test(l)), () => 'the refusal');
    const st = await g.xs.readString(`/local/domain/${g.domid}/error/device/vif/0/error`);
    expect(st.ok && st.value).to.match(/no-rx-copy/);
    expect(dev.connected).to.equal(false);
    await expectClean(w);
  });
});

/** Pages of g's RAM that still hold frame 1's payload at page offset 1200 (what an earlier frame left behind). */
function stale(g: NetGuest): number {
  const k = g.k;
  const want = new Uint8Array(64);
  for (let i = 0; i < 64; i++) want[i] = payloadByte(1, 1200 - 42 + i);
  const buf = new Uint8Array(64);
  let n = 0;
  for (let pfn = k.boot.ramBase; pfn < k.boot.ramBase + k.boot.ramPages; pfn++) {
    if (!k.mem.canAccess(pfn as Pfn, false)) continue;
    k.mem.copyOut(k.gpa(pfn as Pfn, 1200), buf);
    if (Buffer.compare(buf, want) === 0) n++;
  }
  return n;
}
