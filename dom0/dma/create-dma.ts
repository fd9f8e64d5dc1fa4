/**
 * Choosing a domain's DMA API by configuration, and refusing clearly where an
 * implementation cannot work: `direct` needs P==M, `p2m` a PV domain's own
 * list, `xlate` an auto-translated domain, `iommu` an explicit IOMMU context;
 * the implementations that hand out machine addresses cannot drive a device
 * whose IOMMU only knows IOVAs it was told about.
 */
import type { DeviceInfo } from '../../hypervisor/iommu.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import type { DmaApi, DmaError, DmaKind } from './dma-api.ts';
import { pmFrames, pvFrames, xlateFrames } from './frames.ts';
import { IommuDma, type IommuDmaOptions } from './iommu-dma.ts';
import { SwiotlbDma, type SwiotlbOptions } from './swiotlb.ts';
import { TranslatingDma } from './translating.ts';

export type DmaConfig =
  | { readonly kind: 'direct' }
  | { readonly kind: 'p2m' }
  | { readonly kind: 'xlate' }
  | { readonly kind: 'legacy' }
  | ({ readonly kind: 'iommu' } & IommuDmaOptions)
  | ({ readonly kind: 'swiotlb' } & SwiotlbOptions);

/** What each implementation needs of the domain's memory model (undefined: any). */
const NEEDS: Record<DmaKind, { model?: 'pm' | 'p2m' | 'vp'; what: string }> = {
  direct: { model: 'pm', what: 'P==M memory (pm)' },
  p2m: { model: 'p2m', what: "a PV domain's own pfn-to-mfn list (p2m)" },
  xlate: { model: 'vp', what: 'an auto-translated domain (vp) without an IOMMU' },
  iommu: { what: 'an explicit IOMMU context' },
  swiotlb: { what: 'any memory model' },
  legacy: { what: 'nothing (it is the bug)' },
};

/** [createDmaApi k device cfg] is k's DMA API for device, or why it cannot be. */
export function createDmaApi(k: DomainKernel, device: DeviceInfo, cfg: DmaConfig): Result<DmaApi, DmaError> {
  if (device.owner !== k.domid) return err({ kind: 'not-owner', device: device.id, owner: device.owner, domid: k.domid });
  const need = NEEDS[cfg.kind];
  if (need.model !== undefined && k.boot.model !== need.model) {
    return err({ kind: 'wrong-memory-model', impl: cfg.kind, model: k.boot.model, needs: need.what });
  }
  const machineAddresses = cfg.kind === 'direct' || cfg.kind === 'p2m' || cfg.kind === 'xlate' || cfg.kind === 'swiotlb';
  if (machineAddresses && device.mode === 'explicit') {
    return err({ kind: 'incompatible-iommu-mode', impl: cfg.kind, device: device.id, mode: device.mode });
  }
  switch (cfg.kind) {
    case 'direct': return ok(new TranslatingDma('direct', k, device, pmFrames(k)));
    case 'p2m': return ok(new TranslatingDma('p2m', k, device, pvFrames(k)));
    case 'xlate': return ok(new TranslatingDma('xlate', k, device, xlateFrames(k)));
    case 'legacy': return ok(new TranslatingDma('legacy', k, device, { hypercallPerLookup: false, mfn: (pfn) => pfn }));
    case 'iommu': return IommuDma.create(k, device, cfg);
    case 'swiotlb': return SwiotlbDma.create(k, device, cfg);
  }
}
