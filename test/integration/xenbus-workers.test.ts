import { expect } from 'chai';
import * as Comlink from 'comlink';
import { Machine } from '../../toolstack/machine.ts';
import type { Dom0Agent } from '../../dom0/agent.ts';
import { asDomId } from '../../shared/types.ts';

type Vtest0 = Dom0Agent & { startBackends(): Promise<boolean>; stopBackends(): Promise<void>; stats(): { vtest: { connects: number; disconnects: number; ringRefs: string[] } } };
type VtestU = { startFrontends(): Promise<boolean>; vtest(): { setups: number; connected: number; resumed: number; teardowns: string[]; feature: string } };

async function until(what: string, cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('XenBus handshake across real workers', function () {
  this.timeout(120_000);
  let m: Machine;
  let d0: Comlink.Remote<Vtest0>;
  let u: Comlink.Remote<VtestU>;
  const id = { type: 'vtest', frontDom: asDomId(1), backDom: asDomId(0), devid: 0 };
  const fstate = async () => { const r = await d0.xsRead('/local/domain/1/device/vtest/0/state'); return r.ok ? r.value : 'gone'; };
  const bstate = async () => { const r = await d0.xsRead('/local/domain/0/backend/vtest/1/0/state'); return r.ok ? r.value : 'gone'; };

  before(async () => {
    m = await Machine.boot({ memBytes: 64 << 20 });
    const h0 = await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 8192, model: 'p2m', privileged: true, kind: 'dom0', entry: new URL('../helpers/vtest-dom0-main.ts', import.meta.url) });
    const hu = await m.createDomain({ name: 'guest1', memoryKiB: 8192, model: 'vp', kind: 'domU', entry: new URL('../helpers/vtest-domu-main.ts', import.meta.url) });
    d0 = h0.agent as unknown as Comlink.Remote<Vtest0>;
    u = hu.agent as unknown as Comlink.Remote<VtestU>;
    expect(await d0.startBackends()).to.equal(true);
    expect(await u.startFrontends()).to.equal(true);
  });
  after(async () => { await m?.shutdown(); });

  it('connects a frontend in a domU to its backend in dom0 through XenStore', async () => {
    expect((await d0.createDeviceDirs(id)).ok).to.equal(true);
    await until('both Connected', async () => (await fstate()) === '4' && (await bstate()) === '4');
    const s = await u.vtest();
    expect(s.connected).to.equal(1);
    expect(s.feature).to.equal('1');
    expect((await d0.stats()).vtest.ringRefs).to.deep.equal(['100']);
    expect(await d0.xsRead('/local/domain/0/backend/vtest/1/0/sectors')).to.deep.equal({ ok: true, value: '2048' });
  });

  it('redoes the handshake when the backend disappears and returns', async () => {
    await d0.stopBackends();
    expect((await d0.xsRm('/local/domain/0/backend/vtest/1/0')).ok).to.equal(true);
    await until('frontend back in Initialising', async () => (await fstate()) === '1' && (await u.vtest()).teardowns.includes('resume'));
    expect(await bstate()).to.equal('gone');
    expect(await d0.startBackends()).to.equal(true);
    expect((await d0.createDeviceDirs({ ...id, sides: 'backend' })).ok).to.equal(true);
    await until('both Connected again', async () => (await fstate()) === '4' && (await bstate()) === '4');
    const s = await u.vtest();
    expect(s.connected).to.equal(2);
    expect(s.resumed).to.equal(1);
    // The new backend connected with the frontend's fresh keys, not the old ones.
    expect((await d0.stats()).vtest.ringRefs).to.deep.equal(['100', '101']);
  });

  it('closes both ends when the toolstack unplugs the device', async () => {
    expect((await d0.initiateDeviceRemove(id)).ok).to.equal(true);
    await until('backend Closed', async () => ['6', 'gone'].includes(await bstate()));
    await until('frontend Closed', async () => ['6', 'gone'].includes(await fstate()));
    expect((await d0.removeDeviceDirs(id)).ok).to.equal(true);
    expect((await d0.stats()).vtest.disconnects).to.be.greaterThan(0);
  });
});
