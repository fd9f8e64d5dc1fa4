import { expect } from 'chai';
import { GNTST, GRANT_ENTRY_V1 } from '../../../shared/abi/grant.ts';
import { DCB, FRAME_TYPE, type MemoryModel } from '../../../shared/abi/machine.ts';
import { P2M } from '../../../shared/abi/p2m.ts';
import { MemoryFault } from '../../../shared/memory/domain-memory.ts';
import { testMachine } from '../../helpers/machine.ts';
import type { DomainKernel } from '../../../shared/kernel/kernel.ts';
import type { Hypervisor } from '../../../hypervisor/hypervisor.ts';
import { asDomId, asGref, type GuestAddr, type MachineAddr, type Mfn, type Pfn } from '../../../shared/types.ts';

const P = (n: number) => n as Pfn;

function ramMfns(hv: Hypervisor, k: DomainKernel): number[] {
  const d = hv.domain(k.domid);
  if (d === undefined) throw new Error('no domain');
  return Array.from({ length: k.boot.ramPages }, (_, i) => {
    const m = d.p2m.lookup(P(k.boot.ramBase + i));
    if (m === undefined) throw new Error(`RAM pfn ${k.boot.ramBase + i} not present`);
    return m;
  });
}

function breaks(mfns: readonly number[]): number {
  let n = 0;
  for (let i = 1; i < mfns.length; i++) if (mfns[i] !== (mfns[i - 1] as number) + 1) n++;
  return n;
}

function faults(k: DomainKernel): number {
  return k.machine.atomicLoad32(k.layout.dcbField(k.boot.slot, DCB.faults));
}

