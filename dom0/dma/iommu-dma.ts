/**
 * The `iommu` DMA API: the domain asks Xen, by HYPERVISOR_iommu_op, to put
 * each page of a buffer into the device's explicit IOMMU context at an IOVA
 * it chose, and to take it out again on unmap (PV-IOMMU in spirit; Linux's
 * iommu-dma on a paravirtual IOMMU). The device sees one bus-contiguous
 * segment per buffer however scattered the pages are.
 *
 *  - One IOMMUOP_map per buffer: every page's iommu_map entry goes into the
 *    hypercall argument buffer and Xen answers each with a status (a batch
 *    that fails part-way is unwound, XSA-361's lesson).
 *  - One IOMMUOP_unmap per buffer. In a strict context Xen flushes the IOTLB
 *    in the same call and the IOVA is reusable at once. In a lazy context Xen
 *    defers the flush; so do we with the IOVAs, in a flush queue, as Linux's
 *    IOVA flush queue does: reusing an IOVA before the flush would let the
 *    device's stale IOTLB entry send new DMA to the old frame. The queue is
 *    drained (one IOMMUOP_flush) when it holds flushQueuePages pages, when the
 *    IOVA space runs dry, or on flush().
 *
 * Frames are named the way Xen's IOMMUOP_map reads them: the pfn for
 * auto-translated (and P==M) callers, the mfn from the own list for PV callers.
 */
import type { DeviceInfo } from '../../hypervisor/iommu.ts';
import { IOMMUOP, IOMMU_MAP, IOMMU_MAP_FLAG, IOMMU_MODE } from '../../shared/abi/iommu.ts';
import { HYPERVISOR, XEN_ERRNO } from '../../shared/abi/xen.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import { DmaBase, checkPieces, dmaLimit, pushSegment } from './common.ts';
import type { BusSegment, CoherentBuffer, DmaDirection, DmaError, DmaMapping, DmaPiece } from './dma-api.ts';
import { allocPages, pvFrames } from './frames.ts';
import { IovaAllocator } from './iova.ts';

export interface IommuDmaOptions {
  /** Lazy contexts: unmapped pages held before one IOMMUOP_flush frees their IOVAs (default 256). */
  readonly flushQueuePages?: number;
}

/** What map set up: the IOVA block and how many of its pages are mapped. */
interface IovaRec {
  readonly start: number;
  readonly pages: number;
}

const IOMMU_MODE_NAMES = Object.fromEntries(Object.entries(IOMMU_MODE).map(([k, v]) => [v, k])) as Record<number, string>;

export class IommuDma extends DmaBase<IovaRec> {
  private readonly iova: IovaAllocator;
  private readonly lazy: boolean;
  private readonly fq: IovaRec[] = [];
  private fqPages = 0;
  private readonly fqLimit: number;
  private readonly gfnOf: (pfn: number) => number;
  private readonly maxEntries: number;

  private constructor(k: DomainKernel, device: DeviceInfo, maskBits: number, opts: IommuDmaOptions) {
    super('iommu', k, { ...device, dmaMaskBits: maskBits });
    this.lazy = device.lazy;
    this.fqLimit = opts.flushQueuePages ?? 256;
    // The IOVA space: bus pages below the DMA mask that the context's table covers (at least every machine frame).
    const end = Math.min(k.machine.frames, Math.floor(Math.min(dmaLimit(maskBits), 2 ** 52) / k.pageSize));
    this.iova = new IovaAllocator(1, end);
    if (k.boot.model === 'p2m') {
      const own = pvFrames(k);
      this.gfnOf = (pfn) => own.mfn(pfn);
    } else {
      this.gfnOf = (pfn) => pfn;
    }
    this.maxEntries = Math.floor(k.hc.bufBytes / IOMMU_MAP.SIZE);
  }

  /**
   * [create k device opts] checks with Xen (IOMMUOP_query) that device is ours
   * and has an explicit context — refusing clearly otherwise — and sets up
   * the IOVA space below the DMA mask Xen reports.
   */
  static create(k: DomainKernel, device: DeviceInfo, opts: IommuDmaOptions = {}): Result<IommuDma, DmaError> {
    const [r, info] = k.hc.call(HYPERVISOR.iommu_op, IOMMUOP.query, device.id);
    if (r === -XEN_ERRNO.EPERM) return err({ kind: 'not-owner', device: device.id, owner: device.owner, domid: k.domid });
    if (r < 0) return err({ kind: 'hypercall-failed', op: 'IOMMUOP_query', errno: r });
    const mode = info & 0xff;
    if (mode !== IOMMU_MODE.explicit) return err({ kind: 'no-iommu-context', device: device.id, mode: IOMMU_MODE_NAMES[mode] ?? String(mode) });
    const dma = new IommuDma(k, device, info >>> 8, opts);
    dma.c.hypercalls++;
    return ok(dma);
  }

