/**
 * blkback's control path (Linux xen-blkback/xenbus.c): the XenBus backend
 * hooks for `createBackendBus(xs, backDom, 'vbd', blkbackDriver(…).driver)`.
 *
 *  - probe: read the toolstack's keys (params, mode, device-type), open the
 *    storage, publish what we offer: feature-flush-cache, feature-barrier,
 *    feature-discard (+ discard-granularity/alignment/secure),
 *    feature-persistent, feature-max-indirect-segments, max-ring-page-order,
 *    multi-queue-max-queues (with InitWait).
 *  - readFrontend (connect_ring): the frontend's keys are hostile input:
 *    protocol (only the native x86_64-abi), multi-queue-num-queues (1..our
 *    max), ring-page-order (0..our max), ring-ref / ring-ref%u and
 *    event-channel — flat for one queue, under queue-%u/ for several — and
 *    feature-persistent.
 *  - connect: map the rings and bind (blkback.ts), then publish sectors,
 *    info, sector-size, physical-sector-size (with Connected).
 *  - disconnect / remove: stop the rings, close the storage on remove.
 *
 * A frontend that breaks the ring protocol is disconnected as
 * xenbus_dev_fatal does it: an error node under our domain's error/ tree and
 * state Closing, written in one transaction.
 */
import { VDISK_CDROM, VDISK_READONLY, VDISK_REMOVABLE } from '../../shared/abi/blkif.ts';
import { XENBUS_MAX_RING_GRANT_ORDER } from '../../shared/abi/ring.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { asGref, type Gref } from '../../shared/types.ts';
import type { BackendDriver, BackendHooks } from '../../shared/xenbus/backend.ts';
import type { XenbusContext, XenbusHookError, XenbusKeys } from '../../shared/xenbus/device.ts';
import { describeKeyError, readFeature, readKey, readUint, readUintOr } from '../../shared/xenbus/keys.ts';
import type { XenbusDeviceId } from '../../shared/xenbus/paths.ts';
import { BlkbackDevice, type BlkbackDeviceConfig, type BlkbackMode, type RingSpec } from './blkback.ts';
import type { BlkStorage } from './storage.ts';

/** The toolstack's description of the disk (backend keys written by libxl). */
export interface BlkbackParams {
  /** `params`: the image path or target. */
  readonly params: string;
  /** `mode`: 'r' or 'w'. */
  readonly mode: 'r' | 'w';
  /** `device-type`: 'disk' or 'cdrom'. */
  readonly deviceType: 'disk' | 'cdrom';
  /** `type`: 'phy', 'file', 'qdisk', … as written (empty when absent). */
  readonly type: string;
}

export interface BlkbackDriverOptions {
  /** Opens the storage behind a device (probe). The storage's readOnly must honour params.mode. */
  readonly openStorage: (id: XenbusDeviceId, params: BlkbackParams) => Result<BlkStorage, XenbusHookError> | Promise<Result<BlkStorage, XenbusHookError>>;
  /** Data movement (default 'persistent', falling back to 'map' for frontends without feature-persistent). */
  readonly mode?: BlkbackMode;
  readonly fallback?: Exclude<BlkbackMode, 'persistent'>;
  /** feature-max-indirect-segments (default 256, Linux's MAX_INDIRECT_SEGMENTS; 0 disables indirect). */
  readonly maxIndirectSegments?: number;
  /** max-ring-page-order (default 4, XENBUS_MAX_RING_GRANT_ORDER). */
  readonly maxRingPageOrder?: number;
  /** multi-queue-max-queues (default 4). */
  readonly maxQueues?: number;
  /** Everything else of the device configuration (cache limits, clock, cost model, pushEvery). */
  readonly device?: Partial<Omit<BlkbackDeviceConfig, 'mode' | 'fallback' | 'maxIndirectSegments'>>;
  /** Called when a device is created (probe) and connected, for stats and tests. */
  readonly onDevice?: (id: XenbusDeviceId, dev: BlkbackDevice) => void;
  readonly log?: (line: string) => void;
}

/** What readFrontend found. */
export interface BlkFrontendInfo {
  readonly rings: readonly RingSpec[];
  readonly ringPageOrder: number;
  readonly persistent: boolean;
}