describe('P2M and M2P in the three memory models', () => {
  it('makes a pm domain identity-mapped: pfn == mfn for every RAM page, placed at its first mfn', () => {
    const m = testMachine(16 << 20);
    const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 2048, model: 'pm', privileged: true }, { grantFrames: 1 });
    const mfns = ramMfns(m.hv, d0);
    expect(d0.boot.ramBase).to.be.greaterThan(0);
    mfns.forEach((mfn, i) => expect(mfn).to.equal(d0.boot.ramBase + i));
    // The pfns below ramBase are a hole: nothing there.
    expect(m.hv.domain(0)?.p2m.lookup(P(0))).to.equal(undefined);
    expect(() => d0.mem.getU8(0 as GuestAddr)).to.throw(MemoryFault, /not-present/);
  });

  for (const model of ['vp', 'p2m'] as const satisfies readonly MemoryModel[]) {
    it(`scatters a ${model} domain's RAM across machine memory`, () => {
      const m = testMachine(16 << 20, { seed: 1234 });
      const k = m.domain({ name: model, memoryKiB: 1024, model }, { grantFrames: 1 });
      const mfns = ramMfns(m.hv, k);
      expect(k.boot.ramBase).to.equal(0);
      expect(new Set(mfns).size).to.equal(mfns.length);
      // Not one contiguous run, neither in pfn order nor once sorted.
      expect(breaks(mfns)).to.be.greaterThan(mfns.length / 2);
      expect(breaks([...mfns].sort((a, b) => a - b))).to.be.greaterThan(10);
    });
  }

  for (const model of ['pm', 'vp', 'p2m'] as const satisfies readonly MemoryModel[]) {
    it(`keeps the M2P (frame table) the exact inverse of a ${model} domain's P2M`, () => {
      const m = testMachine(16 << 20);
      const k = m.domain({ name: model, memoryKiB: 1024, model }, { grantFrames: 2 });
      const d = m.hv.domain(k.domid);
      if (d === undefined) throw new Error('no domain');
      let ram = 0;
      let grant = 0;
      for (let pfn = 0; pfn < d.p2m.entries; pfn++) {
        const e = d.p2m.get(P(pfn));
        if (!e.present) continue;
        if (pfn === k.boot.sharedInfoPfn) {
          // shared_info is Xen's frame lent to the guest: not in the guest's M2P.
          expect(m.hv.frameTable.owner(e.mfn as Mfn)).to.not.equal(k.domid);
          continue;
        }
        const fi = m.hv.frameTable.info(e.mfn as Mfn);
        expect(fi.owner, `pfn ${pfn}`).to.equal(k.domid);
        expect(fi.m2p, `pfn ${pfn}`).to.equal(pfn);
        if (fi.type === FRAME_TYPE.ram) ram++;
        else if (fi.type === FRAME_TYPE.grantTable) grant++;
        else throw new Error(`unexpected frame type ${fi.type}`);
      }
      expect(ram).to.equal(k.boot.ramPages);
      expect(grant).to.equal(2);
      // And the other way round: every frame the domain owns is reached from its P2M.
      expect(d.owned.size).to.equal(ram + grant);
      for (const mfn of d.owned) expect(d.p2m.lookup(P(m.hv.frameTable.m2p(mfn)))).to.equal(mfn);
    });
  }

  it('gives a PV guest its own pfn→mfn list in its RAM, equal to the hypervisor\'s P2M, on pages it will not hand out', () => {
    const m = testMachine(16 << 20);
    const k = m.domain({ name: 'pv', memoryKiB: 1024, model: 'p2m' }, { grantFrames: 1 });
    const d = m.hv.domain(k.domid);
    if (d === undefined) throw new Error('no domain');
    expect(k.boot.p2mListPfn).to.be.at.least(0);
    expect(k.boot.p2mListPfn + k.boot.p2mListPages).to.equal(k.boot.ramPages);
    for (let pfn = 0; pfn < k.boot.ramPages; pfn++) expect(k.frameOf(P(pfn)), `pfn ${pfn}`).to.equal(d.p2m.lookup(P(pfn)));
    // Unpopulated pfns read as INVALID_P2M_ENTRY (~0) in the guest's list.
    expect(k.frameOf(P(k.boot.foreignBase))).to.equal(0xffffffff);
    // The list pages are reserved: the kernel's RAM pool never returns them.
    const got = new Set<number>();
    for (let p = k.ram.tryAlloc(); p !== undefined; p = k.ram.tryAlloc()) got.add(p);
    expect(got.size).to.equal(k.boot.ramPages - k.boot.p2mListPages);
    for (let i = 0; i < k.boot.p2mListPages; i++) expect(got.has(k.boot.p2mListPfn + i)).to.equal(false);
  });

  it('has auto-translated guests name pfns, and PV guests name MFNs, in grant entries', () => {
    const m = testMachine(16 << 20);
    const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 2048, model: 'pm', privileged: true }, { grantFrames: 1 });
    for (const model of ['pm', 'vp', 'p2m'] as const) {
      const k = m.domain({ name: `g-${model}`, memoryKiB: 512, model }, { grantFrames: 1 });
      const pfn = k.ram.alloc();
      const ref = k.gnttab.grantForeignAccess(asDomId(0), pfn, true);
      if (ref === undefined) throw new Error('grant');
      const d = m.hv.domain(k.domid);
      if (d === undefined) throw new Error('no domain');
      const entry = (m.mem.frameAddr(d.grantFrames[0] as Mfn) + ref * GRANT_ENTRY_V1.SIZE) as MachineAddr;
      const frame = m.mem.getU32((entry + GRANT_ENTRY_V1.frame) as MachineAddr);
      const mfn = d.p2m.lookup(pfn);
      expect(frame, model).to.equal(model === 'p2m' ? mfn : pfn);
      if (model === 'p2m') expect(frame).to.not.equal(pfn);
      // And either way the hypervisor finds the same page: dom0 maps it and sees the guest's bytes.
      k.mem.setU32(k.gpa(pfn, 12), 0xfeed0000 + k.domid);
      const host = d0.ballooned.alloc();
      const [r] = d0.gnttab.mapGrantRefs([{ domid: asDomId(k.domid), ref: asGref(ref), readonly: true, hostPfn: host }]);
      expect(r?.status, model).to.equal(GNTST.okay);
      expect(d0.mem.getU32(d0.gpa(host, 12)) >>> 0).to.equal(0xfeed0000 + k.domid);
      expect(d0.gnttab.unmapGrantRefs([{ handle: r!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    }
  });

  it('marks a grant mapping foreign in the mapper\'s P2M, writable only when asked, and leaves the M2P with the owner', () => {
    const m = testMachine(16 << 20);
    const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 2048, model: 'pm', privileged: true }, { grantFrames: 1 });
    const u = m.domain({ name: 'u', memoryKiB: 512, model: 'vp' }, { grantFrames: 1 });
    const pfn = u.ram.alloc();
    const mfn = m.hv.domain(u.domid)?.p2m.lookup(pfn) as Mfn;
    const ro = u.gnttab.grantForeignAccess(asDomId(0), pfn, true)!;
    const rw = u.gnttab.grantForeignAccess(asDomId(0), pfn, false)!;
    const h1 = d0.ballooned.alloc();
    const h2 = d0.ballooned.alloc();
    const res = d0.gnttab.mapGrantRefs([
      { domid: asDomId(u.domid), ref: ro, readonly: true, hostPfn: h1 },
      { domid: asDomId(u.domid), ref: rw, readonly: false, hostPfn: h2 },
    ]);
    expect(res.map((r) => r.status)).to.deep.equal([GNTST.okay, GNTST.okay]);
    const p2m = m.hv.domain(0)!.p2m;
    expect(p2m.get(h1)).to.deep.equal({ mfn, present: true, writable: false, foreign: true });
    expect(p2m.get(h2)).to.deep.equal({ mfn, present: true, writable: true, foreign: true });
    expect(m.hv.frameTable.info(mfn)).to.deep.equal({ owner: u.domid, type: FRAME_TYPE.ram, mapcount: 2, m2p: pfn });
    expect(d0.gnttab.unmapGrantRefs(res.map((r, i) => ({ handle: r.handle, hostPfn: i === 0 ? h1 : h2 })))).to.deep.equal([0, 0]);
    expect(p2m.get(h1).present).to.equal(false);
    expect(m.hv.frameTable.mapcount(mfn)).to.equal(0);
  });
});

