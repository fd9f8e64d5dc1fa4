/**
 * IOVA allocation for the `iommu` DMA API: ranges of bus pages in the
 * device's IOMMU address space, handed out as naturally aligned power-of-two
 * blocks (a buddy allocator) — as Linux's IOVA allocator hands out
 * size-aligned ranges — so that freeing merges neighbours back and the space
 * does not fragment under a steady mix of sizes. Like Linux's allocator it
 * works top-down (of the free blocks big enough, the one ending highest,
 * split keeping its upper half), so IOVAs rarely coincide with small
 * pfn-derived numbers.
 * Bus page 0 is never handed out, so no valid DMA address is 0.
 */
export class IovaAllocator {
  /** free[o] holds the first page of every free block of 2^o pages. */
  private readonly free: Set<number>[];
  private freeCount = 0;

  constructor(
    readonly firstPage: number,
    readonly endPage: number,
    readonly maxOrder = 20,
  ) {
    if (!(Number.isInteger(firstPage) && Number.isInteger(endPage) && firstPage >= 1 && endPage > firstPage)) {
      throw new RangeError(`IOVA space [${firstPage}, ${endPage}) is empty or starts at page 0`);
    }
    this.free = Array.from({ length: maxOrder + 1 }, () => new Set<number>());
    const blocks: [number, number][] = [];
    let s = firstPage;
    // Greedy aligned blocks, low to high.
    while (s < endPage) {
      let o = 0;
      while (o < maxOrder && s % (2 ** (o + 1)) === 0 && s + 2 ** (o + 1) <= endPage) o++;
      blocks.push([s, o]);
      this.freeCount += 2 ** o;
      s += 2 ** o;
    }
    for (const [b, o] of blocks) (this.free[o] as Set<number>).add(b);
  }

  /** Pages not handed out. */
  get freePages(): number { return this.freeCount; }

  /** [orderOf pages] is the buddy order that holds pages. */
  static orderOf(pages: number): number {
    return pages <= 1 ? 0 : 32 - Math.clz32(pages - 1);
  }

  /** [alloc pages] is the first page of a free aligned block of at least pages, or undefined. */
  alloc(pages: number): number | undefined {
    const o = IovaAllocator.orderOf(pages);
    if (o > this.maxOrder) return undefined;
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
    this.freeCount -= 2 ** o;
    return start;
  }

  /** [release start pages] gives back a block alloc(pages) returned. */
  release(start: number, pages: number): void {
    let o = IovaAllocator.orderOf(pages);
    this.freeCount += 2 ** o;
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
