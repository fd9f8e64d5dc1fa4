/**
 * The block-device ring protocol, `xen/include/public/io/blkif.h`.
 *
 * Layouts are the x86_64 native ABI (what gcc gives with the public headers):
 * blkif_request is 112 bytes. 32-bit x86 guests use a 108-byte request whose
 * id is not 8-aligned; that translation lives in a backend (Linux blkback
 * common.h), never in the public headers, and we do not model it.
 *
 * Writers: [FE] the frontend fills requests, [BE] the backend fills responses.
 * Constants and layout only; codecs are in shared/ring/codec.ts.
 */
import { XEN_PAGE_SIZE, ringSize } from './ring.ts';

// ---- Operations (blkif_request.operation) ----
export const BLKIF_OP_READ = 0;
export const BLKIF_OP_WRITE = 1;
/** Optional ("feature-barrier"): all earlier writes complete before it, later ones after. */
export const BLKIF_OP_WRITE_BARRIER = 2;
/** Optional ("feature-flush-cache"): commit the device's volatile cache. */
export const BLKIF_OP_FLUSH_DISKCACHE = 3;
/** Reserved (SLES device-specific packets); never valid for us. */
export const BLKIF_OP_RESERVED_1 = 4;
/** Optional ("feature-discard"): blkif_request_discard layout. */
export const BLKIF_OP_DISCARD = 5;
/** Optional ("feature-max-indirect-segments"): blkif_request_indirect layout. */
export const BLKIF_OP_INDIRECT = 6;

/** Operations that use the direct blkif_request layout (segments in the slot). */
export type BlkifDirectOp =
  | typeof BLKIF_OP_READ
  | typeof BLKIF_OP_WRITE
  | typeof BLKIF_OP_WRITE_BARRIER
  | typeof BLKIF_OP_FLUSH_DISKCACHE;
/** The operations an indirect request may carry in indirect_op. */
export type BlkifIndirectOp = typeof BLKIF_OP_READ | typeof BLKIF_OP_WRITE;
export type BlkifOp = BlkifDirectOp | typeof BLKIF_OP_RESERVED_1 | typeof BLKIF_OP_DISCARD | typeof BLKIF_OP_INDIRECT;

// ---- Response statuses (blkif_response.status, int16) ----
/** Operation completed successfully. */
export const BLKIF_RSP_OKAY = 0;
/** Operation failed for some unspecified reason (-EIO). */
export const BLKIF_RSP_ERROR = -1;
/** Operation not supported (barrier, flush or discard; the frontend drops the feature). */
export const BLKIF_RSP_EOPNOTSUPP = -2;
export type BlkifStatus = typeof BLKIF_RSP_OKAY | typeof BLKIF_RSP_ERROR | typeof BLKIF_RSP_EOPNOTSUPP;

// ---- Limits ----
/** Segments in a direct request ("chosen so that sizeof(blkif_ring_t) <= PAGE_SIZE"). */
export const BLKIF_MAX_SEGMENTS_PER_REQUEST = 11;
/** Grant refs of segment pages in an indirect request. */
export const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8;
/** blkif_request_discard.flag: render discarded data unrecoverable. */
export const BLKIF_DISCARD_SECURE = 1 << 0;
/** Ring sector unit: always 512 bytes, even when "sector-size" is 4096. */
export const BLKIF_SECTOR_SIZE = 512;
export const BLKIF_SECTOR_SHIFT = 9;

// ---- "info" bits in xenstore ----
export const VDISK_CDROM = 0x1;
export const VDISK_REMOVABLE = 0x2;
export const VDISK_READONLY = 0x4;

// ---- Layouts ----

/** struct blkif_request_segment (8 bytes). */
export const BLKIF_REQUEST_SEGMENT = {
  /** u32 [FE] grant ref of the 4 KiB I/O buffer frame. */
  gref: 0,
  /** u8 [FE] first 512-byte sector in the frame to transfer (inclusive). */
  first_sect: 4,
  /** u8 [FE] last 512-byte sector in the frame to transfer (inclusive). */
  last_sect: 5,
  // 2 bytes of tail padding at 6.
  SIZE: 8,
} as const;

