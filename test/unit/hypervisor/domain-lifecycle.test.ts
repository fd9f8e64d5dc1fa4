import { expect } from 'chai';
import { GNTMAP, GNTST, GNTTABOP, GNTTAB_MAP, GNTTAB_UNMAP, GTF } from '../../../shared/abi/grant.ts';
import { DCB, DOMAIN_STATE, FRAME_TYPE } from '../../../shared/abi/machine.ts';
import { HYPERVISOR, XEN_ERRNO } from '../../../shared/abi/xen.ts';
import { testMachine } from '../../helpers/machine.ts';
import type { DomainKernel } from '../../../shared/kernel/kernel.ts';
import type { Hypervisor } from '../../../hypervisor/hypervisor.ts';
import { asDomId, DOMID_FREE, type Gref, type Mfn, type Pfn } from '../../../shared/types.ts';

interface MapOp { hostPfn?: number; flags: number; ref: number; dom: number }
function rawMap(k: DomainKernel, ops: readonly MapOp[]): { status: number; handle: number; dev: bigint }[] {
  const b = k.hc.buf;
  ops.forEach((o, i) => {
    const a = i * GNTTAB_MAP.SIZE;
    b.setU64(a + GNTTAB_MAP.host_addr, BigInt(o.hostPfn ?? 0) * BigInt(k.pageSize));
    b.setU32(a + GNTTAB_MAP.flags, o.flags);
    b.setU32(a + GNTTAB_MAP.ref, o.ref);
    b.setU16(a + GNTTAB_MAP.dom, o.dom);
  });
  expect(k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, 0, ops.length)[0]).to.equal(0);
  return ops.map((_o, i) => ({
    status: b.getI16(i * GNTTAB_MAP.SIZE + GNTTAB_MAP.status),
    handle: b.getU32(i * GNTTAB_MAP.SIZE + GNTTAB_MAP.handle),
    dev: b.getU64(i * GNTTAB_MAP.SIZE + GNTTAB_MAP.dev_bus_addr),
  }));
}
function rawUnmap(k: DomainKernel, ops: readonly { handle: number; hostPfn?: number; dev?: bigint }[]): number[] {
  const b = k.hc.buf;
  ops.forEach((o, i) => {
    const a = i * GNTTAB_UNMAP.SIZE;
    b.setU64(a + GNTTAB_UNMAP.host_addr, o.hostPfn === undefined ? 0n : BigInt(o.hostPfn) * BigInt(k.pageSize));
    b.setU64(a + GNTTAB_UNMAP.dev_bus_addr, o.dev ?? 0n);
    b.setU32(a + GNTTAB_UNMAP.handle, o.handle);
  });
  expect(k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, 0, ops.length)[0]).to.equal(0);
  return ops.map((_o, i) => b.getI16(i * GNTTAB_UNMAP.SIZE + GNTTAB_UNMAP.status));
}

function expectReconciled(hv: Hypervisor): void {
  const r = hv.reconcile();
  expect(r.ok, JSON.stringify(r)).to.equal(true);
}

function grantPage(u: DomainKernel, grantee: number, readonly: boolean, text: string): { pfn: Pfn; ref: Gref } {
  const pfn = u.ram.alloc();
  u.mem.copyIn(u.gpa(pfn), new TextEncoder().encode(text));
  const ref = u.gnttab.grantForeignAccess(asDomId(grantee), pfn, readonly);
  if (ref === undefined) throw new Error('grant table full');
  return { pfn, ref };
}
function readStr(k: DomainKernel, pfn: Pfn, len: number): string {
  const out = new Uint8Array(len);
  k.mem.copyOut(k.gpa(pfn), out);
  return new TextDecoder().decode(out);
}

function boot() {
  const m = testMachine(16 << 20);
  const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 2048, model: 'pm', privileged: true }, { grantFrames: 1 });
  return { m, hv: m.hv, d0 };
}

