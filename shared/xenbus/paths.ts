/**
 * Where a split device lives in XenStore (docs/misc/xenstore-paths.pandoc):
 *
 *     frontend  /local/domain/<frontDom>/device/<type>/<devid>/
 *     backend   /local/domain/<backDom>/backend/<type>/<frontDom>/<devid>/
 *
 * and the keys every device has, whatever its type (Linux xenbus_probe.c,
 * libxl_device.c). Device-specific keys (ring-ref, feature-*, sectors, …)
 * belong to the drivers.
 */
import { err, ok, type Result } from '../result.ts';
import { asDomId, type DomId } from '../types.ts';

/** Keys of the generic xenbus protocol. */
export const XENBUS_KEY = {
  /** Both dirs: the side's XenbusState (decimal). Written by that side (the toolstack seeds it). */
  STATE: 'state',
  /** Frontend dir [toolstack]: the backend's directory. */
  BACKEND: 'backend',
  /** Frontend dir [toolstack]: the backend's domid. */
  BACKEND_ID: 'backend-id',
  /** Backend dir [toolstack]: the frontend's directory. */
  FRONTEND: 'frontend',
  /** Backend dir [toolstack]: the frontend's domid. */
  FRONTEND_ID: 'frontend-id',
  /** Backend dir [toolstack]: "1" while the device should exist; "0" asks the backend to go once Closed. */
  ONLINE: 'online',
  /** Both dirs of a vif [toolstack]: the device handle (= devid). */
  HANDLE: 'handle',
} as const;

/**
 * xensim's own keys, not Xen's: the handshake generation. A backend that
 * restarts while its frontend is connected must not map the ring-ref and
 * bind the event-channel its frontend gave the backend before it: the
 * frontend is about to revoke them to hand over new ones (Linux has no such
 * race because its blkfront never resumes on a backend restart; ours does, so
 * that a restarted backend may change its limits). Each backend instance
 * publishes a new generation with its InitWait; the frontend writes the
 * generation it answered together with its keys; the backend connects only to
 * keys that answer its own generation (or carry none: a frontend that does
 * not take part), and the frontend re-does the handshake when the backend's
 * generation is no longer the one it answered. See backend.ts and frontend.ts.
 */
export const XENSIM_KEY = {
  /** Backend dir [BE]: this backend instance's generation (decimal 1..XENSIM_GENERATION_MAX), written with InitWait at every probe. */
  GENERATION: 'xensim-generation',
  /** Frontend dir [FE]: the backend generation its keys answer, written in the transaction that writes them. */
  GENERATION_ACK: 'xensim-generation-ack',
} as const;

/** The largest handshake generation; the next one after it is 1. */
export const XENSIM_GENERATION_MAX = 0x7fff_ffff;

/** Identifies one split device. */
export interface XenbusDeviceId {
  /** Device class as it appears in paths: 'vbd', 'vif', … */
  readonly type: string;
  readonly frontDom: DomId;
  readonly backDom: DomId;
  /** The device number: vbd's from the vdev (cli/config/vdev.ts), a vif's index. */
  readonly devid: number;
}

export type XenbusPathError =
  | { readonly kind: 'bad-type'; readonly type: string }
  | { readonly kind: 'bad-devid'; readonly devid: number };

/** [isValidDeviceType t] holds for a non-empty path component of [A-Za-z0-9_-] (vbd, vif, qdisk, …). */
export function isValidDeviceType(t: string): boolean {
  return /^[A-Za-z0-9_-]{1,32}$/.test(t);
}

/** [checkDeviceId id] refuses a type that is not a path component and a devid that is not a u31. */
export function checkDeviceId(id: XenbusDeviceId): Result<XenbusDeviceId, XenbusPathError> {
  if (!isValidDeviceType(id.type)) return err({ kind: 'bad-type', type: id.type });
  if (!Number.isInteger(id.devid) || id.devid < 0 || id.devid > 0x7fff_ffff) return err({ kind: 'bad-devid', devid: id.devid });
  return ok(id);
}

export function domainHome(domid: DomId | number): string {
  return `/local/domain/${domid}`;
}

/** [frontendPath id] is /local/domain/<frontDom>/device/<type>/<devid>. */
export function frontendPath(id: Pick<XenbusDeviceId, 'type' | 'frontDom' | 'devid'>): string {
  return `${domainHome(id.frontDom)}/device/${id.type}/${id.devid}`;
}

/** [backendPath id] is /local/domain/<backDom>/backend/<type>/<frontDom>/<devid>. */
export function backendPath(id: XenbusDeviceId): string {
  return `${domainHome(id.backDom)}/backend/${id.type}/${id.frontDom}/${id.devid}`;
}

/** [backendTypePath backDom type] is the directory a backend driver watches for new devices. */
export function backendTypePath(backDom: DomId | number, type: string): string {
  return `${domainHome(backDom)}/backend/${type}`;
}

/**
 * [errorPath owner nodePath] is where xenbus_dev_error reports a device's
 * error: "error/" + the device's path relative to its domain's home, i.e.
 * /local/domain/<owner>/error/device/vbd/51712/error.
 */
export function errorPath(owner: DomId | number, nodePath: string): string {
  const home = `${domainHome(owner)}/`;
  const rel = nodePath.startsWith(home) ? nodePath.slice(home.length) : nodePath.replace(/^\//, '');
  return `${home}error/${rel}/error`;
}

/**
 * [parseDomidValue s] is a domid written as a decimal string (a `backend-id`
 * or `frontend-id` value), or undefined for anything else.
 */
export function parseDomidValue(s: string): DomId | undefined {
  if (!/^[0-9]{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 0x7fef ? asDomId(n) : undefined;
}
