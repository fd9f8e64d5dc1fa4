/**
 * The IOMMU, owned by the hypervisor: per-device translation tables from bus
 * frame to machine frame with read/write permission, in Xen's dom0-iommu
 * flavours (passthrough, identity, strict) plus an explicit context that the
 * owner programs by hypercall (the `iommu` DMA API; PV-IOMMU in spirit).
 *
 * Strict contexts follow their owner: its RAM at bus = mfn, and every frame it
 * grant-maps, added on map and removed (with an IOTLB flush) on the last
 * unmap. Explicit contexts with lazy invalidation defer the flush, as Linux's
 * IOVA flush queue does: until the flush, a device may still hit the stale
 * IOTLB entry (counted by the translator as a stale hit).
 */
import { DEVICE_BLOCK, IOMMUOP, IOMMU_MAP, IOMMU_MAP_FLAG, IOMMU_MODE, type IommuMode } from '../shared/abi/iommu.ts';
import { FRAME_TYPE } from '../shared/abi/machine.ts';
import { XEN_ERRNO } from '../shared/abi/xen.ts';
import { type Result, err, ok } from '../shared/result.ts';
import type { MachineMemory } from '../shared/memory/machine-memory.ts';
import type { DomId, MachineAddr, Mfn, Pfn } from '../shared/types.ts';
import type { Domain } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';
import { P2mTable } from './p2m.ts';

export interface AddDeviceRequest {
  readonly name: string;
  readonly owner: number;
  readonly mode: IommuMode;
  /** The device reaches bus addresses below 2^dmaMaskBits (default 64: no limit). */
  readonly dmaMaskBits?: number;
  /** Explicit contexts: defer IOTLB flushes (batch of lazyBatch unmaps or an explicit flush). */
  readonly lazy?: boolean;
  readonly lazyBatch?: number;
}

export interface DeviceInfo {
  readonly id: number;
  readonly name: string;
  readonly owner: number;
  readonly mode: IommuMode;
  readonly blockAddr: number;
  readonly dmaMaskBits: number;
  readonly lazy: boolean;
}

interface DeviceContext extends DeviceInfo {
  readonly blockMfn: Mfn;
  readonly table?: P2mTable;
  readonly tableFrames: number;
  /** Strict: how many grant maps of the owner keep each foreign frame mapped. */
  readonly grantRefs: Map<number, number>;
  pendingUnmaps: number;
  readonly lazyBatch: number;
  /** The owner died: the device is cut off, but its block stays until removeDevice. */
  orphaned: boolean;
}

/** A u64 in machine memory as a number (two u32 loads; correctly rounded beyond 2^53, as Number(bigint)). */
function u64(mem: MachineMemory, a: number): number {
  return mem.getU32(a as MachineAddr) + mem.getU32((a + 4) as MachineAddr) * 0x1_0000_0000;
}

export class Iommu {
  private readonly devices = new Map<number, DeviceContext>();
  /**
   * The strict contexts still attached to their owner: the only ones a grant
   * map or unmap touches, kept apart so that the per-op hooks below cost one
   * length check when there are none (the common case).
   */
  private readonly strict: DeviceContext[] = [];
  private nextId = 1;

  constructor(
    private readonly hv: Hypervisor,
    private readonly arenaAlloc: (n: number) => Mfn | undefined,
    private readonly arenaFree: (mfn: Mfn, n: number) => void,
  ) {}

  list(): DeviceInfo[] {
    return [...this.devices.values()].map(({ id, name, owner, mode, blockAddr, dmaMaskBits, lazy, orphaned }) => ({ id, name, owner: orphaned ? -1 : owner, mode, blockAddr, dmaMaskBits, lazy }));
  }

  private field(dev: DeviceContext, f: number): MachineAddr { return (dev.blockAddr + f) as MachineAddr; }
  private bump(dev: DeviceContext, f: number, n = 1): void { this.hv.mem.atomicAdd32(this.field(dev, f), n); }

