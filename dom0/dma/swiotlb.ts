/**
 * The `swiotlb` DMA API (Linux's swiotlb-xen): translate each page the way the
 * domain's memory model allows (own list for PV, identity for P==M, phystomach
 * for VP), hand the device the machine address when it can use it, and bounce
 * through a pool of machine-contiguous pages below the device's DMA mask when
 * it cannot. The decision is swiotlb-xen's xen_swiotlb_map_page, per buffer
 * piece (one scatterlist entry):
 *
 *   no bounce  iff  dma_capable(bus, len)                 — the whole piece is below the mask
 *              and  !range_straddles_page_boundary(piece) — its pfn-contiguous pages are mfn-contiguous
 *              and  !xen_arch_need_swiotlb                — false on x86 (coherent devices)
 *              and  !force                                — swiotlb=force
 *
 * The pool is made of segments (Linux's IO_TLB_SEGSIZE: 64 pages of 4 KiB),
 * each made machine-contiguous below the mask by one XENMEM_exchange
 * (xen_swiotlb_fixup → xen_create_contiguous_region); a bounce never crosses a
 * segment. A bounced piece keeps its offset within the page. As Linux's
 * swiotlb has done since the 2022 DMA_FROM_DEVICE info-leak fix, mapping
 * copies the original into the slot in every direction, so a device's partial
 * write never exposes a previous user's data; unmap (and syncForCpu) copies
 * back for from-device and bidirectional mappings. Coherent allocations are
 * exchanged when they straddle or lie beyond the mask
 * (xen_swiotlb_alloc_coherent).
 */
import type { DeviceInfo } from '../../hypervisor/iommu.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { MemoryFault } from '../../shared/memory/domain-memory.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import type { MachineAddr, Pfn } from '../../shared/types.ts';
import { DmaBase, checkPieces, pushSegment } from './common.ts';
import type { BusSegment, CoherentBuffer, DmaDirection, DmaError, DmaMapping, DmaPiece } from './dma-api.ts';
import { allocPages, allocRun, createContiguousRegion, modelFrames, type FrameSource } from './frames.ts';

export interface SwiotlbOptions {
  /** Bounce pool size in pages (default 256: 1 MiB of 4 KiB pages). */
  readonly poolPages?: number;
  /** Pages per machine-contiguous pool segment; the largest bounce (default 64). */
  readonly segmentPages?: number;
  /** swiotlb=force: bounce every piece. */
  readonly forceBounce?: boolean;
}

interface PoolSegment {
  readonly pfns: readonly Pfn[];
  /** Machine frame of the segment's first page (the rest follow contiguously). */
  readonly baseMfn: number;
  readonly used: Uint8Array;
  hint: number;
}

interface Bounce {
  readonly piece: DmaPiece;
  readonly seg: PoolSegment;
  readonly slot: number;
  readonly pages: number;
}

interface SwRec {
  readonly bounces: readonly Bounce[];
}

export class SwiotlbDma extends DmaBase<SwRec> {
  private nextSeg = 0;

  private constructor(
    k: DomainKernel,
    device: DeviceInfo,
    private readonly frames: FrameSource,
    private readonly pool: readonly PoolSegment[],
    private readonly segPages: number,
    private readonly force: boolean,
  ) {
    super('swiotlb', k, device);
  }

  /** [create k device opts] builds the bounce pool (one XENMEM_exchange per segment, except P==M). */
  static create(k: DomainKernel, device: DeviceInfo, opts: SwiotlbOptions = {}): Result<SwiotlbDma, DmaError> {
    const segPages = opts.segmentPages ?? 64;
    const poolPages = opts.poolPages ?? 256;
    if (!(Number.isInteger(segPages) && segPages >= 1 && Number.isInteger(poolPages) && poolPages >= segPages)) {
      return err({ kind: 'bad-buffer', reason: `swiotlb pool of ${poolPages} pages in segments of ${segPages}`, index: 0 });
    }
    const frames = modelFrames(k);
    const ps = k.pageSize;
    const limitBytes = device.dmaMaskBits >= 53 ? Number.POSITIVE_INFINITY : 2 ** device.dmaMaskBits;
    const pool: PoolSegment[] = [];
    const taken: Pfn[] = [];
    const undo = (e: DmaError): Result<SwiotlbDma, DmaError> => {
      for (const p of taken) k.ram.release(p);
      return err(e);
    };
    const outOfPages = (n: number) => undo({ kind: 'out-of-pages', pages: n });
    let hypercalls = 0;
    let exchanges = 0;
    for (let s = 0; s < Math.floor(poolPages / segPages); s++) {
      let pfns: Pfn[] | undefined;
      let base: number;
      if (k.boot.model === 'pm') {
        // Direct-mapped: consecutive pfns are already machine-contiguous; Xen cannot move them (P==M).
        pfns = allocRun(k.ram, segPages);
        if (pfns === undefined) return outOfPages(segPages);
        taken.push(...pfns);
        base = pfns[0] as number;
      } else {
        pfns = allocPages(k.ram, segPages);
        if (pfns === undefined) return outOfPages(segPages);
        taken.push(...pfns);
        const x = createContiguousRegion(k, pfns, device.dmaMaskBits);
        hypercalls++;
        if (!x.ok) return undo(x.error);
        exchanges++;
        base = x.value >= 0 ? x.value : frames.mfn(pfns[0] as number);
        if (frames.hypercallPerLookup && x.value < 0) hypercalls++;
        if (base < 0) return undo({ kind: 'no-translation', pfn: pfns[0] as number });
      }
      if ((base + segPages) * ps > limitBytes) return undo({ kind: 'beyond-dma-mask', pfn: pfns[0] as number, bus: base * ps, maskBits: device.dmaMaskBits });
      pool.push({ pfns, baseMfn: base, used: new Uint8Array(segPages), hint: 0 });
    }
    const dma = new SwiotlbDma(k, device, frames, pool, segPages, opts.forceBounce ?? false);
    dma.c.hypercalls += hypercalls;
    dma.c.exchanges += exchanges;
    dma.c.exchangedPages += exchanges * segPages;
    return ok(dma);
  }

