import { expect } from 'chai';
import { GNTCOPY, GNTMAP, GNTST, GNTTABOP, GNTTAB_COPY, GNTTAB_COPY_PTR, GNTTAB_MAP, GNTTAB_QUERY_SIZE, GNTTAB_UNMAP, GTF } from '../../../shared/abi/grant.ts';
import { DCB } from '../../../shared/abi/machine.ts';
import { EVTCHNOP } from '../../../shared/abi/evtchn.ts';
import { HYPERVISOR, XEN_ERRNO } from '../../../shared/abi/xen.ts';
import { MULTICALL_ENTRY } from '../../../hypervisor/multicall.ts';
import { GnttabError } from '../../../shared/kernel/gnttab.ts';
import { testMachine, type TestMachine } from '../../helpers/machine.ts';
import type { DomainKernel } from '../../../shared/kernel/kernel.ts';
import type { Hypervisor } from '../../../hypervisor/hypervisor.ts';
import { asDomId, asGref, DOMID_SELF, type Gref, type Mfn, type Pfn } from '../../../shared/types.ts';

// ---------------------------------------------------------------- helpers

interface RawMapOp { hostPfn?: number; hostAddr?: bigint; flags: number; ref: number; dom: number }
interface RawMapResult { status: number; handle: number; dev: bigint }

/** GNTTABOP_map_grant_ref with hand-built elements (any flags, any address). */
function rawMap(k: DomainKernel, ops: readonly RawMapOp[]): RawMapResult[] {
  const b = k.hc.buf;
  ops.forEach((o, i) => {
    const a = i * GNTTAB_MAP.SIZE;
    b.setU64(a + GNTTAB_MAP.host_addr, o.hostAddr ?? BigInt(o.hostPfn ?? 0) * BigInt(k.pageSize));
    b.setU32(a + GNTTAB_MAP.flags, o.flags);
    b.setU32(a + GNTTAB_MAP.ref, o.ref);
    b.setU16(a + GNTTAB_MAP.dom, o.dom);
    b.setU16(a + GNTTAB_MAP.status, 0x7777); // garbage the hypervisor must overwrite
    b.setU32(a + GNTTAB_MAP.handle, 0x1234);
  });
  const [r] = k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, 0, ops.length);
  expect(r).to.equal(0);
  return ops.map((_o, i) => ({
    status: b.getI16(i * GNTTAB_MAP.SIZE + GNTTAB_MAP.status),
    handle: b.getU32(i * GNTTAB_MAP.SIZE + GNTTAB_MAP.handle),
    dev: b.getU64(i * GNTTAB_MAP.SIZE + GNTTAB_MAP.dev_bus_addr),
  }));
}

interface RawUnmapOp { handle: number; hostPfn?: number; dev?: bigint }
function rawUnmap(k: DomainKernel, ops: readonly RawUnmapOp[]): number[] {
  const b = k.hc.buf;
  ops.forEach((o, i) => {
    const a = i * GNTTAB_UNMAP.SIZE;
    b.setU64(a + GNTTAB_UNMAP.host_addr, o.hostPfn === undefined ? 0n : BigInt(o.hostPfn) * BigInt(k.pageSize));
    b.setU64(a + GNTTAB_UNMAP.dev_bus_addr, o.dev ?? 0n);
    b.setU32(a + GNTTAB_UNMAP.handle, o.handle);
    b.setU16(a + GNTTAB_UNMAP.status, 0x7777);
  });
  const [r] = k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, 0, ops.length);
  expect(r).to.equal(0);
  return ops.map((_o, i) => b.getI16(i * GNTTAB_UNMAP.SIZE + GNTTAB_UNMAP.status));
}

interface Pins { hostRo: number; hostRw: number; devRo: number; devRw: number; copyRo: number; copyRw: number }
function pins(hv: Hypervisor, granter: number, ref: number): Pins | undefined {
  const a = hv.domain(granter)?.active.get(ref);
  if (a === undefined) return undefined;
  return { hostRo: a.hostRo, hostRw: a.hostRw, devRo: a.devRo, devRw: a.devRw, copyRo: a.copyRo, copyRw: a.copyRw };
}
const P0: Pins = { hostRo: 0, hostRw: 0, devRo: 0, devRw: 0, copyRo: 0, copyRw: 0 };
const pin = (p: Partial<Pins>): Pins => ({ ...P0, ...p });

function expectReconciled(hv: Hypervisor): void {
  const r = hv.reconcile();
  expect(r.ok, JSON.stringify(r)).to.equal(true);
}

function inUse(k: DomainKernel, ref: Gref): number { return k.gnttab.flags(ref) & (GTF.reading | GTF.writing); }

function mfnOf(hv: Hypervisor, k: DomainKernel, pfn: Pfn): Mfn {
  const m = hv.domain(k.domid)?.p2m.lookup(pfn);
  if (m === undefined) throw new Error(`pfn ${pfn} of d${k.domid} not present`);
  return m;
}

interface World { m: TestMachine; hv: Hypervisor; d0: DomainKernel; u: DomainKernel }
/** dom0 (pm, privileged) and one vp guest on a 16 MiB machine. */
function world(extra: { maxMaptrack?: number; hvOpts?: Parameters<typeof testMachine>[1] } = {}): World {
  const m = testMachine(16 << 20, extra.hvOpts);
  const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 2048, model: 'pm', privileged: true, maxMaptrack: extra.maxMaptrack }, { grantFrames: 1 });
  const u = m.domain({ name: 'guest', memoryKiB: 1024, model: 'vp' }, { grantFrames: 1 });
  return { m, hv: m.hv, d0, u };
}

/** A page of u granted to grantee, filled with a recognisable pattern. */
function grantPage(u: DomainKernel, grantee: number, readonly: boolean, tag = 0x5a): { pfn: Pfn; ref: Gref } {
  const pfn = u.ram.alloc();
  u.mem.fill(u.gpa(pfn), u.pageSize, tag);
  const ref = u.gnttab.grantForeignAccess(asDomId(grantee), pfn, readonly);
  if (ref === undefined) throw new Error('grant table full');
  return { pfn, ref };
}

const HOST = GNTMAP.host_map;
const DEV = GNTMAP.device_map;
const RO = GNTMAP.readonly;

// ---------------------------------------------------------------- tests