describe('domain destruction and grants', () => {
  it('releases everything a dying mapper held, so the granter can revoke and no frame leaks', () => {
    const { m, hv, d0 } = boot();
    const u = m.domain({ name: 'granter', memoryKiB: 512, model: 'vp' }, { grantFrames: 1 });
    const freeBefore = hv.allocator.freeCount;
    const mapper = m.domain({ name: 'mapper', memoryKiB: 512, model: 'p2m' }, { grantFrames: 1 });
    const gs = [grantPage(u, mapper.domid, false, 'a'), grantPage(u, mapper.domid, true, 'b'), grantPage(u, mapper.domid, false, 'c')];
    const res = rawMap(mapper, [
      { hostPfn: mapper.ballooned.alloc(), flags: GNTMAP.host_map, ref: gs[0]!.ref, dom: u.domid },
      { hostPfn: mapper.ballooned.alloc(), flags: GNTMAP.host_map | GNTMAP.readonly, ref: gs[1]!.ref, dom: u.domid },
      { hostPfn: mapper.ballooned.alloc(), flags: GNTMAP.host_map | GNTMAP.device_map, ref: gs[2]!.ref, dom: u.domid },
      { flags: GNTMAP.device_map, ref: gs[0]!.ref, dom: u.domid },
    ]);
    expect(res.every((r) => r.status === GNTST.okay)).to.equal(true);
    for (const g of gs) expect(u.gnttab.endForeignAccessRef(g.ref)).to.equal(false);
    expectReconciled(hv);
    expect(hv.destroyDomain(mapper.domid)).to.deep.equal({ ok: true, value: 'destroyed' });
    expect(hv.domain(mapper.domid)).to.equal(undefined);
    expect(hv.domain(u.domid)?.active.size).to.equal(0);
    for (const g of gs) {
      expect(u.gnttab.flags(g.ref) & (GTF.reading | GTF.writing)).to.equal(0);
      expect(hv.frameTable.mapcount(hv.domain(u.domid)!.p2m.lookup(g.pfn)!)).to.equal(0);
      expect(u.gnttab.endForeignAccessRef(g.ref)).to.equal(true);
    }
    expect(hv.allocator.freeCount).to.equal(freeBefore);
    expect(m.mem.atomicLoad32(hv.layout.dcbField(mapper.boot.slot, DCB.domid))).to.equal(-1);
    expect(m.mem.atomicLoad32(hv.layout.dcbField(mapper.boot.slot, DCB.state))).to.equal(DOMAIN_STATE.free);
    // The destroyed mapper's hypercalls are refused, not served against freed state.
    expect(mapper.hc.call(HYPERVISOR.xensim_nop)[0]).to.equal(-XEN_ERRNO.ESRCH);
    expectReconciled(hv);
    expect(d0.domid).to.equal(0);
  });

  it('keeps a dying granter a zombie while mapped, serving the mapping, then reclaims all of it on the last unmap', () => {
    const { m, hv, d0 } = boot();
    const freeBefore = hv.allocator.freeCount;
    const victim = m.domain({ name: 'victim', memoryKiB: 512, model: 'p2m' }, { grantFrames: 2 });
    const a = grantPage(victim, 0, true, 'last words');
    const b = grantPage(victim, 0, false, 'second page');
    const ha = d0.ballooned.alloc();
    const hb = d0.ballooned.alloc();
    const res = rawMap(d0, [
      { hostPfn: ha, flags: GNTMAP.host_map | GNTMAP.readonly, ref: a.ref, dom: victim.domid },
      { hostPfn: hb, flags: GNTMAP.host_map, ref: b.ref, dom: victim.domid },
    ]);
    expect(res.map((r) => r.status)).to.deep.equal([0, 0]);
    const mfnA = hv.domain(victim.domid)!.p2m.lookup(a.pfn)!;
    expect(hv.destroyDomain(victim.domid)).to.deep.equal({ ok: true, value: 'zombie' });
    const z = hv.domain(victim.domid);
    expect(z?.state).to.equal('zombie');
    expect(m.mem.atomicLoad32(hv.layout.dcbField(victim.boot.slot, DCB.state))).to.equal(DOMAIN_STATE.zombie);
    // Two mapped RAM frames and the two grant-table frames stay; everything else went back.
    expect(z?.owned.size).to.equal(4);
    expect(hv.frameTable.owner(mfnA)).to.equal(victim.domid);
    expect(readStr(d0, ha, 10)).to.equal('last words');
    d0.mem.copyIn(d0.gpa(hb), new TextEncoder().encode('still ok'));
    expect(readStr(d0, hb, 8)).to.equal('still ok');
    // Nothing new may be taken from a zombie, and its own vCPU is gone.
    expect(rawMap(d0, [{ hostPfn: d0.ballooned.alloc(), flags: GNTMAP.host_map | GNTMAP.readonly, ref: a.ref, dom: victim.domid }])[0]?.status).to.equal(GNTST.bad_domain);
    expect(victim.hc.call(HYPERVISOR.xensim_nop)[0]).to.equal(-XEN_ERRNO.ESRCH);
    expect(hv.destroyDomain(victim.domid).ok).to.equal(false); // already going
    // The name is free for a new domain while the zombie lingers.
    const reborn = hv.createDomain({ name: 'victim', memoryKiB: 256, model: 'vp' });
    if (!reborn.ok) throw new Error('the name of a zombie should be reusable');
    expectReconciled(hv);
    expect(rawUnmap(d0, [{ handle: res[0]!.handle, hostPfn: ha }])).to.deep.equal([0]);
    expect(hv.domain(victim.domid)?.state).to.equal('zombie');
    expect(hv.frameTable.owner(mfnA)).to.equal(DOMID_FREE);
    expectReconciled(hv);
    expect(rawUnmap(d0, [{ handle: res[1]!.handle, hostPfn: hb }])).to.deep.equal([0]);
    expect(hv.domain(victim.domid)).to.equal(undefined);
    expect(m.mem.atomicLoad32(hv.layout.dcbField(victim.boot.slot, DCB.domid))).to.equal(-1);
    expect(hv.destroyDomain(reborn.value.domid)).to.deep.equal({ ok: true, value: 'destroyed' });
    expect(hv.allocator.freeCount).to.equal(freeBefore);
    expectReconciled(hv);
  });

  it('keeps a frame that is only device-mapped (no host mapping) from being freed under the device, then reclaims it', () => {
    const { m, hv, d0 } = boot();
    const freeBefore = hv.allocator.freeCount;
    const victim = m.domain({ name: 'dma-victim', memoryKiB: 512, model: 'vp' }, { grantFrames: 1 });
    const g = grantPage(victim, 0, false, 'dma target');
    const mfn = hv.domain(victim.domid)!.p2m.lookup(g.pfn)!;
    const [r] = rawMap(d0, [{ flags: GNTMAP.device_map, ref: g.ref, dom: victim.domid }]);
    expect(r?.status).to.equal(GNTST.okay);
    expect(r?.dev).to.equal(BigInt(mfn) * 4096n);
    expect(hv.destroyDomain(victim.domid)).to.deep.equal({ ok: true, value: 'zombie' });
    // The device still targets mfn: it must still be the victim's, not back in the free pool.
    expect(hv.frameTable.owner(mfn)).to.equal(victim.domid);
    expect(hv.allocator.isFree(mfn)).to.equal(false);
    expect(m.mem.bytesEqual(m.mem.frameAddr(mfn), new TextEncoder().encode('dma target'))).to.equal(true);
    expectReconciled(hv);
    expect(rawUnmap(d0, [{ handle: r!.handle, dev: r!.dev }])).to.deep.equal([0]);
    // The last pin went: the zombie is gone entirely, grant-table frames included.
    expect(hv.domain(victim.domid)).to.equal(undefined);
    expect(hv.allocator.freeCount).to.equal(freeBefore);
    expectReconciled(hv);
  });

  it('lets a zombie\'s last mapper die and takes both down cleanly', () => {
    const { m, hv } = boot();
    const freeBefore = hv.allocator.freeCount;
    const granter = m.domain({ name: 'granter', memoryKiB: 512, model: 'vp' }, { grantFrames: 1 });
    const mapper = m.domain({ name: 'mapper', memoryKiB: 512, model: 'vp' }, { grantFrames: 1 });
    const g = grantPage(granter, mapper.domid, false, 'x');
    expect(rawMap(mapper, [{ hostPfn: mapper.ballooned.alloc(), flags: GNTMAP.host_map | GNTMAP.device_map, ref: g.ref, dom: granter.domid }])[0]?.status).to.equal(0);
    expect(hv.destroyDomain(granter.domid)).to.deep.equal({ ok: true, value: 'zombie' });
    expect(hv.destroyDomain(mapper.domid)).to.deep.equal({ ok: true, value: 'destroyed' });
    expect(hv.domain(granter.domid)).to.equal(undefined);
    expect(hv.allocator.freeCount).to.equal(freeBefore);
    expectReconciled(hv);
  });

  it('creates and destroys domains over and over without leaking frames, Xen heap or slots', () => {
    const m = testMachine(16 << 20, { nrSlots: 4 });
    const hv = m.hv;
    const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 1024, model: 'pm', privileged: true }, { grantFrames: 1 });
    const free = hv.allocator.freeCount;
    // Each domain takes ~13 arena frames; the 512-frame arena would run dry within ~40 rounds if any leaked.
    for (let i = 0; i < 120; i++) {
      const model = (['vp', 'p2m', 'pm'] as const)[i % 3]!;
      const k = m.domain({ name: `g${i}`, memoryKiB: 256, model }, { grantFrames: 1 });
      const g = grantPage(k, 0, false, 'y');
      const h = d0.ballooned.alloc();
      const [r] = rawMap(d0, [{ hostPfn: h, flags: GNTMAP.host_map, ref: g.ref, dom: k.domid }]);
      expect(r?.status).to.equal(0);
      const port = k.evtchn.allocUnbound(0);
      d0.evtchn.bindInterdomain(k.domid, port);
      expect(hv.destroyDomain(k.domid).ok).to.equal(true);
      expect(rawUnmap(d0, [{ handle: r!.handle, hostPfn: h }])).to.deep.equal([0]);
      d0.ballooned.release(h);
      expect(hv.domain(k.domid)).to.equal(undefined);
    }
    expect(hv.allocator.freeCount).to.equal(free);
    expect(hv.domains.size).to.equal(1);
    expectReconciled(hv);
  });
});

