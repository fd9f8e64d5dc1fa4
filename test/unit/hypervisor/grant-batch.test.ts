/**
 * The batch paths of the grant table after their rework (one private copy of
 * the op array, scalars per op, status codes inside the batch, transient copy
 * pins, pooled entries): each op of a batch stands alone exactly as in Xen —
 * one bad op among 64 gets its own GNTST status and the other 63 complete —
 * and the edges the rework touched (a copy within one grant, a copy of a
 * mapped grant, unaligned op arrays, 64-bit fields read as two words, the
 * multicall's signed arguments) behave as before.
 */
import { expect } from 'chai';
import { GNTCOPY, GNTMAP, GNTST, GNTTABOP, GNTTAB_COPY, GNTTAB_COPY_PTR, GNTTAB_MAP, GNTTAB_UNMAP, GTF } from '../../../shared/abi/grant.ts';
import { DCB } from '../../../shared/abi/machine.ts';
import { HYPERVISOR, XEN_ERRNO } from '../../../shared/abi/xen.ts';
import { MULTICALL_ENTRY } from '../../../hypervisor/multicall.ts';
import { testMachine, type TestMachine } from '../../helpers/machine.ts';
import type { DomainKernel } from '../../../shared/kernel/kernel.ts';
import type { Hypervisor } from '../../../hypervisor/hypervisor.ts';
import { asDomId, DOMID_SELF, type Gref, type Pfn } from '../../../shared/types.ts';

interface World { m: TestMachine; hv: Hypervisor; d0: DomainKernel; u: DomainKernel }
function world(): World {
  const m = testMachine(32 << 20);
  const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 4096, model: 'pm', privileged: true }, { grantFrames: 1 });
  const u = m.domain({ name: 'guest', memoryKiB: 2048, model: 'vp' }, { grantFrames: 1 });
  return { m, hv: m.hv, d0, u };
}

function grantPage(u: DomainKernel, grantee: number, readonly: boolean, tag: number): { pfn: Pfn; ref: Gref } {
  const pfn = u.ram.alloc();
  u.mem.fill(u.gpa(pfn), u.pageSize, tag);
  const ref = u.gnttab.grantForeignAccess(asDomId(grantee), pfn, readonly);
  if (ref === undefined) throw new Error('grant table full');
  return { pfn, ref };
}

const inUse = (k: DomainKernel, ref: Gref): number => k.gnttab.flags(ref) & (GTF.reading | GTF.writing);
const stat = (hv: Hypervisor, k: DomainKernel, f: number): number => hv.mem.atomicLoad32(hv.layout.dcbField(k.boot.slot, f));
function expectReconciled(hv: Hypervisor): void {
  const r = hv.reconcile();
  expect(r.ok, JSON.stringify(r)).to.equal(true);
}

/** A u64 as two u32 stores (lo, hi), so tests can set the high word independently. */
function put64(k: DomainKernel, off: number, lo: number, hi = 0): void {
  k.hc.buf.setU32(off, lo >>> 0);
  k.hc.buf.setU32(off + 4, hi >>> 0);
}

interface Side { gref?: number; gmfn?: number; hi?: number; domid: number; offset: number }
interface CopyOp { src: Side; dst: Side; len: number }
/** GNTTABOP_copy of hand-built ops at byte offset `at` of the hypercall buffer; returns each status. */
function rawCopy(k: DomainKernel, ops: readonly CopyOp[], at = 0): number[] {
  const b = k.hc.buf;
  const put = (o: number, s: Side) => {
    put64(k, o + GNTTAB_COPY_PTR.u, s.gref ?? s.gmfn ?? 0, s.hi ?? 0);
    b.setU16(o + GNTTAB_COPY_PTR.domid, s.domid);
    b.setU16(o + GNTTAB_COPY_PTR.offset, s.offset);
  };
  for (let i = 0; i < ops.length; i++) {
    const q = ops[i] as CopyOp;
    const a = at + i * GNTTAB_COPY.SIZE;
    put(a + GNTTAB_COPY.source, q.src);
    put(a + GNTTAB_COPY.dest, q.dst);
    b.setU16(a + GNTTAB_COPY.len, q.len);
    b.setU16(a + GNTTAB_COPY.flags, (q.src.gref !== undefined ? GNTCOPY.source_gref : 0) | (q.dst.gref !== undefined ? GNTCOPY.dest_gref : 0));
    b.setU16(a + GNTTAB_COPY.status, 0x7777); // garbage the hypervisor must overwrite
  }
  expect(k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.copy, at, ops.length)[0]).to.equal(0);
  return ops.map((_q, i) => b.getI16(at + i * GNTTAB_COPY.SIZE + GNTTAB_COPY.status));
}