describe('GNTTABOP_map_grant_ref / unmap_grant_ref statuses', () => {
  it('maps a granted page so the mapper reads and writes what the granter sees', () => {
    const { hv, d0, u } = world();
    const { pfn, ref } = grantPage(u, 0, false);
    const host = d0.ballooned.alloc();
    const [r] = rawMap(d0, [{ hostPfn: host, flags: HOST, ref, dom: u.domid }]);
    expect(r?.status).to.equal(GNTST.okay);
    expect(d0.mem.getU8(d0.gpa(host, 77))).to.equal(0x5a);
    d0.mem.setU32(d0.gpa(host, 8), 0xc0ffee);
    expect(u.mem.getU32(u.gpa(pfn, 8))).to.equal(0xc0ffee);
    expect(hv.frameTable.mapcount(mfnOf(hv, u, pfn))).to.equal(1);
    expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ hostRw: 1 }));
    expect(hv.domain(0)?.maptrackInUse).to.equal(1);
    expect(hv.mem.atomicLoad32(hv.layout.dcbField(d0.boot.slot, DCB.statGrantMaps))).to.equal(1);
    expectReconciled(hv);
    expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    expect(pins(hv, u.domid, ref)).to.equal(undefined);
    expect(hv.domain(0)?.maptrackInUse).to.equal(0);
    expect(hv.mem.atomicLoad32(hv.layout.dcbField(d0.boot.slot, DCB.statGrantUnmaps))).to.equal(1);
    expectReconciled(hv);
  });

  it('answers GNTST_bad_gntref for flags with neither host_map nor device_map, and for refs beyond the table', () => {
    const { hv, d0, u } = world();
    const { ref } = grantPage(u, 0, false);
    const nr = u.gnttab.nrEntries;
    const res = rawMap(d0, [
      { hostPfn: d0.ballooned.alloc(), flags: 0, ref, dom: u.domid },
      { hostPfn: d0.ballooned.alloc(), flags: RO, ref, dom: u.domid },
      { hostPfn: d0.ballooned.alloc(), flags: HOST, ref: nr, dom: u.domid },
      { hostPfn: d0.ballooned.alloc(), flags: HOST, ref: 0xffffffff, dom: u.domid },
    ]);
    expect(res.map((r) => r.status)).to.deep.equal([GNTST.bad_gntref, GNTST.bad_gntref, GNTST.bad_gntref, GNTST.bad_gntref]);
    for (const r of res) { expect(r.handle).to.equal(0xffffffff); expect(r.dev).to.equal(0n); }
    expect(inUse(u, ref)).to.equal(0);
    expect(pins(hv, u.domid, ref)).to.equal(undefined);
    expect(hv.domain(0)?.maptrackInUse).to.equal(0);
    expectReconciled(hv);
  });

  it('answers GNTST_bad_domain for a granter that does not exist or is not running', () => {
    const { m, hv, d0, u } = world();
    const { ref } = grantPage(u, 0, false);
    const other = m.domain({ name: 'crashy', memoryKiB: 256, model: 'vp' }, { grantFrames: 1 });
    const oref = grantPage(other, 0, false).ref;
    hv.crash(other.domid);
    const res = rawMap(d0, [
      { hostPfn: d0.ballooned.alloc(), flags: HOST, ref, dom: 4000 },
      { hostPfn: d0.ballooned.alloc(), flags: HOST, ref: oref, dom: other.domid },
    ]);
    expect(res.map((r) => r.status)).to.deep.equal([GNTST.bad_domain, GNTST.bad_domain]);
    expectReconciled(hv);
  });

  it('answers GNTST_permission_denied to a domain the grant does not name, and leaves the entry untouched', () => {
    const { m, hv, u } = world();
    const third = m.domain({ name: 'third', memoryKiB: 256, model: 'vp' }, { grantFrames: 1 });
    const { ref } = grantPage(u, 0, false);
    const before = u.gnttab.flags(ref);
    const [r] = rawMap(third, [{ hostPfn: third.ballooned.alloc(), flags: HOST, ref, dom: u.domid }]);
    expect(r?.status).to.equal(GNTST.permission_denied);
    expect(u.gnttab.flags(ref)).to.equal(before);
    expect(pins(hv, u.domid, ref)).to.equal(undefined);
    expectReconciled(hv);
  });

  it('answers GNTST_permission_denied to a writable map of a read-only grant, while a read-only map works', () => {
    const { hv, d0, u } = world();
    const { ref } = grantPage(u, 0, true);
    const host = d0.ballooned.alloc();
    const res = rawMap(d0, [
      { hostPfn: host, flags: HOST, ref, dom: u.domid },
      { hostPfn: host, flags: HOST | DEV, ref, dom: u.domid },
      { hostPfn: host, flags: DEV, ref, dom: u.domid },
    ]);
    expect(res.map((r) => r.status)).to.deep.equal([GNTST.permission_denied, GNTST.permission_denied, GNTST.permission_denied]);
    expect(inUse(u, ref)).to.equal(0);
    expect(pins(hv, u.domid, ref)).to.equal(undefined);
    const [ok] = rawMap(d0, [{ hostPfn: host, flags: HOST | RO, ref, dom: u.domid }]);
    expect(ok?.status).to.equal(GNTST.okay);
    expect(inUse(u, ref)).to.equal(GTF.reading);
    expect(rawUnmap(d0, [{ handle: ok!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    expectReconciled(hv);
  });

  it('answers GNTST_permission_denied for a revoked grant', () => {
    const { hv, d0, u } = world();
    const { ref } = grantPage(u, 0, false);
    expect(u.gnttab.endForeignAccessRef(ref)).to.equal(true);
    const [r] = rawMap(d0, [{ hostPfn: d0.ballooned.alloc(), flags: HOST, ref, dom: u.domid }]);
    expect(r?.status).to.equal(GNTST.permission_denied);
    expect(u.gnttab.flags(ref)).to.equal(0);
    expectReconciled(hv);
  });

  it('answers GNTST_bad_virt_addr for a populated pfn, an unaligned address, and one beyond the P2M', () => {
    const { hv, d0, u } = world();
    const { pfn, ref } = grantPage(u, 0, false);
    const own = d0.ram.alloc();
    const res = rawMap(d0, [
      { hostPfn: own, flags: HOST, ref, dom: u.domid },
      { hostPfn: d0.boot.sharedInfoPfn, flags: HOST, ref, dom: u.domid },
      { hostPfn: d0.boot.grantPfnBase, flags: HOST, ref, dom: u.domid },
      { hostAddr: BigInt(d0.ballooned.alloc()) * 4096n + 8n, flags: HOST, ref, dom: u.domid },
      { hostPfn: d0.boot.p2mEntries, flags: HOST, ref, dom: u.domid },
      { hostAddr: 0xffff_ffff_ffff_f000n, flags: HOST, ref, dom: u.domid },
    ]);
    expect(res.map((r) => r.status)).to.deep.equal(new Array(6).fill(GNTST.bad_virt_addr));
    expect(inUse(u, ref)).to.equal(0);
    expect(pins(hv, u.domid, ref)).to.equal(undefined);
    // A device-only map needs no host address at all.
    const [dev] = rawMap(d0, [{ flags: DEV, ref, dom: u.domid }]);
    expect(dev?.status).to.equal(GNTST.okay);
    expect(dev?.dev).to.equal(BigInt(mfnOf(hv, u, pfn)) * 4096n);
    expect(rawUnmap(d0, [{ handle: dev!.handle, dev: dev!.dev }])).to.deep.equal([GNTST.okay]);
    expectReconciled(hv);
  });

  it('answers GNTST_bad_handle for unknown handles and for a handle already unmapped', () => {
    const { hv, d0, u } = world();
    const { ref } = grantPage(u, 0, false);
    const host = d0.ballooned.alloc();
    const [r] = rawMap(d0, [{ hostPfn: host, flags: HOST, ref, dom: u.domid }]);
    expect(rawUnmap(d0, [{ handle: 12345, hostPfn: host }, { handle: 0xffffffff, hostPfn: host }])).to.deep.equal([GNTST.bad_handle, GNTST.bad_handle]);
    expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: host }])).to.deep.equal([GNTST.bad_handle]);
    // Handles are the mapper's: the granter cannot unmap the mapper's handle.
    const [again] = rawMap(d0, [{ hostPfn: host, flags: HOST, ref, dom: u.domid }]);
    expect(rawUnmap(u, [{ handle: again!.handle, hostPfn: host }])).to.deep.equal([GNTST.bad_handle]);
    expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ hostRw: 1 }));
    expect(rawUnmap(d0, [{ handle: again!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    expectReconciled(hv);
  });

  it('answers GNTST_bad_virt_addr / bad_dev_addr when the unmap names the wrong address, and changes nothing', () => {
    const { hv, d0, u } = world();
    const { ref } = grantPage(u, 0, false);
    const host = d0.ballooned.alloc();
    const [r] = rawMap(d0, [{ hostPfn: host, flags: HOST | DEV, ref, dom: u.domid }]);
    expect(r?.status).to.equal(GNTST.okay);
    expect(rawUnmap(d0, [
      { handle: r!.handle, hostPfn: host + 1 },
      { handle: r!.handle, dev: r!.dev + 4096n },
      { handle: r!.handle }, // neither address: nothing to unmap
    ])).to.deep.equal([GNTST.bad_virt_addr, GNTST.bad_dev_addr, GNTST.general_error]);
    expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ hostRw: 1, devRw: 1 }));
    expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: host, dev: r!.dev }])).to.deep.equal([GNTST.okay]);
    expect(pins(hv, u.domid, ref)).to.equal(undefined);
    expectReconciled(hv);
  });

  it('answers GNTST_no_space when the mapper\'s maptrack is exhausted, and recovers after an unmap', () => {
    const { hv, d0, u } = world({ maxMaptrack: 2 });
    const refs = [grantPage(u, 0, true).ref, grantPage(u, 0, true).ref, grantPage(u, 0, true).ref];
    const hosts = refs.map(() => d0.ballooned.alloc());
    const res = rawMap(d0, refs.map((ref, i) => ({ hostPfn: hosts[i], flags: HOST | RO, ref, dom: u.domid })));
    expect(res.map((r) => r.status)).to.deep.equal([GNTST.okay, GNTST.okay, GNTST.no_space]);
    expect(pins(hv, u.domid, refs[2]!)).to.equal(undefined);
    expect(inUse(u, refs[2]!)).to.equal(0);
    expect(hv.domain(0)?.p2m.get(hosts[2]!).present).to.equal(false);
    expect(rawUnmap(d0, [{ handle: res[0]!.handle, hostPfn: hosts[0] }])).to.deep.equal([GNTST.okay]);
    const [again] = rawMap(d0, [{ hostPfn: hosts[2], flags: HOST | RO, ref: refs[2]!, dom: u.domid }]);
    expect(again?.status).to.equal(GNTST.okay);
    expect(again?.handle).to.equal(res[0]!.handle); // the freed handle is reused
    expectReconciled(hv);
  });

  it('answers GNTST_bad_page when the entry names a frame the granter does not own, and clears the in-use bits', () => {
    const { m, hv, d0, u } = world();
    // vp granter: a pfn with nothing behind it, a pfn beyond its P2M, and dom0's shared_info pfn.
    const badRefs = [u.boot.foreignBase, u.boot.p2mEntries + 7, u.boot.sharedInfoPfn].map((frame) => {
      const ref = u.gnttab.allocRef()!;
      u.gnttab.grantForeignAccessRef(ref, asDomId(0), frame as Pfn, false);
      return ref;
    });
    // A page u itself mapped from someone else (foreign in u's P2M) cannot be re-granted.
    const third = m.domain({ name: 'third', memoryKiB: 256, model: 'vp' }, { grantFrames: 1 });
    const t = grantPage(third, u.domid, false);
    const uhost = u.ballooned.alloc();
    expect(rawMap(u, [{ hostPfn: uhost, flags: HOST, ref: t.ref, dom: third.domid }])[0]?.status).to.equal(GNTST.okay);
    const regrant = u.gnttab.grantForeignAccess(asDomId(0), uhost, false)!;
    // PV granter naming an MFN that belongs to dom0.
    const pv = m.domain({ name: 'pv', memoryKiB: 256, model: 'p2m' }, { grantFrames: 1 });
    const pvRef = pv.gnttab.allocRef()!;
    const d0frame = mfnOf(hv, d0, d0.ram.alloc());
    // grantForeignAccessRef translates pfn→mfn for PV; write the raw MFN instead, as a hostile PV guest could.
    pv.gnttab.grantForeignAccessRef(pvRef, asDomId(0), 0 as Pfn, false);
    const entryGpa = pv.gpa(pv.boot.grantPfnBase as Pfn, pvRef * 8 + 4);
    pv.mem.setU32(entryGpa, d0frame);
    const res = rawMap(d0, [
      ...badRefs.map((ref) => ({ hostPfn: d0.ballooned.alloc(), flags: HOST, ref, dom: u.domid })),
      { hostPfn: d0.ballooned.alloc(), flags: HOST, ref: regrant, dom: u.domid },
      { hostPfn: d0.ballooned.alloc(), flags: HOST, ref: pvRef, dom: pv.domid },
    ]);
    expect(res.map((r) => r.status)).to.deep.equal(new Array(5).fill(GNTST.bad_page));
    for (const ref of [...badRefs, regrant]) {
      expect(inUse(u, ref), `ref ${ref}`).to.equal(0);
      expect(pins(hv, u.domid, ref)).to.equal(undefined);
    }
    expect(inUse(pv, pvRef)).to.equal(0);
    expectReconciled(hv);
  });

  it('refuses a second grantee pinning an entry that is already pinned for another domain (Xen: act->domid check)', () => {
    const { m, hv, d0, u } = world();
    const third = m.domain({ name: 'third', memoryKiB: 256, model: 'vp' }, { grantFrames: 1 });
    const { ref } = grantPage(u, 0, false);
    const host = d0.ballooned.alloc();
    const [r] = rawMap(d0, [{ hostPfn: host, flags: HOST, ref, dom: u.domid }]);
    expect(r?.status).to.equal(GNTST.okay);
    // The granter rewrites the live entry to name another domain (a plain store, as a buggy or hostile guest may).
    u.gnttab.grantForeignAccessRef(ref, asDomId(third.domid), u.ram.alloc(), false);
    const [t] = rawMap(third, [{ hostPfn: third.ballooned.alloc(), flags: HOST, ref, dom: u.domid }]);
    expect(t?.status).to.equal(GNTST.general_error);
    expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ hostRw: 1 }));
    expect(hv.domain(third.domid)?.maptrackInUse).to.equal(0);
    expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    expectReconciled(hv);
  });

  it('maps DOMID_SELF grants (a domain mapping its own grant) and balances the books', () => {
    const { hv, u } = world();
    const { pfn, ref } = grantPage(u, u.domid, false, 0x33);
    const host = u.ballooned.alloc();
    const [r] = rawMap(u, [{ hostPfn: host, flags: HOST, ref, dom: DOMID_SELF }]);
    expect(r?.status).to.equal(GNTST.okay);
    u.mem.setU8(u.gpa(host, 1), 0x44);
    expect(u.mem.getU8(u.gpa(pfn, 1))).to.equal(0x44);
    expectReconciled(hv);
    expect(rawUnmap(u, [{ handle: r!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    expectReconciled(hv);
  });
});

/** The mfn an active entry pinned (test helper). */
function pins2mfn(hv: Hypervisor, granter: number, ref: number): Mfn {
  const a = hv.domain(granter)?.active.get(ref);
  if (a === undefined) throw new Error('not pinned');
  return a.mfn;
}

describe('GTF_reading / GTF_writing', () => {
  for (const order of ['writable first', 'read-only first'] as const) {
    it(`stays set while any pin of its kind remains and clears on the last unmap of each kind (${order})`, () => {
      const { hv, d0, u } = world();
      const { ref } = grantPage(u, 0, false);
      const hro = d0.ballooned.alloc();
      const hrw = d0.ballooned.alloc();
      const [ro, rw] = rawMap(d0, [
        { hostPfn: hro, flags: HOST | RO, ref, dom: u.domid },
        { hostPfn: hrw, flags: HOST, ref, dom: u.domid },
      ]);
      expect([ro?.status, rw?.status]).to.deep.equal([GNTST.okay, GNTST.okay]);
      expect(inUse(u, ref)).to.equal(GTF.reading | GTF.writing);
      expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ hostRo: 1, hostRw: 1 }));
      expect(hv.frameTable.mapcount(pins2mfn(hv, u.domid, ref))).to.equal(2);
      expect(u.gnttab.endForeignAccessRef(ref)).to.equal(false);
      if (order === 'writable first') {
        expect(rawUnmap(d0, [{ handle: rw!.handle, hostPfn: hrw }])).to.deep.equal([0]);
        expect(inUse(u, ref)).to.equal(GTF.reading);
        expect(u.gnttab.endForeignAccessRef(ref)).to.equal(false);
        expect(rawUnmap(d0, [{ handle: ro!.handle, hostPfn: hro }])).to.deep.equal([0]);
      } else {
        expect(rawUnmap(d0, [{ handle: ro!.handle, hostPfn: hro }])).to.deep.equal([0]);
        expect(inUse(u, ref)).to.equal(GTF.reading | GTF.writing);
        expect(u.gnttab.endForeignAccessRef(ref)).to.equal(false);
        expect(rawUnmap(d0, [{ handle: rw!.handle, hostPfn: hrw }])).to.deep.equal([0]);
      }
      expect(inUse(u, ref)).to.equal(0);
      expect(u.gnttab.flags(ref) & GTF.type_mask).to.equal(GTF.permit_access); // the guest's bits are kept
      expect(pins(hv, u.domid, ref)).to.equal(undefined);
      expect(u.gnttab.endForeignAccessRef(ref)).to.equal(true);
      expectReconciled(hv);
    });
  }

  it('upgrades to GTF_writing when a writable map joins a read-only one', () => {
    const { d0, u } = world();
    const { ref } = grantPage(u, 0, false);
    const [ro] = rawMap(d0, [{ hostPfn: d0.ballooned.alloc(), flags: HOST | RO, ref, dom: u.domid }]);
    expect(inUse(u, ref)).to.equal(GTF.reading);
    const [dev] = rawMap(d0, [{ flags: DEV, ref, dom: u.domid }]);
    expect(inUse(u, ref)).to.equal(GTF.reading | GTF.writing);
    expect(rawUnmap(d0, [{ handle: dev!.handle, dev: dev!.dev }])).to.deep.equal([0]);
    expect(inUse(u, ref)).to.equal(GTF.reading);
    expect(ro?.status).to.equal(0);
  });
});

