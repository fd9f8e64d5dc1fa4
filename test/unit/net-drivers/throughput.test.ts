/**
 * One-thread throughput of the whole path (netfront → netback → bridge →
 * netback → netfront, hypervisor included), blasting frames as fast as the
 * sender's ring allows: 1514-byte frames and 64 KiB GSO packets, in both TX
 * modes, next to a memcpy baseline taken in the same run. Rates are given
 * per wall second and per CPU second (the host is shared; CPU time is the
 * steadier denominator). Assertions are loose floors: they catch a path that
 * fell off a cliff (one hypercall per packet, a stall), not a slow host.
 */
import { expect } from 'chai';
import { NetWorld, macOf } from '../../helpers/net-world.ts';
import { Sink, flow, tcpFrame, udpFrame } from '../../helpers/net-frames.ts';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import type { MachineAddr } from '../../../shared/types.ts';
import type { Netfront } from '../../../domU/netfront/netfront.ts';

const E = { srcMac: macOf(1), dstMac: macOf(2), srcIp: '10.0.0.1', dstIp: '10.0.0.2' };

interface Result {
  label: string;
  pps: number;
  gbps: number;
  ppsCpu: number;
  gbpsCpu: number;
  hcPerPkt: number;
  copiesPerPkt: number;
  mapsPerPkt: number;
  notifPerPkt: number;
}

async function blast(txMode: 'map' | 'copy', gso: boolean, n: number, quiet = false): Promise<Result> {
  const w = await NetWorld.create({ netback: { txMode } });
  const g1 = await w.addGuest({ name: 'a', vif: { mac: macOf(1) }, netfront: { gso } });
  const g2 = await w.addGuest({ name: 'b', vif: { mac: macOf(2) }, netfront: { gso } });
  const [d1, d2] = [g1.dev as Netfront, g2.dev as Netfront];
  // Count only: checking every 64 KiB checksum in JS would cost more than the whole path (the tests elsewhere check).
  const sink = new Sink(d2, false, false);
  d2.send(udpFrame(flow({ ...E, srcMac: macOf(2), dstMac: macOf(1) }), 0, 10));
  await w.until(() => w.bridge.macs().has(macOf(2)), () => 'learning');
  const frame = gso ? tcpFrame(flow(E), 1, 65535 - 54, 1) : udpFrame(flow(E), 1, 1472);
  const vifs = [...w.netback.vifs.values()];
  const sum = (f: (v: (typeof vifs)[number]) => number): number => vifs.reduce((a, v) => a + f(v), 0);
  const c0 = { hc: sum((v) => v.counters.hypercalls), cp: sum((v) => v.counters.grantCopies), mp: sum((v) => v.counters.grantMaps), nt: sum((v) => v.counters.notificationsSent + v.counters.notificationsReceived) };
  const base = sink.received;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let sent = 0;
  while (sent < n) {
    if (d1.send(frame)) sent++;
    else await d1.whenWritable();
  }
  await w.until(() => sink.received - base >= n, () => `received ${sink.received - base} of ${n}`, 60_000);
  const wall = (performance.now() - t0) / 1000;
  const cpuU = process.cpuUsage(cpu0);
  const cpu = (cpuU.user + cpuU.system) / 1e6;
  expect(sink.errors).to.deep.equal([]);
  const bits = n * frame.length * 8;
  const r: Result = {
    label: `${txMode} ${gso ? '64 KiB GSO' : '1514 B'}`,
    pps: n / wall, gbps: bits / wall / 1e9, ppsCpu: n / cpu, gbpsCpu: bits / cpu / 1e9,
    hcPerPkt: (sum((v) => v.counters.hypercalls) - c0.hc) / n,
    copiesPerPkt: (sum((v) => v.counters.grantCopies) - c0.cp) / n,
    mapsPerPkt: (sum((v) => v.counters.grantMaps) - c0.mp) / n,
    notifPerPkt: (sum((v) => v.counters.notificationsSent + v.counters.notificationsReceived) - c0.nt) / n,
  };
  if (!quiet) console.log(`      ${r.label.padEnd(16)} ${(r.pps / 1e3).toFixed(1).padStart(6)} kpps ${r.gbps.toFixed(2).padStart(5)} Gbit/s wall | `
    + `${(r.ppsCpu / 1e3).toFixed(1).padStart(6)} kpps ${r.gbpsCpu.toFixed(2).padStart(5)} Gbit/s per CPU-s | per packet: `
    + `${r.hcPerPkt.toFixed(3)} hypercalls, ${r.copiesPerPkt.toFixed(2)} copies, ${r.mapsPerPkt.toFixed(2)} maps, ${r.notifPerPkt.toFixed(3)} dom0 notifications`);
  const leak = await w.shutdown();
  expect(leak.reconcile.ok).to.equal(true);
  expect(leak.dom0Maptrack).to.equal(0);
  return r;
}

/** memcpy within machine memory (the SAB), 64 KiB at a time, in GB/s: the same run's baseline. */
function memcpyGBps(): number {
  const mem = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
  const len = 64 << 10;
  const rounds = 4000;
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) mem.copy(((i & 63) * len) as MachineAddr, ((8 << 20) + (i & 63) * len) as MachineAddr, len);
  return (rounds * len) / ((performance.now() - t0) / 1000) / 1e9;
}

// A test that fails before shutdown() must not leave its pump running (mocha would never exit).
afterEach(() => NetWorld.stopAll());

describe('one-thread throughput of netfront → netback → bridge → netback → netfront', function () {
  this.timeout(120_000);

  it('moves 1514-byte frames and 64 KiB GSO packets with few hypercalls per packet (printed with a memcpy baseline)', async () => {
    const gb = memcpyGBps();
    console.log(`      memcpy baseline in machine memory: ${gb.toFixed(1)} GB/s (${(gb * 8).toFixed(0)} Gbit/s) per 64 KiB copy`);
    // Warm the JIT on every path first: a cold run is 2-3x slower than a warm one.
    for (const mode of ['map', 'copy'] as const) {
      await blast(mode, false, 5_000, true);
      await blast(mode, true, 1_000, true);
    }
    const small = [await blast('map', false, 40_000), await blast('copy', false, 40_000)];
    const big = [await blast('map', true, 6_000), await blast('copy', true, 6_000)];
    for (const r of small) {
      // Batching: far fewer than one hypercall per packet; a packet's copies stay small.
      expect(r.hcPerPkt, r.label).to.be.below(0.3);
      expect(r.ppsCpu, r.label).to.be.above(5_000);
    }
    for (const r of big) {
      expect(r.hcPerPkt, r.label).to.be.below(2);
      expect(r.gbpsCpu, r.label).to.be.above(0.5);
    }
    // Copy mode moves a 64 KiB packet with 16 + 16 page copies; map mode adds maps and unmaps.
    expect(big[1]!.copiesPerPkt).to.be.within(32, 34);
    expect(big[0]!.mapsPerPkt).to.be.within(15, 17);
  });
});