interface MapOp { hostPfn: number; hi?: number; flags: number; ref: number; dom: number }
interface MapOut { status: number; handle: number; devLo: number; devHi: number }
function rawMap(k: DomainKernel, ops: readonly MapOp[], at = 0): MapOut[] {
  const b = k.hc.buf;
  for (let i = 0; i < ops.length; i++) {
    const q = ops[i] as MapOp;
    const a = at + i * GNTTAB_MAP.SIZE;
    put64(k, a + GNTTAB_MAP.host_addr, q.hostPfn * k.pageSize, q.hi ?? 0);
    b.setU32(a + GNTTAB_MAP.flags, q.flags);
    b.setU32(a + GNTTAB_MAP.ref, q.ref);
    b.setU16(a + GNTTAB_MAP.dom, q.dom);
    b.setU16(a + GNTTAB_MAP.status, 0x7777);
    b.setU32(a + GNTTAB_MAP.handle, 0x1234);
    put64(k, a + GNTTAB_MAP.dev_bus_addr, 0xdead, 0xbeef);
  }
  expect(k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, at, ops.length)[0]).to.equal(0);
  return ops.map((_q, i) => {
    const a = at + i * GNTTAB_MAP.SIZE;
    return { status: b.getI16(a + GNTTAB_MAP.status), handle: b.getU32(a + GNTTAB_MAP.handle), devLo: b.getU32(a + GNTTAB_MAP.dev_bus_addr), devHi: b.getU32(a + GNTTAB_MAP.dev_bus_addr + 4) };
  });
}
function rawUnmap(k: DomainKernel, ops: readonly { handle: number; hostPfn: number }[], at = 0): number[] {
  const b = k.hc.buf;
  for (let i = 0; i < ops.length; i++) {
    const q = ops[i] as { handle: number; hostPfn: number };
    const a = at + i * GNTTAB_UNMAP.SIZE;
    put64(k, a + GNTTAB_UNMAP.host_addr, q.hostPfn * k.pageSize);
    put64(k, a + GNTTAB_UNMAP.dev_bus_addr, 0);
    b.setU32(a + GNTTAB_UNMAP.handle, q.handle);
    b.setU16(a + GNTTAB_UNMAP.status, 0x7777);
  }
  expect(k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, at, ops.length)[0]).to.equal(0);
  return ops.map((_q, i) => b.getI16(at + i * GNTTAB_UNMAP.SIZE + GNTTAB_UNMAP.status));
}

const HOST = GNTMAP.host_map;
const DEV = GNTMAP.device_map;
const RO = GNTMAP.readonly;

