/**
 * The hypervisor: owns frames, P2M/M2P, grant tables, event channels and
 * domain lifecycle. It runs in its own worker (hypervisor/main.ts) and serves
 * hypercalls posted in each domain's mailbox (hypervisor/hypercall-server.ts);
 * the same object runs in one thread under tests and the deterministic scheduler.
 *
 * The caller's identity is the slot whose mailbox carried the call — never a
 * field of the request.
 */
import { DCB, DOMAIN_STATE, FRAME_TYPE, MEMORY_MODEL, PORT_ENTRY, type MemoryModel } from '../shared/abi/machine.ts';
import { HYPERVISOR, XEN_ERRNO } from '../shared/abi/xen.ts';
import { MachineLayout } from '../shared/machine-layout.ts';
import type { MachineMemory } from '../shared/memory/machine-memory.ts';
import { type Result, err, ok } from '../shared/result.ts';
import { DOMID_FIRST_RESERVED, DOMID_FREE, DOMID_XEN, type DomId, type MachineAddr, type Mfn, type Pfn } from '../shared/types.ts';
import { Domain, type DomainSpec } from './domain.ts';
import { FrameAllocator } from './frame-allocator.ts';
import { FrameTable } from './frame-table.ts';
import { formatMachine, type MachineFormatOptions } from './machine-format.ts';
import { P2mTable } from './p2m.ts';
import { grantTableOp, releaseMapperGrants, maybeFinishZombie } from './grant-table.ts';
import { eventChannelOp, closeAllPorts } from './event-channel.ts';
import { multicall } from './multicall.ts';
import { Iommu } from './iommu.ts';
import { memoryOp, dom0vpOp } from './memory-op.ts';

export interface HypervisorOptions extends MachineFormatOptions {
  /** Seed for frame placement (scattered allocation), so runs replay. */
  readonly seed?: number;
  /**
   * Bytes of low machine memory kept for contiguous and DMA allocations, as
   * Xen keeps memory below dma_bitsize: scattered domain RAM comes from above
   * it until that runs out. Default: an eighth of memory.
   */
  readonly dmaZoneBytes?: number;
  readonly defaultMaxGrantFrames?: number;
  readonly defaultMaxMaptrack?: number;
}

export interface CreateDomainRequest {
  readonly name: string;
  /** RAM in KiB. */
  readonly memoryKiB: number;
  readonly model: MemoryModel;
  readonly privileged?: boolean;
  /** Guest-physical pages reserved for foreign grant mappings (default 4096). */
  readonly foreignPages?: number;
  /** Event-channel ports (default 1024, at most 4096: the 2-level limit). */
  readonly nrPorts?: number;
  /** max_grant_frames (default 32: 16384 v1 grants at 4 KiB). */
  readonly maxGrantFrames?: number;
  /** Maptrack entries (default 16384). */
  readonly maxMaptrack?: number;
  /** Pages of hypercall argument buffer (default 4). */
  readonly hcbufPages?: number;
  /** Ask for a specific domid (dom0 is 0); otherwise the next free one. */
  readonly domid?: number;
}

/** Everything a domain's worker needs to find its memory and tables. */
export interface DomainBootInfo {
  readonly domid: DomId;
  readonly slot: number;
  readonly name: string;
  readonly model: MemoryModel;
  readonly privileged: boolean;
  readonly pageSize: number;
  readonly ramBase: number;
  readonly ramPages: number;
  readonly sharedInfoPfn: number;
  readonly grantPfnBase: number;
  readonly maxGrantFrames: number;
  readonly foreignBase: number;
  readonly foreignPages: number;
  readonly p2mAddr: number;
  readonly p2mEntries: number;
  /** PV only: where the guest's own pfn→mfn list lives in its RAM (-1 otherwise). */
  readonly p2mListPfn: number;
  readonly p2mListPages: number;
  readonly nrPorts: number;
  readonly hcbufAddr: number;
  readonly hcbufBytes: number;
}

export type CreateDomainError =
  | { kind: 'bad-config'; message: string }
  | { kind: 'domid-in-use'; domid: number }
  | { kind: 'no-free-slot'; slots: number }
  | { kind: 'out-of-memory'; wanted: number; free: number };

