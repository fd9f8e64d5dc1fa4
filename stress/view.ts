/**
 * What the invariant checkers look at: a view of the whole machine at one
 * moment, built the same way in both modes — from live objects between two
 * scheduler steps (deterministic), or from the hypervisor's control API plus
 * each worker's books, fetched over comlink (threads). Checkers are pure
 * functions of a WorldView, so one checker runs in both modes.
 *
 * "Books" are what each component records about itself as it runs (a ring
 * backend counts the slot reads it made, a frontend the responses it could not
 * match); they are plain data, so a worker can hand them over by
 * structuredClone. A field a mode cannot observe is undefined, and a checker
 * that needs it says it did not apply.
 */
import type { ReconcileReport } from '../hypervisor/hypervisor.ts';

/** One broken invariant, with enough detail to find the culprit. */
export interface Violation {
  readonly checker: string;
  readonly message: string;
  /** The domain at fault or affected, when there is one. */
  readonly domid?: number;
  /** False for a timing bound: a replay with the same seed need not break it again. */
  readonly replayable?: boolean;
}

/** [Checker] is one invariant: a name, what it guards, and a check over a view. */
export interface Checker {
  readonly name: string;
  readonly description: string;
  /** The advisory or bug class it stands for (XEN-FACTS §8), for the report. */
  readonly guards: string;
  /** Violations in this view; empty when the invariant holds. `applied` says whether the view had what it needed. */
  check(world: WorldView): { violations: Violation[]; applied: boolean };
}

// ---------------------------------------------------------------- books

/** A ring's frontend end, as the frontend counts it. */
export interface RingFrontBooks {
  /** `d<front>/<devid>#<connection>`: joins the two ends' books. */
  readonly id: string;
  readonly domid: number;
  hostile: boolean;
  size: number;
  issued: number;
  completed: number;
  /** Responses whose id we had not issued or had already completed. */
  unknownIds: number;
  duplicates: number;
  /** Responses with an error status. */
  errors: number;
  /** Largest rsp_prod − rsp_cons seen. */
  maxRspOutstanding: number;
  /** Hostile acts on this ring (garbage slots, index leaps, rewrites after publish, bad grefs). */
  hostileActs: number;
  /** The backend answered with a response we could not decode, or an impossible rsp_prod. */
  badResponses: number;
}

/** A ring's backend end, as the backend counts it. */
export interface RingBackBooks {
  readonly id: string;
  /** The frontend's domain. */
  readonly domid: number;
  size: number;
  /** Requests consumed (req_cons advanced). */
  consumed: number;
  /** Bytes read from request slots: each request's bytes once, so at most consumed × requestBytes (XSA-155). */
  slotBytesRead: number;
  /** sizeof the request the backend copies out of a slot. */
  readonly requestBytes: number;
  responses: number;
  errorsSent: number;
  /** Largest req_prod − req_cons seen while the ring was plausible. */
  maxReqOutstanding: number;
  /** Why the backend stopped serving the ring (an impossible req_prod), if it did. */
  cutOff: string | undefined;
  /** Requests consumed after the ring was cut off (must stay 0). */
  consumedAfterCutOff: number;
}

/** A ping-pong over one event channel: every ping must be answered. */
export interface PingBooks {
  readonly id: string;
  readonly domid: number;
  sent: number;
  answered: number;
  /** When the unanswered ping was sent (scheduler step, or ms on threads); undefined when none is outstanding. */
  waitingSince: number | undefined;
  /** The session ended early (its peer went away, or a restart): an outstanding ping is not lost. */
  aborted: boolean;
}

/** An event storm's receiving end in dom0. */
export interface StormBooks {
  /** The storming guest. */
  readonly domid: number;
  /** Times dom0's handler ran. */
  handlerCalls: number;
  /** Units of work dom0 did in its busiest single handler call. */
  maxUnitsPerCall: number;
  /** Longest single handler call (ms: measured, not replayable). */
  maxCallMs: number;
  totalMs: number;
}

/** A workload (well-behaved or hostile) and how it ended. */
export interface WorkloadBooks {
  readonly name: string;
  readonly domid: number;
  readonly hostile: boolean;
  ops: number;
  okOps: number;
  /** Errors the workload got and accepted (error statuses after a restart, exhaustion). */
  errors: number;
  /** Data that did not read back as written: always a violation. */
  verifyFailures: string[];
  /** Aborted by its domain's destruction or the end of the run. */
  aborted: boolean;
  done: boolean;
  /** An exception out of the workload (our bug or a broken component). */
  failure: string | undefined;
  /** Work that never completed although the workload waited for it at the end (a stall). */
  stuck: string | undefined;
}

/** What a guest's XenStore abuse and probes saw. */
export interface XsGuestBooks {
  /** Reads of another domain's private node that returned its value. */
  snoopLeaks: string[];
  snoopAttempts: number;
  /** Nodes the guest created successfully beyond its nominal quota. */
  overQuotaWrites: number;
  quotaRefusals: number;
  /** Bad paths the daemon accepted (must be refused). */
  badPathsAccepted: string[];
  badPathsTried: number;
  /** After abuse, a good request failed (the daemon stopped serving a well-formed request). */
  brokenAfterAbuse: string[];
  transactionsRefused: number;
}

