/**
 * xl domain configuration files (xl.cfg(5)), parsed as xl's libxlu does
 * (tools/libs/util/libxlu_cfg_l.l, libxlu_cfg_y.y, libxlu_cfg.c) and then read
 * into a typed DomainConfig the way tools/xl/xl_parse.c reads the settings.
 *
 * The grammar:
 *
 *   file       := { stmt } [ assignment ]
 *   stmt       := assignment endstmt | endstmt
 *   endstmt    := NEWLINE | ';'
 *   assignment := IDENT '=' value | IDENT '+=' value
 *   value      := STRING | NUMBER | '[' nl* [ value nl* { ',' nl* value nl* } [ ',' nl* ] ] ']'
 *
 *   IDENT   [a-z][_0-9a-z]*            (lower case only)
 *   NUMBER  [0-9][0-9a-fx]*            (read later with strtol base 0: 42, 052, 0x2a)
 *   STRING  '...' or "..." on one line; escapes \" \' \\ \a \b \f \n \r \t \v \xHH \OOO
 *   `#` to the end of the line is a comment; blanks and tabs separate tokens.
 *
 * A NUMBER and a STRING are both "atoms": `memory = "512"` is a number to xl
 * and `name = 42` is a string. Later settings of a key override earlier ones;
 * `key += value` appends to the previous string or list. BOOLEANs are numbers
 * (0 false, anything else true).
 *
 * Deviations from xl, all deliberate: the first error stops the parse (xl
 * goes on and reports cascades); a comment on the last line needs no newline;
 * the numeric string escapes \xHH and \OOO produce the character they denote
 * (xl's dequoting drops them); `type=` must be spelt in full (xl accepts any
 * prefix: "h" is hvm); settings xl would only warn about and then ignore (a
 * list where a number is needed, a non-number for memory) are errors here.
 *
 * Keys read into DomainConfig (units as in xl.cfg): name (mandatory), type
 * (pv|pvh|hvm, default pv; deprecated builder=generic|hvm), memory and maxmem
 * (MiB; default 32, maxmem defaults to memory and must be ≥ it), vcpus
 * (default 1), maxvcpus (default vcpus, must be ≥ it), on_poweroff (destroy),
 * on_reboot (restart), on_crash (destroy), on_watchdog (destroy),
 * on_soft_reset (soft-reset), uuid, disk=[DISKSPEC...], vif=[VIFSPEC...],
 * driver_domain (BOOLEAN: this domain runs backends for others; an xl key),
 * max_grant_frames, max_maptrack_frames.
 *
 * xensim extension:
 *   memory_model = "pm" | "p2m" | "vp"   how the domain's pseudo-physical
 *       frames relate to machine frames: pm = P==M (identity, like a
 *       direct-mapped Arm dom0), p2m = a guest-maintained pfn→mfn table (x86
 *       PV), vp = Xen-maintained translation (auto-translated: PVH, HVM).
 *       Default: p2m for pv, vp for pvh and hvm.
 *
 * Other xl keys (kernel, cmdline, cpus, pool, ...) are kept in `other`
 * without comment; keys xl does not know are kept too, with a warning (and a
 * did-you-mean when one is close).
 */
import { readFileSync } from 'node:fs';
import type { MemoryModel } from '../../shared/abi/machine.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { parseDiskSpec, type DiskSpec } from './diskspec.ts';
import { parseVifSpec, type Rng, type VifSpec } from './vifspec.ts';

// ---- values and settings ----------------------------------------------------

/** Where something is in the source: 1-based line and column. */
export interface SourcePos {
  readonly line: number;
  readonly column: number;
}

export type CfgValue =
  | (SourcePos & { readonly kind: 'atom'; readonly text: string; readonly quoted: boolean })
  | (SourcePos & { readonly kind: 'list'; readonly items: readonly CfgValue[] });

/** A value without positions: an atom's text, or a list of them. */
export type CfgPlain = string | readonly CfgPlain[];

/** [plainValue v] drops positions: atoms become their text, lists arrays. */
export function plainValue(v: CfgValue): CfgPlain {
  return v.kind === 'atom' ? v.text : v.items.map(plainValue);
}

