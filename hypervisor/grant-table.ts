/**
 * Grant tables v1 (xen/common/grant_table.c behaviour, our own code).
 *
 * The granter's table lives in its own frames and is written by the guest
 * (domid and frame first, flags last); the hypervisor reads entries atomically
 * and sets/clears GTF_reading/GTF_writing with compare-exchange, so a guest
 * revoking concurrently either sees the in-use bit and fails, or revokes first
 * and the pin fails. Active entries (pins per kind) and maptrack entries (the
 * mapper's handles) are private to the hypervisor.
 *
 * The batch path allocates nothing per op. A batch's op array is copied once
 * from the caller's hypercall buffer into a private word buffer (as
 * RING_COPY_REQUEST: the guest cannot change an op while we act on it), each
 * op is decoded from there into scalars (64-bit fields as two u32 words), and
 * results go straight to the op's OUT fields. Inside a batch a failure is a
 * GNTST number, never a Result object; active and maptrack entries come from
 * small free pools. A GNTTABOP_copy of a grant nobody holds pinned takes a
 * transient pin, the in-use bits only, without an active entry: nothing else
 * runs in the hypervisor between that pin and its release, so the active
 * entry Xen would make and drop there could not be seen.
 */
import { GNTCOPY, GNTMAP, GNTST, GNTTABOP, GNTTAB_COPY, GNTTAB_COPY_PTR, GNTTAB_MAP, GNTTAB_QUERY_SIZE, GNTTAB_UNMAP, GRANT_ENTRY_V1, GTF, type GntSt } from '../shared/abi/grant.ts';
import { DCB, FRAME_TYPE } from '../shared/abi/machine.ts';
import { P2M } from '../shared/abi/p2m.ts';
import { InvariantError } from '../shared/invariant.ts';
import { XEN_ERRNO } from '../shared/abi/xen.ts';
import { type Result, err, ok } from '../shared/result.ts';
import { DOMID_SELF, type DomId, type MachineAddr, type Mfn, type Pfn } from '../shared/types.ts';
import type { ActiveGrant, Domain, MaptrackEntry } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';

type PinKind = 'hostRo' | 'hostRw' | 'devRo' | 'devRw' | 'copyRo' | 'copyRw';

/** Pin kinds as small integers for the hot path; odd kinds are writable. */
const PIN = { hostRo: 0, hostRw: 1, devRo: 2, devRw: 3, copyRo: 4, copyRw: 5 } as const;
type Pin = (typeof PIN)[keyof typeof PIN];
const pinWrites = (k: Pin): boolean => (k & 1) === 1;
const IN_USE = GTF.reading | GTF.writing;
const TWO32 = 0x1_0000_0000;
/** log2 of GRANT_ENTRY_V1.SIZE (8 bytes). */
const ENTRY_SHIFT = 3;

/** The active entry as this module fills it; Domain's view keeps mfn and grantee read-only. */
type ActiveSlot = { -readonly [K in keyof ActiveGrant]: ActiveGrant[K] };

// ------------------------------------------------------------------ free pools

/** Freed active and maptrack entries, reused so that a map or a first pin allocates nothing. */
const POOL_MAX = 4096;
const activePool: ActiveSlot[] = [];
const maptrackPool: MaptrackEntry[] = [];

function newActive(mfn: Mfn, grantee: DomId): ActiveGrant {
  const a = activePool.pop();
  if (a === undefined) return { mfn, grantee, hostRo: 0, hostRw: 0, devRo: 0, devRw: 0, copyRo: 0, copyRw: 0 };
  a.mfn = mfn; a.grantee = grantee;
  a.hostRo = 0; a.hostRw = 0; a.devRo = 0; a.devRw = 0; a.copyRo = 0; a.copyRw = 0;
  return a;
}
function freeActive(a: ActiveGrant): void { if (activePool.length < POOL_MAX) activePool.push(a as ActiveSlot); }

function newMaptrack(granter: DomId, ref: number, flags: number, hostPfn: number, mfn: Mfn): MaptrackEntry {
  const e = maptrackPool.pop();
  if (e === undefined) return { granter, ref, flags, hostPfn, mfn };
  e.granter = granter; e.ref = ref; e.flags = flags; e.hostPfn = hostPfn; e.mfn = mfn;
  return e;
}