  /** Pages whose IOVAs wait for an IOTLB flush (lazy contexts). */
  get flushQueueLength(): number { return this.fqPages; }

  private allocIova(pages: number): number | undefined {
    let start = this.iova.alloc(pages);
    if (start === undefined && this.fq.length > 0) {
      this.flush();
      start = this.iova.alloc(pages);
    }
    return start;
  }

  /**
   * Installs entries[i] = gfns[i] at bus page start+i with the given flags, in
   * batches of what the hypercall buffer holds. On a failed element, removes
   * what this call installed and returns the error.
   */
  private installEntries(start: number, gfns: readonly number[], pfns: readonly number[], flags: number): Result<void, DmaError> {
    const buf = this.k.hc.buf;
    const ps = this.ps;
    for (let base = 0; base < gfns.length; base += this.maxEntries) {
      const n = Math.min(this.maxEntries, gfns.length - base);
      for (let i = 0; i < n; i++) {
        const o = i * IOMMU_MAP.SIZE;
        const bus = (start + base + i) * ps;
        const gfn = gfns[base + i] as number;
        // u64 fields as two little-endian words.
        buf.setU32(o + IOMMU_MAP.bus, bus >>> 0);
        buf.setU32(o + IOMMU_MAP.bus + 4, Math.floor(bus / 2 ** 32));
        buf.setU32(o + IOMMU_MAP.gfn, gfn >>> 0);
        buf.setU32(o + IOMMU_MAP.gfn + 4, Math.floor(gfn / 2 ** 32));
        buf.setU32(o + IOMMU_MAP.flags, flags);
        buf.setU32(o + IOMMU_MAP.status, 0);
      }
      const [r] = this.k.hc.call(HYPERVISOR.iommu_op, IOMMUOP.map, this.device.id, 0, n);
      this.c.hypercalls++;
      if (r < 0) {
        this.removeEntries(start, base);
        return err({ kind: 'hypercall-failed', op: 'IOMMUOP_map', errno: r, pfn: pfns[base] as number });
      }
      this.c.iommuMaps += r;
      if (r !== n) {
        let bad = 0;
        let badStatus = 0;
        for (let i = 0; i < n; i++) {
          const s = buf.getU32(i * IOMMU_MAP.SIZE + IOMMU_MAP.status) | 0;
          if (s !== 0) { bad = i; badStatus = s; break; }
        }
        // XSA-361: unwind every element of the batch that succeeded, and the earlier batches.
        const installed: number[] = [];
        for (let i = 0; i < n; i++) if ((buf.getU32(i * IOMMU_MAP.SIZE + IOMMU_MAP.status) | 0) === 0) installed.push(start + base + i);
        this.removePages(installed);
        this.removeEntries(start, base);
        return err({ kind: 'hypercall-failed', op: 'IOMMUOP_map', errno: badStatus, pfn: pfns[base + bad] as number });
      }
    }
    return ok(undefined);
  }

  /** IOMMUOP_unmap of bus pages [start, start+count). */
  private removeEntries(start: number, count: number): void {
    if (count === 0) return;
    const pages: number[] = [];
    for (let i = 0; i < count; i++) pages.push(start + i);
    this.removePages(pages);
  }

  private removePages(pages: readonly number[]): void {
    const buf = this.k.hc.buf;
    const per = Math.floor(this.k.hc.bufBytes / 8);
    for (let base = 0; base < pages.length; base += per) {
      const n = Math.min(per, pages.length - base);
      for (let i = 0; i < n; i++) {
        const bus = (pages[base + i] as number) * this.ps;
        buf.setU32(i * 8, bus >>> 0);
        buf.setU32(i * 8 + 4, Math.floor(bus / 2 ** 32));
      }
      const [r] = this.k.hc.call(HYPERVISOR.iommu_op, IOMMUOP.unmap, this.device.id, 0, n);
      this.c.hypercalls++;
      if (r > 0) this.c.iommuUnmaps += r;
    }
  }

