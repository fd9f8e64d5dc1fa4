import { readFileSync } from 'node:fs';

/**
 * [readThreadCpuNs] is the CPU time of the calling thread in ns (Linux), or
 * null where /proc cannot tell. Meant to run inside a domain's worker (as the
 * agent's `threadCpuNs()`); in the main thread it measures the main thread.
 */
export function readThreadCpuNs(): number | null {
  try {
    // schedstat: "<ns on cpu> <ns waiting> <timeslices>"
    const ns = Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]);
    if (Number.isFinite(ns) && ns >= 0) return ns;
  } catch {
    // no schedstat (CONFIG_SCHED_INFO off): try stat
  }
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'utf8');
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(rest[11]) + Number(rest[12]);
    return Number.isFinite(ticks) ? ticks * 10_000_000 : null; // USER_HZ = 100 on Linux
  } catch {
    return null;
  }
}