// ------------------------------------------------------ private op-array copy

/**
 * The private copy of the current batch's op array, grown to the largest
 * batch seen (at most a hypercall buffer). One per thread: a batch never
 * nests inside another (a multicall runs its entries one after the other).
 */
let opBytes = new Uint8Array(4096);
let opWords = new Int32Array(opBytes.buffer);

/** [loadOps hv buf bytes] copies the op array at buf into the private words and returns them. */
function loadOps(hv: Hypervisor, buf: MachineAddr, bytes: number): Int32Array {
  if (opBytes.length < bytes) {
    let n = opBytes.length;
    while (n < bytes) n *= 2;
    opBytes = new Uint8Array(n);
    opWords = new Int32Array(opBytes.buffer);
  }
  hv.mem.copyOut(buf, opBytes, 0, bytes);
  return opWords;
}
// Little-endian fields of the private copy (byte offsets: u32 4-aligned, u16 2-aligned, as the layouts are).
function u32(w: Int32Array, at: number): number { return (w[at >> 2] as number) >>> 0; }
function u16(w: Int32Array, at: number): number { return ((w[at >> 2] as number) >>> ((at & 2) << 3)) & 0xffff; }
/** A u64 field as a number: exact below 2^53, correctly rounded above (as Number(bigint)). */
function u64(w: Int32Array, at: number): number { return u32(w, at) + u32(w, at + 4) * TWO32; }
/** Writes v (an integer in [0, 2^53)) as a little-endian u64 at a. */
function setU64(hv: Hypervisor, a: number, v: number): void {
  hv.mem.setU32(a as MachineAddr, v >>> 0);
  hv.mem.setU32((a + 4) as MachineAddr, Math.floor(v / TWO32));
}

// ---------------------------------------------------------------- grant entries

/** [entryAddr hv g ref] is the machine address of g's entry ref, or -1 for a ref beyond the table. */
function entryAddr(hv: Hypervisor, g: Domain, ref: number): number {
  const mem = hv.mem;
  const shift = mem.pageShift - ENTRY_SHIFT; // entries per frame = 2^shift
  if (!(Number.isInteger(ref) && ref >= 0 && ref < g.grantFrames.length << shift)) return -1;
  const f = g.grantFrames[Math.floor(ref / (1 << shift))] as Mfn;
  return mem.frameAddr(f) + (ref % (1 << shift)) * GRANT_ENTRY_V1.SIZE;
}

/**
 * [p2mWord hv d pfn] is the raw P2M entry of an in-range pfn (shared/abi/p2m.ts
 * format), without a decoded object per lookup. A plain load: only the
 * hypervisor (this thread) writes P2M tables, so it always sees its own
 * writes; the atomics are for the domains' MMUs reading from other threads.
 */
function p2mWord(hv: Hypervisor, d: Domain, pfn: number): number {
  return hv.mem.getU32((d.p2m.base + pfn * P2M.ENTRY_BYTES) as MachineAddr);
}

/** [grantFrameToMfn hv g frame] resolves a grant entry's frame field to a RAM frame g owns, or -1. */
function grantFrameToMfn(hv: Hypervisor, g: Domain, frame: number): number {
  let mfn: number;
  if (g.model === 'p2m') mfn = frame; // PV grants name machine frames
  else {
    if (!g.p2m.inRange(frame)) return -1;
    const e = p2mWord(hv, g, frame);
    if ((e & P2M.PRESENT) === 0 || (e & P2M.FOREIGN) !== 0) return -1;
    mfn = e & P2M.MFN_MASK;
  }
  if (!(mfn >= 0 && mfn < hv.mem.frames)) return -1;
  if (hv.frameTable.owner(mfn as Mfn) !== g.domid || hv.frameTable.type(mfn as Mfn) !== FRAME_TYPE.ram) return -1;
  return mfn;
}

function totalPins(a: ActiveGrant): number { return a.hostRo + a.hostRw + a.devRo + a.devRw + a.copyRo + a.copyRw; }
function writePins(a: ActiveGrant): number { return a.hostRw + a.devRw + a.copyRw; }

