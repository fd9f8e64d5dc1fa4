/**
 * blkfront's granted pages: the guest RAM pages that carry a request's data
 * (and indirect segment descriptors), and the grants that let the backend at
 * them (Linux xen-blkfront.c get_free_grant / get_grant / blkif_completion).
 *
 * Two disciplines, chosen at connect:
 *
 *  - persistent (feature-persistent agreed): a per-queue pool of pages that
 *    stay granted — always writable for data (blkif.h), read-only for
 *    indirect pages — and are reused LIFO, so the pages the backend mapped
 *    most recently (and still holds in its persistent-grant cache) come back
 *    first. No grant-table work per request at all.
 *  - per request: bounce pages reused from a free list, granted for each
 *    request (read-only when the backend only reads them) and revoked when
 *    it completes. A grant the backend still has mapped cannot be revoked
 *    (GTF_reading/GTF_writing): its page is NOT reused — it waits on a list
 *    and is retried (XSA-396: never hand out a page the backend still maps).
 *
 * Exhaustion (no free grant reference, no free RAM page) is not an error:
 * `take` returns undefined and the caller queues the request until a
 * completion gives something back.
 */
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { DomId, Gref, Pfn } from '../../shared/types.ts';

/** One page the frontend lends the backend. gref is -1 while not granted. */
export interface GrantPage {
  gref: number;
  readonly pfn: Pfn;
  /** Granted read-only (the backend may only read it). */
  readonly_: boolean;
}

export interface GrantCounters {
  grants_issued: number;
  grant_ends: number;
  persistent_reuses: number;
  persistent_new: number;
  revoke_deferred: number;
}

export class GrantPool {
  private readonly free: GrantPage[] = [];
  /** Every page this pool owns (persistent: all granted; per-request: granted while lent). */
  private readonly owned: GrantPage[] = [];
  /** Pages whose grant the backend still had in use when we tried to revoke it. */
  private readonly unrevoked: GrantPage[] = [];

  constructor(
    private readonly k: DomainKernel,
    private readonly backDom: DomId,
    /** Pages stay granted and are reused (feature-persistent). */
    readonly persistent: boolean,
    /** For a persistent pool: the permission every page is granted with. */
    private readonly persistentReadonly: boolean,
    private readonly c: GrantCounters,
  ) {}

  get size(): number { return this.owned.length; }
  get deferred(): number { return this.unrevoked.length; }

  /**
   * [take readonly] is a granted page (readonly: the backend only reads it;
   * ignored by a persistent pool), or undefined when grants or pages ran out.
   */
  take(readonly: boolean): GrantPage | undefined {
    const g = this.free.pop();
    if (this.persistent) {
      if (g !== undefined) { this.c.persistent_reuses++; return g; }
      const pfn = this.k.ram.tryAlloc();
      if (pfn === undefined) return undefined;
      const ref = this.k.gnttab.grantForeignAccess(this.backDom, pfn, this.persistentReadonly);
      if (ref === undefined) { this.k.ram.release(pfn); return undefined; }
      this.c.grants_issued++;
      this.c.persistent_new++;
      const p: GrantPage = { gref: ref, pfn, readonly_: this.persistentReadonly };
      this.owned.push(p);
      return p;
    }
    let page = g;
    if (page === undefined) {
      const pfn = this.k.ram.tryAlloc();
      if (pfn === undefined) return undefined;
      page = { gref: -1, pfn, readonly_: readonly };
      this.owned.push(page);
    }
    const ref = this.k.gnttab.grantForeignAccess(this.backDom, page.pfn, readonly);
    if (ref === undefined) { this.free.push(page); return undefined; }
    this.c.grants_issued++;
    page.gref = ref;
    page.readonly_ = readonly;
    return page;
  }

  /** [give page] ends a request's use of page. */
  give(page: GrantPage): void {
    if (this.persistent) { this.free.push(page); return; }
    if (this.revoke(page)) this.free.push(page);
    else { this.c.revoke_deferred++; this.unrevoked.push(page); }
  }

  private revoke(page: GrantPage): boolean {
    if (page.gref < 0) return true;
    // Fails while the backend has the grant mapped or mid-copy: then the page stays lent.
    if (!this.k.gnttab.endForeignAccessRef(page.gref as Gref)) return false;
    this.k.gnttab.freeRef(page.gref as Gref);
    this.c.grant_ends++;
    page.gref = -1;
    return true;
  }

  /** [retryRevokes] revokes what the backend has let go of since; returns how many remain. */
  retryRevokes(): number {
    for (let i = this.unrevoked.length - 1; i >= 0; i--) {
      const p = this.unrevoked[i] as GrantPage;
      if (this.revoke(p)) {
        this.unrevoked.splice(i, 1);
        if (this.persistent) this.ownedDrop(p);
        else this.free.push(p);
      }
    }
    return this.unrevoked.length;
  }

  private ownedDrop(p: GrantPage): void {
    const i = this.owned.indexOf(p);
    if (i >= 0) this.owned.splice(i, 1);
    this.k.ram.release(p.pfn);
  }

  /**
   * [releaseAll] at teardown: revokes every grant and frees every page; pages
   * still in use by the backend stay lent (retried later) and are never
   * reused. Returns how many could not be revoked yet.
   */
  releaseAll(): number {
    const all = this.owned.splice(0);
    this.free.length = 0;
    const stuck: GrantPage[] = [];
    for (const p of all) {
      if (this.revoke(p)) this.k.ram.release(p.pfn);
      else stuck.push(p);
    }
    for (const p of this.unrevoked) if (!stuck.includes(p)) stuck.push(p);
    this.unrevoked.length = 0;
    for (const p of stuck) { this.owned.push(p); this.unrevoked.push(p); }
    return stuck.length;
  }

  /** After releaseAll: keeps trying the stuck ones (a page is freed only once revoked). */
  retryStuck(): number {
    for (let i = this.unrevoked.length - 1; i >= 0; i--) {
      const p = this.unrevoked[i] as GrantPage;
      if (this.revoke(p)) {
        this.unrevoked.splice(i, 1);
        this.ownedDrop(p);
      }
    }
    return this.unrevoked.length;
  }
}
