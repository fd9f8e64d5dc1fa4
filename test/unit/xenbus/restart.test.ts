/**
 * Backend restarts and fatal errors in one thread: the interleavings the
 * stress tests found (a restarted backend connecting to the ring-ref and
 * event-channel its frontend gave the backend before it, while the frontend
 * revokes them to resume) forced here with hooks that wait at the racy point,
 * and xenbus_dev_fatal as a driver's data path calls it.
 *
 * The test device's "grants" are modelled: a ring-ref is live from the
 * frontend's setup to its teardown, and the backend's connect fails (as a
 * grant map would) for one that is not live.
 */
import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { err } from '../../../shared/result.ts';
import { XenbusState } from '../../../shared/xenbus/state.ts';
import { XenbusBackend, createBackendBus, type BackendHooks } from '../../../shared/xenbus/backend.ts';
import { XenbusFrontend, type FrontendHooks } from '../../../shared/xenbus/frontend.ts';
import { XENSIM_KEY, backendPath, frontendPath, type XenbusDeviceId } from '../../../shared/xenbus/paths.ts';
import { createDeviceDirs } from '../../../toolstack/devices.ts';
import {
  must, newBackendLog, newFrontendLog, settle, testBackendHooks, testFrontendHooks, until, world,
  type BackendLog, type FrontendLog, type FrontFeatures, type FrontKeys, type Guest, type World,
} from './helpers.ts';

const S = XenbusState;
const VBD: XenbusDeviceId = { type: 'vbd', frontDom: asDomId(1), backDom: asDomId(0), devid: 51712 };
const FE = frontendPath(VBD);
const BE = backendPath(VBD);

interface Rig {
  w: World;
  g: Guest;
  fe: XenbusFrontend<FrontFeatures>;
  feLog: FrontendLog;
  /** Ring-refs the frontend has granted and not yet revoked. */
  live: Set<number>;
  lines: string[];
  /** Starts a backend instance on the device directory (a restart when one ran before). */
  backend(gate?: (f: FrontKeys) => Promise<void>): Promise<{ be: XenbusBackend<FrontKeys>; log: BackendLog }>;
}

/** Frontend hooks of the test device that keep `live` (granted ring-refs) up to date. */
function liveFrontendHooks(log: FrontendLog, live: Set<number>): FrontendHooks<FrontFeatures> {
  const base = testFrontendHooks(log);
  return {
    ...base,
    setup: async (ctx, b, info) => {
      const r = await base.setup(ctx, b, info);
      if (r.ok) live.add(Number(r.value['ring-ref']));
      return r;
    },
    teardown: async (ctx, reason) => {
      const last = log.setups[log.setups.length - 1];
      if (last !== undefined) live.delete(last.keys.ringRef); // revoked: a later map of it fails
      await base.teardown(ctx, reason);
    },
  };
}

/** Backend hooks whose connect first waits at `gate` (the racy point), then maps only live ring-refs. */
function liveBackendHooks(log: BackendLog, live: Set<number>, gate?: (f: FrontKeys) => Promise<void>): BackendHooks<FrontKeys> {
  const base = testBackendHooks(log);
  return {
    ...base,
    connect: async (ctx, f) => {
      if (gate !== undefined) await gate(f);
      if (!live.has(f.ringRef)) return err({ kind: 'map-failed', message: `cannot map ring-ref ${f.ringRef}: GNTST_bad_gntref` });
      return base.connect(ctx, f);
    },
  };
}

async function rig(opts: { frontend?: boolean } = {}): Promise<Rig> {
  const w = await world();
  const g = await w.guest(1);
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  must(await createDeviceDirs(w.dom0, { ...VBD, backendKeys: { params: 'disk.img', mode: 'w' }, frontendKeys: { 'virtual-device': '51712' } }), 'createDeviceDirs');
  const feLog = newFrontendLog();
  const live = new Set<number>();
  const fe = new XenbusFrontend<FrontFeatures>(g.xs, VBD, liveFrontendHooks(feLog, live), { log });
  if (opts.frontend !== false) must(await fe.start(), 'fe.start');
  return {
    w, g, fe, feLog, live, lines,
    async backend(gate) {
      const bl = newBackendLog();
      const be = new XenbusBackend<FrontKeys>(w.dom0, VBD, liveBackendHooks(bl, live, gate), { log });
      must(await be.start(), 'be.start');
      return { be, log: bl };
    },
  };
}

