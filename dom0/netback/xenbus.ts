/**
 * netback's control path (Linux xen-netback xenbus.c): the XenBus backend
 * hooks for `vif` devices, to pass to createBackendBus(xs, backDom, 'vif',
 * netback.driver). Data path: queue.ts; the interface: interface.ts.
 *
 *  probe:        make vif<domid>.<devid>, plug it into the bridge named by
 *                the backend's `bridge` key (default xenbr0; the vif-bridge
 *                hotplug script's job), and publish the features below.
 *  readFrontend: the frontend's keys, hostile, checked: request-rx-copy and
 *                feature-rx-notify must be 1 (Linux refuses otherwise);
 *                multi-queue-num-queues ≤ our maximum; per queue (flat for
 *                one queue, else under queue-N/) tx-ring-ref, rx-ring-ref and
 *                event-channel, or event-channel-tx + event-channel-rx.
 *  connect:      read `rate` ("bytes,usecs"), map the rings, bind the ports.
 *  disconnect:   undo connect (every mapping released, every port closed).
 *  remove:       unplug from the bridge, forget the vif.
 */
import { err, ok, type Result } from '../../shared/result.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { BackendDriver, BackendHooks } from '../../shared/xenbus/backend.ts';
import type { XenbusContext, XenbusHookError, XenbusKeys } from '../../shared/xenbus/device.ts';
import { describeKeyError, readFeature, readKey, readUint, readUintOr, type XenbusKeyError } from '../../shared/xenbus/keys.ts';
import type { XenbusDeviceId } from '../../shared/xenbus/paths.ts';
import type { NetStats } from '../../cli/views/stats.ts';
import type { Bridge } from '../net/bridge.ts';
import { realTimers, type NetLoop, type NetTimers } from '../net/loop.ts';
import type { PacketPool } from '../net/packet.ts';
import { vifName } from '../net/vif.ts';
import { parseRateKey, type RateSpec } from './credit.ts';
import { NetbackVif, type FrontendConfig } from './interface.ts';
import { FATAL_SKB_SLOTS, type QueueKeys, type QueueLimits, type TxMode } from './queue.ts';
import { MAX_TX_SLOTS } from './tx-request.ts';

export interface NetbackFeatures {
  /** feature-sg (default true). */
  readonly sg?: boolean;
  /** feature-gso-tcpv4 (default true). */
  readonly gsoTcpv4?: boolean;
  /** feature-rx-copy (default true; a backend without it is refused by netfront). */
  readonly rxCopy?: boolean;
  /** feature-split-event-channels (default true). */
  readonly splitEventChannels?: boolean;
}

export interface NetbackOptions {
  readonly pool: PacketPool;
  readonly loop: NetLoop;
  /** The bridge a vif plugs into, by the backend's `bridge` key. */
  readonly bridges: (name: string) => Bridge | undefined;
  readonly timers?: NetTimers;
  /** 'map' (Linux: copy the header, map the rest; default), 'copy' (grant-copy everything) or 'grant' (copy the header, leave the rest in the guest's grants; common.ts TxMode). */
  readonly txMode?: TxMode;
  /** multi-queue-max-queues (default 4, Linux caps its 8 at the CPU count). */
  readonly maxQueues?: number;
  readonly features?: NetbackFeatures;
  /** Slots per packet that disable the vif (fatal_skb_slots, default 20). */
  readonly fatalSlots?: number;
  readonly rxQueuePackets?: number;
  readonly rxQueueBytes?: number;
  /** rx_drain_timeout_msecs (default 10 000). */
  readonly rxDrainMs?: number;
  readonly log?: (line: string) => void;
}

/** The frontend's keys, as readFrontend checked them. */
export interface NetbackFrontendInfo extends FrontendConfig {
  readonly numQueues: number;
}

function hookErr(kind: string, message: string): Result<never, XenbusHookError> {
  return err({ kind, message });
}
function keyErr(kind: string, e: XenbusKeyError): Result<never, XenbusHookError> {
  return hookErr(kind, describeKeyError(e));
}

export class Netback {
  /** Live interfaces by name (vif<domid>.<devid>). */
  readonly vifs = new Map<string, NetbackVif>();
  private readonly timers: NetTimers;
  private readonly limits: QueueLimits;
  private readonly log: (line: string) => void;

