/**
 * DomainKernel: the guest kernel every domain runs (dom0, driver domains and
 * domUs alike): its MMU view, hypercall channel, event channels, grant table
 * and page pools, and the vCPU loop that sleeps until Xen kicks it.
 *
 * The loop never blocks anywhere but in `idle()`: drivers are event-driven
 * (handlers run from dispatch and return), workloads are promise-based. That
 * keeps the door open for a seeded single-thread scheduler to run the same code.
 */
import { DCB } from '../abi/machine.ts';
import type { MachineMemory } from '../memory/machine-memory.ts';
import { DomainMemory } from '../memory/domain-memory.ts';
import { MachineLayout } from '../machine-layout.ts';
import { HypercallChannel, type Hypercaller } from '../hypercall/channel.ts';
import type { DomainBootInfo } from '../../hypervisor/hypervisor.ts';
import { EventChannels } from './evtchn.ts';
import { GrantTable } from './gnttab.ts';
import { PfnPool } from './page-alloc.ts';
import { spinUntil } from '../spin.ts';
import type { GuestAddr, MachineAddr, Pfn, Port } from '../types.ts';

export interface KernelOptions {
  /** Spin this long (µs) for an event before sleeping. Default 20; 0 never spins. */
  readonly spinUs?: number;
  /** Longest sleep before returning to the event loop (ms). Default 10. */
  readonly idleMs?: number;
  /** Grant-table frames to set up (default: the domain's max). */
  readonly grantFrames?: number;
  readonly hypercallSpinUs?: number;
  /** Another hypercall path (the single-thread DirectHypercaller); default: the mailbox channel. */
  readonly hypercaller?: Hypercaller;
}

export class DomainKernel {
  readonly layout: MachineLayout;
  readonly mem: DomainMemory;
  readonly hc: Hypercaller;
  readonly evtchn: EventChannels;
  readonly gnttab: GrantTable;
  readonly ram: PfnPool;
  readonly ballooned: PfnPool;
  readonly pageSize: number;
  private readonly wakeAddr: MachineAddr;
  private readonly controlAddr: MachineAddr;
  private readonly spinNs: number;
  private readonly idleMs: number;
  private stopped = false;
  /** Idle sleeps that timed out although an upcall was pending: lost wake-ups (must stay 0). */
  lostWakeups = 0;
  sleeps = 0;

  constructor(
    readonly machine: MachineMemory,
    readonly boot: DomainBootInfo,
    opts: KernelOptions = {},
  ) {
    this.layout = new MachineLayout(machine);
    this.pageSize = machine.pageSize;
    this.mem = new DomainMemory(machine, {
      domid: boot.domid, p2mAddr: boot.p2mAddr as MachineAddr, p2mEntries: boot.p2mEntries,
      faultCounterAddr: this.layout.dcbField(boot.slot, DCB.faults),
    });
    this.hc = opts.hypercaller ?? new HypercallChannel(this.layout, boot.slot, { spinUs: opts.hypercallSpinUs });
    this.evtchn = new EventChannels(this.mem, this.layout, boot.slot, this.hc, boot.sharedInfoPfn, boot.nrPorts);
    this.gnttab = new GrantTable(
      this.mem, this.hc, boot.grantPfnBase, opts.grantFrames ?? boot.maxGrantFrames, (pfn) => this.frameOf(pfn),
      boot.model === 'p2m' ? (pfn, mfn) => this.setOwnP2m(pfn, mfn) : undefined,
    );
    const reserved = new Set<number>();
    for (let i = 0; i < boot.p2mListPages; i++) reserved.add(boot.p2mListPfn + i);
    this.ram = new PfnPool(`d${boot.domid} RAM`, boot.ramBase, boot.ramPages, reserved);
    this.ballooned = new PfnPool(`d${boot.domid} ballooned`, boot.foreignBase, boot.foreignPages);
    this.wakeAddr = this.layout.dcbField(boot.slot, DCB.wake);
    this.controlAddr = this.layout.dcbField(boot.slot, DCB.control);
    this.spinNs = (opts.spinUs ?? 20) * 1000;
    this.idleMs = opts.idleMs ?? 10;
    this.gnttab.setup();
  }

  get domid(): number { return this.boot.domid; }