export interface CfgSetting extends SourcePos {
  readonly name: string;
  readonly op: '=' | '+=';
  readonly value: CfgValue;
}

/** One message about the source, xl style: "domu.cfg:3:10: parameter `memory' is not a valid number: `12x'". */
export interface CfgDiagnostic extends SourcePos {
  readonly severity: 'error' | 'warning';
  readonly source: string;
  readonly message: string;
  /** The offending text, when there is one. */
  readonly near: string | null;
}

export interface CfgError {
  readonly kind: 'xl-config';
  readonly diagnostics: readonly CfgDiagnostic[];
  /** Printable: each diagnostic on its own line, then any hints. */
  readonly message: string;
}

export function formatDiagnostic(d: CfgDiagnostic): string {
  const where = d.line > 0 ? `${d.source}:${d.line}:${d.column}` : d.source;
  return `${where}: ${d.severity === 'warning' ? 'warning: ' : ''}${d.message}`;
}

function cfgError(diags: readonly CfgDiagnostic[], hints: readonly string[] = []): CfgError {
  return { kind: 'xl-config', diagnostics: diags, message: [...diags.map(formatDiagnostic), ...hints].join('\n') };
}

// ---- lexer --------------------------------------------------------------------

type TokKind = 'IDENT' | 'STRING' | 'NUMBER' | 'NEWLINE' | '+=' | '=' | ';' | '[' | ']' | ',' | 'EOF';

interface Token extends SourcePos {
  readonly kind: TokKind;
  /** Source text of the token (for messages). */
  readonly raw: string;
  /** Dequoted string, or the identifier/number text. */
  readonly value: string;
}

const TOKEN_NAMES: Record<TokKind, string> = {
  IDENT: 'IDENT', STRING: 'STRING', NUMBER: 'NUMBER', NEWLINE: 'NEWLINE', '+=': '"+="',
  '=': "'='", ';': "';'", '[': "'['", ']': "']'", ',': "','", EOF: 'end of file',
};

class CfgSyntaxError extends Error {
  constructor(
    readonly pos: SourcePos,
    readonly near: string | null,
    readonly reason: string,
    readonly likelyPython: boolean,
  ) {
    super(reason);
  }
}

/** Dequotes a string token body (between the quotes). */
function dequote(body: string, pos: SourcePos): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i] ?? '';
    if (c !== '\\') {
      out += c;
      continue;
    }
    const nc = body[++i] ?? '';
    const simple: Record<string, string> = { '"': '"', "'": "'", '\\': '\\', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };
    const s = simple[nc];
    if (s !== undefined) {
      out += s;
    } else if (nc === 'x') {
      const hex = /^[0-9a-fA-F]{2}/.exec(body.slice(i + 1))?.[0];
      if (hex === undefined) {
        throw new CfgSyntaxError(pos, `\\x${body.slice(i + 1, i + 3)}`, 'invalid digit after backslash hex numerical character escape in quoted string', false);
      }
      out += String.fromCharCode(parseInt(hex, 16));
      i += 2;
    } else if (nc >= '0' && nc <= '7') {
      const oct = /^[0-7]{1,3}/.exec(body.slice(i))?.[0] ?? nc;
      out += String.fromCharCode(parseInt(oct, 8) & 0xff);
      i += oct.length - 1;
    } else {
      throw new CfgSyntaxError(pos, `\\${nc}`, 'invalid character after backlash in quoted string', false);
    }
  }
  return out;
}

