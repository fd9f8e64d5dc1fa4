/**
 * Grant tables v1 (xen/common/grant_table.c behaviour, our own code).
 *
 * The granter's table lives in its own frames and is written by the guest
 * (domid and frame first, flags last); the hypervisor reads entries atomically
 * and sets/clears GTF_reading/GTF_writing with compare-exchange, so a guest
 * revoking concurrently either sees the in-use bit and fails, or revokes first
 * and the pin fails. Active entries (pins per kind) and maptrack entries (the
 * mapper's handles) are private to the hypervisor.
 */
import { GNTCOPY, GNTMAP, GNTST, GNTTABOP, GNTTAB_COPY, GNTTAB_COPY_PTR, GNTTAB_MAP, GNTTAB_QUERY_SIZE, GNTTAB_UNMAP, GRANT_ENTRY_V1, GTF, type GntSt } from '../shared/abi/grant.ts';
import { DCB, FRAME_TYPE } from '../shared/abi/machine.ts';
import { XEN_ERRNO } from '../shared/abi/xen.ts';
import { type Result, err, ok } from '../shared/result.ts';
import { DOMID_SELF, type DomId, type MachineAddr, type Mfn, type Pfn } from '../shared/types.ts';
import type { ActiveGrant, Domain } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';

type PinKind = 'hostRo' | 'hostRw' | 'devRo' | 'devRw' | 'copyRo' | 'copyRw';

function entriesPerFrame(hv: Hypervisor): number { return hv.pageSize / GRANT_ENTRY_V1.SIZE; }

function entryAddr(hv: Hypervisor, g: Domain, ref: number): MachineAddr | undefined {
  const per = entriesPerFrame(hv);
  if (!(Number.isInteger(ref) && ref >= 0 && ref < g.grantFrames.length * per)) return undefined;
  const f = g.grantFrames[Math.floor(ref / per)] as Mfn;
  return (hv.mem.frameAddr(f) + (ref % per) * GRANT_ENTRY_V1.SIZE) as MachineAddr;
}

/** [grantFrameToMfn hv g frame] resolves a grant entry's frame field to a frame g owns. */
function grantFrameToMfn(hv: Hypervisor, g: Domain, frame: number): Mfn | undefined {
  let mfn: number | undefined;
  if (g.model === 'p2m') mfn = frame; // PV grants name machine frames
  else {
    if (!g.p2m.inRange(frame)) return undefined;
    const e = g.p2m.get(frame as Pfn);
    if (!e.present || e.foreign) return undefined;
    mfn = e.mfn;
  }
  if (!(mfn >= 0 && mfn < hv.mem.frames)) return undefined;
  if (hv.frameTable.owner(mfn as Mfn) !== g.domid || hv.frameTable.type(mfn as Mfn) !== FRAME_TYPE.ram) return undefined;
  return mfn as Mfn;
}

function totalPins(a: ActiveGrant): number { return a.hostRo + a.hostRw + a.devRo + a.devRw + a.copyRo + a.copyRw; }
function writePins(a: ActiveGrant): number { return a.hostRw + a.devRw + a.copyRw; }

/**
 * [pin hv g ref grantee kind] takes one pin of `kind` on g's grant ref for
 * grantee, setting GTF_reading (and GTF_writing for writable kinds) in the
 * shared entry. Returns the active entry or a GNTST status.
 */
export function pin(hv: Hypervisor, g: Domain, ref: number, grantee: DomId, kind: PinKind): Result<ActiveGrant, GntSt> {
  const e = entryAddr(hv, g, ref);
  if (e === undefined) return err(GNTST.bad_gntref);
  // As Xen's "Bad domain (%d != %d)" check: an entry pinned for one grantee is
  // never pinned by another, whatever the granter has since written in the entry
  // (else that domain would reach the frame pinned for the first one).
  const held = g.active.get(ref);
  if (held !== undefined && held.grantee !== grantee) return err(GNTST.general_error);
  const write = kind === 'hostRw' || kind === 'devRw' || kind === 'copyRw';
  const mem = hv.mem;
  let done = false;
  for (let tries = 0; tries < 8 && !done; tries++) {
    // The flags (u16) and domid (u16) words are read and updated as one 32-bit
    // value, as Xen does, so the guest cannot change the grantee between check and pin.
    const w = mem.atomicLoad32(e);
    const flags = w & 0xffff;
    const dom = (w >>> 16) & 0xffff;
    if ((flags & GTF.type_mask) !== GTF.permit_access || dom !== grantee) return err(GNTST.permission_denied);
    if (write && (flags & GTF.readonly) !== 0) return err(GNTST.permission_denied);
    const nf = flags | GTF.reading | (write ? GTF.writing : 0);
    if (nf === flags) { done = true; break; }
    if (mem.atomicCmpxchg32(e, w, (nf | (dom << 16)) | 0) === w) done = true;
  }
  if (!done) return err(GNTST.general_error); // the guest kept changing the entry under us
  let act = g.active.get(ref);
  if (act === undefined) {
    const mfn = grantFrameToMfn(hv, g, mem.getU32((e + GRANT_ENTRY_V1.frame) as MachineAddr));
    if (mfn === undefined) {
      clearInUse(hv, g, ref, undefined);
      return err(GNTST.bad_page);
    }
    act = { mfn, grantee, hostRo: 0, hostRw: 0, devRo: 0, devRw: 0, copyRo: 0, copyRw: 0 };
    g.active.set(ref, act);
  }
  act[kind]++;
  return ok(act);
}

