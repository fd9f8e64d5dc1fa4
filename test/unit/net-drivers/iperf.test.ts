/**
 * iperf-like streams between two domUs through netfront → netback → bridge
 * → netback → netfront, in one thread: every byte arrives, in order, with
 * good checksums (the engine checks each delivered byte against the
 * sender's pattern and parses every frame), over TCP and UDP, one queue or
 * several, with and without GSO, in both TX modes; and the rate limit holds.
 * Also prints what the path costs per packet.
 */
import { expect } from 'chai';
import { NetWorld, macOf } from '../../helpers/net-world.ts';
import { runIperf, type IperfClientReport, type IperfServerReport, type IperfSpec } from '../../../domU/workloads/iperf-engine.ts';
import type { NetfrontOptions } from '../../../domU/netfront/netfront.ts';
import type { NetbackOptions } from '../../../dom0/netback/xenbus.ts';

interface Run {
  w: NetWorld;
  r: { client: IperfClientReport; server: IperfServerReport };
  seconds: number;
}

async function iperf(spec: IperfSpec, fe: NetfrontOptions = {}, nb: Partial<NetbackOptions> = {}, rate?: string): Promise<Run> {
  const w = await NetWorld.create({ netback: nb });
  const a = await w.addGuest({ name: 'client', vif: { mac: macOf(1), ...(rate !== undefined ? { rate } : {}) }, netfront: fe });
  const b = await w.addGuest({ name: 'server', vif: { mac: macOf(2) }, netfront: fe });
  const t0 = performance.now();
  const r = await runIperf({
    clock: w.clock,
    spec: { interval: 0, ...spec },
    client: { device: a.dev!, ip: '10.0.0.1' },
    server: { device: b.dev!, ip: '10.0.0.2' },
    closeWaitMs: 2000,
  });
  const seconds = (performance.now() - t0) / 1000;
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return { w, r: r.value, seconds };
}

function checkDelivered(run: Run): void {
  const { client: c, server: s } = run.r;
  expect(c.error, 'client error').to.equal(undefined);
  const sent = c.streams.reduce((n, x) => n + x.bytes, 0);
  const got = s.streams.reduce((n, x) => n + x.bytes, 0);
  expect(s.streams.length, 'server streams').to.equal(c.spec.parallel);
  expect(got, 'bytes received').to.equal(sent);
  for (const x of s.streams) {
    expect(x.closed, 'stream closed').to.equal(true);
    expect(x.corruptBytes, 'corrupt bytes').to.equal(0);
    if (x.protocol === 'udp') {
      expect(x.lostPackets, 'lost').to.equal(0);
      expect(x.outOfOrder, 'out of order').to.equal(0);
    }
  }
  expect(Object.values(s.endpoint.rxErrors).reduce((n, v) => n + (v ?? 0), 0), JSON.stringify(s.endpoint.rxErrors)).to.equal(0);
}

async function expectClean(w: NetWorld): Promise<void> {
  const leak = await w.shutdown();
  expect(leak.reconcile.ok, JSON.stringify(leak.reconcile)).to.equal(true);
  expect(leak.dom0Maptrack).to.equal(0);
  expect(leak.packetsInUse).to.equal(0);
  for (const g of leak.guests) expect(g).to.deep.equal({ name: g.name, lostRefs: 0, lostPages: 0, quarantined: 0 });
}

/** One line of costs: packets/s, Gbit/s, and per packet hypercalls, grant copies and maps in dom0. */
function report(label: string, run: Run): string {
  const { w } = run;
  const bytes = run.r.server.streams.reduce((n, x) => n + x.bytes, 0);
  const vifs = [...w.netback.vifs.values()];
  const sum = (f: (v: (typeof vifs)[number]) => number) => vifs.reduce((n, v) => n + f(v), 0);
  const pkts = sum((v) => v.counters.txPackets);
  const line = `${label}: ${(bytes * 8 / run.seconds / 1e9).toFixed(2)} Gbit/s goodput, ${(pkts / run.seconds / 1000).toFixed(0)} kpkt/s through dom0; `
    + `per packet: ${(sum((v) => v.counters.hypercalls) / pkts).toFixed(3)} hypercalls, ${(sum((v) => v.counters.grantCopies) / pkts).toFixed(2)} copies, `
    + `${(sum((v) => v.counters.grantMaps) / pkts).toFixed(2)} maps, ${(sum((v) => v.counters.notificationsSent + v.counters.notificationsReceived) / pkts).toFixed(3)} dom0 notifications`;
  console.log(`      ${line}`);
  return line;
}

// A test that fails before shutdown() must not leave its pump running (mocha would never exit).
afterEach(() => NetWorld.stopAll());

