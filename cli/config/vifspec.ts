/**
 * VIFSPEC strings (xl-network-configuration(5)), parsed as xl's
 * parse_nic_config() (tools/xl/xl_parse.c) and xlu_vif_parse_rate()
 * (tools/libs/util/libxlu_vif.c) do:
 *
 *   vif = [ '<vifspec>', ... ]      vifspec = [<key>=<value>|<flag>,]*
 *
 * The string is split at commas (empty pieces are skipped, as strtok does);
 * leading spaces of a piece are dropped, nothing else is trimmed. Every key is
 * optional and '' is a valid vifspec. A device's DEVID is its index in the
 * list unless `devid=` says otherwise.
 *
 * Keys: mac, bridge (default xenbr0), gatewaydev (netdev = deprecated alias),
 * type (vif|ioemu; HVM only), model (HVM ioemu only), vifname (default
 * vifDOMID.DEVID, known once the domain has an id: see defaultVifName), script
 * (default /etc/xen/scripts/vif-bridge), ip, backend (domain name, default
 * dom0), rate, devid, mtu (default 1500), and the flags trusted / untrusted.
 * Accepted and recorded but not simulated: vlan, vid, forwarddev, colo_*;
 * `accel` is ignored with xl's warning.
 *
 * mac: six groups of one or two hex digits separated by colons. Absent (or
 * all zero, libxl's "default") means a random address in Xen's OUI 00:16:3e
 * with the top bit of the fourth byte clear, as libxl makes them; pass a
 * seeded Rng to get the same addresses every run. xensim also refuses a
 * multicast address (bit 0 of the first byte), which no NIC may own.
 *
 * rate: `RATE/s[@INTERVAL]`. RATE is decimal digits with an optional G, M or K
 * (powers of 1000) and B (bytes) or b (bits). INTERVAL is digits with ms, us
 * or s; xl's code takes a bare number as SECONDS (the man page says
 * microseconds; we follow the code) and defaults to 50ms. The credit per
 * interval is bytes_per_sec * interval_us / 10^6, so 1MB/s@20ms is 20000 bytes
 * every 20000 us.
 */
import { randomBytes } from 'node:crypto';
import { err, ok, type Result } from '../../shared/result.ts';

/** A source of uint32s. Use seededRng() for reproducible MACs. */
export type Rng = () => number;

/** mulberry32: a small, fast, seedable PRNG (uint32 output). */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const cryptoRng: Rng = () => randomBytes(4).readUInt32LE(0);

/** Xen's Organizationally Unique Identifier. */
export const XEN_OUI = [0x00, 0x16, 0x3e] as const;
export const VIF_DEFAULTS = {
  bridge: 'xenbr0',
  script: '/etc/xen/scripts/vif-bridge',
  mtu: 1500,
  /** Credit replenishment interval when a rate gives none (libxlu_vif.c). */
  rateIntervalUsecs: 50_000,
  /** Emulated NIC model for HVM ioemu devices. */
  hvmModel: 'rtl8139',
} as const;

export interface VifRate {
  readonly text: string;
  readonly bytesPerSecond: number;
  readonly intervalUsecs: number;
  /** Credit granted every interval: floor(bytesPerSecond * intervalUsecs / 1e6). */
  readonly bytesPerInterval: number;
}

export interface VifSpec {
  /** The VIFSPEC string as written. */
  readonly spec: string;
  readonly devid: number;
  /** Lower-case, zero-padded aa:bb:cc:dd:ee:ff. */
  readonly mac: string;
  /** True when mac was not given (or all zero) and was generated. */
  readonly mac_generated: boolean;
  readonly bridge: string;
  readonly gatewaydev: string | null;
  readonly type: 'vif' | 'ioemu';
  readonly model: string | null;
  /** null = the default vifDOMID.DEVID (defaultVifName), known once the domain has an id. */
  readonly vifname: string | null;
  readonly script: string;
  readonly ip: string | null;
  /** Backend domain name; null = dom0. */
  readonly backend: string | null;
  readonly rate: VifRate | null;
  readonly mtu: number;
  /** null = default (trusted). */
  readonly trusted: boolean | null;
  /** Keys xl accepts that xensim records but does not simulate (vlan, vid, forwarddev, colo_*). */
  readonly ignored: Readonly<Record<string, string>>;
}

export interface VifSpecError {
  readonly kind: 'vif-spec';
  readonly reason: string;
  /** The offending piece of the spec. */
  readonly near: string;
  readonly spec: string;
  readonly message: string;
}

