/**
 * A batch of GNTTABOP_copy operations, encoded into a private buffer as
 * struct gnttab_copy (shared/abi/grant.ts) and issued as ONE hypercall when
 * flushed, the way Linux netback batches up to COPY_BATCH_SIZE (64) copies
 * per hypercall (the RX refactor cut it from 4352 to 64 and pushes responses
 * after each batch, PERF-FACTS P11).
 *
 * The ops live in a private byte array until the flush copies them into the
 * hypercall argument buffer in one piece, so nothing else that uses that
 * buffer between two adds can corrupt them; statuses are copied back in one
 * piece. No allocation per op.
 */
import { GNTCOPY, GNTMAP, GNTST, GNTTABOP, GNTTAB_COPY, GNTTAB_COPY_PTR, GNTTAB_MAP, GNTTAB_UNMAP } from '../../shared/abi/grant.ts';
import { HYPERVISOR } from '../../shared/abi/xen.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { DOMID_SELF, type Pfn } from '../../shared/types.ts';

/** Linux netback's COPY_BATCH_SIZE. */
export const COPY_BATCH_SIZE = 64;

function wr16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}
function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

export class GrantCopyBatch {
  private readonly ops: Uint8Array;
  /** [status i] after a flush: GNTST_* of op i. */
  readonly status: Int16Array;
  /** Ops added and not yet flushed. */
  count = 0;
  /** Totals over the batch's life. */
  hypercalls = 0;
  copies = 0;
  bytes = 0;
  failures = 0;

  constructor(private readonly k: DomainKernel, readonly max = COPY_BATCH_SIZE) {
    if (max * GNTTAB_COPY.SIZE > k.hc.bufBytes) throw new RangeError(`a batch of ${max} copies does not fit the ${k.hc.bufBytes}-byte hypercall buffer`);
    this.ops = new Uint8Array(max * GNTTAB_COPY.SIZE);
    this.status = new Int16Array(max);
  }

  /** [room] is how many ops may still be added before a flush is needed. */
  get room(): number { return this.max - this.count; }

  private putGref(o: number, gref: number, domid: number, off: number): void {
    const b = this.ops;
    wr32(b, o + GNTTAB_COPY_PTR.u, gref);
    wr32(b, o + GNTTAB_COPY_PTR.u + 4, 0);
    wr16(b, o + GNTTAB_COPY_PTR.domid, domid);
    wr16(b, o + GNTTAB_COPY_PTR.offset, off);
  }
  private putLocal(o: number, pfn: number, off: number): void {
    const b = this.ops;
    const frame = this.k.frameOf(pfn as Pfn);
    wr32(b, o + GNTTAB_COPY_PTR.u, frame >>> 0);
    wr32(b, o + GNTTAB_COPY_PTR.u + 4, Math.floor(frame / 0x1_0000_0000));
    wr16(b, o + GNTTAB_COPY_PTR.domid, DOMID_SELF);
    wr16(b, o + GNTTAB_COPY_PTR.offset, off);
  }
  private finish(o: number, len: number, flags: number): number {
    wr16(this.ops, o + GNTTAB_COPY.len, len);
    wr16(this.ops, o + GNTTAB_COPY.flags, flags);
    wr16(this.ops, o + GNTTAB_COPY.status, 0);
    return this.count++;
  }

  /** [fromGref gref domid off → pfn dstOff len]: copy out of another domain's grant into our page. Returns the op index. */
  fromGref(gref: number, domid: number, srcOff: number, dstPfn: number, dstOff: number, len: number): number {
    const o = this.count * GNTTAB_COPY.SIZE;
    this.putGref(o + GNTTAB_COPY.source, gref, domid, srcOff);
    this.putLocal(o + GNTTAB_COPY.dest, dstPfn, dstOff);
    return this.finish(o, len, GNTCOPY.source_gref);
  }

  /** [toGref pfn off → gref domid dstOff len]: copy from our page into another domain's grant. */
  toGref(srcPfn: number, srcOff: number, gref: number, domid: number, dstOff: number, len: number): number {
    const o = this.count * GNTTAB_COPY.SIZE;
    this.putLocal(o + GNTTAB_COPY.source, srcPfn, srcOff);
    this.putGref(o + GNTTAB_COPY.dest, gref, domid, dstOff);
    return this.finish(o, len, GNTCOPY.dest_gref);
  }

  /** [grefToGref]: copy between two grants (a frontend's TX page straight into another's RX buffer). */
  grefToGref(srcGref: number, srcDom: number, srcOff: number, dstGref: number, dstDom: number, dstOff: number, len: number): number {
    const o = this.count * GNTTAB_COPY.SIZE;
    this.putGref(o + GNTTAB_COPY.source, srcGref, srcDom, srcOff);
    this.putGref(o + GNTTAB_COPY.dest, dstGref, dstDom, dstOff);
    return this.finish(o, len, GNTCOPY.source_gref | GNTCOPY.dest_gref);
  }