function lex(text: string): Token[] {
  const toks: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const pos = (at: number): SourcePos => ({ line, column: at - lineStart + 1 });
  while (i < text.length) {
    const c = text[i] ?? '';
    const p = pos(i);
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    if (c === '\n' || c === '#') {
      let j = i;
      if (c === '#') while (j < text.length && text[j] !== '\n') j++;
      // A trailing comment without a newline is accepted (xl would call it a lexical error).
      toks.push({ kind: 'NEWLINE', raw: text.slice(i, j), value: '\n', ...p });
      i = j + 1;
      line++;
      lineStart = i;
      continue;
    }
    let m: RegExpExecArray | null;
    const rest = text.slice(i);
    if ((m = /^[a-z][_0-9a-z]*/.exec(rest))) {
      toks.push({ kind: 'IDENT', raw: m[0], value: m[0], ...p });
      i += m[0].length;
      continue;
    }
    if ((m = /^[0-9][0-9a-fx]*/.exec(rest))) {
      toks.push({ kind: 'NUMBER', raw: m[0], value: m[0], ...p });
      i += m[0].length;
      continue;
    }
    if ((m = /^'(?:[^'\\\n]|\\.)*'/.exec(rest) ?? /^"(?:[^"\\\n]|\\.)*"/.exec(rest))) {
      toks.push({ kind: 'STRING', raw: m[0], value: dequote(m[0].slice(1, -1), p), ...p });
      i += m[0].length;
      continue;
    }
    if (rest.startsWith('+=')) {
      toks.push({ kind: '+=', raw: '+=', value: '+=', ...p });
      i += 2;
      continue;
    }
    if (c === '=' || c === ';' || c === '[' || c === ']' || c === ',') {
      toks.push({ kind: c, raw: c, value: c, ...p });
      i++;
      continue;
    }
    // <lexerr>: the offending character and what follows it up to a blank.
    const near = /^[^ \t\n]*/.exec(rest)?.[0] || c;
    let reason = 'lexical error';
    if (c === '"' || c === "'") reason += ' (unterminated string: a string must end on the line it starts)';
    else if (c === '\r') reason += ' (carriage return: the file has DOS line endings)';
    else if (/[A-Z]/.test(c)) reason += ' (keys are lower case)';
    throw new CfgSyntaxError(p, near === '\r' ? '\\r' : near, reason, /[-+.():]/.test(c));
  }
  toks.push({ kind: 'EOF', raw: '', value: '', ...pos(i) });
  return toks;
}

// ---- parser -----------------------------------------------------------------

class Parser {
  private i = 0;
  constructor(private readonly toks: readonly Token[]) {}

  private peek(): Token {
    const t = this.toks[this.i] ?? this.toks[this.toks.length - 1];
    if (t === undefined) throw new Error('unreachable: empty token stream');
    return t;
  }
  private next(): Token {
    const t = this.peek();
    if (t.kind !== 'EOF') this.i++;
    return t;
  }
  private unexpected(t: Token, expecting: readonly TokKind[]): CfgSyntaxError {
    const near = t.kind === 'NEWLINE' ? '<newline>' : t.kind === 'EOF' ? '<end of file>' : t.raw;
    const exp = expecting.map((k) => TOKEN_NAMES[k]).join(' or ');
    return new CfgSyntaxError(t, near, `syntax error, unexpected ${TOKEN_NAMES[t.kind]}, expecting ${exp}`, false);
  }
  private skipNewlines(): void {
    while (this.peek().kind === 'NEWLINE') this.next();
  }

  parseFile(): CfgSetting[] {
    const out: CfgSetting[] = [];
    for (;;) {
      const t = this.next();
      if (t.kind === 'EOF') return out;
      if (t.kind === 'NEWLINE' || t.kind === ';') continue;
      if (t.kind !== 'IDENT') throw this.unexpected(t, ['IDENT', 'NEWLINE', ';']);
      const op = this.next();
      if (op.kind !== '=' && op.kind !== '+=') throw this.unexpected(op, ['=', '+=']);
      const value = this.parseValue();
      out.push({ name: t.value, op: op.kind, value, line: t.line, column: t.column });
      const end = this.next();
      if (end.kind !== 'NEWLINE' && end.kind !== ';' && end.kind !== 'EOF') throw this.unexpected(end, ['NEWLINE', ';']);
      if (end.kind === 'EOF') return out;
    }
  }

