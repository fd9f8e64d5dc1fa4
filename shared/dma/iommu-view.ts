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

/** The device block fields a DMA reads once, at its start. */
interface Snapshot {
  readonly owner: number;
  readonly mode: number;
  /** First bus address beyond the DMA mask. */
  readonly limit: number;
  /** Table-driven contexts: entries covered and the table's machine address. */
  readonly entries: number;
  readonly tableAddr: number;
}

export class IommuView {
  private readonly mem: MachineMemory;
  private readonly block: number;
  private readonly mask: number;
  private readonly ps: number;
  private readonly iotlb = new Map<number, number>();
  private seenGen = -1;
  readonly device: number;
  // Scratch for plan(): the machine runs of one DMA (reused, so a DMA allocates nothing).
  private readonly runAddr: number[] = [];
  private readonly runDone: number[] = [];
  private readonly runLen: number[] = [];

  constructor(
    private readonly layout: MachineLayout,
    blockAddr: number,
  ) {
    this.mem = layout.mem;
    this.block = blockAddr;
    this.mask = this.mem.pageSize - 1;
    this.ps = this.mem.pageSize;
    this.device = this.f(DEVICE_BLOCK.id);
  }

  private f(field: number): number { return this.mem.atomicLoad32((this.block + field) as MachineAddr); }
  private bump(field: number, n = 1): void { this.mem.atomicAdd32((this.block + field) as MachineAddr, n); }

  get mode(): number { return this.f(DEVICE_BLOCK.mode); }
  get owner(): number { return this.f(DEVICE_BLOCK.owner); }
  get dmaMaskBits(): number { return this.f(DEVICE_BLOCK.dmaMaskBits); }

  /**
   * Reads the context once per DMA (owner, mode, mask, table) and drops the
   * IOTLB if the hypervisor flushed since the last DMA. A flush that lands
   * during a DMA takes effect from the next one, as on hardware.
   */
  private snapshot(): Snapshot {
    const mode = this.f(DEVICE_BLOCK.mode);
    const bits = this.f(DEVICE_BLOCK.dmaMaskBits);
    let entries = 0;
    let tableAddr = 0;
    if (mode !== IOMMU_MODE.passthrough && mode !== IOMMU_MODE.identity) {
      const gen = this.f(DEVICE_BLOCK.invalidations);
      if (gen !== this.seenGen) { this.iotlb.clear(); this.seenGen = gen; }
      entries = this.f(DEVICE_BLOCK.tableEntries);
      tableAddr = this.f(DEVICE_BLOCK.tableMfn) * this.ps;
    }
    return { owner: this.f(DEVICE_BLOCK.owner), mode, limit: bits < 53 ? 2 ** bits : Number.POSITIVE_INFINITY, entries, tableAddr };
  }

  /** Records a fault in the device block and describes it. */
  private fault(bus: number, write: boolean, reason: IommuFaultReason): IommuFault {
    this.bump(DEVICE_BLOCK.faults);
    this.mem.setU64((this.block + DEVICE_BLOCK.lastFaultBus) as MachineAddr, BigInt(bus));
    this.mem.setU32((this.block + DEVICE_BLOCK.lastFaultWrite) as MachineAddr, write ? 1 : 0);
    return { kind: 'iommu-fault', device: this.device, bus, write, reason };
  }

  /**
   * The machine address of bus page bfn (+off) under snapshot h, or a fault
   * reason. Does not count the translation (callers count per DMA).
   */
  private page(h: Snapshot, bfn: number, off: number, write: boolean): number | IommuFaultReason {
    const mode = h.mode;
    if (mode === IOMMU_MODE.passthrough || mode === IOMMU_MODE.identity) {
      if (bfn >= this.mem.frames) return 'beyond-memory';
      const ft = this.layout.frameTableAddr + bfn * FRAME_ENTRY.SIZE;
      if (mode === IOMMU_MODE.identity) {
        if (this.mem.atomicLoad32((ft + FRAME_ENTRY.type) as MachineAddr) !== FRAME_TYPE.ram) return 'not-ram';
      } else {
        const frameOwner = this.mem.atomicLoad32((ft + FRAME_ENTRY.owner) as MachineAddr);
        if (frameOwner !== h.owner && this.mem.atomicLoad32((ft + FRAME_ENTRY.mapcount) as MachineAddr) === 0) {
          // No IOMMU to stop it: the access goes through, and the audit says whose frame it hit.
          this.bump(DEVICE_BLOCK.strayDma);
          this.mem.setU32((this.block + DEVICE_BLOCK.lastStrayMfn) as MachineAddr, bfn);
          this.mem.atomicStore32((this.block + DEVICE_BLOCK.lastStrayOwner) as MachineAddr, frameOwner);
        }
      }
      return bfn * this.ps + off;
    }
    // Table-driven contexts, through the IOTLB.
    let word = this.iotlb.get(bfn);
    if (word === undefined) {
      if (bfn >= h.entries) return 'not-mapped';
      word = this.mem.atomicLoad32((h.tableAddr + bfn * 4) as MachineAddr);
      if ((word & P2M.PRESENT) === 0) return 'not-mapped';
      this.iotlb.set(bfn, word);
    } else if (bfn < h.entries && (this.mem.atomicLoad32((h.tableAddr + bfn * 4) as MachineAddr) & P2M.PRESENT) === 0) {
      // Unmapped but not yet flushed (lazy invalidation): the hardware would still use it.
      this.bump(DEVICE_BLOCK.staleHits);
    }
    if (write && (word & P2M.WRITABLE) === 0) return 'read-only';
    return (word & P2M.MFN_MASK) * this.ps + off;
  }