  /**
   * [flush] issues the batch as one GNTTABOP_copy (nothing when empty) and
   * fills `status`; returns the number of ops it carried. A failed hypercall
   * marks every op failed with its error.
   */
  flush(): number {
    const n = this.count;
    if (n === 0) return 0;
    const hc = this.k.hc;
    const bytes = n * GNTTAB_COPY.SIZE;
    hc.buf.copyIn(0, this.ops, 0, bytes);
    const [r] = hc.call(HYPERVISOR.grant_table_op, GNTTABOP.copy, 0, n);
    this.hypercalls++;
    this.count = 0;
    if (r < 0) {
      this.status.fill(r < -0x8000 ? GNTST.general_error : r, 0, n);
      this.failures += n;
      return n;
    }
    hc.buf.copyOut(0, this.ops, 0, bytes);
    const b = this.ops;
    for (let i = 0; i < n; i++) {
      const o = i * GNTTAB_COPY.SIZE;
      const st = ((((b[o + GNTTAB_COPY.status] as number) | ((b[o + GNTTAB_COPY.status + 1] as number) << 8)) << 16) >> 16);
      this.status[i] = st;
      if (st !== GNTST.okay) this.failures++;
      else {
        this.copies++;
        this.bytes += (b[o + GNTTAB_COPY.len] as number) | ((b[o + GNTTAB_COPY.len + 1] as number) << 8);
      }
    }
    return n;
  }
}

/**
 * Batched GNTTABOP_map_grant_ref / unmap_grant_ref without per-element
 * objects or BigInt arithmetic (the generic GrantTable batch builds both).
 * A PV (p2m) dom0 must also record foreign frames in its own pfn→mfn list,
 * which only the kernel's GrantTable does: there, use it instead
 * ([GrantMapBatch.usable] says which).
 */
export class GrantMapBatch {
  private readonly buf: Uint8Array;
  readonly max: number;
  /** Results of the last mapAll: status and handle of each element. */
  readonly status: Int16Array;
  readonly handle: Uint32Array;
  hypercalls = 0;

  constructor(private readonly k: DomainKernel, max = 512) {
    this.max = Math.min(max, Math.floor(k.hc.bufBytes / GNTTAB_MAP.SIZE));
    this.buf = new Uint8Array(this.max * GNTTAB_MAP.SIZE);
    this.status = new Int16Array(this.max);
    this.handle = new Uint32Array(this.max);
  }

  /** [usable k] is true unless k is a PV guest (which keeps its own pfn→mfn list). */
  static usable(k: DomainKernel): boolean { return k.boot.model !== 'p2m'; }

  /**
   * [mapAll n domid refs pfns readonly] maps refs[i] of domid at our pfns[i]
   * for i < n (n ≤ max), in one hypercall; fills status and handle.
   */
  mapAll(n: number, domid: number, refs: ArrayLike<number>, pfns: ArrayLike<number>, readonly: boolean): void {
    const b = this.buf;
    const ps = this.k.pageSize;
    b.fill(0, 0, n * GNTTAB_MAP.SIZE);
    for (let i = 0; i < n; i++) {
      const o = i * GNTTAB_MAP.SIZE;
      const addr = (pfns[i] as number) * ps;
      wr32(b, o + GNTTAB_MAP.host_addr, addr >>> 0);
      wr32(b, o + GNTTAB_MAP.host_addr + 4, Math.floor(addr / 0x1_0000_0000));
      wr32(b, o + GNTTAB_MAP.flags, GNTMAP.host_map | (readonly ? GNTMAP.readonly : 0));
      wr32(b, o + GNTTAB_MAP.ref, refs[i] as number);
      wr16(b, o + GNTTAB_MAP.dom, domid);
    }
    const hc = this.k.hc;
    hc.buf.copyIn(0, b, 0, n * GNTTAB_MAP.SIZE);
    const [r] = hc.call(HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, 0, n);
    this.hypercalls++;
    if (r < 0) {
      this.status.fill(GNTST.general_error, 0, n);
      return;
    }
    hc.buf.copyOut(0, b, 0, n * GNTTAB_MAP.SIZE);
    for (let i = 0; i < n; i++) {
      const o = i * GNTTAB_MAP.SIZE;
      this.status[i] = (((b[o + GNTTAB_MAP.status] as number) | ((b[o + GNTTAB_MAP.status + 1] as number) << 8)) << 16) >> 16;
      this.handle[i] = ((b[o + GNTTAB_MAP.handle] as number) | ((b[o + GNTTAB_MAP.handle + 1] as number) << 8)
        | ((b[o + GNTTAB_MAP.handle + 2] as number) << 16) | ((b[o + GNTTAB_MAP.handle + 3] as number) << 24)) >>> 0;
    }
  }

  /** [unmapAll n handles pfns] unmaps n host mappings in one hypercall; status[i] is each result. */
  unmapAll(n: number, handles: ArrayLike<number>, pfns: ArrayLike<number>): void {
    const b = this.buf;
    const ps = this.k.pageSize;
    b.fill(0, 0, n * GNTTAB_UNMAP.SIZE);
    for (let i = 0; i < n; i++) {
      const o = i * GNTTAB_UNMAP.SIZE;
      const addr = (pfns[i] as number) * ps;
      wr32(b, o + GNTTAB_UNMAP.host_addr, addr >>> 0);
      wr32(b, o + GNTTAB_UNMAP.host_addr + 4, Math.floor(addr / 0x1_0000_0000));
      wr32(b, o + GNTTAB_UNMAP.handle, handles[i] as number);
    }
    const hc = this.k.hc;
    hc.buf.copyIn(0, b, 0, n * GNTTAB_UNMAP.SIZE);
    const [r] = hc.call(HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, 0, n);
    this.hypercalls++;
    if (r < 0) {
      this.status.fill(GNTST.general_error, 0, n);
      return;
    }
    hc.buf.copyOut(0, b, 0, n * GNTTAB_UNMAP.SIZE);
    for (let i = 0; i < n; i++) {
      const o = i * GNTTAB_UNMAP.SIZE;
      this.status[i] = (((b[o + GNTTAB_UNMAP.status] as number) | ((b[o + GNTTAB_UNMAP.status + 1] as number) << 8)) << 16) >> 16;
    }
  }
}
