/**
 * Reading the machine's layout (shared/abi/machine.ts) from the header the
 * hypervisor wrote at boot: where the frame table, the domain slots and the
 * arena are. Every worker builds one of these from the same memory.
 */
import { DCB, MACHINE_HEADER, SLOT_FRAMES } from './abi/machine.ts';
import type { MachineMemory } from './memory/machine-memory.ts';
import type { MachineAddr } from './types.ts';

export class MachineLayout {
  readonly frameTableAddr: MachineAddr;
  readonly frameTableFrames: number;
  readonly slotsAddr: MachineAddr;
  readonly nrSlots: number;
  readonly arenaStart: number;
  readonly arenaEnd: number;

  constructor(readonly mem: MachineMemory) {
    const h = (f: number) => mem.getU32(f as MachineAddr);
    if (h(MACHINE_HEADER.magic) !== MACHINE_HEADER.MAGIC) throw new Error('machine memory has not been formatted by the hypervisor');
    if (h(MACHINE_HEADER.pageSize) !== mem.pageSize) throw new Error('page size disagrees with the machine header');
    this.frameTableAddr = (h(MACHINE_HEADER.frameTableMfn) * mem.pageSize) as MachineAddr;
    this.frameTableFrames = h(MACHINE_HEADER.frameTableFrames);
    this.slotsAddr = (h(MACHINE_HEADER.slotsMfn) * mem.pageSize) as MachineAddr;
    this.nrSlots = h(MACHINE_HEADER.nrSlots);
    this.arenaStart = h(MACHINE_HEADER.arenaStart);
    this.arenaEnd = h(MACHINE_HEADER.arenaEnd);
  }

  /** [dcb slot] is the machine address of slot's domain control block. */
  dcb(slot: number): MachineAddr {
    if (!(slot >= 0 && slot < this.nrSlots)) throw new RangeError(`slot ${slot} out of range`);
    return (this.slotsAddr + slot * SLOT_FRAMES * this.mem.pageSize) as MachineAddr;
  }
  /** [sharedInfo slot] is the machine address of slot's shared_info page. */
  sharedInfo(slot: number): MachineAddr {
    return (this.dcb(slot) + this.mem.pageSize) as MachineAddr;
  }
  dcbField(slot: number, field: number): MachineAddr {
    return (this.dcb(slot) + field) as MachineAddr;
  }
  header(field: number): MachineAddr {
    return field as MachineAddr;
  }
  /** The domid living in slot, or -1. */
  slotDomid(slot: number): number {
    return this.mem.atomicLoad32(this.dcbField(slot, DCB.domid));
  }
}