  private parseValue(): CfgValue {
    const t = this.next();
    if (t.kind === 'STRING' || t.kind === 'NUMBER') {
      return { kind: 'atom', text: t.value, quoted: t.kind === 'STRING', line: t.line, column: t.column };
    }
    if (t.kind !== '[') throw this.unexpected(t, ['STRING', 'NUMBER', '[']);
    const items: CfgValue[] = [];
    this.skipNewlines();
    if (this.peek().kind === ']') {
      this.next();
      return { kind: 'list', items, line: t.line, column: t.column };
    }
    for (;;) {
      const k = this.peek().kind;
      if (k !== 'STRING' && k !== 'NUMBER' && k !== '[') throw this.unexpected(this.peek(), ['STRING', 'NUMBER', '[', ']']);
      items.push(this.parseValue());
      this.skipNewlines();
      const sep = this.next();
      if (sep.kind === ']') return { kind: 'list', items, line: t.line, column: t.column };
      if (sep.kind !== ',') throw this.unexpected(sep, [',', ']']);
      this.skipNewlines();
      if (this.peek().kind === ']') {
        this.next();
        return { kind: 'list', items, line: t.line, column: t.column };
      }
    }
  }
}

const PYTHON_HINT = [
  'warning: Config file looks like it contains Python code.',
  'warning:  Arbitrary Python is no longer supported.',
  'warning:  See https://wiki.xen.org/wiki/PythonInXlConfig',
];

/**
 * [parseXlCfgSettings text source] is the list of settings in file order
 * (each `+=` already folded into its value), or the first syntax error.
 */
export function parseXlCfgSettings(text: string, source: string): Result<CfgSetting[], CfgError> {
  let raw: CfgSetting[];
  try {
    raw = new Parser(lex(text)).parseFile();
  } catch (e) {
    if (!(e instanceof CfgSyntaxError)) throw e;
    const near = e.near === null ? '' : e.near.startsWith('<') ? ` near ${e.near}` : ` near \`${e.near}'`;
    const d: CfgDiagnostic = { severity: 'error', source, line: e.pos.line, column: e.pos.column, message: `config parsing error${near}: ${e.reason}`, near: e.near };
    return err(cfgError([d], e.likelyPython ? PYTHON_HINT : []));
  }
  // `+=` concatenates with the most recent setting of the same name (xlu__cfg_set_store).
  const latest = new Map<string, CfgSetting>();
  const out: CfgSetting[] = [];
  for (const s of raw) {
    let set = s;
    const prev = latest.get(s.name);
    if (s.op === '+=' && prev !== undefined) {
      const a = prev.value;
      const b = s.value;
      if (a.kind !== b.kind) {
        const d: CfgDiagnostic = { severity: 'error', source, line: s.line, column: s.column, message: `config parsing error near \`${s.name}': can't add [list] to "string" or vice versa`, near: s.name };
        return err(cfgError([d]));
      }
      const value: CfgValue =
        a.kind === 'atom' && b.kind === 'atom'
          ? { ...b, text: a.text + b.text }
          : a.kind === 'list' && b.kind === 'list'
            ? { ...b, items: [...a.items, ...b.items] }
            : b;
      set = { ...s, value };
    }
    latest.set(s.name, set);
    out.push(set);
  }
  return ok(out);
}

// ---- the domain configuration ----------------------------------------------

export const DOMAIN_TYPES = ['pv', 'pvh', 'hvm'] as const;
export type DomainType = (typeof DOMAIN_TYPES)[number];
/** The machine's memory models (shared/abi/machine.ts MEMORY_MODEL), as config values. */
export const MEMORY_MODELS = ['pm', 'p2m', 'vp'] as const satisfies readonly MemoryModel[];
export type { MemoryModel };
export const SHUTDOWN_ACTIONS = ['destroy', 'restart', 'rename-restart', 'preserve', 'coredump-destroy', 'coredump-restart', 'soft-reset'] as const;
export type ShutdownAction = (typeof SHUTDOWN_ACTIONS)[number];

/** xl's defaults (xl_parse.c, libxl's build-info defaults). */
export const DOMAIN_DEFAULTS = {
  type: 'pv' as DomainType,
  /** MiB, libxl's default when neither memory nor maxmem is given. */
  memory: 32,
  vcpus: 1,
  on_poweroff: 'destroy' as ShutdownAction,
  on_reboot: 'restart' as ShutdownAction,
  on_crash: 'destroy' as ShutdownAction,
  on_watchdog: 'destroy' as ShutdownAction,
  on_soft_reset: 'soft-reset' as ShutdownAction,
} as const;

