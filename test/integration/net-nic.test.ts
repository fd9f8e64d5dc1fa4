/**
 * Traffic leaving the host through the NIC and coming back, across real
 * workers: a guest (its own worker, netfront) sends ICMP echo requests to a
 * host outside the machine; they cross netback and xenbr0 in dom0's worker,
 * leave through dom0's NIC driver (NicPort, through the DMA API the toolstack
 * chose) to the NIC model in its device worker, cross the wire to the
 * outside host (its own worker), and the replies come all the way back.
 * Also: the bridge learns the outside MAC behind the NIC, per-port counters
 * agree end to end, and a legacy driver (no DMA API) in a PV dom0 is caught
 * by the IOMMU audit.
 */
import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as Comlink from 'comlink';
import { Machine, type NicAttach } from '../../toolstack/machine.ts';
import type { NicCounters } from '../../dom0/devices/nic.ts';
import type { OutsideHostHandle } from '../../toolstack/device-host.ts';
import { unwrap } from '../../shared/result.ts';
import type { NicTestDomUAgent } from '../helpers/nic-domu-main.ts';
import { checkEchoReply, echoRequest, echoSeq } from '../helpers/nic-frames.ts';

const MAC_A = '00:16:3e:00:0a:01';
const HOST_MAC = '02:00:00:0e:0e:01';
const N = 64;