describe('16 KiB pages end to end', () => {
  it('grants, maps and copies whole 16 KiB pages, and refuses a copy past 16384', () => {
    const m = testMachine(32 << 20, { pageSize: 16384 });
    const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 4096, model: 'pm', privileged: true }, { grantFrames: 1 });
    const u = m.domain({ name: 'u', memoryKiB: 2048, model: 'p2m' }, { grantFrames: 1 });
    expect(u.gnttab.nrEntries).to.equal(16384 / 8);
    const pfn = u.ram.alloc();
    u.mem.setU32(u.gpa(pfn, 16380), 0xabcdef01);
    const ref = u.gnttab.grantForeignAccess(asDomId(0), pfn, false)!;
    const host = d0.ballooned.alloc();
    const [r] = d0.gnttab.mapGrantRefs([{ domid: asDomId(u.domid), ref, readonly: false, hostPfn: host }]);
    expect(r?.status).to.equal(GNTST.okay);
    expect(r?.devBusAddr).to.equal(0); // a pm mapper asked for no device map
    expect(d0.mem.getU32(d0.gpa(host, 16380)) >>> 0).to.equal(0xabcdef01);
    expect(d0.gnttab.unmapGrantRefs([{ handle: r!.handle, hostPfn: host }])).to.deep.equal([GNTST.okay]);
    const mine = d0.ram.alloc();
    const st = d0.gnttab.copy([
      { source: { gref: ref, domid: asDomId(u.domid), offset: 0 }, dest: { frame: mine, offset: 0 }, len: 16384 },
      { source: { gref: ref, domid: asDomId(u.domid), offset: 16380 }, dest: { frame: mine, offset: 0 }, len: 8 },
    ]);
    expect(st).to.deep.equal([GNTST.okay, GNTST.bad_copy_arg]);
    expect(d0.mem.getU32(d0.gpa(mine, 16380)) >>> 0).to.equal(0xabcdef01);
    const rec = m.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });
});

