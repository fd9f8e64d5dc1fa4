/**
 * Grant-mapped foreign pages for DMA (a zero-copy backend's first step): map
 * another domain's grants at ballooned pfns with GNTTABOP_map_grant_ref
 * (host_map | device_map), and record each foreign frame where the domain's
 * DMA code will look for it (setForeignP2mMapping: the PV own list, or the
 * P==M foreign notes) — Linux's gnttab_map_refs → set_foreign_p2m_mapping.
 * After this, every DMA API maps the page like one of the domain's own, and
 * the device DMAs straight into the guest's page.
 */
import { GNTST, GNTST_MESSAGE } from '../../shared/abi/grant.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import { asGref, type DomId, type GrantHandle, type Pfn } from '../../shared/types.ts';
import { clearForeignP2mMapping, setForeignP2mMapping } from './frames.ts';

export interface GrantForDma {
  readonly domid: number;
  readonly ref: number;
  readonly readonly: boolean;
}

/** A foreign page mapped for DMA at a ballooned pfn. */
export interface ForeignPage {
  readonly pfn: Pfn;
  readonly handle: GrantHandle;
  /** What Xen returned for the device mapping (the frame's bus address, bus = mfn). */
  readonly devBusAddr: number;
  readonly readonly: boolean;
}

export interface GrantMapError {
  readonly kind: 'grant-map-failed';
  readonly index: number;
  readonly status: number;
  readonly message: string;
}

/** [mapGrantsForDma k grants] maps every grant or none (a failed batch is unwound). */
export function mapGrantsForDma(k: DomainKernel, grants: readonly GrantForDma[]): Result<ForeignPage[], GrantMapError> {
  const pfns: Pfn[] = [];
  for (let i = 0; i < grants.length; i++) {
    const p = k.ballooned.tryAlloc();
    if (p === undefined) {
      for (const q of pfns) k.ballooned.release(q);
      return err({ kind: 'grant-map-failed', index: i, status: GNTST.no_space, message: 'out of ballooned pages' });
    }
    pfns.push(p);
  }
  const res = k.gnttab.mapGrantRefs(grants.map((g, i) => ({
    domid: g.domid as DomId, ref: asGref(g.ref), readonly: g.readonly, hostPfn: pfns[i] as Pfn, device: true,
  })));
  const bad = res.findIndex((r) => r.status !== GNTST.okay);
  if (bad >= 0) {
    const done = res.map((r, i) => ({ r, i })).filter(({ r }) => r.status === GNTST.okay);
    k.gnttab.unmapGrantRefs(done.map(({ r, i }) => ({ handle: r.handle, hostPfn: pfns[i] as Pfn, devBusAddr: r.devBusAddr })));
    for (const q of pfns) k.ballooned.release(q);
    const status = (res[bad] as { status: number }).status;
    return err({ kind: 'grant-map-failed', index: bad, status, message: GNTST_MESSAGE[status] ?? String(status) });
  }
  const out: ForeignPage[] = res.map((r, i) => ({ pfn: pfns[i] as Pfn, handle: r.handle, devBusAddr: r.devBusAddr, readonly: (grants[i] as GrantForDma).readonly }));
  for (const f of out) setForeignP2mMapping(k, f.pfn, Math.floor(f.devBusAddr / k.pageSize));
  return ok(out);
}

/** [unmapGrantsForDma k pages] forgets, unmaps and frees the pfns; returns each GNTST status. */
export function unmapGrantsForDma(k: DomainKernel, pages: readonly ForeignPage[]): number[] {
  for (const f of pages) clearForeignP2mMapping(k, f.pfn);
  const st = k.gnttab.unmapGrantRefs(pages.map((f) => ({ handle: f.handle, hostPfn: f.pfn, devBusAddr: f.devBusAddr })));
  pages.forEach((f, i) => { if (st[i] === GNTST.okay) k.ballooned.release(f.pfn); });
  return st;
}
