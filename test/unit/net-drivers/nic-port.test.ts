/**
 * The NIC as a port of dom0's bridge, in one thread: a guest's netfront,
 * netback and xenbr0 in dom0 (NetWorld), the NIC model pumped by hand, dom0's
 * NicPort driving it through each DMA API, and a host outside the machine on
 * the wire's far end. Frames leave through the NIC and come back; the bridge
 * learns who sits behind the NIC; every counter agrees with every other.
 */
import { expect } from 'chai';
import { NetWorld, macOf, type NetGuest } from '../../helpers/net-world.ts';
import { Sink } from '../../helpers/net-frames.ts';
import { checkEchoReply, echoRequest, echoSeq } from '../../helpers/nic-frames.ts';
import { NIC_DESC, NIC_DESC_MORE, NIC_REGS, NIC_STATUS, Nic, Wire, type WireMode } from '../../../dom0/devices/nic.ts';
import { DEVICE_STATUS, MMIO_COMMON, MmioWindow } from '../../../dom0/dma/mmio.ts';
import { dmaWorld, pattern } from '../dma/helpers.ts';
import { OutsideHost } from '../../../dom0/devices/nic-host.ts';
import { NicPort, describeNicPortError } from '../../../dom0/net/nic-port.ts';
import { createDmaApi, type DmaConfig } from '../../../dom0/dma/create-dma.ts';
import { describeDmaError, type DmaApi } from '../../../dom0/dma/dma-api.ts';
import { IommuView } from '../../../shared/dma/iommu-view.ts';
import { MachineLayout } from '../../../shared/machine-layout.ts';
import type { IommuMode } from '../../../shared/abi/iommu.ts';
import type { MemoryModel } from '../../../shared/abi/machine.ts';
import type { Netfront } from '../../../domU/netfront/netfront.ts';

const HOST_MAC = '02:00:00:0e:0e:01';
const ends = (g: number) => ({ srcMac: macOf(g), dstMac: HOST_MAC, srcIp: `10.0.0.${g}`, dstIp: '10.0.0.254' });

interface Rig {
  w: NetWorld;
  a: NetGuest;
  b: NetGuest;
  nic: Nic;
  view: IommuView;
  port: NicPort;
  dma: DmaApi;
  host: OutsideHost | undefined;
  wire: Wire;
  stop(): void;
}

async function rig(model: MemoryModel, mode: IommuMode, cfg: DmaConfig, wireMode: WireMode, queue?: DmaConfig): Promise<Rig> {
  const w = await NetWorld.create({ dom0Model: model, dom0KiB: 24 * 1024 });
  const a = await w.addGuest({ name: 'a', vif: { mac: macOf(1) } });
  const b = await w.addGuest({ name: 'b', vif: { mac: macOf(2) } });
  const dev = w.m.hv.iommu.addDevice({ name: 'nic0', owner: 0, mode });
  if (!dev.ok) throw new Error(dev.error);
  const layout = new MachineLayout(w.m.mem);
  const wire = Wire.create(wireMode);
  const nic = new Nic(layout, dev.value.blockAddr, wire, 0, { spinUs: 0 });
  const dma = createDmaApi(w.dom0, dev.value, cfg);
  if (!dma.ok) throw new Error(describeDmaError(dma.error));
  let queueDma: DmaApi | undefined;
  if (queue !== undefined) {
    const q = createDmaApi(w.dom0, dev.value, queue);
    if (!q.ok) throw new Error(describeDmaError(q.error));
    queueDma = q.value;
  }
  const port = NicPort.attach(w.dom0, dma.value, w.bridge, w.pool, w.loop, { txEntries: 32, rxEntries: 32, ...(queueDma ? { queueDma } : {}) });
  if (!port.ok) throw new Error(describeNicPortError(port.error));
  const host = wireMode === 'pair' ? new OutsideHost(wire, 1, { mac: HOST_MAC }, () => {}) : undefined;
  // The NIC and the outside host run "concurrently": pumped between the world's passes.
  let running = true;
  const tick = (): void => {
    if (!running) return;
    for (let i = 0; i < 8; i++) if (nic.processOnce() + (host?.serveOnce() ?? 0) === 0) break;
    setImmediate(tick);
  };
  setImmediate(tick);
  return { w, a, b, nic, view: new IommuView(layout, dev.value.blockAddr), port: port.value, dma: dma.value, host, wire, stop: () => { running = false; } };
}