export interface BlkbackDriver {
  readonly driver: BackendDriver<BlkFrontendInfo>;
  /** Live devices by "<frontDom>/<devid>". */
  readonly devices: ReadonlyMap<string, BlkbackDevice>;
}

function fail(kind: string, message: string): Result<never, XenbusHookError> {
  return err({ kind, message });
}

/** [parseParams ...] reads the toolstack's keys for this device. */
async function readParams(ctx: XenbusContext): Promise<Result<BlkbackParams, XenbusHookError>> {
  const params = await readKey(ctx.xs, ctx.backPath, 'params');
  const mode = await readKey(ctx.xs, ctx.backPath, 'mode');
  const dt = await readKey(ctx.xs, ctx.backPath, 'device-type');
  const type = await readKey(ctx.xs, ctx.backPath, 'type');
  const m = mode.ok ? mode.value : 'w';
  if (m !== 'r' && m !== 'w') return fail('bad-mode', `mode = "${m.slice(0, 16)}" is neither r nor w`);
  const d = dt.ok ? dt.value : 'disk';
  if (d !== 'disk' && d !== 'cdrom') return fail('bad-device-type', `device-type = "${d.slice(0, 16)}"`);
  return ok({ params: params.ok ? params.value : '', mode: m, deviceType: d, type: type.ok ? type.value : '' });
}

/**
 * [blkbackDriver k opts] is the backend driver for dom0 (or a driver
 * domain) whose kernel is k: pass `.driver` to createBackendBus(xs, k.domid, 'vbd', …).
 */