  constructor(readonly k: DomainKernel, readonly opts: NetbackOptions) {
    this.timers = opts.timers ?? realTimers;
    this.log = opts.log ?? (() => {});
    this.limits = {
      fatalSlots: Math.max(2, Math.min(opts.fatalSlots ?? FATAL_SKB_SLOTS, MAX_TX_SLOTS - 1)),
      rxQueuePackets: opts.rxQueuePackets ?? 1024,
      rxQueueBytes: opts.rxQueueBytes ?? 4 << 20,
      rxDrainMs: opts.rxDrainMs ?? 10_000,
    };
  }

  get maxQueues(): number { return Math.max(1, this.opts.maxQueues ?? 4); }

  /** The driver to hand to createBackendBus(xs, backDom, 'vif', netback.driver). */
  readonly driver: BackendDriver<NetbackFrontendInfo> = (id) => this.hooks(id);

  /** [stats domid] is xentop's per-vif view of a domain's interfaces, in devid order. */
  netStats(domid: number): NetStats[] {
    return [...this.vifs.values()]
      .filter((v) => v.cfg.frontDom === domid)
      .sort((a, b) => a.cfg.devid - b.cfg.devid)
      .map((v) => v.netStats());
  }

  /**
   * [shutdown] stops every interface: queues disconnected (every mapping
   * released) and ports unplugged from their bridges. For a netback that is
   * going away (its domain stopping) after its XenBus devices were stopped.
   */
  shutdown(): void {
    for (const v of this.vifs.values()) {
      v.disconnect();
      v.unplug();
    }
    this.vifs.clear();
  }

  private hooks(id: XenbusDeviceId): BackendHooks<NetbackFrontendInfo> {
    const name = vifName(id.frontDom, id.devid);
    let vif: NetbackVif | undefined;
    return {
      probe: async (ctx) => {
        const br = await readKey(ctx.xs, ctx.backPath, 'bridge');
        const bridgeName = br.ok ? br.value : 'xenbr0';
        const mtu = await readUintOr(ctx.xs, ctx.backPath, 'mtu', 1500, 65535);
        if (!mtu.ok) return keyErr('bad-mtu', mtu.error);
        const bridge = this.opts.bridges(bridgeName);
        if (bridge === undefined) return hookErr('no-bridge', `bridge ${bridgeName} does not exist (vif-bridge: brctl addif ${bridgeName} ${name} failed)`);
        const old = this.vifs.get(name);
        if (old !== undefined) {
          old.disconnect();
          old.unplug();
        }
        vif = new NetbackVif({
          name, frontDom: id.frontDom, devid: id.devid, k: this.k, pool: this.opts.pool, loop: this.opts.loop,
          timers: this.timers, txMode: this.opts.txMode ?? 'map', limits: this.limits, mtu: mtu.value, log: this.log,
        });
        try {
          vif.plug(bridge.attach(vif));
        } catch (e) {
          return hookErr('bridge', (e as Error).message);
        }
        this.vifs.set(name, vif);
        return ok(this.features());
      },
      readFrontend: (ctx) => this.readFrontend(ctx),
      connect: async (ctx, fe): Promise<Result<XenbusKeys, XenbusHookError>> => {
        if (vif === undefined) return hookErr('not-probed', `${name} has no interface`);
        const rk = await readKey(ctx.xs, ctx.backPath, 'rate');
        let rate: RateSpec | undefined;
        if (rk.ok) {
          rate = parseRateKey(rk.value);
          if (rate === undefined) return hookErr('bad-rate', `${ctx.backPath}/rate = "${rk.value}" is not "<bytes>,<usecs>"`);
        }
        const r = vif.connect(ctx, fe, rate);
        if (!r.ok) return hookErr('connect', r.error);
        this.log(`${name}: connected, ${fe.numQueues} queue(s)${fe.queues[0]?.split ? ', split event channels' : ''}, tx ${this.opts.txMode ?? 'map'}${rate ? `, rate ${rate.bytesPerInterval} B / ${rate.intervalUs} us` : ''}`);
        return ok({});
      },
      disconnect: () => { vif?.disconnect(); },
      remove: () => {
        if (vif === undefined) return;
        vif.disconnect();
        vif.unplug();
        if (this.vifs.get(name) === vif) this.vifs.delete(name);
        vif = undefined;
      },
    };
  }