describe('XSA-224: host and device mapping of one grant, unmapped separately', () => {
  for (const first of ['host', 'device'] as const) {
    it(`conserves the pins of each kind exactly when the ${first} half goes first`, () => {
      const { hv, d0, u } = world();
      const { pfn, ref } = grantPage(u, 0, false);
      const mfn = mfnOf(hv, u, pfn);
      const host = d0.ballooned.alloc();
      const [r] = rawMap(d0, [{ hostPfn: host, flags: HOST | DEV, ref, dom: u.domid }]);
      expect(r?.status).to.equal(GNTST.okay);
      expect(r?.dev).to.equal(BigInt(mfn) * 4096n);
      expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ hostRw: 1, devRw: 1 }));
      expect(hv.frameTable.mapcount(mfn)).to.equal(1);
      const h = r!.handle;
      if (first === 'host') {
        expect(rawUnmap(d0, [{ handle: h, hostPfn: host }])).to.deep.equal([GNTST.okay]);
        expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ devRw: 1 }));
        expect(hv.frameTable.mapcount(mfn)).to.equal(0);
        expect(hv.domain(0)?.p2m.get(host).present).to.equal(false);
        // Unmapping the host half again must not drop the device pin (the XSA-224 underflow).
        expect(rawUnmap(d0, [{ handle: h, hostPfn: host }])).to.deep.equal([GNTST.bad_virt_addr]);
        expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ devRw: 1 }));
        expect(inUse(u, ref)).to.equal(GTF.reading | GTF.writing);
        expectReconciled(hv);
        expect(rawUnmap(d0, [{ handle: h, dev: r!.dev }])).to.deep.equal([GNTST.okay]);
      } else {
        expect(rawUnmap(d0, [{ handle: h, dev: r!.dev }])).to.deep.equal([GNTST.okay]);
        expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ hostRw: 1 }));
        expect(hv.frameTable.mapcount(mfn)).to.equal(1);
        expect(rawUnmap(d0, [{ handle: h, dev: r!.dev }])).to.deep.equal([GNTST.bad_dev_addr]);
        expect(pins(hv, u.domid, ref)).to.deep.equal(pin({ hostRw: 1 }));
        expectReconciled(hv);
        expect(rawUnmap(d0, [{ handle: h, hostPfn: host }])).to.deep.equal([GNTST.okay]);
      }
      expect(pins(hv, u.domid, ref)).to.equal(undefined);
      expect(hv.frameTable.mapcount(mfn)).to.equal(0);
      expect(inUse(u, ref)).to.equal(0);
      expect(hv.domain(0)?.maptrackInUse).to.equal(0);
      expect(rawUnmap(d0, [{ handle: h, hostPfn: host, dev: r!.dev }])).to.deep.equal([GNTST.bad_handle]);
      expectReconciled(hv);
    });
  }
});