export interface ReconcileReport {
  /** Frames whose owner is a domain the hypervisor does not know. */
  readonly orphanFrames: number[];
  /** Frames a domain's owned set claims but the frame table disagrees about. */
  readonly mismatchedFrames: number[];
  /** Frames neither free nor owned by anyone. */
  readonly lostFrames: number[];
  /** mapcount in the frame table vs installed maptrack entries, per frame, when they disagree. */
  readonly mapcountMismatches: { mfn: number; frameTable: number; maptrack: number }[];
  /** Active grant pins not backed by a maptrack entry. */
  readonly pinMismatches: { granter: number; ref: number; pins: number; maptrack: number }[];
  readonly freeFrames: number;
  readonly ok: boolean;
}

export class Hypervisor {
  readonly layout: MachineLayout;
  readonly frameTable: FrameTable;
  readonly allocator: FrameAllocator;
  private readonly arena: FrameAllocator;
  readonly domains = new Map<number, Domain>();
  private readonly slots: (Domain | undefined)[];
  private nextDomid = 1;
  readonly counters = { hypercalls: 0, byOp: new Map<number, number>() };
  private readonly defaults: { maxGrantFrames: number; maxMaptrack: number };
  readonly iommu: Iommu;

  constructor(
    readonly mem: MachineMemory,
    opts: HypervisorOptions = {},
  ) {
    const f = formatMachine(mem, opts);
    this.layout = new MachineLayout(mem);
    this.frameTable = f.frameTable;
    const zone = Math.floor((opts.dmaZoneBytes ?? mem.byteLength / 8) / mem.pageSize);
    this.allocator = new FrameAllocator(mem.frames, f.firstFree, mem.frames, opts.seed ?? 1, zone);
    this.arena = new FrameAllocator(mem.frames, f.arenaStart, f.arenaEnd, 1);
    this.slots = new Array(f.nrSlots).fill(undefined);
    this.defaults = { maxGrantFrames: opts.defaultMaxGrantFrames ?? 32, maxMaptrack: opts.defaultMaxMaptrack ?? 16384 };
    this.iommu = new Iommu(
      this,
      (n) => {
        const r = this.arena.allocContiguous(n);
        return r.ok ? r.value : undefined;
      },
      (m, n) => this.freeArena(m, n),
    );
  }

  get pageSize(): number { return this.mem.pageSize; }

  domain(domid: number): Domain | undefined { return this.domains.get(domid); }
  domainInSlot(slot: number): Domain | undefined { return this.slots[slot]; }

  private dcb(slot: number, field: number): MachineAddr { return this.layout.dcbField(slot, field); }

  private setSlotState(d: Domain): void {
    const v = DOMAIN_STATE[d.state];
    this.mem.atomicStore32(this.dcb(d.slot, DCB.state), v);
  }

