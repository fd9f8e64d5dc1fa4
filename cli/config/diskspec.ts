/**
 * DISKSPEC strings (xl-disk-configuration(5)), parsed the way xl's flex
 * scanner tools/libs/util/libxlu_disk_l.l does:
 *
 *   [<key>=<value>|<flag>,]*,
 *     [<target>, [<format>, [<vdev>, [<access>]]]],
 *     [<key>=<value>|<flag>,]*
 *     [target=<target>]
 *
 * The string is cut into comma-terminated tokens by longest match; on a tie the
 * earlier rule wins (flex's rule). In that rule order:
 *  - whitespace before a parameter is skipped;
 *  - `format=`, `cdrom`, `devtype=cdrom|disk`, `access=`, `backend=`,
 *    `backendtype=`, `specification=`, `vdev=`, `script=`, `direct-io-safe`,
 *    `discard`, `no-discard`, the COLO keys, `trusted`, `untrusted`,
 *    `grant_usage=0|1`;
 *  - `target=` takes the whole rest of the string, commas and trailing blanks
 *    included (one trailing comma is dropped), so it must come last;
 *  - any other `word=` is "unknown parameter";
 *  - deprecated prefixes: `raw:` `qcow:` `qcow2:` `vhd:` set the format,
 *    `iscsi:` `nbd:` `enbd:` `drbd:` set script=block-NAME, and `tapdisk:`
 *    `tap:` `tap2:` `aio:` `ioemu:` `file:` `phy:` are stripped and ignored;
 *    another `word:` followed by a non-alphanumeric is "unknown deprecated disk
 *    prefix";
 *  - anything else is a positional parameter, assigned in order to the
 *    still-unset target, format (skipped after a deprecated prefix), vdev
 *    (which may be `vdev:cdrom` / `vdev:disk`, deprecated) and access.
 * An empty value means "default". Defaults: format raw, access rw (r for a
 * cdrom), backend dom0, backendtype automatic. vdev is mandatory; a target is
 * mandatory unless the device is a (removable) cdrom.
 *
 * Where `/dev/` is prepended: xl's parser stores the target verbatim (it is
 * written to xenstore as the backend's `params`), and libxl passes it on
 * unchanged. The man page's "/dev will be prepended if the path doesn't start
 * with a '/'" is done by the Linux `block` hotplug script, and only for a
 * `phy` backend (expand_dev in tools/hotplug/Linux/block). `physical_path`
 * below applies exactly that rule; `target` stays verbatim.
 *
 * xensim extension: a target `ram:SIZE` (e.g. `ram:64M`; K/M/G/T binary
 * suffixes, a multiple of 512 bytes) is an in-memory disk of that size. xl
 * itself would take `ram:64M` as an ordinary positional target, so the syntax
 * does not collide with anything xl accepts differently.
 *
 * Errors read like xl's: "config parsing error in disk specification:
 * unknown value for format: near `qcow3' in `/x.img,qcow3,xvda'". As xl, the
 * first error stops the parse (xl goes on scanning but reports the rest as
 * consequences).
 */
import { err, ok, type Result } from '../../shared/result.ts';
import { vdevToDevid } from './vdev.ts';

export const DISK_FORMATS = ['raw', 'qcow', 'qcow2', 'vhd', 'qed', 'empty'] as const;
export type DiskFormat = (typeof DISK_FORMATS)[number];
export const DISK_BACKEND_TYPES = ['phy', 'qdisk', 'standalone', 'tap'] as const;
export type DiskBackendType = (typeof DISK_BACKEND_TYPES)[number];
export type DiskSpecification = 'xen' | 'virtio';

