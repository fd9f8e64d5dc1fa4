/**
 * Starting netfront in a guest: the driver and the XenBus frontend bus that
 * probes the guest's `vif` devices (device/vif/<devid>) as the toolstack
 * creates them.
 *
 *     const net = await startNetfront(kernel, xs, { maxQueues: 2 });
 *     const eth0 = await net.driver.device(0);  // a NetDevice
 *     await eth0.whenConnected();
 */
import { err, ok, type Result } from '../../shared/result.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { XsClientError, XsHandle } from '../../shared/xenbus/xs-handle.ts';
import { createFrontendBus, type XenbusFrontend } from '../../shared/xenbus/frontend.ts';
import type { XenbusBus } from '../../shared/xenbus/device.ts';
import { asDomId } from '../../shared/types.ts';
import type { NetbackAdvert, NetfrontOptions } from './netfront.ts';
import { NETFRONT_XENBUS_OPTIONS, NetfrontDriver } from './xenbus.ts';

export interface GuestNetwork {
  readonly driver: NetfrontDriver;
  readonly bus: XenbusBus<XenbusFrontend<NetbackAdvert>>;
  /** Tears every device down and stops the bus (the guest is shutting down). */
  stop(): Promise<void>;
}

/**
 * [createNetfront k xs opts] is netfront and its bus, not yet watching: a
 * guest worker whose XenStore connection only works once the toolstack has
 * introduced it starts the bus later (`bus.start()`), and can hand the
 * driver to its agent at once.
 */
export function createNetfront(k: DomainKernel, xs: XsHandle, opts: NetfrontOptions = {}): GuestNetwork {
  const driver = new NetfrontDriver(k, opts);
  const log = opts.log;
  const bus = createFrontendBus(xs, asDomId(k.domid), 'vif', driver.driver, { ...(log ? { log } : {}), device: NETFRONT_XENBUS_OPTIONS });
  return {
    driver, bus,
    async stop() {
      for (const d of [...bus.registered.values()]) await d.stop();
      await bus.stop();
    },
  };
}

/** [startNetfront k xs opts] starts netfront in the guest whose kernel is k. */
export async function startNetfront(k: DomainKernel, xs: XsHandle, opts: NetfrontOptions = {}): Promise<Result<GuestNetwork, XsClientError>> {
  const net = createNetfront(k, xs, opts);
  const s = await net.bus.start();
  if (!s.ok) return err(s.error);
  return ok(net);
}
