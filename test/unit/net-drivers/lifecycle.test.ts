/**
 * What happens around the data path: a guest that posts no RX buffers
 * (queue, then drop with counted drops, never stalling the sender or other
 * vifs, recovery when it comes back), the RX drain timeout, a backend that
 * restarts mid-stream (netfront reconnects, TCP finishes every byte), the
 * event-channel and queue layouts netfront picks from what netback offers,
 * and the xentop view of the counters.
 */
import { expect } from 'chai';
import { NetWorld, macOf } from '../../helpers/net-world.ts';
import { Sink, flow, sendAll, udpFrame } from '../../helpers/net-frames.ts';
import { runIperf } from '../../../domU/workloads/iperf-engine.ts';
import { xentopBatch } from '../../../cli/views/xentop.ts';
import type { Netfront } from '../../../domU/netfront/netfront.ts';

const E = (a: number, b: number) => ({ srcMac: macOf(a), dstMac: macOf(b), srcIp: `10.0.0.${a}`, dstIp: `10.0.0.${b}` });

async function clean(w: NetWorld): Promise<void> {
  const leak = await w.shutdown();
  expect(leak.reconcile.ok, JSON.stringify(leak.reconcile)).to.equal(true);
  expect(leak.dom0Maptrack).to.equal(0);
  expect(leak.packetsInUse).to.equal(0);
  for (const g of leak.guests) expect(g).to.deep.equal({ name: g.name, lostRefs: 0, lostPages: 0, quarantined: 0 });
}

// A test that fails before shutdown() must not leave its pump running (mocha would never exit).
afterEach(() => NetWorld.stopAll());

