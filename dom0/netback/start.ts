/**
 * Starting dom0's network in a domain's worker: a packet pool, the net loop,
 * the bridges (xenbr0 by default, as `brctl addbr`), netback, and the XenBus
 * backend bus that probes `vif` devices as the toolstack creates them.
 *
 *     const net = await startNetback(kernel, xs, { bridges: ['xenbr0'] });
 *     // … later: net.netback.netStats(domid) for xentop, net.bridges.get('xenbr0') for captures
 *     await net.stop();
 */
import { err, ok, type Result } from '../../shared/result.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { XsClientError, XsHandle } from '../../shared/xenbus/xs-handle.ts';
import { createBackendBus, type XenbusBackend } from '../../shared/xenbus/backend.ts';
import type { XenbusBus } from '../../shared/xenbus/device.ts';
import { asDomId } from '../../shared/types.ts';
import { PacketPool } from '../net/packet.ts';
import { NetLoop } from '../net/loop.ts';
import { BridgeSet } from '../net/vif.ts';
import { Netback, type NetbackFrontendInfo, type NetbackOptions } from './xenbus.ts';

export interface StartNetbackOptions {
  /** Bridges to create (default ['xenbr0']). */
  readonly bridges?: readonly string[];
  /** Most dom0 pages for packet buffers (default 4096). */
  readonly poolPages?: number;
  /** How the net loop schedules its deferred work (default: a microtask after the event dispatch). */
  readonly schedule?: (fn: () => void) => void;
  readonly netback?: Partial<Omit<NetbackOptions, 'pool' | 'loop' | 'bridges'>>;
  readonly log?: (line: string) => void;
}

/**
 * [NetbackWorkerOptions] is what a toolstack can hand a backend domain's
 * worker (structured-clone data only: no timers, no log function).
 */
export interface NetbackWorkerOptions {
  readonly bridges?: readonly string[];
  readonly poolPages?: number;
  readonly netback?: Partial<Omit<NetbackOptions, 'pool' | 'loop' | 'bridges' | 'timers' | 'log'>>;
}

export interface Dom0Network {
  readonly pool: PacketPool;
  readonly loop: NetLoop;
  readonly bridges: BridgeSet;
  readonly netback: Netback;
  readonly bus: XenbusBus<XenbusBackend<NetbackFrontendInfo>>;
  /** Stops every backend device and the bus, and releases every interface (the domain is going away). */
  stop(): Promise<void>;
}

/** [startNetback k xs opts] starts netback in the domain whose kernel is k (dom0 or a driver domain). */
export async function startNetback(k: DomainKernel, xs: XsHandle, opts: StartNetbackOptions = {}): Promise<Result<Dom0Network, XsClientError>> {
  const pool = new PacketPool(k, { maxPages: opts.poolPages ?? 4096 });
  const loop = new NetLoop(opts.schedule);
  const bridges = new BridgeSet(pool);
  for (const b of opts.bridges ?? ['xenbr0']) bridges.ensure(b);
  const log = opts.log ?? opts.netback?.log;
  const netback = new Netback(k, { ...opts.netback, pool, loop, bridges: (n) => bridges.get(n), ...(log ? { log } : {}) });
  const bus = createBackendBus(xs, asDomId(k.domid), 'vif', netback.driver, log ? { log } : {});
  const s = await bus.start();
  if (!s.ok) return err(s.error);
  return ok({
    pool, loop, bridges, netback, bus,
    async stop() {
      for (const d of [...bus.registered.values()]) await d.stop();
      await bus.stop();
      netback.shutdown();
      pool.trim();
    },
  });
}
