import { expect } from 'chai';
import { Machine, type DomainHandle } from '../../toolstack/machine.ts';
import { GNTST, GTF } from '../../shared/abi/grant.ts';
import { unwrap } from '../../shared/result.ts';

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe('machine with real workers', function () {
  this.timeout(120_000);
  let m: Machine;
  let dom0: DomainHandle;
  let domU: DomainHandle;

  before(async () => {
    m = await Machine.boot({ memBytes: 64 << 20 });
    dom0 = await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 16 * 1024, model: 'pm', privileged: true });
    domU = await m.createDomain({ name: 'guest1', memoryKiB: 8 * 1024, model: 'vp' });
  });
  after(async () => { await m?.shutdown(); });

  it('lets dom0 map a page domU granted and read what domU wrote, then unmap', async () => {
    const pfn = unwrap(await domU.agent.allocPage());
    unwrap(await domU.agent.write(pfn, 100, bytes('hello from domU')));
    const ref = unwrap(await domU.agent.grant(0, pfn, true));
    const map = unwrap(await dom0.agent.map(domU.domid, ref, true));
    expect(map.status).to.equal(GNTST.okay);
    expect(text(unwrap(await dom0.agent.read(map.pfn, 100, 15)))).to.equal('hello from domU');
    expect(unwrap(await domU.agent.grantFlags(ref)) & GTF.reading).to.not.equal(0);
    // A read-only mapping cannot be written through.
    const w = await dom0.agent.write(map.pfn, 0, bytes('x'));
    expect(w.ok).to.equal(false);
    expect(unwrap(await dom0.agent.unmap(map.handle, map.pfn))).to.equal(GNTST.okay);
    expect(unwrap(await domU.agent.grantFlags(ref)) & (GTF.reading | GTF.writing)).to.equal(0);
    expect(unwrap(await domU.agent.endAccess(ref))).to.equal(true);
    // After unmapping, the pfn no longer reaches the page.
    expect((await dom0.agent.read(map.pfn, 0, 1)).ok).to.equal(false);
  });

  it('refuses to revoke a grant while it is mapped, and allows it after the unmap', async () => {
    const pfn = unwrap(await domU.agent.allocPage());
    const ref = unwrap(await domU.agent.grant(0, pfn, false));
    const map = unwrap(await dom0.agent.map(domU.domid, ref, false));
    expect(map.status).to.equal(GNTST.okay);
    unwrap(await dom0.agent.write(map.pfn, 0, bytes('written by dom0')));
    expect(text(unwrap(await domU.agent.read(pfn, 0, 15)))).to.equal('written by dom0');
    expect(unwrap(await domU.agent.endAccess(ref))).to.equal(false);
    expect(unwrap(await dom0.agent.unmap(map.handle, map.pfn))).to.equal(GNTST.okay);
    expect(unwrap(await domU.agent.endAccess(ref))).to.equal(true);
    // A revoked grant can no longer be mapped.
    expect(unwrap(await dom0.agent.map(domU.domid, ref, false)).status).to.equal(GNTST.permission_denied);
  });

  it('copies through grants in both directions with GNTTABOP_copy', async () => {
    const src = unwrap(await domU.agent.allocPage());
    const dst = unwrap(await domU.agent.allocPage());
    unwrap(await domU.agent.write(src, 0, bytes('guest data')));
    const rs = unwrap(await domU.agent.grant(0, src, true));
    const rd = unwrap(await domU.agent.grant(0, dst, false));
    const mine = unwrap(await dom0.agent.allocPage());
    unwrap(await dom0.agent.write(mine, 8, bytes('dom0 data')));
    const st = unwrap(await dom0.agent.copy([
      { source: { gref: rs as never, domid: domU.domid as never, offset: 0 }, dest: { frame: mine, offset: 100 }, len: 10 },
      { source: { frame: mine, offset: 8 }, dest: { gref: rd as never, domid: domU.domid as never, offset: 20 }, len: 9 },
      // Into a read-only grant: refused, the others still done.
      { source: { frame: mine, offset: 0 }, dest: { gref: rs as never, domid: domU.domid as never, offset: 0 }, len: 4 },
      // Crossing the page end: refused.
      { source: { frame: mine, offset: 4090 }, dest: { gref: rd as never, domid: domU.domid as never, offset: 0 }, len: 10 },
    ]));
    expect(st).to.deep.equal([GNTST.okay, GNTST.okay, GNTST.permission_denied, GNTST.bad_copy_arg]);
    expect(text(unwrap(await dom0.agent.read(mine, 100, 10)))).to.equal('guest data');
    expect(text(unwrap(await domU.agent.read(dst, 20, 9)))).to.equal('dom0 data');
    // Copies leave no pins behind.
    expect(unwrap(await domU.agent.endAccess(rs))).to.equal(true);
    expect(unwrap(await domU.agent.endAccess(rd))).to.equal(true);
  });

  it('faults, counts and survives a domU reading memory it does not own', async () => {
    const before = (await domU.agent.stats()).faults;
    // A guest address in the foreign window holds nothing for domU.
    const r = await domU.agent.readAddr(domU.boot.foreignBase * 4096, 8);
    expect(r.ok).to.equal(false);
    if (!r.ok) {
      expect(r.fault?.domid).to.equal(domU.domid);
      expect(r.fault?.reason).to.equal('not-present');
      expect(r.error).to.match(/read fault at guest address 0x/);
    }
    // dom0's RAM, addressed as if it were domU's, is beyond domU's P2M.
    expect((await domU.agent.readAddr((dom0.boot.ramBase + 5) * 4096 * 64, 8)).ok).to.equal(false);
    expect((await domU.agent.stats()).faults).to.equal(before + 2);
    // And the domain still works.
    const pfn = unwrap(await domU.agent.allocPage());
    unwrap(await domU.agent.write(pfn, 0, bytes('alive')));
    expect(text(unwrap(await domU.agent.read(pfn, 0, 5)))).to.equal('alive');
  });

  it('rejects bad grant operations with Xen status codes and keeps serving', async () => {
    const pfn = unwrap(await domU.agent.allocPage());
    const ref = unwrap(await domU.agent.grant(0, pfn, false));
    expect(unwrap(await dom0.agent.map(domU.domid, 999_999, false)).status).to.equal(GNTST.bad_gntref);
    expect(unwrap(await dom0.agent.map(4000, ref, false)).status).to.equal(GNTST.bad_domain);
    // Granted to dom0, so another domain may not map it.
    const other = await m.createDomain({ name: 'guest-other', memoryKiB: 4096, model: 'vp' });
    expect(unwrap(await other.agent.map(domU.domid, ref, false)).status).to.equal(GNTST.permission_denied);
    expect(unwrap(await dom0.agent.unmap(12345, 0))).to.equal(GNTST.bad_handle);
    // Mapping over a populated pfn is refused.
    const own = unwrap(await dom0.agent.allocPage());
    expect(unwrap(await dom0.agent.mapRaw(domU.domid, ref, false, own)).status).to.equal(GNTST.bad_virt_addr);
    await m.destroyDomain(other.domid);
    const ok = unwrap(await dom0.agent.map(domU.domid, ref, false));
    expect(ok.status).to.equal(GNTST.okay);
    expect(unwrap(await dom0.agent.unmap(ok.handle, ok.pfn))).to.equal(GNTST.okay);
    expect(unwrap(await domU.agent.endAccess(ref))).to.equal(true);
  });

  it('keeps a destroyed granter as a zombie while mapped, and leaks nothing after the unmap', async () => {
    const victim = await m.createDomain({ name: 'victim', memoryKiB: 4096, model: 'p2m' });
    const pfn = unwrap(await victim.agent.allocPage());
    unwrap(await victim.agent.write(pfn, 0, bytes('last words')));
    const ref = unwrap(await victim.agent.grant(0, pfn, true));
    const map = unwrap(await dom0.agent.map(victim.domid, ref, true));
    expect(map.status).to.equal(GNTST.okay);
    expect(await m.destroyDomain(victim.domid)).to.equal('zombie');
    const zombie = (await m.hv.domains()).find((d) => d.domid === victim.domid);
    expect(zombie?.state).to.equal('zombie');
    expect(zombie?.ownedFrames).to.be.greaterThan(0);
    // dom0 still reads the page: its frame was not freed under the mapping.
    expect(text(unwrap(await dom0.agent.read(map.pfn, 0, 10)))).to.equal('last words');
    expect(unwrap(await dom0.agent.unmap(map.handle, map.pfn))).to.equal(GNTST.okay);
    expect((await m.hv.domains()).find((d) => d.domid === victim.domid)).to.equal(undefined);
    const rec = await m.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });

  it('releases a dying mapper\'s mappings so the granter can revoke', async () => {
    const mapper = await m.createDomain({ name: 'mapper', memoryKiB: 4096, model: 'vp' });
    const pfn = unwrap(await domU.agent.allocPage());
    const ref = unwrap(await domU.agent.grant(mapper.domid, pfn, false));
    expect(unwrap(await mapper.agent.map(domU.domid, ref, false)).status).to.equal(GNTST.okay);
    expect(unwrap(await domU.agent.endAccess(ref))).to.equal(false);
    expect(await m.destroyDomain(mapper.domid)).to.equal('destroyed');
    expect(unwrap(await domU.agent.endAccess(ref))).to.equal(true);
    expect((await m.hv.reconcile()).ok).to.equal(true);
  });

  it('delivers a million events between two domains with none lost', async function () {
    this.timeout(300_000);
    const port0 = unwrap(await dom0.agent.allocUnbound(domU.domid));
    const portU = unwrap(await domU.agent.bindInterdomain(0, port0));
    await dom0.agent.echo(port0);
    const n = 1_000_000;
    const chunk = 100_000;
    let total = 0;
    for (let i = 0; i < n / chunk; i++) {
      const r = unwrap(await domU.agent.pingPong(portU, chunk));
      total += r.roundTrips;
      if (i === 0) console.log(`      (ping-pong: ${(r.ns / chunk / 1000).toFixed(2)} µs per round trip)`);
    }
    expect(total).to.equal(n);
    const echoed = await dom0.agent.eventCount(port0);
    // The initial bind event (Xen marks a new interdomain port pending) may add one.
    expect(echoed).to.be.within(n, n + 1);
    expect((await dom0.agent.stats()).lostWakeups).to.equal(0);
    expect((await domU.agent.stats()).lostWakeups).to.equal(0);
  });

  it('keeps a masked event pending and fires it on unmask', async () => {
    const p0 = unwrap(await dom0.agent.allocUnbound(domU.domid));
    const pU = unwrap(await domU.agent.bindInterdomain(0, p0));
    await dom0.agent.countEvents(p0);
    // Let the bind-time stale event settle.
    await new Promise((r) => setTimeout(r, 50));
    const base = await dom0.agent.eventCount(p0);
    unwrap(await dom0.agent.mask(p0));
    unwrap(await domU.agent.send(pU));
    await new Promise((r) => setTimeout(r, 50));
    expect(await dom0.agent.eventCount(p0)).to.equal(base);
    expect(await dom0.agent.isPending(p0)).to.equal(true);
    unwrap(await dom0.agent.unmask(p0));
    await new Promise((r) => setTimeout(r, 50));
    expect(await dom0.agent.eventCount(p0)).to.equal(base + 1);
    // Closing one end makes the other unbound; sends to it are dropped, not errors.
    unwrap(await domU.agent.closePort(pU));
    expect(await dom0.agent.portStatus(p0)).to.equal(1);
    expect((await domU.agent.send(pU)).ok).to.equal(false);
  });

  it('treats a worker that throws as a crashed domain and applies on_crash', async () => {
    const g = await m.createDomain({ name: 'crashy', memoryKiB: 4096, model: 'vp', onCrash: 'destroy' });
    await g.agent.crashNow('simulated panic');
    await g.exited;
    for (let i = 0; i < 100 && (await m.hv.domains()).some((d) => d.domid === g.domid); i++) await new Promise((r) => setTimeout(r, 20));
    expect((await m.hv.domains()).some((d) => d.domid === g.domid)).to.equal(false);
    expect(m.crashes.map((c) => c.name)).to.include('crashy');
    expect(m.crashes.find((c) => c.name === 'crashy')?.error).to.match(/simulated panic/);
    const p = await m.createDomain({ name: 'keeper', memoryKiB: 4096, model: 'vp', onCrash: 'preserve' });
    await p.agent.crashNow();
    await p.exited;
    for (let i = 0; i < 100 && !(await m.hv.domains()).some((d) => d.domid === p.domid && d.state === 'crashed'); i++) await new Promise((r) => setTimeout(r, 20));
    expect((await m.hv.domains()).find((d) => d.domid === p.domid)?.state).to.equal('crashed');
    await m.destroyDomain(p.domid);
    expect((await m.hv.reconcile()).ok).to.equal(true);
  });

  it('restarts a crashed domain whose on_crash is restart, under the same name', async () => {
    const r = await m.createDomain({ name: 'phoenix', memoryKiB: 4096, model: 'vp', onCrash: 'restart' });
    await r.agent.crashNow('oops');
    await r.exited;
    let again: number | undefined;
    for (let i = 0; i < 200 && again === undefined; i++) {
      again = m.domainList.find((h) => h.name === 'phoenix' && h.domid !== r.domid)?.domid;
      if (again === undefined) await new Promise((res) => setTimeout(res, 20));
    }
    expect(again, 'a new phoenix').to.be.a('number');
    const doms = await m.hv.domains();
    expect(doms.some((d) => d.domid === r.domid)).to.equal(false);
    expect(doms.find((d) => d.domid === again)?.state).to.equal('running');
    // The new instance works.
    const h = m.domain(again as number)!;
    expect((await h.agent.allocPage()).ok).to.equal(true);
    await m.destroyDomain(again as number);
    expect((await m.hv.reconcile()).ok).to.equal(true);
  });
});
