import { expect } from 'chai';
import type * as Comlink from 'comlink';
import { Machine, type DomainHandle } from '../../toolstack/machine.ts';
import { DeviceHost, DRIVER_DOMAIN_ENTRY } from '../../toolstack/device-host.ts';
import type { DmaAgent } from '../../dom0/dma/dma-agent.ts';
import type { NicCounters } from '../../dom0/devices/nic.ts';

function unwrap<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(r.error);
  return r.value;
}
const agentOf = (d: DomainHandle) => d.agent as unknown as Comlink.Remote<DmaAgent>;
const frame = (len: number, seed: number) => Uint8Array.from({ length: len }, (_, i) => (i * 13 + seed) & 0xff);

describe('NICs in their own workers, on a wire', function () {
  this.timeout(120_000);
  let m: Machine;
  let host: DeviceHost;
  let pv: DomainHandle;
  let vp: DomainHandle;

  before(async () => {
    m = await Machine.boot({ memBytes: 128 << 20 });
    host = new DeviceHost(m);
    pv = await m.createDomain({ name: 'net-pv', memoryKiB: 16 * 1024, model: 'p2m', entry: DRIVER_DOMAIN_ENTRY });
    vp = await m.createDomain({ name: 'net-vp', memoryKiB: 16 * 1024, model: 'vp', entry: DRIVER_DOMAIN_ENTRY });
  });
  after(async () => {
    await host?.shutdown();
    await m?.shutdown();
  });

  it("carries frames both ways between a PV driver domain's NIC (p2m DMA) and a VP one's (iommu DMA)", async () => {
    const wire = DeviceHost.wire('pair');
    const a = await host.add({ kind: 'nic', name: 'nic-a', owner: pv.domid, mode: 'passthrough', wire, end: 0 });
    const b = await host.add({ kind: 'nic', name: 'nic-b', owner: vp.domid, mode: 'explicit', wire, end: 1 });
    const ha = unwrap(await agentOf(pv).attachNic(a.info, { kind: 'p2m' }));
    const hb = unwrap(await agentOf(vp).attachNic(b.info, { kind: 'iommu' }));
    const toB = Array.from({ length: 100 }, (_, i) => frame(60 + ((i * 97) % 1455), i));
    const toA = Array.from({ length: 40 }, (_, i) => frame(1514, 200 + i));
    expect(unwrap(await agentOf(pv).nicSend(ha, toB))).to.equal(100);
    expect(unwrap(await agentOf(vp).nicSend(hb, toA))).to.equal(40);
    const gotB = unwrap(await agentOf(vp).nicReceive(hb, 100));
    const gotA = unwrap(await agentOf(pv).nicReceive(ha, 40));
    expect(gotB.length).to.equal(100);
    expect(gotA.length).to.equal(40);
    gotB.forEach((f, i) => expect(Buffer.from(f).equals(Buffer.from(toB[i]!)), `frame ${i}`).to.equal(true));
    gotA.forEach((f, i) => expect(Buffer.from(f).equals(Buffer.from(toA[i]!)), `frame ${i}`).to.equal(true));
    const ca = (await a.control.counters()) as NicCounters;
    expect([ca.txFrames, ca.rxFrames, ca.wireDrops]).to.deep.equal([100, 40, 0]);
    expect((await a.control.iommu()).strayDma).to.equal(0);
    expect((await b.control.iommu()).faults).to.equal(0);
    for (const [d, h] of [[pv, ha], [vp, hb]] as const) unwrap(await agentOf(d).detach(h));
    await host.remove(a);
    await host.remove(b);
  });

  it('loops frames back through a NIC on a loopback wire', async () => {
    const wire = DeviceHost.wire('loopback');
    const n = await host.add({ kind: 'nic', name: 'nic-lo', owner: vp.domid, mode: 'passthrough', wire, end: 0 });
    const h = unwrap(await agentOf(vp).attachNic(n.info, { kind: 'xlate' }));
    const frames = Array.from({ length: 20 }, (_, i) => frame(100 + i, i));
    unwrap(await agentOf(vp).nicSend(h, frames));
    const got = unwrap(await agentOf(vp).nicReceive(h, 20));
    expect(got.map((f) => f.length)).to.deep.equal(frames.map((f) => f.length));
    unwrap(await agentOf(vp).detach(h));
    await host.remove(n);
  });
});
