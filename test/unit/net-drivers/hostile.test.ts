/**
 * Hostile frontends against netback (XSA-39, XSA-155, XSA-423/432): a guest
 * that writes garbage into its TX ring, chains too many slots, claims sizes
 * its slots contradict, points past its pages, names grants it never made,
 * or makes req_prod leap — while two well-behaved guests run an iperf TCP
 * stream through the same dom0. Protocol violations disable the hostile vif
 * and close its device (error node, Closing); malformed-but-survivable
 * packets are answered NETIF_RSP_ERROR and the vif keeps working, which a
 * final good packet proves. The good stream must finish untouched, and no
 * mapping, packet or frame may be left behind.
 */
import { expect } from 'chai';
import { NetWorld, macOf, type NetGuest } from '../../helpers/net-world.ts';
import { HostileFront } from '../../helpers/net-hostile.ts';
import { Sink, flow, sendAll, udpFrame } from '../../helpers/net-frames.ts';
import { runIperf } from '../../../domU/workloads/iperf-engine.ts';
import {
  NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETTXF_extra_info, NETTXF_more_data, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_GSO_TYPE_TCPV4,
} from '../../../shared/abi/netif.ts';
import type { Netfront } from '../../../domU/netfront/netfront.ts';

interface Scene {
  w: NetWorld;
  h: HostileFront;
  g3: NetGuest;
  sink: Sink;
  stream: Promise<void>;
}

const EVIL = macOf(9);
const TO_G3 = { srcMac: EVIL, dstMac: macOf(3), srcIp: '10.0.0.9', dstIp: '10.0.0.3' };

/** Two good guests streaming 4 MiB of TCP, a sink guest, and a hostile one. */
async function scene(txMode: 'map' | 'grant' = 'map'): Promise<Scene> {
  const w = await NetWorld.create({ netback: { txMode } });
  const g1 = await w.addGuest({ name: 'client', vif: { mac: macOf(1) } });
  const g2 = await w.addGuest({ name: 'server', vif: { mac: macOf(2) } });
  const g3 = await w.addGuest({ name: 'sink', vif: { mac: macOf(3) } });
  const h = await HostileFront.attach(w, 'evil', EVIL);
  // The bridge learns where the sink is before anything is streamed.
  await sendAll(g3.dev as Netfront, [udpFrame(flow({ srcMac: macOf(3), dstMac: EVIL, srcIp: '10.0.0.3', dstIp: '10.0.0.9' }), 0, 20)]);
  await w.until(() => w.bridge.macs().has(macOf(3)), () => 'the bridge to learn the sink');
  const sink = new Sink(g3.dev as Netfront);
  const stream = (async () => {
    const r = await runIperf({
      clock: w.clock, spec: { protocol: 'tcp', bytes: 4 << 20, interval: 0 },
      client: { device: g1.dev as Netfront, ip: '10.0.0.1' }, server: { device: g2.dev as Netfront, ip: '10.0.0.2' },
      closeWaitMs: 3000,
    });
    if (!r.ok) throw new Error(JSON.stringify(r.error));
    const { client, server } = r.value;
    expect(client.error, 'the good stream failed').to.equal(undefined);
    expect(server.streams[0]?.bytes, 'bytes of the good stream').to.equal(4 << 20);
    expect(server.streams[0]?.corruptBytes).to.equal(0);
    expect(server.streams[0]?.closed).to.equal(true);
  })();
  return { w, h, g3, sink, stream };
}

/** The hostile vif was disabled for `reason`, its device went Closing with an error node. */
async function expectCutOff(s: Scene, reason: RegExp): Promise<void> {
  const vif = s.w.netback.vifs.get(s.h.vifName)!;
  await s.w.until(() => vif.disabled, () => `${s.h.vifName} to be disabled`);
  expect(vif.fatalReason).to.match(reason);
  expect(vif.counters.fatal).to.equal(1);
  const be = `/local/domain/0/backend/vif/${s.h.g.domid}/0`;
  await s.w.until(() => s.h.tornDown > 0, () => 'the hostile frontend to see Closing');
  const st = await s.w.dom0xs.readString(`${be}/state`);
  expect(st.ok && ['5', '6'].includes(st.value), `backend state ${JSON.stringify(st)}`).to.equal(true);
  const e = await s.w.dom0xs.readString(`/local/domain/0/error/backend/vif/${s.h.g.domid}/0/error`);
  expect(e.ok && e.value).to.match(reason);
}