function addPin(a: ActiveSlot, k: Pin, n: 1 | -1): void {
  switch (k) {
    case PIN.hostRo: a.hostRo += n; break;
    case PIN.hostRw: a.hostRw += n; break;
    case PIN.devRo: a.devRo += n; break;
    case PIN.devRw: a.devRw += n; break;
    case PIN.copyRo: a.copyRo += n; break;
    case PIN.copyRw: a.copyRw += n; break;
  }
}
function pinsOf(a: ActiveGrant, k: Pin): number {
  switch (k) {
    case PIN.hostRo: return a.hostRo;
    case PIN.hostRw: return a.hostRw;
    case PIN.devRo: return a.devRo;
    case PIN.devRw: return a.devRw;
    case PIN.copyRo: return a.copyRo;
    default: return a.copyRw;
  }
}

/**
 * [setInUse hv e grantee write] checks the shared entry at e (a permit_access
 * grant to grantee, writable if write) and sets GTF_reading, plus GTF_writing
 * for write. Returns GNTST_okay or the status to answer.
 */
function setInUse(hv: Hypervisor, e: number, grantee: DomId, write: boolean): GntSt {
  const mem = hv.mem;
  for (let tries = 0; tries < 8; tries++) {
    // The flags (u16) and domid (u16) words are read and updated as one 32-bit
    // value, as Xen does, so the guest cannot change the grantee between check and pin.
    const w = mem.atomicLoad32(e as MachineAddr);
    const flags = w & 0xffff;
    const dom = (w >>> 16) & 0xffff;
    if ((flags & GTF.type_mask) !== GTF.permit_access || dom !== grantee) return GNTST.permission_denied;
    if (write && (flags & GTF.readonly) !== 0) return GNTST.permission_denied;
    const nf = flags | GTF.reading | (write ? GTF.writing : 0);
    if (nf === flags) return GNTST.okay;
    if (mem.atomicCmpxchg32(e as MachineAddr, w, (nf | (dom << 16)) | 0) === w) return GNTST.okay;
  }
  return GNTST.general_error; // the guest kept changing the entry under us
}

/**
 * [acquire hv g ref grantee kind] takes one pin of kind on g's grant ref for
 * grantee, setting GTF_reading (and GTF_writing for writable kinds) in the
 * shared entry. Returns the active entry, or a GNTST status (a number).
 */
function acquire(hv: Hypervisor, g: Domain, ref: number, grantee: DomId, kind: Pin): ActiveGrant | GntSt {
  const e = entryAddr(hv, g, ref);
  if (e < 0) return GNTST.bad_gntref;
  // As Xen's "Bad domain (%d != %d)" check: an entry pinned for one grantee is
  // never pinned by another, whatever the granter has since written in the entry
  // (else that domain would reach the frame pinned for the first one).
  let act = g.active.get(ref);
  if (act !== undefined && act.grantee !== grantee) return GNTST.general_error;
  const st = setInUse(hv, e, grantee, pinWrites(kind));
  if (st !== GNTST.okay) return st;
  if (act === undefined) {
    const mfn = grantFrameToMfn(hv, g, hv.mem.getU32((e + GRANT_ENTRY_V1.frame) as MachineAddr));
    if (mfn < 0) {
      hv.mem.atomicAnd32(e as MachineAddr, ~IN_USE); // nothing else holds it: both bits go
      return GNTST.bad_page;
    }
    act = newActive(mfn as Mfn, grantee);
    g.active.set(ref, act);
  }
  addPin(act as ActiveSlot, kind, 1);
  return act;
}

/** Clears GTF_writing when no writable pin remains and GTF_reading when no pin remains. */
function clearInUse(hv: Hypervisor, g: Domain, ref: number, act: ActiveGrant): void {
  const e = entryAddr(hv, g, ref);
  if (e < 0) return;
  const clear = totalPins(act) === 0 ? IN_USE : writePins(act) === 0 ? GTF.writing : 0;
  if (clear !== 0) hv.mem.atomicAnd32(e as MachineAddr, ~clear); // RMW: only our bits change; the guest's flags and domid stay
}