async function ping(r: Rig, g: NetGuest, n: number, payload: (i: number) => number): Promise<{ sent: Uint8Array[]; got: Uint8Array[] }> {
  const dev = g.dev as Netfront;
  const sink = new Sink(dev, true, false);
  const sent = Array.from({ length: n }, (_, i) => echoRequest(ends(g.domid === r.a.domid ? 1 : 2), 7, i, payload(i)));
  for (const f of sent) {
    await r.w.until(() => dev.send(f), () => 'room on the guest TX ring');
  }
  await r.w.until(() => sink.received >= n, () => `${n} echo replies (got ${sink.received})`);
  return { sent, got: sink.frames };
}

afterEach(() => NetWorld.stopAll());

describe('the NIC as a port of xenbr0 (one thread)', function () {
  this.timeout(20_000);

  const cases = [
    ['pm', 'passthrough', { kind: 'direct' }],
    ['p2m', 'passthrough', { kind: 'p2m' }],
    ['vp', 'explicit', { kind: 'iommu' }],
    ['p2m', 'passthrough', { kind: 'swiotlb', poolPages: 64, segmentPages: 16 }],
  ] as const;
  for (const [model, mode, cfg] of cases) {
    it(`takes a guest's pings out through the NIC to a host outside and brings the replies back (${cfg.kind} in a ${model} dom0)`, async () => {
      const r = await rig(model, mode, cfg, 'pair');
      try {
        const N = 80;
        const { sent, got } = await ping(r, r.a, N, (i) => 200 + ((i * 97) % 1200));
        expect(got.length).to.equal(N);
        for (const f of got) expect(checkEchoReply(sent[echoSeq(f)] as Uint8Array, f), `reply ${echoSeq(f)}`).to.equal(null);
        expect(new Set(got.map(echoSeq)).size).to.equal(N);
        // The bridge learned the outside host behind the NIC, and the guest behind its vif.
        const macs = r.w.bridge.macs();
        expect(macs.get(HOST_MAC)).to.equal('eth0');
        expect(macs.get(macOf(1))).to.equal(`vif${r.a.domid}.0`);
        await r.w.until(() => r.port.counters().txSent === N, () => 'every TX slot reclaimed');
        const pc = r.port.counters();
        const bc = r.w.bridge.portCounters('eth0')!;
        const nc = r.nic.counters();
        const hc = r.host!.counters();
        // Per-port counters add up, bridge → driver → NIC → wire → host, and back.
        expect([bc.txPackets, pc.txQueued, pc.txSent, nc.txFrames, hc.received, hc.pings]).to.deep.equal([N, N, N, N, N, N]);
        expect([nc.rxFrames, pc.rxFrames, bc.rxPackets]).to.deep.equal([N, N, N]);
        expect(bc.txBytes).to.equal(sent.reduce((s, f) => s + f.length, 0));
        expect(pc.rxBytes).to.equal(bc.rxBytes);
        expect([pc.txErrors, pc.txBusy, pc.txMapErrors, pc.rxErrors, pc.rxPoolEmpty, nc.dmaFaults, nc.wireDrops]).to.deep.equal([0, 0, 0, 0, 0, 0, 0]);
        expect(hc.sources).to.deep.equal([macOf(1)]);
        // Frames that waited for ring room had their grant-mapped pages copied out first.
        expect(pc.txOrphaned).to.equal(pc.txQueuedSoft);
        // The DMA API mapped every frame and every buffer; what is still mapped is the posted RX ring.
        const dc = r.dma.counters();
        expect(dc.maps - dc.unmaps).to.equal(32);
        expect(dc.maps).to.equal(N + N + 32);
        expect(pc.txDescriptors).to.equal(N + pc.txGathered);
        if (cfg.kind === 'iommu') expect([dc.iommuMaps > 0, dc.iommuUnmaps > 0, pc.txGathered]).to.deep.equal([true, true, 0]);
        // dom0's copy buffers straddle pages whose frames are not machine-contiguous in a PV dom0:
        // swiotlb bounces those (one contiguous segment each), p2m hands the NIC two segments to gather.
        if (cfg.kind === 'swiotlb') expect([dc.bounces > 0, pc.txGathered]).to.deep.equal([true, 0]);
        if (cfg.kind === 'p2m') expect([pc.txGathered > 0, dc.bounces]).to.deep.equal([true, 0]);
        if (cfg.kind === 'direct') expect(pc.txGathered).to.equal(0);
        expect(r.view.counters().strayDma).to.equal(0);
        console.log(`      ${cfg.kind}: gathered ${pc.txGathered}/${N}, waited ${pc.txQueuedSoft}, bounces ${dc.bounces}, iommu maps ${dc.iommuMaps}, hypercalls ${dc.hypercalls}, kicks ${pc.kicks}, irqs ${pc.interrupts}`);
      } finally {
        r.stop();
      }
    });
  }

  it('floods a frame for an unknown MAC out of the NIC; on a loopback wire it comes back in and the bridge learns the sender behind the NIC', async () => {
    const r = await rig('vp', 'explicit', { kind: 'iommu' }, 'loopback');
    try {
      const devB = r.b.dev as Netfront;
      const devA = r.a.dev as Netfront;
      const gotB = new Sink(devB, true, false);
      const gotA = new Sink(devA, true, false);
      const f = echoRequest({ ...ends(1), dstMac: '02:00:00:99:99:99' }, 1, 1, 100);
      await r.w.until(() => devA.send(f), () => 'room');
      // B hears it twice (flooded from vifA, then again from eth0); A hears its own frame come back.
      await r.w.until(() => gotB.received === 2 && gotA.received === 1, () => `B ${gotB.received}/2, A ${gotA.received}/1`);
      await r.w.settle(20);
      expect(gotB.received).to.equal(2);
      for (const x of [...gotB.frames, ...gotA.frames]) expect(Buffer.from(x).equals(Buffer.from(f))).to.equal(true);
      const bc = r.w.bridge.portCounters('eth0')!;
      expect([bc.txPackets, bc.rxPackets]).to.deep.equal([1, 1]);
      expect(r.w.bridge.counters.moved, 'the sender seen behind the NIC').to.equal(1);
      expect(r.w.bridge.macs().get(macOf(1))).to.equal('eth0');
      expect(r.w.bridge.counters.unknownUnicast).to.equal(2);
    } finally {
      r.stop();
    }
  });

  it('sends a burst no one answers to the end: frames that waited for the ring go out on TX completions alone', async () => {
    const r = await rig('vp', 'explicit', { kind: 'iommu' }, 'pair');
    try {
      const dev = r.a.dev as Netfront;
      const frames = Array.from({ length: 100 }, (_, i) => echoRequest({ ...ends(1), dstMac: '02:00:00:99:99:99' }, 2, i, 1000));
      for (const f of frames) await r.w.until(() => dev.send(f), () => 'room on the guest TX ring');
      await r.w.until(() => r.host!.counters().ignored === 100, () => `100 frames on the wire (host saw ${r.host!.counters().received})`);
      await r.w.until(() => r.port.counters().txSent === 100, () => `every TX slot reclaimed (${r.port.counters().txSent})`);
      const pc = r.port.counters();
      expect(pc.txQueuedSoft).to.be.greaterThan(0);
      expect([pc.txQueued, pc.txBusy, pc.rxFrames]).to.deep.equal([100, 0, 0]);
      expect(r.port.txInFlight).to.equal(0);
    } finally {
      r.stop();
    }
  });

  it('counts a frame from the wire too big for a receive buffer, and keeps the ring posted and serving', async () => {
    const r = await rig('vp', 'explicit', { kind: 'iommu' }, 'pair');
    try {
      const big = new Uint8Array(6000).fill(0xff);
      expect(r.wire.send(1, big, 0, big.length)).to.equal(true);
      await r.w.until(() => r.port.counters().rxErrors === 1, () => 'the oversized frame to be refused');
      const { got } = await ping(r, r.a, 40, () => 1400);
      expect(got.length).to.equal(40);
      expect(r.port.counters()).to.include({ rxErrors: 1, rxFrames: 40, rxPostErrors: 0 });
      expect(r.w.bridge.portCounters('eth0')!.rxPackets).to.equal(40);
      const dc = r.dma.counters();
      expect(dc.maps - dc.unmaps, 'every RX slot posted again').to.equal(32);
    } finally {
      r.stop();
    }
  });

  it('ignores a receive head the device moved past what was posted, without looping', async () => {
    const r = await rig('pm', 'passthrough', { kind: 'direct' }, 'pair');
    try {
      r.stop();
      r.port.mmio.store(NIC_REGS.rxHead, 1000);
      expect(r.port.poll()).to.equal(0);
      expect(r.port.counters().deviceErrors).to.be.greaterThan(0);
      expect(r.port.counters().rxFrames).to.equal(0);
    } finally {
      r.stop();
    }
  });

  it('gives every page and mapping back when it leaves the bridge', async () => {
    const r = await rig('p2m', 'passthrough', { kind: 'swiotlb', poolPages: 64, segmentPages: 16 }, 'pair');
    try {
      await ping(r, r.a, 10, () => 500);
      const ram = r.w.dom0.ram.available;
      const poolPages = r.w.pool.stats.pagesInUse;
      r.port.detach();
      expect(r.w.bridge.portNames).to.not.include('eth0');
      expect([...r.w.bridge.macs().values()]).to.not.include('eth0');
      const dc = r.dma.counters();
      expect(dc.maps).to.equal(dc.unmaps);
      expect(r.w.pool.stats.pagesInUse).to.equal(poolPages - 32);
      expect(r.w.dom0.ram.available).to.be.greaterThan(ram);
      // A detached port takes nothing more.
      const pkt = r.w.pool.fromBytes(new Uint8Array(60), 0, 60)!;
      expect(r.port.transmit(pkt)).to.equal(false);
      r.w.pool.release(pkt);
    } finally {
      r.stop();
    }
  });
});

