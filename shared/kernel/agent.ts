/**
 * The guest agent: the control-plane API a domain's worker serves to the
 * toolstack over comlink (like a guest agent): inspect the domain, and drive
 * its kernel's primitives — pages, grants, maps, copies, event channels — for
 * tests, tools and scenario scripts. Payload bytes never cross here in bulk;
 * small page contents for checks are fine.
 *
 * Errors come back as values ({ ok: false, error }), so a fault in a guest
 * (a MemoryFault) is reported, counted, and leaves the domain serving.
 */
import { MemoryFault } from '../memory/domain-memory.ts';
import { DCB } from '../abi/machine.ts';
import { asGref, asGrantHandle, asPort, type DomId, type GuestAddr, type Pfn, type Port } from '../types.ts';
import type { DomainKernel } from './kernel.ts';
import type { CopyRequest } from './gnttab.ts';
import { readThreadCpuNs } from './cpu-time.ts';

export type AgentResult<T> = { ok: true; value: T } | { ok: false; error: string; fault?: { domid: number; addr: number; write: boolean; reason: string } };

function attempt<T>(fn: () => T): AgentResult<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof MemoryFault) return { ok: false, error: e.message, fault: { domid: e.domid, addr: e.addr, write: e.write, reason: e.reason } };
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

export interface DomainStats {
  domid: number;
  faults: number;
  hypercalls: number;
  evtchnSent: number;
  evtchnDelivered: number;
  grantMaps: number;
  grantUnmaps: number;
  grantCopies: number;
  grantCopyBytes: number;
  eventsDispatched: number;
  spuriousEvents: number;
  lostWakeups: number;
  sleeps: number;
  ramFree: number;
  grantRefsFree: number;
}

export class GuestAgent {
  private readonly counters = new Map<number, number>();

  constructor(readonly k: DomainKernel) {}

  info() {
    return { ...this.k.boot };
  }

  /** CPU time this domain's thread (its vCPU) has used, in ns (xentop's CPU(sec)). */
  threadCpuNs(): number | null { return readThreadCpuNs(); }

  stats(): DomainStats {
    const k = this.k;
    const f = (x: number) => k.machine.atomicLoad32(k.layout.dcbField(k.boot.slot, x)) >>> 0;
    return {
      domid: k.domid, faults: f(DCB.faults), hypercalls: f(DCB.statHypercalls), evtchnSent: f(DCB.statEvtchnSent),
      evtchnDelivered: f(DCB.statEvtchnDelivered), grantMaps: f(DCB.statGrantMaps), grantUnmaps: f(DCB.statGrantUnmaps),
      grantCopies: f(DCB.statGrantCopies), grantCopyBytes: f(DCB.statGrantCopyBytes),
      eventsDispatched: k.evtchn.delivered, spuriousEvents: k.evtchn.spurious, lostWakeups: k.lostWakeups, sleeps: k.sleeps,
      ramFree: k.ram.available, grantRefsFree: k.gnttab.freeCount,
    };
  }

  // ---- memory -------------------------------------------------------------
  allocPage(): AgentResult<number> { return attempt(() => this.k.ram.alloc()); }
  freePage(pfn: number): AgentResult<void> { return attempt(() => this.k.ram.release(pfn as Pfn)); }
  write(pfn: number, offset: number, bytes: Uint8Array): AgentResult<void> {
    return attempt(() => this.k.mem.copyIn(this.k.gpa(pfn as Pfn, offset), bytes));
  }
  read(pfn: number, offset: number, len: number): AgentResult<Uint8Array> {
    return attempt(() => { const b = new Uint8Array(len); this.k.mem.copyOut(this.k.gpa(pfn as Pfn, offset), b); return b; });
  }
  /** Reads a guest address directly (tests use it to touch memory that is not ours). */
  readAddr(gpa: number, len: number): AgentResult<Uint8Array> {
    return attempt(() => { const b = new Uint8Array(len); this.k.mem.copyOut(gpa as GuestAddr, b); return b; });
  }
  writeAddr(gpa: number, bytes: Uint8Array): AgentResult<void> {
    return attempt(() => this.k.mem.copyIn(gpa as GuestAddr, bytes));
  }
  /** PV only: the machine frame behind one of our pfns (from our own P2M list). */
  frameOf(pfn: number): AgentResult<number> { return attempt(() => this.k.frameOf(pfn as Pfn)); }