  addDevice(req: AddDeviceRequest): Result<DeviceInfo, string> {
    const owner = this.hv.domain(req.owner);
    if (owner === undefined || !owner.alive) return err(`no such domain: ${req.owner}`);
    if (!(req.mode in IOMMU_MODE)) return err(`IOMMU mode must be one of ${Object.keys(IOMMU_MODE).join(', ')}, got ${String(req.mode)}`);
    const mask = req.dmaMaskBits ?? 64;
    if (!(Number.isInteger(mask) && mask >= 12 && mask <= 64)) return err(`DMA mask must be 12..64 bits, got ${mask}`);
    const mem = this.hv.mem;
    const blockMfn = this.arenaAlloc(1);
    if (blockMfn === undefined) return err('out of Xen memory for the device block');
    const tabled = req.mode === 'strict' || req.mode === 'explicit';
    const entries = tabled ? Math.max(mem.frames, owner.p2m.entries) : 0;
    const tableFrames = tabled ? Math.ceil((entries * 4) / mem.pageSize) : 0;
    let table: P2mTable | undefined;
    if (tabled) {
      const t = this.arenaAlloc(tableFrames);
      if (t === undefined) { this.arenaFree(blockMfn, 1); return err('out of Xen memory for the IOMMU table'); }
      mem.fill(mem.frameAddr(t), tableFrames * mem.pageSize, 0);
      table = new P2mTable(mem, mem.frameAddr(t), entries);
    }
    const id = this.nextId++;
    const blockAddr = mem.frameAddr(blockMfn);
    mem.fill(blockAddr, mem.pageSize, 0);
    const dev: DeviceContext = {
      id, name: req.name, owner: owner.domid, mode: req.mode, blockAddr, dmaMaskBits: mask, lazy: req.lazy ?? false,
      blockMfn, table, tableFrames, grantRefs: new Map(), pendingUnmaps: 0, lazyBatch: req.lazyBatch ?? 256, orphaned: false,
    };
    const f = (x: number, v: number) => mem.atomicStore32(this.field(dev, x), v);
    f(DEVICE_BLOCK.id, id); f(DEVICE_BLOCK.owner, owner.domid); f(DEVICE_BLOCK.mode, IOMMU_MODE[req.mode]);
    f(DEVICE_BLOCK.tableMfn, table === undefined ? 0 : mem.frameOf(table.base)); f(DEVICE_BLOCK.tableEntries, entries);
    f(DEVICE_BLOCK.dmaMaskBits, mask);
    if (req.mode === 'strict' && table !== undefined) {
      // The owner's RAM, at bus = mfn, writable.
      for (const m of owner.owned) if (this.hv.frameTable.type(m) === FRAME_TYPE.ram) table.set(m as unknown as Pfn, m, true, false);
    }
    this.devices.set(id, dev);
    if (req.mode === 'strict' && table !== undefined) this.strict.push(dev);
    return ok(this.list().find((d) => d.id === id) as DeviceInfo);
  }

  removeDevice(id: number): boolean {
    const dev = this.devices.get(id);
    if (dev === undefined) return false;
    this.cutOff(dev);
    this.arenaFree(dev.blockMfn, 1);
    this.devices.delete(id);
    return true;
  }

  /**
   * Cuts a device off from memory: every later DMA faults ('device-removed')
   * and its translation table goes back to the arena. Its block stays.
   */
  private cutOff(dev: DeviceContext): void {
    if (dev.orphaned) return;
    dev.orphaned = true;
    const i = this.strict.indexOf(dev);
    if (i >= 0) this.strict.splice(i, 1);
    // Owner first: a translator that sees -1 never walks the table freed below.
    this.hv.mem.atomicStore32(this.field(dev, DEVICE_BLOCK.owner), -1);
    this.hv.mem.atomicAdd32(this.field(dev, DEVICE_BLOCK.invalidations), 1);
    if (dev.table !== undefined) this.arenaFree(this.hv.mem.frameOf(dev.table.base), dev.tableFrames);
  }

  /**
   * A dying owner cuts its devices off, but their blocks (which hold the
   * device models' registers) stay allocated until the toolstack, having
   * stopped each model's worker, calls removeDevice: freeing a block under a
   * running device model would let it write into whatever reuses the frame.
   */
  ownerDestroyed(domid: DomId): void {
    for (const d of this.devices.values()) if (d.owner === domid) this.cutOff(d);
  }

  private flush(dev: DeviceContext): void {
    dev.pendingUnmaps = 0;
    // Release: a translator that sees the new count re-reads the table.
    this.hv.mem.atomicAdd32(this.field(dev, DEVICE_BLOCK.invalidations), 1);
    this.bump(dev, DEVICE_BLOCK.flushes);
  }

  /** Strict contexts of the mapper gain the frame (grant map). */
  grantMapped(mapper: Domain, mfn: Mfn, writable: boolean): void {
    const strict = this.strict;
    for (let i = 0; i < strict.length; i++) {
      const dev = strict[i] as DeviceContext;
      if (dev.owner !== mapper.domid || dev.table === undefined) continue;
      const n = dev.grantRefs.get(mfn) ?? 0;
      dev.grantRefs.set(mfn, n + 1);
      const cur = dev.table.get(mfn as unknown as Pfn);
      dev.table.set(mfn as unknown as Pfn, mfn, writable || (cur.present && cur.writable), true);
      this.bump(dev, DEVICE_BLOCK.maps);
    }
  }

  /** ... and lose it with the last unmap, flushed at once (Xen flushes grant unmaps). */
  grantUnmapped(mapper: Domain, mfn: Mfn): void {
    const strict = this.strict;
    for (let i = 0; i < strict.length; i++) {
      const dev = strict[i] as DeviceContext;
      if (dev.owner !== mapper.domid || dev.table === undefined) continue;
      const n = (dev.grantRefs.get(mfn) ?? 0) - 1;
      if (n > 0) { dev.grantRefs.set(mfn, n); continue; }
      dev.grantRefs.delete(mfn);
      dev.table.clear(mfn as unknown as Pfn);
      this.bump(dev, DEVICE_BLOCK.unmaps);
      this.flush(dev);
    }
  }

