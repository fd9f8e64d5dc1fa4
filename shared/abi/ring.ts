/**
 * The shared ring page header, as `DEFINE_RING_TYPES` lays it out in Xen's
 * `xen/include/public/io/ring.h` (every ring: blkif, netif tx/rx/ctrl, ...).
 *
 * Four free-running u32 counters share the page, then a 4-byte private union,
 * then padding up to 64 bytes; the entries (a union of request and response)
 * start at byte 64. The number of entries is whatever fits, rounded *down* to a
 * power of two, so a slot is `idx & (size - 1)`.
 *
 * Writers: [FE] the frontend, [BE] the backend. The other side only reads.
 * Constants and layout only; the logic lives in shared/ring/.
 */

/** struct __name##_sring header: byte offsets, each field's width and writer. */
export const SRING = {
  /** u32 [FE] requests published so far (free-running). */
  req_prod: 0,
  /** u32 [BE] back wants a notification when req_prod passes this index. */
  req_event: 4,
  /** u32 [BE] responses published so far (free-running). */
  rsp_prod: 8,
  /** u32 [FE] front wants a notification when rsp_prod passes this index. */
  rsp_event: 12,
  /** 4 B union `pvt` (netif smartpoll_active, tapif msg); zeroed by init. */
  pvt: 16,
  PVT_SIZE: 4,
  /** u8 __pad[44]; zeroed by init. */
  __pad: 20,
  PAD_SIZE: 44,
  /** ring[]: the first entry. */
  ring: 64,
  /** sizeof the header (offsetof(struct sring, ring)). */
  SIZE: 64,
} as const;

/** `SHARED_RING_INIT` sets both event indices to this. */
export const SRING_INIT_EVENT = 1;

/**
 * The ring-page size of the Xen ring protocol (XEN_PAGE_SHIFT 12 in ring.h):
 * ring pages are 4 KiB whatever the machine's page size.
 */
export const XEN_PAGE_SIZE = 4096;

/**
 * Multi-page rings: a frontend may use 2^ring-page-order pages, up to order 4
 * (Linux XENBUS_MAX_RING_GRANT_ORDER), i.e. 16 pages.
 */
export const XENBUS_MAX_RING_GRANT_ORDER = 4;
export const XENBUS_MAX_RING_GRANTS = 1 << XENBUS_MAX_RING_GRANT_ORDER;

/** [rd32 x] is x rounded down to a power of two (0 for 0), like ring.h's __RD32. */
export function rd32(x: number): number {
  if (!Number.isInteger(x) || x < 0 || x > 0xffff_ffff) throw new RangeError(`rd32 needs a u32, got ${x}`);
  if (x === 0) return 0;
  return 2 ** Math.floor(Math.log2(x));
}

/**
 * [ringSize ringBytes entryBytes] is the number of entries of entryBytes that
 * fit after the 64-byte header in ringBytes, rounded down to a power of two
 * (ring.h's __CONST_RING_SIZE / __RING_SIZE). One 4 KiB page gives blkif 32,
 * netif tx 256, netif rx 256, netif ctrl 128.
 */
export function ringSize(ringBytes: number, entryBytes: number): number {
  if (!Number.isInteger(entryBytes) || entryBytes <= 0) throw new RangeError(`entry size must be a positive integer, got ${entryBytes}`);
  if (!Number.isInteger(ringBytes) || ringBytes < SRING.SIZE) throw new RangeError(`a ring needs at least ${SRING.SIZE} bytes, got ${ringBytes}`);
  return rd32(Math.floor((ringBytes - SRING.SIZE) / entryBytes));
}