export interface VifParseOptions {
  /** Position of the spec in the vif list: its default devid. */
  readonly index: number;
  /** Domain type: decides the default `type` (ioemu for hvm, vif otherwise). */
  readonly domainType?: 'pv' | 'pvh' | 'hvm';
  /** Random source for generated MACs (default: crypto). */
  readonly rng?: Rng;
}

export interface VifParsed {
  readonly vif: VifSpec;
  /** xl's warnings (deprecated netdev, unsupported accel). */
  readonly warnings: readonly string[];
}

/** [defaultVifName domid devid] is xl's default backend interface name, vifDOMID.DEVID. */
export function defaultVifName(domid: number, devid: number): string {
  return `vif${domid}.${devid}`;
}

/** [randomXenMac rng] is 00:16:3e:XX:XX:XX with the top bit of the fourth byte clear, as libxl generates. */
export function randomXenMac(rng: Rng = cryptoRng): string {
  const bytes = [...XEN_OUI, rng() & 0x7f, rng() & 0xff, rng() & 0xff];
  return formatMac(bytes);
}

function formatMac(bytes: readonly number[]): string {
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** [parseMac text] is the six bytes of a colon-separated MAC, or null. */
export function parseMac(text: string): number[] | null {
  if (!/^[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){5}$/.test(text)) return null;
  return text.split(':').map((g) => parseInt(g, 16));
}

const UINT32_MAX = 0xffff_ffff;

/** [parseVifRate text] is xl's reading of `rate=`, or the xl error message. */
export function parseVifRate(text: string): Result<VifRate, string> {
  const vifErr = (msg: string, what: string): Result<VifRate, string> => err(`config parsing error in vif: ${msg} in \`${what}'`);
  const at = text.indexOf('@');
  const ratePart = at < 0 ? text : text.slice(0, at);
  const intervalPart = at < 0 ? null : text.slice(at + 1);
  if (ratePart === '') return vifErr('no rate specified', text);

  const rm = /^([0-9]+)([GMK]?)([Bb])\/s$/.exec(ratePart);
  if (!rm) return vifErr('invalid rate', ratePart);
  const digits = rm[1] ?? '';
  // strtoull(p, &p, 0): a leading 0 means octal. A digit 8 or 9 would stop it early; refuse that.
  if (digits.length > 1 && digits.startsWith('0') && /[89]/.test(digits)) return vifErr('invalid rate', ratePart);
  let n = digits.length > 1 && digits.startsWith('0') ? BigInt(parseInt(digits, 8)) : BigInt(digits);
  if (n === 0n || n > BigInt(UINT32_MAX)) return vifErr('rate overflow', ratePart);
  const mult = rm[2] === 'G' ? 1_000_000_000n : rm[2] === 'M' ? 1_000_000n : rm[2] === 'K' ? 1000n : 1n;
  n *= mult;
  if (rm[3] === 'b') n /= 8n;

  let interval = BigInt(VIF_DEFAULTS.rateIntervalUsecs);
  if (intervalPart !== null) {
    const im = /^([0-9]+)([mu]?)(s?)$/.exec(intervalPart);
    if (!im) return vifErr('invalid replenishment interval', intervalPart);
    const idigits = im[1] ?? '';
    if (idigits.length > 1 && idigits.startsWith('0') && /[89]/.test(idigits)) return vifErr('invalid replenishment interval', intervalPart);
    let i = idigits.length > 1 && idigits.startsWith('0') ? BigInt(parseInt(idigits, 8)) : BigInt(idigits);
    if (i === 0n || i > BigInt(UINT32_MAX)) return vifErr('replenishment interval overflow', intervalPart);
    if (im[2] === 'm') i *= 1000n;
    else if (im[2] !== 'u') i *= 1_000_000n; // "s" or no unit at all: seconds (xl's code)
    if (i > BigInt(UINT32_MAX)) return vifErr('replenishment interval overflow', intervalPart);
    interval = i;
  }
  const perInterval = (n * interval) / 1_000_000n;
  if (n > BigInt(Number.MAX_SAFE_INTEGER) || perInterval > BigInt(Number.MAX_SAFE_INTEGER)) return vifErr('rate overflow', text);
  return ok({ text, bytesPerSecond: Number(n), intervalUsecs: Number(interval), bytesPerInterval: Number(perInterval) });
}

/** parse_ulong(): a decimal/0x/0 number that fits an unsigned long (we keep to safe integers). */
function parseUlong(text: string): number | null {
  let n: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) n = parseInt(text.slice(2), 16);
  else if (/^0[0-7]*$/.test(text)) n = text.length === 1 ? 0 : parseInt(text.slice(1), 8);
  else if (/^[1-9][0-9]*$/.test(text)) n = Number(text);
  else return null;
  return Number.isSafeInteger(n) ? n : null;
}

