/**
 * A guest kernel's page allocators: its own RAM pages (for buffers, rings,
 * the xenstore page) and the unpopulated "ballooned" guest-physical pages
 * where foreign grant mappings are placed (Linux's alloc_xenballooned_pages).
 */
import type { Pfn } from '../types.ts';

export class PfnPool {
  private readonly free: number[] = [];
  private readonly taken = new Set<number>();
  constructor(readonly name: string, first: number, count: number, exclude: ReadonlySet<number> = new Set()) {
    for (let p = first + count - 1; p >= first; p--) if (!exclude.has(p)) this.free.push(p);
  }
  get available(): number { return this.free.length; }
  get inUse(): number { return this.taken.size; }
  /** [alloc] is a free pfn, or throws when the pool is exhausted (an expected, reportable condition). */
  alloc(): Pfn {
    const p = this.free.pop();
    if (p === undefined) throw new Error(`${this.name}: out of pages`);
    this.taken.add(p);
    return p as Pfn;
  }
  tryAlloc(): Pfn | undefined {
    const p = this.free.pop();
    if (p !== undefined) this.taken.add(p);
    return p as Pfn | undefined;
  }
  release(p: Pfn): void {
    if (!this.taken.delete(p)) throw new Error(`${this.name}: pfn ${p} freed but not allocated`);
    this.free.push(p);
  }
}
