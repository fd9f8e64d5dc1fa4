/**
 * [spinUntil cond ns] polls cond for up to ns nanoseconds and tells whether it
 * became true. The clock is read once every 32 polls: a clock read costs more
 * than the atomic load being polled.
 */
export function spinUntil(cond: () => boolean, ns: number): boolean {
  if (cond()) return true;
  if (ns <= 0) return false;
  const until = performance.now() + ns / 1e6;
  for (;;) {
    for (let i = 0; i < 32; i++) if (cond()) return true;
    if (performance.now() >= until) return cond();
  }
}