export function blkbackDriver(k: DomainKernel, opts: BlkbackDriverOptions): BlkbackDriver {
  const devices = new Map<string, BlkbackDevice>();
  const maxOrder = opts.maxRingPageOrder ?? XENBUS_MAX_RING_GRANT_ORDER;
  const maxQueues = opts.maxQueues ?? 4;
  const maxIndirect = opts.maxIndirectSegments ?? 256;
  const mode = opts.mode ?? 'persistent';
  if (!(maxOrder >= 0 && maxOrder <= XENBUS_MAX_RING_GRANT_ORDER)) throw new RangeError(`maxRingPageOrder must be 0..${XENBUS_MAX_RING_GRANT_ORDER}`);
  if (!(maxQueues >= 1 && maxQueues <= 64)) throw new RangeError('maxQueues must be 1..64');
  if (!(maxIndirect === 0 || (maxIndirect > 11 && maxIndirect <= 8 * 512))) throw new RangeError('maxIndirectSegments must be 0 or 12..4096');

  const driver: BackendDriver<BlkFrontendInfo> = (id) => {
    const key = `${id.frontDom}/${id.devid}`;
    let dev: BlkbackDevice | undefined;
    let params: BlkbackParams | undefined;
    let ctxNow: XenbusContext | undefined;

    /**
     * xenbus_dev_fatal, from the data path: the XenBus device writes the error
     * node and switches to Closing between its handshake passes, so its own
     * idea of the state stays true (writing state here would leave it thinking
     * it is still Connected).
     */
    const onFatal = (kind: string, message: string): void => {
      opts.log?.(`blkback ${key}: ${kind}: ${message}`);
      void ctxNow?.fatal(kind, message);
    };

    const featureKeys = (d: BlkbackDevice): Record<string, string> => {
      const s = d.storage;
      const keys: Record<string, string> = {
        'feature-flush-cache': d.limits.flush ? '1' : '0',
        'feature-barrier': d.limits.barrier ? '1' : '0',
        'feature-discard': d.limits.discard ? '1' : '0',
        'feature-persistent': mode === 'persistent' ? '1' : '0',
        'max-ring-page-order': String(maxOrder),
        'multi-queue-max-queues': String(maxQueues),
        // Written even when 0: a restarted backend must not leave its predecessor's value behind.
        'feature-max-indirect-segments': String(maxIndirect),
      };
      if (d.limits.discard) {
        keys['discard-granularity'] = String(s.physicalSectorSize);
        keys['discard-alignment'] = '0';
        keys['discard-secure'] = d.limits.discardSecure ? '1' : '0';
      }
      return keys;
    };

    const hooks: BackendHooks<BlkFrontendInfo> = {
      async probe(ctx): Promise<Result<XenbusKeys, XenbusHookError>> {
        ctxNow = ctx;
        const p = await readParams(ctx);
        if (!p.ok) return p;
        if (dev === undefined || params === undefined || params.params !== p.value.params || params.mode !== p.value.mode) {
          dev?.disconnect();
          dev?.storage.close();
          const s = await opts.openStorage(id, p.value);
          if (!s.ok) return s;
          if (p.value.mode === 'r' && !s.value.readOnly) return fail('storage-writable', `params ${p.value.params}: mode=r but the storage is writable`);
          params = p.value;
          dev = new BlkbackDevice(k, id.frontDom, s.value, {
            ...opts.device, mode, fallback: opts.fallback, maxIndirectSegments: maxIndirect,
          }, onFatal);
          devices.set(key, dev);
          opts.onDevice?.(id, dev);
        }
        return ok(featureKeys(dev));
      },

      async readFrontend(ctx): Promise<Result<BlkFrontendInfo, XenbusHookError>> {
        const fe = ctx.frontPath;
        const proto = await readKey(ctx.xs, fe, 'protocol');
        if (proto.ok && proto.value !== 'x86_64-abi') return fail('bad-protocol', `unsupported protocol "${proto.value.slice(0, 32)}"`);
        const nq = await readUintOr(ctx.xs, fe, 'multi-queue-num-queues', 1);
        if (!nq.ok) return fail('bad-queues', describeKeyError(nq.error));
        if (nq.value < 1 || nq.value > maxQueues) return fail('bad-queues', `multi-queue-num-queues ${nq.value} is not in 1..${maxQueues}`);
        const order = await readUintOr(ctx.xs, fe, 'ring-page-order', 0);
        if (!order.ok) return fail('bad-ring-page-order', describeKeyError(order.error));
        if (order.value > maxOrder) return fail('bad-ring-page-order', `ring-page-order ${order.value} exceeds our max ${maxOrder}`);
        const persistent = await readFeature(ctx.xs, fe, 'feature-persistent');
        if (!persistent.ok) return fail('bad-feature', describeKeyError(persistent.error));
        const pages = 1 << order.value;
        const rings: RingSpec[] = [];
        for (let q = 0; q < nq.value; q++) {
          const dir = nq.value === 1 ? fe : `${fe}/queue-${q}`;
          const refs: Gref[] = [];
          for (let i = 0; i < pages; i++) {
            const name = order.value === 0 ? 'ring-ref' : `ring-ref${i}`;
            const r = await readUint(ctx.xs, dir, name);
            if (!r.ok) return fail('bad-ring-ref', describeKeyError(r.error));
            refs.push(asGref(r.value));
          }
          const port = await readUint(ctx.xs, dir, 'event-channel', k.evtchn.nrPorts - 1);
          if (!port.ok) return fail('bad-event-channel', describeKeyError(port.error));
          rings.push({ refs, port: port.value });
        }
        return ok({ rings, ringPageOrder: order.value, persistent: persistent.value });
      },

      connect(ctx, f): Result<XenbusKeys, XenbusHookError> {
        ctxNow = ctx;
        if (dev === undefined) return fail('no-device', 'connect before probe');
        const r = dev.connect(f.rings, f.persistent);
        if (!r.ok) return fail(r.error.kind, JSON.stringify(r.error));
        opts.log?.(`blkback ${key}: connected ${f.rings.length} queue(s) of ${1 << f.ringPageOrder} page(s), mode ${dev.mode}`);
        const s = dev.storage;
        const info = (s.readOnly ? VDISK_READONLY : 0) | (params?.deviceType === 'cdrom' ? VDISK_CDROM | VDISK_REMOVABLE : 0);
        return ok({
          ...featureKeys(dev),
          'feature-persistent': dev.mode === 'persistent' ? '1' : '0',
          sectors: String(s.sectors),
          info: String(info),
          'sector-size': String(s.sectorSize),
          'physical-sector-size': String(s.physicalSectorSize),
        });
      },

      disconnect(): void {
        dev?.disconnect();
      },

      remove(): void {
        dev?.disconnect();
        dev?.storage.close();
        devices.delete(key);
        dev = undefined;
      },
    };
    return hooks;
  };
  return { driver, devices };
}
