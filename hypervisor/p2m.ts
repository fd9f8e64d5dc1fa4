/**
 * A domain's P2M table: one 32-bit entry per pfn (shared/abi/p2m.ts), in Xen
 * arena frames. Only the hypervisor writes it; the domain's MMU (DomainMemory)
 * reads it. This module is the only minter of Mfn from Pfn on the hypervisor side.
 */
import { P2M, decodeP2m, encodeP2m, type P2mEntry } from '../shared/abi/p2m.ts';
import type { MachineMemory } from '../shared/memory/machine-memory.ts';
import type { MachineAddr, Mfn, Pfn } from '../shared/types.ts';

export class P2mTable {
  constructor(
    private readonly mem: MachineMemory,
    readonly base: MachineAddr,
    readonly entries: number,
  ) {}

  private addr(pfn: Pfn): MachineAddr {
    if (!(pfn >= 0 && pfn < this.entries)) throw new RangeError(`pfn ${pfn} outside P2M of ${this.entries} entries`);
    return (this.base + pfn * P2M.ENTRY_BYTES) as MachineAddr;
  }
  inRange(pfn: number): pfn is Pfn { return Number.isInteger(pfn) && pfn >= 0 && pfn < this.entries; }

  get(pfn: Pfn): P2mEntry { return decodeP2m(this.mem.atomicLoad32(this.addr(pfn))); }
  /** [lookup pfn] is the mfn behind pfn, or undefined when not present. */
  lookup(pfn: Pfn): Mfn | undefined {
    const w = this.mem.atomicLoad32(this.addr(pfn));
    return (w & P2M.PRESENT) !== 0 ? ((w & P2M.MFN_MASK) as Mfn) : undefined;
  }
  /**
   * [set pfn mfn writable foreign] installs a translation. Release store: the
   * domain's MMU that sees the entry also sees the frame's prepared contents.
   */
  set(pfn: Pfn, mfn: Mfn, writable: boolean, foreign: boolean): void {
    this.mem.atomicStore32(this.addr(pfn), encodeP2m(mfn, writable, foreign));
  }
  clear(pfn: Pfn): void { this.mem.atomicStore32(this.addr(pfn), P2M.EMPTY); }
}
