/**
 * The invariant checkers. Each is a pure function of a WorldView (view.ts),
 * run every few hundred steps (or ms) during a run and once at the end, in
 * either mode. Each names the bug class it guards (XEN-FACTS §8) and is
 * proven able to fail by a mutant (mutants.ts) in the unit tests.
 *
 * "Well-behaved" below means a domain that is not hostile: hostile guests
 * may break their own data, rings and grants as they like; what they must
 * not do is reach anyone else's memory, stall dom0, or take dom0's resources
 * beyond their quotas, and what they break must be refused and cut off.
 */
import { STORM_CALL_MS_BOUND, STORM_UNITS_BOUND } from './events.ts';
import type { Checker, DomainView, Violation, WorldView } from './view.ts';

const MAX_LISTED = 4;

function list<T>(xs: readonly T[], fmt: (x: T) => string): string {
  const head = xs.slice(0, MAX_LISTED).map(fmt).join('; ');
  return xs.length > MAX_LISTED ? `${head}; and ${xs.length - MAX_LISTED} more` : head;
}

function withBooks(w: WorldView): (DomainView & { books: NonNullable<DomainView['books']> })[] {
  return w.domains.filter((d): d is DomainView & { books: NonNullable<DomainView['books']> } => d.books !== undefined);
}

function hostileDomids(w: WorldView): Set<number> {
  return new Set(w.domains.filter((d) => d.hostile).map((d) => d.domid));
}

const frameTable: Checker = {
  name: 'frame-table',
  description: 'no frame leaked or owned twice; mapcounts equal installed mappings; grant pins equal maptrack entries',
  guards: 'XSA-224 (pin counts conserve), XSA-218/230 (unmap races)',
  check(w) {
    const r = w.reconcile;
    const v: Violation[] = [];
    const c = 'frame-table';
    if (r.orphanFrames.length > 0) v.push({ checker: c, message: `frames owned by unknown domains: ${list(r.orphanFrames, String)}` });
    if (r.mismatchedFrames.length > 0) v.push({ checker: c, message: `frames claimed twice or by the wrong owner: ${list(r.mismatchedFrames, String)}` });
    if (r.lostFrames.length > 0) v.push({ checker: c, message: `frames neither free nor owned (leaked): ${list(r.lostFrames, String)}` });
    if (r.mapcountMismatches.length > 0) {
      v.push({ checker: c, message: `mapcounts that disagree with the maptrack: ${list(r.mapcountMismatches, (m) => `mfn ${m.mfn} frame table ${m.frameTable} maptrack ${m.maptrack}`)}` });
    }
    if (r.pinMismatches.length > 0) {
      v.push({ checker: c, message: `grant pins not backed by maptrack entries: ${list(r.pinMismatches, (m) => `d${m.granter} ref ${m.ref} pins ${m.pins} maptrack ${m.maptrack}`)}` });
    }
    return { violations: v, applied: true };
  },
};

const grantEntries: Checker = {
  name: 'grant-entries',
  description: "a grant entry's GTF_reading/GTF_writing bits are set exactly while pinned, and a well-behaved granter never rewrites an entry in use",
  guards: 'XSA-218/230 (in-use bits cleared early or never), XSA-396 (reuse of a grant in use)',
  check(w) {
    if (w.grantEntries === undefined) return { violations: [], applied: false };
    const hostile = hostileDomids(w);
    const bad = w.grantEntries.filter((g) => !hostile.has(g.granter));
    return {
      applied: true,
      violations: bad.length === 0 ? [] : [{ checker: 'grant-entries', message: list(bad, (g) => `d${g.granter} ref ${g.ref}: ${g.kind} (${g.detail})`), domid: bad[0]?.granter }],
    };
  },
};

const grantLeak: Checker = {
  name: 'grant-leak',
  description: 'every maptrack entry is a mapping its holder knows it holds; at teardown no mapping, no active grant and no zombie is left',
  guards: 'XSA-361 (failed batch elements unwound), gnttab_release_mappings on domain death',
  check(w) {
    const v: Violation[] = [];
    for (const d of withBooks(w)) {
      if (d.state === 'gone') continue;
      if (d.maptrackInUse !== d.books.expectedMaptrack) {
        v.push({ checker: 'grant-leak', domid: d.domid, message: `d${d.domid} holds ${d.maptrackInUse} maptrack entries but knows of ${d.books.expectedMaptrack} mappings` });
      }
    }
    if (w.final) {
      if (w.zombies.length > 0) v.push({ checker: 'grant-leak', message: `zombie domains left after teardown (their pages are still mapped): ${w.zombies.map((z) => `d${z}`).join(', ')}` });
      for (const d of w.domains) {
        if (d.state === 'gone') continue;
        if (d.maptrackInUse > 0) v.push({ checker: 'grant-leak', domid: d.domid, message: `d${d.domid} still holds ${d.maptrackInUse} grant mappings after every guest was destroyed` });
        if (d.activeGrants > 0) v.push({ checker: 'grant-leak', domid: d.domid, message: `d${d.domid} still has ${d.activeGrants} active grants after teardown` });
      }
    }
    return { violations: v, applied: true };
  },
};