/** Grant misuse a hostile guest tried, and what it got. */
export interface GrantAbuseBooks {
  revokeAttempts: number;
  /** Revocations that succeeded while the grant was mapped (must stay 0). */
  revokedWhileMapped: number;
  /** In-use entries rewritten to name another frame (the mapper must keep seeing the pinned one). */
  reuseAttempts: number;
  exhaustionRuns: number;
  /** The grant table filled up without a clean refusal (must stay 0). */
  exhaustionFailures: number;
  badBatches: number;
  /** Batch elements with a wrong status: a bad ref that mapped, a good one refused (must stay 0). */
  badBatchMismatches: string[];
}

export interface DomainBooks {
  readonly domid: number;
  readonly name: string;
  readonly role: 'dom0' | 'guest';
  readonly hostile: boolean;
  /** Faults this domain took on purpose (a hostile guest touching what it was not granted). */
  expectedFaults: number;
  /** Grant mappings this domain's runtime believes it holds (its maptrack entries must equal this). */
  expectedMaptrack: number;
  /** Granted pages freed or reused while still granted (XSA-396). */
  pageReuse: string[];
  /** Accesses this domain made to memory it was not granted that did NOT fault, or foreign grants it could map. */
  isolation: string[];
  ringFronts: RingFrontBooks[];
  ringBacks: RingBackBooks[];
  pings: PingBooks[];
  storms: StormBooks[];
  /** Acknowledged writes that did not read back. */
  durability: string[];
  workloads: WorkloadBooks[];
  xs: XsGuestBooks;
  grants: GrantAbuseBooks;
}

// ---------------------------------------------------------------- the view

/** One domain as the hypervisor sees it, joined with its books. */
export interface DomainView {
  readonly domid: number;
  readonly name: string;
  readonly state: string;
  readonly hostile: boolean;
  /** The DCB fault counter. */
  readonly faults: number;
  readonly activeGrants: number;
  readonly maptrackInUse: number;
  /** Threads only: DomainKernel.lostWakeups. */
  readonly lostWakeups?: number;
  readonly books: DomainBooks | undefined;
}

/** A grant entry whose in-use bits or frame disagree with the hypervisor's pins (deterministic mode). */
export interface GrantEntryIssue {
  readonly granter: number;
  readonly ref: number;
  readonly kind: 'in-use-without-pin' | 'pin-without-in-use' | 'writing-without-write-pin' | 'rewritten-while-pinned';
  readonly detail: string;
}

/** A P2M entry that reaches a frame the domain neither owns nor maps (deterministic mode). */
export interface P2mIssue {
  readonly domid: number;
  readonly pfn: number;
  readonly mfn: number;
  readonly detail: string;
}

export interface XenstoreView {
  /** Nominal quotas the checker holds the daemon to. */
  readonly nominal: { readonly nodes: number; readonly watches: number; readonly transactions: number };
  readonly perDomain: { readonly domid: number; readonly nodes: number; readonly watches: number; readonly transactions: number }[];
  /** XsStore.check(): the tree's own consistency. */
  readonly integrity: string[];
  /** Reads as one guest of another guest's private node that succeeded. */
  readonly probeLeaks: string[];
  readonly probes: number;
}

export interface WorldView {
  readonly mode: 'deterministic' | 'threads';
  /** True for the check after the run wound down and every guest was destroyed. */
  readonly final: boolean;
  /** Scheduler step (deterministic) or elapsed ms (threads). */
  readonly now: number;
  /** How long a ping may stay unanswered, in `now` units, before it counts as lost. */
  readonly lostAfter: number;
  readonly reconcile: ReconcileReport;
  readonly domains: DomainView[];
  /** Zombies left (final view: must be none). */
  readonly zombies: number[];
  readonly grantEntries?: GrantEntryIssue[];
  readonly p2m?: P2mIssue[];
  readonly xenstore?: XenstoreView;
  /**
   * Deterministic mode, checked after every step: events pending and
   * unmasked with no upcall or selector bit raised for them — delivered
   * only if some other event happens to rescue them.
   */
  readonly strandedEvents?: string[];
  /** A deadlock the scheduler found: no unit runnable while tasks wait. */
  readonly deadlock?: string[];
  /** Exceptions out of tasks that were not supposed to fail (services, good workloads). */
  readonly taskFailures: string[];
}

// ---------------------------------------------------------------- helpers

export function newXsGuestBooks(): XsGuestBooks {
  return { snoopLeaks: [], snoopAttempts: 0, overQuotaWrites: 0, quotaRefusals: 0, badPathsAccepted: [], badPathsTried: 0, brokenAfterAbuse: [], transactionsRefused: 0 };
}
export function newGrantAbuseBooks(): GrantAbuseBooks {
  return { revokeAttempts: 0, revokedWhileMapped: 0, reuseAttempts: 0, exhaustionRuns: 0, exhaustionFailures: 0, badBatches: 0, badBatchMismatches: [] };
}
export function newDomainBooks(domid: number, name: string, role: 'dom0' | 'guest', hostile: boolean): DomainBooks {
  return {
    domid, name, role, hostile, expectedFaults: 0, expectedMaptrack: 0, pageReuse: [], isolation: [], ringFronts: [], ringBacks: [],
    pings: [], storms: [], durability: [], workloads: [], xs: newXsGuestBooks(), grants: newGrantAbuseBooks(),
  };
}
export function newWorkloadBooks(name: string, domid: number, hostile: boolean): WorkloadBooks {
  return { name, domid, hostile, ops: 0, okOps: 0, errors: 0, verifyFailures: [], aborted: false, done: false, failure: undefined, stuck: undefined };
}
