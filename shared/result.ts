/**
 * [Result] is the return type of anything that can fail for a reason the caller
 * is expected to handle: a hostile peer, a bad argument, exhaustion. Failures that
 * mean our own code is wrong throw InvariantError instead (shared/invariant.ts).
 * Error types are discriminated unions carrying the offending value:
 * `{ kind: 'bad-gref', gref }`.
 */
export type Result<T, E> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: E };

export function ok<T>(value: T): { readonly ok: true; readonly value: T } {
  return { ok: true, value };
}
export function err<E>(error: E): { readonly ok: false; readonly error: E } {
  return { ok: false, error };
}
/** [unwrap r] is r's value, or throws with the error described (tests and setup code only). */
export function unwrap<T, E>(r: Result<T, E>, what = 'result'): T {
  if (r.ok) return r.value;
  throw new Error(`${what} failed: ${JSON.stringify(r.error)}`);
}