  /** [createDomain req] builds a domain: frames, P2M, shared_info, port table, mailbox. */
  createDomain(req: CreateDomainRequest): Result<DomainBootInfo, CreateDomainError> {
    const ps = this.pageSize;
    if (typeof req.name !== 'string' || req.name.length === 0) return err({ kind: 'bad-config', message: 'a domain needs a name' });
    for (const d of this.domains.values()) {
      if (d.name === req.name && d.state !== 'zombie') return err({ kind: 'bad-config', message: `domain name '${req.name}' is already in use` });
    }
    if (!(req.memoryKiB > 0) || !Number.isInteger(req.memoryKiB)) return err({ kind: 'bad-config', message: `memory must be a positive number of KiB, got ${req.memoryKiB}` });
    if (!(req.model in MEMORY_MODEL)) return err({ kind: 'bad-config', message: `memory model must be pm, p2m or vp, got ${String(req.model)}` });
    const pages = Math.ceil((req.memoryKiB * 1024) / ps);
    if (pages < 16) return err({ kind: 'bad-config', message: `memory of ${req.memoryKiB} KiB is too small (at least ${(16 * ps) / 1024} KiB)` });
    const nrPorts = req.nrPorts ?? 1024;
    if (!(Number.isInteger(nrPorts) && nrPorts >= 8 && nrPorts <= 4096)) return err({ kind: 'bad-config', message: `nrPorts must be 8..4096, got ${nrPorts}` });
    const maxGrantFrames = req.maxGrantFrames ?? this.defaults.maxGrantFrames;
    if (!(Number.isInteger(maxGrantFrames) && maxGrantFrames >= 1 && maxGrantFrames <= 1024)) return err({ kind: 'bad-config', message: `max_grant_frames must be 1..1024, got ${maxGrantFrames}` });
    const foreignPages = req.foreignPages ?? 4096;
    const hcbufPages = req.hcbufPages ?? 4;

    let domid: number;
    if (req.domid !== undefined) {
      if (!(Number.isInteger(req.domid) && req.domid >= 0 && req.domid < DOMID_FIRST_RESERVED)) return err({ kind: 'bad-config', message: `domid must be 0..${DOMID_FIRST_RESERVED - 1}` });
      if (this.domains.has(req.domid)) return err({ kind: 'domid-in-use', domid: req.domid });
      domid = req.domid;
    } else {
      domid = this.nextDomid;
      while (this.domains.has(domid)) domid++;
      if (domid >= DOMID_FIRST_RESERVED) return err({ kind: 'bad-config', message: 'out of domain ids' });
      this.nextDomid = domid + 1;
    }
    const slot = this.slots.findIndex((s) => s === undefined);
    if (slot < 0) return err({ kind: 'no-free-slot', slots: this.slots.length });

    // RAM first: P==M needs a contiguous run placed where its pfns will be.
    let ram: Mfn[];
    let ramBase = 0;
    if (req.model === 'pm') {
      const r = this.allocator.allocContiguous(pages);
      if (!r.ok) {
        if (r.error.kind === 'no-contiguous-run') {
          return err({ kind: 'bad-config', message: `no run of ${pages} contiguous free frames for a P==M domain (${r.error.free} frames free but scattered): create P==M domains first` });
        }
        return err({ kind: 'out-of-memory', wanted: pages, free: this.allocator.freeCount });
      }
      ramBase = r.value;
      ram = Array.from({ length: pages }, (_, i) => (r.value + i) as Mfn);
    } else {
      const r = this.allocator.allocScattered(pages);
      if (!r.ok) return err({ kind: 'out-of-memory', wanted: pages, free: this.allocator.freeCount });
      ram = r.value;
    }
    const sharedInfoPfn = ramBase + pages;
    const grantPfnBase = sharedInfoPfn + 1;
    const foreignBase = grantPfnBase + maxGrantFrames;
    const p2mEntries = foreignBase + foreignPages;
    const p2mFrames = Math.ceil((p2mEntries * 4) / ps);
    const portFrames = Math.ceil((nrPorts * PORT_ENTRY.SIZE) / ps);
    const arenaNeeds = [p2mFrames, portFrames, hcbufPages];
    const arenaRuns: Mfn[] = [];
    for (const n of arenaNeeds) {
      const r = this.arena.allocContiguous(n);
      if (!r.ok) {
        for (let i = 0; i < arenaRuns.length; i++) this.freeArena(arenaRuns[i] as Mfn, arenaNeeds[i] as number);
        for (const m of ram) this.allocator.free(m);
        return err({ kind: 'out-of-memory', wanted: n, free: this.arena.freeCount });
      }
      this.mem.fill(this.mem.frameAddr(r.value), n * ps, 0);
      arenaRuns.push(r.value);
    }
    const [p2mMfn, portsMfn, hcbufMfn] = arenaRuns as [Mfn, Mfn, Mfn];
    const p2m = new P2mTable(this.mem, this.mem.frameAddr(p2mMfn), p2mEntries);
    const spec: DomainSpec = {
      name: req.name, pages, model: req.model, privileged: req.privileged ?? false, foreignPages, nrPorts, maxGrantFrames,
      maxMaptrack: req.maxMaptrack ?? this.defaults.maxMaptrack,
    };
    const d = new Domain(domid as DomId, slot, spec, p2m);
    d.ramBase = ramBase;
    d.sharedInfoPfn = sharedInfoPfn as Pfn;
    d.grantPfnBase = grantPfnBase as Pfn;
    d.foreignBase = foreignBase as Pfn;
    d.p2mMfn = p2mMfn; d.p2mFrames = p2mFrames;
    d.portsMfn = portsMfn; d.portsFrames = portFrames;
    d.hcbufAddr = this.mem.frameAddr(hcbufMfn); d.hcbufBytes = hcbufPages * ps;

    // Scrub and hand over the RAM, then publish translations (release stores).
    for (let i = 0; i < pages; i++) {
      const m = ram[i] as Mfn;
      this.mem.fill(this.mem.frameAddr(m), ps, 0);
      const pfn = (ramBase + i) as Pfn;
      this.frameTable.assign(m, d.domid, FRAME_TYPE.ram, pfn);
      d.owned.add(m);
      p2m.set(pfn, m, true, false);
    }
    // shared_info: the slot's second frame (Xen-owned, shared with the guest).
    const si = this.layout.sharedInfo(slot);
    this.mem.fill(si, ps, 0);
    p2m.set(sharedInfoPfn as Pfn, this.mem.frameOf(si), true, false);

    // PV: the domain builder writes the guest's own pfn→mfn list into its top RAM pages.
    if (req.model === 'p2m') {
      const listPages = Math.ceil((p2mEntries * 4) / ps);
      d.p2mListPages = listPages;
      d.p2mListPfn = ramBase + pages - listPages;
      for (let pfn = 0; pfn < p2mEntries; pfn++) {
        const e = p2m.lookup(pfn as Pfn);
        const gpa = (d.p2mListPfn * ps + pfn * 4);
        const page = Math.floor(gpa / ps);
        const mfn = p2m.lookup(page as Pfn) as Mfn;
        this.mem.setU32((this.mem.frameAddr(mfn) + (gpa % ps)) as MachineAddr, e === undefined ? 0xffffffff : e);
      }
    }

    // The slot: control block fields, then domid last (release) so fast-path senders see a complete slot.
    const f = (field: number, v: number) => this.mem.atomicStore32(this.dcb(slot, field), v);
    this.mem.fill(this.layout.dcb(slot), ps, 0);
    f(DCB.p2mMfn, p2mMfn); f(DCB.p2mEntries, p2mEntries);
    f(DCB.portsMfn, portsMfn); f(DCB.nrPorts, nrPorts);
    f(DCB.hcbufMfn, hcbufMfn); f(DCB.hcbufPages, hcbufPages);
    f(DCB.model, MEMORY_MODEL[req.model]);
    f(DCB.totPages, pages); f(DCB.maxPages, pages);
    d.generation = ++this.slotGenerations[slot]!;
    f(DCB.generation, d.generation);
    f(DCB.state, DOMAIN_STATE.running);
    f(DCB.domid, domid);
    this.slots[slot] = d;
    this.domains.set(domid, d);
    return ok(this.bootInfo(d));
  }
  private readonly slotGenerations: number[] = new Array(1024).fill(0);

