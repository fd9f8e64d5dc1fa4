/**
 * dom0's DMA API: what every dom0 and driver-domain device driver calls to turn
 * a buffer of its own pages (or grant-mapped foreign pages at ballooned pfns)
 * into bus addresses a device can use — Linux's dma_map_sg / dma_unmap_sg /
 * dma_sync_* / dma_alloc_coherent, with one implementation per domain chosen
 * by configuration (see docs/DMA.md for the comparison):
 *
 *  - `direct`  P==M: the bus address is the guest address (dom0/dma/translating.ts);
 *  - `p2m`     PV: the driver's own pfn→mfn list gives the machine address;
 *  - `xlate`   VP without an IOMMU: one dom0vp_op phystomach hypercall per page;
 *  - `iommu`   VP with an IOMMU: IOMMUOP_map/unmap batched per buffer, IOVAs,
 *              strict or lazy invalidation (dom0/dma/iommu-dma.ts);
 *  - `swiotlb` bounce buffers in a pool made machine-contiguous below the
 *              device's DMA mask with XENMEM_exchange, used exactly when
 *              swiotlb-xen would (dom0/dma/swiotlb.ts);
 *  - `legacy`  the bug: a driver that bypasses the API and hands the device its
 *              pseudo-physical addresses (dom0/dma/legacy.ts).
 *
 * Contract (the streaming DMA API): after mapBuffer the device owns the buffer
 * until unmap; the CPU must not touch it in between except through
 * syncForCpu/syncForDevice. mapBuffer includes the sync for the device, unmap
 * the sync for the CPU, as in Linux.
 */
import type { MemoryModel } from '../../shared/abi/machine.ts';
import type { MemRegion } from '../../shared/memory/region.ts';
import type { Result } from '../../shared/result.ts';
import type { BusAddr, Pfn } from '../../shared/types.ts';
import type { DeviceInfo } from '../../hypervisor/iommu.ts';

export const DMA_KINDS = ['direct', 'p2m', 'xlate', 'iommu', 'swiotlb', 'legacy'] as const;
export type DmaKind = (typeof DMA_KINDS)[number];

/** Linux's enum dma_data_direction, minus DMA_NONE. */
export type DmaDirection = 'to-device' | 'from-device' | 'bidirectional';

/**
 * One piece of a buffer: len bytes starting at byte `offset` of page `pfn`,
 * running on into pfn+1, pfn+2… when it passes the page end — a pfn-contiguous
 * piece, like one Linux scatterlist entry. A buffer is a list of pieces.
 */
export interface DmaPiece {
  readonly pfn: Pfn;
  readonly offset: number;
  readonly len: number;
}

/** A run of bus addresses the device may use: [bus, bus + len). */
export interface BusSegment {
  readonly bus: BusAddr;
  readonly len: number;
}

/** The result of mapBuffer: what the driver writes into the device's descriptors. */
export interface DmaMapping {
  /** Unique per DmaApi instance; unmap and sync name the mapping by it. */
  readonly id: number;
  readonly kind: DmaKind;
  readonly dir: DmaDirection;
  /** Bus segments in buffer order; adjacent bus-contiguous runs are merged. */
  readonly segments: readonly BusSegment[];
  readonly bytes: number;
  /** Pages the buffer touches (the unit of translation cost). */
  readonly pages: number;
}

/** A dma_alloc_coherent buffer: bus-contiguous, mapped until freeCoherent. */
export interface CoherentBuffer {
  readonly id: number;
  readonly pfns: readonly Pfn[];
  readonly bus: BusAddr;
  readonly bytes: number;
  /** The CPU's view, through the domain's MMU (every access checked). */
  readonly region: MemRegion;
}

export type DmaError =
  /** This implementation cannot work in the domain's memory model. */
  | { readonly kind: 'wrong-memory-model'; readonly impl: DmaKind; readonly model: MemoryModel; readonly needs: string }
  /** `iommu` on a device without an explicit IOMMU context (passthrough, identity or strict). */
  | { readonly kind: 'no-iommu-context'; readonly device: number; readonly mode: string }
  /** A machine-address implementation on a device whose IOMMU only accepts IOVAs it was told about. */
  | { readonly kind: 'incompatible-iommu-mode'; readonly impl: DmaKind; readonly device: number; readonly mode: string }
  /** The device is driven by another domain. */
  | { readonly kind: 'not-owner'; readonly device: number; readonly owner: number; readonly domid: number }
  /** The caller's buffer description is malformed. */
  | { readonly kind: 'bad-buffer'; readonly reason: string; readonly index: number }
  /** No machine frame is known behind pfn (not RAM, not a noted foreign mapping). */
  | { readonly kind: 'no-translation'; readonly pfn: number }
  /** A device-writable mapping of a page the domain may only read (a read-only grant). */
  | { readonly kind: 'read-only'; readonly pfn: number }
  /** The page lies where the device cannot reach (bus address beyond its mask) and no bouncing is on offer. */
  | { readonly kind: 'beyond-dma-mask'; readonly pfn: number; readonly bus: number; readonly maskBits: number }
  /** A hypercall failed: -errno (or the per-element status) with the frame it was about. */
  | { readonly kind: 'hypercall-failed'; readonly op: string; readonly errno: number; readonly pfn?: number }
  | { readonly kind: 'iova-exhausted'; readonly pages: number }
  | { readonly kind: 'bounce-pool-full'; readonly bytes: number; readonly poolBytes: number }
  | { readonly kind: 'too-large'; readonly bytes: number; readonly max: number }
  | { readonly kind: 'out-of-pages'; readonly pages: number }
  | { readonly kind: 'unknown-mapping'; readonly id: number };