describe('grant batches: one failing op among 64', () => {
  it('answers GNTST_bad_gntref for op 3 of a 64-op GNTTABOP_copy alone and copies the other 63', () => {
    const { hv, d0, u } = world();
    const grants = Array.from({ length: 64 }, (_, i) => grantPage(u, 0, true, i + 1));
    const mine = grants.map(() => d0.ram.alloc());
    const ops: CopyOp[] = grants.map((g, i) => ({
      src: { gref: i === 3 ? u.gnttab.nrEntries + 5 : g.ref, domid: u.domid, offset: 64 * (i % 8) },
      dst: { gmfn: mine[i] as number, domid: DOMID_SELF, offset: 128 }, len: 128,
    }));
    const st = rawCopy(d0, ops);
    expect(st).to.deep.equal(st.map((_s, i) => (i === 3 ? GNTST.bad_gntref : GNTST.okay)));
    for (let i = 0; i < 64; i++) {
      const want = i === 3 ? 0 : i + 1;
      expect(d0.mem.getU8(d0.gpa(mine[i] as Pfn, 128)), `op ${i} first byte`).to.equal(want);
      expect(d0.mem.getU8(d0.gpa(mine[i] as Pfn, 255)), `op ${i} last byte`).to.equal(want);
      expect(d0.mem.getU8(d0.gpa(mine[i] as Pfn, 256)), `op ${i} one past`).to.equal(0);
    }
    for (const g of grants) { expect(hv.domain(u.domid)?.active.get(g.ref)).to.equal(undefined); expect(inUse(u, g.ref)).to.equal(0); }
    expect(stat(hv, d0, DCB.statGrantCopies)).to.equal(64);
    expect(stat(hv, d0, DCB.statGrantCopyBytes)).to.equal(63 * 128);
    expectReconciled(hv);
  });

  it('gives each of several different failures its own status and leaves every other op done', () => {
    const { m, hv, d0, u } = world();
    const crashed = m.domain({ name: 'crashed', memoryKiB: 256, model: 'vp' }, { grantFrames: 1 });
    const cref = grantPage(crashed, 0, false, 9).ref;
    hv.crash(crashed.domid);
    const grants = Array.from({ length: 64 }, (_, i) => grantPage(u, 0, i === 63, i + 1));
    expect(u.gnttab.endForeignAccessRef(grants[17]!.ref)).to.equal(true); // revoked
    const mine = grants.map(() => d0.ram.alloc());
    for (const p of mine) d0.mem.fill(d0.gpa(p), 4096, 0xee);
    const want: number[] = new Array(64).fill(GNTST.okay);
    const ops: CopyOp[] = grants.map((g, i) => {
      // Even ops copy out of the guest, odd ones into it (op 63 into a read-only grant).
      const gside: Side = { gref: g.ref, domid: u.domid, offset: 0 };
      const lside: Side = { gmfn: mine[i] as number, domid: DOMID_SELF, offset: 0 };
      return i % 2 === 0 ? { src: gside, dst: lside, len: 4096 } : { src: lside, dst: gside, len: 4096 };
    });
    ops[3] = { ...ops[3]!, src: { gmfn: mine[3]!, domid: DOMID_SELF, offset: 0 }, dst: { gref: 0xffffffff, domid: u.domid, offset: 0 } };
    want[3] = GNTST.bad_gntref;
    want[17] = GNTST.permission_denied;
    ops[30] = { ...ops[30]!, src: { gref: cref, domid: crashed.domid, offset: 0 } };
    want[30] = GNTST.bad_domain;
    ops[41] = { ...ops[41]!, dst: { gref: grants[41]!.ref, domid: u.domid, offset: 1 } };
    want[41] = GNTST.bad_copy_arg;
    want[63] = GNTST.permission_denied;
    expect(rawCopy(d0, ops)).to.deep.equal(want);
    for (let i = 0; i < 64; i++) {
      const g = grants[i]!;
      const here = i % 2 === 0 ? d0.mem.getU8(d0.gpa(mine[i] as Pfn, 4095)) : u.mem.getU8(u.gpa(g.pfn, 4095));
      const done = want[i] === GNTST.okay;
      const expected = i % 2 === 0 ? (done ? i + 1 : 0xee) : done ? 0xee : i + 1;
      expect(here, `op ${i}`).to.equal(expected);
      expect(inUse(u, g.ref), `ref of op ${i}`).to.equal(0);
      expect(hv.domain(u.domid)?.active.get(g.ref)).to.equal(undefined);
    }
    expect(stat(hv, d0, DCB.statGrantCopyBytes)).to.equal(59 * 4096);
    expectReconciled(hv);
  });

  it('maps the other 63 when op 3 of a 64-op map fails, and unmaps the other 63 when op 3\'s handle is bogus', () => {
    const { hv, d0, u } = world();
    const grants = Array.from({ length: 64 }, (_, i) => grantPage(u, 0, false, i + 1));
    expect(u.gnttab.endForeignAccessRef(grants[3]!.ref)).to.equal(true);
    const hosts = grants.map(() => d0.ballooned.alloc());
    const res = rawMap(d0, grants.map((g, i) => ({ hostPfn: hosts[i] as number, flags: HOST | (i % 2 === 0 ? RO : 0), ref: g.ref, dom: u.domid })));
    expect(res.map((r) => r.status)).to.deep.equal(res.map((_r, i) => (i === 3 ? GNTST.permission_denied : GNTST.okay)));
    expect(res[3]!.handle).to.equal(0xffffffff);
    expect([res[3]!.devLo, res[3]!.devHi]).to.deep.equal([0, 0]);
    const handles = res.filter((_r, i) => i !== 3).map((r) => r.handle);
    expect(new Set(handles).size).to.equal(63);
    expect(hv.domain(0)?.maptrackInUse).to.equal(63);
    for (let i = 0; i < 64; i++) {
      const g = grants[i]!;
      if (i === 3) { expect(inUse(u, g.ref)).to.equal(0); continue; }
      expect(d0.mem.getU8(d0.gpa(hosts[i] as Pfn, 100)), `map ${i}`).to.equal(i + 1);
      expect(inUse(u, g.ref), `ref ${i}`).to.equal(i % 2 === 0 ? GTF.reading : GTF.reading | GTF.writing);
    }
    expectReconciled(hv);
    const st = rawUnmap(d0, res.map((r, i) => ({ handle: i === 3 ? 0xfffffff0 : r.handle, hostPfn: hosts[i] as number })));
    expect(st).to.deep.equal(st.map((_s, i) => (i === 3 ? GNTST.bad_handle : GNTST.okay)));
    expect(hv.domain(0)?.maptrackInUse).to.equal(0);
    for (const g of grants) { expect(inUse(u, g.ref)).to.equal(0); expect(hv.domain(u.domid)?.active.get(g.ref)).to.equal(undefined); }
    expect(stat(hv, d0, DCB.statGrantMaps)).to.equal(63);
    expect(stat(hv, d0, DCB.statGrantUnmaps)).to.equal(63);
    expectReconciled(hv);
    // Entries freed by the unmaps are reused by the next maps with nothing stale in them.
    const again = rawMap(d0, [{ hostPfn: hosts[0] as number, flags: DEV | RO, ref: grants[0]!.ref, dom: u.domid }]);
    expect(again[0]?.status).to.equal(GNTST.okay);
    const e = hv.domain(0)?.maptrack[again[0]!.handle];
    expect(e).to.deep.include({ granter: u.domid, ref: grants[0]!.ref, flags: DEV | RO, hostPfn: -1 });
    const a = hv.domain(u.domid)?.active.get(grants[0]!.ref);
    expect(a).to.deep.include({ grantee: 0, hostRo: 0, hostRw: 0, devRo: 1, devRw: 0, copyRo: 0, copyRw: 0 });
    expectReconciled(hv);
  });
});