const pageReuse: Checker = {
  name: 'granted-page-reuse',
  description: 'a well-behaved guest never frees or reuses a page while a grant of it is valid',
  guards: 'XSA-396 (frontends freeing pages the backend still maps)',
  check(w) {
    const v: Violation[] = [];
    for (const d of withBooks(w)) {
      if (d.hostile || d.books.pageReuse.length === 0) continue;
      v.push({ checker: 'granted-page-reuse', domid: d.domid, message: list(d.books.pageReuse, (s) => s) });
    }
    return { violations: v, applied: true };
  },
};

const isolation: Checker = {
  name: 'memory-isolation',
  description: 'no domain reaches memory it was not granted: well-behaved domains take no faults, hostile ones only the faults they meant, and every P2M entry is owned or backed by a mapping',
  guards: 'grant isolation; XSA-403 (leaks through shared pages)',
  check(w) {
    const v: Violation[] = [];
    for (const d of withBooks(w)) {
      if (d.books.isolation.length > 0) v.push({ checker: 'memory-isolation', domid: d.domid, message: list(d.books.isolation, (s) => s) });
      if (d.state === 'gone') continue;
      if (!d.hostile && d.faults !== d.books.expectedFaults) {
        v.push({ checker: 'memory-isolation', domid: d.domid, message: `well-behaved d${d.domid} took ${d.faults} memory faults (expected ${d.books.expectedFaults})` });
      }
    }
    if (w.p2m !== undefined && w.p2m.length > 0) {
      v.push({ checker: 'memory-isolation', domid: w.p2m[0]?.domid, message: `P2M entries reaching frames neither owned nor mapped: ${list(w.p2m, (p) => `d${p.domid} pfn ${p.pfn} → mfn ${p.mfn} (${p.detail})`)}` });
    }
    return { violations: v, applied: true };
  },
};

const eventDelivery: Checker = {
  name: 'event-delivery',
  description: 'no event lost: every ping is answered, no pending unmasked event is left without an upcall (unmask re-raises), no lost wake-up',
  guards: 'XSA-331 (close during dispatch), lost upcalls, EVTCHNOP_unmask re-raise',
  check(w) {
    const v: Violation[] = [];
    const hostile = hostileDomids(w);
    for (const d of withBooks(w)) {
      for (const p of d.books.pings) {
        if (hostile.has(p.domid) || p.aborted || p.waitingSince === undefined) continue;
        const waited = w.now - p.waitingSince;
        if (w.final || waited > w.lostAfter) {
          v.push({ checker: 'event-delivery', domid: p.domid, message: `ping ${p.id}: ${p.sent} sent, ${p.answered} answered; the last one has waited ${waited} ${w.mode === 'deterministic' ? 'steps' : 'ms'} (lost event)` });
        }
      }
      if (d.lostWakeups !== undefined && d.lostWakeups > 0) {
        // DomainKernel's own count: an idle wait that timed out with an upcall pending and no kick within 1 ms.
        // It also counts a sender descheduled for over 1 ms between raising the upcall and the kick, so on an
        // oversubscribed host it is a timing finding: not replayable, and to be confirmed by a lost ping.
        v.push({ checker: 'event-delivery', domid: d.domid, replayable: false, message: `d${d.domid} slept through ${d.lostWakeups} pending upcalls (DomainKernel.lostWakeups)` });
      }
    }
    if (w.strandedEvents !== undefined && w.strandedEvents.length > 0) {
      v.push({ checker: 'event-delivery', message: `events pending and unmasked with no upcall raised (stranded): ${list(w.strandedEvents, (s) => s)}` });
    }
    return { violations: v, applied: true };
  },
};