/** Clears GTF_writing when no writable pin remains and GTF_reading when no pin remains. */
function clearInUse(hv: Hypervisor, g: Domain, ref: number, act: ActiveGrant | undefined): void {
  const e = entryAddr(hv, g, ref);
  if (e === undefined) return;
  const clear = (act === undefined || totalPins(act) === 0) ? GTF.reading | GTF.writing : writePins(act) === 0 ? GTF.writing : 0;
  if (clear !== 0) hv.mem.atomicAnd32(e, ~clear); // RMW: only our bits change; the guest's flags and domid stay
}

/** [unpin hv g ref kind] drops one pin of kind; frees the active entry with the last pin. */
export function unpin(hv: Hypervisor, g: Domain, ref: number, kind: PinKind): void {
  const act = g.active.get(ref);
  if (act === undefined || act[kind] <= 0) throw new Error(`unpin of d${g.domid} ref ${ref} (${kind}) without a pin`);
  act[kind]--;
  clearInUse(hv, g, ref, act);
  if (totalPins(act) === 0) {
    g.active.delete(ref);
    if (g.state === 'zombie') reapZombieFrame(hv, g, act.mfn);
  }
}

function reapZombieFrame(hv: Hypervisor, g: Domain, mfn: Mfn): void {
  if (!g.owned.has(mfn) || hv.frameTable.mapcount(mfn) > 0) return;
  for (const a of g.active.values()) if (a.mfn === mfn) return;
  hv.freeOwnedFrame(g, mfn);
  maybeFinishZombie(hv, g);
}

/** [maybeFinishZombie hv g] completes a zombie's destruction once nothing of it is mapped. */
export function maybeFinishZombie(hv: Hypervisor, g: Domain): boolean {
  if (g.state !== 'zombie') return false;
  if (g.active.size === 0) {
    for (const f of g.grantFrames) if (g.owned.has(f)) hv.freeOwnedFrame(g, f);
  }
  if (g.owned.size > 0) return false;
  hv.finishDestroy(g);
  return true;
}

function stat(hv: Hypervisor, d: Domain, field: number, n = 1): void {
  hv.mem.atomicAdd32(hv.layout.dcbField(d.slot, field), n);
}

// ------------------------------------------------------------------ map/unmap

