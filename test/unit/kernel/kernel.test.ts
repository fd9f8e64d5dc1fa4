import { expect } from 'chai';
import { DCB } from '../../../shared/abi/machine.ts';
import { HYPERVISOR } from '../../../shared/abi/xen.ts';
import { testMachine } from '../../helpers/machine.ts';
import type { Pfn } from '../../../shared/types.ts';

function machine() {
  const m = testMachine(16 << 20);
  const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 2048, model: 'pm', privileged: true }, { grantFrames: 1, idleMs: 2 });
  const pv = m.domain({ name: 'pv', memoryKiB: 512, model: 'p2m' }, { grantFrames: 1, idleMs: 2 });
  const vp = m.domain({ name: 'vp', memoryKiB: 512, model: 'vp' }, { grantFrames: 1, idleMs: 2 });
  return { m, d0, pv, vp };
}

describe('DomainKernel (shared/kernel/kernel.ts)', () => {
  it('boots each memory model with its pools, grant table and shared_info where the boot info says', () => {
    const { m, d0, pv, vp } = machine();
    for (const k of [d0, pv, vp]) {
      const d = m.hv.domain(k.domid)!;
      expect(k.ram.available).to.equal(k.boot.ramPages - k.boot.p2mListPages);
      expect(k.ballooned.available).to.equal(k.boot.foreignPages);
      expect(d.grantFrames.length).to.equal(1);
      expect(d.p2m.lookup(k.boot.grantPfnBase as Pfn)).to.equal(d.grantFrames[0]);
      expect(d.p2m.lookup(k.boot.sharedInfoPfn as Pfn)).to.equal(m.mem.frameOf(k.layout.sharedInfo(k.boot.slot)));
      expect(k.gpa(3 as Pfn, 5)).to.equal(3 * 4096 + 5);
    }
    // P==M: pfn is the frame; PV: the frame comes from the guest's own list; vp: the pfn (a GFN).
    const p = d0.ram.alloc();
    expect(d0.frameOf(p)).to.equal(p);
    expect(m.hv.domain(0)!.p2m.lookup(p)).to.equal(p);
    const q = pv.ram.alloc();
    expect(pv.frameOf(q)).to.equal(m.hv.domain(pv.domid)!.p2m.lookup(q));
    const r = vp.ram.alloc();
    expect(vp.frameOf(r)).to.equal(r);
  });

  it('idles: returns at once for a pending upcall or a control kick, and times out otherwise', () => {
    const { vp } = machine();
    const t0 = performance.now();
    expect(vp.idleOnce(5)).to.equal('timeout');
    expect(performance.now() - t0).to.be.at.least(4);
    expect(vp.sleeps).to.equal(1);
    vp.kick();
    expect(vp.idleOnce(1000)).to.equal('control');
    vp.machine.atomicStore32(vp.layout.dcbField(vp.boot.slot, DCB.control), 0);
    const p1 = vp.evtchn.allocUnbound(vp.domid);
    vp.evtchn.bindInterdomain(vp.domid, p1); // the bind-time event raises an upcall
    const t1 = performance.now();
    expect(vp.idleOnce(1000)).to.equal('event');
    expect(performance.now() - t1).to.be.below(500);
    expect(vp.lostWakeups).to.equal(0);
  });

  it('waitFor runs handlers until the condition holds, and gives up after its timeout', () => {
    const { vp } = machine();
    const p1 = vp.evtchn.allocUnbound(vp.domid);
    const p2 = vp.evtchn.bindInterdomain(vp.domid, p1);
    let hits = 0;
    vp.bindHandler(p2, () => { hits++; });
    vp.evtchn.notify(p1);
    expect(vp.waitFor(() => hits > 0, 1000)).to.equal(true);
    const t0 = performance.now();
    expect(vp.waitFor(() => hits > 5, 20)).to.equal(false);
    expect(performance.now() - t0).to.be.within(15, 2000);
    expect(vp.lostWakeups).to.equal(0);
  });

  it('runs its vCPU loop, serving events, until stopped', async () => {
    const { vp } = machine();
    const p1 = vp.evtchn.allocUnbound(vp.domid);
    const p2 = vp.evtchn.bindInterdomain(vp.domid, p1);
    let hits = 0;
    vp.bindHandler(p2, () => { hits++; if (hits < 3) vp.evtchn.notify(p1); });
    const running = vp.run();
    await new Promise((r) => setTimeout(r, 30));
    expect(hits).to.equal(3); // the bind-time event, then two re-sends from the handler
    vp.stop();
    await running;
    // Its hypercalls went through the single-thread path.
    expect(vp.hc.calls).to.be.greaterThan(0);
    expect(vp.hc.call(HYPERVISOR.xensim_nop)).to.deep.equal([0, 0]);
  });
});
