/**
 * netfront's control path (Linux xen-netfront.c netback_changed,
 * talk_to_netback, xennet_connect): the XenBus frontend hooks for `vif`
 * devices. Wire it with
 *
 *     const nf = new NetfrontDriver(kernel, opts);
 *     createFrontendBus(xs, domid, 'vif', nf.driver, { device: NETFRONT_XENBUS_OPTIONS })
 *
 * netfront writes its keys and goes straight to Connected (no Initialised;
 * NETFRONT_XENBUS_OPTIONS says so), and then waits for the backend's
 * Connected to turn the carrier on.
 *
 *  readBackend: the backend's features, hostile, checked. A backend without
 *               feature-rx-copy is refused, as Linux refuses it ("backend does
 *               not support copying receive path"). Also our own `mac`
 *               (required) and `trusted` (default 1), which the toolstack
 *               wrote in our directory, and the backend's `mtu`.
 *  setup:       rings, buffers, event channels; keys for every queue (flat
 *               for one, queue-N/ for more) and the feature requests.
 *  connected:   carrier on, kick the backend.
 *  teardown:    let go of everything (a resume reconnects the same device).
 */
import { err, ok, type Result } from '../../shared/result.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { FrontendDriver, FrontendHooks, XenbusFrontendOptions } from '../../shared/xenbus/frontend.ts';
import type { XenbusContext, XenbusHookError } from '../../shared/xenbus/device.ts';
import { describeKeyError, readFeature, readKey, readUintOr, type XenbusKeyError } from '../../shared/xenbus/keys.ts';
import { Netfront, type NetbackAdvert, type NetfrontOptions } from './netfront.ts';

/** The XenBus device options netfront needs: keys and Connected in one step (Linux skips Initialised). */
export const NETFRONT_XENBUS_OPTIONS: Omit<XenbusFrontendOptions, 'onUnregister'> = { skipInitialised: true };

function keyErr(kind: string, e: XenbusKeyError): Result<never, XenbusHookError> {
  return err({ kind, message: describeKeyError(e) });
}

export class NetfrontDriver {
  /** Devices by devid; a device outlives reconnects. */
  readonly devices = new Map<number, Netfront>();
  private readonly waiters = new Map<number, ((d: Netfront) => void)[]>();

  constructor(readonly k: DomainKernel, readonly opts: NetfrontOptions = {}) {}

  /** The driver to hand to createFrontendBus(xs, domid, 'vif', driver, { device: NETFRONT_XENBUS_OPTIONS }). */
  readonly driver: FrontendDriver<NetbackAdvert> = (fid) => this.hooks(fid.devid);

  /** [device devid] resolves with the device once the bus has probed it. */
  device(devid: number): Promise<Netfront> {
    const d = this.devices.get(devid);
    if (d !== undefined) return Promise.resolve(d);
    return new Promise((resolve) => {
      const list = this.waiters.get(devid) ?? [];
      list.push(resolve);
      this.waiters.set(devid, list);
    });
  }

  private hooks(devid: number): FrontendHooks<NetbackAdvert> {
    let dev = this.devices.get(devid);
    if (dev === undefined) {
      dev = new Netfront(this.k, devid, this.opts);
      this.devices.set(devid, dev);
      for (const f of this.waiters.get(devid) ?? []) f(dev);
      this.waiters.delete(devid);
    }
    const d = dev;
    return {
      readBackend: (ctx) => this.readBackend(ctx),
      setup: (ctx, adv) => {
        const r = d.setup(ctx.id.backDom, adv);
        return r.ok ? ok(r.value) : err({ kind: 'setup', message: r.error });
      },
      connected: () => {
        d.connectedToBackend();
        return ok(undefined);
      },
      teardown: (_ctx, reason) => {
        d.teardown();
        if (reason === 'remove' && this.devices.get(devid) === d) this.devices.delete(devid);
      },
    };
  }

  private async readBackend(ctx: XenbusContext): Promise<Result<NetbackAdvert, XenbusHookError>> {
    const be = ctx.backPath;
    const xs = ctx.xs;
    const rxCopy = await readFeature(xs, be, 'feature-rx-copy');
    if (!rxCopy.ok) return keyErr('bad-feature', rxCopy.error);
    if (!rxCopy.value) return err({ kind: 'no-rx-copy', message: 'backend does not support copying receive path' });
    const sg = await readFeature(xs, be, 'feature-sg');
    const gso = await readFeature(xs, be, 'feature-gso-tcpv4');
    const split = await readFeature(xs, be, 'feature-split-event-channels');
    for (const r of [sg, gso, split]) if (!r.ok) return keyErr('bad-feature', r.error);
    const mq = await readUintOr(xs, be, 'multi-queue-max-queues', 1, 0xffff);
    if (!mq.ok) return keyErr('bad-max-queues', mq.error);
    const mtu = await readUintOr(xs, be, 'mtu', 1500, 65535);
    if (!mtu.ok) return keyErr('bad-mtu', mtu.error);
    if (mtu.value < 68) return err({ kind: 'bad-mtu', message: `${be}/mtu = ${mtu.value} is below 68` });
    const mac = await readKey(xs, ctx.frontPath, 'mac');
    if (!mac.ok) return keyErr('bad-mac', mac.error);
    if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac.value) || (parseInt(mac.value.slice(0, 2), 16) & 1) !== 0) {
      return err({ kind: 'bad-mac', message: `parsing ${ctx.frontPath}/mac: "${mac.value}" is not a unicast MAC` });
    }
    const trusted = await readUintOr(xs, ctx.frontPath, 'trusted', 1, 1);
    if (!trusted.ok) return keyErr('bad-trusted', trusted.error);
    return ok({
      sg: sg.ok && sg.value,
      gsoTcpv4: gso.ok && gso.value,
      split: split.ok && split.value,
      maxQueues: Math.max(1, mq.value),
      mtu: mtu.value,
      mac: mac.value.toLowerCase(),
      trusted: trusted.value === 1,
    });
  }
}