describe('Hypervisor.reconcile detects corrupted books', () => {
  function mapped() {
    const { m, hv, d0 } = boot();
    const u = m.domain({ name: 'u', memoryKiB: 512, model: 'vp' }, { grantFrames: 1 });
    const g = grantPage(u, 0, false, 'z');
    const h = d0.ballooned.alloc();
    const [r] = rawMap(d0, [{ hostPfn: h, flags: GNTMAP.host_map, ref: g.ref, dom: u.domid }]);
    expect(r?.status).to.equal(0);
    expectReconciled(hv);
    return { m, hv, d0, u, g, h, handle: r!.handle, mfn: hv.domain(u.domid)!.p2m.lookup(g.pfn)! };
  }

  it('notices a mapcount bumped behind the maptrack\'s back', () => {
    const { hv, mfn } = mapped();
    hv.frameTable.addMap(mfn, 1);
    const r = hv.reconcile();
    expect(r.ok).to.equal(false);
    expect(r.mapcountMismatches).to.deep.equal([{ mfn, frameTable: 2, maptrack: 1 }]);
    hv.frameTable.addMap(mfn, -1);
    expectReconciled(hv);
  });

  it('notices a dropped maptrack entry (mapcount and pins no longer backed)', () => {
    const { hv, u, g, mfn, handle } = mapped();
    const d0 = hv.domain(0)!;
    const e = d0.maptrack[handle];
    d0.maptrack[handle] = undefined;
    const r = hv.reconcile();
    expect(r.ok).to.equal(false);
    expect(r.mapcountMismatches).to.deep.equal([{ mfn, frameTable: 1, maptrack: 0 }]);
    expect(r.pinMismatches).to.deep.equal([{ granter: u.domid, ref: g.ref, pins: 1, maptrack: 0 }]);
    d0.maptrack[handle] = e;
    expectReconciled(hv);
  });

  it('notices a pin with no maptrack entry behind it, and a maptrack entry with no pin', () => {
    const { hv, u, g } = mapped();
    const act = hv.domain(u.domid)!.active.get(g.ref)!;
    act.devRo++;
    let r = hv.reconcile();
    expect(r.ok).to.equal(false);
    expect(r.pinMismatches).to.deep.equal([{ granter: u.domid, ref: g.ref, pins: 2, maptrack: 1 }]);
    act.devRo--;
    hv.domain(u.domid)!.active.delete(g.ref);
    r = hv.reconcile();
    expect(r.pinMismatches).to.deep.equal([{ granter: u.domid, ref: g.ref, pins: 0, maptrack: 1 }]);
    hv.domain(u.domid)!.active.set(g.ref, act);
    expectReconciled(hv);
  });

  it('notices a frame released behind its owner\'s back, one taken from the pool unrecorded, and one owned by nobody known', () => {
    const { hv, u, mfn } = mapped();
    const owned = [...hv.domain(u.domid)!.owned].find((f) => f !== mfn)!;
    const saved = hv.frameTable.info(owned);
    hv.frameTable.release(owned);
    let r = hv.reconcile();
    expect(r.ok).to.equal(false);
    expect(r.mismatchedFrames).to.include(owned);
    expect(r.lostFrames).to.include(owned); // free in the table, but not in the allocator
    hv.frameTable.assign(owned, saved.owner, saved.type, saved.m2p as Pfn);
    expectReconciled(hv);
    // A free frame taken out of the allocator without an owner: leaked.
    const r1 = hv.allocator.allocScattered(1);
    if (!r1.ok) throw new Error('alloc');
    const leaked = r1.value[0] as Mfn;
    r = hv.reconcile();
    expect(r.lostFrames).to.deep.equal([leaked]);
    // Given to a domain id nobody has: an orphan.
    hv.frameTable.assign(leaked, asDomId(4321), FRAME_TYPE.ram, -1);
    r = hv.reconcile();
    expect(r.orphanFrames).to.deep.equal([leaked]);
    expect(r.lostFrames).to.deep.equal([]);
    hv.frameTable.release(leaked);
    hv.allocator.free(leaked);
    expectReconciled(hv);
  });

  it('notices an owned frame that is also in the free pool (it would be handed out twice)', () => {
    const { hv, u, mfn } = mapped();
    const owned = [...hv.domain(u.domid)!.owned].find((f) => f !== mfn)!;
    hv.allocator.free(owned);
    const r = hv.reconcile();
    expect(r.ok, 'a frame both owned and free').to.equal(false);
    expect(r.mismatchedFrames).to.include(owned);
    expect(hv.allocator.take(owned)).to.equal(true);
    expectReconciled(hv);
  });

  it('notices a frame two domains both claim', () => {
    const { m, hv, u } = mapped();
    const other = m.domain({ name: 'other', memoryKiB: 256, model: 'vp' }, { grantFrames: 1 });
    const stolen = [...hv.domain(u.domid)!.owned][0]!;
    hv.domain(other.domid)!.owned.add(stolen);
    const r = hv.reconcile();
    expect(r.ok).to.equal(false);
    expect(r.mismatchedFrames).to.include(stolen);
    hv.domain(other.domid)!.owned.delete(stolen);
    expectReconciled(hv);
  });
});
