/**
 * DomainMemory: one domain's view of memory — the MMU.
 *
 * A domain touches memory only through this accessor: its own frames by guest
 * address, foreign frames only where the hypervisor installed a grant mapping
 * in its P2M. Every access translates through the P2M (an atomic load of an
 * entry the hypervisor alone writes) and checks present/writable; anything else
 * is a MemoryFault naming the domain and the address, counted in the domain's
 * fault counter in shared memory, and never a silent read or write.
 */
import { type DomId, type GuestAddr, type MachineAddr, type Pfn } from '../types.ts';
import { P2M } from '../abi/p2m.ts';
import type { MachineMemory } from './machine-memory.ts';
import { PagedRegion, type MemRegion } from './region.ts';

export type FaultReason = 'not-present' | 'read-only' | 'out-of-range';

/** A domain touched memory it may not: the simulated page fault. */
export class MemoryFault extends Error {
  override readonly name = 'MemoryFault';
  constructor(
    readonly domid: DomId,
    readonly addr: number,
    readonly write: boolean,
    readonly reason: FaultReason,
  ) {
    super(`d${domid}: ${write ? 'write' : 'read'} fault at guest address 0x${addr.toString(16)} (${reason})`);
  }
}

export interface DomainMemoryLayout {
  readonly domid: DomId;
  /** Machine address of the P2M table (one 32-bit entry per pfn). */
  readonly p2mAddr: MachineAddr;
  /** Number of P2M entries (the guest-physical address space in frames). */
  readonly p2mEntries: number;
  /** Machine address of the 32-bit fault counter, bumped on every fault. */
  readonly faultCounterAddr: MachineAddr;
}

export class DomainMemory {
  readonly domid: DomId;
  readonly pageSize: number;
  readonly pageShift: number;
  private readonly mask: number;

  constructor(
    readonly machine: MachineMemory,
    readonly layout: DomainMemoryLayout,
  ) {
    this.domid = layout.domid;
    this.pageSize = machine.pageSize;
    this.pageShift = machine.pageShift;
    this.mask = machine.pageSize - 1;
  }

  /** [p2mWord pfn] is the raw P2M entry for pfn (0 when beyond the table). */
  p2mWord(pfn: Pfn): number {
    if (!(pfn >= 0 && pfn < this.layout.p2mEntries)) return P2M.EMPTY;
    // Acquire: the hypervisor stores the entry after zeroing/copying the frame.
    return this.machine.atomicLoad32((this.layout.p2mAddr + pfn * P2M.ENTRY_BYTES) as MachineAddr);
  }

  private fault(addr: number, write: boolean, reason: FaultReason): never {
    this.machine.atomicAdd32(this.layout.faultCounterAddr, 1);
    throw new MemoryFault(this.domid, addr, write, reason);
  }

  /** [translatePfn pfn write] is the machine address of pfn's first byte, or a fault. */
  translatePfn(pfn: Pfn, write: boolean): MachineAddr {
    const addr = pfn * this.pageSize;
    if (!(pfn >= 0 && pfn < this.layout.p2mEntries)) this.fault(addr, write, 'out-of-range');
    const e = this.p2mWord(pfn);
    if ((e & P2M.PRESENT) === 0) this.fault(addr, write, 'not-present');
    if (write && (e & P2M.WRITABLE) === 0) this.fault(addr, write, 'read-only');
    return ((e & P2M.MFN_MASK) * this.pageSize) as MachineAddr;
  }

  /** [translate gpa len write] is the machine address of [gpa, gpa+len) within one page. */
  translate(gpa: GuestAddr, len: number, write: boolean): MachineAddr {
    const page = Math.floor(gpa / this.pageSize);
    const off = gpa - page * this.pageSize;
    if (off + len > this.pageSize) throw new RangeError(`access ${gpa.toString(16)}+${len} straddles a page`);
    return (this.translatePfn(page as Pfn, write) + off) as MachineAddr;
  }

  /** [canAccess pfn write] tells, without faulting, whether pfn may be accessed. */
  canAccess(pfn: Pfn, write: boolean): boolean {
    const e = this.p2mWord(pfn);
    return (e & P2M.PRESENT) !== 0 && (!write || (e & P2M.WRITABLE) !== 0);
  }

  getU8(a: GuestAddr): number { return this.machine.getU8(this.translate(a, 1, false)); }
  setU8(a: GuestAddr, v: number): void { this.machine.setU8(this.translate(a, 1, true), v); }
  getU16(a: GuestAddr): number { return this.machine.getU16(this.translate(a, 2, false)); }
  setU16(a: GuestAddr, v: number): void { this.machine.setU16(this.translate(a, 2, true), v); }
  getU32(a: GuestAddr): number { return this.machine.getU32(this.translate(a, 4, false)); }
  setU32(a: GuestAddr, v: number): void { this.machine.setU32(this.translate(a, 4, true), v); }
  getU64(a: GuestAddr): bigint { return this.machine.getU64(this.translate(a, 8, false)); }
  setU64(a: GuestAddr, v: bigint): void { this.machine.setU64(this.translate(a, 8, true), v); }

  // Atomics at guest addresses: for the words a guest shares with Xen or a peer
  // (shared_info bits, grant-entry flags, ring indices). Same ordering contract
  // as MachineMemory: loads acquire, stores release, RMWs are full barriers.
  atomicLoad32(a: GuestAddr): number { return this.machine.atomicLoad32(this.translate(a, 4, false)); }
  atomicStore32(a: GuestAddr, v: number): void { this.machine.atomicStore32(this.translate(a, 4, true), v); }
  atomicOr32(a: GuestAddr, v: number): number { return this.machine.atomicOr32(this.translate(a, 4, true), v); }
  atomicAnd32(a: GuestAddr, v: number): number { return this.machine.atomicAnd32(this.translate(a, 4, true), v); }
  atomicExchange32(a: GuestAddr, v: number): number { return this.machine.atomicExchange32(this.translate(a, 4, true), v); }
  atomicCmpxchg32(a: GuestAddr, expected: number, replacement: number): number {
    return this.machine.atomicCmpxchg32(this.translate(a, 4, true), expected, replacement);
  }

  private span(gpa: number, len: number, write: boolean, fn: (addr: MachineAddr, done: number, n: number) => void): void {
    let done = 0;
    while (done < len) {
      const a = gpa + done;
      const n = Math.min(len - done, this.pageSize - (a & this.mask));
      fn(this.translate(a as GuestAddr, n, write), done, n);
      done += n;
    }
  }
  /** Copies len bytes from guest address gpa into a private buffer. */
  copyOut(gpa: GuestAddr, into: Uint8Array, intoOff = 0, len = into.length - intoOff): void {
    this.span(gpa, len, false, (a, d, n) => this.machine.copyOut(a, into, intoOff + d, n));
  }
  /** Copies bytes into guest memory at gpa. */
  copyIn(gpa: GuestAddr, from: Uint8Array, fromOff = 0, len = from.length - fromOff): void {
    this.span(gpa, len, true, (a, d, n) => this.machine.copyIn(a, from, fromOff + d, n));
  }
  fill(gpa: GuestAddr, len: number, byte = 0): void {
    this.span(gpa, len, true, (a, _d, n) => this.machine.fill(a, n, byte));
  }

  /**
   * [region pfns] is a MemRegion over the given guest frames in order (a
   * multi-page ring mapped at scattered pfns); every access is checked.
   */
  region(pfns: readonly Pfn[]): MemRegion {
    const list = pfns.slice();
    return new PagedRegion(this.machine, list.length, (page, write) => this.translatePfn(list[page] as Pfn, write));
  }
}
