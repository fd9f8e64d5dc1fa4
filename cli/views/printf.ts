/**
 * A C printf work-alike, so the text views can be written with the very
 * format strings xl and xentop use (cited in each view) and print the same
 * bytes as glibc on x86-64 Linux (LP64: int 32 bits, long and long long 64).
 *
 * Supported: flags `- + space # 0`; width and precision as digits or `*`;
 * length modifiers hh h l ll L q j z t; conversions d i u o x X c s f F %.
 * Anything else (e, g, a, p, n, …) is a bug in our own format string and
 * throws InvariantError, as does an argument of the wrong type.
 *
 * Exactness notes:
 * - Integers wrap to the length modifier's width, as C's conversion would
 *   (`%d` of 2^31 prints -2147483648; `%u` of -1 prints 4294967295).
 * - `%f` prints the exact decimal value of the double rounded half-to-even,
 *   as glibc does (`%.0f` of 2.5 is "2", `%.1f` of 0.25 is "0.2"), which
 *   Number.prototype.toFixed does not.
 * - Widths and precisions of `%s` count UTF-8 bytes, as C does; a precision
 *   never splits a character (C could; a JS string cannot hold half of one).
 */
import { InvariantError } from '../../shared/invariant.ts';

export type PrintfArg = number | bigint | string;

type Length = '' | 'hh' | 'h' | 'l' | 'll' | 'L' | 'q' | 'j' | 'z' | 't';

interface Spec {
  minus: boolean;
  plus: boolean;
  space: boolean;
  hash: boolean;
  zero: boolean;
  width: number;
  /** -1 when absent. */
  precision: number;
  length: Length;
  conv: string;
}

const SPEC_RE = /%([-+ #0]*)(\*|\d+)?(?:\.(\*|\d*))?(hh|h|ll|l|L|q|j|z|t)?([a-zA-Z%])/g;

/** [sprintf fmt args] is what C's sprintf(fmt, args...) would write (see the file comment for what is supported). */
export function sprintf(fmt: string, ...args: readonly PrintfArg[]): string {
  let ai = 0;
  const next = (what: string): PrintfArg => {
    if (ai >= args.length) throw new InvariantError(`printf: too few arguments for ${JSON.stringify(fmt)} (wanted ${what})`);
    return args[ai++] as PrintfArg;
  };
  const out = fmt.replace(SPEC_RE, (_m, flags: string, w: string | undefined, p: string | undefined, len: string | undefined, conv: string) => {
    if (conv === '%') return '%';
    const spec: Spec = {
      minus: flags.includes('-'),
      plus: flags.includes('+'),
      space: flags.includes(' '),
      hash: flags.includes('#'),
      zero: flags.includes('0'),
      width: 0,
      precision: -1,
      length: (len ?? '') as Length,
      conv,
    };
    if (w === '*') {
      const v = intArg(next('* width'), fmt);
      if (v < 0) { spec.minus = true; spec.width = -v; } else spec.width = v;
    } else if (w !== undefined) spec.width = Number(w);
    if (p === '*') {
      const v = intArg(next('* precision'), fmt);
      spec.precision = v < 0 ? -1 : v;
    } else if (p !== undefined) spec.precision = p === '' ? 0 : Number(p);
    return convert(spec, next(`%${conv}`), fmt);
  });
  if (ai !== args.length) throw new InvariantError(`printf: ${args.length - ai} unused argument(s) for ${JSON.stringify(fmt)}`);
  return out;
}

function intArg(a: PrintfArg, fmt: string): number {
  if (typeof a === 'bigint') return Number(BigInt.asIntN(32, a));
  if (typeof a === 'number' && Number.isInteger(a)) return a | 0;
  throw new InvariantError(`printf: * wants an int, got ${String(a)} in ${JSON.stringify(fmt)}`);
}

function convert(s: Spec, a: PrintfArg, fmt: string): string {
  switch (s.conv) {
    case 'd': case 'i': case 'u': case 'o': case 'x': case 'X':
      return integer(s, a, fmt);
    case 'c':
      return character(s, a, fmt);
    case 's':
      if (typeof a !== 'string') throw new InvariantError(`printf: %s wants a string, got ${typeof a} in ${JSON.stringify(fmt)}`);
      return pad(s, truncateUtf8(a, s.precision), '', false);
    case 'f': case 'F':
      if (typeof a !== 'number') throw new InvariantError(`printf: %${s.conv} wants a number, got ${typeof a} in ${JSON.stringify(fmt)}`);
      return fixed(s, a);
    default:
      throw new InvariantError(`printf: conversion %${s.conv} is not supported (in ${JSON.stringify(fmt)})`);
  }
}

function bitsOf(length: Length): number {
  switch (length) {
    case 'hh': return 8;
    case 'h': return 16;
    case '': return 32;
    default: return 64; // l ll L q j z t: 64-bit on LP64
  }
}

function integer(s: Spec, a: PrintfArg, fmt: string): string {
  let v: bigint;
  if (typeof a === 'bigint') v = a;
  else if (typeof a === 'number' && Number.isInteger(a)) v = BigInt(a);
  else throw new InvariantError(`printf: %${s.conv} wants an integer, got ${String(a)} in ${JSON.stringify(fmt)}`);
  const bits = bitsOf(s.length);
  const signed = s.conv === 'd' || s.conv === 'i';
  v = signed ? BigInt.asIntN(bits, v) : BigInt.asUintN(bits, v);
  const neg = v < 0n;
  const mag = neg ? -v : v;
  const base = s.conv === 'o' ? 8 : s.conv === 'x' || s.conv === 'X' ? 16 : 10;
  let digits = s.precision === 0 && mag === 0n ? '' : mag.toString(base);
  if (s.conv === 'X') digits = digits.toUpperCase();
  if (s.precision > digits.length) digits = digits.padStart(s.precision, '0');
  let prefix = '';
  if (signed) prefix = neg ? '-' : s.plus ? '+' : s.space ? ' ' : '';
  if (s.hash && s.conv === 'o' && !digits.startsWith('0')) digits = '0' + digits;
  if (s.hash && mag !== 0n && (s.conv === 'x' || s.conv === 'X')) prefix = s.conv === 'x' ? '0x' : '0X';
  // The 0 flag is ignored when a precision is given (C11 7.21.6.1).
  return pad(s, digits, prefix, s.zero && s.precision < 0);
}

function character(s: Spec, a: PrintfArg, fmt: string): string {
  let ch: string;
  if (typeof a === 'string' && a.length === 1) ch = a;
  else if (typeof a === 'number' && Number.isInteger(a)) ch = String.fromCharCode(a & 0xff);
  else if (typeof a === 'bigint') ch = String.fromCharCode(Number(BigInt.asUintN(8, a)));
  else throw new InvariantError(`printf: %c wants a char, got ${String(a)} in ${JSON.stringify(fmt)}`);
  return pad(s, ch, '', false);
}

/** Pads body (after prefix) to the width: left-justified with spaces, or right with spaces or zeros. */
function pad(s: Spec, body: string, prefix: string, zeroPad: boolean): string {
  const len = utf8Length(prefix) + utf8Length(body);
  if (len >= s.width) return prefix + body;
  const fill = s.width - len;
  if (s.minus) return prefix + body + ' '.repeat(fill);
  if (zeroPad) return prefix + '0'.repeat(fill) + body;
  return ' '.repeat(fill) + prefix + body;
}

function utf8Length(str: string): number {
  // Fast path: ASCII strings are the norm here.
  for (let i = 0; i < str.length; i++) if (str.charCodeAt(i) > 0x7f) return Buffer.byteLength(str, 'utf8');
  return str.length;
}

function truncateUtf8(str: string, maxBytes: number): string {
  if (maxBytes < 0 || utf8Length(str) <= maxBytes) return str;
  let bytes = 0;
  let out = '';
  for (const ch of str) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > maxBytes) break;
    bytes += n;
    out += ch;
  }
  return out;
}