describe('XSA-361: a batch where some elements fail', () => {
  it('keeps the good elements mapped and leaves no pins, bits or handles for the bad ones', () => {
    const { m, hv, d0, u } = world();
    const third = m.domain({ name: 'third', memoryKiB: 256, model: 'vp' }, { grantFrames: 1 });
    const good1 = grantPage(u, 0, false, 1);
    const good2 = grantPage(u, 0, true, 2);
    const wrong = grantPage(u, third.domid, false, 3);
    const rocopy = grantPage(u, 0, true, 4);
    const hosts = Array.from({ length: 7 }, () => d0.ballooned.alloc());
    const res = rawMap(d0, [
      { hostPfn: hosts[0], flags: HOST, ref: good1.ref, dom: u.domid },
      { hostPfn: hosts[1], flags: HOST, ref: 9999, dom: u.domid },
      { hostPfn: hosts[2], flags: HOST | RO, ref: good2.ref, dom: u.domid },
      { hostPfn: hosts[3], flags: HOST, ref: wrong.ref, dom: u.domid },
      { hostPfn: hosts[4], flags: HOST | DEV, ref: rocopy.ref, dom: u.domid },
      { hostPfn: hosts[0], flags: HOST | RO, ref: good2.ref, dom: u.domid }, // address already used by element 0
      { hostPfn: hosts[6], flags: HOST | DEV | RO, ref: rocopy.ref, dom: u.domid },
    ]);
    expect(res.map((r) => r.status)).to.deep.equal([
      GNTST.okay, GNTST.bad_gntref, GNTST.okay, GNTST.permission_denied, GNTST.permission_denied, GNTST.bad_virt_addr, GNTST.okay,
    ]);
    expect(pins(hv, u.domid, good1.ref)).to.deep.equal(pin({ hostRw: 1 }));
    expect(pins(hv, u.domid, good2.ref)).to.deep.equal(pin({ hostRo: 1 }));
    expect(pins(hv, u.domid, rocopy.ref)).to.deep.equal(pin({ hostRo: 1, devRo: 1 }));
    expect(pins(hv, u.domid, wrong.ref)).to.equal(undefined);
    expect(inUse(u, wrong.ref)).to.equal(0);
    expect(inUse(u, rocopy.ref)).to.equal(GTF.reading);
    for (const i of [1, 3, 4, 5]) {
      expect(res[i]?.handle).to.equal(0xffffffff);
      if (i !== 5) expect(hv.domain(0)?.p2m.get(hosts[i]!).present, `host ${i}`).to.equal(false);
    }
    expect(hv.domain(0)?.maptrackInUse).to.equal(3);
    expect(d0.mem.getU8(d0.gpa(hosts[0]!))).to.equal(1);
    expect(d0.mem.getU8(d0.gpa(hosts[2]!))).to.equal(2);
    expect(d0.mem.getU8(d0.gpa(hosts[6]!))).to.equal(4);
    expectReconciled(hv);
    const st = rawUnmap(d0, [
      { handle: res[0]!.handle, hostPfn: hosts[0] },
      { handle: res[1]!.handle, hostPfn: hosts[1] },
      { handle: res[2]!.handle, hostPfn: hosts[2] },
      { handle: res[6]!.handle, hostPfn: hosts[6], dev: res[6]!.dev },
    ]);
    expect(st).to.deep.equal([GNTST.okay, GNTST.bad_handle, GNTST.okay, GNTST.okay]);
    for (const g of [good1, good2, wrong, rocopy]) expect(u.gnttab.endForeignAccessRef(g.ref)).to.equal(true);
    expectReconciled(hv);
  });
});