  /**
   * [frameOf pfn] is the frame number this guest puts in grant entries and
   * copy ops: the pfn itself when auto-translated or P==M, the MFN from the
   * guest's own P2M list when PV.
   */
  frameOf(pfn: Pfn): number {
    if (this.boot.model !== 'p2m') return pfn;
    return this.mem.getU32((this.boot.p2mListPfn * this.pageSize + pfn * 4) as GuestAddr);
  }

  /** PV: records (or clears) a foreign frame in the guest's own pfn→mfn list. */
  private setOwnP2m(pfn: Pfn, mfn: number | undefined): void {
    if (!(pfn >= 0 && pfn < this.boot.p2mEntries)) return;
    this.mem.setU32((this.boot.p2mListPfn * this.pageSize + pfn * 4) as GuestAddr, mfn === undefined ? 0xffffffff : mfn);
  }

  gpa(pfn: Pfn, off = 0): GuestAddr { return (pfn * this.pageSize + off) as GuestAddr; }

  /** [waitForEvent port] runs the loop until port has fired (spinning, then sleeping). */
  waitFor(cond: () => boolean, timeoutMs = 10_000): boolean {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (this.evtchn.dispatch() > 0) continue;
      if (Date.now() > deadline) return false;
      this.idleOnce(Math.min(this.idleMs, Math.max(1, deadline - Date.now())));
    }
    return true;
  }

  /**
   * [idleOnce ms] sleeps until kicked or ms pass. Re-arm then re-check: the
   * wake counter is read before checking upcall_pending, so a kick that lands
   * after the check changes the counter and the wait returns at once.
   */
  idleOnce(ms: number): 'event' | 'control' | 'timeout' {
    const m = this.machine;
    const seq = m.atomicLoad32(this.wakeAddr);
    if (this.evtchn.upcallPending()) return 'event';
    if (m.atomicLoad32(this.controlAddr) !== 0) return 'control';
    if (spinUntil(() => m.atomicLoad32(this.wakeAddr) !== seq, this.spinNs)) return 'event';
    this.sleeps++;
    const r = m.wait32(this.wakeAddr, seq, ms);
    if (r === 'timed-out') {
      // An upcall pending with no kick is a lost wake-up — unless a sender is
      // between raising the upcall and bumping the wake word, which a loaded
      // host can stretch to milliseconds: wait up to 100 ms for its kick.
      if (this.evtchn.upcallPending() && m.atomicLoad32(this.wakeAddr) === seq) {
        if (m.wait32(this.wakeAddr, seq, 100) === 'timed-out' && m.atomicLoad32(this.wakeAddr) === seq) this.lostWakeups++;
      }
      return 'timeout';
    }
    return 'event';
  }

  /** Raised by the toolstack's endpoint after posting a control message. */
  kick(): void {
    this.machine.atomicStore32(this.controlAddr, 1);
    this.machine.atomicAdd32(this.wakeAddr, 1);
    this.machine.notify32(this.wakeAddr, 1);
  }

  stop(): void { this.stopped = true; this.kick(); }

  /**
   * [run] is the vCPU: dispatch events, let promise continuations run, and
   * sleep when there is nothing to do. Returns to the event loop when a control
   * message is flagged, after each idle timeout, and after each busy burst.
   */
  async run(): Promise<void> {
    const m = this.machine;
    let lastTurn = performance.now();
    let drained = true;
    const yieldToLoop = () => new Promise<void>((r) => setImmediate(() => { lastTurn = performance.now(); r(); }));
    while (!this.stopped) {
      const n = this.evtchn.dispatch();
      if (m.atomicLoad32(this.controlAddr) !== 0) {
        m.atomicStore32(this.controlAddr, 0);
        await yieldToLoop();
        continue;
      }
      if (n > 0) {
        // Handlers resolved promises: let their continuations (workloads
        // issuing the next I/O) run. A full event-loop turn costs tens of µs,
        // so take one only once per millisecond of busy time — timers and
        // I/O still run — and otherwise just drain a few microtask levels.
        if (performance.now() - lastTurn >= 1) await yieldToLoop();
        else {
          for (let i = 0; i < 4; i++) await undefined;
          drained = false;
        }
        continue;
      }
      // Never sleep with work half done: deeper promise chains than the quick
      // drain reached get a full turn before the vCPU blocks.
      if (!drained) {
        drained = true;
        await yieldToLoop();
        continue;
      }
      const r = this.idleOnce(this.idleMs);
      if (r === 'timeout') await yieldToLoop();
    }
  }

  bindHandler(port: Port, fn: (p: Port) => void): void { this.evtchn.bind(port, fn); }
}