/** One parsed DISKSPEC. Field names follow the diskspec keywords (and libxl where none). */
export interface DiskSpec {
  /** The DISKSPEC string as written. */
  readonly spec: string;
  /** The target exactly as given (libxl's pdev_path); null when none was given, '' when given empty. */
  readonly target: string | null;
  readonly format: DiskFormat;
  readonly vdev: string;
  /** xenstore device number of vdev (xen-vbd-interface(7)): xvda = 51712. */
  readonly devid: number;
  /** What the user asked for, normalised: 'ro' (r, ro, or a cdrom) or 'rw' (w, rw). */
  readonly access: 'ro' | 'rw';
  readonly readwrite: boolean;
  readonly devtype: 'disk' | 'cdrom';
  /** Removable media (cdrom). */
  readonly removable: boolean;
  /** Backend domain name; null = dom0. */
  readonly backend: string | null;
  /** null = let the toolstack choose. */
  readonly backendtype: DiskBackendType | null;
  readonly script: string | null;
  readonly direct_io_safe: boolean;
  /** null = backend default (advertise discard). */
  readonly discard: boolean | null;
  /** null = default (trusted). */
  readonly trusted: boolean | null;
  readonly specification: DiskSpecification | null;
  /** grant_usage=0|1; null = default. */
  readonly grant_usage: boolean | null;
  /** COLO settings, recorded but not simulated. */
  readonly colo: Readonly<Record<string, string | boolean>> | null;
  /** xensim extension: `ram:SIZE` target → an in-memory disk of size bytes. */
  readonly ram: { readonly size: number } | null;
  /** The target as the backend would open it: `/dev/` + target for a relative phy target, else target. */
  readonly physical_path: string | null;
  /** Deprecated prefixes and syntaxes that were used (xl accepts them silently). */
  readonly deprecated: readonly string[];
}

export interface DiskSpecError {
  readonly kind: 'disk-spec';
  /** xl's message, e.g. "unknown value for format". */
  readonly reason: string;
  /** The offending text, or null when the error concerns the whole spec. */
  readonly near: string | null;
  readonly spec: string;
  /** Full xl-style sentence. */
  readonly message: string;
}

function mkError(spec: string, reason: string, near: string | null): DiskSpecError {
  const nearText = near === null ? '' : `: near \`${near}'`;
  return { kind: 'disk-spec', reason, near, spec, message: `config parsing error in disk specification: ${reason}${nearText} in \`${spec}'` };
}

/** Sizes for `ram:SIZE`: bytes, or K/M/G/T (binary) with an optional trailing B / iB. */
export function parseRamSize(text: string): number | null {
  const m = /^([0-9]+)(?:([kKmMgGtT])(?:i?[bB])?)?$/.exec(text);
  if (!m) return null;
  const unit = (m[2] ?? '').toLowerCase();
  const mult = unit === '' ? 1 : unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1024 ** 4;
  const n = Number(m[1]) * mult;
  return Number.isSafeInteger(n) ? n : null;
}

// ---- the scanner ----------------------------------------------------------

/** Mutable parse state, mirroring libxl_device_disk + DiskParseContext. */
interface State {
  target: string | null;
  format: DiskFormat | null;
  vdev: string | null;
  readwrite: boolean;
  accessSet: boolean;
  isCdrom: boolean;
  backend: string | null;
  backendtype: DiskBackendType | null;
  script: string | null;
  directIoSafe: boolean;
  discard: boolean | null;
  trusted: boolean | null;
  specification: DiskSpecification | null;
  grantUsage: boolean | null;
  colo: Record<string, string | boolean> | null;
  hadDeprPrefix: boolean;
  deprecated: string[];
}

type Action = (st: State, text: string) => string | null; // returns an error reason, or null

/** A scanner rule: `match` returns the matched length at `s` (0 = no match). */
interface Rule {
  readonly id: string;
  readonly match: (s: string) => number;
  readonly act: (st: State, text: string, spec: string) => DiskSpecError | null;
}

/** `.` in flex does not match a newline; `.*` therefore stops at one. */
function restOfLine(s: string): number {
  const nl = s.indexOf('\n');
  return nl < 0 ? s.length : nl;
}