  // ---- grants (granter side) -------------------------------------------------
  grant(domid: number, pfn: number, readonly: boolean): AgentResult<number> {
    return attempt(() => {
      const r = this.k.gnttab.grantForeignAccess(domid as DomId, pfn as Pfn, readonly);
      if (r === undefined) throw new Error('grant table full');
      return r;
    });
  }
  /** gnttab_end_foreign_access_ref: false while the grant is in use. */
  endAccess(ref: number): AgentResult<boolean> { return attempt(() => this.k.gnttab.endForeignAccessRef(asGref(ref))); }
  grantFlags(ref: number): AgentResult<number> { return attempt(() => this.k.gnttab.flags(asGref(ref))); }

  // ---- grants (mapper side) ------------------------------------------------
  /** Maps domid's grant ref at a ballooned pfn; returns status, handle and the pfn. */
  map(domid: number, ref: number, readonly: boolean, device = false): AgentResult<{ status: number; handle: number; pfn: number; devBusAddr: number }> {
    return attempt(() => {
      const pfn = this.k.ballooned.alloc();
      const [r] = this.k.gnttab.mapGrantRefs([{ domid: domid as DomId, ref: asGref(ref), readonly, hostPfn: pfn, device }]);
      if (r === undefined || r.status !== 0) this.k.ballooned.release(pfn);
      return { status: r?.status ?? -1, handle: r?.handle ?? -1, pfn, devBusAddr: r?.devBusAddr ?? 0 };
    });
  }
  mapRaw(domid: number, ref: number, readonly: boolean, hostPfn: number, device = false): AgentResult<{ status: number; handle: number; devBusAddr: number }> {
    return attempt(() => {
      const [r] = this.k.gnttab.mapGrantRefs([{ domid: domid as DomId, ref: asGref(ref), readonly, hostPfn: hostPfn as Pfn, device }]);
      return { status: r?.status ?? -1, handle: r?.handle ?? -1, devBusAddr: r?.devBusAddr ?? 0 };
    });
  }
  unmap(handle: number, pfn: number, devBusAddr = 0): AgentResult<number> {
    return attempt(() => {
      const [s] = this.k.gnttab.unmapGrantRefs([{ handle: asGrantHandle(handle), hostPfn: pfn as Pfn, devBusAddr }]);
      if (s === 0 && pfn >= this.k.boot.foreignBase) this.k.ballooned.release(pfn as Pfn);
      return s ?? -1;
    });
  }
  copy(reqs: CopyRequest[]): AgentResult<number[]> { return attempt(() => this.k.gnttab.copy(reqs)); }

  // ---- event channels --------------------------------------------------------
  allocUnbound(remoteDom: number): AgentResult<number> { return attempt(() => this.k.evtchn.allocUnbound(remoteDom)); }
  bindInterdomain(remoteDom: number, remotePort: number): AgentResult<number> { return attempt(() => this.k.evtchn.bindInterdomain(remoteDom, remotePort)); }
  closePort(port: number): AgentResult<void> { return attempt(() => this.k.evtchn.close(asPort(port))); }
  send(port: number): AgentResult<void> { return attempt(() => this.k.evtchn.notify(asPort(port))); }
  mask(port: number): AgentResult<void> { return attempt(() => this.k.evtchn.mask(asPort(port))); }
  unmask(port: number): AgentResult<void> { return attempt(() => this.k.evtchn.unmask(asPort(port))); }
  isPending(port: number): boolean { return this.k.evtchn.isPending(asPort(port)); }
  portStatus(port: number): number { return this.k.evtchn.status(asPort(port)); }