/** [release hv g ref kind] drops one pin of kind; frees the active entry with the last pin. */
function release(hv: Hypervisor, g: Domain, ref: number, kind: Pin): void {
  const act = g.active.get(ref);
  if (act === undefined || pinsOf(act, kind) <= 0) throw new InvariantError(`unpin of d${g.domid} ref ${ref} (pin kind ${kind}) without a pin`);
  addPin(act as ActiveSlot, kind, -1);
  clearInUse(hv, g, ref, act);
  if (totalPins(act) === 0) {
    g.active.delete(ref);
    const mfn = act.mfn;
    freeActive(act);
    if (g.state === 'zombie') reapZombieFrame(hv, g, mfn);
  }
}

/**
 * [pin hv g ref grantee kind] takes one pin of `kind` on g's grant ref for
 * grantee (see acquire). Returns the active entry or a GNTST status.
 */
export function pin(hv: Hypervisor, g: Domain, ref: number, grantee: DomId, kind: PinKind): Result<ActiveGrant, GntSt> {
  const r = acquire(hv, g, ref, grantee, PIN[kind]);
  return typeof r === 'number' ? err(r) : ok(r);
}

/** [unpin hv g ref kind] drops one pin of kind; frees the active entry with the last pin. */
export function unpin(hv: Hypervisor, g: Domain, ref: number, kind: PinKind): void { release(hv, g, ref, PIN[kind]); }

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

/** One gnttab_map_grant_ref: op's IN fields from the private copy at o, OUT fields written at a. */
function mapOne(hv: Hypervisor, d: Domain, w: Int32Array, o: number, a: number): void {
  const mem = hv.mem;
  const hostAddr = u64(w, o + GNTTAB_MAP.host_addr);
  const flags = u32(w, o + GNTTAB_MAP.flags);
  const ref = u32(w, o + GNTTAB_MAP.ref);
  const dom = u16(w, o + GNTTAB_MAP.dom);
  mem.setU32((a + GNTTAB_MAP.handle) as MachineAddr, 0xffffffff);
  setU64(hv, a + GNTTAB_MAP.dev_bus_addr, 0);
  mem.setI16((a + GNTTAB_MAP.status) as MachineAddr, mapStatus(hv, d, a, hostAddr, flags, ref, dom));
}

/** Does one map; writes handle and dev_bus_addr on success; returns the op's GNTST status. */
function mapStatus(hv: Hypervisor, d: Domain, a: number, hostAddr: number, flags: number, ref: number, dom: number): GntSt {
  const host = (flags & GNTMAP.host_map) !== 0;
  const dev = (flags & GNTMAP.device_map) !== 0;
  const ro = (flags & GNTMAP.readonly) !== 0;
  if (!host && !dev) return GNTST.bad_gntref; // Xen: "Bad flags in grant map op"
  const g = hv.domain(dom === DOMID_SELF ? d.domid : dom);
  if (g === undefined || !g.alive) return GNTST.bad_domain;
  if (d.maptrackInUse >= d.spec.maxMaptrack) return GNTST.no_space;
  let pfn = -1;
  if (host) {
    pfn = hostAddr / hv.pageSize;
    if (!Number.isInteger(pfn) || !d.p2m.inRange(pfn) || (p2mWord(hv, d, pfn) & P2M.PRESENT) !== 0) return GNTST.bad_virt_addr;
  }
  const hostKind: Pin = ro ? PIN.hostRo : PIN.hostRw;
  let act: ActiveGrant | GntSt = GNTST.general_error;
  if (host) {
    act = acquire(hv, g, ref, d.domid, hostKind);
    if (typeof act === 'number') return act;
  }
  if (dev) {
    act = acquire(hv, g, ref, d.domid, ro ? PIN.devRo : PIN.devRw);
    if (typeof act === 'number') {
      if (host) release(hv, g, ref, hostKind); // XSA-361: unwind what this element took
      return act;
    }
  }
  if (typeof act === 'number') throw new InvariantError('a map with host or device flags took no pin');
  if (host) {
    d.p2m.set(pfn as Pfn, act.mfn, !ro, true);
    hv.frameTable.addMap(act.mfn, 1);
  }
  const handle = d.maptrackFree.pop() ?? d.maptrack.length;
  d.maptrack[handle] = newMaptrack(g.domid, ref, flags & (GNTMAP.host_map | GNTMAP.device_map | GNTMAP.readonly), pfn, act.mfn);
  d.maptrackInUse++;
  hv.iommu.grantMapped(d, act.mfn, !ro); // strict IOMMU contexts of the mapper follow its grant maps
  hv.mem.setU32((a + GNTTAB_MAP.handle) as MachineAddr, handle);
  // The bus address: identity (bus = machine) for device maps and for PV mappers, who need the MFN.
  if (dev || d.model === 'p2m') setU64(hv, a + GNTTAB_MAP.dev_bus_addr, act.mfn * hv.pageSize);
  return GNTST.okay; // statGrantMaps: counted per batch (maptrack entries gained)
}

