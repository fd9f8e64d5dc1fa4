/**
 * A one-thread world for xenbus tests: a real XenStored; dom0 speaking to it
 * in-process (XsLocalClient), guests over real xenstore ring pages in a
 * MachineMemory (XsRingBackend + XsClient, notifications as microtasks);
 * and a minimal split-driver pair ("test device") whose hooks record what
 * they were asked to do.
 */
import { asDomId, type DomId, type MachineAddr } from '../../../shared/types.ts';
import { err, ok } from '../../../shared/result.ts';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { machineRegion } from '../../../shared/memory/region.ts';
import { XenStored, type XenStoredOptions } from '../../../dom0/xenstore/xenstored.ts';
import { XsRingBackend } from '../../../dom0/xenstore/ring-transport.ts';
import { XsLocalClient } from '../../../dom0/xenstore/local-client.ts';
import { XsClient } from '../../../domU/kernel/xs-client.ts';
import { domainDirs } from '../../../toolstack/devices.ts';
import type { BackendHooks } from '../../../shared/xenbus/backend.ts';
import type { FrontendHooks, HandshakeInfo, TeardownReason } from '../../../shared/xenbus/frontend.ts';
import type { XenbusContext } from '../../../shared/xenbus/device.ts';
import { describeKeyError, readFeature, readUint, readUintOr } from '../../../shared/xenbus/keys.ts';

const mem = MachineMemory.create({ memBytes: 4 << 20, pageSize: 4096 });
let nextFrame = 16;

export interface Guest {
  readonly domid: DomId;
  readonly xs: XsClient;
  readonly ring: XsRingBackend;
}

export interface World {
  readonly d: XenStored;
  readonly dom0: XsLocalClient;
  guest(id: number): Promise<Guest>;
}

/** [world opts] is a daemon with dom0's home made and a way to add ring-connected guests. */
export async function world(opts: XenStoredOptions = {}, d = new XenStored(opts)): Promise<World> {
  const dom0 = new XsLocalClient(d, 0);
  must(await domainDirs(dom0, asDomId(0), 'Domain-0'), 'domainDirs 0');
  return {
    d,
    dom0,
    async guest(id: number): Promise<Guest> {
      const domid = asDomId(id);
      must(await domainDirs(dom0, domid, `guest${id}`), `domainDirs ${id}`);
      d.introduceDomain(domid);
      if (nextFrame >= 1000) nextFrame = 16;
      const page = machineRegion(mem, (nextFrame++ * 4096) as MachineAddr, 1);
      page.fill(0, 4096, 0);
      const h: { ring?: XsRingBackend; xs?: XsClient } = {};
      h.ring = new XsRingBackend(d, domid, page, () => queueMicrotask(() => h.xs?.poll()));
      h.xs = new XsClient(page, () => queueMicrotask(() => h.ring?.poll()));
      return { domid, xs: h.xs, ring: h.ring };
    },
  };
}

export function must<T, E>(r: { ok: true; value: T } | { ok: false; error: E }, what: string): T {
  if (!r.ok) throw new Error(`${what} failed: ${JSON.stringify(r.error)}`);
  return r.value;
}

/** [until cond what ms] lets the event loop run until cond holds; fails with `what()` after ms. */
export async function until(cond: () => boolean, what: () => string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what()}`);
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** Lets every queued microtask and immediate run a few times. */
export async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

// ---- the "test device": a minimal split driver ----

export interface FrontFeatures { readonly persistent: boolean; readonly maxOrder: number }
export interface FrontKeys { readonly ringRef: number; readonly port: number }

export interface BackendLog {
  probes: number;
  connects: FrontKeys[];
  disconnects: number;
  removes: number;
}

/** Backend hooks: publishes two features, expects ring-ref and event-channel, publishes sectors. */
export function testBackendHooks(log: BackendLog, sectors: () => number = () => 2048, failConnect = () => false): BackendHooks<FrontKeys> {
  return {
    probe: () => {
      log.probes++;
      return ok({ 'feature-persistent': '1', 'max-ring-page-order': '2' });
    },
    readFrontend: async (ctx: XenbusContext) => {
      const ringRef = await readUint(ctx.xs, ctx.frontPath, 'ring-ref');
      if (!ringRef.ok) return err({ kind: 'bad-ring-ref', message: describeKeyError(ringRef.error) });
      const port = await readUint(ctx.xs, ctx.frontPath, 'event-channel', 4095);
      if (!port.ok) return err({ kind: 'bad-event-channel', message: describeKeyError(port.error) });
      return ok({ ringRef: ringRef.value, port: port.value });
    },
    connect: (_ctx, f) => {
      if (failConnect()) return err({ kind: 'map-failed', message: `cannot map ring-ref ${f.ringRef}` });
      log.connects.push(f);
      return ok({ sectors: String(sectors()), 'sector-size': '512' });
    },
    disconnect: () => { log.disconnects++; },
    remove: () => { log.removes++; },
  };
}

export interface FrontendLog {
  features: FrontFeatures[];
  setups: { keys: FrontKeys; resumed: boolean }[];
  connected: { sectors: number; resumed: boolean }[];
  refreshes: number[];
  teardowns: TeardownReason[];
}

export function newFrontendLog(): FrontendLog {
  return { features: [], setups: [], connected: [], refreshes: [], teardowns: [] };
}
export function newBackendLog(): BackendLog {
  return { probes: 0, connects: [], disconnects: 0, removes: 0 };
}

/** Frontend hooks: reads the features, "grants" a ring (a fresh ref and port each time), reads sectors. */
export function testFrontendHooks(log: FrontendLog): FrontendHooks<FrontFeatures> {
  let serial = 0;
  return {
    readBackend: async (ctx) => {
      const persistent = await readFeature(ctx.xs, ctx.backPath, 'feature-persistent');
      const maxOrder = await readUintOr(ctx.xs, ctx.backPath, 'max-ring-page-order', 0, 4);
      if (!persistent.ok) return err({ kind: 'bad-feature', message: describeKeyError(persistent.error) });
      if (!maxOrder.ok) return err({ kind: 'bad-feature', message: describeKeyError(maxOrder.error) });
      const f = { persistent: persistent.value, maxOrder: maxOrder.value };
      log.features.push(f);
      return ok(f);
    },
    setup: (_ctx, _f, info: HandshakeInfo) => {
      serial++;
      const keys = { ringRef: 8 + serial, port: 10 + serial };
      log.setups.push({ keys, resumed: info.resumed });
      return ok({ 'ring-ref': String(keys.ringRef), 'event-channel': String(keys.port), protocol: 'x86_64-abi' });
    },
    connected: async (ctx, info) => {
      const s = await readUint(ctx.xs, ctx.backPath, 'sectors', Number.MAX_SAFE_INTEGER);
      if (!s.ok) return err({ kind: 'bad-sectors', message: describeKeyError(s.error) });
      log.connected.push({ sectors: s.value, resumed: info.resumed });
      return ok(undefined);
    },
    refresh: async (ctx) => {
      const s = await readUint(ctx.xs, ctx.backPath, 'sectors', Number.MAX_SAFE_INTEGER);
      if (s.ok) log.refreshes.push(s.value);
    },
    teardown: (_ctx, reason) => { log.teardowns.push(reason); },
  };
}