/** Length of `lit[^,]*,?` (a `key=` rule) at s. */
function keyRule(lit: string): (s: string) => number {
  return (s) => {
    if (!s.startsWith(lit)) return 0;
    let i = lit.length;
    while (i < s.length && s[i] !== ',' && s[i] !== '\n') i++;
    return s[i] === ',' ? i + 1 : i;
  };
}
/** Length of `lit,?` (a flag rule) at s. */
function flagRule(lit: string): (s: string) => number {
  return (s) => (s.startsWith(lit) ? (s[lit.length] === ',' ? lit.length + 1 : lit.length) : 0);
}
/** Length of `lit:/.*` (a deprecated-prefix rule; the trailing context counts toward the match). */
function prefixRule(lit: string): (s: string) => number {
  return (s) => (s.startsWith(`${lit}:`) ? Math.max(lit.length + 1, restOfLine(s)) : 0);
}
/** The part of a deprecated-prefix token the action sees: the prefix and its colon. */
function prefixText(s: string): string {
  return s.slice(0, s.indexOf(':') + 1);
}

function stripComma(text: string): string {
  return text.endsWith(',') ? text.slice(0, -1) : text;
}
function fromEquals(text: string): string {
  return stripComma(text).slice(text.indexOf('=') + 1);
}
/** The whole comma-delimited token starting at s (for quoting in messages). */
function tokenAt(s: string): string {
  return /^[^,\n]*/.exec(s)?.[0] ?? s;
}

function setFormat(st: State, value: string): string | null {
  const f: DiskFormat | undefined = value === '' ? 'raw' : (DISK_FORMATS as readonly string[]).includes(value) ? (value as DiskFormat) : undefined;
  if (f === undefined) return 'unknown value for format';
  if (st.format !== null && st.format !== f) return 'format respecified';
  st.format = f;
  return null;
}
function setAccess(st: State, value: string): string | null {
  if (value === 'r' || value === 'ro') st.readwrite = false;
  else if (value === 'rw' || value === 'w' || value === '') st.readwrite = true;
  else return 'unknown value for access';
  return null;
}
function setBackendType(st: State, value: string): string | null {
  if (!(DISK_BACKEND_TYPES as readonly string[]).includes(value)) return 'unknown value for backendtype';
  const t = value as DiskBackendType;
  if (st.backendtype !== null && st.backendtype !== t) return 'backend respecified';
  st.backendtype = t;
  return null;
}
function setSpecification(st: State, value: string): string | null {
  if (value !== 'xen' && value !== 'virtio') return 'unknown value for specification';
  if (st.specification !== null && st.specification !== value) return 'specification respecified';
  st.specification = value;
  return null;
}
/** SAVESTRING: a string may be set once; overwriting an empty one is allowed. */
function saveString(st: State, field: 'target' | 'vdev' | 'backend' | 'script', what: string, value: string): string | null {
  const cur = st[field];
  if (cur !== null && cur !== '') return `${what} respecified`;
  st[field] = value;
  return null;
}
/**
 * `<vdev>:<devtype>` (deprecated). Returns 'no-colon' if str has no colon (nothing
 * done), null on success, or an error reason.
 */
function vdevAndDevtype(st: State, str: string): string | null | 'no-colon' {
  const colon = str.lastIndexOf(':');
  if (colon < 0) return 'no-colon';
  st.deprecated.push('vdev:devtype');
  const e = saveString(st, 'vdev', 'vdev', str.slice(0, colon));
  if (e !== null) return e;
  const devtype = str.slice(colon + 1);
  if (devtype === 'cdrom') st.isCdrom = true;
  else if (devtype === 'disk') st.isCdrom = false;
  else return 'unknown deprecated type';
  return null;
}

/** A rule action from a reason-returning function; errors quote the value (as xl's STRIP+FROMEQUALS leave it). */
function act(reasonOf: Action): Rule['act'] {
  return (st, text, spec) => {
    const reason = reasonOf(st, text);
    return reason === null ? null : mkError(spec, reason, text.includes('=') ? fromEquals(text) : stripComma(text));
  };
}
function flag(set: (st: State) => void): Rule['act'] {
  return (st) => {
    set(st);
    return null;
  };
}
function colo(key: string): Action {
  return (st, text) => {
    st.colo = { ...(st.colo ?? {}), [key]: fromEquals(text) };
    return null;
  };
}
function deprecatedPrefix(p: string, then: (st: State) => string | null): Rule['act'] {
  return (st, text, spec) => {
    st.hadDeprPrefix = true;
    st.deprecated.push(`${p}:`);
    const reason = then(st);
    return reason === null ? null : mkError(spec, reason, prefixText(text));
  };
}

