/**
 * The xenbus handshake end to end in one thread: a real XenStored, the
 * frontend in guest 1 over its xenstore ring page (XsClient), the backend in
 * dom0 in-process (XsLocalClient), the toolstack's createDeviceDirs.
 */
import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { XS } from '../../../shared/abi/xenstore.ts';
import { XenStored, type XsConnection, type XsMsg } from '../../../dom0/xenstore/xenstored.ts';
import { latin1 } from '../../../dom0/xenstore/wire.ts';
import { XenbusState } from '../../../shared/xenbus/state.ts';
import { XenbusBackend, createBackendBus } from '../../../shared/xenbus/backend.ts';
import { XenbusFrontend, createFrontendBus } from '../../../shared/xenbus/frontend.ts';
import { backendPath, frontendPath, type XenbusDeviceId } from '../../../shared/xenbus/paths.ts';
import { createDeviceDirs, initiateDeviceRemove, removeDeviceDirs } from '../../../toolstack/devices.ts';
import {
  must, newBackendLog, newFrontendLog, settle, testBackendHooks, testFrontendHooks, until, world,
  type BackendLog, type FrontendLog, type Guest, type World,
} from './helpers.ts';

const S = XenbusState;
const VBD: XenbusDeviceId = { type: 'vbd', frontDom: asDomId(1), backDom: asDomId(0), devid: 51712 };

/** A daemon that records requests (domid, type, tx, payload) and can interfere before one is processed. */
class RecordingXenStored extends XenStored {
  readonly seen: { domid: number; type: number; txId: number; payload: string }[] = [];
  beforeProcess: ((conn: XsConnection, msg: XsMsg) => void) | undefined;
  override process(conn: XsConnection, msg: XsMsg): void {
    this.seen.push({ domid: conn.domid, type: msg.type, txId: msg.txId, payload: latin1(msg.payload) });
    this.beforeProcess?.(conn, msg);
    super.process(conn, msg);
  }
}

interface Pair {
  w: World;
  g: Guest;
  fe: XenbusFrontend<unknown>;
  bus: ReturnType<typeof createBackendBus<unknown>>;
  feLog: FrontendLog;
  beLog: BackendLog;
  lines: string[];
  backend(): XenbusBackend<unknown>;
  sectors: { n: number };
}

async function pair(opts: { d?: XenStored; skipInitWait?: boolean; eager?: boolean; skipInitialised?: boolean; failConnect?: () => boolean } = {}): Promise<Pair> {
  const w = await world({}, opts.d ?? new XenStored());
  const g = await w.guest(1);
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const feLog = newFrontendLog();
  const beLog = newBackendLog();
  const sectors = { n: 2048 };
  must(await createDeviceDirs(w.dom0, { ...VBD, backendKeys: { params: 'disk.img', mode: 'w' }, frontendKeys: { 'virtual-device': '51712' } }), 'createDeviceDirs');
  const bus = createBackendBus<unknown>(w.dom0, VBD.backDom, 'vbd',
    () => testBackendHooks(beLog, () => sectors.n, opts.failConnect) as never,
    { log, device: { skipInitWait: opts.skipInitWait, log } });
  must(await bus.start(), 'bus.start');
  const fe = new XenbusFrontend<unknown>(g.xs, VBD, testFrontendHooks(feLog) as never,
    { log, eager: opts.eager, skipInitialised: opts.skipInitialised });
  must(await fe.start(), 'fe.start');
  const backend = () => {
    const b = bus.registered.get('1/51712');
    if (!b) throw new Error('no backend device registered');
    return b;
  };
  return { w, g, fe, bus, feLog, beLog, lines, backend, sectors };
}

function states(p: Pair): string {
  const b = p.bus.registered.get('1/51712');
  return `frontend ${p.fe.state} (peer ${String(p.fe.peerState)}), backend ${b ? `${b.state} (peer ${String(b.peerState)})` : 'none'}\n${p.lines.slice(-12).join('\n')}`;
}