  /** Bytes of bounce pool. */
  get poolBytes(): number { return this.pool.length * this.segPages * this.ps; }

  /** Pool pages currently holding bounced data. */
  get poolPagesInUse(): number {
    let n = 0;
    for (const s of this.pool) for (const u of s.used) n += u;
    return n;
  }

  private allocSlot(pages: number): { seg: PoolSegment; slot: number } | undefined {
    for (let t = 0; t < this.pool.length; t++) {
      const seg = this.pool[(this.nextSeg + t) % this.pool.length] as PoolSegment;
      const slot = SwiotlbDma.fit(seg, pages, this.segPages);
      if (slot >= 0) {
        seg.used.fill(1, slot, slot + pages);
        seg.hint = (slot + pages) % this.segPages;
        this.nextSeg = (this.nextSeg + t) % this.pool.length;
        return { seg, slot };
      }
    }
    return undefined;
  }

  /** Next-fit from the segment's hint: the first run of pages free pages, or -1. */
  private static fit(seg: PoolSegment, pages: number, segPages: number): number {
    for (const from of [seg.hint, 0]) {
      let run = 0;
      for (let i = from; i < segPages; i++) {
        run = seg.used[i] === 0 ? run + 1 : 0;
        if (run === pages) return i - pages + 1;
      }
    }
    return -1;
  }

  private freeSlot(b: Bounce): void {
    b.seg.used.fill(0, b.slot, b.slot + b.pages);
  }

  /**
   * Copies a bounced piece between the original pages and its slot, through
   * the domain's MMU (the CPU does the copying). toSlot: original → slot.
   */
  private copy(b: Bounce, toSlot: boolean): Result<void, DmaError> {
    const ps = this.ps;
    const mem = this.k.mem;
    let left = b.piece.len;
    let off = b.piece.offset;
    for (let j = 0; left > 0; j++) {
      const n = Math.min(left, ps - off);
      const orig = (b.piece.pfn + j) as Pfn;
      const slotPfn = b.seg.pfns[b.slot + j] as Pfn;
      try {
        const o = (mem.translatePfn(orig, !toSlot) as number) + off;
        const s = (mem.translatePfn(slotPfn, toSlot) as number) + off;
        if (toSlot) mem.machine.copy(s as MachineAddr, o as MachineAddr, n);
        else mem.machine.copy(o as MachineAddr, s as MachineAddr, n);
      } catch (e) {
        if (e instanceof MemoryFault) return err({ kind: toSlot ? 'no-translation' : 'read-only', pfn: orig });
        throw e;
      }
      this.c.bounceCopyBytes += n;
      left -= n;
      off = 0;
    }
    return ok(undefined);
  }

