/**
 * A stress run's result, the same in both modes, and its text rendering:
 * a table of invariants checked, faults injected and violations; on a
 * violation, the seed, the first findings and (deterministic) the last
 * scheduler decisions plus the command line that replays them. JSON is the
 * same object (`xensim stress --json FILE`).
 */
import type { CheckTally } from './checkers.ts';
import type { StressConfig } from './config.ts';
import type { TraceLine } from './trace.ts';
import type { Violation } from './view.ts';

export interface FaultTally {
  readonly name: string;
  readonly enabled: boolean;
  readonly fired: number;
}

export interface RunStats {
  /** Scheduler steps (deterministic) or ms (threads) of the whole run, boot and teardown included. */
  readonly steps: number;
  readonly elapsedMs: number;
  readonly hypercalls: number;
  readonly domainsCreated: number;
  readonly domainsDestroyed: number;
  readonly ringRequests: number;
  readonly ringResponses: number;
  readonly pings: number;
  readonly stormEvents: number;
  readonly backendRestarts: number;
  readonly xsRequests: number;
}

/** The whole process's resident memory through a threads run (every worker shares the process). */
export interface MemoryStats {
  /** RSS after boot and at the end of the main phase (MiB). */
  readonly startMiB: number;
  readonly endMiB: number;
  readonly peakMiB: number;
  /** Least-squares slope of RSS over the main phase (MiB per minute). */
  readonly slopeMiBPerMin: number;
  readonly samples: number;
}

export interface RunReport {
  readonly seed: number;
  readonly mode: StressConfig['mode'];
  readonly mutant?: string;
  readonly ok: boolean;
  readonly config: {
    readonly guests: readonly { readonly name: string; readonly model: string; readonly hostile: boolean }[];
    readonly injectors: readonly string[];
    readonly steps?: number;
    readonly durationMs?: number;
    readonly depth: number;
    /** The real block drivers ran too (and whether with persistent grants). */
    readonly blk?: { readonly persistent: boolean };
    /** The real network drivers ran too: frames sent, delivered and verified, lost (net-plugin.ts). */
    readonly net?: { readonly sent: number; readonly delivered: number; readonly lost: number };
  };
  readonly checkers: readonly CheckTally[];
  readonly faults: readonly FaultTally[];
  readonly violations: readonly Violation[];
  readonly stats: RunStats;
  /** Deterministic: the hash of every trace line, equal for two runs of one seed. */
  readonly traceHash?: string;
  /** Deterministic, on failure: the last scheduler decisions. */
  readonly trace?: readonly TraceLine[];
  /** Threads: resident memory through the run (a soak must not grow). */
  readonly memory?: MemoryStats;
  /** The command line that reproduces this run. */
  readonly replay: string;
  /** The run could not complete (boot failed, the harness threw). */
  readonly error?: string;
}

/** [memoryStats samples] summarises (ms, bytes) samples of resident memory. */
export function memoryStats(samples: readonly { readonly ms: number; readonly bytes: number }[]): MemoryStats | undefined {
  if (samples.length === 0) return undefined;
  const mib = (b: number) => b / (1 << 20);
  const n = samples.length;
  const mx = samples.reduce((a, s) => a + s.ms, 0) / n;
  const my = samples.reduce((a, s) => a + s.bytes, 0) / n;
  let num = 0;
  let den = 0;
  for (const s of samples) { num += (s.ms - mx) * (s.bytes - my); den += (s.ms - mx) ** 2; }
  const slope = den === 0 ? 0 : num / den; // bytes per ms
  return {
    startMiB: mib((samples[0] as { bytes: number }).bytes), endMiB: mib((samples[n - 1] as { bytes: number }).bytes),
    peakMiB: mib(Math.max(...samples.map((s) => s.bytes))), slopeMiBPerMin: mib(slope * 60_000), samples: n,
  };
}

function pad(s: string, n: number): string { return s.length >= n ? s : s + ' '.repeat(n - s.length); }
function lpad(s: string, n: number): string { return s.length >= n ? s : ' '.repeat(n - s.length) + s; }

