/**
 * Each checker over hand-built views: silent on a sound machine, and reporting
 * exactly the breakage it guards against (mutants.test.ts then proves each
 * one against a real broken component).
 */
import { expect } from 'chai';
import { CHECKERS, CheckRunner } from '../../../stress/checkers.ts';
import { STORM_UNITS_BOUND } from '../../../stress/events.ts';
import { newDomainBooks, newWorkloadBooks, type DomainBooks, type DomainView, type WorldView } from '../../../stress/view.ts';

function dom(domid: number, books: DomainBooks, extra: Partial<DomainView> = {}): DomainView {
  return { domid, name: books.name, state: 'running', hostile: books.hostile, faults: 0, activeGrants: 0, maptrackInUse: books.expectedMaptrack, books, ...extra };
}

function world(over: Partial<WorldView> = {}, doms?: DomainView[]): WorldView {
  const d0 = newDomainBooks(0, 'Domain-0', 'dom0', false);
  const g1 = newDomainBooks(1, 'guest1', 'guest', false);
  const h2 = newDomainBooks(2, 'hostile2', 'guest', true);
  return {
    mode: 'deterministic', final: false, now: 1000, lostAfter: 500,
    reconcile: { orphanFrames: [], mismatchedFrames: [], lostFrames: [], mapcountMismatches: [], pinMismatches: [], freeFrames: 10, ok: true },
    domains: doms ?? [dom(0, d0), dom(1, g1), dom(2, h2)],
    zombies: [], grantEntries: [], p2m: [], strandedEvents: [],
    xenstore: { nominal: { nodes: 10, watches: 4, transactions: 2 }, perDomain: [{ domid: 1, nodes: 3, watches: 1, transactions: 0 }], integrity: [], probeLeaks: [], probes: 2 },
    taskFailures: [],
    ...over,
  };
}

function books(w: WorldView, domid: number): DomainBooks {
  const b = w.domains.find((d) => d.domid === domid)?.books;
  if (b === undefined) throw new Error(`no books for d${domid}`);
  return b;
}

function violations(name: string, w: WorldView): string[] {
  const c = CHECKERS.find((x) => x.name === name);
  if (c === undefined) throw new Error(name);
  return c.check(w).violations.map((v) => v.message);
}