const ringProtocol: Checker = {
  name: 'ring-protocol',
  description: 'each request slot is fetched once; no response for an unknown id, none duplicated; well-behaved rings stay within size and are never cut off; a cut-off ring is not read again',
  guards: 'XSA-155 (double fetch), XSA-39 (rings with garbage: cut off, never looped on)',
  check(w) {
    const v: Violation[] = [];
    const hostile = hostileDomids(w);
    const c = 'ring-protocol';
    for (const d of withBooks(w)) {
      for (const f of d.books.ringFronts) {
        if (f.hostile) continue;
        if (f.unknownIds > 0) v.push({ checker: c, domid: f.domid, message: `${f.id}: ${f.unknownIds} responses for ids never issued` });
        if (f.duplicates > 0) v.push({ checker: c, domid: f.domid, message: `${f.id}: ${f.duplicates} duplicated responses` });
        if (f.badResponses > 0) v.push({ checker: c, domid: f.domid, message: `${f.id}: ${f.badResponses} undecodable responses or impossible rsp_prod` });
        if (f.maxRspOutstanding > f.size) v.push({ checker: c, domid: f.domid, message: `${f.id}: rsp_prod − rsp_cons reached ${f.maxRspOutstanding} > ${f.size}` });
      }
      for (const b of d.books.ringBacks) {
        if (b.slotBytesRead > b.consumed * b.requestBytes) {
          v.push({ checker: c, domid: d.domid, message: `${b.id}: ${b.slotBytesRead} bytes read from request slots for ${b.consumed} requests of ${b.requestBytes} bytes consumed (double fetch)` });
        }
        if (b.consumedAfterCutOff > 0) v.push({ checker: c, domid: d.domid, message: `${b.id}: ${b.consumedAfterCutOff} requests consumed after the ring was cut off` });
        if (!hostile.has(b.domid)) {
          if (b.cutOff !== undefined) v.push({ checker: c, domid: b.domid, message: `${b.id}: a well-behaved frontend's ring was cut off (${b.cutOff})` });
          if (b.maxReqOutstanding > b.size) v.push({ checker: c, domid: b.domid, message: `${b.id}: req_prod − req_cons reached ${b.maxReqOutstanding} > ${b.size}` });
        }
      }
    }
    return { violations: v, applied: true };
  },
};

const ackedWrites: Checker = {
  name: 'acked-writes-read-back',
  description: 'every write a backend acknowledged reads back (block data across backend restarts; XenStore values)',
  guards: 'durability: "a blkback that acknowledges before writing"',
  check(w) {
    const v: Violation[] = [];
    for (const d of withBooks(w)) {
      if (d.hostile) continue;
      const fails = [...d.books.durability, ...d.books.workloads.filter((x) => !x.hostile).flatMap((x) => x.verifyFailures.filter((f) => !d.books.durability.includes(f)))];
      if (fails.length > 0) v.push({ checker: 'acked-writes-read-back', domid: d.domid, message: list(fails, (s) => s) });
    }
    return { violations: v, applied: true };
  },
};

const xsPerms: Checker = {
  name: 'xenstore-permissions',
  description: "no guest reads or lists another guest's private XenStore nodes",
  guards: 'XenStore permission checks (cxenstored perms)',
  check(w) {
    const leaks = [...(w.xenstore?.probeLeaks ?? []), ...withBooks(w).flatMap((d) => d.books.xs.snoopLeaks)];
    return { applied: true, violations: leaks.length === 0 ? [] : [{ checker: 'xenstore-permissions', message: list(leaks, (s) => s) }] };
  },
};

const xsLimits: Checker = {
  name: 'xenstore-limits',
  description: 'quotas hold (nodes, watches, transactions), malformed paths are refused, the tree stays consistent, and xenstored keeps serving after abuse',
  guards: 'cxenstored quotas; XSA-322-style unbounded growth',
  check(w) {
    const v: Violation[] = [];
    const c = 'xenstore-limits';
    const x = w.xenstore;
    if (x !== undefined) {
      for (const p of x.perDomain) {
        if (p.nodes > x.nominal.nodes) v.push({ checker: c, domid: p.domid, message: `d${p.domid} owns ${p.nodes} nodes, over its quota of ${x.nominal.nodes}` });
        if (p.watches > x.nominal.watches) v.push({ checker: c, domid: p.domid, message: `d${p.domid} holds ${p.watches} watches, over its quota of ${x.nominal.watches}` });
        if (p.transactions > x.nominal.transactions) v.push({ checker: c, domid: p.domid, message: `d${p.domid} has ${p.transactions} open transactions, over its quota of ${x.nominal.transactions}` });
      }
      if (x.integrity.length > 0) v.push({ checker: c, message: `the store is inconsistent: ${list(x.integrity, (s) => s)}` });
    }
    for (const d of withBooks(w)) {
      const b = d.books.xs;
      if (b.overQuotaWrites > 0) v.push({ checker: c, domid: d.domid, message: `d${d.domid} got ${b.overQuotaWrites} nodes or transactions past its quota` });
      if (b.badPathsAccepted.length > 0) v.push({ checker: c, domid: d.domid, message: `malformed paths accepted: ${list(b.badPathsAccepted, (s) => s)}` });
      if (b.brokenAfterAbuse.length > 0) v.push({ checker: c, domid: d.domid, message: `xenstored stopped serving after abuse: ${list(b.brokenAfterAbuse, (s) => s)}` });
    }
    return { violations: v, applied: x !== undefined || w.domains.some((d) => d.books !== undefined) };
  },
};