/** A good packet from the hostile guest to the sink: delivered intact and answered OKAY. */
async function goodPacket(s: Scene, seq: number): Promise<void> {
  const frame = udpFrame(flow(TO_G3), seq, 300);
  const p = s.h.writeData(0, 0, frame);
  const before = s.sink.received;
  s.h.put({ gref: p.gref, offset: 0, flags: 0, id: 77, size: frame.length });
  s.h.push();
  await s.w.until(() => s.sink.frames.slice(before).some((f) => Buffer.from(f).equals(Buffer.from(frame))), () => 'the good packet');
  await s.w.until(() => s.h.responses().some((r) => r.id === 77 && r.status === NETIF_RSP_OKAY), () => 'OKAY for the good packet');
}

async function finish(s: Scene): Promise<void> {
  await s.stream;
  const leak = await s.w.shutdown();
  expect(leak.reconcile.ok, JSON.stringify(leak.reconcile)).to.equal(true);
  expect(leak.dom0Maptrack, 'dom0 grant mappings left').to.equal(0);
  expect(leak.packetsInUse, 'packets left').to.equal(0);
  for (const g of leak.guests.filter((x) => x.name !== 'evil')) expect(g).to.deep.equal({ name: g.name, lostRefs: 0, lostPages: 0, quarantined: 0 });
  expect(s.w.netback.vifs.size).to.equal(0);
}

// A test that fails before shutdown() must not leave its pump running (mocha would never exit).
afterEach(() => NetWorld.stopAll());

