/**
 * The toolstack's XenStore work for domains and split devices, as libxl does
 * it (tools/libs/light/libxl_create.c libxl__domain_make,
 * libxl_device.c libxl__device_generic_add and
 * libxl__initiate_device_generic_remove), over any XsHandle with dom0's
 * privileges:
 *
 *  - domainDirs: a domain's home /local/domain/<id>, readable by the domain
 *    but owned by dom0 ("not usually writable by the domain",
 *    xenstore-paths.pandoc), with the subdirectories libxl creates: read-only
 *    `device`, `control`, `cpu`, `memory`; domain-owned (writable) `data`,
 *    `drivers`, `feature`, `attr`, `error`, `control/shutdown`,
 *    `control/feature-{poweroff,reboot,suspend}`, `control/sysrq` and
 *    `device/suspend/event-channel`.
 *  - createDeviceDirs: both directories of a split device in Initialising,
 *    in one transaction: the frontend's owned by the frontend domain and
 *    readable by the backend's, the backend's owned by the backend domain and
 *    readable by the frontend's.
 *  - initiateDeviceRemove: `online` = 0 and backend state Closing, which
 *    walks both ends to Closed and lets the backend unregister.
 *  - removeDeviceDirs: both directories gone, in one transaction.
 *
 * Every write is in one transaction and redone on EAGAIN (the xs handle's
 * transaction loop), like libxl's retry_transaction.
 */
import { err, ok, type Result } from '../shared/result.ts';
import type { DomId } from '../shared/types.ts';
import type { XsTxId } from '../shared/abi/xenstore.ts';
import { XenbusState, formatXenbusState } from '../shared/xenbus/state.ts';
import type { XsClientError, XsHandle, XsResult } from '../shared/xenbus/xs-handle.ts';
import {
  XENBUS_KEY, backendPath, checkDeviceId, domainHome, frontendPath, type XenbusDeviceId, type XenbusPathError,
} from '../shared/xenbus/paths.ts';

export type DeviceDirsError = XenbusPathError | { readonly kind: 'xenstore'; readonly error: XsClientError };

/** [permList owner readers] is a XenStore permission list: owner (no default access), then read for each reader. */
function permList(owner: DomId | number, ...readers: (DomId | number)[]): string[] {
  return [`n${owner}`, ...readers.filter((r) => r !== owner).map((r) => `r${r}`)];
}

/** Subdirectories of a domain's home, as libxl__domain_make creates them. */
export const DOMAIN_SUBDIRS = {
  /** Owned by dom0, readable by the domain. */
  readOnly: ['cpu', 'memory', 'device', 'control'],
  /** Owned by the domain (libxl's rwperm). */
  writable: [
    'control/shutdown', 'control/feature-poweroff', 'control/feature-reboot', 'control/feature-suspend',
    'control/sysrq', 'device/suspend/event-channel', 'data', 'drivers', 'feature', 'attr', 'error',
  ],
} as const;

async function inTx(xs: XsHandle, body: (tx: XsTxId) => Promise<XsResult<void>>): Promise<Result<void, DeviceDirsError>> {
  const r = await xs.transaction(body);
  return r.ok ? ok(undefined) : err({ kind: 'xenstore', error: r.error });
}

/** Runs steps in order, stopping at the first error. */
async function steps(list: (() => Promise<XsResult<void>>)[]): Promise<XsResult<void>> {
  for (const s of list) {
    const r = await s();
    if (!r.ok) return r;
  }
  return ok(undefined);
}

/** mknod: create path (empty) and set its permissions, in the transaction. */
function mknod(xs: XsHandle, tx: XsTxId, path: string, perms: readonly string[]): (() => Promise<XsResult<void>>)[] {
  return [() => xs.write(path, '', tx), () => xs.setPerms(path, perms, tx)];
}

/**
 * [domainDirs xs domid name] creates /local/domain/<domid> afresh (an old one
 * is removed), with `name`, `domid` and the subdirectories libxl creates,
 * plus control/platform-feature-xs_reset_watches = 1 (our xenstored has
 * XS_RESET_WATCHES). Must run with dom0's privileges.
 */
export async function domainDirs(xs: XsHandle, domid: DomId, name: string): Promise<Result<void, DeviceDirsError>> {
  const home = domainHome(domid);
  const ro = permList(0, domid);
  const rw = permList(domid);
  return inTx(xs, (tx) => steps([
    () => rmIfParent(xs, home, tx),
    ...mknod(xs, tx, home, ro),
    () => xs.write(`${home}/name`, name, tx),
    () => xs.write(`${home}/domid`, String(domid), tx),
    ...DOMAIN_SUBDIRS.readOnly.flatMap((d) => mknod(xs, tx, `${home}/${d}`, ro)),
    ...DOMAIN_SUBDIRS.writable.flatMap((d) => mknod(xs, tx, `${home}/${d}`, rw)),
    () => xs.write(`${home}/control/platform-feature-xs_reset_watches`, '1', tx),
  ]));
}

