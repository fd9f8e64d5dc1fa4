import { expect } from 'chai';
import fc from 'fast-check';
import { GNTCOPY, GNTMAP, GNTST, GNTTABOP, GNTTAB_COPY, GNTTAB_COPY_PTR, GNTTAB_MAP, GNTTAB_UNMAP, GTF } from '../../../shared/abi/grant.ts';
import { HYPERVISOR } from '../../../shared/abi/xen.ts';
import { testMachine } from '../../helpers/machine.ts';
import type { DomainKernel } from '../../../shared/kernel/kernel.ts';
import { asDomId, DOMID_SELF, type Gref, type Pfn } from '../../../shared/types.ts';

/**
 * Random sequences of map / unmap (whole or by halves) / copy / revoke /
 * re-grant over a few refs, by two mappers, against a small model of what
 * each grant allows. After every step: the hypervisor's books reconcile, the
 * pins of every ref equal the live maptrack entries naming it, the in-use bits
 * say exactly "some pin" / "some writable pin", and revocation succeeds iff
 * nothing is pinned. At the end, tearing everything down returns every frame.
 */

type Op =
  | { k: 'map'; who: number; ref: number; host: boolean; dev: boolean; ro: boolean; reuseHost: boolean }
  | { k: 'unmap'; pick: number; host: boolean; dev: boolean }
  | { k: 'copy'; who: number; ref: number; toGrant: boolean; off: number; len: number }
  | { k: 'revoke'; ref: number }
  | { k: 'regrant'; ref: number };

const NREFS = 4;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('map' as const), who: fc.nat(1), ref: fc.nat(NREFS - 1), host: fc.boolean(), dev: fc.boolean(), ro: fc.boolean(), reuseHost: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('unmap' as const), pick: fc.nat(), host: fc.boolean(), dev: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('copy' as const), who: fc.nat(1), ref: fc.nat(NREFS - 1), toGrant: fc.boolean(), off: fc.integer({ min: 0, max: 4096 }), len: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('revoke' as const), ref: fc.nat(NREFS - 1) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('regrant' as const), ref: fc.nat(NREFS - 1) }) },
);

interface Grant { ref: Gref; pfn: Pfn; grantee: number; readonly: boolean; live: boolean }
interface Mapping { who: number; handle: number; ref: number; hostPfn: number; host: boolean; dev: boolean; devAddr: bigint; ro: boolean }

function map1(k: DomainKernel, hostPfn: number, flags: number, ref: number, dom: number): { status: number; handle: number; dev: bigint } {
  const b = k.hc.buf;
  b.setU64(GNTTAB_MAP.host_addr, BigInt(hostPfn) * 4096n);
  b.setU32(GNTTAB_MAP.flags, flags);
  b.setU32(GNTTAB_MAP.ref, ref);
  b.setU16(GNTTAB_MAP.dom, dom);
  expect(k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.map_grant_ref, 0, 1)[0]).to.equal(0);
  return { status: b.getI16(GNTTAB_MAP.status), handle: b.getU32(GNTTAB_MAP.handle), dev: b.getU64(GNTTAB_MAP.dev_bus_addr) };
}
function unmap1(k: DomainKernel, handle: number, hostPfn: number, dev: bigint): number {
  const b = k.hc.buf;
  b.setU64(GNTTAB_UNMAP.host_addr, hostPfn < 0 ? 0n : BigInt(hostPfn) * 4096n);
  b.setU64(GNTTAB_UNMAP.dev_bus_addr, dev);
  b.setU32(GNTTAB_UNMAP.handle, handle);
  expect(k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.unmap_grant_ref, 0, 1)[0]).to.equal(0);
  return b.getI16(GNTTAB_UNMAP.status);
}
function copy1(k: DomainKernel, ref: number, dom: number, own: number, toGrant: boolean, off: number, len: number): number {
  const b = k.hc.buf;
  const g = toGrant ? GNTTAB_COPY.dest : GNTTAB_COPY.source;
  const l = toGrant ? GNTTAB_COPY.source : GNTTAB_COPY.dest;
  b.setU64(g + GNTTAB_COPY_PTR.u, BigInt(ref)); b.setU16(g + GNTTAB_COPY_PTR.domid, dom); b.setU16(g + GNTTAB_COPY_PTR.offset, off);
  b.setU64(l + GNTTAB_COPY_PTR.u, BigInt(own)); b.setU16(l + GNTTAB_COPY_PTR.domid, DOMID_SELF); b.setU16(l + GNTTAB_COPY_PTR.offset, 0);
  b.setU16(GNTTAB_COPY.len, len);
  b.setU16(GNTTAB_COPY.flags, toGrant ? GNTCOPY.dest_gref : GNTCOPY.source_gref);
  expect(k.hc.call(HYPERVISOR.grant_table_op, GNTTABOP.copy, 0, 1)[0]).to.equal(0);
  return b.getI16(GNTTAB_COPY.status);
}