describe('netback and netfront around the data path', function () {
  this.timeout(30000);

  it('queues then drops for a guest that posts no buffers, without stalling its sender or other vifs, and recovers', async () => {
    const w = await NetWorld.create({ netback: { rxQueuePackets: 64 } });
    const g1 = await w.addGuest({ name: 'sender', vif: { mac: macOf(1) } });
    const g2 = await w.addGuest({ name: 'asleep', vif: { mac: macOf(2) }, netfront: { rxBuffers: 64 } });
    const g3 = await w.addGuest({ name: 'awake', vif: { mac: macOf(3) } });
    const [d1, d2, d3] = [g1.dev as Netfront, g2.dev as Netfront, g3.dev as Netfront];
    const s2 = new Sink(d2, false);
    const s3 = new Sink(d3, false);
    // Both receivers are learned first.
    await sendAll(d2, [udpFrame(flow(E(2, 1)), 0, 10)]);
    await sendAll(d3, [udpFrame(flow(E(3, 1)), 0, 10)]);
    // Each learning frame was flooded to the other receiver too: wait until both are in.
    await w.until(() => w.bridge.macs().size === 2 && s2.received === 1 && s3.received === 1, () => 'learning');
    w.pause(g2);
    const to2 = Array.from({ length: 400 }, (_, i) => udpFrame(flow(E(1, 2)), i, 1000));
    const to3 = Array.from({ length: 400 }, (_, i) => udpFrame(flow(E(1, 3)), i, 1000));
    // Interleaved: the sleeping guest must not hold up the other flow, nor the sender's ring.
    const all = to2.flatMap((f, i) => [f, to3[i] as Uint8Array]);
    await sendAll(d1, all);
    await w.until(() => s3.received === 401, () => `awake guest got ${s3.received}`);
    const v1 = w.netback.vifs.get(`vif${g1.domid}.0`)!;
    const v2 = w.netback.vifs.get(`vif${g2.domid}.0`)!;
    await w.until(() => v1.txInflight === 0, () => `sender's slots still held: ${v1.txInflight}`);
    // 64 buffers filled, 64 queued (their data copied out of the sender's pages), the rest dropped.
    expect(s2.received).to.equal(1);
    expect(v2.rxQueued).to.equal(64);
    expect(v2.counters.rxPackets).to.equal(64 + 1); // + the learning flood from guest 3
    expect(v2.counters.rxDropped).to.equal(400 - 64 - 64);
    expect(v2.counters.orphaned).to.be.greaterThan(0);
    w.resume(g2);
    await w.until(() => s2.received === 129, () => `woken guest got ${s2.received}`);
    expect(s2.errors).to.deep.equal([]);
    expect(v2.rxQueued).to.equal(0);
    await clean(w);
  });

  it('drops what waited longer than the drain timeout for a guest that never posts buffers', async () => {
    const w = await NetWorld.create({ netback: { rxDrainMs: 50 } });
    const g1 = await w.addGuest({ name: 'sender', vif: { mac: macOf(1) } });
    const g2 = await w.addGuest({ name: 'asleep', vif: { mac: macOf(2) }, netfront: { rxBuffers: 16 } });
    const s2 = new Sink(g2.dev as Netfront, false);
    await sendAll(g2.dev as Netfront, [udpFrame(flow(E(2, 1)), 0, 10)]);
    await w.until(() => w.bridge.macs().size === 1, () => 'learning');
    w.pause(g2);
    await sendAll(g1.dev as Netfront, Array.from({ length: 40 }, (_, i) => udpFrame(flow(E(1, 2)), i, 500)));
    const v2 = w.netback.vifs.get(`vif${g2.domid}.0`)!;
    await w.until(() => v2.rxQueued === 24, () => `queued ${v2.rxQueued}`);
    await w.until(() => v2.rxQueued === 0, () => `drained ${v2.rxQueued}`, 3000);
    expect(v2.counters.rxDropped).to.equal(24);
    w.resume(g2);
    await w.until(() => s2.received === 16, () => `got ${s2.received}`);
    await clean(w);
  });

  it('reconnects after a backend restart mid-stream, and TCP still delivers every byte', async () => {
    const w = await NetWorld.create();
    const g1 = await w.addGuest({ name: 'client', vif: { mac: macOf(1) } });
    const g2 = await w.addGuest({ name: 'server', vif: { mac: macOf(2) } });
    const [d1, d2] = [g1.dev as Netfront, g2.dev as Netfront];
    const stream = runIperf({
      clock: w.clock, spec: { protocol: 'tcp', bytes: 6 << 20, interval: 0 },
      client: { device: d1, ip: '10.0.0.1' }, server: { device: d2, ip: '10.0.0.2' },
      clientOptions: { minRtoMs: 20, stallTimeoutMs: 10_000 },
    });
    await w.until(() => (d2.counters().rx_bytes ?? 0) > 1 << 20, () => 'the stream to get going');
    const oldVif = w.netback.vifs.get(`vif${g1.domid}.0`);
    await w.restartNetback();
    expect(w.netback.vifs.get(`vif${g1.domid}.0`)).to.not.equal(oldVif);
    await w.until(() => d1.connects === 2 && d2.connects === 2 && d1.connected && d2.connected, () => `reconnect (${d1.connects}, ${d2.connects})`);
    const r = await stream;
    expect(r.ok).to.equal(true);
    if (!r.ok) return;
    expect(r.value.client.error).to.equal(undefined);
    expect(r.value.server.streams[0]?.bytes).to.equal(6 << 20);
    expect(r.value.server.streams[0]?.corruptBytes).to.equal(0);
    await clean(w);
  });

  it('uses one event channel per queue when netback offers no split channels, and queue-N keys for several queues', async () => {
    const w = await NetWorld.create({ netback: { features: { splitEventChannels: false }, maxQueues: 2 } });
    const g1 = await w.addGuest({ name: 'a', vif: { mac: macOf(1) }, netfront: { maxQueues: 8 } });
    const g2 = await w.addGuest({ name: 'b', vif: { mac: macOf(2) } });
    const fe = `/local/domain/${g1.domid}/device/vif/0`;
    const rd = async (p: string) => { const r = await w.dom0xs.readString(p); return r.ok ? r.value : undefined; };
    expect(await rd(`${fe}/multi-queue-num-queues`)).to.equal('2');
    for (const q of [0, 1]) {
      expect(await rd(`${fe}/queue-${q}/event-channel`)).to.match(/^[0-9]+$/);
      expect(await rd(`${fe}/queue-${q}/event-channel-tx`)).to.equal(undefined);
      expect(await rd(`${fe}/queue-${q}/tx-ring-ref`)).to.match(/^[0-9]+$/);
    }
    expect(await rd(`${fe}/tx-ring-ref`)).to.equal(undefined);
    const s2 = new Sink(g2.dev as Netfront);
    // Several flows (ports) spread over both queues; each flow keeps its order.
    const frames = Array.from({ length: 64 }, (_, i) => udpFrame(flow(E(1, 2), 40000 + (i % 8)), i, 200));
    await sendAll(g1.dev as Netfront, frames);
    await w.until(() => s2.received === 64, () => `got ${s2.received}`);
    for (let p = 0; p < 8; p++) {
      const sent = frames.filter((_, i) => i % 8 === p).map((f) => Buffer.from(f).toString('hex'));
      const got = s2.frames.filter((f) => ((f[34] as number) << 8 | (f[35] as number)) === 40000 + p).map((f) => Buffer.from(f).toString('hex'));
      expect(got).to.deep.equal(sent);
    }
    await clean(w);
  });

  it('shows each vif in xentop from the guest side: NETTX is what the guest sent, NETRX what it received', async () => {
    const w = await NetWorld.create();
    const g1 = await w.addGuest({ name: 'a', vif: { mac: macOf(1) } });
    const g2 = await w.addGuest({ name: 'b', vif: { mac: macOf(2) } });
    const s2 = new Sink(g2.dev as Netfront, false);
    await sendAll(g1.dev as Netfront, Array.from({ length: 100 }, (_, i) => udpFrame(flow(E(1, 2)), i, 1000)));
    await w.until(() => s2.received === 100, () => `got ${s2.received}`);
    const [n1] = w.netback.netStats(g1.domid);
    const [n2] = w.netback.netStats(g2.domid);
    expect(n1).to.deep.include({ txPackets: 100n, txBytes: 104200n, rxPackets: 0n });
    expect(n2).to.deep.include({ rxPackets: 100n, rxBytes: 104200n, txPackets: 0n });
    const idle = { running: false, blocked: true, paused: false, dying: false, shutdown: null };
    const out = xentopBatch({
      node: { xenVersion: '4.17.3', totMemKiB: 1 << 20, freeMemKiB: 1 << 19, numCpus: 2, cpuHz: 2e9 },
      time: '00:00:00',
      domains: [g1, g2].map((g) => ({
        name: g.k.boot.name, domid: g.domid, state: idle, cpuNs: 0, memKiB: 12288, maxMemKiB: 12288, vcpus: 1, vcpusOnline: 1,
        nets: w.netback.netStats(g.domid), vbds: [],
      })),
    }, { networks: true });
    // NETS 1, NETTX(k) = 104200 / 1024 = 101 for the sender; its Net0 line shows the 100 packets it sent.
    expect(out).to.match(/\s+a\s.*\s1\s+101\s+0\s/);
    expect(out).to.match(/Net0 RX:\s+0bytes\s+0pkts\s+0err\s+0drop\s+TX:\s+104200bytes\s+100pkts/);
    await clean(w);
  });
});
