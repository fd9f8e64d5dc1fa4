/**
 * Event-channel workloads:
 *
 *  - PingClient (guest) and EchoService (dom0): a ping-pong over one
 *    interdomain channel, where every ping must be answered. dom0 answers the
 *    way Linux backends do since XSA-332, with *lateeoi*: the handler masks the
 *    port and queues the work; a task answers, then unmasks (EOI), and unmask
 *    must re-raise an event that arrived while masked. A lost event shows up
 *    as a ping that is never answered.
 *  - StormSender (hostile guest) and StormSink (dom0): a guest sending events
 *    as fast as it can. Xen coalesces sends while the port is pending, so
 *    dom0's handler runs at most once per dispatch however many were sent;
 *    dom0 must do bounded work per call (XSA-332/391: handler CPU time bounded).
 */
import { DCB } from '../shared/abi/machine.ts';
import { SHARED_INFO } from '../shared/abi/evtchn.ts';
import type { GuestAddr, Port } from '../shared/types.ts';
import type { StressHost } from './host.ts';
import { newWorkloadBooks, type PingBooks, type StormBooks, type WorkloadBooks } from './view.ts';

/** Work units dom0's storm handler may do in one call: a backend's batch bound (netback's 64). */
export const STORM_UNITS_BOUND = 64;
/** Longest single handler call allowed while a guest storms (ms; measured, not replayable). */
export const STORM_CALL_MS_BOUND = 50;

// ---------------------------------------------------------------- ping-pong

/** The guest end: offers a port to dom0 and pings it until the run stops. */
export class PingClient {
  readonly port: Port;
  readonly books: PingBooks;
  readonly work: WorkloadBooks;
  private stop = false;
  /** Events that answered no ping. */
  spurious = 0;

  constructor(private readonly host: StressHost, readonly peer: number) {
    const k = host.k;
    this.port = k.evtchn.allocUnbound(peer);
    this.books = { id: `d${k.domid}:${this.port}`, domid: k.domid, sent: 0, answered: 0, waitingSince: undefined, aborted: false };
    this.work = newWorkloadBooks('ping', k.domid, false);
    host.books.pings.push(this.books);
    host.books.workloads.push(this.work);
    k.evtchn.bind(this.port, () => {
      // A channel starts pending when dom0 binds it (Xen's "possibly a stale event"): only an answer to an outstanding ping counts.
      if (this.books.answered >= this.books.sent) { this.spurious++; return; }
      this.books.answered++;
      if (this.books.answered >= this.books.sent) this.books.waitingSince = undefined;
    });
  }

  /** Starts pinging once the peer has bound the port. */
  start(): void {
    const b = this.books;
    this.host.spawn('ping', async (p) => {
      while (!p.stopping && !this.stop) {
        await p.point('ping:send');
        if (this.stop) break;
        b.sent++;
        b.waitingSince = this.host.now();
        this.work.ops++;
        this.host.k.evtchn.notify(this.port);
        // Waits for the answer; once the run winds down, for a bounded while only.
        let got = await p.until(() => b.answered >= b.sent || this.stop || p.stopping, 'ping:wait', p.stopping ? 3000 : undefined);
        if (got && p.stopping && b.answered < b.sent && !this.stop) got = await p.until(() => b.answered >= b.sent || this.stop, 'ping:drain', 3000);
        if (got && b.answered >= b.sent) this.work.okOps++;
        if (p.stopping && b.answered < b.sent) break; // stays waiting: the final check calls it lost
        await p.sleep(p.rng.int(20), 'ping:think');
      }
      this.work.done = true;
    });
  }

  /** The session ends early (dom0 restarting its services): an outstanding ping is not counted lost. */
  abort(): void { this.stop = true; this.books.aborted = true; }
}

export type EchoMutant = 'unmask-no-reraise';

/** dom0's end: answers each ping, with lateeoi. */
export class EchoService {
  private readonly port: Port;
  private pending = 0;
  private stop = false;

  constructor(private readonly host: StressHost, readonly guest: number, remotePort: number, private readonly mutant?: EchoMutant) {
    const k = host.k;
    this.port = k.evtchn.bindInterdomain(guest, remotePort);
    k.evtchn.bind(this.port, () => {
      k.evtchn.mask(this.port); // lateeoi: no further upcall until we EOI
      this.pending++;
    });
    startup(host, this.port);
    host.spawn(`echo-d${guest}`, async (p) => {
      while (!this.stop) {
        await p.until(() => this.pending > 0 || this.stop, 'echo:idle');
        if (this.stop) break;
        this.pending = 0;
        await p.point('echo:pong');
        if (this.stop) break;
        k.evtchn.notify(this.port);
        await p.point('echo:eoi');
        if (this.stop) break;
        this.eoi();
      }
    }, { daemon: true });
  }

