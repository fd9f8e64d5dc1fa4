/**
 * A guest kernel's grant-table layer: granting its own pages (writing v1
 * entries directly: domid and frame first, flags last), ending access (a
 * compare-exchange that refuses while Xen has the entry in use), and the
 * batched map/unmap/copy hypercalls a backend uses.
 */
import { GNTCOPY, GNTMAP, GNTST, GNTST_MESSAGE, GNTTABOP, GNTTAB_COPY, GNTTAB_COPY_PTR, GNTTAB_MAP, GNTTAB_NR_RESERVED_ENTRIES, GNTTAB_UNMAP, GRANT_ENTRY_V1, GTF } from '../abi/grant.ts';
import { HYPERVISOR, errnoName } from '../abi/xen.ts';
import type { DomainMemory } from '../memory/domain-memory.ts';
import type { Hypercaller } from '../hypercall/channel.ts';
import { asGrantHandle, asGref, DOMID_SELF, type DomId, type GrantHandle, type Gref, type GuestAddr, type Pfn } from '../types.ts';

export class GnttabError extends Error {
  override readonly name = 'GnttabError';
  constructor(readonly op: string, readonly status: number) {
    super(`${op}: ${GNTST_MESSAGE[status] ?? errnoName(status)} (${status})`);
  }
}

export interface MapRequest { readonly domid: DomId; readonly ref: Gref; readonly readonly: boolean; readonly hostPfn: Pfn; readonly device?: boolean }
export interface MapResult { readonly status: number; readonly handle: GrantHandle; readonly devBusAddr: number }
export interface UnmapRequest { readonly handle: GrantHandle; readonly hostPfn: Pfn | -1; readonly devBusAddr?: number }

/** One side of a grant copy: a grant of another domain, or a frame of our own. */
export type CopyPtr = { readonly gref: Gref; readonly domid: DomId; readonly offset: number } | { readonly frame: number; readonly offset: number };
export interface CopyRequest { readonly source: CopyPtr; readonly dest: CopyPtr; readonly len: number }

export class GrantTable {
  private readonly freeRefs: number[] = [];
  private readonly pageSize: number;
  readonly nrEntries: number;
  private readonly base: number;
  /** Grants whose end of access failed (still mapped): retried by retryDeferred(). */
  readonly deferred = new Set<number>();

  constructor(
    private readonly mem: DomainMemory,
    private readonly hc: Hypercaller,
    readonly grantPfnBase: number,
    readonly nrFrames: number,
    /** For PV guests, grants name machine frames: pfn → mfn. */
    private readonly frameOf: (pfn: Pfn) => number,
    /**
     * PV guests keep their own pfn→mfn list: a foreign frame mapped at a pfn
     * must appear there too (Linux's set_foreign_p2m_mapping), and go on unmap.
     */
    private readonly foreignP2m?: (pfn: Pfn, mfn: number | undefined) => void,
  ) {
    this.pageSize = mem.pageSize;
    this.base = grantPfnBase * mem.pageSize;
    this.nrEntries = (nrFrames * mem.pageSize) / GRANT_ENTRY_V1.SIZE;
    for (let r = this.nrEntries - 1; r >= GNTTAB_NR_RESERVED_ENTRIES; r--) this.freeRefs.push(r);
  }