const stormBound: Checker = {
  name: 'event-storm-bound',
  description: `under an event storm dom0's handler does bounded work per call (≤ ${STORM_UNITS_BOUND} units, ≤ ${STORM_CALL_MS_BOUND} ms)`,
  guards: 'XSA-332 / XSA-391 (event storms from guests or backends)',
  check(w) {
    const v: Violation[] = [];
    let any = false;
    for (const d of withBooks(w)) {
      for (const s of d.books.storms) {
        if (s.handlerCalls === 0) continue;
        any = true;
        if (s.maxUnitsPerCall > STORM_UNITS_BOUND) {
          v.push({ checker: 'event-storm-bound', domid: s.domid, message: `d${d.domid}'s handler for d${s.domid}'s storm did ${s.maxUnitsPerCall} units of work in one call (bound ${STORM_UNITS_BOUND})` });
        }
        if (s.maxCallMs > STORM_CALL_MS_BOUND) {
          v.push({ checker: 'event-storm-bound', domid: s.domid, replayable: false, message: `d${d.domid}'s handler for d${s.domid}'s storm ran ${s.maxCallMs.toFixed(1)} ms in one call (bound ${STORM_CALL_MS_BOUND} ms)` });
        }
      }
    }
    return { violations: v, applied: any };
  },
};

const progress: Checker = {
  name: 'progress',
  description: "well-behaved guests' workloads make progress without errors, stalls or exceptions while hostile ones are refused; no service task throws; no deadlock",
  guards: 'hostile input never throws out of a backend; good guests keep being served',
  check(w) {
    const v: Violation[] = [];
    for (const f of w.taskFailures) v.push({ checker: 'progress', message: `a task threw: ${f}` });
    if (w.deadlock !== undefined && w.deadlock.length > 0) {
      v.push({ checker: 'progress', message: `deadlock: nothing runnable while ${list(w.deadlock, (s) => s)} wait` });
    }
    for (const d of withBooks(w)) {
      for (const x of d.books.workloads) {
        if (x.hostile) continue;
        if (x.failure !== undefined) v.push({ checker: 'progress', domid: x.domid, message: `d${x.domid} ${x.name} failed: ${x.failure}` });
        if (x.stuck !== undefined) v.push({ checker: 'progress', domid: x.domid, message: `d${x.domid} ${x.name} stalled: ${x.stuck}` });
        if (x.errors > Math.max(4, x.ops / 4)) v.push({ checker: 'progress', domid: x.domid, message: `d${x.domid} ${x.name}: ${x.errors} errors in ${x.ops} operations` });
        if (w.final && !x.aborted && x.ops >= 16 && x.okOps === 0) v.push({ checker: 'progress', domid: x.domid, message: `d${x.domid} ${x.name}: no operation succeeded out of ${x.ops}` });
      }
    }
    return { violations: v, applied: true };
  },
};

export const CHECKERS: readonly Checker[] = [
  frameTable, grantEntries, grantLeak, pageReuse, isolation, eventDelivery, ringProtocol, ackedWrites, xsPerms, xsLimits, stormBound, progress,
];

export const CHECKER_NAMES = CHECKERS.map((c) => c.name);

/** Tallies of one run's checks, per checker. */
export interface CheckTally {
  readonly name: string;
  checks: number;
  /** Checks where the checker had what it needed. */
  applied: number;
  /** Distinct violations found. */
  violations: number;
}

/**
 * [CheckRunner] runs every checker over successive views, keeping the
 * distinct violations: the same finding (checker, domain, and message with its
 * numbers ignored) is reported once, at its first sighting.
 */
export class CheckRunner {
  readonly tallies: CheckTally[] = CHECKERS.map((c) => ({ name: c.name, checks: 0, applied: 0, violations: 0 }));
  readonly violations: Violation[] = [];
  private readonly seen = new Set<string>();
  /** The `now` of the first violation. */
  firstAt: number | undefined;

  run(w: WorldView): Violation[] {
    const fresh: Violation[] = [];
    CHECKERS.forEach((c, i) => {
      const t = this.tallies[i] as CheckTally;
      const r = c.check(w);
      t.checks++;
      if (r.applied) t.applied++;
      for (const x of r.violations) {
        const key = `${x.checker}|${x.domid ?? ''}|${x.message.replace(/[0-9]+(\.[0-9]+)?/g, '#')}`;
        if (this.seen.has(key)) continue;
        this.seen.add(key);
        t.violations++;
        fresh.push(x);
        this.violations.push(x);
        if (this.firstAt === undefined) this.firstAt = w.now;
      }
    });
    return fresh;
  }
}