/** The rules, in libxlu_disk_l.l's order (order breaks ties between equal-length matches). */
const RULES: readonly Rule[] = [
  // [ \t\n]+/([^ \t\n].*)?  -- whitespace before parameters; the trailing context makes it win.
  {
    id: 'blank',
    match: (s) => {
      const w = /^[ \t\n]+/.exec(s)?.[0].length ?? 0;
      return w === 0 ? 0 : w + restOfLine(s.slice(w));
    },
    act: () => null,
  },
  { id: 'format', match: keyRule('format='), act: act((st, t) => setFormat(st, fromEquals(t))) },
  { id: 'cdrom', match: flagRule('cdrom'), act: flag((st) => (st.isCdrom = true)) },
  { id: 'devtype=cdrom', match: flagRule('devtype=cdrom'), act: flag((st) => (st.isCdrom = true)) },
  { id: 'devtype=disk', match: flagRule('devtype=disk'), act: flag((st) => (st.isCdrom = false)) },
  { id: 'devtype', match: keyRule('devtype='), act: (_st, t, spec) => mkError(spec, 'unknown value for type', t) },
  { id: 'access', match: keyRule('access='), act: act((st, t) => setAccess(st, fromEquals(t))) },
  { id: 'backend', match: keyRule('backend='), act: act((st, t) => saveString(st, 'backend', 'backend', fromEquals(t))) },
  { id: 'backendtype', match: keyRule('backendtype='), act: act((st, t) => setBackendType(st, fromEquals(t))) },
  { id: 'specification', match: keyRule('specification='), act: act((st, t) => setSpecification(st, fromEquals(t))) },
  { id: 'vdev', match: keyRule('vdev='), act: act((st, t) => saveString(st, 'vdev', 'vdev', fromEquals(t))) },
  { id: 'script', match: keyRule('script='), act: act((st, t) => saveString(st, 'script', 'script', fromEquals(t))) },
  { id: 'direct-io-safe', match: flagRule('direct-io-safe'), act: flag((st) => (st.directIoSafe = true)) },
  { id: 'discard', match: flagRule('discard'), act: flag((st) => (st.discard = true)) },
  { id: 'no-discard', match: flagRule('no-discard'), act: flag((st) => (st.discard = false)) },
  { id: 'colo', match: flagRule('colo'), act: flag((st) => (st.colo = { ...(st.colo ?? {}), colo: true })) },
  { id: 'no-colo', match: flagRule('no-colo'), act: flag((st) => (st.colo = { ...(st.colo ?? {}), colo: false })) },
  { id: 'colo-host', match: keyRule('colo-host='), act: act(colo('colo-host')) },
  {
    id: 'colo-port',
    match: keyRule('colo-port='),
    act: act((st, t) => {
      const v = fromEquals(t);
      if (!/^[0-9]+$/.test(v) || Number(v) === 0) return 'unknown value for colo_port';
      return colo('colo-port')(st, t);
    }),
  },
  { id: 'colo-export', match: keyRule('colo-export='), act: act(colo('colo-export')) },
  { id: 'active-disk', match: keyRule('active-disk='), act: act(colo('active-disk')) },
  { id: 'hidden-disk', match: keyRule('hidden-disk='), act: act(colo('hidden-disk')) },
  { id: 'trusted', match: flagRule('trusted'), act: flag((st) => (st.trusted = true)) },
  { id: 'untrusted', match: flagRule('untrusted'), act: flag((st) => (st.trusted = false)) },
  { id: 'grant_usage=1', match: flagRule('grant_usage=1'), act: flag((st) => (st.grantUsage = true)) },
  { id: 'grant_usage=0', match: flagRule('grant_usage=0'), act: flag((st) => (st.grantUsage = false)) },
  // target=.*  -- the magic parameter: eats the rest of the string.
  {
    id: 'target',
    match: (s) => (s.startsWith('target=') ? restOfLine(s) : 0),
    act: act((st, t) => saveString(st, 'target', 'target', fromEquals(t))),
  },
  // [a-z][-a-z0-9]*=[^,],?  -- unknown parameters. (xl quotes what its rule matched, the key
  // and one value character; we quote the whole key=value.)
  {
    id: 'unknown-parameter',
    match: (s) => /^[a-z][-a-z0-9]*=[^,\n],?/.exec(s)?.[0].length ?? 0,
    act: (_st, t, spec) => mkError(spec, 'unknown parameter', t),
  },
  // Deprecated prefixes; the "/.*" trailing context makes them take precedence.
  ...(['raw', 'qcow2', 'qcow', 'vhd'] as const).map(
    (p): Rule => ({ id: `${p}:`, match: prefixRule(p), act: deprecatedPrefix(p, (st) => setFormat(st, p)) }),
  ),
  ...(['iscsi', 'enbd', 'nbd', 'drbd'] as const).map(
    (p): Rule => ({ id: `${p}:`, match: prefixRule(p), act: deprecatedPrefix(p, (st) => saveString(st, 'script', 'script', `block-${p}`)) }),
  ),
  ...(['tapdisk', 'tap2', 'tap', 'aio', 'ioemu', 'file', 'phy'] as const).map(
    (p): Rule => ({ id: `${p}:`, match: prefixRule(p), act: deprecatedPrefix(p, () => null) }),
  ),
  // [a-z][a-z0-9]*:/([^a-z0-9].*)?  -- any other prefix (only when followed by a non-alphanumeric or the end).
  {
    id: 'unknown-prefix',
    match: (s) => {
      const m = /^[a-z][a-z0-9]*:/.exec(s);
      if (!m) return 0;
      const next = s[m[0].length];
      return next === undefined || !/[a-z0-9]/.test(next) ? Math.max(m[0].length, restOfLine(s)) : m[0].length;
    },
    act: (_st, t, spec) => mkError(spec, 'unknown deprecated disk prefix', t),
  },
  // [^=,]*,|[^=,]+,?  -- positional parameters.
  {
    id: 'positional',
    match: (s) => (/^[^=,\n]*,/.exec(s) ?? /^[^=,\n]+,?/.exec(s))?.[0].length ?? 0,
    act: (st, t, spec) => positional(st, stripComma(t), spec),
  },
];