/** [defaultMemoryModel type] is p2m for PV guests and vp (auto-translated) for PVH and HVM. */
export function defaultMemoryModel(type: DomainType): MemoryModel {
  return type === 'pv' ? 'p2m' : 'vp';
}

export interface DomainConfig {
  readonly name: string;
  readonly type: DomainType;
  /** MiB at start. */
  readonly memory: number;
  /** MiB the guest may ever have (≥ memory; larger = started pre-ballooned). */
  readonly maxmem: number;
  readonly vcpus: number;
  readonly maxvcpus: number;
  readonly on_poweroff: ShutdownAction;
  readonly on_reboot: ShutdownAction;
  readonly on_crash: ShutdownAction;
  readonly on_watchdog: ShutdownAction;
  readonly on_soft_reset: ShutdownAction;
  /** As written (lower-cased); null = generate one at creation. */
  readonly uuid: string | null;
  readonly disk: readonly DiskSpec[];
  readonly vif: readonly VifSpec[];
  /** xensim extension, see the file comment. */
  readonly memory_model: MemoryModel;
  readonly driver_domain: boolean;
  /** Grant table size in frames; null = the toolstack default. */
  readonly max_grant_frames: number | null;
  readonly max_maptrack_frames: number | null;
  /** Other settings, kept as parsed (xl keys xensim does not model, and unknown keys). */
  readonly other: Readonly<Record<string, CfgPlain>>;
}

export interface ParsedDomainConfig {
  readonly config: DomainConfig;
  readonly warnings: readonly CfgDiagnostic[];
}

export interface XlCfgOptions {
  /** Name used in messages (a file path). Default "<config>". */
  readonly source?: string;
  /** Random source for generated vif MACs (see vifspec.ts seededRng). */
  readonly rng?: Rng;
}

/** xl.cfg keys that xensim knows are xl's but does not model; kept in `other` without a warning. */
const OTHER_XL_KEYS = [
  'kernel', 'ramdisk', 'cmdline', 'root', 'extra', 'bootloader', 'bootloader_args', 'firmware', 'pvshim', 'pvshim_path',
  'pvshim_cmdline', 'pvshim_extra', 'cpus', 'cpus_soft', 'pool', 'cpu_weight', 'cap', 'period', 'slice', 'latency',
  'extratime', 'seclabel', 'init_seclabel', 'device_model_stubdomain_seclabel', 'hap', 'oos', 'vnuma', 'vuart',
  'max_event_channels', 'e820_host', 'pci', 'dtdev', 'passthrough', 'shadow_memory', 'nomigrate', 'tsc_mode',
  'rtc_timeoffset', 'vncviewer', 'localtime', 'videoram', 'vfb', 'vkb', 'vtpm', 'p9', 'pvcalls', 'vdispl', 'vsnd',
  'channel', 'usbctrl', 'usbdev', 'iomem', 'ioports', 'irqs', 'acpi', 'acpi_s3', 'acpi_s4', 'apic', 'pae', 'hpet',
  'viridian', 'nestedhvm', 'vga', 'stdvga', 'vnc', 'vnclisten', 'vncdisplay', 'vncunused', 'vncpasswd', 'keymap',
  'sdl', 'opengl', 'serial', 'boot', 'usb', 'usbdevice', 'usbversion', 'soundhw', 'xen_platform_pci', 'device_model_version',
  'device_model_override', 'device_model_args', 'device_model_args_pv', 'device_model_args_hvm', 'gfx_passthru',
  'claim_mode', 'vpmu', 'altp2m', 'altp2mhvm', 'cpuid', 'mca_caps', 'msr_relaxed', 'smbios_firmware', 'acpi_firmware',
  'ms_vm_genid', 'nographic', 'timer_mode', 'vcpu_hard_affinity', 'vcpu_soft_affinity', 'mmio_hole', 'rdm', 'rdm_mem_boundary',
  'spice', 'bios', 'trap_unmapped_accesses', 'gic_version', 'tee', 'nr_spis', 'llc_colors', 'dm_restrict',
  'device_model_user', 'max_grant_version', 'vmtrace_buf_kb', 'xend_config_format',
] as const;

