/**
 * IOVA allocation for the `iommu` DMA API: ranges of bus pages in the
 * device's IOMMU address space, handed out as naturally aligned power-of-two
 * blocks (a buddy allocator) — as Linux's IOVA allocator hands out
 * size-aligned ranges — so that freeing merges neighbours back and the space
 * does not fragment under a steady mix of sizes. Like Linux's allocator it
 * works top-down (of the free blocks big enough, the one ending highest,
 * split keeping its upper half), so IOVAs rarely coincide with small
 * pfn-derived numbers. Bus page 0 is never handed out, so no valid DMA
 * address is 0.
 *
 * In front of the buddy lists sits a per-size cache of recently freed blocks
 * (Linux's IOVA rcache): steady-state I/O of a few sizes allocates and frees
 * by pop/push, without searching or splitting. When the buddy lists cannot
 * satisfy a request, the cache is drained back into them first.
 */
export class IovaAllocator {
  /** free[o] holds the first page of every free block of 2^o pages. */
  private readonly free: Set<number>[];
  /** cache[o]: freed blocks of 2^o pages kept out of the buddy lists, for reuse as they are. */
  private readonly cache: number[][];
  private freeCount = 0;
  /** Block sizes cached: up to 2^(CACHED_ORDERS-1) = 32 pages, as Linux's rcache. */
  static readonly CACHED_ORDERS = 6;
  static readonly CACHE_DEPTH = 128;

  constructor(
    readonly firstPage: number,
    readonly endPage: number,
    readonly maxOrder = 20,
  ) {
    if (!(Number.isInteger(firstPage) && Number.isInteger(endPage) && firstPage >= 1 && endPage > firstPage)) {
      throw new RangeError(`IOVA space [${firstPage}, ${endPage}) is empty or starts at page 0`);
    }
    this.free = Array.from({ length: maxOrder + 1 }, () => new Set<number>());
    this.cache = Array.from({ length: IovaAllocator.CACHED_ORDERS }, () => []);
    // Greedy aligned blocks, low to high.
    let s = firstPage;
    while (s < endPage) {
      let o = 0;
      while (o < maxOrder && s % (2 ** (o + 1)) === 0 && s + 2 ** (o + 1) <= endPage) o++;
      (this.free[o] as Set<number>).add(s);
      this.freeCount += 2 ** o;
      s += 2 ** o;
    }
  }

  /** Pages not handed out (cached blocks count as free). */
  get freePages(): number { return this.freeCount; }

  /** [orderOf pages] is the buddy order that holds pages. */
  static orderOf(pages: number): number {
    return pages <= 1 ? 0 : 32 - Math.clz32(pages - 1);
  }

  /** [alloc pages] is the first page of a free aligned block of at least pages, or undefined. */
  alloc(pages: number): number | undefined {
    const o = IovaAllocator.orderOf(pages);
    if (o > this.maxOrder) return undefined;
    const hit = this.cache[o]?.pop();
    if (hit !== undefined) {
      this.freeCount -= 2 ** o;
      return hit;
    }
    let start = this.buddyAlloc(o);
    if (start === undefined && this.drainCache() > 0) start = this.buddyAlloc(o);
    if (start !== undefined) this.freeCount -= 2 ** o;
    return start;
  }

  /** [release start pages] gives back a block alloc(pages) returned. */
  release(start: number, pages: number): void {
    const o = IovaAllocator.orderOf(pages);
    this.freeCount += 2 ** o;
    const c = this.cache[o];
    if (c !== undefined && c.length < IovaAllocator.CACHE_DEPTH) c.push(start);
    else this.buddyFree(start, o);
  }

  /** Returns every cached block to the buddy lists (so that larger blocks can form again); how many. */
  drainCache(): number {
    let n = 0;
    for (let o = 0; o < this.cache.length; o++) {
      for (const b of (this.cache[o] as number[]).splice(0)) { this.buddyFree(b, o); n++; }
    }
    return n;
  }

  private buddyAlloc(o: number): number | undefined {
    // Top-down: of every free block big enough, the one ending highest.
    let j = -1;
    let start = -1;
    for (let q = o; q <= this.maxOrder; q++) {
      for (const b of this.free[q] as Set<number>) {
        if (start < 0 || b + 2 ** q > start + 2 ** j) { start = b; j = q; }
      }
    }
    if (start < 0) return undefined;
    (this.free[j] as Set<number>).delete(start);
    while (j > o) {
      // Split, keeping the upper half (top-down), freeing the lower.
      j--;
      (this.free[j] as Set<number>).add(start);
      start += 2 ** j;
    }
    return start;
  }

  private buddyFree(start: number, order: number): void {
    let o = order;
    let s = start;
    while (o < this.maxOrder) {
      const buddy = s ^ (2 ** o);
      const set = this.free[o] as Set<number>;
      if (!set.has(buddy)) break;
      set.delete(buddy);
      s = Math.min(s, buddy);
      o++;
    }
    (this.free[o] as Set<number>).add(s);
  }
}
