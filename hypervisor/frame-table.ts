/**
 * The frame table: per machine frame, its owner, type, count of foreign grant
 * mappings, and the owner's pfn (the M2P). It lives in Xen-owned machine
 * memory so that observers in other threads (the reconciliation checker, the
 * stress harness) can read it; only the hypervisor writes it.
 */
import { FRAME_ENTRY, FRAME_TYPE, type FrameType } from '../shared/abi/machine.ts';
import type { MachineMemory } from '../shared/memory/machine-memory.ts';
import { DOMID_FREE, type DomId, type MachineAddr, type Mfn, type Pfn } from '../shared/types.ts';

export interface FrameInfo {
  readonly owner: DomId;
  readonly type: FrameType;
  readonly mapcount: number;
  readonly m2p: number;
}

export class FrameTable {
  constructor(
    private readonly mem: MachineMemory,
    private readonly base: MachineAddr,
    readonly frames: number,
  ) {}

  private entry(mfn: Mfn, field: number): MachineAddr {
    if (!(mfn >= 0 && mfn < this.frames)) throw new RangeError(`mfn ${mfn} is outside the frame table`);
    return (this.base + mfn * FRAME_ENTRY.SIZE + field) as MachineAddr;
  }

  owner(mfn: Mfn): DomId { return this.mem.atomicLoad32(this.entry(mfn, FRAME_ENTRY.owner)) as DomId; }
  type(mfn: Mfn): FrameType { return this.mem.atomicLoad32(this.entry(mfn, FRAME_ENTRY.type)) as FrameType; }
  mapcount(mfn: Mfn): number { return this.mem.atomicLoad32(this.entry(mfn, FRAME_ENTRY.mapcount)); }
  m2p(mfn: Mfn): number { return this.mem.atomicLoad32(this.entry(mfn, FRAME_ENTRY.m2p)); }

  info(mfn: Mfn): FrameInfo {
    return { owner: this.owner(mfn), type: this.type(mfn), mapcount: this.mapcount(mfn), m2p: this.m2p(mfn) };
  }

  /** [XEN] hands frame mfn to owner as type, at the owner's pfn (or -1). */
  assign(mfn: Mfn, owner: DomId, type: FrameType, pfn: Pfn | -1): void {
    this.mem.atomicStore32(this.entry(mfn, FRAME_ENTRY.m2p), pfn);
    this.mem.atomicStore32(this.entry(mfn, FRAME_ENTRY.type), type);
    // Owner last: an observer that sees the owner sees the type and M2P too.
    this.mem.atomicStore32(this.entry(mfn, FRAME_ENTRY.owner), owner);
  }

  setM2p(mfn: Mfn, pfn: Pfn | -1): void { this.mem.atomicStore32(this.entry(mfn, FRAME_ENTRY.m2p), pfn); }

  /** [XEN] returns frame mfn to the free pool's bookkeeping state. */
  release(mfn: Mfn): void {
    this.mem.atomicStore32(this.entry(mfn, FRAME_ENTRY.owner), DOMID_FREE);
    this.mem.atomicStore32(this.entry(mfn, FRAME_ENTRY.type), FRAME_TYPE.free);
    this.mem.atomicStore32(this.entry(mfn, FRAME_ENTRY.mapcount), 0);
    this.mem.atomicStore32(this.entry(mfn, FRAME_ENTRY.m2p), -1);
  }

  /** [XEN] one more / one fewer foreign mapping of mfn; returns the new count. */
  addMap(mfn: Mfn, delta: 1 | -1): number {
    return this.mem.atomicAdd32(this.entry(mfn, FRAME_ENTRY.mapcount), delta) + delta;
  }
}
