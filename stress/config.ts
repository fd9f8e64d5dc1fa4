/**
 * A stress run's configuration, derived from its seed (swarm testing: each
 * seed draws its own machine — how many guests, which of them hostile, their
 * memory models — and its own subset of fault injectors, so a range of seeds
 * explores many mixes instead of one "everything on" mix that lets faults
 * mask each other). The same seed always gives the same configuration.
 */
import type { MemoryModel } from '../shared/abi/machine.ts';
import { CXENSTORED_QUOTA } from '../dom0/xenstore/quota.ts';
import { INJECTOR_NAMES, type InjectorName } from './injectors.ts';
import type { MutantName } from './mutants.ts';
import { Prng } from './prng.ts';

export type StressMode = 'deterministic' | 'threads';

export interface GuestSpec {
  readonly name: string;
  readonly model: MemoryModel;
  readonly memoryKiB: number;
  readonly hostile: boolean;
  readonly maxGrantFrames: number;
}

/** Nominal XenStore quotas: the daemon is configured with them and the checker holds it to them. */
export interface QuotaSpec {
  readonly nodes: number;
  readonly watches: number;
  readonly transactions: number;
  readonly entrySize: number;
}

export interface StressConfig {
  readonly seed: number;
  readonly mode: StressMode;
  /** Deterministic: scheduler steps of the main phase. */
  readonly steps: number;
  /** Threads: milliseconds of the main phase. */
  readonly durationMs: number;
  readonly guests: readonly GuestSpec[];
  /** Injectors this run may fire. */
  readonly injectors: readonly InjectorName[];
  /** Chance per scheduler step (threads: per 10 ms tick) that an injector fires. */
  readonly faultRate: number;
  /** Check invariants every this many steps (threads: ms). */
  readonly checkEvery: number;
  readonly quota: QuotaSpec;
  /** Requests each vstress frontend keeps in flight. */
  readonly depth: number;
  /** Destroyed guests are replaced (up to this many creations in all). */
  readonly maxGuestsCreated: number;
  /** Events per storm burst. */
  readonly stormEvents: number;
  readonly mutant?: MutantName;
  /** Machine memory in bytes. */
  readonly memBytes: number;
  /** Well-behaved guests also run blkfront against dom0's blkback (the real block drivers). */
  readonly blk: boolean;
  /** ... with persistent grants (else blkback maps per request). */
  readonly blkPersistent: boolean;
  /** Well-behaved guests also run netfront against dom0's netback over bridge xenbr0 (net-plugin.ts; deterministic mode). */
  readonly net: boolean;
  /** What the caller asked for besides the seed: a replay must ask for the same. */
  readonly overrides: ConfigOverrides;
}

export interface ConfigOverrides {
  readonly steps?: number;
  readonly durationMs?: number;
  /** 'swarm' (default): a seeded subset; 'all': every injector; 'none': no faults. */
  readonly faults?: 'swarm' | 'all' | 'none';
  readonly injectors?: readonly InjectorName[];
  readonly guests?: number;
  readonly hostile?: number;
  readonly mutant?: MutantName;
  readonly faultRate?: number;
  readonly blk?: boolean;
  readonly net?: boolean;
}

/** Steps per nominal second in deterministic mode, so `--duration S` means the same work on any machine. */
export const STEPS_PER_SECOND = 6000;

/** Injectors that need a hostile guest to act. */
const HOSTILE_INJECTORS: ReadonlySet<InjectorName> = new Set(INJECTOR_NAMES.filter((n) => n !== 'domain-destroy' && n !== 'backend-restart'));