/** [unmapHandle hv d handle dropHost dropDev] removes (part of) a mapping; returns a GNTST status. */
export function unmapHandle(hv: Hypervisor, d: Domain, handle: number, dropHost: boolean, dropDev: boolean): GntSt {
  const before = d.maptrackInUse;
  const st = dropMapping(hv, d, handle, dropHost, dropDev);
  if (d.maptrackInUse !== before) stat(hv, d, DCB.statGrantUnmaps);
  return st;
}

/** unmapHandle without the statistics (a batch counts its unmaps once). */
function dropMapping(hv: Hypervisor, d: Domain, handle: number, dropHost: boolean, dropDev: boolean): GntSt {
  const e = d.maptrack[handle];
  if (e === undefined) return GNTST.bad_handle;
  const g = hv.domain(e.granter);
  const ro = (e.flags & GNTMAP.readonly) !== 0;
  if (dropHost && (e.flags & GNTMAP.host_map) !== 0) {
    d.p2m.clear(e.hostPfn as Pfn);
    hv.frameTable.addMap(e.mfn, -1);
    e.flags &= ~GNTMAP.host_map;
    e.hostPfn = -1;
    if (g !== undefined) release(hv, g, e.ref, ro ? PIN.hostRo : PIN.hostRw);
  }
  if (dropDev && (e.flags & GNTMAP.device_map) !== 0) {
    e.flags &= ~GNTMAP.device_map;
    if (g !== undefined) release(hv, g, e.ref, ro ? PIN.devRo : PIN.devRw);
  }
  if ((e.flags & (GNTMAP.host_map | GNTMAP.device_map)) === 0) {
    hv.iommu.grantUnmapped(d, e.mfn);
    d.maptrack[handle] = undefined;
    d.maptrackFree.push(handle);
    d.maptrackInUse--;
    if (maptrackPool.length < POOL_MAX) maptrackPool.push(e);
  }
  return GNTST.okay;
}

/** One gnttab_unmap_grant_ref: IN fields from the private copy at o, status written at a. */
function unmapOne(hv: Hypervisor, d: Domain, w: Int32Array, o: number, a: number): void {
  const hostAddr = u64(w, o + GNTTAB_UNMAP.host_addr);
  const devAddr = u64(w, o + GNTTAB_UNMAP.dev_bus_addr);
  const handle = u32(w, o + GNTTAB_UNMAP.handle);
  hv.mem.setI16((a + GNTTAB_UNMAP.status) as MachineAddr, unmapStatus(hv, d, hostAddr, devAddr, handle));
}

function unmapStatus(hv: Hypervisor, d: Domain, hostAddr: number, devAddr: number, handle: number): GntSt {
  const e = d.maptrack[handle];
  if (e === undefined) return GNTST.bad_handle;
  if (hostAddr === 0 && devAddr === 0) return GNTST.general_error;
  if (hostAddr !== 0 && ((e.flags & GNTMAP.host_map) === 0 || hostAddr !== e.hostPfn * hv.pageSize)) return GNTST.bad_virt_addr;
  if (devAddr !== 0 && ((e.flags & GNTMAP.device_map) === 0 || devAddr !== e.mfn * hv.pageSize)) return GNTST.bad_dev_addr;
  return dropMapping(hv, d, handle, hostAddr !== 0, devAddr !== 0);
}

/** When a mapper dies, every mapping it holds is released (gnttab_release_mappings). */
export function releaseMapperGrants(hv: Hypervisor, d: Domain): void {
  for (let h = 0; h < d.maptrack.length; h++) if (d.maptrack[h] !== undefined) unmapHandle(hv, d, h, true, true);
}

// ------------------------------------------------------------------------ copy

/**
 * One side of a grant copy once acquired. How it is held: 'none' (the
 * caller's own frame), 'pin' (a copy pin on the granter's active entry, which
 * existed because the grant is mapped), or 'transient' (the in-use bits only,
 * set at `entry`; no active entry exists).
 */