  /** The owner's RAM frame old was exchanged for nu: strict contexts follow (bus = mfn). */
  ramMoved(owner: Domain, old: Mfn, nu: Mfn): void {
    for (const dev of this.devices.values()) {
      if (dev.orphaned || dev.owner !== owner.domid || dev.mode !== 'strict' || dev.table === undefined) continue;
      dev.table.clear(old as unknown as Pfn);
      dev.table.set(nu as unknown as Pfn, nu, true, false);
      this.flush(dev);
    }
  }

  /** HYPERVISOR_iommu_op(cmd, device, off, count) from domain d. */
  op(d: Domain, cmd: number, args: readonly number[]): [number, number] {
    const dev = this.devices.get(args[1] ?? 0);
    if (dev === undefined || dev.orphaned) return [-XEN_ERRNO.ENODEV, 0];
    if (dev.owner !== d.domid) return [-XEN_ERRNO.EPERM, 0];
    const mem = this.hv.mem;
    const off = args[2] ?? 0;
    const count = args[3] ?? 0;
    switch (cmd) {
      case IOMMUOP.query:
        return [0, IOMMU_MODE[dev.mode] | (dev.dmaMaskBits << 8)];
      case IOMMUOP.flush:
        this.flush(dev);
        return [0, 0];
      case IOMMUOP.map: {
        if (dev.mode !== 'explicit' || dev.table === undefined) return [-XEN_ERRNO.EOPNOTSUPP, 0];
        const buf = this.hv.hcbuf(d, off, count * IOMMU_MAP.SIZE);
        if (buf === undefined) return [-XEN_ERRNO.EFAULT, 0];
        let done = 0;
        for (let i = 0; i < count; i++) {
          const a = buf + i * IOMMU_MAP.SIZE;
          const st = this.mapOne(d, dev, dev.table, a);
          mem.setI32((a + IOMMU_MAP.status) as MachineAddr, st);
          if (st === 0) done++;
        }
        return [done, 0];
      }
      case IOMMUOP.unmap: {
        if (dev.mode !== 'explicit' || dev.table === undefined) return [-XEN_ERRNO.EOPNOTSUPP, 0];
        const buf = this.hv.hcbuf(d, off, count * 8);
        if (buf === undefined) return [-XEN_ERRNO.EFAULT, 0];
        let done = 0;
        for (let i = 0; i < count; i++) {
          const bfn = u64(mem, buf + i * 8) / mem.pageSize;
          if (!Number.isInteger(bfn) || !dev.table.inRange(bfn) || dev.table.lookup(bfn as Pfn) === undefined) continue;
          dev.table.clear(bfn as Pfn);
          this.bump(dev, DEVICE_BLOCK.unmaps);
          dev.pendingUnmaps++;
          done++;
        }
        if (done > 0 && (!dev.lazy || dev.pendingUnmaps >= dev.lazyBatch)) this.flush(dev);
        return [done, 0];
      }
      default:
        return [-XEN_ERRNO.ENOSYS, 0];
    }
  }

  /** One iommu_map element at a (bus u64, gfn u64, flags u32): maps it and returns its status (0 or -errno). */
  private mapOne(d: Domain, dev: DeviceContext, table: P2mTable, a: number): number {
    const mem = this.hv.mem;
    const bus = u64(mem, a);
    const gfn = u64(mem, a + IOMMU_MAP.gfn);
    const flags = mem.getU32((a + IOMMU_MAP.flags) as MachineAddr);
    const bfn = bus / mem.pageSize;
    if (!Number.isInteger(bfn) || !table.inRange(bfn) || (flags & (IOMMU_MAP_FLAG.read | IOMMU_MAP_FLAG.write)) === 0) return -XEN_ERRNO.EINVAL;
    if (table.lookup(bfn as Pfn) !== undefined) return -XEN_ERRNO.EEXIST;
    const mfn = this.callerFrame(d, gfn, (flags & IOMMU_MAP_FLAG.write) !== 0);
    if (mfn === undefined) return -XEN_ERRNO.EPERM;
    table.set(bfn as Pfn, mfn, (flags & IOMMU_MAP_FLAG.write) !== 0, false);
    this.bump(dev, DEVICE_BLOCK.maps);
    return 0;
  }

  /** The machine frame behind a frame the caller names (own RAM, or a grant mapping it holds). */
  private callerFrame(d: Domain, gfn: number, write: boolean): Mfn | undefined {
    if (d.model === 'p2m') {
      // PV callers name machine frames; they must own them or hold a grant map of them.
      if (!(gfn >= 0 && gfn < this.hv.mem.frames)) return undefined;
      if (this.hv.frameTable.owner(gfn as Mfn) === d.domid) return gfn as Mfn;
      for (const e of d.maptrack) if (e !== undefined && e.mfn === gfn && (!write || (e.flags & 4) === 0)) return gfn as Mfn;
      return undefined;
    }
    if (!d.p2m.inRange(gfn)) return undefined;
    const e = d.p2m.get(gfn as Pfn);
    if (!e.present || (write && !e.writable)) return undefined;
    return e.mfn as Mfn;
  }
}
