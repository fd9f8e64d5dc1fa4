/**
 * A DMA device's register window (its "BAR"), and the device's interrupt line.
 *
 * Where the registers live: in the device's control block frame, which the
 * hypervisor allocates at addDevice (shared/abi/iommu.ts uses its first 128
 * bytes); the window starts at MMIO_OFFSET. The owning domain's driver reaches
 * it through MachineMemory at the block address the toolstack gives it — as
 * Xen grants a driver domain iomem access to its device's BAR — and never
 * through guest RAM. Queues, descriptors and data live in the driver's memory
 * and are reached by the device only by DMA, through IommuView.
 *
 * Ordering: every register is a 32-bit word accessed with atomics. A store of
 * an index is a release, its load an acquire: the device that loads a
 * producer index sees the descriptors the driver wrote before storing it, and
 * vice versa for completions.
 *
 * The interrupt: the device raises its line by running Xen's pirq delivery on
 * its own thread — set the port pending in the owner's shared_info and kick
 * its vCPU (hypervisor/evtchn-deliver.ts markPending, under withLiveSlot),
 * exactly as an EVTCHNOP_send from another domain is delivered. The port is
 * one the driver allocated for itself and wrote into `irqPort` (standing in
 * for EVTCHNOP_bind_pirq, which the hypervisor does not implement).
 * Interrupts are suppressed with event indices as in ring.h: the device
 * raises one only when its producer index moves past the driver's event index.
 */
import { DEVICE_BLOCK } from '../../shared/abi/iommu.ts';
import { DCB } from '../../shared/abi/machine.ts';
import type { MachineLayout } from '../../shared/machine-layout.ts';
import type { MachineMemory, WaitResult } from '../../shared/memory/machine-memory.ts';
import type { MachineAddr } from '../../shared/types.ts';
import { markPending, withLiveSlot } from '../../hypervisor/evtchn-deliver.ts';

/** Byte offset of the register window within the device block frame. */
export const MMIO_OFFSET = 1024;

/** Registers every xensim DMA device has, at the start of its window. */
export const MMIO_COMMON = {
  /** i32 [DRV, HOST, PEER bump then notify] the device's wake word; it sleeps on it. */
  doorbell: 0,
  /** i32 [HOST sets, DEV clears] control-plane messages wait for the device's worker. */
  control: 4,
  /** u32 [DRV] the owner's event-channel port the interrupt is delivered on; 0 = none. */
  irqPort: 8,
  /** u32 [DRV] 1 = the queues are programmed, run; 0 = stop and forget the queues. */
  enable: 12,
  /** u32 [DEV] DEVICE_STATUS. */
  status: 16,
  /** u32 [DEV] interrupts raised. */
  interrupts: 20,
  /** u32 [DEV] times the device went to sleep on its doorbell. */
  sleeps: 24,
  /** u32 [DEV] FATAL_REASON once status is fatal. */
  fatalReason: 28,
  SIZE: 64,
} as const;

export const DEVICE_STATUS = { stopped: 0, running: 1, fatal: 2 } as const;

/** Why a device stopped: what the driver (or a hostile owner) did wrong. */
export const FATAL_REASON = {
  none: 0,
  /** queueEntries not a power of two in range, or a base not aligned. */
  badQueueConfig: 1,
  /** The driver claimed more descriptors than the queue holds (RING_REQUEST_PROD_OVERFLOW). */
  producerOverflow: 2,
  /** Reading descriptors faulted (their bus address is not mapped for reading). */
  queueReadFault: 3,
  /** Writing completions or write-backs faulted. */
  queueWriteFault: 4,
} as const;

/** [needNotify nu old event] is ring.h's rule: notify iff event lies in (old, nu], unsigned. */
export function needNotify(nu: number, old: number, event: number): boolean {
  return ((nu - event) >>> 0) < ((nu - old) >>> 0);
}

export class MmioWindow {
  readonly base: MachineAddr;

  constructor(
    readonly mem: MachineMemory,
    readonly blockAddr: number,
  ) {
    this.base = (blockAddr + MMIO_OFFSET) as MachineAddr;
  }

  private a(off: number): MachineAddr { return (this.base + off) as MachineAddr; }

  /** Acquire load of a register (unsigned). */
  load(off: number): number { return this.mem.atomicLoad32(this.a(off)) >>> 0; }
  /** Release store of a register. */
  store(off: number, v: number): void { this.mem.atomicStore32(this.a(off), v); }
  add(off: number, v = 1): number { return this.mem.atomicAdd32(this.a(off), v) >>> 0; }
  /** 64-bit registers (bus addresses) as two words, low first; set before enable. */
  load64(off: number): number { return this.load(off) + this.load(off + 4) * 2 ** 32; }
  store64(off: number, v: number): void { this.store(off, v >>> 0); this.store(off + 4, Math.floor(v / 2 ** 32)); }

  /** Wakes the device: bump its doorbell, then notify (it re-checks its queues when the word moved). */
  ring(): void {
    this.mem.atomicAdd32(this.a(MMIO_COMMON.doorbell), 1);
    this.mem.notify32(this.a(MMIO_COMMON.doorbell), 1);
  }
  /** The host's control kick: flag, then ring. */
  kickControl(): void {
    this.store(MMIO_COMMON.control, 1);
    this.ring();
  }
  /** The device sleeps until the doorbell moves from seq (or ms pass). */
  waitDoorbell(seq: number, ms: number): WaitResult {
    return this.mem.wait32(this.a(MMIO_COMMON.doorbell), seq | 0, ms);
  }
  doorbell(): number { return this.mem.atomicLoad32(this.a(MMIO_COMMON.doorbell)); }
}

/**
 * The device side of the interrupt line: delivers to whichever domain owns the
 * device now (the device block's owner), on the port the driver registered.
 */
export class InterruptLine {
  private slot = -1;
  private slotOf = -1;

  constructor(
    private readonly layout: MachineLayout,
    private readonly mmio: MmioWindow,
  ) {}

  private owner(): number {
    return this.layout.mem.atomicLoad32((this.mmio.blockAddr + DEVICE_BLOCK.owner) as MachineAddr);
  }

  private findSlot(domid: number): number {
    if (this.slotOf === domid && this.layout.slotDomid(this.slot) === domid) return this.slot;
    for (let s = 0; s < this.layout.nrSlots; s++) {
      if (this.layout.slotDomid(s) === domid) { this.slot = s; this.slotOf = domid; return s; }
    }
    return -1;
  }

  /** [raise] delivers the interrupt; false when no port is set or the owner is gone. */
  raise(): boolean {
    const port = this.mmio.load(MMIO_COMMON.irqPort);
    if (port === 0) return false;
    const owner = this.owner();
    if (owner < 0) return false;
    const slot = this.findSlot(owner);
    if (slot < 0) return false;
    // A port beyond the owner's table would aim the pending bit outside its shared_info.
    if (port >= this.layout.mem.atomicLoad32(this.layout.dcbField(slot, DCB.nrPorts))) return false;
    const done = withLiveSlot(this.layout, slot, owner, () => { markPending(this.layout, slot, port); });
    if (done) this.mmio.add(MMIO_COMMON.interrupts);
    return done;
  }
}