/** struct blkif_request (112 bytes): READ, WRITE, WRITE_BARRIER, FLUSH_DISKCACHE. */
export const BLKIF_REQUEST = {
  /** u8 [FE] BLKIF_OP_*. */
  operation: 0,
  /** u8 [FE] number of segments in seg[]. */
  nr_segments: 1,
  /** u16 [FE] blkif_vdev_t, only for read/write. */
  handle: 2,
  // 4 bytes of padding at 4 (id is 8-aligned on x86_64).
  /** u64 [FE] private guest value, echoed in the response. */
  id: 8,
  /** u64 [FE] blkif_sector_t: start sector (512-byte units). */
  sector_number: 16,
  /** struct blkif_request_segment seg[11] [FE]. */
  seg: 24,
  SIZE: 112,
} as const;

/** struct blkif_request_discard (32 bytes), when operation == BLKIF_OP_DISCARD. */
export const BLKIF_REQUEST_DISCARD = {
  /** u8 [FE] BLKIF_OP_DISCARD. */
  operation: 0,
  /** u8 [FE] BLKIF_DISCARD_SECURE or 0. */
  flag: 1,
  /** u16 [FE] blkif_vdev_t. */
  handle: 2,
  /** u64 [FE] echoed in the response. */
  id: 8,
  /** u64 [FE] start sector. */
  sector_number: 16,
  /** u64 [FE] number of contiguous sectors to discard. */
  nr_sectors: 24,
  SIZE: 32,
} as const;

/** struct blkif_request_indirect (64 bytes on x86_64), when operation == BLKIF_OP_INDIRECT. */
export const BLKIF_REQUEST_INDIRECT = {
  /** u8 [FE] BLKIF_OP_INDIRECT. */
  operation: 0,
  /** u8 [FE] BLKIF_OP_READ or BLKIF_OP_WRITE. */
  indirect_op: 1,
  /** u16 [FE] number of segments, spread over the indirect pages. */
  nr_segments: 2,
  /** u64 [FE] echoed in the response. */
  id: 8,
  /** u64 [FE] start sector. */
  sector_number: 16,
  /** u16 [FE] blkif_vdev_t. */
  handle: 24,
  // 2 bytes of padding at 26.
  /** u32 [FE] indirect_grefs[8]: grant refs of pages of blkif_request_segment. */
  indirect_grefs: 28,
  // 4 bytes of tail padding at 60 (u64 alignment; i386 has an explicit pad).
  SIZE: 64,
} as const;

/** struct blkif_response (16 bytes). */
export const BLKIF_RESPONSE = {
  /** u64 [BE] copied from the request. */
  id: 0,
  /** u8 [BE] copied from the request. */
  operation: 8,
  // 1 byte of padding at 9.
  /** i16 [BE] BLKIF_RSP_*. */
  status: 10,
  // 4 bytes of tail padding at 12.
  SIZE: 16,
} as const;

/** A ring slot is the union of request and response: the larger, 112 bytes. */
export const BLKIF_RING_ENTRY_SIZE = Math.max(BLKIF_REQUEST.SIZE, BLKIF_RESPONSE.SIZE);
/** Entries in a one-page (4 KiB) blkif ring: 36 fit, rounded down to 32. */
export const BLKIF_RING_SIZE_1PAGE = ringSize(XEN_PAGE_SIZE, BLKIF_RING_ENTRY_SIZE);
/** Segments that fit one indirect page of pageBytes (512 for 4 KiB). */
export function blkifSegsPerIndirectFrame(pageBytes: number = XEN_PAGE_SIZE): number {
  return Math.floor(pageBytes / BLKIF_REQUEST_SEGMENT.SIZE);
}
/** Sectors per 4 KiB segment frame (first_sect/last_sect lie in 0..7). */
export const BLKIF_SECTORS_PER_FRAME = XEN_PAGE_SIZE / BLKIF_SECTOR_SIZE;
