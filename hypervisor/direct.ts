/**
 * A hypercall path for running the hypervisor and guest kernels in ONE thread
 * (unit tests, and the deterministic scheduler): the call goes straight into
 * Hypervisor.hypercall for the caller's slot, with the same argument buffer
 * the mailbox channel uses. Identity still comes from the slot, never the args.
 */
import { DCB } from '../shared/abi/machine.ts';
import type { Hypercaller } from '../shared/hypercall/channel.ts';
import { machineRegion, type MemRegion } from '../shared/memory/region.ts';
import type { MachineAddr } from '../shared/types.ts';
import type { Hypervisor } from './hypervisor.ts';

export class DirectHypercaller implements Hypercaller {
  readonly buf: MemRegion;
  readonly bufBytes: number;
  calls = 0;
  /**
   * Argument arrays reused call after call, one per nesting depth (a call
   * made while another is still being served, should a handler ever call
   * back into a guest, gets its own): no array is built per call.
   */
  private readonly argv: number[][] = [];
  private depth = 0;
  constructor(private readonly hv: Hypervisor, readonly slot: number) {
    const mem = hv.mem;
    const pages = mem.atomicLoad32(hv.layout.dcbField(slot, DCB.hcbufPages));
    this.buf = machineRegion(mem, (mem.atomicLoad32(hv.layout.dcbField(slot, DCB.hcbufMfn)) * mem.pageSize) as MachineAddr, pages);
    this.bufBytes = pages * mem.pageSize;
  }
  call(op: number, a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0): [number, number] {
    this.calls++;
    const depth = this.depth;
    let args = this.argv[depth];
    if (args === undefined) {
      args = [0, 0, 0, 0, 0, 0];
      this.argv[depth] = args;
    }
    // Each argument as the mailbox carries it: a u32.
    args[0] = a0 >>> 0; args[1] = a1 >>> 0; args[2] = a2 >>> 0;
    args[3] = a3 >>> 0; args[4] = a4 >>> 0; args[5] = a5 >>> 0;
    this.depth = depth + 1;
    try {
      return this.hv.hypercall(this.slot, op, args);
    } finally {
      this.depth = depth;
    }
  }
}
