/**
 * The caller's side of the hypercall channel: a per-domain mailbox in the
 * domain's control block plus a pending bit and a doorbell word in the machine
 * header. Synchronous for the caller, like a trap into Xen: post, ring, then
 * spin briefly and sleep until the hypervisor answers.
 *
 * Ordering: the caller writes op/args, then stores mbState=POSTED (release),
 * then sets its pending bit (RMW). The hypervisor exchanges the pending word
 * (RMW), loads mbState (acquire) and so sees the args; it writes the results,
 * then stores mbState=DONE (release), so the caller that sees DONE sees results.
 */
import { DCB, MACHINE_HEADER } from '../abi/machine.ts';
import type { MachineLayout } from '../machine-layout.ts';
import type { MachineAddr } from '../types.ts';
import { machineRegion, type MemRegion } from '../memory/region.ts';
import { spinUntil } from '../spin.ts';

export interface ChannelOptions {
  /** How long the caller spins for an answer before sleeping (µs). Default 30. */
  readonly spinUs?: number;
}

/** What a guest kernel needs of a hypercall path: a synchronous call and the argument buffer. */
export interface Hypercaller {
  call(op: number, a0?: number, a1?: number, a2?: number, a3?: number, a4?: number, a5?: number): [number, number];
  readonly buf: MemRegion;
  readonly bufBytes: number;
  calls: number;
}

export class HypercallChannel implements Hypercaller {
  private readonly state: MachineAddr;
  private readonly op: MachineAddr;
  private readonly args: MachineAddr;
  private readonly result: MachineAddr;
  private readonly result2: MachineAddr;
  private readonly pendingWord: MachineAddr;
  private readonly pendingBit: number;
  private readonly spinNs: number;
  /** The hypercall argument buffer (Xen-owned frames shared with this domain). */
  readonly buf: MemRegion;
  readonly bufBytes: number;
  calls = 0;

  constructor(
    private readonly layout: MachineLayout,
    readonly slot: number,
    opts: ChannelOptions = {},
  ) {
    const f = (x: number) => layout.dcbField(slot, x);
    this.state = f(DCB.mbState);
    this.op = f(DCB.mbOp);
    this.args = f(DCB.mbArgs);
    this.result = f(DCB.mbResult);
    this.result2 = f(DCB.mbResult2);
    this.pendingWord = (MACHINE_HEADER.hvPending + (slot >>> 5) * 4) as MachineAddr;
    this.pendingBit = 1 << (slot & 31);
    this.spinNs = (opts.spinUs ?? 30) * 1000;
    const mem = layout.mem;
    const pages = mem.atomicLoad32(f(DCB.hcbufPages));
    this.buf = machineRegion(mem, (mem.atomicLoad32(f(DCB.hcbufMfn)) * mem.pageSize) as MachineAddr, pages);
    this.bufBytes = pages * mem.pageSize;
  }

  /** [call op args] traps into the hypervisor; returns [ret, ret2]. */
  call(op: number, a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0): [number, number] {
    const mem = this.layout.mem;
    if (mem.atomicLoad32(this.state) !== DCB.MB_IDLE) throw new Error('hypercall re-entered while one is in flight');
    mem.setU32(this.op, op);
    const a = [a0, a1, a2, a3, a4, a5];
    for (let i = 0; i < 6; i++) mem.setU32((this.args + i * 4) as MachineAddr, (a[i] as number) >>> 0);
    // Release: Xen sees op and args /before/ it sees the call posted.
    mem.atomicStore32(this.state, DCB.MB_POSTED);
    mem.atomicOr32(this.pendingWord, this.pendingBit);
    // Ring only if the hypervisor is not already polling (it re-checks pending
    // after clearing hvSpinning, so one of us always sees the other).
    if (mem.atomicLoad32(MACHINE_HEADER.hvSpinning as MachineAddr) === 0) {
      mem.atomicAdd32(MACHINE_HEADER.hvDoorbell as MachineAddr, 1);
      mem.notify32(MACHINE_HEADER.hvDoorbell as MachineAddr, 1);
    }
    if (mem.atomicLoad32(this.state) !== DCB.MB_DONE) {
      spinUntil(() => mem.atomicLoad32(this.state) === DCB.MB_DONE, this.spinNs);
      while (mem.atomicLoad32(this.state) !== DCB.MB_DONE) {
        if (mem.atomicLoad32(MACHINE_HEADER.hvStopped as MachineAddr) !== 0) throw new Error('the hypervisor has stopped');
        mem.wait32(this.state, DCB.MB_POSTED, 1000);
      }
    }
    const r = mem.getI32(this.result);
    const r2 = mem.getU32(this.result2);
    mem.atomicStore32(this.state, DCB.MB_IDLE);
    this.calls++;
    return [r, r2];
  }
}