  /** Counts events on port from now on. */
  countEvents(port: number): void {
    this.counters.set(port, 0);
    this.k.evtchn.bind(asPort(port), (p) => this.counters.set(p, (this.counters.get(p) ?? 0) + 1));
  }
  eventCount(port: number): number { return this.counters.get(port) ?? 0; }
  /** Answers every event on port with an event back (the far end of a ping-pong). */
  echo(port: number): void {
    this.counters.set(port, 0);
    this.k.evtchn.bind(asPort(port), (p) => { this.counters.set(p, (this.counters.get(p) ?? 0) + 1); this.k.evtchn.notify(p); });
  }
  /**
   * Sends n events on port, each time waiting for the peer's answer before the
   * next: n round trips, none of which may be lost. Returns the elapsed ns.
   */
  pingPong(port: number, n: number, timeoutMs = 10_000): AgentResult<{ roundTrips: number; ns: number }> {
    return attempt(() => {
      const p = asPort(port);
      let got = 0;
      this.k.evtchn.bind(p, () => { got++; });
      // Xen marks a port pending when it is bound (bind_interdomain sets the
      // binder's local port): let that stale event fire now and forget it, or
      // it would answer ping 0, ping 1 would follow at once, and the two pings
      // would coalesce in the peer's pending bit (events are bits, not counts).
      this.k.waitFor(() => false, 5);
      got = 0;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        this.k.evtchn.notify(p);
        if (!this.k.waitFor(() => got > i, timeoutMs)) throw new Error(`round trip ${i} of ${n} timed out: an event was lost`);
      }
      return { roundTrips: got, ns: Number(process.hrtime.bigint() - t0) };
    });
  }

  // ---- hypercalls ------------------------------------------------------------
  /** A raw hypercall (for tests and hostile-guest scenarios). */
  hypercall(op: number, args: number[]): [number, number] {
    return this.k.hc.call(op, ...(args as [number?, number?, number?, number?, number?, number?]));
  }
  /** n no-op hypercalls; returns the elapsed ns. */
  nopHypercalls(op: number, n: number): number {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) this.k.hc.call(op);
    return Number(process.hrtime.bigint() - t0);
  }
  /** Writes raw bytes into the hypercall buffer (hostile-guest tests craft malformed batches). */
  writeHcbuf(offset: number, bytes: Uint8Array): void { this.k.hc.buf.copyIn(offset, bytes); }
  readHcbuf(offset: number, len: number): Uint8Array { const b = new Uint8Array(len); this.k.hc.buf.copyOut(offset, b); return b; }

  /** Sends n events on port as fast as the fast path allows; returns the elapsed ns. */
  sendMany(port: number, n: number): number {
    const p = asPort(port);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) this.k.evtchn.notify(p);
    return Number(process.hrtime.bigint() - t0);
  }
  /**
   * Benchmark helper: `iterations` GNTTABOP_copy hypercalls, each a batch that
   * copies every one of domid's refs (a full page each) into our own pages.
   * Returns the elapsed ns and whether every element succeeded.
   */
  benchGrantCopy(domid: number, refs: number[], pages: number[], iterations: number): { ns: number; ok: boolean } {
    const reqs: CopyRequest[] = refs.map((ref, i) => ({
      source: { gref: asGref(ref), domid: domid as DomId, offset: 0 },
      dest: { frame: pages[i] as number, offset: 0 }, len: this.k.pageSize,
    }));
    let ok = true;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) ok = this.k.gnttab.copy(reqs).every((s) => s === 0) && ok;
    return { ns: Number(process.hrtime.bigint() - t0), ok };
  }

  // ---- lifecycle -------------------------------------------------------------
  /** Throws inside the worker's event loop: the domain crashes (tests of on_crash). */
  crashNow(message = 'guest kernel panic'): void {
    setImmediate(() => { throw new Error(message); });
  }
  stop(): void { this.k.stop(); }
}

export type { Port };