  bootInfo(d: Domain): DomainBootInfo {
    return {
      domid: d.domid, slot: d.slot, name: d.name, model: d.model, privileged: d.spec.privileged, pageSize: this.pageSize,
      ramBase: d.ramBase, ramPages: d.spec.pages, sharedInfoPfn: d.sharedInfoPfn, grantPfnBase: d.grantPfnBase,
      maxGrantFrames: d.spec.maxGrantFrames, foreignBase: d.foreignBase, foreignPages: d.spec.foreignPages,
      p2mAddr: d.p2m.base, p2mEntries: d.p2m.entries, p2mListPfn: d.p2mListPfn, p2mListPages: d.p2mListPages,
      nrPorts: d.spec.nrPorts, hcbufAddr: d.hcbufAddr, hcbufBytes: d.hcbufBytes,
    };
  }

  private freeArena(mfn: Mfn, n: number): void {
    for (let i = 0; i < n; i++) this.arena.free((mfn + i) as Mfn);
  }

  pause(domid: number): Result<void, { kind: 'no-such-domain'; domid: number }> {
    const d = this.domains.get(domid);
    if (d === undefined || !d.alive) return err({ kind: 'no-such-domain', domid });
    d.state = 'paused';
    this.setSlotState(d);
    return ok(undefined);
  }
  unpause(domid: number): Result<void, { kind: 'no-such-domain'; domid: number }> {
    const d = this.domains.get(domid);
    if (d === undefined || !d.alive) return err({ kind: 'no-such-domain', domid });
    d.state = 'running';
    this.setSlotState(d);
    return ok(undefined);
  }
  /** Marks a domain crashed (its worker threw or exited); its memory stays until destroyed. */
  crash(domid: number): boolean {
    const d = this.domains.get(domid);
    if (d === undefined || !d.alive) return false;
    d.state = 'crashed';
    this.setSlotState(d);
    return true;
  }
  shutdown(domid: number): boolean {
    const d = this.domains.get(domid);
    if (d === undefined || !d.alive) return false;
    d.state = 'shutdown';
    this.setSlotState(d);
    return true;
  }