describe('the NIC as a port of xenbr0, across real workers', function () {
  this.timeout(60_000);
  let m: Machine;
  let guest: number;
  const agent = (): Comlink.Remote<NicTestDomUAgent> => m.domU(guest) as unknown as Comlink.Remote<NicTestDomUAgent>;

  before(async () => {
    m = await Machine.boot({ memBytes: 192 << 20 });
    await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 48 * 1024, model: 'p2m', privileged: true });
    guest = (await m.createDomain({ name: 'pinger', memoryKiB: 16 * 1024, model: 'vp', entry: new URL('../helpers/nic-domu-main.ts', import.meta.url), kind: 'domU' })).domid;
    await m.attachVif(guest, { mac: MAC_A });
    unwrap(await m.domU(guest).waitVif(0));
  });
  after(async () => { await m?.shutdown(); });

  async function withNic<T>(spec: NicAttach, fn: (nic: Awaited<ReturnType<Machine['attachNic']>>, host: OutsideHostHandle) => Promise<T>): Promise<T> {
    const nic = await m.attachNic(spec);
    const host = await m.devices.addOutsideHost({ wire: nic.wire, end: 1, mac: HOST_MAC });
    try {
      return await fn(nic, host);
    } finally {
      await m.devices.removeOutsideHost(host);
      await m.detachNic(nic.name);
    }
  }

  const pings = (n: number) => Array.from({ length: n }, (_, i) => echoRequest({ srcMac: MAC_A, dstMac: HOST_MAC, srcIp: '10.0.0.1', dstIp: '10.0.0.254' }, 9, i, 100 + ((i * 131) % 1300)));

  for (const dma of ['swiotlb', 'iommu'] as const) {
    it(`takes a guest's pings out through the NIC (${dma} DMA API in a PV dom0) to a host outside, and brings every reply back`, async () => {
      await withNic({ dma }, async (nic, host) => {
        const d0 = m.dom0!;
        const before = (await d0.bridgeStats()).find((b) => b.name === 'xenbr0')!.ports.find((p) => p.name === nic.name)!.counters;
        const sent = pings(N);
        const got = unwrap(await agent().exchange(0, sent, N));
        expect(got.length).to.equal(N);
        for (const f of got) expect(checkEchoReply(sent[echoSeq(f)]!, f), `reply ${echoSeq(f)}`).to.equal(null);
        expect(new Set(got.map(echoSeq)).size).to.equal(N);

        const br = (await d0.bridgeStats()).find((b) => b.name === 'xenbr0')!;
        expect(br.macs[HOST_MAC], 'the outside host learned behind the NIC').to.equal(nic.name);
        expect(br.macs[MAC_A]).to.equal(`vif${guest}.0`);
        // Every frame out was reclaimed (TX completions arrive by interrupt, just after the last reply).
        let st = (await d0.nicStats()).find((s) => s.name === nic.name)!;
        for (let i = 0; i < 100 && st.counters.txSent < N; i++) {
          await new Promise((r) => setTimeout(r, 10));
          st = (await d0.nicStats()).find((s) => s.name === nic.name)!;
        }
        const port = st.port!;
        expect(before.txPackets + before.rxPackets).to.equal(0);
        const dev = (await nic.device.control.counters()) as NicCounters;
        const hc = await host.control.counters();
        // Per-port counters add up: bridge port → NIC driver → NIC → wire → outside host, and back.
        expect([port.txPackets, st.counters.txQueued, st.counters.txSent, dev.txFrames, hc.received, hc.pings]).to.deep.equal([N, N, N, N, N, N]);
        expect([hc.pings, dev.rxFrames, st.counters.rxFrames, port.rxPackets]).to.deep.equal([N, N, N, N]);
        expect(port.txBytes).to.equal(sent.reduce((s, f) => s + f.length, 0));
        expect(port.rxBytes).to.equal(port.txBytes);
        expect([st.counters.txErrors, st.counters.txBusy, st.counters.txMapErrors, st.counters.rxErrors, dev.dmaFaults, dev.wireDrops]).to.deep.equal([0, 0, 0, 0, 0, 0]);
        expect(hc.sources).to.deep.equal([MAC_A]);
        // The DMA API's view: every frame and every buffer mapped once; what stays mapped is the posted RX ring.
        const dc = st.dma.counters;
        expect(st.dma.kind).to.equal(dma);
        expect(dc.maps - dc.unmaps).to.equal(64);
        expect(dc.maps).to.equal(N + N + 64);
        if (dma === 'swiotlb') {
          // Copy buffers that straddle two pages whose frames are not machine-contiguous bounce; none goes to the NIC in pieces.
          expect(dc.bounces, 'swiotlb bounced the buffers that were not machine-contiguous').to.be.greaterThan(0);
          expect(st.counters.txGathered).to.equal(0);
        } else {
          expect(dc.iommuMaps).to.be.greaterThan(0);
          expect(dc.iommuUnmaps).to.be.greaterThan(0);
          expect(dc.bounces).to.equal(0);
        }
        const iommu = await nic.device.control.iommu();
        expect([iommu.faults, iommu.strayDma]).to.deep.equal([0, 0]);
        console.log(`      ${dma}: ${N} pings, bounces ${dc.bounces}, gathered ${st.counters.txGathered}, iommu maps/unmaps ${dc.iommuMaps}/${dc.iommuUnmaps}, DMA hypercalls ${dc.hypercalls}, NIC irqs ${dev.interrupts}, driver kicks ${st.counters.kicks}`);
      });
    });
  }

  it('captures the NIC port like tcpdump -i eth0: tshark reads each ping out and each reply in, with good checksums', async function () {
    if (spawnSync('sh', ['-c', 'command -v tshark']).status !== 0) {
      console.warn('SKIPPED: pcap check of the NIC port because tshark is not installed');
      this.skip();
    }
    await withNic({ dma: 'iommu' }, async (nic) => {
      const dir = mkdtempSync(join(tmpdir(), 'xensim-nic-'));
      try {
        const path = join(dir, 'eth0.pcap');
        const id = unwrap(await m.dom0!.captureStart(nic.name, path));
        expect(unwrap(await agent().exchange(0, pings(8), 8)).length).to.equal(8);
        const cap = unwrap(await m.dom0!.captureStop(id));
        expect(cap.packets).to.equal(16);
        const lines = execFileSync('tshark', ['-r', path, '-o', 'ip.check_checksum:TRUE', '-T', 'fields', '-e', 'eth.src', '-e', 'icmp.type', '-e', 'ip.checksum.status', '-e', 'icmp.checksum.status'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
          .trim().split('\n').map((l) => l.split('\t'));
        expect(lines.length).to.equal(16);
        expect(lines.filter((l) => l[0] === MAC_A && l[1] === '8').length, 'echo requests out of eth0').to.equal(8);
        expect(lines.filter((l) => l[0] === HOST_MAC && l[1] === '0').length, 'echo replies into the bridge').to.equal(8);
        // tshark's checksum status: 1 = good (0 bad, 2 unverified).
        for (const l of lines) expect([l[2], l[3]], 'IPv4 and ICMP checksums').to.deep.equal(['1', '1']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  it('refuses a DMA API the memory model cannot give, and unplugs the NIC it added', async () => {
    const before = m.devices.list.length;
    let error = '';
    try {
      await m.attachNic({ dma: 'direct' });
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    expect(error).to.match(/direct DMA API needs P==M memory/);
    expect(m.devices.list.length).to.equal(before);
    expect(m.nicList).to.deep.equal([]);
    expect((await m.dom0!.nicStats()).length).to.equal(0);
  });

  it('floods a frame for an unknown MAC out of the NIC; on a loopback wire it comes back, and the bridge learns the sender behind the NIC', async () => {
    const nic = await m.attachNic({ dma: 'iommu', wire: 'loopback' });
    try {
      const d0 = m.dom0!;
      const b0 = (await d0.bridgeStats()).find((b) => b.name === 'xenbr0')!.counters;
      const f = echoRequest({ srcMac: MAC_A, dstMac: '02:00:00:99:99:99', srcIp: '10.0.0.1', dstIp: '10.0.0.99' }, 1, 1, 200);
      // Flooded out of eth0 (the only other port), back in from the wire, flooded to the guest's vif.
      const got = unwrap(await agent().exchange(0, [f], 1));
      expect(got.length).to.equal(1);
      expect(Buffer.from(got[0]!).equals(Buffer.from(f))).to.equal(true);
      const br = (await d0.bridgeStats()).find((b) => b.name === 'xenbr0')!;
      expect(br.macs[MAC_A], 'a looped cable: the sender now seems to sit behind the NIC').to.equal(nic.name);
      expect(br.counters.moved - b0.moved).to.equal(1);
      expect(br.counters.unknownUnicast - b0.unknownUnicast).to.equal(2);
      const port = br.ports.find((p) => p.name === nic.name)!.counters;
      expect([port.txPackets, port.rxPackets]).to.deep.equal([1, 1]);
      expect(((await nic.device.control.counters()) as NicCounters).rxFrames).to.equal(1);
    } finally {
      await m.detachNic(nic.name);
    }
    // The NIC gone, its learned entries went with it.
    const br = (await m.dom0!.bridgeStats()).find((b) => b.name === 'xenbr0')!;
    expect(br.ports.map((p) => p.name)).to.deep.equal([`vif${guest}.0`]);
    expect(br.macs[MAC_A]).to.equal(undefined);
  });

  it('catches a legacy driver (no DMA API) in a PV dom0: what leaves is not the guest\'s frame, and the audit names the frames it read', async () => {
    // Rings set up properly (p2m); only the frame buffers bypass the DMA API (bus = pfn).
    await withNic({ dma: 'legacy', queueDma: 'p2m', mode: 'passthrough' }, async (nic, host) => {
      const got = unwrap(await agent().exchange(0, pings(16), 16, 1500));
      expect(got.length, 'no reply: the host never saw a ping').to.equal(0);
      const dev = (await nic.device.control.counters()) as NicCounters;
      const hc = await host.control.counters();
      expect(dev.txFrames).to.equal(16);
      expect(hc.received).to.equal(16);
      expect(hc.pings).to.equal(0);
      const iommu = await nic.device.control.iommu();
      expect(iommu.strayDma, 'DMA from frames dom0 neither owns nor mapped').to.be.greaterThan(0);
    });
  });
});
