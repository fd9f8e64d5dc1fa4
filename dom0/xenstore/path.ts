/**
 * XenStore path rules (docs/misc/xenstore.txt; cxenstored `canonicalize`,
 * `valid_chars`, `is_valid_nodename`):
 *  - characters `[A-Za-z0-9-/_@]` only;
 *  - no `//`, no trailing `/` (except the root `/` itself), not empty;
 *  - a path not starting with `/` is relative to /local/domain/<domid> of the
 *    caller (socket clients are dom0);
 *  - absolute paths at most XENSTORE_ABS_PATH_MAX bytes; a relative path at most
 *    XENSTORE_REL_PATH_MAX bytes, and for an unprivileged caller the part below
 *    /local/domain/<id>/ is held to the same 2048-byte quota (ACC_PATHLEN);
 *  - a leading `@` names a special node (@introduceDomain, @releaseDomain) and is
 *    accepted only where the operation allows it (WATCH, GET/SET_PERMS).
 * Every violation is EINVAL.
 */
import type { DomId } from '../../shared/types.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX } from '../../shared/abi/xenstore.ts';

export interface CanonicalPath {
  /** Absolute path (`/…`) or special name (`@…`). */
  readonly path: string;
  /** True when the caller wrote a relative path (events are reported relative too). */
  readonly relative: boolean;
}

export interface PathRules {
  readonly allowSpecial: boolean;
  /** Privileged callers are not held to the per-domain path-length quota. */
  readonly privileged: boolean;
  /** Per-domain path-length quota (default XENSTORE_REL_PATH_MAX). */
  readonly maxRelPathLen?: number;
}

/** [domainPath domid] is the home of a domain's relative paths: /local/domain/<domid>. */
export function domainPath(domid: DomId | number): string {
  return `/local/domain/${domid}`;
}

/** [validChars s] holds when every character of s is in [A-Za-z0-9-/_@]. */
export function validChars(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const okc =
      (c >= 0x61 && c <= 0x7a) || // a-z
      (c >= 0x41 && c <= 0x5a) || // A-Z
      (c >= 0x30 && c <= 0x39) || // 0-9
      c === 0x2d || c === 0x2f || c === 0x5f || c === 0x40; // - / _ @
    if (!okc) return false;
  }
  return true;
}

const LOCAL_DOMAIN = '/local/domain/';

/**
 * [localOffset path] is the length of a leading "/local/domain/<id>/" (the
 * sscanf("/local/domain/%5u/%n") of cxenstored), else 0.
 */
function localOffset(path: string): number {
  if (!path.startsWith(LOCAL_DOMAIN)) return 0;
  let i = LOCAL_DOMAIN.length;
  const start = i;
  while (i < path.length && i - start < 5) {
    const c = path.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    i++;
  }
  if (i === start || path.charCodeAt(i) !== 0x2f) return 0;
  return i + 1;
}

/**
 * [canonicalize raw domid rules] is the absolute form of raw as sent by domain
 * domid, or EINVAL.
 */
export function canonicalize(raw: string, domid: DomId, rules: PathRules): Result<CanonicalPath, 'EINVAL'> {
  if (raw.length === 0 || !validChars(raw)) return err('EINVAL');
  if (raw.charCodeAt(0) === 0x40 /* @ */) {
    if (!rules.allowSpecial || raw.length > XENSTORE_REL_PATH_MAX) return err('EINVAL');
    return ok({ path: raw, relative: false });
  }
  const relative = raw.charCodeAt(0) !== 0x2f;
  if (relative && raw.length > XENSTORE_REL_PATH_MAX) return err('EINVAL');
  const path = relative ? `${domainPath(domid)}/${raw}` : raw;
  if (path.length > 1 && path.endsWith('/')) return err('EINVAL');
  if (path.includes('//')) return err('EINVAL');
  if (path.length > XENSTORE_ABS_PATH_MAX) return err('EINVAL');
  if (!rules.privileged) {
    const limit = rules.maxRelPathLen ?? XENSTORE_REL_PATH_MAX;
    if (path.length - localOffset(path) > limit) return err('EINVAL');
  }
  return ok({ path, relative });
}

/** [parentOf path] is the parent of an absolute path other than "/" ("/" for "/a"). */
export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** [basename path] is the last component of an absolute path other than "/". */
export function basename(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** [childPath parent name] joins a child name onto an absolute path. */
export function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/**
 * [isChildOrSelf child parent]: xenstore.txt's "child" relation — identical, or
 * parent is "/", or parent + "/" is a prefix of child. Special names (@…) are
 * children only of themselves.
 */
export function isChildOrSelf(child: string, parent: string): boolean {
  if (child === parent) return true;
  if (parent.charCodeAt(0) === 0x40 || child.charCodeAt(0) === 0x40) return false;
  if (parent === '/') return true;
  return child.length > parent.length && child.charCodeAt(parent.length) === 0x2f && child.startsWith(parent);
}

/** [ancestorsOf path] yields path's strict ancestors, nearest first, ending with "/". */
export function* ancestorsOf(path: string): Generator<string> {
  let p = path;
  while (p !== '/') {
    p = parentOf(p);
    yield p;
  }
}

/**
 * [relativize path base] is path as the caller of a relative watch sees it:
 * path with "base/" removed (path must lie strictly below base).
 */
export function relativize(path: string, base: string): string {
  return path.startsWith(`${base}/`) ? path.slice(base.length + 1) : path;
}
