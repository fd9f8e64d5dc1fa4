/**
 * Book-keeping the stress workloads do around a guest kernel's own
 * primitives, so the checkers can see what Xen cannot:
 *
 *  - PageBook: which of its pages a guest has allocated, and to which
 *    allocation each of its grants belongs. A grant whose page was freed, or
 *    freed and allocated again for something else, while the grant was still
 *    valid is XSA-396's bug class: the backend can still reach memory the
 *    guest now uses for other data. `scan()` finds them by reading the grant
 *    table itself, so it sees what the guest's code really did.
 *  - CountingRegion: a MemRegion that counts reads of a ring's request slots,
 *    so a backend that fetches a request twice (XSA-155) shows up as more
 *    slot reads than requests consumed.
 */
import { GTF } from '../shared/abi/grant.ts';
import { SRING } from '../shared/abi/ring.ts';
import type { WaitResult } from '../shared/memory/machine-memory.ts';
import type { MemRegion } from '../shared/memory/region.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import { asGref, type DomId, type Gref, type Pfn } from '../shared/types.ts';
import type { DomainBooks } from './view.ts';

interface GrantRecord {
  readonly pfn: Pfn;
  /** The page's allocation generation when it was granted. */
  readonly gen: number;
  readonly to: number;
  readonly what: string;
}

export class PageBook {
  /** Live allocations: pfn → generation. */
  private readonly live = new Map<number, number>();
  private nextGen = 1;
  private readonly grants = new Map<number, GrantRecord>();
  /** Refs whose revocation failed (still mapped): retried, and their pages kept until it succeeds. */
  private readonly deferred = new Map<number, { pfn: Pfn; free: boolean }>();

  constructor(private readonly k: DomainKernel, private readonly books: DomainBooks) {}

  get allocated(): number { return this.live.size; }
  get grantsLive(): number { return this.grants.size; }
  get deferredCount(): number { return this.deferred.size; }

  /** [alloc] is a fresh page of our RAM, or undefined when none is left. */
  alloc(): Pfn | undefined {
    const p = this.k.ram.tryAlloc();
    if (p === undefined) return undefined;
    this.live.set(p, this.nextGen++);
    return p;
  }

  /** [free pfn] returns a page. Freeing a page that is still granted is the bug scan() reports. */
  free(pfn: Pfn): void {
    if (!this.live.delete(pfn)) return;
    this.k.ram.release(pfn);
  }

  /** [grant to pfn readonly what] grants a page we allocated; undefined when the grant table is full. */
  grant(to: number, pfn: Pfn, readonly: boolean, what: string): Gref | undefined {
    const gen = this.live.get(pfn);
    const ref = this.k.gnttab.grantForeignAccess(to as DomId, pfn, readonly);
    if (ref === undefined) return undefined;
    this.grants.set(ref, { pfn, gen: gen ?? 0, to, what });
    return ref;
  }

  /**
   * [endAccess ref thenFree] revokes ref (gnttab_end_foreign_access): true
   * when revoked now. When the grantee still maps it, the revocation is
   * deferred and retried by retryDeferred(), and the page (freed then, if
   * thenFree) stays ours meanwhile — Linux's deferred-free list.
   */
  endAccess(ref: Gref, thenFree: boolean): boolean {
    const rec = this.grants.get(ref);
    if (this.k.gnttab.endForeignAccessRef(ref)) {
      this.grants.delete(ref);
      this.k.gnttab.freeRef(ref);
      if (thenFree && rec !== undefined) this.free(rec.pfn);
      return true;
    }
    if (rec !== undefined) this.deferred.set(ref, { pfn: rec.pfn, free: thenFree });
    return false;
  }

  /**
   * [tryRevoke ref] revokes ref if the grantee is not using it, without
   * deferring or freeing the page: a hostile guest pulling a grant from
   * under a request it still has in flight.
   */
  tryRevoke(ref: Gref): boolean {
    if (!this.k.gnttab.endForeignAccessRef(ref)) return false;
    this.grants.delete(ref);
    this.deferred.delete(ref);
    this.k.gnttab.freeRef(ref);
    return true;
  }

  /** [retryDeferred] retries deferred revocations; returns how many are still in use. */
  retryDeferred(): number {
    for (const [ref, d] of [...this.deferred]) {
      if (this.k.gnttab.endForeignAccessRef(asGref(ref))) {
        this.deferred.delete(ref);
        this.grants.delete(ref);
        this.k.gnttab.freeRef(asGref(ref));
        if (d.free) this.free(d.pfn);
      }
    }
    return this.deferred.size;
  }

  /** [isDeferred ref] tells whether ref's revocation is waiting for the grantee to unmap. */
  isDeferred(ref: Gref): boolean { return this.deferred.has(ref); }