describe('grant tables under random operation sequences (property)', () => {
  it('keeps reconcile() ok, pins equal to maptrack, in-use bits exact, and leaks nothing at teardown', function () {
    this.timeout(30_000);
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.boolean(), (ops, granterDiesFirst) => {
      const m = testMachine(8 << 20);
      const hv = m.hv;
      const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 512, model: 'pm', privileged: true, foreignPages: 64 }, { grantFrames: 1 });
      const baseline = hv.allocator.freeCount;
      const u = m.domain({ name: 'granter', memoryKiB: 256, model: 'vp', foreignPages: 16 }, { grantFrames: 1 });
      const pv = m.domain({ name: 'pv-mapper', memoryKiB: 256, model: 'p2m', foreignPages: 64 }, { grantFrames: 1 });
      const mappers = [d0, pv];
      const ownPage = mappers.map((k) => k.ram.alloc());
      // Refs 0,1 to dom0 (rw, ro); ref 2 to the PV mapper; ref 3 to dom0 on the same page as ref 0 (aliasing).
      const pfns = [u.ram.alloc(), u.ram.alloc(), u.ram.alloc()];
      const spec: [number, number, boolean][] = [[0, 0, false], [1, 0, true], [2, pv.domid, false], [0, 0, false]];
      const grants: Grant[] = spec.map(([p, grantee, ro]) => {
        const pfn = pfns[p]!;
        const ref = u.gnttab.grantForeignAccess(asDomId(grantee), pfn, ro)!;
        return { ref, pfn, grantee, readonly: ro, live: true };
      });
      const maps: Mapping[] = [];

      const check = () => {
        const rec = hv.reconcile();
        expect(rec.ok, JSON.stringify(rec)).to.equal(true);
        const gd = hv.domain(u.domid);
        for (const g of grants) {
          const live = maps.filter((x) => x.ref === g.ref);
          const want = {
            hostRo: live.filter((x) => x.host && x.ro).length, hostRw: live.filter((x) => x.host && !x.ro).length,
            devRo: live.filter((x) => x.dev && x.ro).length, devRw: live.filter((x) => x.dev && !x.ro).length,
          };
          const a = gd?.active.get(g.ref);
          const got = a === undefined ? { hostRo: 0, hostRw: 0, devRo: 0, devRw: 0 } : { hostRo: a.hostRo, hostRw: a.hostRw, devRo: a.devRo, devRw: a.devRw };
          expect(got, `pins of ref ${g.ref}`).to.deep.equal(want);
          if (a !== undefined) expect(a.copyRo + a.copyRw).to.equal(0);
          const any = live.length > 0;
          const anyW = live.some((x) => !x.ro);
          if (gd?.alive) {
            const f = u.gnttab.flags(g.ref);
            expect((f & GTF.reading) !== 0, `reading on ref ${g.ref}`).to.equal(any);
            expect((f & GTF.writing) !== 0, `writing on ref ${g.ref}`).to.equal(anyW);
          }
        }
      };

      for (const o of ops) {
        if (o.k === 'map') {
          const k = mappers[o.who]!;
          const g = grants[o.ref]!;
          const flags = (o.host ? GNTMAP.host_map : 0) | (o.dev ? GNTMAP.device_map : 0) | (o.ro ? GNTMAP.readonly : 0);
          const used = maps.find((x) => x.who === o.who && x.host);
          const hostPfn = o.host ? (o.reuseHost && used !== undefined ? used.hostPfn : k.ballooned.tryAlloc() ?? -1) : 0;
          if (hostPfn === -1) continue;
          const r = map1(k, hostPfn, flags, g.ref, u.domid);
          const valid = (o.host || o.dev) && g.live && g.grantee === k.domid && (o.ro || !g.readonly) && !(o.host && o.reuseHost && used !== undefined);
          expect(r.status, `map ${JSON.stringify(o)}`).to.equal(valid ? GNTST.okay : r.status === GNTST.okay ? -999 : r.status);
          if (r.status === GNTST.okay) {
            maps.push({ who: o.who, handle: r.handle, ref: g.ref, hostPfn: o.host ? hostPfn : -1, host: o.host, dev: o.dev, devAddr: r.dev, ro: o.ro });
            if (o.host) expect(k.mem.getU8(k.gpa(hostPfn as Pfn))).to.equal(u.mem.getU8(u.gpa(g.pfn)));
          } else {
            expect(r.handle).to.equal(0xffffffff);
            if (o.host && !(o.reuseHost && used !== undefined)) k.ballooned.release(hostPfn as Pfn);
          }
        } else if (o.k === 'unmap') {
          if (maps.length === 0) continue;
          const i = o.pick % maps.length;
          const x = maps[i]!;
          const k = mappers[x.who]!;
          const dropHost = o.host && x.host;
          const dropDev = o.dev && x.dev;
          const st = unmap1(k, x.handle, o.host ? (x.host ? x.hostPfn : 1) : -1, o.dev ? (x.dev ? x.devAddr : 4096n) : 0n);
          if (!o.host && !o.dev) { expect(st).to.equal(GNTST.general_error); continue; }
          if ((o.host && !x.host) || (o.dev && !x.dev)) { expect(st).to.not.equal(GNTST.okay); continue; }
          expect(st).to.equal(GNTST.okay);
          if (dropHost) { k.ballooned.release(x.hostPfn as Pfn); x.host = false; x.hostPfn = -1; }
          if (dropDev) x.dev = false;
          if (!x.host && !x.dev) {
            maps.splice(i, 1);
            expect(unmap1(k, x.handle, -1, 4096n)).to.equal(maps.some((y) => y.who === x.who && y.handle === x.handle) ? GNTST.bad_dev_addr : GNTST.bad_handle);
          }
        } else if (o.k === 'copy') {
          const k = mappers[o.who]!;
          const g = grants[o.ref]!;
          const st = copy1(k, g.ref, u.domid, k.frameOf(ownPage[o.who]!), o.toGrant, o.off, o.len);
          const allowed = g.live && g.grantee === k.domid && !(o.toGrant && g.readonly);
          const inPage = o.off + o.len <= 4096;
          // Not ours: permission_denied from the entry, or general_error when the ref is pinned for its grantee (Xen's act->domid check).
          if (!allowed) expect(st).to.be.oneOf([GNTST.permission_denied, GNTST.general_error, GNTST.bad_copy_arg]);
          else expect(st).to.equal(inPage ? GNTST.okay : GNTST.bad_copy_arg);
        } else if (o.k === 'revoke') {
          const g = grants[o.ref]!;
          if (!g.live) continue;
          const pinned = maps.some((x) => x.ref === g.ref);
          expect(u.gnttab.endForeignAccessRef(g.ref)).to.equal(!pinned);
          if (!pinned) g.live = false;
        } else {
          const g = grants[o.ref]!;
          if (g.live) continue;
          u.gnttab.grantForeignAccessRef(g.ref, asDomId(g.grantee), g.pfn, g.readonly);
          g.live = true;
        }
        check();
      }

      // Teardown in either order: nothing leaks, whoever dies first.
      if (granterDiesFirst) {
        const r = hv.destroyDomain(u.domid);
        expect(r.ok).to.equal(true);
        if (r.ok) expect(r.value).to.equal(maps.length > 0 ? 'zombie' : 'destroyed');
        expect(hv.reconcile().ok).to.equal(true);
        for (const x of [...maps]) {
          const st = unmap1(mappers[x.who]!, x.handle, x.host ? x.hostPfn : -1, x.dev ? x.devAddr : 0n);
          expect(st).to.equal(GNTST.okay);
          maps.splice(maps.indexOf(x), 1);
          expect(hv.reconcile().ok).to.equal(true);
        }
        expect(hv.domain(u.domid)).to.equal(undefined);
        expect(hv.destroyDomain(pv.domid).ok).to.equal(true);
      } else {
        expect(hv.destroyDomain(pv.domid).ok).to.equal(true);
        for (const x of maps.filter((y) => y.who === 0)) expect(unmap1(d0, x.handle, x.host ? x.hostPfn : -1, x.dev ? x.devAddr : 0n)).to.equal(GNTST.okay);
        expect(hv.domain(u.domid)?.active.size).to.equal(0);
        expect(hv.destroyDomain(u.domid)).to.deep.equal({ ok: true, value: 'destroyed' });
      }
      expect(hv.allocator.freeCount).to.equal(baseline);
      const rec = hv.reconcile();
      expect(rec.ok, JSON.stringify(rec)).to.equal(true);
    }), { numRuns: 120 });
  });
});