interface CopySide {
  mfn: number;
  offset: number;
  hold: 'none' | 'pin' | 'transient';
  granter: Domain | undefined;
  ref: number;
  kind: Pin;
  entry: number;
}
const newSide = (): CopySide => ({ mfn: 0, offset: 0, hold: 'none', granter: undefined, ref: 0, kind: PIN.copyRo, entry: 0 });
/** The two sides of the op in progress (one op at a time per thread). */
const SRC = newSide();
const DST = newSide();

/**
 * [acquireSide hv d w o isGref write side other] decodes and acquires one
 * gnttab_copy_ptr (private copy at o) into side; returns a GNTST status. other
 * is the side already held (for the destination: the source), so that a copy
 * within one grant pins it once more instead of resolving its frame again.
 */
function acquireSide(hv: Hypervisor, d: Domain, w: Int32Array, o: number, isGref: boolean, write: boolean, side: CopySide, other: CopySide | undefined): GntSt {
  const domid = u16(w, o + GNTTAB_COPY_PTR.domid);
  side.offset = u16(w, o + GNTTAB_COPY_PTR.offset);
  side.hold = 'none';
  side.granter = undefined;
  if (isGref) {
    const ref = u32(w, o + GNTTAB_COPY_PTR.u);
    const g = hv.domain(domid === DOMID_SELF ? d.domid : domid);
    if (g === undefined || !g.alive) return GNTST.bad_domain;
    const kind: Pin = write ? PIN.copyRw : PIN.copyRo;
    if (g.active.has(ref)) {
      const r = acquire(hv, g, ref, d.domid, kind);
      if (typeof r === 'number') return r;
      side.mfn = r.mfn;
      side.hold = 'pin';
    } else {
      const e = entryAddr(hv, g, ref);
      if (e < 0) return GNTST.bad_gntref;
      const st = setInUse(hv, e, d.domid, write);
      if (st !== GNTST.okay) return st;
      if (other !== undefined && other.hold === 'transient' && other.granter === g && other.ref === ref) {
        side.mfn = other.mfn; // the first pin's frame, as Xen's second pin finds it in the active entry
      } else {
        const mfn = grantFrameToMfn(hv, g, hv.mem.getU32((e + GRANT_ENTRY_V1.frame) as MachineAddr));
        if (mfn < 0) {
          hv.mem.atomicAnd32(e as MachineAddr, ~IN_USE);
          return GNTST.bad_page;
        }
        side.mfn = mfn;
      }
      side.hold = 'transient';
      side.entry = e;
    }
    side.granter = g;
    side.ref = ref;
    side.kind = kind;
    return GNTST.okay;
  }
  // Not a grant: the caller's own frame (a GFN, or an MFN for PV callers).
  if (domid !== DOMID_SELF && domid !== d.domid) return GNTST.permission_denied;
  const gmfn = u64(w, o + GNTTAB_COPY_PTR.u);
  let mfn = -1;
  if (d.model === 'p2m') mfn = gmfn;
  else if (d.p2m.inRange(gmfn)) {
    const e = p2mWord(hv, d, gmfn);
    if ((e & P2M.PRESENT) !== 0 && (e & P2M.FOREIGN) === 0 && (!write || (e & P2M.WRITABLE) !== 0)) mfn = e & P2M.MFN_MASK;
  }
  if (!(mfn >= 0 && mfn < hv.mem.frames) || hv.frameTable.owner(mfn as Mfn) !== d.domid) return GNTST.bad_page;
  side.mfn = mfn;
  return GNTST.okay;
}

function releaseSide(hv: Hypervisor, s: CopySide): void {
  if (s.granter === undefined) return;
  // A transient pin was the only one (no active entry): both in-use bits go.
  if (s.hold === 'transient') hv.mem.atomicAnd32(s.entry as MachineAddr, ~IN_USE);
  else if (s.hold === 'pin') release(hv, s.granter, s.ref, s.kind);
  s.granter = undefined;
  s.hold = 'none';
}

