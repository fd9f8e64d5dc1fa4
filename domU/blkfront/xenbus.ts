/**
 * blkfront's control path (Linux xen-blkfront.c talk_to_blkback,
 * blkback_changed, blkfront_connect, blkfront_gather_backend_features,
 * blkfront_resume): the XenBus frontend hooks for
 * `createFrontendBus(xs, domid, 'vbd', blkfrontDriver(k, opts).driver)`.
 *
 *  - readBackend (backend InitWait): max-ring-page-order and
 *    multi-queue-max-queues — what the rings need. Hostile values are refused.
 *  - setup: the rings and event channels (Blkfront.setupRings); keys written
 *    with Initialised in one transaction: ring-ref / ring-ref%u
 *    (+ ring-page-order), event-channel, flat for one queue or under
 *    queue-%u/ with multi-queue-num-queues, protocol, feature-persistent.
 *  - connected (backend Connected): sectors, info, sector-size,
 *    physical-sector-size, feature-flush-cache, feature-barrier,
 *    feature-discard (+ discard-secure), feature-persistent,
 *    feature-max-indirect-segments, and the toolstack's `mode` — then I/O
 *    starts, and after a resume everything held is re-issued.
 *  - refresh (backend wrote Connected again): the new `sectors` (resize).
 *  - teardown: 'resume' keeps what is in flight; 'close'/'remove' fail it.
 */
import { VDISK_READONLY } from '../../shared/abi/blkif.ts';
import { XENBUS_MAX_RING_GRANT_ORDER } from '../../shared/abi/ring.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import type { XenbusContext, XenbusHookError, XenbusKeys } from '../../shared/xenbus/device.ts';
import type { FrontendDeviceId, FrontendDriver, FrontendHooks } from '../../shared/xenbus/frontend.ts';
import { describeKeyError, readFeature, readKey, readUint, readUintOr, type XenbusKeyError } from '../../shared/xenbus/keys.ts';
import { Blkfront, type BlkBackendFeatures, type BlkfrontOptions } from './blkfront.ts';

/** What readBackend found: the ring limits. */
export interface BlkBackendRingLimits {
  readonly maxRingPageOrder: number;
  readonly maxQueues: number;
}

export interface BlkfrontDriver {
  readonly driver: FrontendDriver<BlkBackendRingLimits>;
  /** Devices by devid (xvda = 51712). */
  readonly devices: ReadonlyMap<number, Blkfront>;
}

function keyFail(e: XenbusKeyError): Result<never, XenbusHookError> {
  return err({ kind: 'bad-backend-key', message: describeKeyError(e) });
}

/** [readFeatures ctx] is blkfront_connect's reading of the backend (hostile input, strictly parsed). */
export async function readBackendFeatures(ctx: XenbusContext): Promise<Result<BlkBackendFeatures, XenbusHookError>> {
  const be = ctx.backPath;
  const sectors = await readUint(ctx.xs, be, 'sectors', Number.MAX_SAFE_INTEGER);
  if (!sectors.ok) return keyFail(sectors.error);
  const info = await readUintOr(ctx.xs, be, 'info', 0);
  if (!info.ok) return keyFail(info.error);
  const ss = await readUintOr(ctx.xs, be, 'sector-size', 512, 1 << 16);
  if (!ss.ok) return keyFail(ss.error);
  if (ss.value < 512 || (ss.value & (ss.value - 1)) !== 0) return err({ kind: 'bad-backend-key', message: `sector-size ${ss.value} is not a power of two >= 512` });
  const pss = await readUintOr(ctx.xs, be, 'physical-sector-size', ss.value, 1 << 16);
  if (!pss.ok) return keyFail(pss.error);
  const flags: Record<string, boolean> = {};
  for (const name of ['feature-flush-cache', 'feature-barrier', 'feature-discard', 'discard-secure', 'feature-persistent']) {
    const r = await readFeature(ctx.xs, be, name);
    if (!r.ok) return keyFail(r.error);
    flags[name] = r.value;
  }
  const ind = await readUintOr(ctx.xs, be, 'feature-max-indirect-segments', 0, 8 * 512);
  if (!ind.ok) return keyFail(ind.error);
  const mode = await readKey(ctx.xs, be, 'mode');
  return ok({
    sectors: sectors.value,
    info: info.value,
    sectorSize: ss.value,
    physicalSectorSize: pss.value,
    readOnly: (info.value & VDISK_READONLY) !== 0 || (mode.ok && mode.value === 'r'),
    flushCache: flags['feature-flush-cache'] === true,
    barrier: flags['feature-barrier'] === true,
    discard: flags['feature-discard'] === true,
    discardSecure: flags['discard-secure'] === true,
    persistent: flags['feature-persistent'] === true,
    maxIndirectSegments: ind.value,
  });
}

/** [blkfrontHooks dev] are the XenBus hooks driving one Blkfront. */
export function blkfrontHooks(dev: Blkfront): FrontendHooks<BlkBackendRingLimits> {
  return {
    async readBackend(ctx): Promise<Result<BlkBackendRingLimits, XenbusHookError>> {
      const order = await readUintOr(ctx.xs, ctx.backPath, 'max-ring-page-order', 0);
      if (!order.ok) return keyFail(order.error);
      const queues = await readUintOr(ctx.xs, ctx.backPath, 'multi-queue-max-queues', 1);
      if (!queues.ok) return keyFail(queues.error);
      return ok({ maxRingPageOrder: order.value, maxQueues: Math.max(1, queues.value) });
    },
    setup(ctx, b): Result<XenbusKeys, XenbusHookError> {
      const order = Math.min(dev.maxRingPageOrder, b.maxRingPageOrder, XENBUS_MAX_RING_GRANT_ORDER);
      const nq = Math.max(1, Math.min(dev.maxQueues, b.maxQueues));
      try {
        return ok(dev.setupRings(ctx.id.backDom, { nrQueues: nq, ringPageOrder: order }));
      } catch (e) {
        // Out of RAM or grants for the rings: undo and report.
        dev.teardown('resume');
        return err({ kind: 'setup-failed', message: e instanceof Error ? e.message : String(e) });
      }
    },
    async connected(ctx): Promise<Result<void, XenbusHookError>> {
      const f = await readBackendFeatures(ctx);
      if (!f.ok) return f;
      dev.connect(f.value);
      return ok(undefined);
    },
    async refresh(ctx): Promise<void> {
      const f = await readBackendFeatures(ctx);
      if (f.ok && dev.features !== null) dev.features = { ...dev.features, sectors: f.value.sectors };
    },
    teardown(_ctx, reason): void {
      dev.teardown(reason);
    },
  };
}

/**
 * [blkfrontDriver k opts onDevice] is the vbd frontend driver of the guest
 * whose kernel is k. Each device directory gets a Blkfront; `onDevice` sees
 * it as soon as it exists (connect with `whenConnected()`).
 */
export function blkfrontDriver(k: DomainKernel, opts: BlkfrontOptions = {}, onDevice?: (dev: Blkfront) => void): BlkfrontDriver {
  const devices = new Map<number, Blkfront>();
  const driver: FrontendDriver<BlkBackendRingLimits> = (id: FrontendDeviceId) => {
    let dev = devices.get(id.devid);
    if (dev === undefined) {
      dev = new Blkfront(k, id.devid, opts);
      devices.set(id.devid, dev);
      onDevice?.(dev);
    }
    return blkfrontHooks(dev);
  };
  return { driver, devices };
}