  private features(): XenbusKeys {
    const f = this.opts.features ?? {};
    const b = (v: boolean | undefined): string => (v ?? true ? '1' : '0');
    return {
      'feature-sg': b(f.sg),
      'feature-gso-tcpv4': b(f.gsoTcpv4),
      'feature-gso-tcpv6': '0',
      'feature-ipv6-csum-offload': '0',
      'feature-rx-copy': b(f.rxCopy),
      'feature-rx-flip': '0',
      'feature-multicast-control': '0',
      'feature-dynamic-multicast-control': '0',
      'feature-split-event-channels': b(f.splitEventChannels),
      'multi-queue-max-queues': String(this.maxQueues),
      'feature-ctrl-ring': '0',
      // What the vif-bridge hotplug script writes once the vif is in its bridge (libxl waits for it).
      'hotplug-status': 'connected',
    };
  }

  private async readFrontend(ctx: XenbusContext): Promise<Result<NetbackFrontendInfo, XenbusHookError>> {
    const dir = ctx.frontPath;
    const xs = ctx.xs;
    const rxCopy = await readUintOr(xs, dir, 'request-rx-copy', 0, 1);
    if (!rxCopy.ok) return keyErr('bad-request-rx-copy', rxCopy.error);
    if (rxCopy.value !== 1) return hookErr('no-rx-copy', 'frontend does not request-rx-copy: page flipping is not supported');
    const notify = await readFeature(xs, dir, 'feature-rx-notify');
    if (!notify.ok) return keyErr('bad-feature', notify.error);
    if (!notify.value) return hookErr('no-rx-notify', 'feature-rx-notify is mandatory');
    const sg = await readFeature(xs, dir, 'feature-sg');
    const gso = await readFeature(xs, dir, 'feature-gso-tcpv4');
    const noCsum = await readFeature(xs, dir, 'feature-no-csum-offload');
    for (const r of [sg, gso, noCsum]) if (!r.ok) return keyErr('bad-feature', r.error);
    const nq = await readUintOr(xs, dir, 'multi-queue-num-queues', 1, 0xffff);
    if (!nq.ok) return keyErr('bad-num-queues', nq.error);
    if (nq.value < 1 || nq.value > this.maxQueues) {
      return hookErr('bad-num-queues', `guest requested ${nq.value} queues, exceeding the maximum of ${this.maxQueues}`);
    }
    const queues: QueueKeys[] = [];
    for (let i = 0; i < nq.value; i++) {
      const qdir = nq.value === 1 ? dir : `${dir}/queue-${i}`;
      const tx = await readUint(xs, qdir, 'tx-ring-ref');
      if (!tx.ok) return keyErr('bad-ring-ref', tx.error);
      const rx = await readUint(xs, qdir, 'rx-ring-ref');
      if (!rx.ok) return keyErr('bad-ring-ref', rx.error);
      const etx = await readUint(xs, qdir, 'event-channel-tx');
      if (etx.ok) {
        const erx = await readUint(xs, qdir, 'event-channel-rx');
        if (!erx.ok) return keyErr('bad-event-channel', erx.error);
        queues.push({ txRingRef: tx.value, rxRingRef: rx.value, txPort: etx.value, rxPort: erx.value, split: true });
        continue;
      }
      if (etx.error.kind !== 'missing') return keyErr('bad-event-channel', etx.error);
      const ev = await readUint(xs, qdir, 'event-channel');
      if (!ev.ok) return keyErr('bad-event-channel', ev.error);
      queues.push({ txRingRef: tx.value, rxRingRef: rx.value, txPort: ev.value, rxPort: ev.value, split: false });
    }
    const f = this.opts.features ?? {};
    return ok({
      numQueues: nq.value,
      queues,
      features: {
        sg: (sg.ok && sg.value) && (f.sg ?? true),
        gsoTcpv4: (gso.ok && gso.value) && (f.gsoTcpv4 ?? true),
        csumOffload: noCsum.ok && !noCsum.value,
      },
    });
  }
}