function mapOne(hv: Hypervisor, d: Domain, a: MachineAddr): void {
  const mem = hv.mem;
  const status = (s: number) => mem.setI16((a + GNTTAB_MAP.status) as MachineAddr, s);
  const hostAddr = Number(mem.getU64((a + GNTTAB_MAP.host_addr) as MachineAddr));
  const flags = mem.getU32((a + GNTTAB_MAP.flags) as MachineAddr);
  const ref = mem.getU32((a + GNTTAB_MAP.ref) as MachineAddr);
  const dom = mem.getU16((a + GNTTAB_MAP.dom) as MachineAddr);
  mem.setU32((a + GNTTAB_MAP.handle) as MachineAddr, 0xffffffff);
  mem.setU64((a + GNTTAB_MAP.dev_bus_addr) as MachineAddr, 0n);
  const host = (flags & GNTMAP.host_map) !== 0;
  const dev = (flags & GNTMAP.device_map) !== 0;
  const ro = (flags & GNTMAP.readonly) !== 0;
  if (!host && !dev) return status(GNTST.bad_gntref); // Xen: "Bad flags in grant map op"
  const g = hv.domain(dom === DOMID_SELF ? d.domid : dom);
  if (g === undefined || !g.alive) return status(GNTST.bad_domain);
  if (d.maptrackInUse >= d.spec.maxMaptrack) return status(GNTST.no_space);
  let pfn = -1;
  if (host) {
    pfn = hostAddr / hv.pageSize;
    if (!Number.isInteger(pfn) || !d.p2m.inRange(pfn) || d.p2m.get(pfn as Pfn).present) return status(GNTST.bad_virt_addr);
  }
  const kinds: PinKind[] = [];
  if (host) kinds.push(ro ? 'hostRo' : 'hostRw');
  if (dev) kinds.push(ro ? 'devRo' : 'devRw');
  let act: ActiveGrant | undefined;
  for (let k = 0; k < kinds.length; k++) {
    const r = pin(hv, g, ref, d.domid, kinds[k] as PinKind);
    if (!r.ok) {
      for (let j = 0; j < k; j++) unpin(hv, g, ref, kinds[j] as PinKind); // XSA-361: unwind what this element took
      return status(r.error);
    }
    act = r.value;
  }
  if (act === undefined) return status(GNTST.general_error);
  if (host) {
    d.p2m.set(pfn as Pfn, act.mfn, !ro, true);
    hv.frameTable.addMap(act.mfn, 1);
  }
  const handle = d.maptrackFree.pop() ?? d.maptrack.length;
  d.maptrack[handle] = { granter: g.domid, ref, flags: flags & (GNTMAP.host_map | GNTMAP.device_map | GNTMAP.readonly), hostPfn: pfn, mfn: act.mfn };
  d.maptrackInUse++;
  hv.iommu.grantMapped(d, act.mfn, !ro); // strict IOMMU contexts of the mapper follow its grant maps
  mem.setU32((a + GNTTAB_MAP.handle) as MachineAddr, handle);
  // The bus address: identity (bus = machine) for device maps and for PV mappers, who need the MFN.
  if (dev || d.model === 'p2m') mem.setU64((a + GNTTAB_MAP.dev_bus_addr) as MachineAddr, BigInt(act.mfn) * BigInt(hv.pageSize));
  stat(hv, d, DCB.statGrantMaps);
  status(GNTST.okay);
}

/** [unmapHandle hv d handle dropHost dropDev] removes (part of) a mapping; returns a GNTST status. */
export function unmapHandle(hv: Hypervisor, d: Domain, handle: number, dropHost: boolean, dropDev: boolean): GntSt {
  const e = d.maptrack[handle];
  if (e === undefined) return GNTST.bad_handle;
  const g = hv.domain(e.granter);
  const ro = (e.flags & GNTMAP.readonly) !== 0;
  if (dropHost && (e.flags & GNTMAP.host_map) !== 0) {
    d.p2m.clear(e.hostPfn as Pfn);
    hv.frameTable.addMap(e.mfn, -1);
    e.flags &= ~GNTMAP.host_map;
    e.hostPfn = -1;
    if (g !== undefined) unpin(hv, g, e.ref, ro ? 'hostRo' : 'hostRw');
  }
  if (dropDev && (e.flags & GNTMAP.device_map) !== 0) {
    e.flags &= ~GNTMAP.device_map;
    if (g !== undefined) unpin(hv, g, e.ref, ro ? 'devRo' : 'devRw');
  }
  if ((e.flags & (GNTMAP.host_map | GNTMAP.device_map)) === 0) {
    hv.iommu.grantUnmapped(d, e.mfn);
    d.maptrack[handle] = undefined;
    d.maptrackFree.push(handle);
    d.maptrackInUse--;
    stat(hv, d, DCB.statGrantUnmaps);
  }
  return GNTST.okay;
}

function unmapOne(hv: Hypervisor, d: Domain, a: MachineAddr): void {
  const mem = hv.mem;
  const status = (s: number) => mem.setI16((a + GNTTAB_UNMAP.status) as MachineAddr, s);
  const hostAddr = Number(mem.getU64((a + GNTTAB_UNMAP.host_addr) as MachineAddr));
  const devAddr = Number(mem.getU64((a + GNTTAB_UNMAP.dev_bus_addr) as MachineAddr));
  const handle = mem.getU32((a + GNTTAB_UNMAP.handle) as MachineAddr);
  const e = d.maptrack[handle];
  if (e === undefined) return status(GNTST.bad_handle);
  if (hostAddr === 0 && devAddr === 0) return status(GNTST.general_error);
  if (hostAddr !== 0 && ((e.flags & GNTMAP.host_map) === 0 || hostAddr !== e.hostPfn * hv.pageSize)) return status(GNTST.bad_virt_addr);
  if (devAddr !== 0 && ((e.flags & GNTMAP.device_map) === 0 || devAddr !== e.mfn * hv.pageSize)) return status(GNTST.bad_dev_addr);
  status(unmapHandle(hv, d, handle, hostAddr !== 0, devAddr !== 0));
}