  /** [translate bus len write] is the machine address of [bus, bus+len), which must lie in one page. */
  translate(bus: BusAddr, len: number, write: boolean): Result<MachineAddr, IommuFault> {
    const h = this.snapshot();
    if (h.owner < 0) return err(this.fault(bus, write, 'device-removed'));
    if (bus + len > h.limit) return err(this.fault(bus, write, 'beyond-dma-mask'));
    const off = bus & this.mask;
    if (off + len > this.ps) throw new RangeError(`DMA access ${bus.toString(16)}+${len} straddles a page`);
    this.bump(DEVICE_BLOCK.translations);
    const a = this.page(h, Math.floor(bus / this.ps), off, write);
    return typeof a === 'string' ? err(this.fault(bus, write, a)) : ok(a as MachineAddr);
  }

  /**
   * Translates every page of [bus, bus+len) first — a faulting DMA touches no
   * memory at all — into machine-contiguous runs (runAddr/runDone/runLen).
   * Returns the number of runs, or the fault.
   */
  private plan(bus: number, len: number, write: boolean): number | IommuFault {
    const h = this.snapshot();
    if (h.owner < 0) return this.fault(bus, write, 'device-removed');
    if (bus + len > h.limit) return this.fault(bus, write, 'beyond-dma-mask');
    const addrs = this.runAddr;
    const dones = this.runDone;
    const lens = this.runLen;
    let runs = 0;
    let pages = 0;
    let done = 0;
    while (done < len) {
      const b = bus + done;
      const off = b & this.mask;
      const n = Math.min(len - done, this.ps - off);
      const a = this.page(h, Math.floor(b / this.ps), off, write);
      pages++;
      if (typeof a === 'string') {
        this.bump(DEVICE_BLOCK.translations, pages);
        return this.fault(b, write, a);
      }
      if (runs > 0 && (addrs[runs - 1] as number) + (lens[runs - 1] as number) === a) {
        lens[runs - 1] = (lens[runs - 1] as number) + n;
      } else {
        addrs[runs] = a; dones[runs] = done; lens[runs] = n;
        runs++;
      }
      done += n;
    }
    this.bump(DEVICE_BLOCK.translations, pages);
    return runs;
  }

  /** Device reads len bytes at bus into a device-private buffer (one memcpy per machine-contiguous run). */
  dmaRead(bus: BusAddr, into: Uint8Array, intoOff = 0, len = into.length - intoOff): Result<void, IommuFault> {
    const runs = this.plan(bus, len, false);
    if (typeof runs !== 'number') return err(runs);
    for (let i = 0; i < runs; i++) this.mem.copyOut(this.runAddr[i] as MachineAddr, into, intoOff + (this.runDone[i] as number), this.runLen[i] as number);
    return ok(undefined);
  }
  /** Device writes len bytes from a device-private buffer to bus. */
  dmaWrite(bus: BusAddr, from: Uint8Array, fromOff = 0, len = from.length - fromOff): Result<void, IommuFault> {
    const runs = this.plan(bus, len, true);
    if (typeof runs !== 'number') return err(runs);
    for (let i = 0; i < runs; i++) this.mem.copyIn(this.runAddr[i] as MachineAddr, from, fromOff + (this.runDone[i] as number), this.runLen[i] as number);
    return ok(undefined);
  }

  counters(): { translations: number; faults: number; strayDma: number; lastStrayMfn: number; lastStrayOwner: number; staleHits: number; maps: number; unmaps: number; flushes: number } {
    return {
      translations: this.f(DEVICE_BLOCK.translations) >>> 0, faults: this.f(DEVICE_BLOCK.faults), strayDma: this.f(DEVICE_BLOCK.strayDma),
      lastStrayMfn: this.f(DEVICE_BLOCK.lastStrayMfn), lastStrayOwner: this.f(DEVICE_BLOCK.lastStrayOwner), staleHits: this.f(DEVICE_BLOCK.staleHits),
      maps: this.f(DEVICE_BLOCK.maps), unmaps: this.f(DEVICE_BLOCK.unmaps), flushes: this.f(DEVICE_BLOCK.flushes),
    };
  }
}