describe('iperf streams between two domUs over netfront/netback (one thread)', function () {
  this.timeout(60000);

  it('delivers a TCP stream whole and in order', async () => {
    const run = await iperf({ protocol: 'tcp', bytes: 16 << 20 });
    checkDelivered(run);
    report('TCP 1500 MTU, map', run);
    await expectClean(run.w);
  });

  it('delivers a TCP stream whole in copy mode too', async () => {
    const run = await iperf({ protocol: 'tcp', bytes: 8 << 20 }, {}, { txMode: 'copy' });
    checkDelivered(run);
    report('TCP 1500 MTU, copy', run);
    await expectClean(run.w);
  });

  it('delivers a UDP stream with no loss, reordering or corruption', async () => {
    const run = await iperf({ protocol: 'udp', bitrate: 400e6, bytes: 4 << 20, length: 1472 });
    checkDelivered(run);
    report('UDP 1472 B', run);
    await expectClean(run.w);
  });

  it('spreads four TCP streams over four queues and delivers every one', async () => {
    const run = await iperf({ protocol: 'tcp', bytes: 8 << 20, parallel: 4 }, { maxQueues: 4 });
    checkDelivered(run);
    const vif = [...run.w.netback.vifs.values()][0]!;
    expect(vif.numQueues).to.equal(4);
    const fe = await run.w.dom0xs.readString(`/local/domain/${vif.cfg.frontDom}/device/vif/0/multi-queue-num-queues`);
    expect(fe.ok && fe.value).to.equal('4');
    report('TCP x4, 4 queues', run);
    await expectClean(run.w);
  });

  it('carries 64 KiB GSO segments end to end (TSO on both guests, full checksums)', async () => {
    const run = await iperf({ protocol: 'tcp', bytes: 64 << 20, window: 4 << 20, length: 1 << 20 }, { gso: true });
    checkDelivered(run);
    const vifs = [...run.w.netback.vifs.values()];
    expect(vifs[0]!.counters.txGso).to.be.greaterThan(100);
    expect(vifs[1]!.counters.rxGso).to.be.greaterThan(100);
    report('TCP GSO 64 KiB', run);
    await expectClean(run.w);
  });

  it('carries 64 KiB GSO segments with checksum offload: blank checksums cross dom0 and the receiver unsummed, every byte verified', async () => {
    const run = await iperf({ protocol: 'tcp', bytes: 32 << 20, window: 4 << 20, length: 1 << 20 }, { gso: true, csumOffload: true });
    checkDelivered(run);
    expect(run.r.server.streams.reduce((n, x) => n + x.bytes, 0)).to.equal(32 << 20);
    // Nobody summed the data: the bridge completed nothing and the receiving netfront completed nothing.
    expect(run.w.bridge.counters.checksummed, 'bridge checksummed').to.equal(0);
    expect(run.r.server.deviceCounters['rx_csum_completed'] ?? 0, 'netfront completed').to.equal(0);
    expect(run.r.client.deviceCounters['tx_gso'] ?? 0).to.be.greaterThan(100);
    report('TCP GSO 64 KiB, checksum offload', run);
    await expectClean(run.w);
  });

  it('still catches a byte corrupted in dom0 when checksum offload lets it past every checksum', async () => {
    // Copy mode, so packet data is dom0's own memory and a tap can damage it, as a bad NIC or driver would.
    const w = await NetWorld.create({ netback: { txMode: 'copy' } });
    const a = await w.addGuest({ name: 'client', vif: { mac: macOf(1) }, netfront: { gso: true, csumOffload: true } });
    const b = await w.addGuest({ name: 'server', vif: { mac: macOf(2) }, netfront: { gso: true, csumOffload: true } });
    let damaged = 0;
    const untap = w.bridge.tap((pkt, dir) => {
      // One big data packet, one byte deep in its payload, on its way out to the server.
      if (dir !== 'out' || damaged > 0 || pkt.len < 8192) return;
      const at = pkt.len - 1000;
      const one = new Uint8Array(1);
      w.pool.copyOut(pkt, one, 0, at, 1);
      one[0] = (one[0] as number) ^ 0x5a;
      if (w.pool.writeLocal(pkt, at, one)) damaged++;
    }, `vif${b.domid}.0`);
    const r = await runIperf({
      clock: w.clock, spec: { interval: 0, protocol: 'tcp', bytes: 4 << 20, window: 1 << 20, length: 1 << 20 },
      client: { device: a.dev!, ip: '10.0.0.1' }, server: { device: b.dev!, ip: '10.0.0.2' }, closeWaitMs: 2000,
    });
    untap();
    if (!r.ok) throw new Error(JSON.stringify(r.error));
    expect(damaged, 'packets damaged').to.equal(1);
    const st = r.value.server.streams[0]!;
    // The frame was not dropped as a bad checksum (nobody checked one): the payload check caught it.
    expect(r.value.server.endpoint.rxErrors['bad-l4-checksum'] ?? 0).to.equal(0);
    expect(st.corruptBytes, 'corrupt bytes counted').to.be.greaterThan(0);
    await expectClean(w);
  });

  it('holds a guest to its vif rate (credit scheduler) and still delivers every byte', async () => {
    // 8 Mbit/s = 1 MB/s, credit every 10 ms (10 000 bytes).
    const run = await iperf({ protocol: 'udp', bitrate: 100e6, time: 1.0, length: 1000 }, {}, {}, '10000,10000');
    checkDelivered(run);
    const got = run.r.server.streams.reduce((n, x) => n + x.bytes, 0);
    const vif = [...run.w.netback.vifs.values()][0]!;
    // Delivery time at the server: the client's view would miss what its TX ring (256 slots) still held when it stopped.
    const st = run.r.server.streams[0]!;
    const deliveringS = Number(st.lastNs - st.firstNs) / 1e9;
    console.log(`      rate 1 MB/s: ${got} bytes delivered over ${deliveringS.toFixed(2)} s (${(got / deliveringS / 1e6).toFixed(2)} MB/s of payload), credit waits ${vif.counters.throttled}`);
    // Never more than the rate over that time, plus the burst allowance (128 KiB) and one interval.
    expect(got).to.be.at.most(1e6 * deliveringS + 131072 + 10_000);
    // Late timers on a busy host only slow it down; it must still move.
    expect(got).to.be.at.least(0.3e6 * deliveringS);
    expect(vif.counters.throttled).to.be.greaterThan(10);
    await expectClean(run.w);
  });
});