  /**
   * [scan] lists the grants still valid in our table (GTF_permit_access)
   * whose page has been freed or allocated again since it was granted, and
   * records them in the domain's books (deduplicated).
   */
  scan(): string[] {
    const found: string[] = [];
    for (const [ref, rec] of this.grants) {
      const flags = this.k.gnttab.flags(asGref(ref));
      if ((flags & GTF.type_mask) !== GTF.permit_access) continue;
      const now = this.live.get(rec.pfn);
      if (now === rec.gen) continue;
      const what = now === undefined ? 'freed' : 'freed and reallocated';
      const msg = `d${this.k.domid} ${what} pfn ${rec.pfn} while its grant ref ${ref} (${rec.what}, to d${rec.to}) was still valid${(flags & (GTF.reading | GTF.writing)) !== 0 ? ' and in use' : ''}`;
      found.push(msg);
      if (!this.books.pageReuse.includes(msg)) this.books.pageReuse.push(msg);
    }
    return found;
  }
}

/**
 * [takeBallooned k books] is an unpopulated pfn for a grant mapping
 * (alloc_xenballooned_pages). A pfn the guest believes free but that still
 * translates is a mapping the hypervisor failed to remove: the domain can
 * still reach a frame through it. It is recorded as an isolation breach and
 * set aside (never handed out again), and the next pfn is tried.
 */
export function takeBallooned(k: DomainKernel, books: DomainBooks): Pfn | undefined {
  for (;;) {
    const pfn = k.ballooned.tryAlloc();
    if (pfn === undefined) return undefined;
    if (!k.mem.canAccess(pfn, false)) return pfn;
    const msg = `d${k.domid} pfn ${pfn} still translates to a frame after its grant mapping was removed`;
    if (!books.isolation.includes(msg)) books.isolation.push(msg);
  }
}

/**
 * A MemRegion over a ring that counts the bytes the backend reads from the
 * request slots (anything at or after the 64-byte header). RING_COPY_REQUEST
 * reads each shared byte of a request once — in one piece, or as a prefix and
 * then the rest — so a backend that fetches a request (or a field of it) again
 * reads more bytes than the requests it consumed (XSA-155).
 */
export class CountingRegion implements MemRegion {
  slotBytesRead = 0;
  readonly pageCount: number;
  constructor(private readonly inner: MemRegion, pageCount: number) { this.pageCount = pageCount; }
  get byteLength(): number { return this.inner.byteLength; }
  private r(off: number, len: number): void { if (off >= SRING.ring) this.slotBytesRead += len; }
  getU8(off: number): number { this.r(off, 1); return this.inner.getU8(off); }
  setU8(off: number, v: number): void { this.inner.setU8(off, v); }
  getU16(off: number): number { this.r(off, 2); return this.inner.getU16(off); }
  setU16(off: number, v: number): void { this.inner.setU16(off, v); }
  getI16(off: number): number { this.r(off, 2); return this.inner.getI16(off); }
  setI16(off: number, v: number): void { this.inner.setI16(off, v); }
  getU32(off: number): number { this.r(off, 4); return this.inner.getU32(off); }
  setU32(off: number, v: number): void { this.inner.setU32(off, v); }
  getU64(off: number): bigint { this.r(off, 8); return this.inner.getU64(off); }
  setU64(off: number, v: bigint): void { this.inner.setU64(off, v); }
  atomicLoadU32(off: number): number { return this.inner.atomicLoadU32(off); }
  atomicStoreU32(off: number, v: number): void { this.inner.atomicStoreU32(off, v); }
  atomicAddU32(off: number, v: number): number { return this.inner.atomicAddU32(off, v); }
  atomicCmpxchgU32(off: number, expected: number, replacement: number): number { return this.inner.atomicCmpxchgU32(off, expected, replacement); }
  copyOut(off: number, into: Uint8Array, intoOff = 0, len = into.length - intoOff): void { this.r(off, len); this.inner.copyOut(off, into, intoOff, len); }
  copyIn(off: number, from: Uint8Array, fromOff?: number, len?: number): void { this.inner.copyIn(off, from, fromOff, len); }
  copyOutWords(off: number, into: Int32Array, intoWord: number, words: number): void {
    this.r(off, words * 4);
    (this.inner as MemRegion & { copyOutWords(o: number, i: Int32Array, w: number, n: number): void }).copyOutWords(off, into, intoWord, words);
  }
  copyInWords(off: number, from: Int32Array, fromWord: number, words: number): void {
    (this.inner as MemRegion & { copyInWords(o: number, f: Int32Array, w: number, n: number): void }).copyInWords(off, from, fromWord, words);
  }
  fill(off: number, len: number, byte?: number): void { this.inner.fill(off, len, byte); }
  wait32(off: number, expected: number, timeoutMs: number): WaitResult { return this.inner.wait32(off, expected, timeoutMs); }
  notify32(off: number, count?: number): number { return this.inner.notify32(off, count); }
}
