/**
 * The toolstack's directories (toolstack/devices.ts) and who may see them,
 * checked through real xenstored permission checks: dom0 in-process, guest 1
 * over its ring, and a third domain (3) that must see nothing of the device.
 */
import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { XsLocalClient } from '../../../dom0/xenstore/local-client.ts';
import { backendPath, frontendPath, type XenbusDeviceId } from '../../../shared/xenbus/paths.ts';
import { createDeviceDirs, domainDirs, removeDeviceDirs } from '../../../toolstack/devices.ts';
import { must, world } from './helpers.ts';

const VIF: XenbusDeviceId = { type: 'vif', frontDom: asDomId(1), backDom: asDomId(2), devid: 0 };

function errno(r: { ok: boolean; error?: unknown }): string {
  if (r.ok) return 'ok';
  const e = r.error as { kind: string; errno?: string };
  return e.errno ?? e.kind;
}

describe('toolstack device directories', () => {
  it('creates a domain home as libxl does: dom0-owned and readable by the domain, with writable data/error/feature', async () => {
    const w = await world();
    const g = await w.guest(1);
    const home = '/local/domain/1';
    expect(must(await w.dom0.getPerms(home), 'perms')).to.deep.equal(['n0', 'r1']);
    expect(must(await w.dom0.getPerms(`${home}/device`), 'perms')).to.deep.equal(['n0', 'r1']);
    expect(must(await w.dom0.getPerms(`${home}/control`), 'perms')).to.deep.equal(['n0', 'r1']);
    for (const d of ['data', 'error', 'feature', 'drivers', 'attr', 'control/shutdown', 'device/suspend/event-channel']) {
      expect(must(await w.dom0.getPerms(`${home}/${d}`), d), d).to.deep.equal(['n1']);
    }
    expect(must(await g.xs.readString(`${home}/name`), 'name')).to.equal('guest1');
    expect(must(await g.xs.readString(`${home}/domid`), 'domid')).to.equal('1');
    expect(must(await g.xs.readString(`${home}/control/platform-feature-xs_reset_watches`), 'xs_reset_watches')).to.equal('1');
    // The guest writes where libxl lets it, and nowhere else in its home.
    expect(errno(await g.xs.write('data/x', 'mine'))).to.equal('ok');
    expect(errno(await g.xs.write(`${home}/control/shutdown`, ''))).to.equal('ok');
    expect(errno(await g.xs.write(`${home}/name`, 'evil'))).to.equal('EACCES');
    expect(errno(await g.xs.write(`${home}/device/vbd`, 'x'))).to.equal('EACCES');
    // Another guest cannot read this home at all.
    const third = new XsLocalClient(w.d, 3);
    expect(errno(await third.read(`${home}/name`))).to.equal('EACCES');
  });

  it('recreates a domain home from scratch, dropping what was there', async () => {
    const w = await world();
    await w.guest(1);
    must(await w.dom0.write('/local/domain/1/data/old', 'x'), 'write');
    must(await domainDirs(w.dom0, asDomId(1), 'again'), 'domainDirs');
    expect(errno(await w.dom0.read('/local/domain/1/data/old'))).to.equal('ENOENT');
    expect(must(await w.dom0.readString('/local/domain/1/name'), 'name')).to.equal('again');
  });

  it('creates both device dirs in Initialising with libxl\'s owners and readers, and a third domain sees neither', async () => {
    const w = await world();
    const g = await w.guest(1);
    await w.guest(2); // the driver domain
    must(await createDeviceDirs(w.dom0, { ...VIF, backendKeys: { mac: '00:16:3e:00:00:01', bridge: 'xenbr0' }, frontendKeys: { mac: '00:16:3e:00:00:01' } }), 'create');
    const fe = frontendPath(VIF);
    const be = backendPath(VIF);
    expect(fe).to.equal('/local/domain/1/device/vif/0');
    expect(be).to.equal('/local/domain/2/backend/vif/1/0');
    expect(must(await w.dom0.getPerms(fe), 'fe perms')).to.deep.equal(['n1', 'r2']);
    expect(must(await w.dom0.getPerms(be), 'be perms')).to.deep.equal(['n2', 'r1']);
    const feKeys = Object.fromEntries(await Promise.all(must(await w.dom0.directory(fe), 'dir').map(async (k) => [k, must(await w.dom0.readString(`${fe}/${k}`), k)])));
    expect(feKeys).to.deep.equal({ backend: be, 'backend-id': '2', state: '1', handle: '0', mac: '00:16:3e:00:00:01' });
    const beKeys = Object.fromEntries(await Promise.all(must(await w.dom0.directory(be), 'dir').map(async (k) => [k, must(await w.dom0.readString(`${be}/${k}`), k)])));
    expect(beKeys).to.deep.equal({ frontend: fe, 'frontend-id': '1', online: '1', state: '1', handle: '0', mac: '00:16:3e:00:00:01', bridge: 'xenbr0' });
    // Each end writes its own dir and reads the peer's, but cannot write the peer's.
    const driverDom = new XsLocalClient(w.d, 2);
    expect(errno(await g.xs.write(`${fe}/tx-ring-ref`, '8'))).to.equal('ok');
    expect(errno(await g.xs.readString(`${be}/state`))).to.equal('ok');
    expect(errno(await g.xs.write(`${be}/state`, '4'))).to.equal('EACCES');
    expect(errno(await driverDom.write(`${be}/feature-sg`, '1'))).to.equal('ok');
    expect(errno(await driverDom.readString(`${fe}/tx-ring-ref`))).to.equal('ok');
    expect(errno(await driverDom.write(`${fe}/state`, '4'))).to.equal('EACCES');
    // A third domain can neither read nor list nor watch-read them.
    const third = new XsLocalClient(w.d, 3);
    for (const p of [fe, `${fe}/state`, `${fe}/tx-ring-ref`, be, `${be}/state`, `${be}/feature-sg`]) {
      expect(errno(await third.read(p)), p).to.equal('EACCES');
    }
    expect(errno(await third.directory(fe))).to.equal('EACCES');
    expect(errno(await third.write(`${fe}/state`, '6'))).to.equal('EACCES');
  });

  it('refuses a bad type or devid before touching the store, and removes both dirs in one go', async () => {
    const w = await world();
    await w.guest(1);
    const bad = await createDeviceDirs(w.dom0, { ...VIF, type: 'v/if' });
    expect(bad.ok ? 'ok' : bad.error.kind).to.equal('bad-type');
    const bad2 = await createDeviceDirs(w.dom0, { ...VIF, devid: -1 });
    expect(bad2.ok ? 'ok' : bad2.error.kind).to.equal('bad-devid');
    must(await createDeviceDirs(w.dom0, { ...VIF, backDom: asDomId(0), handle: false }), 'create');
    const id = { ...VIF, backDom: asDomId(0) };
    expect(errno(await w.dom0.read(`${frontendPath(id)}/handle`))).to.equal('ENOENT');
    must(await removeDeviceDirs(w.dom0, id), 'remove');
    expect(errno(await w.dom0.read(frontendPath(id)))).to.equal('ENOENT');
    expect(errno(await w.dom0.read(backendPath(id)))).to.equal('ENOENT');
    must(await removeDeviceDirs(w.dom0, id), 'remove again is fine');
  });
});
