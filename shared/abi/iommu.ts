/**
 * The simulated IOMMU: xensim's "hardware" layouts, not a Xen ABI.
 *
 * Each DMA-capable device has a device control block (one arena frame) and,
 * unless it is in passthrough, a translation table (arena frames): one 32-bit
 * entry per bus frame, in the P2M entry format (shared/abi/p2m.ts: mfn,
 * PRESENT, WRITABLE). The hypervisor alone writes both; the device's
 * translator (shared/dma/iommu-view.ts) reads them from the device's thread,
 * caching translations in an IOTLB that it drops whenever `invalidations`
 * moves (the hypervisor's IOTLB flush).
 */

/** Xen's dom0-iommu flavours, plus the explicit (PV-IOMMU-like) context the `iommu` DMA API drives. */
export const IOMMU_MODE = {
  /** No translation, no checks: bus address = machine address (dom0-iommu=passthrough, or no IOMMU). */
  passthrough: 0,
  /** Identity (bus frame = mfn), every RAM frame of the machine mapped (PV dom0, non-strict). */
  identity: 1,
  /** Identity, but only the owner's own RAM and the frames it grant-maps (dom0-iommu=strict). */
  strict: 2,
  /** Empty until the owner asks, by IOMMUOP_map, for each mapping (the `iommu` DMA API). */
  explicit: 3,
} as const;
export type IommuMode = keyof typeof IOMMU_MODE;

/** Device control block: one frame, written by [XEN] unless marked [DEV] (the device's thread). */
export const DEVICE_BLOCK = {
  id: 0, // u32 [XEN]
  owner: 4, // i32 [XEN] the domain that drives the device
  mode: 8, // u32 [XEN] IOMMU_MODE
  tableMfn: 12, // u32 [XEN] first frame of the translation table (0 in passthrough)
  tableEntries: 16, // u32 [XEN] bus frames covered
  dmaMaskBits: 20, // u32 [XEN] the device reaches machine addresses below 2^bits
  /** i32 [XEN] bumped on every IOTLB flush; translators drop their cache when it moves. */
  invalidations: 24,
  faults: 28, // i32 [DEV] IOMMU faults taken
  lastFaultBus: 32, // u64 [DEV]
  lastFaultWrite: 40, // u32 [DEV]
  /** i32 [DEV] untranslated DMA that touched a frame the owner neither owns nor has mapped. */
  strayDma: 44,
  lastStrayMfn: 48, // u32 [DEV]
  lastStrayOwner: 52, // i32 [DEV] whose frame it was
  translations: 56, // i32 [DEV] page translations performed
  staleHits: 60, // i32 [DEV] IOTLB hits on entries already unmapped but not yet flushed (lazy)
  maps: 64, // i32 [XEN]
  unmaps: 68, // i32 [XEN]
  flushes: 72, // i32 [XEN]
  SIZE: 128,
} as const;

/** IOMMUOP_* for HYPERVISOR_iommu_op(cmd, device, ...). */
export const IOMMUOP = {
  /** map(device, off, count): count iommu_map entries in the hypercall buffer. */
  map: 0,
  /** unmap(device, off, count): count u64 bus addresses. */
  unmap: 1,
  /** flush(device): IOTLB flush (completes lazy unmaps). */
  flush: 2,
  /** query(device): ret2 = mode | dmaMaskBits << 8. */
  query: 3,
} as const;

/** struct iommu_map (xensim): 24 bytes in the hypercall buffer. */
export const IOMMU_MAP = {
  bus: 0, // u64 IN: page-aligned bus address to map at
  gfn: 8, // u64 IN: the caller's frame (pfn; the mfn for PV callers)
  flags: 16, // u32 IN: IOMMU_MAP_FLAG
  status: 20, // i32 OUT: 0 or -errno
  SIZE: 24,
} as const;
export const IOMMU_MAP_FLAG = { read: 1, write: 2 } as const;
