/**
 * The real network drivers as a stress plug-in, joined the way the block
 * drivers are (blk-plugin.ts): dom0/netback with a packet pool, the net loop
 * and bridge xenbr0 on dom0's backend bus, and domU/netfront on each
 * well-behaved guest's frontend bus, probed through XenBus like any vif.
 *
 * The workload is a verified UDP exchange between the guests over the
 * bridge: every frame names (source domid, sequence, destination domid) and
 * carries a payload pattern derived from them, with real IPv4/UDP checksums.
 * A receiver checks the headers, the checksums and the pattern, and that it
 * never sees the same (source, sequence) twice; a frame that never arrives
 * is counted lost (UDP: a backend restart or a destroyed peer loses frames).
 * A frame that arrives twice or differs from what was sent is a
 * verifyFailure, which the durability checker reports.
 *
 * What the plug-in gives the checkers: the workload's books (progress,
 * verification) and the grant mappings netback holds (each connected
 * queue's two rings plus TX requests it has mapped and not unmapped), so the
 * grant-leak checker can hold dom0's maptrack to account.
 *
 * Deterministic mode only for now: the net loop is scheduled as a soft unit
 * of dom0's vCPU and netback's timers count scheduler steps.
 */
import { PacketPool } from '../dom0/net/packet.ts';
import { NetLoop, type NetTimers } from '../dom0/net/loop.ts';
import { BridgeSet } from '../dom0/net/vif.ts';
import { Netback, type NetbackFrontendInfo } from '../dom0/netback/xenbus.ts';
import type { NetbackAdvert, Netfront } from '../domU/netfront/netfront.ts';
import { NETFRONT_XENBUS_OPTIONS, NetfrontDriver } from '../domU/netfront/xenbus.ts';
import { ETH, FrameInfo, UDP_PAYLOAD_OFFSET, get32, parseFrameInto, put32, writeUdpFrame, type FlowAddr } from '../domU/workloads/frames.ts';
import { NETTXF_more_data } from '../shared/abi/netif.ts';
import { SRING } from '../shared/abi/ring.ts';
import { FrontRing } from '../shared/ring/front-ring.ts';
import { NETIF_RX_RING, NETIF_TX_RING, type NetifTxRequest, type NetifTxResponse } from '../shared/ring/codec.ts';
import type { MemRegion } from '../shared/memory/region.ts';
import { ok } from '../shared/result.ts';
import { asDomId, asGref, type Gref, type Pfn, type Port } from '../shared/types.ts';
import { createBackendBus, type XenbusBackend } from '../shared/xenbus/backend.ts';
import type { XenbusBus } from '../shared/xenbus/device.ts';
import { createFrontendBus, type XenbusFrontend } from '../shared/xenbus/frontend.ts';
import type { XsHandle } from '../shared/xenbus/xs-handle.ts';
import type { StressHost } from './host.ts';
import type { StressPlatform } from './platform.ts';
import { newWorkloadBooks, type WorkloadBooks } from './view.ts';

export const VIF_TYPE = 'vif';
export const VIF_DEVID = 0;
const BRIDGE = 'xenbr0';
/** UDP port of the stress exchange. */
const STRESS_PORT = 5201;
/** Payload: [0,4) source domid, [4,8) sequence, [8,12) destination domid, then the pattern. */
const PAYLOAD = { SRC: 0, SEQ: 4, DST: 8, PATTERN: 12 } as const;
const MIN_PAYLOAD = 16;
const MAX_PAYLOAD = 1400;