  private static flagsFor(dir: DmaDirection): number {
    // The device reads memory for to-device DMA and writes it for from-device DMA.
    return dir === 'to-device' ? IOMMU_MAP_FLAG.read : dir === 'from-device' ? IOMMU_MAP_FLAG.write : IOMMU_MAP_FLAG.read | IOMMU_MAP_FLAG.write;
  }

  mapBuffer(pieces: readonly DmaPiece[], dir: DmaDirection): Result<DmaMapping, DmaError> {
    const chk = checkPieces(pieces, this.ps);
    if (!chk.ok) return this.fail(chk.error);
    const total = chk.value.pages;
    const gfns: number[] = new Array(total);
    const pfns: number[] = new Array(total);
    let i = 0;
    for (const p of pieces) {
      const pages = Math.ceil((p.offset + p.len) / this.ps);
      for (let j = 0; j < pages; j++) {
        const pfn = p.pfn + j;
        const gfn = this.gfnOf(pfn);
        if (gfn < 0) return this.fail({ kind: 'no-translation', pfn });
        gfns[i] = gfn;
        pfns[i] = pfn;
        i++;
      }
    }
    const start = this.allocIova(total);
    if (start === undefined) return this.fail({ kind: 'iova-exhausted', pages: total });
    const r = this.installEntries(start, gfns, pfns, IommuDma.flagsFor(dir));
    if (!r.ok) {
      this.iova.release(start, total);
      return this.fail(r.error);
    }
    this.c.translations += total;
    const segs: BusSegment[] = [];
    let page = start;
    for (const p of pieces) {
      pushSegment(segs, page * this.ps + p.offset, p.len);
      page += Math.ceil((p.offset + p.len) / this.ps);
    }
    return this.finish(dir, segs, chk.value.bytes, total, { start, pages: total });
  }

  protected release(_m: DmaMapping, rec: IovaRec): Result<void, DmaError> {
    this.dropIova(rec);
    return ok(undefined);
  }

  /** Removes rec's IOMMU entries and frees (strict) or queues (lazy) its IOVAs. */
  private dropIova(rec: IovaRec): void {
    this.removeEntries(rec.start, rec.pages);
    if (!this.lazy) {
      // Strict: Xen flushed the IOTLB inside the unmap; the IOVA is free now.
      this.iova.release(rec.start, rec.pages);
    } else {
      this.fq.push(rec);
      this.fqPages += rec.pages;
      if (this.fqPages >= this.fqLimit) this.flush();
    }
  }

  /** IOMMUOP_flush: the IOTLB forgets every unmapped entry; queued IOVAs become reusable. */
  flush(): void {
    this.k.hc.call(HYPERVISOR.iommu_op, IOMMUOP.flush, this.device.id);
    this.c.hypercalls++;
    this.c.iommuFlushes++;
    for (const r of this.fq) this.iova.release(r.start, r.pages);
    this.fq.length = 0;
    this.fqPages = 0;
  }

  allocCoherent(bytes: number): Result<CoherentBuffer, DmaError> {
    const np = this.coherentPages(bytes);
    if (!np.ok) return np;
    const n = np.value;
    const pfns = allocPages(this.k.ram, n);
    if (pfns === undefined) return err({ kind: 'out-of-pages', pages: n });
    const giveBack = (e: DmaError): Result<CoherentBuffer, DmaError> => {
      for (const p of pfns) this.k.ram.release(p);
      return err(e);
    };
    const gfns = pfns.map((p) => this.gfnOf(p));
    const bad = gfns.findIndex((g) => g < 0);
    if (bad >= 0) return giveBack({ kind: 'no-translation', pfn: pfns[bad] as number });
    const start = this.allocIova(n);
    if (start === undefined) return giveBack({ kind: 'iova-exhausted', pages: n });
    const r = this.installEntries(start, gfns, pfns, IOMMU_MAP_FLAG.read | IOMMU_MAP_FLAG.write);
    if (!r.ok) { this.iova.release(start, n); return giveBack(r.error); }
    return ok(this.makeCoherent(pfns, start * this.ps, bytes, { start, pages: n }));
  }

  protected override releaseCoherent(_c: CoherentBuffer, rec: IovaRec | undefined): Result<void, DmaError> {
    if (rec !== undefined) this.dropIova(rec);
    return ok(undefined);
  }
}