describe('revoking a grant (guest side) against Xen\'s pins', () => {
  it('refuses to revoke while mapped, allows it after the unmap, and a revoked grant no longer maps', () => {
    const { hv, d0, u } = world();
    const { ref } = grantPage(u, 0, false);
    const host = d0.ballooned.alloc();
    const [r] = rawMap(d0, [{ hostPfn: host, flags: HOST, ref, dom: u.domid }]);
    expect(u.gnttab.endForeignAccessRef(ref)).to.equal(false);
    expect(u.gnttab.endForeignAccess(ref)).to.equal(false);
    expect(u.gnttab.deferred.has(ref)).to.equal(true);
    expect(u.gnttab.retryDeferred()).to.equal(1);
    expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: host }])).to.deep.equal([0]);
    const free = u.gnttab.freeCount;
    expect(u.gnttab.retryDeferred()).to.equal(0);
    expect(u.gnttab.freeCount).to.equal(free + 1);
    expect(u.gnttab.flags(ref)).to.equal(0);
    expect(rawMap(d0, [{ hostPfn: host, flags: HOST, ref, dom: u.domid }])[0]?.status).to.equal(GNTST.permission_denied);
    expectReconciled(hv);
  });
});

// ------------------------------------------------------------------- copy

interface RawCopySide { gref?: number; gmfn?: number; domid: number; offset: number }
function rawCopy(k: DomainKernel, ops: readonly { src: RawCopySide; dst: RawCopySide; len: number }[]): number[] {
  const b = k.hc.buf;
  const put = (o: number, s: RawCopySide) => {
    b.setU64(o + GNTTAB_COPY_PTR.u, BigInt(s.gref ?? s.gmfn ?? 0));
    b.setU16(o + GNTTAB_COPY_PTR.domid, s.domid);
    b.setU16(o + GNTTAB_COPY_PTR.offset, s.offset);
  };
  ops.forEach((q, i) => {
    const a = i * GNTTAB_COPY.SIZE;
    put(a + GNTTAB_COPY.source, q.src);
    put(a + GNTTAB_COPY.dest, q.dst);
    b.setU16(a + GNTTAB_COPY.len, q.len);
    b.setU16(a + GNTTAB_COPY.flags, (q.src.gref !== undefined ? GNTCOPY.source_gref : 0) | (q.dst.gref !== undefined ? GNTCOPY.dest_gref : 0));
    b.setU16(a + GNTTAB_COPY.status, 0x7777);
  });
  const [r] = k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.copy, 0, ops.length);
  expect(r).to.equal(0);
  return ops.map((_q, i) => b.getI16(i * GNTTAB_COPY.SIZE + GNTTAB_COPY.status));
}