/** When a mapper dies, every mapping it holds is released (gnttab_release_mappings). */
export function releaseMapperGrants(hv: Hypervisor, d: Domain): void {
  for (let h = 0; h < d.maptrack.length; h++) if (d.maptrack[h] !== undefined) unmapHandle(hv, d, h, true, true);
}

// ------------------------------------------------------------------------ copy

interface CopySide { mfn: Mfn; granter?: Domain; ref?: number; kind?: PinKind; offset: number }

function copySide(hv: Hypervisor, d: Domain, p: MachineAddr, isGref: boolean, write: boolean): Result<CopySide, GntSt> {
  const mem = hv.mem;
  const domid = mem.getU16((p + GNTTAB_COPY_PTR.domid) as MachineAddr);
  const offset = mem.getU16((p + GNTTAB_COPY_PTR.offset) as MachineAddr);
  if (isGref) {
    const ref = mem.getU32((p + GNTTAB_COPY_PTR.u) as MachineAddr);
    const g = hv.domain(domid === DOMID_SELF ? d.domid : domid);
    if (g === undefined || !g.alive) return err(GNTST.bad_domain);
    const kind: PinKind = write ? 'copyRw' : 'copyRo';
    const r = pin(hv, g, ref, d.domid, kind);
    if (!r.ok) return r;
    return ok({ mfn: r.value.mfn, granter: g, ref, kind, offset });
  }
  // Not a grant: the caller's own frame (a GFN, or an MFN for PV callers).
  if (domid !== DOMID_SELF && domid !== d.domid) return err(GNTST.permission_denied);
  const gmfn = Number(mem.getU64((p + GNTTAB_COPY_PTR.u) as MachineAddr));
  let mfn: number | undefined;
  if (d.model === 'p2m') mfn = gmfn;
  else if (d.p2m.inRange(gmfn)) {
    const e = d.p2m.get(gmfn as Pfn);
    if (e.present && !e.foreign && (!write || e.writable)) mfn = e.mfn;
  }
  if (mfn === undefined || !(mfn >= 0 && mfn < hv.mem.frames) || hv.frameTable.owner(mfn as Mfn) !== d.domid) return err(GNTST.bad_page);
  return ok({ mfn: mfn as Mfn, offset });
}

function releaseSide(hv: Hypervisor, s: CopySide): void {
  if (s.granter !== undefined && s.kind !== undefined && s.ref !== undefined) unpin(hv, s.granter, s.ref, s.kind);
}

function copyOne(hv: Hypervisor, d: Domain, a: MachineAddr): number {
  const mem = hv.mem;
  const status = (s: number) => mem.setI16((a + GNTTAB_COPY.status) as MachineAddr, s);
  const len = mem.getU16((a + GNTTAB_COPY.len) as MachineAddr);
  const flags = mem.getU16((a + GNTTAB_COPY.flags) as MachineAddr);
  const src = copySide(hv, d, (a + GNTTAB_COPY.source) as MachineAddr, (flags & GNTCOPY.source_gref) !== 0, false);
  if (!src.ok) { status(src.error); return 0; }
  const dst = copySide(hv, d, (a + GNTTAB_COPY.dest) as MachineAddr, (flags & GNTCOPY.dest_gref) !== 0, true);
  if (!dst.ok) { releaseSide(hv, src.value); status(dst.error); return 0; }
  const s = src.value;
  const t = dst.value;
  if (s.offset + len > hv.pageSize || t.offset + len > hv.pageSize) {
    releaseSide(hv, s); releaseSide(hv, t);
    status(GNTST.bad_copy_arg);
    return 0;
  }
  mem.copy((mem.frameAddr(t.mfn) + t.offset) as MachineAddr, (mem.frameAddr(s.mfn) + s.offset) as MachineAddr, len);
  releaseSide(hv, s); releaseSide(hv, t);
  status(GNTST.okay);
  return len;
}

// ------------------------------------------------------------- table set-up

/**
 * GNTTABOP_setup_table, xensim form: grows the table to nr frames and installs
 * each frame at the guest pfn given IN (u32 pfn[nr] at off); OUT (u32 mfn[nr]
 * after them) are the machine frames for PV guests and ~0 for the others.
 * (Xen splits this into setup_table plus XENMEM_add_to_physmap for
 * auto-translated guests; one call does both here.) Returns a GNTST status.
 */