/** One gnttab_copy (private copy at o, status written at a); returns the bytes copied. */
function copyOne(hv: Hypervisor, d: Domain, w: Int32Array, o: number, a: number): number {
  const len = u16(w, o + GNTTAB_COPY.len);
  const flags = u16(w, o + GNTTAB_COPY.flags);
  const st = copyStatus(hv, d, w, o, len, flags);
  hv.mem.setI16((a + GNTTAB_COPY.status) as MachineAddr, st);
  return st === GNTST.okay ? len : 0;
}

function copyStatus(hv: Hypervisor, d: Domain, w: Int32Array, o: number, len: number, flags: number): GntSt {
  let st = acquireSide(hv, d, w, o + GNTTAB_COPY.source, (flags & GNTCOPY.source_gref) !== 0, false, SRC, undefined);
  if (st !== GNTST.okay) return st;
  st = acquireSide(hv, d, w, o + GNTTAB_COPY.dest, (flags & GNTCOPY.dest_gref) !== 0, true, DST, SRC);
  if (st !== GNTST.okay) { releaseSide(hv, SRC); return st; }
  const ps = hv.pageSize;
  if (SRC.offset + len > ps || DST.offset + len > ps) {
    releaseSide(hv, SRC); releaseSide(hv, DST);
    return GNTST.bad_copy_arg;
  }
  const mem = hv.mem;
  mem.copy((mem.frameAddr(DST.mfn as Mfn) + DST.offset) as MachineAddr, (mem.frameAddr(SRC.mfn as Mfn) + SRC.offset) as MachineAddr, len);
  releaseSide(hv, SRC); releaseSide(hv, DST);
  return GNTST.okay;
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

/**
 * [opArray hv d off count size] is the machine address of count ops of size
 * bytes at off in d's hypercall buffer, or -EINVAL / -EFAULT.
 */
function opArray(hv: Hypervisor, d: Domain, off: number, count: number, size: number): number {
  if (!(Number.isInteger(count) && count >= 0)) return -XEN_ERRNO.EINVAL;
  const buf = hv.hcbuf(d, off, size * count);
  return buf === undefined ? -XEN_ERRNO.EFAULT : buf;
}

/** HYPERVISOR_grant_table_op(cmd, buffer offset, count): 0, a GNTST status, or -errno. */
export function grantTableOp(hv: Hypervisor, d: Domain, cmd: number, off: number, count: number): number {
  switch (cmd) {
    case GNTTABOP.map_grant_ref: {
      const buf = opArray(hv, d, off, count, GNTTAB_MAP.SIZE);
      if (buf < 0) return buf;
      const w = loadOps(hv, buf as MachineAddr, count * GNTTAB_MAP.SIZE);
      const before = d.maptrackInUse;
      for (let i = 0, o = 0; i < count; i++, o += GNTTAB_MAP.SIZE) mapOne(hv, d, w, o, buf + o);
      // Each successful map takes exactly one maptrack entry: one counter update per batch.
      if (d.maptrackInUse !== before) stat(hv, d, DCB.statGrantMaps, d.maptrackInUse - before);
      return 0;
    }
    case GNTTABOP.unmap_grant_ref: {
      const buf = opArray(hv, d, off, count, GNTTAB_UNMAP.SIZE);
      if (buf < 0) return buf;
      const w = loadOps(hv, buf as MachineAddr, count * GNTTAB_UNMAP.SIZE);
      const before = d.maptrackInUse;
      for (let i = 0, o = 0; i < count; i++, o += GNTTAB_UNMAP.SIZE) unmapOne(hv, d, w, o, buf + o);
      // Each mapping removed whole frees exactly one maptrack entry.
      if (d.maptrackInUse !== before) stat(hv, d, DCB.statGrantUnmaps, before - d.maptrackInUse);
      return 0;
    }
    case GNTTABOP.copy: {
      const buf = opArray(hv, d, off, count, GNTTAB_COPY.SIZE);
      if (buf < 0) return buf;
      const w = loadOps(hv, buf as MachineAddr, count * GNTTAB_COPY.SIZE);
      let bytes = 0;
      for (let i = 0, o = 0; i < count; i++, o += GNTTAB_COPY.SIZE) bytes += copyOne(hv, d, w, o, buf + o);
      stat(hv, d, DCB.statGrantCopies, count);
      stat(hv, d, DCB.statGrantCopyBytes, bytes);
      return 0;
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