const enc = (s: string) => new TextEncoder().encode(s);
function readStr(k: DomainKernel, pfn: Pfn, off: number, len: number): string {
  const out = new Uint8Array(len);
  k.mem.copyOut(k.gpa(pfn, off), out);
  return new TextDecoder().decode(out);
}

describe('GNTTABOP_copy', () => {
  it('copies from and into grants at sub-page offsets, with the kernel\'s batched helper', () => {
    const { hv, d0, u } = world();
    const src = grantPage(u, 0, true, 0);
    const dst = grantPage(u, 0, false, 0);
    u.mem.copyIn(u.gpa(src.pfn, 1000), enc('from the guest'));
    const mine = d0.ram.alloc();
    d0.mem.copyIn(d0.gpa(mine, 3000), enc('from dom0'));
    const st = d0.gnttab.copy([
      { source: { gref: src.ref, domid: asDomId(u.domid), offset: 1000 }, dest: { frame: mine, offset: 17 }, len: 14 },
      { source: { frame: mine, offset: 3000 }, dest: { gref: dst.ref, domid: asDomId(u.domid), offset: 4096 - 9 }, len: 9 },
    ]);
    expect(st).to.deep.equal([GNTST.okay, GNTST.okay]);
    expect(readStr(d0, mine, 17, 14)).to.equal('from the guest');
    expect(readStr(u, dst.pfn, 4096 - 9, 9)).to.equal('from dom0');
    expect(u.mem.getU8(u.gpa(dst.pfn, 4096 - 10))).to.equal(0); // not one byte more
    const slot = d0.boot.slot;
    expect(hv.mem.atomicLoad32(hv.layout.dcbField(slot, DCB.statGrantCopies))).to.equal(2);
    expect(hv.mem.atomicLoad32(hv.layout.dcbField(slot, DCB.statGrantCopyBytes))).to.equal(23);
    // Copies leave no pins and no in-use bits.
    for (const g of [src, dst]) {
      expect(pins(hv, u.domid, g.ref)).to.equal(undefined);
      expect(inUse(u, g.ref)).to.equal(0);
    }
    expectReconciled(hv);
    expect(u.gnttab.endForeignAccessRef(src.ref)).to.equal(true);
    expect(u.gnttab.endForeignAccessRef(dst.ref)).to.equal(true);
  });

  it('copies grant to grant, and between a PV guest\'s own MFN and a grant', () => {
    const { m, hv, d0, u } = world();
    const a = grantPage(u, 0, true, 0x61);
    const b = grantPage(u, 0, false, 0);
    expect(rawCopy(d0, [{ src: { gref: a.ref, domid: u.domid, offset: 0 }, dst: { gref: b.ref, domid: u.domid, offset: 100 }, len: 50 }])).to.deep.equal([0]);
    expect(u.mem.getU8(u.gpa(b.pfn, 149))).to.equal(0x61);
    expect(u.mem.getU8(u.gpa(b.pfn, 150))).to.equal(0);
    const pv = m.domain({ name: 'pv', memoryKiB: 512, model: 'p2m' }, { grantFrames: 1 });
    const g = grantPage(u, pv.domid, false, 0);
    const own = pv.ram.alloc();
    pv.mem.copyIn(pv.gpa(own, 0), enc('pv bytes'));
    // The kernel helper names its own frame by MFN for PV (frameOf).
    expect(pv.gnttab.copy([{ source: { frame: own, offset: 0 }, dest: { gref: g.ref, domid: asDomId(u.domid), offset: 8 }, len: 8 }])).to.deep.equal([0]);
    expect(readStr(u, g.pfn, 8, 8)).to.equal('pv bytes');
    // Naming its own frame by pfn is wrong for PV: that number is not an MFN it owns.
    const st = rawCopy(pv, [{ src: { gmfn: own, domid: DOMID_SELF, offset: 0 }, dst: { gref: g.ref, domid: u.domid, offset: 0 }, len: 8 }]);
    expect(st[0]).to.equal(pv.frameOf(own) === own ? GNTST.okay : GNTST.bad_page);
    expectReconciled(hv);
  });

  it('answers GNTST_bad_copy_arg for a copy crossing the page end on either side, writing nothing', () => {
    const { hv, d0, u } = world();
    const src = grantPage(u, 0, true, 0x77);
    const dst = grantPage(u, 0, false, 0);
    const mine = d0.ram.alloc();
    const st = rawCopy(d0, [
      { src: { gref: src.ref, domid: u.domid, offset: 4090 }, dst: { gmfn: mine, domid: DOMID_SELF, offset: 0 }, len: 10 },
      { src: { gmfn: mine, domid: DOMID_SELF, offset: 0 }, dst: { gref: dst.ref, domid: u.domid, offset: 4095 }, len: 2 },
      { src: { gmfn: mine, domid: DOMID_SELF, offset: 0 }, dst: { gref: dst.ref, domid: u.domid, offset: 0 }, len: 4097 },
      { src: { gref: src.ref, domid: u.domid, offset: 0 }, dst: { gmfn: mine, domid: DOMID_SELF, offset: 0 }, len: 4096 },
    ]);
    expect(st).to.deep.equal([GNTST.bad_copy_arg, GNTST.bad_copy_arg, GNTST.bad_copy_arg, GNTST.okay]);
    expect(u.mem.getU8(u.gpa(dst.pfn, 0))).to.equal(0);
    expect(u.mem.getU8(u.gpa(dst.pfn, 4095))).to.equal(0);
    expect(d0.mem.getU8(d0.gpa(mine, 4095))).to.equal(0x77);
    for (const g of [src, dst]) expect(pins(hv, u.domid, g.ref)).to.equal(undefined);
    expect(inUse(u, src.ref) | inUse(u, dst.ref)).to.equal(0);
    expectReconciled(hv);
  });

  it('answers GNTST_permission_denied for a copy into a read-only grant, and releases the source pin', () => {
    const { hv, d0, u } = world();
    const ro = grantPage(u, 0, true, 0x11);
    const src = grantPage(u, 0, true, 0x22);
    const mine = d0.ram.alloc();
    const st = rawCopy(d0, [
      { src: { gmfn: mine, domid: DOMID_SELF, offset: 0 }, dst: { gref: ro.ref, domid: u.domid, offset: 0 }, len: 4 },
      { src: { gref: src.ref, domid: u.domid, offset: 0 }, dst: { gref: ro.ref, domid: u.domid, offset: 0 }, len: 4 },
      { src: { gref: ro.ref, domid: u.domid, offset: 0 }, dst: { gref: ro.ref, domid: u.domid, offset: 8 }, len: 4 },
    ]);
    expect(st).to.deep.equal([GNTST.permission_denied, GNTST.permission_denied, GNTST.permission_denied]);
    expect(u.mem.getU8(u.gpa(ro.pfn, 0))).to.equal(0x11);
    for (const g of [ro, src]) { expect(pins(hv, u.domid, g.ref)).to.equal(undefined); expect(inUse(u, g.ref)).to.equal(0); }
    expectReconciled(hv);
  });

  it('refuses a non-grant side that names another domain or a frame the caller does not own', () => {
    const { m, hv, d0, u } = world();
    const pv = m.domain({ name: 'pv', memoryKiB: 512, model: 'p2m' }, { grantFrames: 1 });
    const g = grantPage(u, 0, false, 0);
    const gpv = grantPage(u, pv.domid, false, 0);
    const upfn = u.ram.alloc();
    u.mem.fill(u.gpa(upfn), 4096, 0x99);
    const umfn = mfnOf(hv, u, upfn);
    const mine = d0.ram.alloc();
    const hole = d0.ballooned.alloc();
    const st = rawCopy(d0, [
      // The local side claims to be u's frame: only DOMID_SELF or one's own id is allowed.
      { src: { gmfn: upfn, domid: u.domid, offset: 0 }, dst: { gref: g.ref, domid: u.domid, offset: 0 }, len: 4 },
      // dom0 (pm) naming u's machine frame as if it were its own pfn: not its frame.
      { src: { gmfn: umfn, domid: DOMID_SELF, offset: 0 }, dst: { gref: g.ref, domid: u.domid, offset: 0 }, len: 4 },
      // An unpopulated pfn of its own.
      { src: { gmfn: hole, domid: DOMID_SELF, offset: 0 }, dst: { gref: g.ref, domid: u.domid, offset: 0 }, len: 4 },
      { src: { gref: g.ref, domid: u.domid, offset: 0 }, dst: { gmfn: mine, domid: 0, offset: 0 }, len: 4 },
    ]);
    expect(st).to.deep.equal([GNTST.permission_denied, GNTST.bad_page, GNTST.bad_page, GNTST.okay]);
    // A PV caller naming another domain's MFN.
    const pst = rawCopy(pv, [{ src: { gmfn: umfn, domid: DOMID_SELF, offset: 0 }, dst: { gref: gpv.ref, domid: u.domid, offset: 0 }, len: 4 }]);
    expect(pst).to.deep.equal([GNTST.bad_page]);
    // A vp caller naming a pfn where it holds a foreign mapping: refused too (no copying through someone else's page).
    const t = grantPage(d0, u.domid, false, 0x55);
    const uhost = u.ballooned.alloc();
    expect(rawMap(u, [{ hostPfn: uhost, flags: HOST, ref: t.ref, dom: 0 }])[0]?.status).to.equal(GNTST.okay);
    const back = grantPage(d0, u.domid, false, 0);
    const vst = rawCopy(u, [{ src: { gmfn: uhost, domid: DOMID_SELF, offset: 0 }, dst: { gref: back.ref, domid: 0, offset: 0 }, len: 4 }]);
    expect(vst).to.deep.equal([GNTST.bad_page]);
    expect(u.mem.getU8(u.gpa(upfn, 0))).to.equal(0x99);
    expectReconciled(hv);
  });

  it('answers GNTST_bad_domain and bad_gntref on the grant side of a copy', () => {
    const { hv, d0, u } = world();
    const mine = d0.ram.alloc();
    const st = rawCopy(d0, [
      { src: { gref: 8, domid: 4000, offset: 0 }, dst: { gmfn: mine, domid: DOMID_SELF, offset: 0 }, len: 4 },
      { src: { gref: 99999, domid: u.domid, offset: 0 }, dst: { gmfn: mine, domid: DOMID_SELF, offset: 0 }, len: 4 },
    ]);
    expect(st).to.deep.equal([GNTST.bad_domain, GNTST.bad_gntref]);
    expectReconciled(hv);
  });
});

