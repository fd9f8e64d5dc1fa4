/**
 * What a stress component (a frontend, a backend, a service, a hostile actor)
 * gets from the domain it runs in: the kernel, the domain's books, a way to
 * start tasks on the domain's vCPU, and a clock for "how long has this been
 * waiting" (scheduler steps, or ms on threads). The deterministic world and
 * the stress workers both implement it; components never know which.
 */
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import type { StressPlatform } from './platform.ts';
import type { DomainBooks } from './view.ts';

export interface TaskOptions {
  /** A service loop that waits for work forever (not counted as waiting at the end of a run). */
  readonly daemon?: boolean;
}

export interface StressHost {
  readonly k: DomainKernel;
  readonly books: DomainBooks;
  /** Starts a task on this domain's vCPU. */
  spawn(name: string, body: (p: StressPlatform) => Promise<void>, opts?: TaskOptions): void;
  /** Steps (deterministic) or ms (threads) since the run started. */
  now(): number;
  /** True once the run is winding down. */
  readonly stopping: boolean;
  /** A line in the run's trace (deterministic values only). */
  note(text: string): void;
}

/**
 * [MapOracle] answers "does mapper currently hold a mapping of granter's
 * ref?" from the hypervisor's own tables (deterministic mode only: on threads
 * those tables live in the hypervisor's worker).
 */
export type MapOracle = (granter: number, ref: number) => boolean;
