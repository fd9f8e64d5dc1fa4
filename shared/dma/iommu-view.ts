/**
 * A device's window onto machine memory: every DMA goes through here, by bus
 * address, and is translated the way the IOMMU context says (hypervisor/iommu.ts):
 *
 *  - passthrough: bus address = machine address, nothing checked but the
 *    memory's end — and an audit: DMA that touches a frame the device's owner
 *    neither owns nor has grant-mapped is counted as stray (the "legacy
 *    driver" corruption, with whose frame it was);
 *  - identity: bus frame = mfn, any RAM frame;
 *  - strict / explicit: the context's table, cached in an IOTLB that is
 *    dropped whenever the hypervisor flushes (the `invalidations` word moves).
 *
 * A faulting access never touches memory; it is recorded in the device block
 * and returned as an IommuFault.
 */
import { DEVICE_BLOCK, IOMMU_MODE } from '../abi/iommu.ts';
import { FRAME_ENTRY, FRAME_TYPE } from '../abi/machine.ts';
import { P2M } from '../abi/p2m.ts';
import type { MachineLayout } from '../machine-layout.ts';
import type { MachineMemory } from '../memory/machine-memory.ts';
import { type Result, err, ok } from '../result.ts';
import type { BusAddr, MachineAddr } from '../types.ts';

export type IommuFaultReason = 'not-mapped' | 'read-only' | 'beyond-dma-mask' | 'beyond-memory' | 'not-ram' | 'device-removed';

export interface IommuFault {
  readonly kind: 'iommu-fault';
  readonly device: number;
  readonly bus: number;
  readonly write: boolean;
  readonly reason: IommuFaultReason;
}

export function describeIommuFault(f: IommuFault): string {
  return `IOMMU fault on device ${f.device}: cannot translate bus address 0x${f.bus.toString(16)} for ${f.write ? 'write' : 'read'}: ${f.reason}`;
}

export class IommuView {
  private readonly mem: MachineMemory;
  private readonly block: number;
  private readonly shift: number;
  private readonly mask: number;
  private readonly iotlb = new Map<number, number>();
  private seenGen = -1;
  readonly device: number;

  constructor(
    private readonly layout: MachineLayout,
    blockAddr: number,
  ) {
    this.mem = layout.mem;
    this.block = blockAddr;
    this.shift = this.mem.pageShift;
    this.mask = this.mem.pageSize - 1;
    this.device = this.f(DEVICE_BLOCK.id);
  }

  private f(field: number): number { return this.mem.atomicLoad32((this.block + field) as MachineAddr); }
  private bump(field: number): void { this.mem.atomicAdd32((this.block + field) as MachineAddr, 1); }

  get mode(): number { return this.f(DEVICE_BLOCK.mode); }
  get owner(): number { return this.f(DEVICE_BLOCK.owner); }
  get dmaMaskBits(): number { return this.f(DEVICE_BLOCK.dmaMaskBits); }

  private fault(bus: number, write: boolean, reason: IommuFaultReason): Result<never, IommuFault> {
    this.bump(DEVICE_BLOCK.faults);
    this.mem.setU64((this.block + DEVICE_BLOCK.lastFaultBus) as MachineAddr, BigInt(bus));
    this.mem.setU32((this.block + DEVICE_BLOCK.lastFaultWrite) as MachineAddr, write ? 1 : 0);
    return err({ kind: 'iommu-fault', device: this.device, bus, write, reason });
  }