function describeRig(r: Rig, be?: XenbusBackend<unknown>): string {
  return `frontend ${r.fe.state} (peer ${String(r.fe.peerState)}), backend ${be ? `${be.state} (peer ${String(be.peerState)})` : 'none'}\n${r.lines.slice(-14).join('\n')}`;
}

async function bothConnected(r: Rig, be: XenbusBackend<unknown>): Promise<void> {
  await until(() => r.fe.state === S.Connected && r.fe.isConnected && be.state === S.Connected && be.isConnected, () => describeRig(r, be));
}

describe('xenbus backend restarts and fatal errors', function () {
  this.timeout(10000);

  it('publishes a new handshake generation per backend instance, and the frontend answers it with its keys', async () => {
    const r = await rig();
    const a = await r.backend();
    await bothConnected(r, a.be);
    expect(a.be.handshakeGeneration).to.equal(1);
    expect(must(await r.w.dom0.readString(`${BE}/${XENSIM_KEY.GENERATION}`), 'gen')).to.equal('1');
    expect(must(await r.w.dom0.readString(`${FE}/${XENSIM_KEY.GENERATION_ACK}`), 'ack')).to.equal('1');
    expect(r.fe.answeredGeneration).to.equal(1);
    await a.be.stop();
    const b = await r.backend();
    await bothConnected(r, b.be);
    expect(b.be.handshakeGeneration).to.equal(2);
    expect(r.fe.answeredGeneration).to.equal(2);
    expect(b.log.connects).to.deep.equal([{ ringRef: 10, port: 12 }]);
  });

  it('does not connect a restarted backend to the keys its frontend is revoking to resume (the stress seeds 30 and 45 race)', async () => {
    const r = await rig();
    const a = await r.backend();
    await bothConnected(r, a.be);
    // The backend dies without a word (its directory stays Connected) and a new instance probes it.
    await a.be.stop();
    const teardownsBefore = r.feLog.teardowns.length;
    // The racy point: the new instance has read the frontend's keys and is about to map them when
    // the frontend, seeing the new instance, revokes them. A connect to old keys waits for that.
    const gated: FrontKeys[] = [];
    const b = await r.backend(async (f) => {
      gated.push(f);
      const newest = r.feLog.setups[r.feLog.setups.length - 1]?.keys.ringRef;
      if (f.ringRef !== newest) await until(() => r.feLog.teardowns.length > teardownsBefore, () => 'the frontend never tore down');
    });
    await bothConnected(r, b.be);
    await settle();
    expect(b.be.stats.hookFailures, describeRig(r, b.be)).to.equal(0);
    expect(b.be.stats.fatals).to.equal(0);
    expect(gated).to.deep.equal([{ ringRef: 10, port: 12 }]); // never the predecessor's ring-ref 9
    expect(b.log.connects).to.deep.equal([{ ringRef: 10, port: 12 }]);
    expect(r.feLog.teardowns).to.deep.equal(['resume']);
    expect(r.feLog.connected.map((c) => c.resumed)).to.deep.equal([false, true]);
    expect(b.be.stats.staleKeys + r.fe.stats.staleKeys).to.be.at.least(1);
    expect((await r.w.dom0.read(`/local/domain/0/error/backend/vbd/1/51712/error`)).ok).to.equal(false);
  });

  it('re-handshakes a frontend left Initialised by a backend that died before connecting, instead of both waiting', async () => {
    const r = await rig();
    // A backend instance that advertised (InitWait, generation 1) and died before it connected.
    must(await r.w.dom0.transaction(async (tx) => {
      for (const [k, v] of [['feature-persistent', '1'], [XENSIM_KEY.GENERATION, '1'], ['state', '2']] as const) {
        const wr = await r.w.dom0.write(`${BE}/${k}`, v, tx);
        if (!wr.ok) return wr;
      }
      return wr0;
    }), 'dead backend');
    await until(() => r.fe.state === S.Initialised, () => describeRig(r));
    expect(r.fe.answeredGeneration).to.equal(1);
    const b = await r.backend();
    await bothConnected(r, b.be);
    expect(b.be.handshakeGeneration).to.equal(2);
    expect(b.log.connects).to.deep.equal([{ ringRef: 10, port: 12 }]);
    expect(r.feLog.teardowns).to.deep.equal(['resume']);
    expect(r.fe.stats.staleKeys).to.equal(1);
  });

  it('still connects to a frontend that writes no generation ack (one that does not take part)', async () => {
    const r = await rig({ frontend: false });
    const b = await r.backend();
    await until(() => b.be.state === S.InitWait, () => describeRig(r, b.be));
    r.live.add(77);
    must(await r.g.xs.transaction(async (tx) => {
      for (const [k, v] of [['ring-ref', '77'], ['event-channel', '5'], ['state', '3']] as const) {
        const wr = await r.g.xs.write(`${FE}/${k}`, v, tx);
        if (!wr.ok) return wr;
      }
      return wr0;
    }), 'legacy frontend keys');
    await until(() => b.be.state === S.Connected, () => describeRig(r, b.be));
    expect(b.log.connects).to.deep.equal([{ ringRef: 77, port: 5 }]);
  });

  it('writes no generation ack to a backend that publishes no generation, and removes a stale one', async () => {
    const r = await rig();
    must(await r.g.xs.write(`${FE}/${XENSIM_KEY.GENERATION_ACK}`, '9'), 'stale ack');
    must(await r.w.dom0.write(`${BE}/state`, '2'), 'a backend without generations goes InitWait');
    await until(() => r.fe.state === S.Initialised, () => describeRig(r));
    expect(r.fe.answeredGeneration).to.equal(undefined);
    expect((await r.w.dom0.read(`${FE}/${XENSIM_KEY.GENERATION_ACK}`)).ok).to.equal(false);
    expect(must(await r.w.dom0.readString(`${FE}/ring-ref`), 'ring-ref')).to.equal('9');
  });

  it('is not fatal when a connect fails after the frontend moved on; it follows the frontend instead', async () => {
    const r = await rig();
    let release = false;
    const b = await r.backend(async () => {
      r.fe.close(); // the frontend closes while we map its rings...
      await until(() => release, () => 'not released');
      r.live.clear(); // ...and revokes them
    });
    await until(() => r.fe.state === S.Closing, () => describeRig(r, b.be));
    release = true;
    await until(() => r.fe.state === S.Closed && b.be.state === S.Closed, () => describeRig(r, b.be));
    expect(b.be.stats.hookFailures).to.equal(0);
    expect(b.be.stats.fatals).to.equal(0);
    expect((await r.w.dom0.read('/local/domain/0/error/backend/vbd/1/51712/error')).ok).to.equal(false);
  });

  it('creates no backend after its bus has stopped, even with a scan in flight (two instances once served one device)', async () => {
    const w = await world();
    const devids = [51712, 51728, 51744, 51760, 51776, 51792, 51808, 51824];
    for (const devid of devids) must(await createDeviceDirs(w.dom0, { ...VBD, devid }), `create ${devid}`);
    let created = 0;
    let stopping: Promise<void> | undefined;
    const bus: ReturnType<typeof createBackendBus<FrontKeys>> = createBackendBus<FrontKeys>(w.dom0, asDomId(0), 'vbd', () => {
      // The driver is stopped (a backend restart) while the bus is probing its second device.
      if (++created === 2) stopping = bus.stop();
      return testBackendHooks(newBackendLog());
    });
    must(await bus.start(), 'bus.start');
    await until(() => stopping !== undefined, () => 'no second device probed');
    await stopping;
    const atStop = created;
    expect(atStop).to.equal(2);
    expect(bus.registered.size).to.equal(atStop);
    await settle(50);
    expect(created).to.equal(atStop);
    for (const d of [...bus.registered.values()]) await d.stop();
    // A new bus (the restarted driver) takes every device, each exactly once.
    const again = createBackendBus<FrontKeys>(w.dom0, asDomId(0), 'vbd', () => testBackendHooks(newBackendLog()));
    must(await again.start(), 'again.start');
    await until(() => again.registered.size === devids.length, () => `${again.registered.size} registered`);
    await again.stop();
  });

  it('stops a backend that already unregistered itself with an event still pending (a restart once hung on it)', async () => {
    const r = await rig();
    const bl = newBackendLog();
    const base = liveBackendHooks(bl, r.live);
    // An event arrives while the backend is going away on its own (its directory was removed).
    const be: XenbusBackend<FrontKeys> = new XenbusBackend<FrontKeys>(r.w.dom0, VBD, { ...base, remove: (ctx) => { be.kick(); return base.remove?.(ctx); } });
    must(await be.start(), 'be.start');
    await bothConnected(r, be);
    must(await r.w.dom0.rm(BE), 'rm backend dir');
    await until(() => be.stopped, () => describeRig(r, be));
    const stopped = await Promise.race([be.stop().then(() => 'stopped'), new Promise<string>((res) => setTimeout(() => res('hung'), 500))]);
    expect(stopped).to.equal('stopped');
    expect(bl.disconnects).to.equal(1);
    expect(bl.removes).to.equal(1);
  });

  it('fatal() on a connected backend writes the error node and Closing; the frontend closes and the backend unmaps', async () => {
    const r = await rig();
    const b = await r.backend();
    await bothConnected(r, b.be);
    await b.be.fatal('bogus-ring', 'req_prod 4000 is more than a ring past req_cons 3');
    expect(b.be.state).to.equal(S.Closing);
    expect(must(await r.w.dom0.readString('/local/domain/0/error/backend/vbd/1/51712/error'), 'error node'))
      .to.equal('bogus-ring: req_prod 4000 is more than a ring past req_cons 3');
    await until(() => r.fe.state === S.Closed && b.be.state === S.Closed, () => describeRig(r, b.be));
    expect(b.log.disconnects).to.equal(1);
    expect(r.feLog.teardowns).to.deep.equal(['close']);
    expect(b.be.stats.fatals).to.equal(1);
    expect(b.be.stats.hookFailures).to.equal(0);
    await settle();
    expect(b.be.state).to.equal(S.Closed); // nothing reconnects on its own
    expect(b.log.connects).to.have.length(1);
  });

  it('fatal() through the hook context works the same, and on a frontend it closes both ends', async () => {
    const r = await rig();
    let ctxFatal: ((k: string, m: string) => Promise<void>) | undefined;
    const bl = newBackendLog();
    const base = liveBackendHooks(bl, r.live);
    const be = new XenbusBackend<FrontKeys>(r.w.dom0, VBD, { ...base, connect: (ctx, f) => { ctxFatal = ctx.fatal; return base.connect(ctx, f); } });
    must(await be.start(), 'be.start');
    await bothConnected(r, be);
    // Called twice at once from a "data path": both reports are serialised with the passes.
    const f1 = ctxFatal?.('first', 'one');
    const f2 = ctxFatal?.('second', 'two');
    await Promise.all([f1, f2]);
    expect(be.stats.fatals).to.equal(2);
    expect(must(await r.w.dom0.readString('/local/domain/0/error/backend/vbd/1/51712/error'), 'error node')).to.equal('second: two');
    await until(() => r.fe.state === S.Closed && be.state === S.Closed, () => describeRig(r, be));

    const r2 = await rig();
    const b2 = await r2.backend();
    await bothConnected(r2, b2.be);
    await r2.fe.fatal('bad-response', 'id 99 was never issued');
    expect(r2.fe.state).to.equal(S.Closing);
    expect(must(await r2.w.dom0.readString('/local/domain/1/error/device/vbd/51712/error'), 'frontend error node')).to.equal('bad-response: id 99 was never issued');
    await until(() => r2.fe.state === S.Closed && b2.be.state === S.Closed, () => describeRig(r2, b2.be));
    expect(b2.log.disconnects).to.equal(1);
    expect(r2.feLog.teardowns).to.deep.equal(['close']);
    // A stopped device's fatal() resolves at once and writes nothing.
    await b2.be.stop();
    await b2.be.fatal('late', 'after stop');
    expect(b2.be.stats.fatals).to.equal(0);
  });
});

const wr0 = { ok: true as const, value: undefined };