  mapBuffer(pieces: readonly DmaPiece[], dir: DmaDirection): Result<DmaMapping, DmaError> {
    const chk = checkPieces(pieces, this.ps);
    if (!chk.ok) return this.fail(chk.error);
    const ps = this.ps;
    const segs: BusSegment[] = [];
    const bounces: Bounce[] = [];
    const deviceWrites = dir !== 'to-device';
    const undo = (e: DmaError): Result<DmaMapping, DmaError> => {
      for (const b of bounces) this.freeSlot(b);
      return this.fail(e);
    };
    for (const p of pieces) {
      const pages = Math.ceil((p.offset + p.len) / ps);
      // xen_phys_to_dma of the first page, then range_straddles_page_boundary over the rest.
      const mfn0 = this.frames.mfn(p.pfn);
      this.c.translations++;
      if (this.frames.hypercallPerLookup) this.c.hypercalls++;
      if (mfn0 < 0) return undo({ kind: 'no-translation', pfn: p.pfn });
      let straddles = false;
      for (let j = 1; j < pages; j++) {
        const m = this.frames.mfn(p.pfn + j);
        this.c.translations++;
        if (this.frames.hypercallPerLookup) this.c.hypercalls++;
        if (m < 0) return undo({ kind: 'no-translation', pfn: p.pfn + j });
        if (m !== mfn0 + j) { straddles = true; break; }
      }
      const bus = mfn0 * ps + p.offset;
      const capable = bus + p.len <= this.limit;
      if (capable && !straddles && !this.force) {
        pushSegment(segs, bus, p.len);
        continue;
      }
      // Bounce.
      if (pages > this.segPages) return undo({ kind: 'too-large', bytes: p.len, max: this.segPages * ps - p.offset });
      if (deviceWrites) {
        for (let j = 0; j < pages; j++) if (!this.k.mem.canAccess((p.pfn + j) as Pfn, true)) return undo({ kind: 'read-only', pfn: p.pfn + j });
      }
      const at = this.allocSlot(pages);
      if (at === undefined) return undo({ kind: 'bounce-pool-full', bytes: p.len, poolBytes: this.poolBytes });
      const b: Bounce = { piece: p, seg: at.seg, slot: at.slot, pages };
      bounces.push(b);
      const c = this.copy(b, true);
      if (!c.ok) return undo(c.error);
      this.c.bounces++;
      this.c.bouncedBytes += p.len;
      pushSegment(segs, (at.seg.baseMfn + at.slot) * ps + p.offset, p.len);
    }
    return this.finish(dir, segs, chk.value.bytes, chk.value.pages, { bounces });
  }

  protected release(m: DmaMapping, rec: SwRec): Result<void, DmaError> {
    let first: Result<void, DmaError> = ok(undefined);
    for (const b of rec.bounces) {
      if (m.dir !== 'to-device') {
        const r = this.copy(b, false);
        if (!r.ok && first.ok) first = r;
      }
      this.freeSlot(b);
    }
    return first;
  }

  override syncForDevice(m: DmaMapping): Result<void, DmaError> {
    const e = this.live.get(m.id);
    if (e === undefined) return err({ kind: 'unknown-mapping', id: m.id });
    this.c.syncs++;
    if (m.dir === 'from-device') return ok(undefined);
    for (const b of e.rec.bounces) {
      const r = this.copy(b, true);
      if (!r.ok) return r;
    }
    return ok(undefined);
  }

  override syncForCpu(m: DmaMapping): Result<void, DmaError> {
    const e = this.live.get(m.id);
    if (e === undefined) return err({ kind: 'unknown-mapping', id: m.id });
    this.c.syncs++;
    if (m.dir === 'to-device') return ok(undefined);
    for (const b of e.rec.bounces) {
      const r = this.copy(b, false);
      if (!r.ok) return r;
    }
    return ok(undefined);
  }

  /**
   * xen_swiotlb_alloc_coherent: take pages; if they straddle non-contiguous
   * machine frames or reach beyond the mask, exchange them for a contiguous
   * run below it (P==M pages are taken as a consecutive run instead).
   */
  allocCoherent(bytes: number): Result<CoherentBuffer, DmaError> {
    const np = this.coherentPages(bytes);
    if (!np.ok) return np;
    const n = np.value;
    const ps = this.ps;
    const pfns = this.k.boot.model === 'pm' ? allocRun(this.k.ram, n) : allocPages(this.k.ram, n);
    if (pfns === undefined) return err({ kind: 'out-of-pages', pages: n });
    const giveBack = (e: DmaError): Result<CoherentBuffer, DmaError> => {
      for (const p of pfns) this.k.ram.release(p);
      return err(e);
    };
    let first = this.frames.mfn(pfns[0] as number);
    this.c.translations++;
    if (this.frames.hypercallPerLookup) this.c.hypercalls++;
    let contiguous = first >= 0;
    for (let j = 1; j < n && contiguous; j++) {
      const m = this.frames.mfn(pfns[j] as number);
      this.c.translations++;
      if (this.frames.hypercallPerLookup) this.c.hypercalls++;
      contiguous = m === first + j;
    }
    if (!contiguous || (first + n) * ps > this.limit) {
      if (this.k.boot.model === 'pm') return giveBack({ kind: 'beyond-dma-mask', pfn: pfns[0] as number, bus: first * ps, maskBits: this.device.dmaMaskBits });
      const x = createContiguousRegion(this.k, pfns, this.device.dmaMaskBits);
      this.c.hypercalls++;
      if (!x.ok) return giveBack(x.error);
      this.c.exchanges++;
      this.c.exchangedPages += n;
      first = x.value >= 0 ? x.value : this.frames.mfn(pfns[0] as number);
      if (x.value < 0 && this.frames.hypercallPerLookup) this.c.hypercalls++;
      if (first < 0) return giveBack({ kind: 'no-translation', pfn: pfns[0] as number });
    }
    return ok(this.makeCoherent(pfns, first * ps, bytes, undefined));
  }
}