/** [configForSeed seed mode o] is the run a seed names. */
export function configForSeed(seed: number, mode: StressMode, o: ConfigOverrides = {}): StressConfig {
  const rng = new Prng(seed).fork('config');
  const faults = o.faults ?? 'swarm';
  let injectors: InjectorName[];
  if (o.injectors !== undefined) injectors = [...o.injectors];
  else if (faults === 'none') injectors = [];
  else if (faults === 'all') injectors = [...INJECTOR_NAMES];
  else {
    injectors = INJECTOR_NAMES.filter(() => rng.chance(0.6));
    if (injectors.length === 0) injectors = [rng.pick(INJECTOR_NAMES)];
  }
  const needHostile = injectors.some((n) => HOSTILE_INJECTORS.has(n));
  const blk = o.blk ?? rng.chance(0.5);
  const blkPersistent = rng.chance(0.5);
  // Not drawn from the seed (yet): every existing seed keeps the machine it named. netback's mutant needs the drivers.
  const net = o.net === true || o.mutant === 'netback-deliver-twice';
  const nGuests = o.guests ?? rng.range(2, 4);
  const nHostile = Math.min(nGuests - 1, o.hostile ?? (needHostile ? rng.range(1, 2) : 0));
  const guests: GuestSpec[] = [];
  for (let i = 0; i < nGuests; i++) {
    const hostile = i >= nGuests - nHostile;
    guests.push({
      name: `${hostile ? 'hostile' : 'guest'}${i + 1}`,
      model: rng.chance(0.5) ? 'p2m' : 'vp',
      memoryKiB: (blk || net) && !hostile ? 2048 : 512,
      hostile,
      maxGrantFrames: hostile ? 1 : 2,
    });
  }
  return {
    seed, mode,
    steps: o.steps ?? 3 * STEPS_PER_SECOND,
    durationMs: o.durationMs ?? 3000,
    guests,
    injectors,
    faultRate: o.faultRate ?? (faults === 'none' ? 0 : mode === 'deterministic' ? 1 / 400 : 1 / 10),
    checkEvery: 250,
    // Deterministic runs configure their own xenstored; threads runs use dom0's, with cxenstored's defaults.
    quota: mode === 'deterministic' ? { nodes: 150, watches: 32, transactions: 6, entrySize: 1024 } : { nodes: CXENSTORED_QUOTA.nodes, watches: CXENSTORED_QUOTA.watches, transactions: CXENSTORED_QUOTA.transactions, entrySize: CXENSTORED_QUOTA.entrySize },
    depth: 1 + rng.int(8),
    // Destroyed guests are replaced: a few, plus one per 10 s of run (a soak keeps churning).
    maxGuestsCreated: nGuests + 3 + Math.floor(mode === 'deterministic' ? (o.steps ?? 3 * STEPS_PER_SECOND) / (10 * STEPS_PER_SECOND) : (o.durationMs ?? 3000) / 10_000),
    stormEvents: mode === 'deterministic' ? 20_000 : 1_000_000,
    mutant: o.mutant,
    memBytes: 64 << 20,
    blk,
    blkPersistent,
    net,
    overrides: o,
  };
}

/**
 * [replayCommand cfg] is the xensim command line that builds the same
 * configuration again (the seed and every override the run was given).
 */
export function replayCommand(cfg: StressConfig): string {
  const o = cfg.overrides;
  const a = ['xensim stress'];
  if (cfg.mode === 'deterministic') a.push('--deterministic');
  a.push(`--seed ${cfg.seed}`);
  a.push(cfg.mode === 'deterministic' ? `--steps ${cfg.steps}` : `--duration ${cfg.durationMs / 1000}`);
  if (o.injectors !== undefined) a.push(o.injectors.length === 0 ? '--faults none' : `--inject ${o.injectors.join(',')}`);
  else if (o.faults !== undefined && o.faults !== 'swarm') a.push(`--faults ${o.faults}`);
  if (o.faultRate !== undefined) a.push(`--fault-rate ${o.faultRate}`);
  if (o.guests !== undefined) a.push(`--guests ${o.guests}`);
  if (o.hostile !== undefined) a.push(`--hostile ${o.hostile}`);
  if (o.blk !== undefined) a.push(o.blk ? '--blk' : '--no-blk');
  if (o.net === true) a.push('--net');
  if (o.mutant !== undefined) a.push(`--mutant ${o.mutant}`);
  return a.join(' ');
}
