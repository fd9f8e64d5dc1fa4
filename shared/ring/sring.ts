/**
 * The shared ring page (`struct __name##_sring`): its header indices and the
 * byte offset of each slot, over a MemRegion of 1..16 pages.
 *
 * Every index is loaded and stored through MemRegion atomics, never plain
 * reads: an `atomicStoreU32` is our release (`xen_wmb()` before the store) and
 * an `atomicLoadU32` our acquire (`xen_rmb()` after the load). JavaScript
 * atomics are also sequentially consistent with each other, so a store of our
 * producer index followed by a load of the peer's event index is ring.h's
 * `xen_mb()` between them. Which side must see what is said at each call site
 * in front-ring.ts and back-ring.ts.
 *
 * The peer may write anything into the shared page at any time; nothing here
 * trusts a loaded value beyond it being a u32.
 */
import { SRING, SRING_INIT_EVENT, XENBUS_MAX_RING_GRANTS, ringSize } from '../abi/ring.ts';
import { invariant } from '../invariant.ts';
import type { MemRegion } from '../memory/region.ts';
import { idxAdd, idxSlot, type RingIdx } from './u32.ts';

/**
 * A hostile (or broken) peer published an impossible producer index. The
 * caller must stop processing the ring: Linux blkback halts the ring ("Frontend
 * provided bogus ring requests"), netback disables the vif ("Impossible number
 * of requests"). The values are as read, for the log line.
 */
export type RingError =
  | {
      readonly kind: 'req-prod-overflow';
      readonly reqProd: RingIdx;
      readonly reqCons: RingIdx;
      readonly rspProdPvt: RingIdx;
      readonly size: number;
    }
  | {
      readonly kind: 'rsp-prod-overflow';
      readonly rspProd: RingIdx;
      readonly rspCons: RingIdx;
      /** The req_prod the frontend published: no response can lie beyond it. */
      readonly reqProd: RingIdx;
      readonly size: number;
    };

/** The largest region a ring may span when its page count is unknown: 16 of our largest pages. */
const MAX_RING_BYTES = XENBUS_MAX_RING_GRANTS * 16384;

/**
 * [sharedRingInit region start] is SHARED_RING_INIT: producers = start, both
 * event indices = start + 1, pvt and __pad zeroed. Xen always starts at 0;
 * start ≠ 0 lets tests begin near 2^32 (with FRONT_/BACK_RING_ATTACH at start).
 * Only the frontend initialises a ring, before granting it to the backend.
 */
export function sharedRingInit(region: MemRegion, start: RingIdx = 0 as RingIdx): void {
  invariant(region.byteLength >= SRING.SIZE, `a shared ring needs ${SRING.SIZE} bytes, region has ${region.byteLength}`);
  region.fill(SRING.pvt, SRING.PVT_SIZE + SRING.PAD_SIZE, 0);
  const ev = idxAdd(start, SRING_INIT_EVENT);
  region.atomicStoreU32(SRING.req_event, ev);
  region.atomicStoreU32(SRING.rsp_event, ev);
  region.atomicStoreU32(SRING.rsp_prod, start);
  // Release: whoever later acquires req_prod sees the zeroed header and events.
  region.atomicStoreU32(SRING.req_prod, start);
}

/**
 * [SharedRing region entryBytes] is the shared page seen by one end: the
 * ring's size in entries (the fitting count rounded down to a power of two)
 * and typed access to the four header indices.
 */
export class SharedRing {
  /** [size] is RING_SIZE: the number of slots, a power of two. */
  readonly size: number;
  private readonly mask: number;

  constructor(
    readonly region: MemRegion,
    readonly entryBytes: number,
  ) {
    invariant(Number.isInteger(entryBytes) && entryBytes > 0, `ring entry size must be a positive integer, got ${entryBytes}`);
    // A PagedRegion knows its pages: 1..16 ring grants (ring-page-order 0..4).
    const pages = (region as { readonly pageCount?: number }).pageCount ?? 1;
    invariant(
      region.byteLength >= SRING.SIZE + entryBytes && region.byteLength <= MAX_RING_BYTES && pages >= 1 && pages <= XENBUS_MAX_RING_GRANTS,
      `a ring region must hold the header and one entry and span at most ${XENBUS_MAX_RING_GRANTS} pages, got ${region.byteLength} bytes in ${pages} pages`,
    );
    this.size = ringSize(region.byteLength, entryBytes);
    this.mask = this.size - 1;
  }

  /** [slotOffset i] is the region offset of the entry for index i (RING_GET_REQUEST/RESPONSE). */
  slotOffset(i: RingIdx): number {
    return SRING.ring + idxSlot(i, this.size) * this.entryBytes;
  }

  /** [slotOf i] is the slot number of index i. */
  slotOf(i: RingIdx): number {
    return (i & this.mask) >>> 0;
  }

  loadReqProd(): RingIdx { return this.region.atomicLoadU32(SRING.req_prod) as RingIdx; }
  storeReqProd(v: RingIdx): void { this.region.atomicStoreU32(SRING.req_prod, v); }
  loadReqEvent(): RingIdx { return this.region.atomicLoadU32(SRING.req_event) as RingIdx; }
  storeReqEvent(v: RingIdx): void { this.region.atomicStoreU32(SRING.req_event, v); }
  loadRspProd(): RingIdx { return this.region.atomicLoadU32(SRING.rsp_prod) as RingIdx; }
  storeRspProd(v: RingIdx): void { this.region.atomicStoreU32(SRING.rsp_prod, v); }
  loadRspEvent(): RingIdx { return this.region.atomicLoadU32(SRING.rsp_event) as RingIdx; }
  storeRspEvent(v: RingIdx): void { this.region.atomicStoreU32(SRING.rsp_event, v); }
}