describe('netback against hostile frontends, with a good stream alongside', function () {
  this.timeout(30000);

  it('disables a vif whose req_prod leaps more than a ring ahead (XSA-39), never looping on it', async () => {
    const s = await scene();
    s.h.setReqProd(s.h.tx.reqProdPvt + 100_000);
    await expectCutOff(s, /Impossible number of requests/);
    await finish(s);
  });

  it('disables a vif that chains more than fatal_skb_slots (20) slots in one packet', async () => {
    const s = await scene();
    const p = s.h.pages[1]!;
    for (let i = 0; i < 22; i++) s.h.put({ gref: p.gref, offset: 0, flags: i < 21 ? NETTXF_more_data : 0, id: i, size: i === 0 ? 22 * 60 : 60 });
    s.h.push();
    await expectCutOff(s, /Malicious frontend using 21 slots/);
    await finish(s);
  });

  it('disables a vif whose slot runs past the end of its page', async () => {
    const s = await scene();
    s.h.put({ gref: s.h.pages[1]!.gref, offset: 4000, flags: 0, id: 1, size: 200 });
    s.h.push();
    await expectCutOff(s, /Cross page boundary/);
    await finish(s);
  });

  it('disables a vif that promises more_data and never publishes it', async () => {
    const s = await scene();
    s.h.put({ gref: s.h.pages[1]!.gref, offset: 0, flags: NETTXF_more_data, id: 1, size: 2000 });
    s.h.push();
    await expectCutOff(s, /exceeds this limit/);
    await finish(s);
  });

  it('disables a vif that sends an unknown extra-info type or a zero GSO size', async () => {
    for (const bad of ['type', 'gso'] as const) {
      const s = await scene();
      s.h.put({ gref: s.h.pages[1]!.gref, offset: 0, flags: NETTXF_extra_info, id: 1, size: 100 });
      // Type 7 is beyond XEN_NETIF_EXTRA_TYPE_MAX; the codec writes it as given.
      if (bad === 'type') s.h.putExtra({ type: 7, flags: 0 } as never);
      else s.h.putExtra({ type: XEN_NETIF_EXTRA_TYPE_GSO, flags: 0, gso: { size: 0, type: XEN_NETIF_GSO_TYPE_TCPV4, features: 0 } });
      s.h.push();
      await expectCutOff(s, bad === 'type' ? /Invalid extra type: 7/ : /GSO size must not be zero/);
      await finish(s);
    }
  });

  it('answers NETIF_RSP_ERROR for bad grant refs, oversized slots and 19-slot packets, and keeps serving', async () => {
    const s = await scene();
    const vif = s.w.netback.vifs.get(s.h.vifName)!;
    const p = s.h.pages[1]!;
    // A grant reference we never made.
    s.h.put({ gref: 4000, offset: 0, flags: 0, id: 1, size: 100 });
    // A second slot bigger than what is left of the packet (a size that overflowed 65535).
    s.h.put({ gref: p.gref, offset: 0, flags: NETTXF_more_data, id: 2, size: 100 });
    s.h.put({ gref: p.gref, offset: 0, flags: 0, id: 3, size: 4000 });
    // 19 slots: more than XEN_NETBK_LEGACY_SLOTS_MAX, fewer than fatal: dropped, not fatal.
    for (let i = 0; i < 19; i++) s.h.put({ gref: p.gref, offset: 0, flags: i < 18 ? NETTXF_more_data : 0, id: 10 + i, size: i === 0 ? 19 * 50 : 50 });
    s.h.push();
    const seen: { id: number; status: number }[] = [];
    await s.w.until(() => { seen.push(...s.h.responses()); return seen.length >= 22; }, () => `responses (${seen.length})`);
    expect(seen.every((r) => r.status === NETIF_RSP_ERROR), JSON.stringify(seen)).to.equal(true);
    expect(seen.map((r) => r.id).sort((a, b) => a - b)).to.deep.equal([1, 2, 3, ...Array.from({ length: 19 }, (_, i) => 10 + i)]);
    expect(vif.disabled).to.equal(false);
    expect(vif.counters.txErrors).to.equal(3);
    await goodPacket(s, 5);
    await finish(s);
  });

  it('in grant mode, a bad grant ref past the header fails only the receiver\'s copy: the sink drops that packet and everyone keeps serving', async () => {
    const s = await scene('grant');
    const vif = s.w.netback.vifs.get(s.h.vifName)!;
    const frame = udpFrame(flow(TO_G3), 11, 300);
    const p = s.h.writeData(0, 0, frame);
    const rxErrors = (): number => (s.g3.dev as Netfront).counters().rx_errors ?? 0;
    const errorsBefore = rxErrors();
    // 200 bytes from a good grant (128 copied as the header, 72 left in the grant), 100 from one never made.
    s.h.put({ gref: p.gref, offset: 0, flags: NETTXF_more_data, id: 5, size: frame.length });
    s.h.put({ gref: 4000, offset: 0, flags: 0, id: 6, size: 100 });
    s.h.push();
    const seen: { id: number; status: number }[] = [];
    await s.w.until(() => { seen.push(...s.h.responses()); return seen.length >= 2; }, () => `responses (${seen.length})`);
    // Netback never looked at slot 2's grant: the sender's request is answered OKAY ...
    expect(seen.map((r) => r.status)).to.deep.equal([NETIF_RSP_OKAY, NETIF_RSP_OKAY]);
    // ... and the receiver's copy from it failed: its netfront saw an error and dropped the packet.
    await s.w.until(() => rxErrors() > errorsBefore, () => 'the sink to see the failed copy');
    expect(s.sink.frames.some((f) => Buffer.from(f).equals(Buffer.from(frame)))).to.equal(false);
    expect(vif.disabled).to.equal(false);
    expect(vif.counters.grantMaps).to.equal(0);
    await goodPacket(s, 12);
    await finish(s);
  });

  it('reassembles a header split across many tiny slots (XSA-423) and delivers the packet intact', async () => {
    const s = await scene();
    const frame = udpFrame(flow(TO_G3), 9, 900);
    // Ten 8-byte slots, then the rest: the 128-byte header spans eleven slots.
    const p = s.h.writeData(2, 0, frame);
    for (let i = 0; i < 11; i++) {
      const off = i * 8;
      const size = i === 0 ? frame.length : i < 10 ? 8 : frame.length - 80;
      s.h.put({ gref: p.gref, offset: off, flags: i < 10 ? NETTXF_more_data : 0, id: 40 + i, size });
    }
    const before = s.sink.received;
    s.h.push();
    // (The sink may also see the good stream's first, flooded, frames.)
    await s.w.until(() => s.sink.frames.slice(before).some((f) => Buffer.from(f).equals(Buffer.from(frame))), () => 'the split packet');
    expect(s.w.netback.vifs.get(s.h.vifName)!.disabled).to.equal(false);
    await finish(s);
  });

  it('survives random garbage in its ring: errors or a cut-off, never an exception, the good stream untouched', async () => {
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 8;
    };
    for (let round = 0; round < 3; round++) {
      const s = await scene();
      const vif = s.w.netback.vifs.get(s.h.vifName)!;
      let prod = s.h.tx.reqProdPvt as number;
      for (let burst = 0; burst < 6 && !vif.disabled; burst++) {
        const n = 1 + (rnd() % 40);
        for (let i = 0; i < n; i++) {
          const b = new Uint8Array(12);
          for (let j = 0; j < 12; j++) b[j] = rnd() & 0xff;
          // Mostly plausible grefs and offsets, so packets get past the first checks.
          if (rnd() % 2 === 0) { b[0] = s.h.pages[1]!.gref & 0xff; b[1] = s.h.pages[1]!.gref >>> 8; b[2] = 0; b[3] = 0; b[4] = rnd() & 0x0f; b[5] = 0; }
          s.h.rawSlot(prod + i, b);
        }
        prod += n;
        s.h.setReqProd(prod);
        await s.w.settle(5);
      }
      expect(vif.counters.txErrors + vif.counters.fatal + vif.counters.txPackets, 'netback answered the garbage').to.be.greaterThan(0);
      await finish(s);
    }
  });
});

