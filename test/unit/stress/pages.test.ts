import { expect } from 'chai';
import { CountingRegion, PageBook, takeBallooned } from '../../../stress/pages.ts';
import { newDomainBooks } from '../../../stress/view.ts';
import { testMachine } from '../../helpers/machine.ts';
import { asDomId, type Pfn } from '../../../shared/types.ts';

function pair() {
  const m = testMachine(16 << 20);
  const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 2048, model: 'pm', privileged: true, foreignPages: 16 }, { grantFrames: 1 });
  const u = m.domain({ name: 'u', memoryKiB: 1024, model: 'vp', foreignPages: 16, maxGrantFrames: 1 }, { grantFrames: 1 });
  return { m, d0, u };
}

describe('stress page books', () => {
  it('finds a page freed, or freed and reused, while its grant is still valid (XSA-396), and nothing once it is revoked first', () => {
    const { u } = pair();
    const books = newDomainBooks(u.domid, 'u', 'guest', false);
    const pb = new PageBook(u, books);
    const a = pb.alloc() as Pfn;
    const ref = pb.grant(0, a, true, 'data');
    expect(ref).to.not.equal(undefined);
    expect(pb.scan()).to.deep.equal([]);
    pb.free(a);
    expect(pb.scan()[0]).to.match(/freed pfn \d+ while its grant ref \d+ \(data, to d0\) was still valid/);
    const again = pb.alloc() as Pfn; // LIFO: the same page comes back for something else
    expect(again).to.equal(a);
    expect(pb.scan()[0]).to.match(/freed and reallocated/);
    expect(books.pageReuse).to.have.length(2);
    const clean = new PageBook(u, newDomainBooks(u.domid, 'u', 'guest', false));
    const b = clean.alloc() as Pfn;
    const r2 = clean.grant(0, b, false, 'ring');
    expect(clean.endAccess(r2!, true)).to.equal(true);
    expect(clean.scan()).to.deep.equal([]);
  });

  it('defers the revocation of a grant the backend still maps, keeping its page, and frees it once unmapped', () => {
    const { d0, u } = pair();
    const pb = new PageBook(u, newDomainBooks(u.domid, 'u', 'guest', false));
    const p = pb.alloc() as Pfn;
    const ref = pb.grant(0, p, false, 'data')!;
    const host = d0.ballooned.alloc();
    const [m] = d0.gnttab.mapGrantRefs([{ domid: asDomId(u.domid), ref, readonly: false, hostPfn: host }]);
    expect(m?.status).to.equal(0);
    expect(pb.endAccess(ref, true)).to.equal(false);
    expect(pb.isDeferred(ref)).to.equal(true);
    expect(pb.allocated).to.equal(1);
    expect(pb.retryDeferred()).to.equal(1);
    d0.gnttab.unmapGrantRefs([{ handle: m!.handle, hostPfn: host }]);
    expect(pb.retryDeferred()).to.equal(0);
    expect(pb.allocated).to.equal(0);
  });

  it('sets aside a ballooned pfn that still translates, as an isolation breach', () => {
    const { d0, u } = pair();
    const books = newDomainBooks(0, 'Domain-0', 'dom0', false);
    const pb = new PageBook(u, newDomainBooks(u.domid, 'u', 'guest', false));
    const ref = pb.grant(0, pb.alloc() as Pfn, true, 'x')!;
    const host = takeBallooned(d0, books) as Pfn;
    const [m] = d0.gnttab.mapGrantRefs([{ domid: asDomId(u.domid), ref, readonly: true, hostPfn: host }]);
    expect(m?.status).to.equal(0);
    d0.ballooned.release(host); // a kernel bug: the pfn goes back while still mapped
    const next = takeBallooned(d0, books);
    expect(next).to.not.equal(host);
    expect(books.isolation[0]).to.match(new RegExp(`d0 pfn ${host} still translates`));
  });

  it('counts the bytes read from request slots, whether in one piece or a prefix and the rest, and not the header', () => {
    const { u } = pair();
    const pfn = u.ram.alloc();
    const r = new CountingRegion(u.mem.region([pfn]), 1);
    r.atomicLoadU32(0); // req_prod: the header is not a slot
    const buf = new Uint8Array(112);
    r.copyOut(64, buf);
    expect(r.slotBytesRead).to.equal(112);
    r.copyOut(176, buf, 0, 8);
    r.copyOut(184, buf, 8, 104);
    expect(r.slotBytesRead).to.equal(224);
    r.getU32(176 + 24); // a second look at one field of the request: a double fetch
    expect(r.slotBytesRead).to.equal(228);
  });
});