const f64 = Buffer.alloc(8);

function fixed(s: Spec, x: number): string {
  f64.writeDoubleLE(x, 0);
  const bits = f64.readBigUInt64LE(0);
  const neg = bits >> 63n === 1n;
  const prefix = neg ? '-' : s.plus ? '+' : s.space ? ' ' : '';
  if (!Number.isFinite(x)) {
    const word = Number.isNaN(x) ? 'nan' : 'inf';
    // glibc pads inf and nan with spaces even under the 0 flag.
    return pad(s, s.conv === 'F' ? word.toUpperCase() : word, prefix, false);
  }
  const prec = s.precision < 0 ? 6 : s.precision;
  return pad(s, exactFixed(bits, prec, s.hash), prefix, s.zero);
}

/**
 * [exactFixed bits prec hash] is |x| (x given by its IEEE-754 bits) to prec
 * decimals, rounded half-to-even on the exact binary value.
 */
function exactFixed(bits: bigint, prec: number, hash: boolean): string {
  const expField = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & 0xf_ffff_ffff_ffffn;
  const mant = expField === 0 ? frac : frac | (1n << 52n);
  const e2 = expField === 0 ? -1074 : expField - 1075; // |x| = mant * 2^e2
  const scale = 10n ** BigInt(prec);
  let q: bigint;
  if (e2 >= 0) {
    q = (mant << BigInt(e2)) * scale;
  } else {
    const num = mant * scale;
    const den = 1n << BigInt(-e2);
    q = num / den;
    const twice = (num % den) * 2n;
    if (twice > den || (twice === den && (q & 1n) === 1n)) q += 1n;
  }
  if (prec === 0) return q.toString() + (hash ? '.' : '');
  const digits = q.toString().padStart(prec + 1, '0');
  return digits.slice(0, digits.length - prec) + '.' + digits.slice(digits.length - prec);
}

/**
 * [cFloat n] is C's `(float)n` for an unsigned 64-bit n: rounded once, to
 * nearest-even, to a 24-bit significand (xl list prints `(float)cpu_time / 1e9`,
 * so its Time(s) column carries float rounding). Going through Number first
 * would round twice for n ≥ 2^53.
 */
export function cFloat(n: bigint): number {
  if (n < 0n) throw new InvariantError(`cFloat wants an unsigned value, got ${n}`);
  if (n < 1n << 53n) return Math.fround(Number(n));
  const shift = BigInt(n.toString(2).length - 24);
  let q = n >> shift;
  const rem = n - (q << shift);
  const half = 1n << (shift - 1n);
  if (rem > half || (rem === half && (q & 1n) === 1n)) q += 1n;
  return Math.fround(Number(q) * 2 ** Number(shift));
}