  /** GNTTABOP_setup_table (xensim form): Xen installs nrFrames table frames at our grant pfns. */
  setup(): void {
    const buf = this.hc.buf;
    for (let i = 0; i < this.nrFrames; i++) buf.setU32(i * 4, this.grantPfnBase + i);
    const [r] = this.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.setup_table, 0, this.nrFrames);
    if (r !== 0) throw new GnttabError('GNTTABOP_setup_table', r);
  }

  get freeCount(): number { return this.freeRefs.length; }

  private entry(ref: number): GuestAddr { return (this.base + ref * GRANT_ENTRY_V1.SIZE) as GuestAddr; }

  /**
   * [grantForeignAccess domid pfn readonly] grants domid access to our page pfn.
   * Returns undefined when the table is full (callers back off, never corrupt).
   */
  grantForeignAccess(domid: DomId, pfn: Pfn, readonly: boolean): Gref | undefined {
    const ref = this.freeRefs.pop();
    if (ref === undefined) return undefined;
    this.grantForeignAccessRef(asGref(ref), domid, pfn, readonly);
    return asGref(ref);
  }

  /** Fills an entry we already own (persistent-grant pools reuse refs). */
  grantForeignAccessRef(ref: Gref, domid: DomId, pfn: Pfn, readonly: boolean): void {
    const e = this.entry(ref);
    this.mem.setU32((e + GRANT_ENTRY_V1.frame) as GuestAddr, this.frameOf(pfn));
    // Release: Xen sees domid and frame /before/ it sees the entry valid.
    this.mem.atomicStore32(e, (GTF.permit_access | (readonly ? GTF.readonly : 0) | ((domid & 0xffff) << 16)) | 0);
  }

  /**
   * [endForeignAccessRef ref] revokes ref if Xen is not using it (no
   * GTF_reading/GTF_writing): true on success. A grant in use cannot be revoked.
   */
  endForeignAccessRef(ref: Gref): boolean {
    const e = this.entry(ref);
    for (;;) {
      const w = this.mem.atomicLoad32(e);
      if ((w & (GTF.reading | GTF.writing)) !== 0) return false;
      // Compare-exchange: if Xen pins between our load and here, this fails and we re-check.
      if (this.mem.atomicCmpxchg32(e, w, w & ~0xffff) === w) return true;
    }
  }

  /** [endForeignAccess ref] revokes and frees ref, or defers it while still in use (gnttab_end_foreign_access). */
  endForeignAccess(ref: Gref): boolean {
    if (this.endForeignAccessRef(ref)) { this.freeRefs.push(ref); return true; }
    this.deferred.add(ref);
    return false;
  }

  /** Retries deferred revocations; returns how many are still in use. */
  retryDeferred(): number {
    for (const ref of [...this.deferred]) {
      if (this.endForeignAccessRef(asGref(ref))) { this.deferred.delete(ref); this.freeRefs.push(ref); }
    }
    return this.deferred.size;
  }

  /** Returns a revoked ref to the free list (persistent pools that end access themselves). */
  freeRef(ref: Gref): void { this.freeRefs.push(ref); }
  allocRef(): Gref | undefined { const r = this.freeRefs.pop(); return r === undefined ? undefined : asGref(r); }

  /** [flags ref] is the entry's current flags word (for tests and checkers). */
  flags(ref: Gref): number { return this.mem.atomicLoad32(this.entry(ref)) & 0xffff; }

  // ---- backend side: batched hypercalls -------------------------------------

  private maxBatch(size: number): number { return Math.floor(this.hc.bufBytes / size); }

  /** Writes v (an integer in [0, 2^53)) as a little-endian u64 at off in the hypercall buffer: two u32 stores, no BigInt. */
  private putU64(off: number, v: number): void {
    const buf = this.hc.buf;
    buf.setU32(off, v >>> 0);
    buf.setU32(off + 4, Math.floor(v / 0x1_0000_0000));
  }
  private getU64(off: number): number {
    const buf = this.hc.buf;
    return buf.getU32(off) + buf.getU32(off + 4) * 0x1_0000_0000;
  }

  /** GNTTABOP_map_grant_ref over a batch; each element has its own status. */
  mapGrantRefs(reqs: readonly MapRequest[]): MapResult[] {
    const out: MapResult[] = [];
    const per = this.maxBatch(GNTTAB_MAP.SIZE);
    const buf = this.hc.buf;
    for (let start = 0; start < reqs.length; start += per) {
      const n = Math.min(per, reqs.length - start);
      for (let i = 0; i < n; i++) {
        const q = reqs[start + i] as MapRequest;
        const o = i * GNTTAB_MAP.SIZE;
        this.putU64(o + GNTTAB_MAP.host_addr, q.hostPfn * this.pageSize);
        buf.setU32(o + GNTTAB_MAP.flags, GNTMAP.host_map | (q.device === true ? GNTMAP.device_map : 0) | (q.readonly ? GNTMAP.readonly : 0));
        buf.setU32(o + GNTTAB_MAP.ref, q.ref);
        buf.setU16(o + GNTTAB_MAP.dom, q.domid);
      }
      const [r] = this.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, 0, n);
      if (r < 0) throw new GnttabError('GNTTABOP_map_grant_ref', r);
      for (let i = 0; i < n; i++) {
        const o = i * GNTTAB_MAP.SIZE;
        const res: MapResult = { status: buf.getI16(o + GNTTAB_MAP.status), handle: asGrantHandle(buf.getU32(o + GNTTAB_MAP.handle)), devBusAddr: this.getU64(o + GNTTAB_MAP.dev_bus_addr) };
        if (res.status === 0 && this.foreignP2m !== undefined) this.foreignP2m((reqs[start + i] as MapRequest).hostPfn, res.devBusAddr / this.pageSize);
        out.push(res);
      }
    }
    return out;
  }

  /** GNTTABOP_unmap_grant_ref over a batch; returns each status. */
  unmapGrantRefs(reqs: readonly UnmapRequest[]): number[] {
    const out: number[] = [];
    const per = this.maxBatch(GNTTAB_UNMAP.SIZE);
    const buf = this.hc.buf;
    for (let start = 0; start < reqs.length; start += per) {
      const n = Math.min(per, reqs.length - start);
      for (let i = 0; i < n; i++) {
        const q = reqs[start + i] as UnmapRequest;
        const o = i * GNTTAB_UNMAP.SIZE;
        this.putU64(o + GNTTAB_UNMAP.host_addr, q.hostPfn === -1 ? 0 : q.hostPfn * this.pageSize);
        this.putU64(o + GNTTAB_UNMAP.dev_bus_addr, q.devBusAddr ?? 0);
        buf.setU32(o + GNTTAB_UNMAP.handle, q.handle);
      }
      const [r] = this.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, 0, n);
      if (r < 0) throw new GnttabError('GNTTABOP_unmap_grant_ref', r);
      for (let i = 0; i < n; i++) {
        const st = buf.getI16(i * GNTTAB_UNMAP.SIZE + GNTTAB_UNMAP.status);
        const hostPfn = (reqs[start + i] as UnmapRequest).hostPfn;
        if (st === 0 && hostPfn !== -1 && this.foreignP2m !== undefined) this.foreignP2m(hostPfn, undefined);
        out.push(st);
      }
    }
    return out;
  }

  /** Writes one gnttab_copy_ptr at o; returns 1 when it names a grant. */
  private putCopyPtr(o: number, p: CopyPtr): number {
    const buf = this.hc.buf;
    let isGref: number;
    if ('gref' in p) {
      this.putU64(o + GNTTAB_COPY_PTR.u, p.gref);
      buf.setU16(o + GNTTAB_COPY_PTR.domid, p.domid);
      isGref = 1;
    } else {
      this.putU64(o + GNTTAB_COPY_PTR.u, this.frameOf(p.frame as Pfn));
      buf.setU16(o + GNTTAB_COPY_PTR.domid, DOMID_SELF);
      isGref = 0;
    }
    buf.setU16(o + GNTTAB_COPY_PTR.offset, p.offset);
    return isGref;
  }

  /** GNTTABOP_copy over a batch; returns each status. Our own frames are named by pfn (by mfn for PV). */
  copy(reqs: readonly CopyRequest[]): number[] {
    const out: number[] = [];
    const per = this.maxBatch(GNTTAB_COPY.SIZE);
    const buf = this.hc.buf;
    for (let start = 0; start < reqs.length; start += per) {
      const n = Math.min(per, reqs.length - start);
      for (let i = 0; i < n; i++) {
        const q = reqs[start + i] as CopyRequest;
        const o = i * GNTTAB_COPY.SIZE;
        const sg = this.putCopyPtr(o + GNTTAB_COPY.source, q.source);
        const dg = this.putCopyPtr(o + GNTTAB_COPY.dest, q.dest);
        buf.setU16(o + GNTTAB_COPY.len, q.len);
        buf.setU16(o + GNTTAB_COPY.flags, (sg !== 0 ? GNTCOPY.source_gref : 0) | (dg !== 0 ? GNTCOPY.dest_gref : 0));
      }
      const [r] = this.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.copy, 0, n);
      if (r < 0) throw new GnttabError('GNTTABOP_copy', r);
      for (let i = 0; i < n; i++) out.push(buf.getI16(i * GNTTAB_COPY.SIZE + GNTTAB_COPY.status));
    }
    return out;
  }
}

export { GNTST };