async function connected(p: Pair): Promise<void> {
  await until(() => p.fe.state === S.Connected && p.fe.isConnected && p.bus.registered.get('1/51712')?.state === S.Connected, () => states(p));
}

async function readState(p: Pair, path: string): Promise<string> {
  return must(await p.w.dom0.readString(`${path}/state`), `read ${path}/state`);
}

describe('xenbus handshake (frontend over a ring, backend in dom0)', function () {
  this.timeout(10000);

  it('reaches Connected on both ends with features and keys exchanged', async () => {
    const t0 = performance.now();
    const p = await pair();
    await connected(p);
    const ms = performance.now() - t0;
    expect(p.feLog.features).to.deep.equal([{ persistent: true, maxOrder: 2 }]);
    expect(p.feLog.setups).to.deep.equal([{ keys: { ringRef: 9, port: 11 }, resumed: false }]);
    expect(p.beLog.connects).to.deep.equal([{ ringRef: 9, port: 11 }]);
    expect(p.feLog.connected).to.deep.equal([{ sectors: 2048, resumed: false }]);
    expect(await readState(p, frontendPath(VBD))).to.equal('4');
    expect(await readState(p, backendPath(VBD))).to.equal('4');
    expect(must(await p.w.dom0.readString(`${frontendPath(VBD)}/protocol`), 'protocol')).to.equal('x86_64-abi');
    expect(p.fe.stats.badPeerState + p.backend().stats.badPeerState).to.equal(0);
    expect(p.beLog.probes).to.equal(1);
    console.log(`      handshake to Connected: ${ms.toFixed(1)} ms (incl. world setup), fe passes ${p.fe.stats.passes}, be passes ${p.backend().stats.passes}`);
  });

  it('writes the frontend keys and Initialised in one transaction, and redoes it on EAGAIN', async () => {
    const d = new RecordingXenStored();
    let interfered = 0;
    d.beforeProcess = (conn, msg) => {
      // The first commit of guest 1 that carries its keys: dom0 touches the frontend's state node first.
      if (conn.domid === 1 && msg.type === XS.TRANSACTION_END && interfered === 0
        && d.seen.some((m) => m.domid === 1 && m.txId === msg.txId && m.payload.startsWith(`${frontendPath(VBD)}/ring-ref\0`))) {
        interfered++;
        d.handle(d.connect(asDomId(0)), { type: XS.WRITE, reqId: 0, txId: 0, payload: new Uint8Array(Buffer.from(`${frontendPath(VBD)}/state\x001`, 'latin1')) });
      }
    };
    const p = await pair({ d });
    await connected(p);
    expect(interfered).to.equal(1);
    expect(p.g.xs.stats.transactionRetries).to.be.at.least(1);
    expect(d.stats.conflicts).to.be.at.least(1);
    // The committed attempt: ring-ref, event-channel and state=3 share one transaction id.
    const stateWrite = d.seen.filter((m) => m.domid === 1 && m.type === XS.WRITE && m.payload === `${frontendPath(VBD)}/state\x003`);
    expect(stateWrite).to.have.length(2); // the conflicted attempt and the retry
    const tx = (stateWrite[1] as { txId: number }).txId;
    expect(tx).to.not.equal(0);
    const inTx = d.seen.filter((m) => m.domid === 1 && m.type === XS.WRITE && m.txId === tx).map((m) => m.payload.split('\0')[0]);
    expect(inTx).to.include.members([`${frontendPath(VBD)}/ring-ref`, `${frontendPath(VBD)}/event-channel`, `${frontendPath(VBD)}/state`]);
    expect(p.feLog.setups).to.have.length(1); // the hook ran once; only the transaction was redone
  });

  it('ignores and counts garbage in the frontend\'s state while the backend keeps serving', async () => {
    const p = await pair();
    await connected(p);
    const be = p.backend();
    const fstate = `${frontendPath(VBD)}/state`;
    const junks = ['banana', '', '9', '-1', '4x', ' 4', '0x4', 'A'.repeat(500)];
    for (const [i, junk] of junks.entries()) {
      must(await p.g.xs.write(fstate, junk), `write ${junk}`);
      await until(() => be.stats.badPeerState >= i + 1, () => `badPeerState ${be.stats.badPeerState} after "${junk}"`);
    }
    expect(be.state).to.equal(S.Connected);
    expect(be.isConnected).to.equal(true);
    expect(p.beLog.disconnects).to.equal(0);
    expect(be.stopped).to.equal(false);
    // Not broken: a good state again, then a resize still reaches the frontend.
    must(await p.g.xs.write(fstate, '4'), 'write 4');
    p.sectors.n = 4096;
    expect(await be.republish({ sectors: '4096' })).to.equal(true);
    await until(() => p.feLog.refreshes.includes(4096), () => `refreshes ${JSON.stringify(p.feLog.refreshes)}`);
    expect(p.beLog.connects).to.have.length(1);
  });

  it('ignores and counts garbage in the backend\'s state while the frontend stays connected', async () => {
    const p = await pair();
    await connected(p);
    const bstate = `${backendPath(VBD)}/state`;
    must(await p.w.dom0.write(bstate, 'Connected'), 'garbage');
    await until(() => p.fe.stats.badPeerState >= 1, () => `badPeerState ${p.fe.stats.badPeerState}`);
    must(await p.w.dom0.write(bstate, '77'), 'garbage');
    await until(() => p.fe.stats.badPeerState >= 2, () => `badPeerState ${p.fe.stats.badPeerState}`);
    expect(p.fe.state).to.equal(S.Connected);
    expect(p.feLog.teardowns).to.deep.equal([]);
    must(await p.w.dom0.write(bstate, '4'), 'good');
    await until(() => p.feLog.refreshes.length >= 1, () => 'refresh');
    expect(p.fe.isConnected).to.equal(true);
  });

  it('re-reads the backend when it writes Connected again (the resize signal)', async () => {
    const p = await pair();
    await connected(p);
    expect(await p.backend().republish({ sectors: '8192' })).to.equal(true);
    await until(() => p.feLog.refreshes.includes(8192), () => `refreshes ${JSON.stringify(p.feLog.refreshes)}`);
    expect(p.fe.state).to.equal(S.Connected);
    expect(p.feLog.setups).to.have.length(1);
  });

  it('resumes when the backend directory vanishes, and connects again when it comes back', async () => {
    const p = await pair();
    await connected(p);
    const old = p.backend();
    must(await p.w.dom0.rm(backendPath(VBD)), 'rm backend dir');
    await until(() => old.stopped && p.fe.state === S.Initialising, () => states(p));
    expect(p.feLog.teardowns).to.deep.equal(['resume']);
    expect(p.beLog.disconnects).to.equal(1);
    expect(p.beLog.removes).to.equal(1);
    expect(p.fe.stats.resumes).to.equal(1);
    // The toolstack re-creates the backend: the bus probes it, and the frontend redoes the handshake.
    must(await createDeviceDirs(p.w.dom0, { ...VBD, sides: 'backend' }), 're-create backend');
    await connected(p);
    expect(p.backend()).to.not.equal(old);
    expect(p.beLog.probes).to.equal(2);
    expect(p.feLog.setups.map((s) => s.resumed)).to.deep.equal([false, true]);
    expect(p.feLog.connected.map((c) => c.resumed)).to.deep.equal([false, true]);
    // New grants and ports were offered the second time, and the new backend mapped those.
    expect(p.beLog.connects).to.deep.equal([{ ringRef: 9, port: 11 }, { ringRef: 10, port: 12 }]);
  });

  it('resumes when the backend falls to Closed without closing, and connects to its restarted instance', async () => {
    const p = await pair();
    await connected(p);
    const old = p.backend();
    await p.bus.stop();
    await old.stop(); // the backend process dies...
    expect(p.beLog.disconnects).to.equal(1);
    must(await p.w.dom0.write(`${backendPath(VBD)}/state`, '6'), 'state Closed'); // ...and its state is left Closed
    await until(() => p.fe.state === S.Initialising, () => states(p));
    expect(p.feLog.teardowns).to.deep.equal(['resume']);
    // A new backend instance for the same directory (found Closed) re-advertises and connects.
    const log = newBackendLog();
    const again = new XenbusBackend(p.w.dom0, VBD, testBackendHooks(log), { log: (l) => p.lines.push(l) });
    must(await again.start(), 'start');
    await until(() => p.fe.state === S.Connected && p.fe.isConnected && again.state === S.Connected, () => `${states(p)}\nnew backend ${again.state}`);
    expect(log.connects).to.deep.equal([{ ringRef: 10, port: 12 }]);
    expect(p.feLog.connected.map((c) => c.resumed)).to.deep.equal([false, true]);
  });

  it('closes both ends when the frontend closes, and the backend stays registered while online', async () => {
    const p = await pair();
    await connected(p);
    p.fe.close();
    await until(() => p.fe.state === S.Closed && p.backend().state === S.Closed, () => states(p));
    expect(p.feLog.teardowns).to.deep.equal(['close']);
    expect(p.beLog.disconnects).to.equal(1);
    expect(p.backend().stopped).to.equal(false);
    expect(await readState(p, frontendPath(VBD))).to.equal('6');
    expect(await readState(p, backendPath(VBD))).to.equal('6');
    await settle();
    expect(p.fe.state).to.equal(S.Closed); // no reconnect after our own close
    // open() walks Closed → Initialising; the backend re-advertises and they connect again.
    p.fe.open();
    await connected(p);
    expect(p.beLog.connects).to.have.length(2);
    expect(p.feLog.connected.map((c) => c.resumed)).to.deep.equal([false, false]);
  });

  it('unplugs on the toolstack\'s request: online=0 + Closing → both Closed, backend unregistered, then dirs removed', async () => {
    const p = await pair();
    await connected(p);
    const be = p.backend();
    must(await initiateDeviceRemove(p.w.dom0, VBD), 'initiateDeviceRemove');
    await until(() => p.fe.state === S.Closed && be.stopped, () => states(p));
    expect(be.state).to.equal(S.Closed);
    expect(p.beLog.removes).to.equal(1);
    expect(p.bus.registered.size).to.equal(0);
    must(await removeDeviceDirs(p.w.dom0, VBD), 'removeDeviceDirs');
    await until(() => p.fe.stopped, () => states(p));
    expect(p.feLog.teardowns).to.deep.equal(['close']);
    expect((await p.w.dom0.read(frontendPath(VBD))).ok).to.equal(false);
  });

  it('connects when the backend skips InitWait and the frontend skips Initialised', async () => {
    const p = await pair({ skipInitWait: true, eager: true, skipInitialised: true });
    await connected(p);
    const transitions = p.lines.filter((l) => l.includes('→'));
    expect(transitions.some((l) => l.includes('backend') && l.includes('Initialising → Connected'))).to.equal(true);
    expect(transitions.some((l) => l.includes('frontend') && l.includes('Initialising → Connected'))).to.equal(true);
    expect(transitions.some((l) => l.includes('InitWait') || l.includes('Initialised'))).to.equal(false);
    expect(p.feLog.connected).to.have.length(1);
  });

  it('reports a failing connect hook as xenbus_dev_fatal (error node, Closing) and both ends close', async () => {
    const p = await pair({ failConnect: () => true });
    await until(() => p.fe.state === S.Closed && p.backend().state === S.Closed, () => states(p));
    expect(p.backend().stats.hookFailures).to.equal(1);
    const e = must(await p.w.dom0.readString('/local/domain/0/error/backend/vbd/1/51712/error'), 'error node');
    expect(e).to.equal('map-failed: connect: cannot map ring-ref 9');
    expect(p.feLog.teardowns).to.deep.equal(['close']);
    expect(p.beLog.disconnects).to.equal(0); // never connected, never disconnected
  });

  it('survives a hook that throws: reported like a failed hook, no exception escapes', async () => {
    const p = await pair({ failConnect: () => { throw new Error('driver bug'); } });
    await until(() => p.fe.state === S.Closed && p.backend().state === S.Closed, () => states(p));
    expect(p.backend().stats.hookFailures).to.equal(1);
    expect(must(await p.w.dom0.readString('/local/domain/0/error/backend/vbd/1/51712/error'), 'error node')).to.equal('exception: driver bug');
    expect(p.backend().stopped).to.equal(false);
  });

  it('probes devices on both sides as the toolstack creates them, and drops the one it removes', async () => {
    const w = await world();
    const g = await w.guest(1);
    const feLog = newFrontendLog();
    const beLog = newBackendLog();
    const beBus = createBackendBus(w.dom0, asDomId(0), 'vbd', () => testBackendHooks(beLog));
    const feBus = createFrontendBus(g.xs, asDomId(1), 'vbd', () => testFrontendHooks(feLog));
    must(await beBus.start(), 'be bus');
    must(await feBus.start(), 'fe bus');
    const devids = [51712, 51728, 51744, 51760, 51776, 51792, 51808, 51824];
    const t0 = performance.now();
    for (const devid of devids) must(await createDeviceDirs(w.dom0, { ...VBD, devid }), `create ${devid}`);
    const all = () => devids.every((id) => feBus.registered.get(String(id))?.isConnected === true && beBus.registered.get(`1/${id}`)?.state === S.Connected);
    await until(all, () => `fe ${[...feBus.registered.keys()].join(',')} be ${[...beBus.registered.keys()].join(',')}`);
    const ms = performance.now() - t0;
    console.log(`      ${devids.length} devices created and connected in ${ms.toFixed(1)} ms (${(ms / devids.length).toFixed(2)} ms each)`);
    expect(beLog.connects).to.have.length(devids.length);
    expect(feLog.setups).to.have.length(devids.length);
    const gone = feBus.registered.get('51728');
    must(await removeDeviceDirs(w.dom0, { ...VBD, devid: 51728 }), 'remove');
    await until(() => !feBus.registered.has('51728') && !beBus.registered.has('1/51728'), () => 'not dropped');
    expect(gone?.stopped).to.equal(true);
    expect(feBus.registered.size).to.equal(devids.length - 1);
    // It comes back when the toolstack creates it again.
    must(await createDeviceDirs(w.dom0, { ...VBD, devid: 51728 }), 're-create');
    await until(() => feBus.registered.get('51728')?.isConnected === true, () => 'not re-probed');
    await feBus.stop();
    await beBus.stop();
  });

  it('resets a backend left Connected by an earlier frontend instance before connecting', async () => {
    const p = await pair();
    await connected(p);
    // The guest "reboots" its driver: the old frontend object is gone without a word to the backend.
    await p.fe.stop();
    const mark = p.lines.length;
    const feLog = newFrontendLog();
    const fresh = new XenbusFrontend<unknown>(p.g.xs, VBD, testFrontendHooks(feLog) as never, { log: (l) => p.lines.push(l) });
    must(await fresh.start(), 'start');
    await until(() => fresh.state === S.Connected && fresh.isConnected && p.backend().state === S.Connected, () => `${states(p)}\nfresh ${fresh.state}`);
    const walk = p.lines.slice(mark).filter((l) => l.startsWith('xenbus frontend') && l.includes('→')).map((l) => l.split(': ')[1]);
    expect(walk).to.deep.equal(['Connected → Closing', 'Closing → Closed', 'Closed → Initialising', 'Initialising → Initialised', 'Initialised → Connected']);
    expect(p.lines.some((l) => l.includes('found in Connected at start; resetting'))).to.equal(true);
    expect(p.beLog.connects).to.have.length(2);
    expect(p.beLog.disconnects).to.equal(1);
    expect(feLog.connected).to.have.length(1);
  });
});