/** Keys this module reads. */
const MODELLED_KEYS = [
  'name', 'type', 'builder', 'memory', 'maxmem', 'vcpus', 'maxvcpus', 'on_poweroff', 'on_reboot', 'on_crash',
  'on_watchdog', 'on_soft_reset', 'uuid', 'disk', 'vif', 'memory_model', 'driver_domain', 'max_grant_frames',
  'max_maptrack_frames',
] as const;

/** Levenshtein distance (as fio's and git's did-you-mean use). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, sub));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** [closest name candidates] is the nearest candidate within half the name's length, or null. */
export function closest(name: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== null && bestD <= Math.ceil(name.length / 2) ? best : null;
}

/** Reads settings into a DomainConfig; every check records an error and returns null. */
class Reader {
  readonly errors: CfgDiagnostic[] = [];
  readonly warnings: CfgDiagnostic[] = [];
  private readonly byName = new Map<string, CfgSetting>();

  constructor(
    private readonly source: string,
    readonly settings: readonly CfgSetting[],
  ) {
    for (const s of settings) this.byName.set(s.name, s); // the last setting wins
  }

  get(name: string): CfgSetting | undefined {
    return this.byName.get(name);
  }

  fail(at: SourcePos | null, message: string, near: string | null = null): null {
    this.errors.push({ severity: 'error', source: this.source, line: at?.line ?? 0, column: at?.column ?? 0, message, near });
    return null;
  }
  warn(at: SourcePos | null, message: string, near: string | null = null): void {
    this.warnings.push({ severity: 'warning', source: this.source, line: at?.line ?? 0, column: at?.column ?? 0, message, near });
  }

  /** xlu_cfg_get_string: a single atom. */
  string(name: string): string | null {
    const s = this.get(name);
    if (s === undefined) return null;
    if (s.value.kind !== 'atom') return this.fail(s.value, `parameter \`${name}' is a list but should be a single value`);
    return s.value.text;
  }

  /** xlu_cfg_get_bounded_long: strtol(text, 0) of a single atom, within [min, max]. */
  long(name: string, min: number, max: number): number | null {
    const s = this.get(name);
    if (s === undefined) return null;
    if (s.value.kind !== 'atom') return this.fail(s.value, `parameter \`${name}' is a list but should be a single value`);
    if (s.op === '+=') return this.fail(s, `can't use += with numbers for parameter \`${name}'`);
    const text = s.value.text;
    const m = /^[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
    if (!m) return this.fail(s.value, `parameter \`${name}' is not a valid number: \`${text}'`, text);
    const body = m[2] ?? '';
    const mag = body.startsWith('0x') || body.startsWith('0X') ? Number.parseInt(body.slice(2), 16) : body.length > 1 && body.startsWith('0') ? Number.parseInt(body.slice(1), 8) : Number(body);
    const n = m[1] === '-' ? -mag : mag;
    if (!Number.isSafeInteger(n)) {
      return this.fail(s.value, `parameter \`${name}' could not be parsed as a number: Numerical result out of range: \`${text}'`, text);
    }
    if (n < min) return this.fail(s.value, `value \`${n}' is smaller than minimum bound '${min}' for parameter \`${name}'`, text);
    if (n > max) return this.fail(s.value, `value \`${n}' is greater than maximum bound '${max}' for parameter \`${name}'`, text);
    return n;
  }

  /** xlu_cfg_get_list: a list of atoms (a non-string item is an error here; xl silently stops at it). */
  stringList(name: string): { text: string; at: SourcePos }[] | null {
    const s = this.get(name);
    if (s === undefined) return null;
    if (s.value.kind !== 'list') return this.fail(s.value, `parameter \`${name}' is a single value but should be a list`, s.value.text);
    const out: { text: string; at: SourcePos }[] = [];
    for (const item of s.value.items) {
      if (item.kind !== 'atom') return this.fail(item, `value is not a string (in \`${name}')`);
      out.push({ text: item.text, at: item });
    }
    return out;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], dflt: T, message: (v: string) => string): T {
    const v = this.string(name);
    if (v === null) return dflt;
    if ((allowed as readonly string[]).includes(v)) return v as T;
    const at = this.get(name)?.value ?? null;
    this.fail(at, message(v), v);
    return dflt;
  }
}

