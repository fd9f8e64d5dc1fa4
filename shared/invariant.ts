/**
 * Broken invariants in *our own* code throw InvariantError. Guest input never
 * does: a backend answers a hostile guest with a wire status, never an exception.
 */
export class InvariantError extends Error {
  override readonly name = 'InvariantError';
}

export function invariant(cond: unknown, message: string): asserts cond {
  if (!cond) throw new InvariantError(message);
}

export function assertNever(x: never, what = 'value'): never {
  throw new InvariantError(`unexpected ${what}: ${JSON.stringify(x)}`);
}