// ----------------------------------------------------- multicall, sizes, set-up

describe('HYPERVISOR_multicall', () => {
  it('runs each entry and writes each result, refusing a nested multicall', () => {
    const { hv, d0, u } = world();
    const b = d0.hc.buf;
    const QS = 2048; // a query_size struct further along the same buffer
    b.setU16(QS + GNTTAB_QUERY_SIZE.dom, DOMID_SELF);
    const entries: [number, number[]][] = [
      [HYPERVISOR.xensim_nop, []],
      [HYPERVISOR.event_channel_op, [EVTCHNOP.alloc_unbound, DOMID_SELF, u.domid]],
      [HYPERVISOR.grant_table_op, [GNTTABOP.query_size, QS, 1]],
      [999, []],
      [HYPERVISOR.multicall, [0, 1]],
      [HYPERVISOR.grant_table_op, [GNTTABOP.get_version, 0, 0]],
      [HYPERVISOR.event_channel_op, [EVTCHNOP.close, 4095]],
    ];
    entries.forEach(([op, args], i) => {
      const e = i * MULTICALL_ENTRY.SIZE;
      b.setU64(e + MULTICALL_ENTRY.op, BigInt(op));
      b.setU64(e + MULTICALL_ENTRY.result, 0xdeadn);
      for (let k = 0; k < 6; k++) b.setU64(e + MULTICALL_ENTRY.args + k * 8, BigInt(args[k] ?? 0));
    });
    const [r] = d0.hc.call(HYPERVISOR.multicall, 0, entries.length);
    expect(r).to.equal(0);
    const res = entries.map((_e, i) => Number(BigInt.asIntN(64, b.getU64(i * MULTICALL_ENTRY.SIZE + MULTICALL_ENTRY.result))));
    expect(res).to.deep.equal([0, 0, 0, -XEN_ERRNO.ENOSYS, -XEN_ERRNO.EINVAL, 1, -XEN_ERRNO.EINVAL]);
    expect(b.getU32(QS + GNTTAB_QUERY_SIZE.nr_frames)).to.equal(1);
    // The alloc_unbound inside really happened: a port is open for u.
    expect(hv.domain(0)?.ports.filter((p) => p.state !== 0).length).to.equal(1);
    expect(d0.hc.call(HYPERVISOR.multicall, 16384 - 32, 1)[0]).to.equal(-XEN_ERRNO.EFAULT);
  });
});

