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
  constructor(private readonly hv: Hypervisor, readonly slot: number) {
    const mem = hv.mem;
    const pages = mem.atomicLoad32(hv.layout.dcbField(slot, DCB.hcbufPages));
    this.buf = machineRegion(mem, (mem.atomicLoad32(hv.layout.dcbField(slot, DCB.hcbufMfn)) * mem.pageSize) as MachineAddr, pages);
    this.bufBytes = pages * mem.pageSize;
  }
  call(op: number, a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0): [number, number] {
    this.calls++;
    return this.hv.hypercall(this.slot, op, [a0, a1, a2, a3, a4, a5].map((x) => x >>> 0));
  }
}