/**
 * The NIC model's TX gather, which the port relies on: descriptors written by
 * hand in coherent memory of a P==M dom0, the NIC on a loopback wire.
 */
describe('NIC TX gather (NIC_DESC_MORE), one thread', () => {
  const TX = 4;
  const RX = 4;
  const DATA = 2 * NIC_DESC.SIZE * (TX + RX);
  function gatherRig() {
    const w = dmaWorld('pm');
    const { info, view } = w.addDevice('passthrough');
    const wire = Wire.create('loopback');
    const nic = new Nic(w.layout, info.blockAddr, wire, 0, { spinUs: 0 });
    const dma = createDmaApi(w.dom0, info, { kind: 'direct' });
    if (!dma.ok) throw new Error(describeDmaError(dma.error));
    // Rings first, then 8 KiB of frame data, then RX buffers of 2 KiB each.
    const mem = dma.value.allocCoherent(DATA + 8192 + RX * 2048);
    if (!mem.ok) throw new Error(describeDmaError(mem.error));
    const c = mem.value;
    const m = new MmioWindow(w.dom0.machine, info.blockAddr);
    const desc = Buffer.alloc(NIC_DESC.SIZE);
    const put = (ringOff: number, bus: number, len: number) => {
      desc.writeUInt32LE(bus >>> 0, NIC_DESC.bus);
      desc.writeUInt32LE(0, NIC_DESC.bus + 4);
      desc.writeUInt32LE(len >>> 0, NIC_DESC.len);
      desc.writeInt32LE(0, NIC_DESC.result);
      c.region.copyIn(ringOff, desc);
    };
    const result = (ringOff: number) => {
      c.region.copyOut(ringOff, desc);
      return desc.readInt32LE(NIC_DESC.result);
    };
    m.store64(NIC_REGS.txBase, c.bus);
    m.store64(NIC_REGS.rxBase, c.bus + TX * NIC_DESC.SIZE);
    m.store(NIC_REGS.txEntries, TX);
    m.store(NIC_REGS.rxEntries, RX);
    for (let i = 0; i < RX; i++) put((TX + i) * NIC_DESC.SIZE, c.bus + DATA + 8192 + i * 2048, 2048);
    m.store(NIC_REGS.rxTail, RX);
    m.store(MMIO_COMMON.enable, 1);
    const data = (off: number, bytes: Uint8Array) => c.region.copyIn(DATA + off, bytes);
    const rxFrame = (i: number, len: number) => {
      const b = new Uint8Array(len);
      c.region.copyOut(DATA + 8192 + i * 2048, b);
      return b;
    };
    return { nic, m, view, c, put, result, data, rxFrame, tx: (i: number) => (i % TX) * NIC_DESC.SIZE, bus: (off: number) => c.bus + DATA + off };
  }

  it('sends one frame gathered from three descriptors, and only once its last descriptor is posted', () => {
    const r = gatherRig();
    const f = pattern(1000, 3);
    r.data(0, f.subarray(0, 100));
    r.data(4000, f.subarray(100, 700));
    r.data(6000, f.subarray(700));
    r.put(r.tx(0), r.bus(0), 100 | NIC_DESC_MORE);
    r.put(r.tx(1), r.bus(4000), 600 | NIC_DESC_MORE);
    r.m.store(NIC_REGS.txTail, 2);
    r.nic.processOnce();
    expect(r.m.load(NIC_REGS.txHead), 'half a frame is not sent').to.equal(0);
    expect(r.nic.counters().txFrames).to.equal(0);
    r.put(r.tx(2), r.bus(6000), 300);
    r.m.store(NIC_REGS.txTail, 3);
    r.nic.processOnce();
    r.nic.processOnce();
    expect(r.m.load(NIC_REGS.txHead)).to.equal(3);
    expect([r.result(r.tx(0)), r.result(r.tx(1)), r.result(r.tx(2))]).to.deep.equal([100, 600, 300]);
    expect(r.nic.counters()).to.include({ txFrames: 1, txBytes: 1000, rxFrames: 1 });
    expect(r.rxFrame(0, 1000)).to.deep.equal(f);
  });

  it('gathers across the ring wrap, and fails every descriptor of a frame whose piece the IOMMU refuses', () => {
    const r = gatherRig();
    const f = pattern(300, 4);
    // Three one-descriptor frames first, so the next chain wraps (slots 3, 0).
    for (let i = 0; i < 3; i++) {
      r.data(i * 100, f.subarray(0, 60));
      r.put(r.tx(i), r.bus(i * 100), 60);
    }
    r.m.store(NIC_REGS.txTail, 3);
    r.nic.processOnce();
    r.data(1000, f.subarray(0, 200));
    r.data(2000, f.subarray(200));
    r.put(r.tx(3), r.bus(1000), 200 | NIC_DESC_MORE);
    r.put(r.tx(4), r.bus(2000), 100);
    r.m.store(NIC_REGS.txTail, 5);
    r.nic.processOnce();
    expect(r.m.load(NIC_REGS.txHead)).to.equal(5);
    expect(r.nic.counters()).to.include({ txFrames: 4 });
    expect(r.rxFrame(3, 300)).to.deep.equal(f);
    // A chain whose second piece lies beyond memory: no frame leaves, both descriptors say why.
    r.put(r.tx(5), r.bus(1000), 200 | NIC_DESC_MORE);
    r.put(r.tx(6), 0xffff_f000, 100);
    r.m.store(NIC_REGS.txTail, 7);
    r.nic.processOnce();
    expect(r.m.load(NIC_REGS.txHead)).to.equal(7);
    expect([r.result(r.tx(5)), r.result(r.tx(6))]).to.deep.equal([NIC_STATUS.dmaError, NIC_STATUS.dmaError]);
    expect(r.nic.counters()).to.include({ txFrames: 4, dmaFaults: 1 });
  });

  it('refuses a chain that fills the whole ring without ending, and one longer than a jumbo frame', () => {
    const r = gatherRig();
    for (let i = 0; i < TX; i++) r.put(r.tx(i), r.bus(i * 64), 64 | NIC_DESC_MORE);
    r.m.store(NIC_REGS.txTail, TX);
    r.nic.processOnce();
    expect(r.m.load(NIC_REGS.txHead)).to.equal(TX);
    for (let i = 0; i < TX; i++) expect(r.result(r.tx(i))).to.equal(NIC_STATUS.badDescriptor);
    r.put(r.tx(TX), r.bus(0), 6000 | NIC_DESC_MORE);
    r.put(r.tx(TX + 1), r.bus(0), 6000);
    r.m.store(NIC_REGS.txTail, TX + 2);
    r.nic.processOnce();
    expect([r.result(r.tx(TX)), r.result(r.tx(TX + 1))]).to.deep.equal([NIC_STATUS.badDescriptor, NIC_STATUS.badDescriptor]);
    expect(r.nic.counters().txFrames).to.equal(0);
    expect(r.nic.counters().status).to.equal(DEVICE_STATUS.running);
  });
});

