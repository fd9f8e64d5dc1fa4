/**
 * The DMA API implementations that hand the device machine addresses found by
 * translating each page, with nothing to set up or tear down per mapping:
 *
 *  - `direct` (P==M): bus = guest address for RAM; foreign pages by the bus
 *    address Xen gave at grant-map time. No per-page work for RAM.
 *  - `p2m` (PV): one read of the driver's own pfn→mfn list per page.
 *  - `xlate` (VP, no IOMMU): one dom0vp_op(phystomach) hypercall per page, on
 *    every map (the ia64 approach), counted.
 *  - `legacy`: the broken driver — bus = pfn << PAGE_SHIFT, no translation at
 *    all. Correct only when P==M; otherwise the device reaches whatever machine
 *    frame happens to carry that number (IommuView's audit reports whose), and
 *    an IOMMU faults it.
 *
 * A piece whose pages are not machine-contiguous comes back as several bus
 * segments (the device's descriptors take scatter-gather lists); a page the
 * device cannot reach (beyond its DMA mask) is refused — bouncing it is
 * swiotlb's job.
 */
import type { DeviceInfo } from '../../hypervisor/iommu.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import type { Pfn } from '../../shared/types.ts';
import { DmaBase, checkPieces, pushSegment } from './common.ts';
import type { BusSegment, CoherentBuffer, DmaDirection, DmaError, DmaMapping, DmaPiece } from './dma-api.ts';
import { allocPages, allocRun, createContiguousRegion, type FrameSource } from './frames.ts';

export type TranslatingKind = 'direct' | 'p2m' | 'xlate' | 'legacy';

export class TranslatingDma extends DmaBase<undefined> {
  private readonly ramLo: number;
  private readonly ramHi: number;

  constructor(
    kind: TranslatingKind,
    k: DomainKernel,
    device: DeviceInfo,
    private readonly frames: FrameSource,
  ) {
    super(kind, k, device);
    this.ramLo = k.boot.ramBase;
    this.ramHi = k.boot.ramBase + k.boot.ramPages;
  }

  mapBuffer(pieces: readonly DmaPiece[], dir: DmaDirection): Result<DmaMapping, DmaError> {
    const chk = checkPieces(pieces, this.ps);
    if (!chk.ok) return this.fail(chk.error);
    const ps = this.ps;
    const segs: BusSegment[] = [];
    for (const p of pieces) {
      const pages = Math.ceil((p.offset + p.len) / ps);
      if (this.kind === 'legacy') {
        // The bug under study: the guest's pseudo-physical address, as if it were a bus address.
        pushSegment(segs, p.pfn * ps + p.offset, p.len);
        continue;
      }
      if (this.kind === 'direct' && p.pfn >= this.ramLo && p.pfn + pages <= this.ramHi) {
        // P==M RAM: nothing to translate.
        const bus = p.pfn * ps + p.offset;
        if (bus + p.len > this.limit) return this.fail({ kind: 'beyond-dma-mask', pfn: p.pfn, bus, maskBits: this.device.dmaMaskBits });
        pushSegment(segs, bus, p.len);
        continue;
      }
      let left = p.len;
      let off = p.offset;
      let pfn = p.pfn as number;
      while (left > 0) {
        const n = Math.min(left, ps - off);
        const mfn = this.frames.mfn(pfn);
        this.c.translations++;
        if (this.frames.hypercallPerLookup) this.c.hypercalls++;
        if (mfn < 0) return this.fail({ kind: 'no-translation', pfn });
        const bus = mfn * ps + off;
        if (bus + n > this.limit) return this.fail({ kind: 'beyond-dma-mask', pfn, bus, maskBits: this.device.dmaMaskBits });
        pushSegment(segs, bus, n);
        left -= n;
        off = 0;
        pfn++;
      }
    }
    return this.finish(dir, segs, chk.value.bytes, chk.value.pages, undefined);
  }

  protected release(): Result<void, DmaError> {
    return ok(undefined);
  }

  /**
   * Coherent memory must be bus-contiguous. P==M (and legacy) take a run of
   * consecutive pfns; p2m and xlate trade scattered pages for a contiguous run
   * below the DMA mask with XENMEM_exchange, as xen_swiotlb_alloc_coherent does.
   */
  allocCoherent(bytes: number): Result<CoherentBuffer, DmaError> {
    const np = this.coherentPages(bytes);
    if (!np.ok) return np;
    const n = np.value;
    if (this.kind === 'direct' || this.kind === 'legacy') {
      const pfns = allocRun(this.k.ram, n);
      if (pfns === undefined) return err({ kind: 'out-of-pages', pages: n });
      const bus = (pfns[0] as number) * this.ps;
      if (this.kind === 'direct' && bus + n * this.ps > this.limit) {
        for (const p of pfns) this.k.ram.release(p);
        return err({ kind: 'beyond-dma-mask', pfn: pfns[0] as number, bus, maskBits: this.device.dmaMaskBits });
      }
      return ok(this.makeCoherent(pfns, bus, bytes, undefined));
    }
    const pfns = allocPages(this.k.ram, n);
    if (pfns === undefined) return err({ kind: 'out-of-pages', pages: n });
    const giveBack = (e: DmaError): Result<CoherentBuffer, DmaError> => {
      for (const p of pfns) this.k.ram.release(p);
      return err(e);
    };
    const x = createContiguousRegion(this.k, pfns, this.device.dmaMaskBits);
    this.c.hypercalls++;
    if (!x.ok) return giveBack(x.error);
    this.c.exchanges++;
    this.c.exchangedPages += n;
    let first = x.value;
    if (first < 0) {
      first = this.frames.mfn(pfns[0] as Pfn);
      this.c.translations++;
      if (this.frames.hypercallPerLookup) this.c.hypercalls++;
      if (first < 0) return giveBack({ kind: 'no-translation', pfn: pfns[0] as number });
    }
    return ok(this.makeCoherent(pfns, first * this.ps, bytes, undefined));
  }
}
