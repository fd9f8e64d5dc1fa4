import { expect } from 'chai';
import type * as Comlink from 'comlink';
import { Machine, type DomainHandle } from '../../toolstack/machine.ts';
import { DeviceHost, DRIVER_DOMAIN_ENTRY, type DeviceHandle } from '../../toolstack/device-host.ts';
import type { DmaAgent } from '../../dom0/dma/dma-agent.ts';
import type { DmaConfig } from '../../dom0/dma/create-dma.ts';
import { DISK_STATUS, type DiskControllerCounters } from '../../dom0/devices/dma-disk-controller.ts';
import { FRAME_ENTRY } from '../../shared/abi/machine.ts';
import type { IommuMode } from '../../shared/abi/iommu.ts';
import type { MachineAddr } from '../../shared/types.ts';

function unwrap<T>(r: { ok: true; value: T } | { ok: false; error: string }): T {
  if (!r.ok) throw new Error(r.error);
  return r.value;
}
const agentOf = (d: DomainHandle) => d.agent as unknown as Comlink.Remote<DmaAgent>;
function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

describe('DMA disk controller in its own worker, driven by driver domains in every memory model', function () {
  this.timeout(120_000);
  let m: Machine;
  let host: DeviceHost;
  const dd: Record<'pm' | 'p2m' | 'vp', DomainHandle> = {} as never;
  let guest: DomainHandle;

  before(async () => {
    m = await Machine.boot({ memBytes: 256 << 20 });
    host = new DeviceHost(m);
    await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 8 * 1024, model: 'pm', privileged: true });
    for (const model of ['pm', 'p2m', 'vp'] as const) {
      dd[model] = await m.createDomain({ name: `dd-${model}`, memoryKiB: 16 * 1024, model, entry: DRIVER_DOMAIN_ENTRY });
    }
    guest = await m.createDomain({ name: 'guest', memoryKiB: 8 * 1024, model: 'vp' });
  });
  after(async () => {
    await host?.shutdown();
    await m?.shutdown();
  });

  async function disk(model: 'pm' | 'p2m' | 'vp', mode: IommuMode, cfg: DmaConfig, queueConfig?: DmaConfig): Promise<{ dev: DeviceHandle; h: number; agent: Comlink.Remote<DmaAgent> }> {
    const owner = dd[model];
    const dev = await host.add({ kind: 'dma-disk', name: `disk-${cfg.kind}-${model}-${mode}`, owner: owner.domid, mode, sectors: 8192 });
    const agent = agentOf(owner);
    const h = unwrap(await agent.attachDisk(dev.info, cfg, { entries: 16, queueConfig }));
    return { dev, h, agent };
  }

  const CASES: { impl: DmaConfig; model: 'pm' | 'p2m' | 'vp'; mode: IommuMode }[] = [
    { impl: { kind: 'direct' }, model: 'pm', mode: 'passthrough' },
    { impl: { kind: 'p2m' }, model: 'p2m', mode: 'passthrough' },
    { impl: { kind: 'xlate' }, model: 'vp', mode: 'passthrough' },
    { impl: { kind: 'iommu' }, model: 'vp', mode: 'explicit' },
    { impl: { kind: 'swiotlb', poolPages: 64, segmentPages: 16 }, model: 'p2m', mode: 'passthrough' },
  ];

  for (const c of CASES) {
    it(`moves 64 KiB to the disk and back through ${c.impl.kind} in a ${c.model} driver domain, and DMAs into a guest's granted page`, async () => {
      const { dev, h, agent } = await disk(c.model, c.mode, c.impl);
      const data = pattern(65536, 1);
      expect(unwrap(await agent.diskWrite(h, 128, data))).to.deep.equal({ status: DISK_STATUS.okay, bytes: 65536 });
      const back = unwrap(await agent.diskRead(h, 128, 65536));
      expect(back.status).to.equal(DISK_STATUS.okay);
      expect(Buffer.from(back.data).equals(Buffer.from(data))).to.equal(true);
      // Zero-copy into the guest: the guest grants a page, the driver domain maps it, the disk DMAs into it.
      const gp = unwrap(await guest.agent.allocPage());
      const ref = unwrap(await guest.agent.grant(dd[c.model].domid, gp, false));
      const [fp] = unwrap(await agent.mapForeign([{ domid: guest.domid, ref, readonly: false }]));
      const r = unwrap(await agent.diskIo(h, 'read', 128, [{ pfn: fp!, offset: 0, len: 4096 } as never]));
      expect(r.status).to.equal(DISK_STATUS.okay);
      expect(Buffer.from(unwrap(await guest.agent.read(gp, 0, 4096))).equals(Buffer.from(data.subarray(0, 4096)))).to.equal(true);
      expect(unwrap(await agent.unmapForeign([fp!]))).to.deep.equal([0]);
      expect(unwrap(await guest.agent.endAccess(ref))).to.equal(true);
      const iommu = await dev.control.iommu();
      expect(iommu.strayDma).to.equal(0);
      expect(iommu.faults).to.equal(0);
      const cc = (await dev.control.counters()) as DiskControllerCounters;
      expect(cc.requests).to.equal(3);
      expect(cc.interrupts).to.be.greaterThan(0);
      const dmaC = unwrap(await agent.dmaCounters(h));
      if (c.impl.kind === 'xlate') expect(dmaC.hypercalls).to.be.at.least(16 + 16 + 1);
      if (c.impl.kind === 'iommu') expect(dmaC.iommuMaps).to.be.at.least(33);
      unwrap(await agent.detach(h));
      await host.remove(dev);
    });
  }

  it('keeps 16 requests in flight against the device worker without losing a completion', async () => {
    const { dev, h, agent } = await disk('pm', 'passthrough', { kind: 'direct' });
    const rep = unwrap(await agent.diskBench(h, { op: 'write', ioBytes: 16384, depth: 16, ios: 2000, warmup: 100 }));
    expect(rep.errors).to.equal(0);
    expect(rep.driver.completed).to.equal(2000);
    // Suppression: far fewer interrupts and doorbells than requests.
    expect(rep.driver.interrupts).to.be.lessThan(2000);
    unwrap(await agent.detach(h));
    await host.remove(dev);
  });
});