  /**
   * [destroyDomain domid] tears a domain down: its grant mappings of others
   * are released, its event channels closed (peers revert to unbound), and
   * its frames freed — except frames other domains still map, which keep the
   * domain a zombie until the last foreign mapping goes, as in Xen.
   */
  destroyDomain(domid: number): Result<'destroyed' | 'zombie', { kind: 'no-such-domain'; domid: number }> {
    const d = this.domains.get(domid);
    if (d === undefined || d.state === 'dying' || d.state === 'zombie') return err({ kind: 'no-such-domain', domid });
    d.state = 'dying';
    this.setSlotState(d);
    // Wait out fast-path senders touching this slot (they re-check state and bail).
    const inflight = this.dcb(d.slot, DCB.inflight);
    // A sender mid-delivery takes a few hundred ns. A sender whose worker was
    // terminated mid-send never finishes; it also never writes again, so after
    // a bounded wait its stale count is forgiven rather than hanging Xen.
    const giveUp = performance.now() + 200;
    while (this.mem.atomicLoad32(inflight) !== 0 && performance.now() < giveUp) { /* spin */ }
    this.mem.atomicStore32(inflight, 0);
    releaseMapperGrants(this, d);
    closeAllPorts(this, d);
    this.iommu.ownerDestroyed(d.domid);
    // Translations go first, so no accessor of a still-running worker reaches freed frames.
    for (let pfn = 0; pfn < d.p2m.entries; pfn++) d.p2m.clear(pfn as Pfn);
    // Frames still pinned by others stay: host maps show in the mapcount, device-only
    // maps only as active pins (the device keeps its bus address), as Xen's page refs keep them.
    const pinned = new Set<number>();
    for (const a of d.active.values()) pinned.add(a.mfn);
    for (const m of [...d.owned]) {
      if (this.frameTable.mapcount(m) > 0 || pinned.has(m)) continue;
      if (this.frameTable.type(m) === FRAME_TYPE.grantTable && d.active.size > 0) continue;
      this.freeOwnedFrame(d, m);
    }
    d.state = 'zombie';
    this.setSlotState(d);
    return ok(maybeFinishZombie(this, d) ? 'destroyed' : 'zombie');
  }

  /** [XEN] frees a frame d owns. */
  freeOwnedFrame(d: Domain, m: Mfn): void {
    d.owned.delete(m);
    this.frameTable.release(m);
    this.allocator.free(m);
  }

  /** [XEN] the last step of destruction: the slot and Xen tables are returned. */
  finishDestroy(d: Domain): void {
    this.freeArena(d.p2mMfn, d.p2mFrames);
    this.freeArena(d.portsMfn, d.portsFrames);
    this.freeArena(this.mem.frameOf(d.hcbufAddr as MachineAddr), d.hcbufBytes / this.pageSize);
    this.mem.atomicStore32(this.dcb(d.slot, DCB.domid), -1);
    this.mem.atomicStore32(this.dcb(d.slot, DCB.state), DOMAIN_STATE.free);
    this.slots[d.slot] = undefined;
    this.domains.delete(d.domid);
  }

  // ---------------------------------------------------------------- hypercalls

  /**
   * [hypercall slot op args] runs one hypercall for the domain in slot.
   * Returns [ret, ret2]: ret is 0/positive or -errno, ret2 an extra result.
   */
  hypercall(slot: number, op: number, args: readonly number[]): [number, number] {
    const d = this.slots[slot];
    if (d === undefined || !d.alive) return [-XEN_ERRNO.ESRCH, 0];
    this.counters.hypercalls++;
    this.counters.byOp.set(op, (this.counters.byOp.get(op) ?? 0) + 1);
    this.mem.atomicAdd32(this.dcb(slot, DCB.statHypercalls), 1);
    switch (op) {
      case HYPERVISOR.xensim_nop:
        return [0, 0];
      case HYPERVISOR.grant_table_op:
        return [grantTableOp(this, d, args[0] ?? -1, args[1] ?? 0, args[2] ?? 0), 0];
      case HYPERVISOR.event_channel_op:
        return eventChannelOp(this, d, args[0] ?? -1, args);
      case HYPERVISOR.multicall:
        return [multicall(this, d, args[0] ?? 0, args[1] ?? 0), 0];
      case HYPERVISOR.memory_op:
        return memoryOp(this, d, args[0] ?? -1, args);
      case HYPERVISOR.dom0vp_op:
        return dom0vpOp(this, d, args[0] ?? -1, args[1] ?? 0);
      case HYPERVISOR.iommu_op:
        return this.iommu.op(d, args[0] ?? -1, args);
      default:
        return [-XEN_ERRNO.ENOSYS, 0];
    }
  }