  private eoi(): void {
    const k = this.host.k;
    if (this.mutant === 'unmask-no-reraise') {
      // MUTANT: clears the mask bit by hand instead of EVTCHNOP_unmask, so an event that arrived while masked never fires.
      const w = (k.boot.sharedInfoPfn * k.pageSize + SHARED_INFO.evtchn_mask + (this.port >>> 5) * 4) as GuestAddr;
      k.mem.atomicAnd32(w, ~(1 << (this.port & 31)));
    } else {
      k.evtchn.unmask(this.port);
    }
  }

  close(): void {
    this.stop = true;
    shutdown(this.host, this.port);
  }
}

/**
 * [startup host port] unmasks a freshly bound port, as Linux's irq startup
 * does: a port number is reused after close, and a lateeoi service closed
 * while masked would otherwise leave the next user of the number deaf.
 */
export function startup(host: StressHost, port: Port): void {
  host.k.evtchn.unmask(port);
}

/** [shutdown host port] unbinds and closes a port, unmasking it first (it may be masked for lateeoi). */
export function shutdown(host: StressHost, port: Port): void {
  const k = host.k;
  k.evtchn.unbind(port);
  try { k.evtchn.unmask(port); } catch { /* not a valid port any more */ }
  try { k.evtchn.close(port); } catch { /* Xen closed it with the guest */ }
}

// ---------------------------------------------------------------- storms

/** The hostile guest's end: bursts of sends on a port dom0 has bound. */
export class StormSender {
  readonly port: Port;
  readonly work: WorkloadBooks;
  constructor(private readonly host: StressHost, peer: number) {
    this.port = host.k.evtchn.allocUnbound(peer);
    this.work = newWorkloadBooks('event-storm', host.k.domid, true);
    host.books.workloads.push(this.work);
  }

  /** [burst n] sends n events in chunks, with a yield point between chunks. */
  burst(n: number, chunk = 2000): void {
    this.host.spawn('storm', async (p) => {
      let left = n;
      while (left > 0 && !p.stopping) {
        await p.point('storm:chunk');
        const c = Math.min(chunk, left);
        for (let i = 0; i < c; i++) this.host.k.evtchn.notify(this.port);
        left -= c;
        this.work.ops += c;
        this.work.okOps += c;
      }
      this.work.done = true;
    });
  }
}

export type StormMutant = 'per-send-handler';

/** dom0's end of a storm: a handler that does one unit of work per call (or, the mutant, one per send). */
export class StormSink {
  private readonly port: Port;
  readonly books: StormBooks;
  private seenDelivered: number;
  /** Keeps the handler's work from being optimised away. */
  private sink = 0;

  constructor(private readonly host: StressHost, guest: number, remotePort: number, private readonly mutant?: StormMutant) {
    const k = host.k;
    this.port = k.evtchn.bindInterdomain(guest, remotePort);
    this.books = { domid: guest, handlerCalls: 0, maxUnitsPerCall: 0, maxCallMs: 0, totalMs: 0 };
    host.books.storms.push(this.books);
    this.seenDelivered = this.delivered();
    k.evtchn.bind(this.port, () => this.onEvent());
    startup(host, this.port);
  }

  private delivered(): number {
    const k = this.host.k;
    return k.machine.atomicLoad32(k.layout.dcbField(k.boot.slot, DCB.statEvtchnDelivered)) >>> 0;
  }

  private onEvent(): void {
    const t0 = performance.now();
    let units = 1;
    if (this.mutant === 'per-send-handler') {
      // MUTANT: trusts the send count and does work for every send, not for every notification.
      const now = this.delivered();
      units = Math.max(1, (now - this.seenDelivered) >>> 0);
      this.seenDelivered = now;
    }
    for (let u = 0; u < units; u++) for (let i = 0; i < 200; i++) this.sink = (this.sink * 31 + i) | 0;
    const ms = performance.now() - t0;
    const b = this.books;
    b.handlerCalls++;
    if (units > b.maxUnitsPerCall) b.maxUnitsPerCall = units;
    if (ms > b.maxCallMs) b.maxCallMs = ms;
    b.totalMs += ms;
  }

  close(): void { shutdown(this.host, this.port); }
}