/** Rules whose token the action gets without the trailing context (it is only for precedence). */
const CONTEXT_RULES = new Set(['blank', 'unknown-prefix', ...RULES.filter((r) => r.id.endsWith(':')).map((r) => r.id)]);

function positional(st: State, text: string, spec: string): DiskSpecError | null {
  const fail = (reason: string | null): DiskSpecError | null => (reason === null ? null : mkError(spec, reason, text));
  if (st.target === null) return fail(saveString(st, 'target', 'target', text));
  if (!st.hadDeprPrefix && st.format === null) {
    if (st.target === '') {
      const r = vdevAndDevtype(st, text);
      if (r !== 'no-colon') {
        if (r === null) st.format = 'empty';
        return fail(r);
      }
    }
    return fail(setFormat(st, text));
  }
  if (st.vdev === null) {
    const r = vdevAndDevtype(st, text);
    if (r !== 'no-colon') return fail(r);
    return fail(saveString(st, 'vdev', 'vdev', text));
  }
  if (!st.accessSet) {
    st.accessSet = true;
    return fail(setAccess(st, text));
  }
  return mkError(spec, 'too many positional parameters', text);
}

/**
 * [parseDiskSpec spec] is the DiskSpec a DISKSPEC string denotes, or the first
 * error xl would report (with xl's wording), including the xensim checks that
 * vdev is a known identifier and that a `ram:` target has a usable size.
 */
