/**
 * The hypervisor's side of the hypercall channel: drains the pending bitmap,
 * runs each posted call, answers in the caller's mailbox. Between bursts it
 * spins for a short while (adaptive: only while calls keep coming), then
 * sleeps on the doorbell. It returns to the event loop regularly so the
 * control plane (comlink messages) is served.
 */
import { DCB, MACHINE_HEADER } from '../shared/abi/machine.ts';
import type { MachineAddr } from '../shared/types.ts';
import type { Hypervisor } from './hypervisor.ts';
import { spinUntil } from '../shared/spin.ts';

export interface ServerOptions {
  /** Spin this long (µs) after the last call before sleeping. 0 disables spinning. Default 50. */
  readonly spinUs?: number;
  /** Longest sleep before returning to the event loop (ms). Default 20. */
  readonly idleMs?: number;
}

const H = (f: number) => f as MachineAddr;

export class HypercallServer {
  private readonly words: number;
  private readonly spinNs: number;
  private readonly idleMs: number;
  private stopped = false;
  /** The arguments of the call being served, reused call after call (the hypervisor reads them synchronously). */
  private readonly args: number[] = new Array<number>(DCB.NR_ARGS).fill(0);

  constructor(private readonly hv: Hypervisor, opts: ServerOptions = {}) {
    this.words = Math.ceil(hv.layout.nrSlots / 32);
    this.spinNs = (opts.spinUs ?? 50) * 1000;
    this.idleMs = opts.idleMs ?? 20;
  }

  /** The spin's stop condition, made once: a call posted or a control message flagged. */
  private readonly callOrControl = (): boolean => this.anyPending() || this.hv.mem.atomicLoad32(H(MACHINE_HEADER.hvControl)) !== 0;

  private anyPending(): boolean {
    const mem = this.hv.mem;
    for (let w = 0; w < this.words; w++) if (mem.atomicLoad32(H(MACHINE_HEADER.hvPending + w * 4)) !== 0) return true;
    return false;
  }

  /** [pollOnce] serves every call posted so far; returns how many. */
  pollOnce(): number {
    const hv = this.hv;
    const mem = hv.mem;
    let n = 0;
    for (let w = 0; w < this.words; w++) {
      const addr = H(MACHINE_HEADER.hvPending + w * 4);
      if (mem.atomicLoad32(addr) === 0) continue;
      let bits = mem.atomicExchange32(addr, 0) >>> 0;
      while (bits !== 0) {
        const b = 31 - Math.clz32(bits);
        bits &= ~(1 << b);
        const slot = w * 32 + b;
        if (slot >= hv.layout.nrSlots) continue; // spurious: no such slot (throwing here would drop the word's other calls)
        const st = hv.layout.dcbField(slot, DCB.mbState);
        if (mem.atomicLoad32(st) !== DCB.MB_POSTED) continue; // spurious: nothing posted
        const op = mem.getU32(hv.layout.dcbField(slot, DCB.mbOp));
        const args = this.args;
        const argAt = hv.layout.dcbField(slot, DCB.mbArgs);
        for (let i = 0; i < DCB.NR_ARGS; i++) args[i] = mem.getU32((argAt + i * 4) as MachineAddr);
        let r: [number, number];
        try {
          r = hv.hypercall(slot, op, args);
        } catch (e) {
          // A bug of ours, never the guest's fault: answer EIO and keep serving.
          console.error(`hypervisor: hypercall ${op} from slot ${slot} threw:`, e);
          r = [-5, 0];
        }
        mem.setI32(hv.layout.dcbField(slot, DCB.mbResult), r[0]);
        mem.setU32(hv.layout.dcbField(slot, DCB.mbResult2), r[1] >>> 0);
        // Release: the caller that sees DONE sees the results.
        mem.atomicStore32(st, DCB.MB_DONE);
        mem.notify32(st, 1);
        n++;
      }
    }
    return n;
  }

  stop(): void {
    this.stopped = true;
    this.hv.mem.atomicAdd32(H(MACHINE_HEADER.hvDoorbell), 1);
    this.hv.mem.notify32(H(MACHINE_HEADER.hvDoorbell));
  }

  /**
   * [run] serves until stop(). Spins while calls keep coming, sleeps on the
   * doorbell otherwise, and yields to the event loop when control messages are
   * flagged or after each idle sleep.
   */
  async run(): Promise<void> {
    const mem = this.hv.mem;
    const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));
    while (!this.stopped) {
      if (mem.atomicLoad32(H(MACHINE_HEADER.hvControl)) !== 0) {
        mem.atomicStore32(H(MACHINE_HEADER.hvControl), 0);
        await yieldToLoop();
        continue;
      }
      if (this.pollOnce() > 0) continue;
      if (this.spinNs > 0) {
        mem.atomicStore32(H(MACHINE_HEADER.hvSpinning), 1);
        const got = spinUntil(this.callOrControl, this.spinNs);
        if (got) continue; // stay spinning-flagged: callers may skip the doorbell
      }
      const seq = mem.atomicLoad32(H(MACHINE_HEADER.hvDoorbell));
      mem.atomicStore32(H(MACHINE_HEADER.hvSpinning), 0);
      // Re-check after clearing the flag: a caller that saw us spinning skipped the doorbell.
      if (this.anyPending() || this.stopped) continue;
      if (mem.atomicLoad32(H(MACHINE_HEADER.hvControl)) !== 0) continue;
      const r = mem.wait32(H(MACHINE_HEADER.hvDoorbell), seq, this.idleMs);
      if (r === 'timed-out') await yieldToLoop();
    }
    mem.atomicStore32(H(MACHINE_HEADER.hvSpinning), 0);
    mem.atomicStore32(H(MACHINE_HEADER.hvStopped), 1);
    // Wake any caller still waiting so it sees the hypervisor has stopped.
    for (let s = 0; s < this.hv.layout.nrSlots; s++) mem.notify32(this.hv.layout.dcbField(s, DCB.mbState));
  }
}