export function describeDmaError(e: DmaError): string {
  switch (e.kind) {
    case 'wrong-memory-model': return `the ${e.impl} DMA API needs ${e.needs}; this domain's memory model is ${e.model}`;
    case 'no-iommu-context': return `the iommu DMA API needs an explicit IOMMU context; device ${e.device} is in ${e.mode} mode`;
    case 'incompatible-iommu-mode': return `the ${e.impl} DMA API hands out machine addresses, which device ${e.device}'s ${e.mode} IOMMU context does not translate`;
    case 'not-owner': return `device ${e.device} belongs to d${e.owner}, not d${e.domid}`;
    case 'bad-buffer': return `bad buffer piece ${e.index}: ${e.reason}`;
    case 'no-translation': return `no machine frame behind pfn 0x${e.pfn.toString(16)}`;
    case 'read-only': return `pfn 0x${e.pfn.toString(16)} is read-only for this domain; it cannot be mapped for a device to write`;
    case 'beyond-dma-mask': return `pfn 0x${e.pfn.toString(16)} sits at bus 0x${e.bus.toString(16)}, beyond the device's ${e.maskBits}-bit DMA mask`;
    case 'hypercall-failed': return `${e.op} failed: ${e.errno}${e.pfn === undefined ? '' : ` (pfn 0x${e.pfn.toString(16)})`}`;
    case 'iova-exhausted': return `no free IOVA range of ${e.pages} pages`;
    case 'bounce-pool-full': return `swiotlb buffer is full (wanted ${e.bytes} bytes of ${e.poolBytes})`;
    case 'too-large': return `a ${e.bytes}-byte mapping exceeds the ${e.max}-byte limit`;
    case 'out-of-pages': return `out of pages (wanted ${e.pages})`;
    case 'unknown-mapping': return `no live mapping with id ${e.id}`;
  }
}

/**
 * [DmaCounters] counts what an implementation did since it was created; a
 * benchmark divides them by the I/Os it ran ("per I/O").
 */
export interface DmaCounters {
  maps: number;
  unmaps: number;
  mapErrors: number;
  pagesMapped: number;
  bytesMapped: number;
  /** Bus segments handed out (after merging). */
  segments: number;
  /** pfn→bus lookups: own-list reads (p2m), phystomach calls (xlate), IOMMU entries (iommu), decisions (swiotlb). */
  translations: number;
  /** Hypercalls this DMA API made (all kinds). */
  hypercalls: number;
  /** IOMMU entries established / removed, and explicit IOTLB flushes asked for. */
  iommuMaps: number;
  iommuUnmaps: number;
  iommuFlushes: number;
  /** Pieces that went through a bounce buffer, their bytes, and the bytes actually copied. */
  bounces: number;
  bouncedBytes: number;
  bounceCopyBytes: number;
  syncs: number;
  coherentAllocs: number;
  coherentFrees: number;
  /** XENMEM_exchange calls and the pages they made contiguous. */
  exchanges: number;
  exchangedPages: number;
}

export function zeroCounters(): DmaCounters {
  return {
    maps: 0, unmaps: 0, mapErrors: 0, pagesMapped: 0, bytesMapped: 0, segments: 0, translations: 0, hypercalls: 0,
    iommuMaps: 0, iommuUnmaps: 0, iommuFlushes: 0, bounces: 0, bouncedBytes: 0, bounceCopyBytes: 0, syncs: 0,
    coherentAllocs: 0, coherentFrees: 0, exchanges: 0, exchangedPages: 0,
  };
}

/** [diffCounters a b] is b − a field by field (what happened between two snapshots). */
export function diffCounters(a: DmaCounters, b: DmaCounters): DmaCounters {
  const out = zeroCounters();
  for (const k of Object.keys(out) as (keyof DmaCounters)[]) out[k] = b[k] - a[k];
  return out;
}

/** What every implementation offers. Results never throw for expected failures. */
export interface DmaApi {
  readonly kind: DmaKind;
  readonly device: DeviceInfo;
  /** dma_map_sg: bus segments for the buffer, device-owned until unmap. */
  mapBuffer(pieces: readonly DmaPiece[], dir: DmaDirection): Result<DmaMapping, DmaError>;
  /** dma_unmap_sg: the CPU owns the buffer again and sees what the device wrote. */
  unmap(m: DmaMapping): Result<void, DmaError>;
  /** dma_sync_sg_for_device: the CPU hands a mapped buffer back to the device. */
  syncForDevice(m: DmaMapping): Result<void, DmaError>;
  /** dma_sync_sg_for_cpu: the CPU may read what the device wrote, keeping the mapping. */
  syncForCpu(m: DmaMapping): Result<void, DmaError>;
  /** dma_alloc_coherent: zeroed, bus-contiguous, mapped both ways until freed. */
  allocCoherent(bytes: number): Result<CoherentBuffer, DmaError>;
  freeCoherent(c: CoherentBuffer): Result<void, DmaError>;
  /** A snapshot of the counters. */
  counters(): DmaCounters;
}

/** Largest single mapping we accept (a sanity bound, not a device limit). */
export const MAX_MAPPING_BYTES = 16 << 20;