describe('grant copy edges', () => {
  it('copies within one grant at overlapping offsets as memmove, leaving no pin or in-use bit', () => {
    const { hv, d0, u } = world();
    const g = grantPage(u, 0, false, 0);
    for (let i = 0; i < 256; i++) u.mem.setU8(u.gpa(g.pfn, i), i);
    const st = rawCopy(d0, [
      { src: { gref: g.ref, domid: u.domid, offset: 0 }, dst: { gref: g.ref, domid: u.domid, offset: 16 }, len: 64 },
    ]);
    expect(st).to.deep.equal([GNTST.okay]);
    for (let i = 0; i < 64; i++) expect(u.mem.getU8(u.gpa(g.pfn, 16 + i))).to.equal(i);
    expect(u.mem.getU8(u.gpa(g.pfn, 80))).to.equal(80);
    expect(inUse(u, g.ref)).to.equal(0);
    expect(hv.domain(u.domid)?.active.get(g.ref)).to.equal(undefined);
    // The same within a read-only grant: the writable half is refused and the read pin undone.
    const ro = grantPage(u, 0, true, 7);
    expect(rawCopy(d0, [{ src: { gref: ro.ref, domid: u.domid, offset: 0 }, dst: { gref: ro.ref, domid: u.domid, offset: 8 }, len: 4 }])).to.deep.equal([GNTST.permission_denied]);
    expect(inUse(u, ro.ref)).to.equal(0);
    expect(u.gnttab.endForeignAccessRef(g.ref)).to.equal(true);
    expect(u.gnttab.endForeignAccessRef(ro.ref)).to.equal(true);
    expectReconciled(hv);
  });

  it('counts a copy of a mapped grant against the mapping\'s active entry, and leaves only the mapping\'s bits', () => {
    const { hv, d0, u } = world();
    const g = grantPage(u, 0, false, 0x42);
    const host = d0.ballooned.alloc();
    const [r] = rawMap(d0, [{ hostPfn: host, flags: HOST | RO, ref: g.ref, dom: u.domid }]);
    expect(r?.status).to.equal(GNTST.okay);
    const act = hv.domain(u.domid)?.active.get(g.ref);
    const mine = d0.ram.alloc();
    d0.mem.fill(d0.gpa(mine), 4096, 0x24);
    const st = rawCopy(d0, [
      { src: { gref: g.ref, domid: u.domid, offset: 0 }, dst: { gmfn: mine, domid: DOMID_SELF, offset: 0 }, len: 8 },
      { src: { gmfn: mine, domid: DOMID_SELF, offset: 100 }, dst: { gref: g.ref, domid: u.domid, offset: 200 }, len: 8 },
    ]);
    expect(st).to.deep.equal([GNTST.okay, GNTST.okay]);
    expect(d0.mem.getU8(d0.gpa(mine, 0))).to.equal(0x42);
    expect(u.mem.getU8(u.gpa(g.pfn, 200))).to.equal(0x24);
    // The mapping's pin and GTF_reading stay; the copy's GTF_writing went with its pin.
    expect(hv.domain(u.domid)?.active.get(g.ref)).to.equal(act);
    expect(act).to.deep.include({ hostRo: 1, copyRo: 0, copyRw: 0 });
    expect(inUse(u, g.ref)).to.equal(GTF.reading);
    expect(u.gnttab.endForeignAccessRef(g.ref)).to.equal(false);
    expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    expect(inUse(u, g.ref)).to.equal(0);
    expectReconciled(hv);
  });

  it('refuses a copy by another domain of a grant pinned for someone else, even after the granter renames it', () => {
    const { m, hv, d0, u } = world();
    const third = m.domain({ name: 'third', memoryKiB: 256, model: 'vp' }, { grantFrames: 1 });
    const g = grantPage(u, 0, false, 1);
    const host = d0.ballooned.alloc();
    const [r] = rawMap(d0, [{ hostPfn: host, flags: HOST, ref: g.ref, dom: u.domid }]);
    u.gnttab.grantForeignAccessRef(g.ref, asDomId(third.domid), u.ram.alloc(), false);
    const tmine = third.ram.alloc();
    expect(rawCopy(third, [{ src: { gref: g.ref, domid: u.domid, offset: 0 }, dst: { gmfn: tmine, domid: DOMID_SELF, offset: 0 }, len: 4 }])).to.deep.equal([GNTST.general_error]);
    expect(hv.domain(u.domid)?.active.get(g.ref)).to.deep.include({ grantee: 0, hostRw: 1, copyRo: 0 });
    expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    // Unpinned now, the renamed grant is third's to copy.
    expect(rawCopy(third, [{ src: { gref: g.ref, domid: u.domid, offset: 0 }, dst: { gmfn: tmine, domid: DOMID_SELF, offset: 0 }, len: 4 }])).to.deep.equal([GNTST.okay]);
    expectReconciled(hv);
  });
});