describe('DomainMemory faults', () => {
  it('throws and counts not-present, read-only and out-of-range faults; canAccess does neither', () => {
    const m = testMachine(16 << 20);
    const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 2048, model: 'pm', privileged: true }, { grantFrames: 1 });
    const u = m.domain({ name: 'u', memoryKiB: 512, model: 'vp' }, { grantFrames: 1 });
    const expectFault = (fn: () => unknown, reason: string, write: boolean) => {
      const before = faults(d0);
      let caught: unknown;
      try { fn(); } catch (e) { caught = e; }
      expect(caught).to.be.instanceOf(MemoryFault);
      const f = caught as MemoryFault;
      expect(f.reason).to.equal(reason);
      expect(f.write).to.equal(write);
      expect(f.domid).to.equal(0);
      expect(faults(d0)).to.equal(before + 1);
    };
    const hole = d0.ballooned.alloc();
    expectFault(() => d0.mem.getU32(d0.gpa(hole)), 'not-present', false);
    expectFault(() => d0.mem.copyIn(d0.gpa(hole, 100), new Uint8Array(8)), 'not-present', true);
    const beyond = d0.boot.p2mEntries;
    expectFault(() => d0.mem.getU8(d0.gpa(P(beyond))), 'out-of-range', false);
    expectFault(() => d0.mem.setU8(d0.gpa(P(beyond + 1000)), 1), 'out-of-range', true);
    // Read-only: a read-only grant mapping may be read but not written.
    const pfn = u.ram.alloc();
    u.mem.setU32(u.gpa(pfn), 0x1234);
    const ref = u.gnttab.grantForeignAccess(asDomId(0), pfn, true)!;
    const [r] = d0.gnttab.mapGrantRefs([{ domid: asDomId(u.domid), ref, readonly: true, hostPfn: hole }]);
    expect(r?.status).to.equal(GNTST.okay);
    expect(d0.mem.getU32(d0.gpa(hole))).to.equal(0x1234);
    expectFault(() => d0.mem.setU32(d0.gpa(hole), 1), 'read-only', true);
    expectFault(() => d0.mem.atomicOr32(d0.gpa(hole), 1), 'read-only', true);
    expect(u.mem.getU32(u.gpa(pfn))).to.equal(0x1234); // nothing got through
    // A multi-page region over the mapping faults too, per access.
    const region = d0.mem.region([hole, d0.ram.alloc()]);
    expectFault(() => region.setU8(5, 9), 'read-only', true);
    expect(region.getU32(0)).to.equal(0x1234);
    // canAccess answers without faulting.
    const before = faults(d0);
    expect(d0.mem.canAccess(hole, false)).to.equal(true);
    expect(d0.mem.canAccess(hole, true)).to.equal(false);
    expect(d0.mem.canAccess(P(beyond), false)).to.equal(false);
    expect(faults(d0)).to.equal(before);
    // After the unmap the page is gone again.
    expect(d0.gnttab.unmapGrantRefs([{ handle: r!.handle, hostPfn: hole }])).to.deep.equal([GNTST.okay]);
    expectFault(() => d0.mem.getU32(d0.gpa(hole)), 'not-present', false);
    // The other domain's counter never moved.
    expect(faults(u)).to.equal(0);
  });

  it('faults a domain reading the P2M entry of a pfn that was never populated (and P2M.EMPTY is what it sees)', () => {
    const m = testMachine(16 << 20);
    const u = m.domain({ name: 'u', memoryKiB: 512, model: 'vp' }, { grantFrames: 1 });
    expect(u.mem.p2mWord(P(u.boot.foreignBase))).to.equal(P2M.EMPTY);
    expect(u.mem.p2mWord(P(u.boot.p2mEntries + 5))).to.equal(P2M.EMPTY);
    expect(() => u.mem.translatePfn(P(u.boot.foreignBase), false)).to.throw(MemoryFault);
    expect(faults(u)).to.equal(1);
  });
});