/** [vifMac domid] is 00:16:3e:5e:<hi>:<lo>, one per guest. */
export function vifMac(domid: number): Uint8Array {
  return Uint8Array.of(0x00, 0x16, 0x3e, 0x5e, (domid >>> 8) & 0xff, domid & 0xff);
}
function macText(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
/** 10.5.<hi>.<lo>. */
function vifIp(domid: number): number {
  return ((10 << 24) | (5 << 16) | (domid & 0xffff)) >>> 0;
}

/** The toolstack's keys for a guest's vif (libxl's network add). */
export function vifDeviceSpec(domid: number): { type: string; frontDom: ReturnType<typeof asDomId>; backDom: ReturnType<typeof asDomId>; devid: number; backendKeys: Record<string, string>; frontendKeys: Record<string, string> } {
  const mac = macText(vifMac(domid));
  return {
    type: VIF_TYPE, frontDom: asDomId(domid), backDom: asDomId(0), devid: VIF_DEVID,
    backendKeys: { mac, bridge: BRIDGE, type: 'vif', script: '/etc/xen/scripts/vif-bridge', mtu: '1500' },
    frontendKeys: { mac, mtu: '1500' },
  };
}

/** Payload byte i of frame (src, seq). */
function patternByte(src: number, seq: number, i: number): number {
  return (src * 131 + seq * 31 + i * 7 + (i >>> 8)) & 0xff;
}

/**
 * [stepTimers host] is NetTimers on the host's clock (scheduler steps stand
 * for milliseconds); a timer is a daemon task of the host's vCPU.
 */
export function stepTimers(host: StressHost): NetTimers {
  return {
    now: () => host.now(),
    after(ms, fn) {
      let cancelled = false;
      host.spawn('net-timer', async (p) => {
        await p.sleep(Math.max(1, Math.ceil(ms)), 'net-timer');
        if (!cancelled) fn();
      }, { daemon: true });
      return () => { cancelled = true; };
    },
  };
}

/**
 * Who is on the stress network: the frames sent to each guest (by source)
 * and those it received, so the end of a run can say how many were lost and
 * catch a receiver that saw more than was sent.
 */
export class NetPeers {
  /** Well-behaved guests whose vif is up, by domid. */
  readonly live = new Map<number, NetStressFrontend>();
  /** dom0's netback (an oracle for the hostile-cutoff check; deterministic mode only). */
  backend: NetStressBackend | undefined;
  /** dom0's books of hostile vifs netback had to cut off (the progress checker holds them). */
  cutoff: WorkloadBooks | undefined;
  /** [attachDom0 backend dom0Books] wires the oracle and the cut-off books. */
  attachDom0(backend: NetStressBackend | undefined, dom0Workloads: WorkloadBooks[]): void {
    this.backend = backend;
    this.cutoff = newWorkloadBooks('vif-hostile-cutoff', 0, false);
    dom0Workloads.push(this.cutoff);
  }
  /** [gone domid] the guest was destroyed: nobody sends to it any more. */
  gone(domid: number): void { this.live.delete(domid); }
  /** sent.get(`${src}>${dst}`): frames accepted by src's netfront for dst. */
  readonly sent = new Map<string, number>();
  readonly received = new Map<string, number>();
  /** Frames sent, delivered (verified), and lost over the whole run. */
  totals(): { sent: number; delivered: number; lost: number } {
    let sent = 0;
    let delivered = 0;
    for (const s of this.sent.values()) sent += s;
    for (const r of this.received.values()) delivered += r;
    return { sent, delivered, lost: this.lost };
  }
  get lost(): number {
    let n = 0;
    for (const [k, s] of this.sent) n += Math.max(0, s - (this.received.get(k) ?? 0));
    return n;
  }
}

export type NetMutant = 'deliver-twice';

export interface NetBackendOptions {
  /** How the net loop schedules its deferred work (deterministic: a soft unit of dom0's vCPU). */
  readonly schedule?: (fn: () => void) => void;
  readonly timers?: NetTimers;
  readonly mutant?: NetMutant;
  readonly poolPages?: number;
}

/** dom0's side: netback on /local/domain/0/backend/vif, a packet pool, the net loop and xenbr0. */
export class NetStressBackend {
  private bus: XenbusBus<XenbusBackend<NetbackFrontendInfo>> | undefined;
  private netback: Netback | undefined;
  private readonly pool: PacketPool;
  private readonly loop: NetLoop;
  private readonly bridges: BridgeSet;
  restarts = 0;

  constructor(private readonly host: StressHost, private readonly xs: XsHandle, private readonly opts: NetBackendOptions = {}) {
    this.pool = new PacketPool(host.k, { maxPages: opts.poolPages ?? 128 });
    this.loop = new NetLoop(opts.schedule);
    this.bridges = new BridgeSet(this.pool);
    this.bridges.ensure(BRIDGE);
  }

  async start(): Promise<boolean> {
    const log = (l: string): void => this.host.note(l);
    const nb = new Netback(this.host.k, {
      pool: this.pool, loop: this.loop, bridges: (n) => this.bridges.get(n), log,
      ...(this.opts.timers === undefined ? {} : { timers: this.opts.timers }),
    });
    this.netback = nb;
    if (this.opts.mutant === 'deliver-twice') {
      // MUTANT: every vif netback creates transmits each packet from the bridge twice (two RX slots, two frames to the guest).
      const set = nb.vifs.set.bind(nb.vifs);
      nb.vifs.set = (key, v) => {
        const once = v.transmit.bind(v);
        v.transmit = (pkt) => { const a = once(pkt); once(pkt); return a; };
        return set(key, v);
      };
    }
    this.bus = createBackendBus(this.xs, asDomId(this.host.k.domid), VIF_TYPE, nb.driver, { log });
    return (await this.bus.start()).ok;
  }

  /** netback going away and coming back (dom0/netback/start.ts stop + start, keeping the bridge): every vif disconnects, a new netback probes again. */
  async restart(): Promise<boolean> {
    await this.stop();
    this.restarts++;
    return this.start();
  }

  /** Devices netback has connected now, as "vif/frontDom/devid". */
  connectedDevices(): string[] {
    const nb = this.netback;
    return [...this.bus?.registered.keys() ?? []].filter((rel) => {
      const [dom, devid] = rel.split('/');
      return nb?.vifs.get(`vif${dom}.${devid}`)?.connected === true;
    }).map((rel) => `${VIF_TYPE}/${rel}`);
  }

  /** Grant mappings netback holds now: two rings per connected queue, and TX requests mapped and not yet unmapped. */
  mappings(): number {
    let n = 0;
    for (const v of this.netback?.vifs.values() ?? []) n += 2 * v.numQueues + v.counters.grantMaps - v.counters.grantUnmaps;
    return n;
  }

  /** netback's vif of a guest: connected, disabled (cut off), or absent; and how many restarts so far. */
  vifState(domid: number): 'connected' | 'disabled' | 'absent' | 'other' {
    const v = this.netback?.vifs.get(`vif${domid}.${VIF_DEVID}`);
    if (v === undefined) return 'absent';
    return v.disabled ? 'disabled' : v.connected ? 'connected' : 'other';
  }

  /** Packets netback or the bridge still hold (for the end of a run: none once every vif is gone). */
  get packetsInUse(): number { return this.pool.stats.packetsInUse; }

  async stop(): Promise<void> {
    const bus = this.bus;
    this.bus = undefined;
    if (bus !== undefined) {
      await bus.stop();
      for (const b of [...bus.registered.values()]) await b.stop();
    }
    this.netback?.shutdown();
    this.netback = undefined;
  }
}

/** A guest's side: netfront on its frontend bus, and a verified UDP exchange with the other well-behaved guests. */
export class NetStressFrontend {
  private readonly driver: NetfrontDriver;
  private readonly bus: XenbusBus<XenbusFrontend<NetbackAdvert>>;
  readonly tx: WorkloadBooks;
  readonly rx: WorkloadBooks;
  private seq = 1;
  private readonly seen = new Map<number, Set<number>>();
  private readonly info = new FrameInfo();
  private hooked: Netfront | undefined;
  /** Sends refused for want of ring room (back-pressure). */
  full = 0;

  constructor(private readonly host: StressHost, xs: XsHandle, private readonly peers: NetPeers) {
    const log = (l: string): void => host.note(l);
    // netfront retries revoking quarantined grants on a real-time setTimeout, which would land between
    // scheduler steps at no replayable point: push it out of any run and reclaim from the workload instead.
    this.driver = new NetfrontDriver(host.k, { rxBuffers: 32, txBuffers: 32, reclaimMs: 2 ** 30, log });
    this.bus = createFrontendBus(xs, asDomId(host.k.domid), VIF_TYPE, this.driver.driver, { log, device: NETFRONT_XENBUS_OPTIONS });
    this.tx = newWorkloadBooks('vif-tx', host.k.domid, false);
    this.rx = newWorkloadBooks('vif-rx', host.k.domid, false);
    host.books.workloads.push(this.tx, this.rx);
  }

  get domid(): number { return this.host.k.domid; }

  async start(): Promise<boolean> {
    const r = await this.bus.start();
    if (!r.ok) return false;
    this.host.spawn('vif-io', (p) => this.loop(p));
    return true;
  }

  private device(): Netfront | undefined {
    const d = this.driver.devices.get(VIF_DEVID);
    if (d !== undefined && d !== this.hooked) {
      this.hooked = d;
      d.onReceive((f) => this.receive(f));
    }
    return d;
  }

  private async loop(p: StressPlatform): Promise<void> {
    const me = this.domid;
    await p.until(() => this.device()?.connected === true || p.stopping, 'vif:connect');
    this.peers.live.set(me, this);
    const buf = new Uint8Array(UDP_PAYLOAD_OFFSET + MAX_PAYLOAD);
    while (!p.stopping) {
      const dev = this.device();
      if (dev !== undefined && dev.quarantinedPages > 0 && (this.seq & 15) === 0) { await p.point('vif:reclaim'); dev.reclaim(); }
      if (dev === undefined || !dev.connected) {
        if (dev !== undefined && dev.quarantinedPages > 0) { await p.point('vif:reclaim'); dev.reclaim(); }
        await p.sleep(50, 'vif:disconnected');
        continue;
      }
      const others = [...this.peers.live.keys()].filter((d) => d !== me).sort((a, b) => a - b);
      if (others.length === 0) { await p.sleep(50, 'vif:alone'); continue; }
      const dst = p.rng.pick(others);
      const len = MIN_PAYLOAD + p.rng.int(MAX_PAYLOAD - MIN_PAYLOAD);
      const seq = this.seq;
      const flow: FlowAddr = { srcMac: vifMac(me), dstMac: vifMac(dst), srcIp: vifIp(me), dstIp: vifIp(dst), srcPort: STRESS_PORT, dstPort: STRESS_PORT };
      const pl = UDP_PAYLOAD_OFFSET;
      put32(buf, pl + PAYLOAD.SRC, me);
      put32(buf, pl + PAYLOAD.SEQ, seq);
      put32(buf, pl + PAYLOAD.DST, dst);
      for (let i = PAYLOAD.PATTERN; i < len; i++) buf[pl + i] = patternByte(me, seq, i);
      const n = writeUdpFrame(buf, flow, len, seq);
      await p.point('vif:send');
      if (!dev.send(buf.subarray(0, n))) {
        // Ring full (or just disconnected): back-pressure, not an error; wait a little for room.
        this.full++;
        await p.sleep(20, 'vif:full');
        continue;
      }
      this.seq++;
      this.tx.ops++;
      this.tx.okOps++;
      const key = `${me}>${dst}`;
      this.peers.sent.set(key, (this.peers.sent.get(key) ?? 0) + 1);
      // The receiver's books count what was sent to it: one that gets none of it fails the progress checker.
      const peer = this.peers.live.get(dst);
      if (peer !== undefined) peer.rx.ops++;
      if (p.rng.chance(0.25)) await p.sleep(1 + p.rng.int(20), 'vif:pace');
    }
    this.peers.live.delete(me);
    this.tx.done = true;
    this.rx.done = true;
  }

  /** A frame from the bridge: check it is one of ours, whole, addressed to us, and new. */
  private receive(f: Uint8Array): void {
    const me = this.domid;
    const w = this.rx;
    const e = parseFrameInto(f, this.info);
    if (e !== null) { this.fail(`d${me} vif received a ${f.length}-byte frame that does not parse: ${e}`); return; }
    if (this.info.dstPort !== STRESS_PORT || this.info.payloadLength < MIN_PAYLOAD) return;
    // Unknown unicast is flooded by the bridge: a frame for another guest is not ours to count.
    let mine = true;
    const mac = vifMac(me);
    for (let i = 0; i < 6; i++) if (f[ETH.DST + i] !== mac[i]) mine = false;
    if (!mine) return;
    const pl = this.info.payloadOffset;
    const src = get32(f, pl + PAYLOAD.SRC);
    const seq = get32(f, pl + PAYLOAD.SEQ);
    const dst = get32(f, pl + PAYLOAD.DST);
    if (dst !== me) { this.fail(`d${me} vif received frame ${src}#${seq} naming d${dst} as its destination`); return; }
    for (let i = PAYLOAD.PATTERN; i < this.info.payloadLength; i++) {
      if (f[pl + i] !== patternByte(src, seq, i)) { this.fail(`d${me} vif received frame ${src}#${seq} with payload byte ${i} changed`); return; }
    }
    let s = this.seen.get(src);
    if (s === undefined) { s = new Set(); this.seen.set(src, s); }
    if (s.has(seq)) { this.fail(`d${me} vif received frame d${src}#${seq} twice`); return; }
    s.add(seq);
    w.okOps++;
    const key = `${src}>${me}`;
    const got = (this.peers.received.get(key) ?? 0) + 1;
    this.peers.received.set(key, got);
    if (got > (this.peers.sent.get(key) ?? 0)) this.fail(`d${me} vif received ${got} frames from d${src}, more than the ${this.peers.sent.get(key) ?? 0} it sent`);
  }

  private fail(msg: string): void {
    this.rx.verifyFailures.push(msg);
    this.host.books.durability.push(msg);
  }

  async stop(): Promise<void> {
    this.peers.live.delete(this.domid);
    await this.bus.stop();
  }
}

export type NetHostileAct = 'req-prod-leap' | 'long-chain';

/**
 * A hostile guest's vif: the XenBus handshake done as netfront does it (so
 * netback maps its rings and binds its port), then one malformed TX ring:
 * a req_prod that leaps a whole ring ahead, or a packet chained over more
 * than 20 slots (sometimes after trying to revoke its TX ring's grant while
 * netback has it mapped, which must be refused). netback must cut the vif off (disable it, error node,
 * Closing) while the other guests' traffic keeps flowing; the cut-off books
 * on dom0 (NetPeers.cutoff) count each act and whether netback did.
 */
export class NetHostileFrontend {
  private tx: FrontRing<NetifTxRequest, NetifTxResponse> | undefined;
  private txRegion: MemRegion | undefined;
  private port = -1 as Port;
  private readonly grants: { pfn: Pfn; ref: Gref }[] = [];
  private connected = false;
  private readonly bus: XenbusBus<XenbusFrontend<Record<string, never>>>;

  constructor(private readonly host: StressHost, xs: XsHandle, private readonly peers: NetPeers) {
    const k = host.k;
    const back = asDomId(0);
    this.bus = createFrontendBus(xs, asDomId(k.domid), VIF_TYPE, () => ({
      readBackend: () => ok({}),
      setup: () => {
        const page = (ro: boolean): { pfn: Pfn; ref: Gref } | undefined => {
          const pfn = k.ram.tryAlloc();
          if (pfn === undefined) return undefined;
          k.mem.fill(k.gpa(pfn), k.pageSize, 0);
          const ref = k.gnttab.grantForeignAccess(back, pfn, ro);
          if (ref === undefined) { k.ram.release(pfn); return undefined; }
          const g = { pfn, ref };
          this.grants.push(g);
          return g;
        };
        const t = page(false);
        const r = page(false);
        const d = page(true);
        if (t === undefined || r === undefined || d === undefined) return ok({});
        this.txRegion = k.mem.region([t.pfn]);
        this.tx = FrontRing.init(this.txRegion, NETIF_TX_RING);
        FrontRing.init(k.mem.region([r.pfn]), NETIF_RX_RING);
        this.port = k.evtchn.allocUnbound(back);
        return ok({
          'tx-ring-ref': String(t.ref), 'rx-ring-ref': String(r.ref), 'event-channel': String(this.port),
          'request-rx-copy': '1', 'feature-rx-notify': '1', 'feature-sg': '1',
        });
      },
      connected: () => { this.connected = true; return ok(undefined); },
      teardown: () => {
        this.connected = false;
        // netback has let go (it disconnected first): take the pages back where it really did.
        for (let i = this.grants.length - 1; i >= 0; i--) {
          const g = this.grants[i] as { pfn: Pfn; ref: Gref };
          if (k.gnttab.endForeignAccess(g.ref)) { k.ram.release(g.pfn); this.grants.splice(i, 1); }
        }
        if (this.port >= 0) { try { k.evtchn.close(this.port); } catch { /* already gone with the backend's close */ } }
        this.port = -1 as Port;
      },
    }), { log: (l) => host.note(l), device: NETFRONT_XENBUS_OPTIONS });
  }

  async start(): Promise<boolean> {
    const r = await this.bus.start();
    if (!r.ok) return false;
    this.host.spawn('vif-hostile', (p) => this.loop(p));
    return true;
  }

  private async loop(p: StressPlatform): Promise<void> {
    const me = this.host.k.domid;
    const be = this.peers.backend;
    const books = this.peers.cutoff;
    if (be === undefined || books === undefined) return;
    const up = await p.until(() => p.stopping || (this.connected && be.vifState(me) === 'connected'), 'vif-hostile:connect', 4000);
    if (!up || p.stopping) return;
    await p.sleep(100 + p.rng.int(1500), 'vif-hostile:wait');
    const tx = this.tx;
    const region = this.txRegion;
    const data = this.grants[2];
    if (p.stopping || tx === undefined || region === undefined || data === undefined || be.vifState(me) !== 'connected') return;
    const ring = this.grants[0];
    if (ring !== undefined && p.rng.chance(0.4)) {
      // Revoke the TX ring's grant while netback has it mapped: the entry is in use, so the revoke must fail.
      await p.point('vif-hostile:revoke-ring');
      const revoked = this.host.k.gnttab.endForeignAccessRef(ring.ref);
      books.ops++;
      this.host.note(`d${me} hostile vif: revoke TX ring grant ${ring.ref} in use: ${revoked ? 'revoked' : 'refused'}`);
      if (revoked && be.vifState(me) === 'connected') books.verifyFailures.push(`d${me} revoked its TX ring grant ${ring.ref} while netback had it mapped`);
      else books.okOps++;
      if (revoked) return;
    }
    const act: NetHostileAct = p.rng.chance(0.5) ? 'req-prod-leap' : 'long-chain';
    const restarts = be.restarts;
    await p.point(`vif-hostile:${act}`);
    if (act === 'req-prod-leap') {
      // XSA-39: a producer index a whole ring (and more) ahead of what netback consumed.
      region.atomicStoreU32(SRING.req_prod, (tx.reqProdPvt + 100_000) >>> 0);
    } else {
      // 22 slots for one packet: more than netback's XEN_NETBK_LEGACY_SLOTS_MAX.
      for (let i = 0; i < 22; i++) {
        tx.putRequest({ gref: asGref(data.ref), offset: 0, flags: i < 21 ? NETTXF_more_data : 0, id: i, size: i === 0 ? 22 * 60 : 60 });
      }
      tx.pushRequests();
    }
    this.host.k.evtchn.notify(this.port);
    books.ops++;
    this.host.note(`d${me} hostile vif: ${act}`);
    const cut = await p.until(() => be.vifState(me) !== 'connected' || be.restarts !== restarts, 'vif-hostile:cutoff', 3000);
    if (be.restarts !== restarts) return;
    if (cut) books.okOps++;
    else books.stuck = `netback kept d${me}'s vif connected 3000 steps after a ${act}`;
  }

  async stop(): Promise<void> { await this.bus.stop(); }
}