describe('GNTTABOP_query_size, setup_table and versions', () => {
  it('reports nr_frames/max_nr_frames for itself, and for others only to a privileged caller', () => {
    const { d0, u } = world();
    const q = (k: DomainKernel, dom: number) => {
      const b = k.hc.buf;
      b.setU16(GNTTAB_QUERY_SIZE.dom, dom);
      b.setU32(GNTTAB_QUERY_SIZE.nr_frames, 0xaaaa);
      const [r] = k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.query_size, 0, 1);
      return { r, nr: b.getU32(GNTTAB_QUERY_SIZE.nr_frames), max: b.getU32(GNTTAB_QUERY_SIZE.max_nr_frames), status: b.getI16(GNTTAB_QUERY_SIZE.status) };
    };
    expect(q(u, DOMID_SELF)).to.deep.equal({ r: 0, nr: 1, max: 32, status: GNTST.okay });
    expect(q(u, u.domid)).to.deep.equal({ r: 0, nr: 1, max: 32, status: GNTST.okay });
    expect(q(u, 0).status).to.equal(GNTST.bad_domain);
    expect(q(d0, u.domid)).to.deep.equal({ r: 0, nr: 1, max: 32, status: GNTST.okay });
    expect(q(d0, 4000).status).to.equal(GNTST.bad_domain);
    expect(u.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.query_size, 16384 - 8, 1)[0]).to.equal(-XEN_ERRNO.EFAULT);
    expect(u.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.get_version, 0, 0)[0]).to.equal(1);
    expect(u.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.set_version, 0, 1)[0]).to.equal(0);
    expect(u.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.set_version, 0, 2)[0]).to.equal(-XEN_ERRNO.EOPNOTSUPP);
    expect(u.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.transfer, 0, 1)[0]).to.equal(-XEN_ERRNO.ENOSYS);
  });

  it('grows the table with setup_table up to max_grant_frames and refuses beyond it', () => {
    const m = testMachine(16 << 20);
    const u = m.domain({ name: 'u', memoryKiB: 512, model: 'vp', maxGrantFrames: 3 }, { grantFrames: 1 });
    const setup = (n: number, base = u.boot.grantPfnBase) => {
      for (let i = 0; i < n; i++) u.hc.buf.setU32(i * 4, base + i);
      return u.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.setup_table, 0, n)[0];
    };
    const free = m.hv.allocator.freeCount;
    expect(setup(3)).to.equal(GNTST.okay);
    expect(m.hv.domain(u.domid)?.grantFrames.length).to.equal(3);
    expect(m.hv.allocator.freeCount).to.equal(free - 2);
    expect(setup(4)).to.equal(GNTST.general_error);
    expect(setup(3)).to.equal(GNTST.okay); // idempotent at the same pfns
    expect(setup(2, u.boot.foreignBase)).to.equal(GNTST.bad_virt_addr); // frame 0 already lives elsewhere
    expect(setup(0)).to.equal(GNTST.general_error);
    expect(u.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.setup_table, 16380, 3)[0]).to.equal(-XEN_ERRNO.EFAULT);
    expect(m.hv.domain(u.domid)?.grantFrames.length).to.equal(3);
    const rec = m.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
    // A kernel asking for more frames than its max fails to boot its grant table, loudly.
    const r = m.hv.createDomain({ name: 'greedy', memoryKiB: 256, model: 'vp', maxGrantFrames: 2 });
    if (!r.ok) throw new Error('create');
    expect(() => m.domain({ name: 'greedy2', memoryKiB: 256, model: 'vp', maxGrantFrames: 2 }, { grantFrames: 3 })).to.throw(GnttabError, /GNTTABOP_setup_table/);
  });

  it('rejects a negative or absurd count and an out-of-buffer offset with -EFAULT, never a crash', () => {
    const { hv, d0 } = world();
    const call = (cmd: number, off: number, count: number) => d0.hc.call(HYPERVISOR.grant_table_op, cmd, off, count)[0];
    for (const cmd of [GNTTABOP.map_grant_ref, GNTTABOP.unmap_grant_ref, GNTTABOP.copy]) {
      expect(call(cmd, 16384, 1), `cmd ${cmd}`).to.equal(-XEN_ERRNO.EFAULT);
      expect(call(cmd, 0, 0xffffffff), `cmd ${cmd}`).to.equal(-XEN_ERRNO.EFAULT);
      expect(call(cmd, 0xffffffff, 1), `cmd ${cmd}`).to.equal(-XEN_ERRNO.EFAULT);
      expect(call(cmd, 16384 - 8, 1), `cmd ${cmd}`).to.equal(-XEN_ERRNO.EFAULT);
      expect(call(cmd, 0, 0), `cmd ${cmd}`).to.equal(0);
    }
    expect(call(GNTTABOP.setup_table, 0, 0xffffffff)).to.equal(GNTST.general_error);
    expectReconciled(hv);
  });

  it('hands out at most the table\'s refs and then answers undefined, never an overlapping ref', () => {
    const m = testMachine(16 << 20);
    const u = m.domain({ name: 'u', memoryKiB: 512, model: 'vp', maxGrantFrames: 1 }, { grantFrames: 1 });
    const pfn = u.ram.alloc();
    const refs = new Set<number>();
    for (;;) {
      const r = u.gnttab.grantForeignAccess(asDomId(0), pfn, true);
      if (r === undefined) break;
      refs.add(r);
    }
    expect(refs.size).to.equal(512 - 8);
    expect(Math.min(...refs)).to.equal(8); // refs 0..7 are reserved for the toolstack
    expect(Math.max(...refs)).to.equal(511);
    expect(u.gnttab.grantForeignAccess(asDomId(0), pfn, true)).to.equal(undefined);
    expect(u.gnttab.allocRef()).to.equal(undefined);
    // One back, one out.
    expect(u.gnttab.endForeignAccess(asGref(100))).to.equal(true);
    expect(u.gnttab.grantForeignAccess(asDomId(0), pfn, false)).to.equal(100);
  });
});