describe('stress checkers over hand-built views', () => {
  it('find nothing wrong with a sound machine', () => {
    const w = world();
    for (const c of CHECKERS) expect(c.check(w).violations, c.name).to.deep.equal([]);
  });

  it('frame-table reports every class of reconciliation failure', () => {
    const w = world({ reconcile: { orphanFrames: [5], mismatchedFrames: [], lostFrames: [7, 8], mapcountMismatches: [{ mfn: 9, frameTable: 1, maptrack: 0 }], pinMismatches: [], freeFrames: 0, ok: false } });
    const v = violations('frame-table', w);
    expect(v).to.have.length(3);
    expect(v.join('\n')).to.match(/unknown domains: 5/).and.match(/leaked\): 7; 8/).and.match(/mfn 9 frame table 1 maptrack 0/);
  });

  it('grant-entries blames a well-behaved granter but only counts a hostile one', () => {
    expect(violations('grant-entries', world({ grantEntries: [{ granter: 2, ref: 9, kind: 'rewritten-while-pinned', detail: 'x' }] }))).to.deep.equal([]);
    expect(violations('grant-entries', world({ grantEntries: [{ granter: 1, ref: 9, kind: 'in-use-without-pin', detail: 'flags 0x9' }] }))[0]).to.match(/d1 ref 9: in-use-without-pin/);
    expect(CHECKERS.find((c) => c.name === 'grant-entries')!.check(world({ grantEntries: undefined })).applied).to.equal(false);
  });

  it('grant-leak compares maptrack entries with what the holder knows, and wants nothing left at the end', () => {
    const w = world();
    books(w, 0).expectedMaptrack = 2;
    expect(violations('grant-leak', w)[0]).to.match(/d0 holds 0 maptrack entries but knows of 2/);
    const f = world({ final: true, zombies: [3] });
    expect(violations('grant-leak', f)[0]).to.match(/zombie domains left.*d3/);
  });

  it('granted-page-reuse and memory-isolation blame only what a well-behaved guest did or suffered', () => {
    const w = world();
    books(w, 1).pageReuse.push('d1 freed pfn 2 while its grant ref 9 was still valid');
    books(w, 2).pageReuse.push('d2 freed pfn 3 while its grant ref 9 was still valid');
    expect(violations('granted-page-reuse', w)).to.have.length(1);
    const doms = world().domains.map((d) => (d.domid === 1 ? { ...d, faults: 2 } : d.domid === 2 ? { ...d, faults: 5 } : d));
    expect(violations('memory-isolation', world({}, doms))).to.deep.equal(['well-behaved d1 took 2 memory faults (expected 0)']);
    const iso = world();
    books(iso, 2).isolation.push('d2 mapped d1\'s grant ref 9, which was not granted to it');
    expect(violations('memory-isolation', iso)).to.have.length(1);
    expect(violations('memory-isolation', world({ p2m: [{ domid: 0, pfn: 4, mfn: 99, detail: 'foreign entry with no grant mapping behind it' }] }))[0]).to.match(/d0 pfn 4 → mfn 99/);
  });

  it('event-delivery calls a ping lost after lostAfter, or at the end, unless its session was aborted', () => {
    const w = world();
    books(w, 1).pings.push({ id: 'd1:3', domid: 1, sent: 4, answered: 3, waitingSince: 700, aborted: false });
    expect(violations('event-delivery', w)).to.deep.equal([]);
    expect(violations('event-delivery', { ...w, now: 1300 })[0]).to.match(/ping d1:3: 4 sent, 3 answered; the last one has waited 600 steps/);
    expect(violations('event-delivery', { ...w, final: true })).to.have.length(1);
    books(w, 1).pings[0]!.aborted = true;
    expect(violations('event-delivery', { ...w, final: true })).to.deep.equal([]);
    expect(violations('event-delivery', world({ strandedEvents: ['d0 port 5 (no upcall_pending)'] }))[0]).to.match(/stranded/);
    const lw = world().domains.map((d) => (d.domid === 1 ? { ...d, lostWakeups: 1 } : d));
    expect(violations('event-delivery', world({}, lw))[0]).to.match(/slept through 1 pending upcalls/);
  });

  it('ring-protocol reports double fetches, unknown and duplicated ids, and a good frontend cut off', () => {
    const w = world();
    books(w, 1).ringFronts.push({ id: 'd1/0#1', domid: 1, hostile: false, size: 32, issued: 9, completed: 8, unknownIds: 1, duplicates: 2, errors: 0, maxRspOutstanding: 3, hostileActs: 0, badResponses: 0 });
    books(w, 0).ringBacks.push({ id: 'd1/0#1', domid: 1, size: 32, consumed: 9, slotBytesRead: 9 * 112 + 4, requestBytes: 112, responses: 9, errorsSent: 0, maxReqOutstanding: 4, cutOff: 'req-prod-overflow', consumedAfterCutOff: 0 });
    const v = violations('ring-protocol', w).join('\n');
    expect(v).to.match(/1 responses for ids never issued/).and.match(/2 duplicated responses/).and.match(/1012 bytes read from request slots for 9 requests of 112 bytes/).and.match(/well-behaved frontend's ring was cut off/);
    const h = world();
    books(h, 0).ringBacks.push({ id: 'd2/0#1', domid: 2, size: 32, consumed: 3, slotBytesRead: 3 * 112, requestBytes: 112, responses: 3, errorsSent: 3, maxReqOutstanding: 40, cutOff: 'req-prod-overflow', consumedAfterCutOff: 0 });
    expect(violations('ring-protocol', h)).to.deep.equal([]); // a hostile frontend cut off is the point
    books(h, 0).ringBacks[0]!.consumedAfterCutOff = 1;
    expect(violations('ring-protocol', h)).to.have.length(1);
  });

  it('acked-writes-read-back reports what a well-behaved guest read back wrong, once', () => {
    const w = world();
    const msg = 'd1 block 4: read back zeros after the backend acknowledged gen 1';
    books(w, 1).durability.push(msg);
    const wl = newWorkloadBooks('vstress-io', 1, false);
    wl.verifyFailures.push(msg);
    books(w, 1).workloads.push(wl);
    expect(violations('acked-writes-read-back', w)).to.deep.equal([msg]);
  });

  it('xenstore checkers report leaks, quotas, malformed paths accepted and a daemon that stopped serving', () => {
    expect(violations('xenstore-permissions', world({ xenstore: { ...world().xenstore!, probeLeaks: ['d1 read /local/domain/2/data/secret'] } }))).to.have.length(1);
    const q = world({ xenstore: { ...world().xenstore!, perDomain: [{ domid: 2, nodes: 11, watches: 5, transactions: 3 }], integrity: ['x: parent missing'] } });
    expect(violations('xenstore-limits', q)).to.have.length(4);
    const b = world();
    books(b, 2).xs.badPathsAccepted.push("d2 wrote 'data/a//b'");
    books(b, 2).xs.brokenAfterAbuse.push('d2 after quota: disconnected');
    expect(violations('xenstore-limits', b)).to.have.length(2);
  });

  it('event-storm-bound holds dom0 to bounded work per handler call', () => {
    const w = world();
    books(w, 0).storms.push({ domid: 2, handlerCalls: 10, maxUnitsPerCall: 1, maxCallMs: 0.2, totalMs: 1 });
    expect(violations('event-storm-bound', w)).to.deep.equal([]);
    books(w, 0).storms[0]!.maxUnitsPerCall = STORM_UNITS_BOUND + 1;
    expect(violations('event-storm-bound', w)).to.have.length(1);
  });

  it('progress reports failures, stalls, deadlocks and a good workload that never succeeded', () => {
    const w = world({ final: true, deadlock: ['d1/ping (parked at ping:wait)'], taskFailures: ['d0/vstress-back-d1: TypeError: x'] });
    const wl = newWorkloadBooks('vstress-io', 1, false);
    wl.ops = 20;
    wl.errors = 20;
    wl.stuck = '3 requests still unanswered';
    books(w, 1).workloads.push(wl);
    const v = violations('progress', w).join('\n');
    expect(v).to.match(/deadlock/).and.match(/a task threw/).and.match(/20 errors in 20/).and.match(/stalled/).and.match(/no operation succeeded/);
  });

  it('CheckRunner keeps each distinct finding once, whatever its numbers say later', () => {
    const r = new CheckRunner();
    const w = world();
    books(w, 0).expectedMaptrack = 2;
    expect(r.run(w)).to.have.length(1);
    books(w, 0).expectedMaptrack = 3;
    expect(r.run(w)).to.have.length(0);
    expect(r.violations).to.have.length(1);
    expect(r.tallies.find((t) => t.name === 'grant-leak')).to.include({ checks: 2, violations: 1 });
  });
});