/** [formatReport r verbose] is the human-readable report of one run. */
export function formatReport(r: RunReport, verbose = false): string {
  const out: string[] = [];
  const guests = r.config.guests.map((g) => `${g.name}(${g.model}${g.hostile ? ',hostile' : ''})`).join(' ');
  out.push(`xensim stress: seed ${r.seed}, ${r.mode}${r.mutant !== undefined ? `, mutant ${r.mutant}` : ''}: ${r.ok ? 'OK' : 'FAILED'}`);
  out.push(`  guests: ${guests}; queue depth ${r.config.depth}; ${r.config.blk === undefined ? 'vstress only' : `vstress and blkfront/blkback (${r.config.blk.persistent ? 'persistent grants' : 'map per request'})`}${r.config.net === undefined ? '' : `; netfront/netback: ${r.config.net.delivered} of ${r.config.net.sent} frames delivered and verified, ${r.config.net.lost} lost`}`);
  const s = r.stats;
  out.push(`  ${r.mode === 'deterministic' ? `${s.steps} steps` : `${s.steps} ms`} in ${s.elapsedMs.toFixed(0)} ms: ${s.hypercalls} hypercalls, ${s.ringRequests} ring requests, ${s.pings} pings, ${s.stormEvents} storm events, ${s.xsRequests} xenstore requests, ${s.domainsCreated} domains created, ${s.domainsDestroyed} destroyed, ${s.backendRestarts} backend restarts`);
  if (r.traceHash !== undefined) out.push(`  trace hash ${r.traceHash}`);
  if (r.memory !== undefined) {
    const m = r.memory;
    out.push(`  memory (rss, all threads): ${m.startMiB.toFixed(0)} MiB after boot, ${m.endMiB.toFixed(0)} MiB at the end, peak ${m.peakMiB.toFixed(0)} MiB, trend ${m.slopeMiBPerMin >= 0 ? '+' : ''}${m.slopeMiBPerMin.toFixed(1)} MiB/min over ${m.samples} samples`);
  }
  if (r.error !== undefined) out.push(`  ERROR: ${r.error}`);
  out.push('');
  out.push(`  ${pad('invariant', 24)} ${lpad('checks', 7)} ${lpad('applied', 8)} ${lpad('violations', 10)}`);
  for (const c of r.checkers) out.push(`  ${pad(c.name, 24)} ${lpad(String(c.checks), 7)} ${lpad(String(c.applied), 8)} ${lpad(String(c.violations), 10)}`);
  out.push('');
  out.push(`  ${pad('fault injector', 24)} ${lpad('fired', 7)}`);
  for (const f of r.faults) out.push(`  ${pad(f.name, 24)} ${lpad(f.enabled ? String(f.fired) : '-', 7)}`);
  if (r.violations.length > 0) {
    out.push('');
    out.push(`  VIOLATIONS (${r.violations.length}):`);
    for (const v of r.violations.slice(0, verbose ? 200 : 12)) out.push(`    [${v.checker}] ${v.message}${v.replayable === false ? ' (timing: may not replay)' : ''}`);
    if (!verbose && r.violations.length > 12) out.push(`    … ${r.violations.length - 12} more (--json for all)`);
  }
  if (!r.ok && r.trace !== undefined && r.trace.length > 0) {
    out.push('');
    out.push(`  last ${r.trace.length} scheduler decisions:`);
    for (const t of r.trace) out.push(`    #${t.step} ${t.text}`);
  }
  if (!r.ok) {
    out.push('');
    out.push(`  reproduce with: ${r.replay}`);
  }
  return `${out.join('\n')}\n`;
}

export interface SwarmSummary {
  readonly seeds: number;
  readonly failed: number[];
  readonly errors: number[];
  readonly checkers: readonly CheckTally[];
  readonly faults: readonly { readonly name: string; readonly fired: number; readonly seeds: number }[];
  readonly elapsedMs: number;
}

/** [summarise runs] folds many runs into one table: which seeds failed, and totals per checker and injector. */
export function summarise(runs: readonly RunReport[], elapsedMs: number): SwarmSummary {
  const checkers = new Map<string, CheckTally>();
  const faults = new Map<string, { name: string; fired: number; seeds: number }>();
  for (const r of runs) {
    for (const c of r.checkers) {
      const t = checkers.get(c.name) ?? { name: c.name, checks: 0, applied: 0, violations: 0 };
      t.checks += c.checks; t.applied += c.applied; t.violations += c.violations;
      checkers.set(c.name, t);
    }
    for (const f of r.faults) {
      const t = faults.get(f.name) ?? { name: f.name, fired: 0, seeds: 0 };
      t.fired += f.fired;
      if (f.fired > 0) t.seeds++;
      faults.set(f.name, t);
    }
  }
  return {
    seeds: runs.length,
    failed: runs.filter((r) => !r.ok && r.error === undefined).map((r) => r.seed),
    errors: runs.filter((r) => r.error !== undefined).map((r) => r.seed),
    checkers: [...checkers.values()],
    faults: [...faults.values()],
    elapsedMs,
  };
}

export function formatSummary(s: SwarmSummary, runs: readonly RunReport[]): string {
  const out: string[] = [];
  out.push(`xensim stress swarm: ${s.seeds} seeds in ${(s.elapsedMs / 1000).toFixed(1)} s: ${s.failed.length} failed, ${s.errors.length} errors`);
  out.push('');
  out.push(`  ${pad('invariant', 24)} ${lpad('checks', 8)} ${lpad('violations', 10)}`);
  for (const c of s.checkers) out.push(`  ${pad(c.name, 24)} ${lpad(String(c.checks), 8)} ${lpad(String(c.violations), 10)}`);
  out.push('');
  out.push(`  ${pad('fault injector', 24)} ${lpad('fired', 8)} ${lpad('in seeds', 9)}`);
  for (const f of s.faults) out.push(`  ${pad(f.name, 24)} ${lpad(String(f.fired), 8)} ${lpad(String(f.seeds), 9)}`);
  const bad = runs.filter((r) => !r.ok);
  if (bad.length > 0) {
    out.push('');
    for (const r of bad.slice(0, 20)) {
      const first = r.error ?? (r.violations[0] !== undefined ? `[${r.violations[0].checker}] ${r.violations[0].message}` : 'failed');
      out.push(`  seed ${r.seed}: ${first}`);
      out.push(`    reproduce with: ${r.replay}`);
    }
    if (bad.length > 20) out.push(`  … ${bad.length - 20} more`);
  }
  return `${out.join('\n')}\n`;
}