export interface DeviceDirsSpec extends XenbusDeviceId {
  /** Extra keys for the backend directory (params, mode, mac, …). */
  readonly backendKeys?: Readonly<Record<string, string>>;
  /** Extra keys for the frontend directory (virtual-device, device-type, mac, …). */
  readonly frontendKeys?: Readonly<Record<string, string>>;
  /** Write `handle` = devid in both directories (default: for vif, as libxl does). */
  readonly handle?: boolean;
  /** Create only one side (libxl with fents or bents NULL), e.g. a backend coming back. Default both. */
  readonly sides?: 'both' | 'frontend' | 'backend';
}

/**
 * [createDeviceDirs xs spec] creates both directories of a split device in
 * Initialising, in one transaction (libxl__device_generic_add): any old
 * directories are removed first; the frontend's is owned by the frontend
 * domain and readable by the backend's, the backend's the other way round.
 *
 *   frontend: backend, backend-id, state = 1, [handle], frontendKeys…
 *   backend:  frontend, frontend-id, online = 1, state = 1, [handle], backendKeys…
 */
export async function createDeviceDirs(xs: XsHandle, spec: DeviceDirsSpec): Promise<Result<void, DeviceDirsError>> {
  const id = checkDeviceId(spec);
  if (!id.ok) return id;
  const fe = frontendPath(spec);
  const be = backendPath(spec);
  const handle = spec.handle ?? spec.type === 'vif';
  const initialising = formatXenbusState(XenbusState.Initialising);
  const frontKeys: [string, string][] = [
    [XENBUS_KEY.BACKEND, be],
    [XENBUS_KEY.BACKEND_ID, String(spec.backDom)],
    [XENBUS_KEY.STATE, initialising],
    ...(handle ? [[XENBUS_KEY.HANDLE, String(spec.devid)] as [string, string]] : []),
    ...Object.entries(spec.frontendKeys ?? {}),
  ];
  const backKeys: [string, string][] = [
    [XENBUS_KEY.FRONTEND, fe],
    [XENBUS_KEY.FRONTEND_ID, String(spec.frontDom)],
    [XENBUS_KEY.ONLINE, '1'],
    [XENBUS_KEY.STATE, initialising],
    ...(handle ? [[XENBUS_KEY.HANDLE, String(spec.devid)] as [string, string]] : []),
    ...Object.entries(spec.backendKeys ?? {}),
  ];
  const sides = spec.sides ?? 'both';
  return inTx(xs, (tx) => steps([
    ...(sides === 'backend' ? [] : [
      () => rmIfParent(xs, fe, tx),
      () => xs.mkdir(fe, tx),
      () => xs.setPerms(fe, permList(spec.frontDom, spec.backDom), tx),
      ...frontKeys.map(([k, v]) => () => xs.write(`${fe}/${k}`, v, tx)),
    ]),
    ...(sides === 'frontend' ? [] : [
      () => rmIfParent(xs, be, tx),
      () => xs.mkdir(be, tx),
      () => xs.setPerms(be, permList(spec.backDom, spec.frontDom), tx),
      ...backKeys.map(([k, v]) => () => xs.write(`${be}/${k}`, v, tx)),
    ]),
  ]));
}

/**
 * [initiateDeviceRemove xs id] is libxl's orderly unplug: backend `online` = 0
 * and backend state Closing, in one transaction. The frontend closes, the
 * backend follows to Closed and unregisters; then call removeDeviceDirs.
 */
export async function initiateDeviceRemove(xs: XsHandle, id: XenbusDeviceId): Promise<Result<void, DeviceDirsError>> {
  const c = checkDeviceId(id);
  if (!c.ok) return c;
  const be = backendPath(id);
  return inTx(xs, (tx) => steps([
    async () => {
      // Only a device that exists: writing would create it.
      const s = await xs.read(`${be}/${XENBUS_KEY.STATE}`, tx);
      return s.ok ? ok(undefined) : s;
    },
    () => xs.write(`${be}/${XENBUS_KEY.ONLINE}`, '0', tx),
    () => xs.write(`${be}/${XENBUS_KEY.STATE}`, formatXenbusState(XenbusState.Closing), tx),
  ]));
}

/** [removeDeviceDirs xs id] removes both directories in one transaction (absent ones are fine). */
export async function removeDeviceDirs(xs: XsHandle, id: XenbusDeviceId): Promise<Result<void, DeviceDirsError>> {
  const c = checkDeviceId(id);
  if (!c.ok) return c;
  return inTx(xs, (tx) => steps([
    () => rmIfParent(xs, frontendPath(id), tx),
    () => rmIfParent(xs, backendPath(id), tx),
  ]));
}

/** rm that also accepts a missing parent (RM answers ENOENT then). */
async function rmIfParent(xs: XsHandle, path: string, tx: XsTxId): Promise<XsResult<void>> {
  const r = await xs.rm(path, tx);
  if (!r.ok && r.error.kind === 'xs-error' && r.error.errno === 'ENOENT') return ok(undefined);
  return r;
}