  /** [hcbuf d off len] is the machine address of [off, off+len) in d's hypercall buffer, or undefined if outside. */
  hcbuf(d: Domain, off: number, len: number): MachineAddr | undefined {
    if (!(Number.isInteger(off) && Number.isInteger(len) && off >= 0 && len >= 0 && off + len <= d.hcbufBytes)) return undefined;
    return (d.hcbufAddr + off) as MachineAddr;
  }

  // ------------------------------------------------------------ reconciliation

  /**
   * [reconcile] cross-checks the frame table against every domain's books and
   * every maptrack entry: no frame leaked or owned twice, mapcounts equal
   * installed mappings, grant pins equal maptrack entries.
   */
  reconcile(): ReconcileReport {
    const orphanFrames: number[] = [];
    const mismatchedFrames: number[] = [];
    const lostFrames: number[] = [];
    const claimed = new Map<number, number>();
    for (const d of this.domains.values()) {
      for (const m of d.owned) {
        if (claimed.has(m)) mismatchedFrames.push(m);
        claimed.set(m, d.domid);
        if (this.frameTable.owner(m) !== d.domid) mismatchedFrames.push(m);
      }
    }
    let free = 0;
    for (let m = 0; m < this.mem.frames; m++) {
      const owner = this.frameTable.owner(m as Mfn);
      // A frame in use (Xen's or a domain's) that is also in the free pool would be handed out twice.
      if (owner !== DOMID_FREE && this.allocator.isFree(m as Mfn)) mismatchedFrames.push(m);
      if (owner === DOMID_XEN) continue;
      if (owner === DOMID_FREE) {
        if (!this.allocator.isFree(m as Mfn)) lostFrames.push(m);
        else free++;
        continue;
      }
      if (!this.domains.has(owner)) orphanFrames.push(m);
      else if (claimed.get(m) !== owner) mismatchedFrames.push(m);
    }
    // Mapcounts vs maptrack, and pins vs maptrack.
    const maps = new Map<number, number>();
    const pins = new Map<string, number>();
    for (const d of this.domains.values()) {
      for (const e of d.maptrack) {
        if (e === undefined) continue;
        if (e.hostPfn >= 0) maps.set(e.mfn, (maps.get(e.mfn) ?? 0) + 1);
        const key = `${e.granter}:${e.ref}`;
        const n = ((e.flags & 2) !== 0 ? 1 : 0) + ((e.flags & 1) !== 0 ? 1 : 0);
        pins.set(key, (pins.get(key) ?? 0) + n);
      }
    }
    const mapcountMismatches: { mfn: number; frameTable: number; maptrack: number }[] = [];
    for (let m = 0; m < this.mem.frames; m++) {
      const ft = this.frameTable.mapcount(m as Mfn);
      const mt = maps.get(m) ?? 0;
      if (ft !== mt) mapcountMismatches.push({ mfn: m, frameTable: ft, maptrack: mt });
    }
    const pinMismatches: { granter: number; ref: number; pins: number; maptrack: number }[] = [];
    for (const d of this.domains.values()) {
      for (const [ref, a] of d.active) {
        const p = a.hostRo + a.hostRw + a.devRo + a.devRw;
        const mt = pins.get(`${d.domid}:${ref}`) ?? 0;
        if (p !== mt) pinMismatches.push({ granter: d.domid, ref, pins: p, maptrack: mt });
        pins.delete(`${d.domid}:${ref}`);
      }
    }
    for (const [key, n] of pins) {
      const [g, r] = key.split(':').map(Number) as [number, number];
      pinMismatches.push({ granter: g, ref: r, pins: 0, maptrack: n });
    }
    return {
      orphanFrames, mismatchedFrames, lostFrames, mapcountMismatches, pinMismatches, freeFrames: free,
      ok: orphanFrames.length + mismatchedFrames.length + lostFrames.length + mapcountMismatches.length + pinMismatches.length === 0,
    };
  }
}