function setupTable(hv: Hypervisor, d: Domain, off: number, nr: number): number {
  if (!(Number.isInteger(nr) && nr >= 1)) return GNTST.general_error;
  if (nr > d.spec.maxGrantFrames) return GNTST.general_error; // "Expand grant table ... failed"
  const buf = hv.hcbuf(d, off, nr * 8);
  if (buf === undefined) return -XEN_ERRNO.EFAULT;
  const mem = hv.mem;
  for (let i = 0; i < nr; i++) {
    const pfn = mem.getU32((buf + i * 4) as MachineAddr);
    if (!d.p2m.inRange(pfn)) return GNTST.bad_virt_addr;
    let f = d.grantFrames[i];
    if (f === undefined) {
      const cur = d.p2m.get(pfn as Pfn);
      if (cur.present) return GNTST.bad_virt_addr;
      const r = hv.allocator.allocScattered(1);
      if (!r.ok) return GNTST.no_space;
      f = r.value[0] as Mfn;
      mem.fill(mem.frameAddr(f), hv.pageSize, 0);
      hv.frameTable.assign(f, d.domid, FRAME_TYPE.grantTable, pfn as Pfn);
      d.owned.add(f);
      d.grantFrames.push(f);
      d.p2m.set(pfn as Pfn, f, true, false);
    } else {
      const cur = d.p2m.get(pfn as Pfn);
      if (!(cur.present && cur.mfn === f)) return GNTST.bad_virt_addr; // frame i already lives elsewhere
    }
    mem.setU32((buf + nr * 4 + i * 4) as MachineAddr, d.model === 'p2m' ? f : 0xffffffff);
  }
  return GNTST.okay;
}

function querySize(hv: Hypervisor, d: Domain, off: number): number {
  const a = hv.hcbuf(d, off, GNTTAB_QUERY_SIZE.SIZE);
  if (a === undefined) return -XEN_ERRNO.EFAULT;
  const mem = hv.mem;
  const dom = mem.getU16((a + GNTTAB_QUERY_SIZE.dom) as MachineAddr);
  const t = dom === DOMID_SELF || dom === d.domid ? d : d.spec.privileged ? hv.domain(dom) : undefined;
  if (t === undefined) { mem.setI16((a + GNTTAB_QUERY_SIZE.status) as MachineAddr, GNTST.bad_domain); return 0; }
  mem.setU32((a + GNTTAB_QUERY_SIZE.nr_frames) as MachineAddr, t.grantFrames.length);
  mem.setU32((a + GNTTAB_QUERY_SIZE.max_nr_frames) as MachineAddr, t.spec.maxGrantFrames);
  mem.setI16((a + GNTTAB_QUERY_SIZE.status) as MachineAddr, GNTST.okay);
  return 0;
}

/** HYPERVISOR_grant_table_op(cmd, buffer offset, count): 0, a GNTST status, or -errno. */
export function grantTableOp(hv: Hypervisor, d: Domain, cmd: number, off: number, count: number): number {
  const each = (size: number, fn: (a: MachineAddr) => void): number => {
    if (!(Number.isInteger(count) && count >= 0)) return -XEN_ERRNO.EINVAL;
    const buf = hv.hcbuf(d, off, size * count);
    if (buf === undefined) return -XEN_ERRNO.EFAULT;
    for (let i = 0; i < count; i++) fn((buf + i * size) as MachineAddr);
    return 0;
  };
  switch (cmd) {
    case GNTTABOP.map_grant_ref:
      return each(GNTTAB_MAP.SIZE, (a) => mapOne(hv, d, a));
    case GNTTABOP.unmap_grant_ref:
      return each(GNTTAB_UNMAP.SIZE, (a) => unmapOne(hv, d, a));
    case GNTTABOP.copy: {
      let bytes = 0;
      let n = 0;
      const r = each(GNTTAB_COPY.SIZE, (a) => { bytes += copyOne(hv, d, a); n++; });
      stat(hv, d, DCB.statGrantCopies, n);
      stat(hv, d, DCB.statGrantCopyBytes, bytes);
      return r;
    }
    case GNTTABOP.setup_table:
      return setupTable(hv, d, off, count);
    case GNTTABOP.query_size:
      return querySize(hv, d, off);
    case GNTTABOP.get_version:
      return 1;
    case GNTTABOP.set_version:
      return count === 1 ? 0 : -XEN_ERRNO.EOPNOTSUPP; // v1 only
    default:
      return -XEN_ERRNO.ENOSYS;
  }
}