/**
 * [parseVifSpec spec opts] is the VifSpec a VIFSPEC string denotes, or the
 * first error (xl's wording: "Invalid parameter `mac'.", "unrecognized argument
 * `foo=bar'", "config parsing error in vif: invalid rate in `10Mbit'").
 */
export function parseVifSpec(spec: string, opts: VifParseOptions): Result<VifParsed, VifSpecError> {
  const fail = (reason: string, near: string): Result<VifParsed, VifSpecError> =>
    err({ kind: 'vif-spec', reason, near, spec, message: `${reason} (in vif spec \`${spec}')` });
  const warnings: string[] = [];
  let devid = opts.index;
  let macBytes: number[] | null = null;
  let bridge: string = VIF_DEFAULTS.bridge;
  let gatewaydev: string | null = null;
  let type: 'vif' | 'ioemu' = opts.domainType === 'hvm' ? 'ioemu' : 'vif';
  let model: string | null = null;
  let vifname: string | null = null;
  let script: string = VIF_DEFAULTS.script;
  let ip: string | null = null;
  let backend: string | null = null;
  let rate: VifRate | null = null;
  let mtu: number = VIF_DEFAULTS.mtu;
  let trusted: boolean | null = null;
  const ignored: Record<string, string> = {};

  for (const raw of spec.split(',')) {
    if (raw === '') continue; // strtok skips empty pieces
    const token = raw.replace(/^ +/, '');
    if (token === '') continue;
    const eq = token.indexOf('=');
    const key = eq < 0 ? null : token.slice(0, eq);
    const value = eq < 0 ? '' : token.slice(eq + 1);
    if (key === null) {
      if (token === 'trusted') trusted = true;
      else if (token === 'untrusted') trusted = false;
      else return fail(`unrecognized argument \`${token}'`, token);
      continue;
    }
    switch (key) {
      case 'type':
        if (value !== 'vif' && value !== 'ioemu') return fail("Invalid parameter `type'. (expected vif or ioemu)", token);
        type = value;
        break;
      case 'mac': {
        const bytes = parseMac(value);
        if (bytes === null) return fail("Invalid parameter `mac'. (expected six hex pairs separated by colons, e.g. 00:16:3e:12:34:56)", token);
        const first = bytes[0] ?? 0;
        if (bytes.some((b) => b !== 0) && (first & 1) !== 0) {
          return fail("Invalid parameter `mac'. (a multicast address: bit 0 of the first byte is set)", token);
        }
        macBytes = bytes.every((b) => b === 0) ? null : bytes; // all zero is libxl's "default"
        break;
      }
      case 'bridge':
        bridge = value;
        break;
      case 'netdev':
        warnings.push('the netdev parameter is deprecated, please use gatewaydev instead');
        gatewaydev = value;
        break;
      case 'gatewaydev':
        gatewaydev = value;
        break;
      case 'ip':
        ip = value;
        break;
      case 'script':
        script = value;
        break;
      case 'backend':
        backend = value === '' ? null : value;
        break;
      case 'vifname':
        vifname = value;
        break;
      case 'model':
        model = value;
        break;
      case 'rate': {
        const r = parseVifRate(value);
        if (!r.ok) return fail(r.error, token);
        rate = r.value;
        break;
      }
      case 'accel':
        warnings.push('the accel parameter for vifs is currently not supported');
        break;
      case 'devid': {
        const n = parseUlong(value);
        if (n === null || n > 0x7fff_ffff) return fail(`Invalid parameter \`devid': \`${value}' is not a valid number`, token);
        devid = n;
        break;
      }
      case 'mtu': {
        const n = parseUlong(value);
        if (n === null) return fail(`Invalid parameter \`mtu': \`${value}' is not a valid number`, token);
        if (n < 68 || n > 65535) return fail(`Invalid parameter \`mtu': ${n} is outside 68..65535`, token);
        mtu = n;
        break;
      }
      case 'vlan':
      case 'vid':
      case 'forwarddev':
        ignored[key] = value;
        break;
      default:
        if (key.startsWith('colo_')) {
          ignored[key] = value;
          break;
        }
        return fail(`unrecognized argument \`${token}'`, token);
    }
  }
  if (type === 'ioemu' && model === null && opts.domainType === 'hvm') model = VIF_DEFAULTS.hvmModel;
  const mac = macBytes === null ? randomXenMac(opts.rng) : formatMac(macBytes);
  return ok({
    vif: {
      spec, devid, mac, mac_generated: macBytes === null, bridge, gatewaydev, type, model, vifname, script, ip, backend,
      rate, mtu, trusted, ignored,
    },
    warnings,
  });
}