export function parseDiskSpec(spec: string): Result<DiskSpec, DiskSpecError> {
  const st: State = {
    target: null, format: null, vdev: null, readwrite: true, accessSet: false, isCdrom: false,
    backend: null, backendtype: null, script: null, directIoSafe: false, discard: null, trusted: null,
    specification: null, grantUsage: null, colo: null, hadDeprPrefix: false, deprecated: [],
  };
  let pos = 0;
  while (pos < spec.length) {
    const rest = spec.slice(pos);
    let best: Rule | null = null;
    let bestLen = 0;
    for (const rule of RULES) {
      const len = rule.match(rest);
      if (len > bestLen) {
        best = rule;
        bestLen = len;
      }
    }
    if (best === null) {
      // `.` then <LEXERR>.*: the offending character and the rest of the string.
      return err(mkError(spec, 'bad disk syntax', rest.slice(0, Math.max(1, restOfLine(rest)))));
    }
    let consumed = bestLen;
    let text = rest.slice(0, consumed);
    if (best.id === 'blank') {
      consumed = /^[ \t\n]+/.exec(rest)?.[0].length ?? 1;
      text = rest.slice(0, consumed);
    } else if (CONTEXT_RULES.has(best.id)) {
      // A prefix rule consumes the prefix and its colon; the context was only for precedence.
      consumed = prefixText(rest).length;
      text = best.id === 'unknown-prefix' ? tokenAt(rest) : rest.slice(0, consumed);
    } else if (best.id === 'unknown-parameter') {
      text = tokenAt(rest);
    }
    const e = best.act(st, text, spec);
    if (e !== null) return err(e);
    pos += consumed;
  }
  return finish(st, spec);
}

function finish(st: State, spec: string): Result<DiskSpec, DiskSpecError> {
  let format: DiskFormat = st.format ?? 'raw';
  let readwrite = st.readwrite;
  const removable = st.isCdrom;
  if (st.isCdrom) {
    readwrite = false;
    if (st.target === null || st.target === '') format = 'empty';
  }
  if (st.vdev === null || st.vdev === '') return err(mkError(spec, 'no vdev specified', null));
  if (st.target === null && !removable) return err(mkError(spec, 'no target specified (and device not removable)', null));
  // xensim: an empty target on a non-removable disk has nothing behind it.
  if (st.target === '' && !removable) return err(mkError(spec, 'empty target specified (and device not removable)', null));

  const v = vdevToDevid(st.vdev);
  if (!v.ok) return err(mkError(spec, v.error.message, st.vdev));

  let ram: { size: number } | null = null;
  if (st.target !== null && st.target.startsWith('ram:')) {
    const sizeText = st.target.slice(4);
    const size = parseRamSize(sizeText);
    if (size === null || size === 0) return err(mkError(spec, 'invalid ram disk size (expected ram:SIZE, e.g. ram:64M)', st.target));
    if (size % 512 !== 0) return err(mkError(spec, 'ram disk size must be a multiple of 512 bytes', st.target));
    if (format !== 'raw') return err(mkError(spec, 'a ram disk is raw; format must be raw', format));
    ram = { size };
  }
  const physical_path =
    st.target === null || st.target === '' || ram !== null
      ? null
      : st.backendtype === 'phy' && !st.target.startsWith('/')
        ? `/dev/${st.target}`
        : st.target;

  return ok({
    spec,
    target: st.target,
    format,
    vdev: st.vdev,
    devid: v.value.devid,
    access: readwrite ? 'rw' : 'ro',
    readwrite,
    devtype: st.isCdrom ? 'cdrom' : 'disk',
    removable,
    backend: st.backend === '' ? null : st.backend,
    backendtype: st.backendtype,
    script: st.script === '' ? null : st.script,
    direct_io_safe: st.directIoSafe,
    discard: st.discard,
    trusted: st.trusted,
    specification: st.specification,
    grant_usage: st.grantUsage,
    colo: st.colo,
    ram,
    physical_path,
    deprecated: st.deprecated,
  });
}