describe('legacy driver (bypassing the DMA API) against a DMA disk in its own worker', function () {
  this.timeout(120_000);
  let m: Machine;
  let host: DeviceHost;
  let ddv: DomainHandle;
  let guest: DomainHandle;

  before(async () => {
    // No P==M domain here, and no low DMA zone: every domain's frames are
    // scattered over all of memory, so some of the driver domain's pfn numbers
    // are machine frames of the guest.
    m = await Machine.boot({ memBytes: 128 << 20, dmaZoneBytes: 0 });
    host = new DeviceHost(m);
    ddv = await m.createDomain({ name: 'dd-vp', memoryKiB: 16 * 1024, model: 'vp', entry: DRIVER_DOMAIN_ENTRY });
    guest = await m.createDomain({ name: 'guest', memoryKiB: 16 * 1024, model: 'vp' });
  });
  after(async () => {
    await host?.shutdown();
    await m?.shutdown();
  });

  it('without an IOMMU: the DMA lands in the guest frame its pfn names, and the audit says whose', async () => {
    const dev = await host.add({ kind: 'dma-disk', name: 'legacy-disk', owner: ddv.domid, mode: 'passthrough', sectors: 8192 });
    const agent = agentOf(ddv);
    // Rings set up properly (xlate); only the data buffers bypass the DMA API.
    const h = unwrap(await agent.attachDisk(dev.info, { kind: 'legacy' }, { entries: 16, queueConfig: { kind: 'xlate' } }));
    const info = await agent.info();
    let victim = -1;
    for (let pfn = info.ramBase; pfn < info.ramBase + info.ramPages && victim < 0; pfn++) {
      const owner = m.mem.atomicLoad32((m.layout.frameTableAddr + pfn * FRAME_ENTRY.SIZE + FRAME_ENTRY.owner) as MachineAddr);
      if (owner === guest.domid) victim = pfn;
    }
    expect(victim, 'a driver-domain pfn that is a guest frame').to.be.greaterThan(0);
    const guestPfn = m.mem.atomicLoad32((m.layout.frameTableAddr + victim * FRAME_ENTRY.SIZE + FRAME_ENTRY.m2p) as MachineAddr);
    const guestData = pattern(4096, 7);
    unwrap(await guest.agent.write(guestPfn, 0, guestData));
    // The disk is blank: a read of sector 0 "into the driver's page" zeroes the guest's page instead.
    expect(unwrap(await agent.diskIo(h, 'read', 0, [{ pfn: victim, offset: 0, len: 4096 } as never])).status).to.equal(DISK_STATUS.okay);
    const iommu = await dev.control.iommu();
    expect(iommu.strayDma).to.be.greaterThan(0);
    expect(iommu.lastStrayOwner).to.equal(guest.domid);
    expect(iommu.lastStrayMfn).to.equal(victim);
    const after = unwrap(await guest.agent.read(guestPfn, 0, 4096));
    expect(after.every((b) => b === 0)).to.equal(true);
    unwrap(await agent.detach(h));
    await host.remove(dev);
  });

  it('with an IOMMU: the request fails with a DMA error, the fault is recorded, memory is untouched', async () => {
    const dev = await host.add({ kind: 'dma-disk', name: 'legacy-disk-iommu', owner: ddv.domid, mode: 'explicit', sectors: 8192 });
    const agent = agentOf(ddv);
    const h = unwrap(await agent.attachDisk(dev.info, { kind: 'legacy' }, { entries: 16, queueConfig: { kind: 'iommu' } }));
    const pfn = unwrap(await agent.allocPage());
    unwrap(await agent.write(pfn, 0, new Uint8Array(4096).fill(0xaa)));
    expect(unwrap(await agent.diskIo(h, 'read', 0, [{ pfn, offset: 0, len: 4096 } as never])).status).to.equal(DISK_STATUS.dmaError);
    const iommu = await dev.control.iommu();
    expect(iommu.faults).to.be.greaterThan(0);
    expect(iommu.strayDma).to.equal(0);
    expect(unwrap(await agent.read(pfn, 0, 4096)).every((b) => b === 0xaa)).to.equal(true);
    unwrap(await agent.detach(h));
    await host.remove(dev);
  });
});
