/**
 * Reading the peer's keys (xenbus_scanf / xenbus_read_unsigned): every value
 * in the other side's directory is hostile input. These helpers parse it
 * strictly and return an error naming the key and the offending value; a
 * missing key is its own kind so callers can apply Xen's defaults
 * (`xenbus_read_unsigned(dir, "feature-persistent", 0)`).
 */
import { err, ok, type Result } from '../result.ts';
import { isXsError, type XsClientError, type XsHandle } from './xs-handle.ts';
import type { XsTxId } from '../abi/xenstore.ts';

export type XenbusKeyError =
  | { readonly kind: 'missing'; readonly path: string }
  | { readonly kind: 'bad-value'; readonly path: string; readonly value: string; readonly expected: string }
  | { readonly kind: 'xenstore'; readonly path: string; readonly error: XsClientError };

function shown(v: string): string {
  return v.length > 64 ? `${v.slice(0, 64)}…` : v;
}

/** [readKey xs dir key tx] is the string at dir/key; ENOENT is 'missing'. */
export async function readKey(xs: XsHandle, dir: string, key: string, tx?: XsTxId): Promise<Result<string, XenbusKeyError>> {
  const path = `${dir}/${key}`;
  const r = await xs.readString(path, tx);
  if (r.ok) return r;
  return isXsError(r.error, 'ENOENT') ? err({ kind: 'missing', path }) : err({ kind: 'xenstore', path, error: r.error });
}

/**
 * [readUint xs dir key max] is the decimal integer 0..max at dir/key. Only
 * digits are accepted (no sign, space, hex or trailing text).
 */
export async function readUint(xs: XsHandle, dir: string, key: string, max = 0xffff_ffff, tx?: XsTxId): Promise<Result<number, XenbusKeyError>> {
  const r = await readKey(xs, dir, key, tx);
  if (!r.ok) return r;
  const v = r.value;
  if (!/^[0-9]{1,16}$/.test(v) || Number(v) > max) {
    return err({ kind: 'bad-value', path: `${dir}/${key}`, value: shown(v), expected: `a decimal integer 0..${max}` });
  }
  return ok(Number(v));
}

/**
 * [readUintOr xs dir key fallback max] is readUint with Xen's default for a
 * missing key (xenbus_read_unsigned); a present but malformed value is still
 * an error.
 */
export async function readUintOr(xs: XsHandle, dir: string, key: string, fallback: number, max = 0xffff_ffff, tx?: XsTxId): Promise<Result<number, XenbusKeyError>> {
  const r = await readUint(xs, dir, key, max, tx);
  if (!r.ok && r.error.kind === 'missing') return ok(fallback);
  return r;
}

/** [readFeature xs dir key] is a `feature-*` flag: "1" true, "0" or missing false. */
export async function readFeature(xs: XsHandle, dir: string, key: string, tx?: XsTxId): Promise<Result<boolean, XenbusKeyError>> {
  const r = await readUintOr(xs, dir, key, 0, 1, tx);
  return r.ok ? ok(r.value === 1) : r;
}

/** [describeKeyError e] is a one-line description for logs. */
export function describeKeyError(e: XenbusKeyError): string {
  switch (e.kind) {
    case 'missing': return `${e.path} is missing`;
    case 'bad-value': return `${e.path} = "${e.value}" is not ${e.expected}`;
    case 'xenstore': return `${e.path}: ${e.error.kind === 'xs-error' ? e.error.errno : e.error.kind}`;
  }
}