describe('grant op arrays as bytes', () => {
  it('decodes op arrays at unaligned offsets of the hypercall buffer', () => {
    const { hv, d0, u } = world();
    const g = grantPage(u, 0, false, 0x5c);
    const mine = d0.ram.alloc();
    expect(rawCopy(d0, [{ src: { gref: g.ref, domid: u.domid, offset: 3 }, dst: { gmfn: mine, domid: DOMID_SELF, offset: 5 }, len: 33 }], 1)).to.deep.equal([GNTST.okay]);
    expect(d0.mem.getU8(d0.gpa(mine, 37))).to.equal(0x5c);
    expect(d0.mem.getU8(d0.gpa(mine, 38))).to.equal(0);
    const host = d0.ballooned.alloc();
    const [r] = rawMap(d0, [{ hostPfn: host, flags: HOST, ref: g.ref, dom: u.domid }], 6);
    expect(r?.status).to.equal(GNTST.okay);
    expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: host }], 3)).to.deep.equal([GNTST.okay]);
    expectReconciled(hv);
  });

  it('reads 64-bit fields whole: a high word refuses an address or frame, but not a ref, and dev_bus_addr is mfn x page size', () => {
    const { hv, d0, u } = world();
    const g = grantPage(u, 0, false, 0x3d);
    const mine = d0.ram.alloc();
    const st = rawCopy(d0, [
      // The local frame with a high word: a frame number far beyond memory.
      { src: { gref: g.ref, domid: u.domid, offset: 0 }, dst: { gmfn: mine, hi: 1, domid: DOMID_SELF, offset: 0 }, len: 4 },
      // A grant ref is a u32: Xen reads only the low word of the union.
      { src: { gref: g.ref, hi: 0xabcd, domid: u.domid, offset: 0 }, dst: { gmfn: mine, domid: DOMID_SELF, offset: 0 }, len: 4 },
    ]);
    expect(st).to.deep.equal([GNTST.bad_page, GNTST.okay]);
    expect(d0.mem.getU8(d0.gpa(mine, 3))).to.equal(0x3d);
    const host = d0.ballooned.alloc();
    const res = rawMap(d0, [
      { hostPfn: host, hi: 1, flags: HOST, ref: g.ref, dom: u.domid },
      { hostPfn: host, flags: HOST | DEV, ref: g.ref, dom: u.domid },
    ]);
    expect(res.map((r) => r.status)).to.deep.equal([GNTST.bad_virt_addr, GNTST.okay]);
    const mfn = hv.domain(u.domid)!.p2m.lookup(g.pfn)!;
    const bus = mfn * 4096;
    expect([res[1]!.devLo, res[1]!.devHi]).to.deep.equal([bus >>> 0, Math.floor(bus / 2 ** 32)]);
    const b = d0.hc.buf;
    put64(d0, GNTTAB_UNMAP.host_addr, host * 4096);
    put64(d0, GNTTAB_UNMAP.dev_bus_addr, res[1]!.devLo, 1); // the right low word, a wrong high word
    b.setU32(GNTTAB_UNMAP.handle, res[1]!.handle);
    expect(d0.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, 0, 1)[0]).to.equal(0);
    expect(b.getI16(GNTTAB_UNMAP.status)).to.equal(GNTST.bad_dev_addr);
    put64(d0, GNTTAB_UNMAP.dev_bus_addr, res[1]!.devLo, res[1]!.devHi);
    expect(d0.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, 0, 1)[0]).to.equal(0);
    expect(b.getI16(GNTTAB_UNMAP.status)).to.equal(GNTST.okay);
    expectReconciled(hv);
  });

  it('passes a multicall entry\'s 64-bit signed arguments and writes a negative result as a two\'s-complement u64', () => {
    const { d0 } = world();
    const b = d0.hc.buf;
    const entry = (i: number, op: number, opHi: number, args: [number, number][]) => {
      const e = i * MULTICALL_ENTRY.SIZE;
      put64(d0, e + MULTICALL_ENTRY.op, op, opHi);
      put64(d0, e + MULTICALL_ENTRY.result, 0x1111, 0x2222);
      for (let k = 0; k < 6; k++) put64(d0, e + MULTICALL_ENTRY.args + k * 8, args[k]?.[0] ?? 0, args[k]?.[1] ?? 0);
    };
    entry(0, HYPERVISOR.grant_table_op, 0, [[GNTTABOP.copy, 0], [1024, 0], [0xffffffff, 0xffffffff]]); // count -1
    entry(1, HYPERVISOR.grant_table_op, 1, []); // op beyond 2^32
    entry(2, HYPERVISOR.grant_table_op, 0, [[GNTTABOP.get_version, 0]]);
    expect(d0.hc.call(HYPERVISOR.multicall, 0, 3)[0]).to.equal(0);
    const res = (i: number) => [b.getU32(i * MULTICALL_ENTRY.SIZE + MULTICALL_ENTRY.result), b.getU32(i * MULTICALL_ENTRY.SIZE + MULTICALL_ENTRY.result + 4)];
    expect(res(0)).to.deep.equal([(-XEN_ERRNO.EINVAL) >>> 0, 0xffffffff]);
    expect(res(1)).to.deep.equal([(-XEN_ERRNO.ENOSYS) >>> 0, 0xffffffff]);
    expect(res(2)).to.deep.equal([1, 0]);
  });

  it('takes each DirectHypercaller argument as a u32, as the mailbox carries it', () => {
    const { d0 } = world();
    // -1 becomes 0xffffffff: an offset beyond the buffer, not a negative one.
    expect(d0.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.copy, -1, 1)[0]).to.equal(-XEN_ERRNO.EFAULT);
    expect(d0.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.get_version, 0, 0)[0]).to.equal(1);
  });
});