  /** [translate bus len write] is the machine address of [bus, bus+len), which must lie in one page. */
  translate(bus: BusAddr, len: number, write: boolean): Result<MachineAddr, IommuFault> {
    const owner = this.owner;
    if (owner < 0) return this.fault(bus, write, 'device-removed');
    const maskBits = this.dmaMaskBits;
    if (maskBits < 53 && bus + len > 2 ** maskBits) return this.fault(bus, write, 'beyond-dma-mask');
    const bfn = Math.floor(bus / this.mem.pageSize);
    const off = bus & this.mask;
    if (off + len > this.mem.pageSize) throw new RangeError(`DMA access ${bus.toString(16)}+${len} straddles a page`);
    this.bump(DEVICE_BLOCK.translations);
    const mode = this.mode;
    if (mode === IOMMU_MODE.passthrough || mode === IOMMU_MODE.identity) {
      if (bfn >= this.mem.frames) return this.fault(bus, write, 'beyond-memory');
      const ft = this.layout.frameTableAddr + bfn * FRAME_ENTRY.SIZE;
      const frameOwner = this.mem.atomicLoad32((ft + FRAME_ENTRY.owner) as MachineAddr);
      const type = this.mem.atomicLoad32((ft + FRAME_ENTRY.type) as MachineAddr);
      if (mode === IOMMU_MODE.identity && type !== FRAME_TYPE.ram) return this.fault(bus, write, 'not-ram');
      if (mode === IOMMU_MODE.passthrough && frameOwner !== owner && this.mem.atomicLoad32((ft + FRAME_ENTRY.mapcount) as MachineAddr) === 0) {
        // No IOMMU to stop it: the access goes through, and the audit says whose frame it hit.
        this.bump(DEVICE_BLOCK.strayDma);
        this.mem.setU32((this.block + DEVICE_BLOCK.lastStrayMfn) as MachineAddr, bfn);
        this.mem.atomicStore32((this.block + DEVICE_BLOCK.lastStrayOwner) as MachineAddr, frameOwner);
      }
      return ok((bfn * this.mem.pageSize + off) as MachineAddr);
    }
    // Table-driven contexts, through the IOTLB.
    const gen = this.f(DEVICE_BLOCK.invalidations);
    if (gen !== this.seenGen) { this.iotlb.clear(); this.seenGen = gen; }
    let word = this.iotlb.get(bfn);
    const entries = this.f(DEVICE_BLOCK.tableEntries);
    const tableAddr = this.f(DEVICE_BLOCK.tableMfn) * this.mem.pageSize;
    if (word === undefined) {
      if (bfn >= entries) return this.fault(bus, write, 'not-mapped');
      word = this.mem.atomicLoad32((tableAddr + bfn * 4) as MachineAddr);
      if ((word & P2M.PRESENT) === 0) return this.fault(bus, write, 'not-mapped');
      this.iotlb.set(bfn, word);
    } else if (bfn < entries && (this.mem.atomicLoad32((tableAddr + bfn * 4) as MachineAddr) & P2M.PRESENT) === 0) {
      // Unmapped but not yet flushed (lazy invalidation): the hardware would still use it.
      this.bump(DEVICE_BLOCK.staleHits);
    }
    if (write && (word & P2M.WRITABLE) === 0) return this.fault(bus, write, 'read-only');
    return ok(((word & P2M.MFN_MASK) * this.mem.pageSize + off) as MachineAddr);
  }

  private span(bus: number, len: number, write: boolean, fn: (a: MachineAddr, done: number, n: number) => void): Result<void, IommuFault> {
    // Translate every page first: a faulting DMA touches no memory at all.
    const parts: [MachineAddr, number, number][] = [];
    let done = 0;
    while (done < len) {
      const b = bus + done;
      const n = Math.min(len - done, this.mem.pageSize - (b & this.mask));
      const r = this.translate(b as BusAddr, n, write);
      if (!r.ok) return r;
      parts.push([r.value, done, n]);
      done += n;
    }
    for (const [a, d, n] of parts) fn(a, d, n);
    return ok(undefined);
  }

  /** Device reads len bytes at bus into a device-private buffer. */
  dmaRead(bus: BusAddr, into: Uint8Array, intoOff = 0, len = into.length - intoOff): Result<void, IommuFault> {
    return this.span(bus, len, false, (a, d, n) => this.mem.copyOut(a, into, intoOff + d, n));
  }
  /** Device writes len bytes from a device-private buffer to bus. */
  dmaWrite(bus: BusAddr, from: Uint8Array, fromOff = 0, len = from.length - fromOff): Result<void, IommuFault> {
    return this.span(bus, len, true, (a, d, n) => this.mem.copyIn(a, from, fromOff + d, n));
  }

  counters(): { translations: number; faults: number; strayDma: number; lastStrayMfn: number; lastStrayOwner: number; staleHits: number; maps: number; unmaps: number; flushes: number } {
    return {
      translations: this.f(DEVICE_BLOCK.translations) >>> 0, faults: this.f(DEVICE_BLOCK.faults), strayDma: this.f(DEVICE_BLOCK.strayDma),
      lastStrayMfn: this.f(DEVICE_BLOCK.lastStrayMfn), lastStrayOwner: this.f(DEVICE_BLOCK.lastStrayOwner), staleHits: this.f(DEVICE_BLOCK.staleHits),
      maps: this.f(DEVICE_BLOCK.maps), unmaps: this.f(DEVICE_BLOCK.unmaps), flushes: this.f(DEVICE_BLOCK.flushes),
    };
  }
}