describe('the host outside, on a wire', () => {
  it('answers pings to its MAC, echoes other frames to it or to broadcast with swapped MACs, and ignores frames for others', () => {
    const wire = Wire.create('pair');
    let rung = 0;
    wire.plug(0, 4096);
    const host = new OutsideHost(wire, 1, { mac: HOST_MAC }, (bell) => { expect(bell).to.equal(4096); rung++; });
    const ping = echoRequest(ends(1), 3, 5, 64);
    const other = Uint8Array.from({ length: 80 }, (_, i) => i);
    other.set([2, 0, 0, 0x0e, 0x0e, 1], 0);
    other.set([0, 0x16, 0x3e, 0, 0, 7], 6);
    const bcast = other.slice();
    bcast.fill(0xff, 0, 6);
    const elsewhere = other.slice();
    elsewhere.set([2, 0, 0, 0, 0, 9], 0);
    for (const f of [ping, other, bcast, elsewhere]) wire.send(0, f, 0, f.length);
    expect(host.serveOnce()).to.equal(4);
    expect(rung).to.equal(1);
    const back: Uint8Array[] = [];
    for (let len = wire.peek(0); len >= 0; len = wire.peek(0)) {
      const b = new Uint8Array(len);
      wire.recv(0, b);
      back.push(b);
    }
    expect(back.length).to.equal(3);
    expect(checkEchoReply(ping, back[0]!)).to.equal(null);
    for (const [got, sent] of [[back[1]!, other], [back[2]!, bcast]] as const) {
      expect(Array.from(got.subarray(0, 6))).to.deep.equal([0, 0x16, 0x3e, 0, 0, 7]);
      expect(Array.from(got.subarray(6, 12))).to.deep.equal([2, 0, 0, 0x0e, 0x0e, 1]);
      expect(Array.from(got.subarray(12))).to.deep.equal(Array.from(sent.subarray(12)));
    }
    expect(host.counters()).to.deep.include({ received: 4, pings: 1, echoes: 2, ignored: 1, wireDrops: 0 });
    expect(host.counters().sources).to.deep.equal([macOf(1), '00:16:3e:00:00:07']);
  });
});