/**
 * [parseXlCfg text opts] is the DomainConfig an xl.cfg text describes, with the
 * warnings xl would print (unknown keys, deprecated syntax), or every error
 * found in reading the settings (a syntax error stops at the first).
 */
export function parseXlCfg(text: string, opts: XlCfgOptions = {}): Result<ParsedDomainConfig, CfgError> {
  const source = opts.source ?? '<config>';
  const parsed = parseXlCfgSettings(text, source);
  if (!parsed.ok) return parsed;
  const r = new Reader(source, parsed.value);

  // type, and the deprecated builder
  let type = r.oneOf('type', DOMAIN_TYPES, DOMAIN_DEFAULTS.type, (v) => `Invalid domain type ${v}. (expected pv, pvh or hvm)`);
  const builder = r.string('builder');
  if (builder !== null) {
    const at = r.get('builder')?.value ?? null;
    const bt: DomainType | null = builder === 'hvm' ? 'hvm' : builder === 'generic' ? 'pv' : null;
    if (bt === null) r.fail(at, `Invalid domain type ${builder}. (builder= takes generic or hvm; it is deprecated: use type=)`, builder);
    else if (r.get('type') !== undefined && bt !== type) r.fail(at, 'Contradicting "builder" and "type" options specified.', builder);
    else {
      type = bt;
      r.warn(at, 'the builder option is deprecated; use type="' + bt + '"');
    }
  }

  const name = r.string('name');
  if (r.get('name') === undefined) r.fail(null, 'Domain name must be specified.');
  else if (name === '') r.fail(r.get('name')?.value ?? null, 'Domain name must not be empty.');

  const uuid = r.string('uuid');
  if (uuid !== null && !/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(uuid)) {
    r.fail(r.get('uuid')?.value ?? null, `Failed to parse UUID: ${uuid}`, uuid);
  }

  const LONG_MAX = Number.MAX_SAFE_INTEGER;
  const memory0 = r.long('memory', 1, LONG_MAX);
  const maxmem0 = r.long('maxmem', 1, LONG_MAX);
  const memory = memory0 ?? maxmem0 ?? DOMAIN_DEFAULTS.memory;
  const maxmem = maxmem0 ?? memory;
  if (maxmem < memory) {
    r.fail(r.get('maxmem')?.value ?? null, `maxmem=${maxmem} is less than memory=${memory}: maxmem must be equal to or greater than memory`, String(maxmem));
  }
  const vcpus = r.long('vcpus', 1, 4096) ?? DOMAIN_DEFAULTS.vcpus;
  const maxvcpus = r.long('maxvcpus', 1, 4096) ?? vcpus;
  if (maxvcpus < vcpus) r.fail(r.get('maxvcpus')?.value ?? null, `xl: maxvcpus < vcpus (maxvcpus=${maxvcpus}, vcpus=${vcpus})`, String(maxvcpus));

  const action = (key: 'on_poweroff' | 'on_reboot' | 'on_crash' | 'on_watchdog' | 'on_soft_reset'): ShutdownAction =>
    r.oneOf(key, SHUTDOWN_ACTIONS, DOMAIN_DEFAULTS[key], (v) => `Unknown ${key} action "${v}" specified (expected ${SHUTDOWN_ACTIONS.join('|')})`);

  const memory_model = r.oneOf('memory_model', MEMORY_MODELS, defaultMemoryModel(type), (v) => `Invalid memory_model "${v}" (expected pm, p2m or vp)`);
  const dd = r.long('driver_domain', Number.MIN_SAFE_INTEGER, LONG_MAX);
  const max_grant_frames = r.long('max_grant_frames', 1, 0xffff_ffff);
  const max_maptrack_frames = r.long('max_maptrack_frames', 0, 0xffff_ffff);

  // disks
  const disks: DiskSpec[] = [];
  const byDevid = new Map<number, string>();
  for (const item of r.stringList('disk') ?? []) {
    const d = parseDiskSpec(item.text);
    if (!d.ok) {
      r.fail(item.at, d.error.message, d.error.near);
      continue;
    }
    const dup = byDevid.get(d.value.devid);
    if (dup !== undefined) {
      r.fail(item.at, `duplicate virtual device: \`${d.value.vdev}' (device number ${d.value.devid}) is already used by disk \`${dup}'`, d.value.vdev);
      continue;
    }
    byDevid.set(d.value.devid, item.text);
    if (d.value.deprecated.length > 0) {
      r.warn(item.at, `deprecated disk syntax ${d.value.deprecated.map((x) => `\`${x}'`).join(', ')} in \`${item.text}' (see xl-disk-configuration(5))`);
    }
    disks.push(d.value);
  }

  // vifs
  const vifs: VifSpec[] = [];
  const vifDevids = new Map<number, number>();
  const macs = new Map<string, number>();
  for (const [idx, item] of (r.stringList('vif') ?? []).entries()) {
    const v = parseVifSpec(item.text, { index: idx, domainType: type, ...(opts.rng ? { rng: opts.rng } : {}) });
    if (!v.ok) {
      r.fail(item.at, v.error.message, v.error.near);
      continue;
    }
    for (const w of v.value.warnings) r.warn(item.at, w);
    const vif = v.value.vif;
    const prevDev = vifDevids.get(vif.devid);
    if (prevDev !== undefined) {
      r.fail(item.at, `duplicate vif devid ${vif.devid} (vif ${prevDev} and vif ${idx})`, item.text);
      continue;
    }
    const prevMac = macs.get(vif.mac);
    if (prevMac !== undefined) {
      r.fail(item.at, `duplicate MAC address ${vif.mac} (vif ${prevMac} and vif ${idx})`, item.text);
      continue;
    }
    vifDevids.set(vif.devid, idx);
    macs.set(vif.mac, idx);
    if ((vif.type === 'ioemu' || vif.model !== null) && type !== 'hvm') {
      r.warn(item.at, `type=ioemu and model= apply to HVM guests only; ignored for a ${type} guest`);
    }
    vifs.push(vif);
  }

  // everything else
  const other: Record<string, CfgPlain> = {};
  const known = new Set<string>([...MODELLED_KEYS, ...OTHER_XL_KEYS]);
  const seen = new Set<string>();
  for (const s of r.settings) {
    if ((MODELLED_KEYS as readonly string[]).includes(s.name)) continue;
    other[s.name] = plainValue(r.get(s.name)?.value ?? s.value);
    if (!known.has(s.name) && !seen.has(s.name)) {
      const guess = closest(s.name, [...known]);
      r.warn(s, `unknown key \`${s.name}' (kept, ignored by xensim)${guess === null ? '' : `; did you mean \`${guess}'?`}`, s.name);
    }
    seen.add(s.name);
  }

  const config: DomainConfig = {
    name: name ?? '',
    type,
    memory,
    maxmem,
    vcpus,
    maxvcpus,
    on_poweroff: action('on_poweroff'),
    on_reboot: action('on_reboot'),
    on_crash: action('on_crash'),
    on_watchdog: action('on_watchdog'),
    on_soft_reset: action('on_soft_reset'),
    uuid: uuid === null ? null : uuid.toLowerCase(),
    disk: disks,
    vif: vifs,
    memory_model,
    driver_domain: dd !== null && dd !== 0,
    max_grant_frames,
    max_maptrack_frames,
    other,
  };
  if (r.errors.length > 0) {
    const sorted = [...r.errors].sort((a, b) => a.line - b.line || a.column - b.column);
    return err(cfgError(sorted));
  }
  return ok({ config, warnings: r.warnings });
}

/** [readXlCfgFile path opts] reads and parses a file; an unreadable file is an error like xl's. */
export function readXlCfgFile(path: string, opts: Omit<XlCfgOptions, 'source'> & { source?: string } = {}): Result<ParsedDomainConfig, CfgError> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'No such file or directory' : code === 'EACCES' ? 'Permission denied' : code === 'EISDIR' ? 'Is a directory' : String(e);
    const d: CfgDiagnostic = { severity: 'error', source: path, line: 0, column: 0, message: `unable to open configuration file: ${why}`, near: null };
    return err(cfgError([d]));
  }
  return parseXlCfg(text, { ...opts, source: opts.source ?? path });
}
