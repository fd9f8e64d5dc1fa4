import { expect } from 'chai';
import fc from 'fast-check';
import { ECS, EVTCHNOP, SHARED_INFO, VCPU_INFO } from '../../../shared/abi/evtchn.ts';
import { DCB, PORT_ENTRY } from '../../../shared/abi/machine.ts';
import { HYPERVISOR, XEN_ERRNO } from '../../../shared/abi/xen.ts';
import { evtchnSend, readPortBinding, withLiveSlot } from '../../../hypervisor/evtchn-deliver.ts';
import { testMachine } from '../../helpers/machine.ts';
import type { DomainKernel } from '../../../shared/kernel/kernel.ts';
import { asPort, DOMID_SELF, type MachineAddr, type Port } from '../../../shared/types.ts';

const op = (k: DomainKernel, cmd: number, a1 = 0, a2 = 0) => k.hc.call(HYPERVISOR.event_channel_op, cmd, a1, a2);
const EINVAL = -XEN_ERRNO.EINVAL;

function si(k: DomainKernel, off: number): MachineAddr { return (k.layout.sharedInfo(k.boot.slot) + off) as MachineAddr; }
function dcb(k: DomainKernel, field: number): number { return k.machine.atomicLoad32(k.layout.dcbField(k.boot.slot, field)); }
function bit(k: DomainKernel, base: number, port: number): boolean {
  return (k.machine.atomicLoad32(si(k, base + (port >>> 5) * 4)) & (1 << (port & 31))) !== 0;
}
function sharedInfoIsZero(k: DomainKernel): boolean {
  return k.machine.bytesEqual(k.layout.sharedInfo(k.boot.slot), new Uint8Array(k.pageSize));
}

function trio(nrPorts?: number) {
  const m = testMachine(16 << 20);
  const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 2048, model: 'pm', privileged: true }, { grantFrames: 1 });
  const a = m.domain({ name: 'a', memoryKiB: 512, model: 'vp', nrPorts }, { grantFrames: 1 });
  const b = m.domain({ name: 'b', memoryKiB: 512, model: 'p2m', nrPorts }, { grantFrames: 1 });
  return { m, hv: m.hv, d0, a, b };
}

/** a offers a port to b, b binds it; the bind-time stale event on b is drained. */
function connect(a: DomainKernel, b: DomainKernel): { pa: Port; pb: Port } {
  const pa = a.evtchn.allocUnbound(b.domid);
  const pb = b.evtchn.bindInterdomain(a.domid, pa);
  b.evtchn.bind(pb, () => {});
  b.evtchn.dispatch();
  b.evtchn.unbind(pb);
  return { pa, pb };
}

describe('event channels: binding rules', () => {
  it('lets only the domain an unbound port was offered to bind it, once', () => {
    const { d0, a, b } = trio();
    const pa = a.evtchn.allocUnbound(b.domid);
    expect(op(a, EVTCHNOP.status, pa)).to.deep.equal([ECS.unbound, b.domid]);
    expect(op(d0, EVTCHNOP.bind_interdomain, a.domid, pa)).to.deep.equal([EINVAL, 0]);
    const [r, pb] = op(b, EVTCHNOP.bind_interdomain, a.domid, pa);
    expect(r).to.equal(0);
    expect(op(a, EVTCHNOP.status, pa)).to.deep.equal([ECS.interdomain, (b.domid << 16) | pb]);
    expect(op(b, EVTCHNOP.status, pb)).to.deep.equal([ECS.interdomain, (a.domid << 16) | pa]);
    // Already bound: nobody can bind it again, not even b.
    expect(op(b, EVTCHNOP.bind_interdomain, a.domid, pa)[0]).to.equal(EINVAL);
    // A closed port, port 0, and a domain that does not exist.
    expect(op(b, EVTCHNOP.bind_interdomain, a.domid, pa + 5)[0]).to.equal(EINVAL);
    expect(op(b, EVTCHNOP.bind_interdomain, a.domid, 0)[0]).to.equal(EINVAL);
    expect(op(b, EVTCHNOP.bind_interdomain, 4000, pa)[0]).to.equal(-XEN_ERRNO.ESRCH);
    // The new local port starts pending, as in Xen (the peer may have sent before the bind).
    expect(b.evtchn.isPending(asPort(pb))).to.equal(true);
  });

  it('reverts the peer to unbound with remote = the closer when one end closes, and lets the closer bind again', () => {
    const { a, b } = trio();
    const { pa, pb } = connect(a, b);
    b.evtchn.close(pb);
    expect(op(b, EVTCHNOP.status, pb)).to.deep.equal([ECS.closed, 0]);
    expect(op(a, EVTCHNOP.status, pa)).to.deep.equal([ECS.unbound, b.domid]);
    expect(op(b, EVTCHNOP.close, pb)[0]).to.equal(EINVAL); // already closed
    // a's sends now go nowhere, without error.
    expect(evtchnSend(a.layout, a.boot.slot, pa)).to.equal(0);
    const pb2 = b.evtchn.bindInterdomain(a.domid, pa);
    expect(op(a, EVTCHNOP.status, pa)).to.deep.equal([ECS.interdomain, (b.domid << 16) | pb2]);
    // Closing the other end does the mirror image.
    a.evtchn.close(pa);
    expect(op(b, EVTCHNOP.status, pb2)).to.deep.equal([ECS.unbound, a.domid]);
  });

  it('supports a loopback channel between two ports of one domain', () => {
    const { a } = trio();
    const p1 = a.evtchn.allocUnbound(a.domid);
    const [r, p2] = op(a, EVTCHNOP.bind_interdomain, DOMID_SELF, p1);
    expect(r).to.equal(0);
    a.evtchn.dispatch();
    expect(a.evtchn.isPending(asPort(p2))).to.equal(false);
    a.evtchn.notify(p1);
    expect(a.evtchn.isPending(asPort(p2))).to.equal(true);
    a.evtchn.close(asPort(p2));
    expect(op(a, EVTCHNOP.status, p1)).to.deep.equal([ECS.unbound, a.domid]);
  });

  it('starts a port reused after close without a stale pending bit', () => {
    const { a, b } = trio();
    const { pa, pb } = connect(a, b);
    b.evtchn.notify(pb); // pa pending on a's side
    expect(a.evtchn.isPending(pa)).to.equal(true);
    a.evtchn.close(pa);
    expect(a.evtchn.isPending(pa)).to.equal(false);
    const again = a.evtchn.allocUnbound(b.domid);
    expect(again).to.equal(pa);
    expect(a.evtchn.isPending(again)).to.equal(false);
    // Same on a port that was pending from its bind and never dispatched.
    const pa2 = a.evtchn.allocUnbound(b.domid);
    const [, pb2] = op(b, EVTCHNOP.bind_interdomain, a.domid, pa2);
    expect(b.evtchn.isPending(asPort(pb2))).to.equal(true);
    b.evtchn.close(asPort(pb2));
    const reused = b.evtchn.allocUnbound(a.domid);
    expect(reused).to.equal(pb2);
    expect(b.evtchn.isPending(reused)).to.equal(false);
    expect(pb).to.not.equal(reused);
  });

  it('lets a privileged domain allocate in another domain, refuses others, and runs out of ports cleanly', () => {
    const { d0, a, b } = trio(64);
    const [r, p] = op(d0, EVTCHNOP.alloc_unbound, a.domid, 0);
    expect(r).to.equal(0);
    expect(op(a, EVTCHNOP.status, p)).to.deep.equal([ECS.unbound, 0]);
    expect(op(b, EVTCHNOP.alloc_unbound, a.domid, b.domid)[0]).to.equal(-XEN_ERRNO.EPERM);
    expect(op(d0, EVTCHNOP.alloc_unbound, 4000, 0)[0]).to.equal(-XEN_ERRNO.ESRCH);
    expect(op(b, EVTCHNOP.alloc_unbound, 4000, 0)[0]).to.equal(-XEN_ERRNO.ESRCH);
    expect(op(b, EVTCHNOP.alloc_unbound, DOMID_SELF, 0x7ff5)[0]).to.equal(EINVAL);
    // b has 63 usable ports (port 0 is never handed out).
    const got: number[] = [];
    for (;;) {
      const [rr, pp] = op(b, EVTCHNOP.alloc_unbound, DOMID_SELF, 0);
      if (rr !== 0) { expect(rr).to.equal(-XEN_ERRNO.ENOSPC); break; }
      got.push(pp);
    }
    expect(got.length).to.equal(63);
    expect(Math.min(...got)).to.equal(1);
    expect(Math.max(...got)).to.equal(63);
    expect(op(a, EVTCHNOP.bind_interdomain, b.domid, 5)[0]).to.equal(EINVAL); // offered to dom0, not a
  });

  it('refuses alloc_unbound in a dying domain from a privileged caller', () => {
    const { hv, d0, a, b } = trio();
    // Keep a as a zombie: b maps one of its grants.
    const pfn = a.ram.alloc();
    const ref = a.gnttab.grantForeignAccess(b.domid as never, pfn, true)!;
    const [mr] = b.gnttab.mapGrantRefs([{ domid: a.domid as never, ref, readonly: true, hostPfn: b.ballooned.alloc() }]);
    expect(mr?.status).to.equal(0);
    expect(hv.destroyDomain(a.domid)).to.deep.equal({ ok: true, value: 'zombie' });
    expect(op(d0, EVTCHNOP.alloc_unbound, a.domid, 0)[0]).to.equal(-XEN_ERRNO.ESRCH);
    expect(hv.domain(a.domid)?.ports.every((p) => p.state === ECS.closed)).to.equal(true);
  });
});

describe('event channels: delivery into shared_info', () => {
  it('sets the pending bit at shared_info+2048, the selector and upcall_pending in vcpu_info, and kicks once', () => {
    // Xen's x86_64 offsets, pinned here too so a changed constant cannot pass unnoticed.
    expect([SHARED_INFO.evtchn_pending, SHARED_INFO.evtchn_mask, VCPU_INFO.evtchn_upcall_pending, VCPU_INFO.evtchn_pending_sel]).to.deep.equal([2048, 2560, 0, 8]);
    const { a, b } = trio();
    // Open enough ports that the channel lands in pending word 2 and selector bit 1.
    let pb: Port = 0 as Port;
    let pa: Port = 0 as Port;
    while (pb < 70) ({ pa, pb } = connect(a, b));
    b.evtchn.dispatch();
    b.machine.fill(si(b, 0), 4096, 0); // start from a quiet page
    const wake = dcb(b, DCB.wake);
    a.evtchn.notify(pa);
    expect(b.machine.atomicLoad32(si(b, SHARED_INFO.evtchn_pending + (pb >>> 5) * 4)) >>> 0).to.equal((1 << (pb & 31)) >>> 0);
    expect(b.machine.getU32(si(b, VCPU_INFO.evtchn_pending_sel))).to.equal(1 << (pb >>> 6));
    expect(b.machine.getU8(si(b, VCPU_INFO.evtchn_upcall_pending))).to.equal(1);
    expect(b.machine.getU8(si(b, VCPU_INFO.evtchn_upcall_mask))).to.equal(0);
    expect(dcb(b, DCB.wake)).to.equal(wake + 1);
    // Nothing else on the page moved.
    let set = 0;
    for (let off = 0; off < 4096; off += 4) if (b.machine.getU32(si(b, off)) !== 0) set++;
    expect(set).to.equal(3);
    expect(b.evtchn.upcallPending()).to.equal(true);
  });

  it('keeps an event sent to a masked port pending, without upcall or kick, and fires it once on unmask', () => {
    const { a, b } = trio();
    const { pa, pb } = connect(a, b);
    let fired = 0;
    b.evtchn.bind(pb, () => { fired++; });
    b.evtchn.mask(pb);
    expect(bit(b, SHARED_INFO.evtchn_mask, pb)).to.equal(true);
    const wake = dcb(b, DCB.wake);
    a.evtchn.notify(pa);
    a.evtchn.notify(pa);
    expect(bit(b, SHARED_INFO.evtchn_pending, pb)).to.equal(true);
    expect(b.evtchn.upcallPending()).to.equal(false);
    expect(dcb(b, DCB.wake)).to.equal(wake);
    expect(b.evtchn.dispatch()).to.equal(0);
    expect(fired).to.equal(0);
    b.evtchn.unmask(pb);
    expect(bit(b, SHARED_INFO.evtchn_mask, pb)).to.equal(false);
    expect(b.evtchn.upcallPending()).to.equal(true);
    expect(dcb(b, DCB.wake)).to.equal(wake + 1);
    expect(b.evtchn.dispatch()).to.equal(1);
    expect(fired).to.equal(1);
    expect(b.evtchn.dispatch()).to.equal(0);
    // Unmasking a port with nothing pending raises nothing.
    b.evtchn.mask(pb);
    b.evtchn.unmask(pb);
    expect(b.evtchn.upcallPending()).to.equal(false);
  });

  it('coalesces sends while the port is pending: one handler call, one kick, every send counted', () => {
    const { a, b } = trio();
    const { pa, pb } = connect(a, b);
    let fired = 0;
    b.evtchn.bind(pb, () => { fired++; });
    const wake = dcb(b, DCB.wake);
    const sent = dcb(a, DCB.statEvtchnSent);
    const delivered = dcb(b, DCB.statEvtchnDelivered);
    for (let i = 0; i < 5; i++) a.evtchn.notify(pa);
    expect(dcb(b, DCB.wake)).to.equal(wake + 1);
    expect(dcb(a, DCB.statEvtchnSent)).to.equal(sent + 5);
    expect(dcb(b, DCB.statEvtchnDelivered)).to.equal(delivered + 5);
    expect(b.evtchn.dispatch()).to.equal(1);
    expect(fired).to.equal(1);
    a.evtchn.notify(pa);
    expect(b.evtchn.dispatch()).to.equal(1);
    expect(fired).to.equal(2);
  });

  it('drops sends to a destroyed domain without writing its freed slot', () => {
    const { m, hv, a, b } = trio();
    const { pa, pb } = connect(a, b);
    const slot = b.boot.slot;
    const delivered = dcb(b, DCB.statEvtchnDelivered);
    expect(hv.destroyDomain(b.domid)).to.deep.equal({ ok: true, value: 'destroyed' });
    m.mem.fill(b.layout.sharedInfo(slot), 4096, 0); // the freed page, scrubbed
    expect(() => a.evtchn.notify(pa)).to.not.throw();
    expect(op(a, EVTCHNOP.send, pa)).to.deep.equal([0, 0]);
    expect(sharedInfoIsZero(b)).to.equal(true);
    expect(dcb(b, DCB.statEvtchnDelivered)).to.equal(delivered);
    // A sender that read the binding before the close (a stale port-table snapshot,
    // forged here) still cannot reach the freed slot: the live-slot check refuses it.
    const entry = (m.mem.frameAddr(hv.domain(a.domid)!.portsMfn) + pa * PORT_ENTRY.SIZE) as MachineAddr;
    m.mem.atomicStore32((entry + PORT_ENTRY.stateDom) as MachineAddr, ECS.interdomain | (b.domid << 8));
    m.mem.atomicStore32((entry + PORT_ENTRY.remotePort) as MachineAddr, pb);
    m.mem.atomicStore32((entry + PORT_ENTRY.remoteSlot) as MachineAddr, slot);
    expect(readPortBinding(a.layout, a.boot.slot, pa)).to.deep.equal({ state: ECS.interdomain, remoteDom: b.domid, remotePort: pb, remoteSlot: slot });
    expect(evtchnSend(a.layout, a.boot.slot, pa)).to.equal(0);
    expect(sharedInfoIsZero(b)).to.equal(true);
    // Even once a new domain lives in that slot, the stale send does not reach it.
    const c = m.domain({ name: 'c', memoryKiB: 256, model: 'vp' }, { grantFrames: 1 });
    expect(c.boot.slot).to.equal(slot);
    expect(evtchnSend(a.layout, a.boot.slot, pa)).to.equal(0);
    expect(sharedInfoIsZero(c)).to.equal(true);
    let ran = false;
    expect(withLiveSlot(a.layout, slot, b.domid, () => { ran = true; })).to.equal(false);
    expect(ran).to.equal(false);
    expect(withLiveSlot(a.layout, slot, c.domid, () => { ran = true; })).to.equal(true);
    expect(ran).to.equal(true);
    expect(m.mem.atomicLoad32(a.layout.dcbField(slot, DCB.inflight))).to.equal(0);
  });

  it('does not deliver into a domain that is dying (slot state), only running or paused ones', () => {
    const { hv, a, b } = trio();
    const { pa, pb } = connect(a, b);
    hv.pause(b.domid);
    a.evtchn.notify(pa);
    expect(b.evtchn.isPending(pb)).to.equal(true);
    b.evtchn.dispatch();
    hv.unpause(b.domid);
    hv.shutdown(b.domid);
    b.machine.fill(si(b, 0), 4096, 0);
    a.evtchn.notify(pa);
    expect(sharedInfoIsZero(b)).to.equal(true);
  });

  it('answers -EINVAL for port 0 and ports at or beyond nrPorts, on every op and on both send paths', () => {
    const { a, b } = trio(64);
    for (const port of [0, 64, 65, 4095, 0xffff]) {
      expect(evtchnSend(b.layout, b.boot.slot, port), `send ${port}`).to.equal(EINVAL);
      expect(op(b, EVTCHNOP.send, port)[0], `send ${port}`).to.equal(EINVAL);
      expect(op(b, EVTCHNOP.unmask, port)[0], `unmask ${port}`).to.equal(EINVAL);
      expect(op(b, EVTCHNOP.close, port)[0], `close ${port}`).to.equal(EINVAL);
      expect(op(b, EVTCHNOP.status, port)[0], `status ${port}`).to.equal(EINVAL);
      expect(op(a, EVTCHNOP.bind_interdomain, b.domid, port)[0], `bind ${port}`).to.equal(EINVAL);
    }
    expect(op(b, 99)[0]).to.equal(-XEN_ERRNO.ENOSYS);
    expect(() => b.evtchn.notify(asPort(64))).to.throw(/EVTCHNOP_send failed: EINVAL/);
  });

  it('gives the same answer and the same effect on the fast path (port-table seqlock) as EVTCHNOP_send', () => {
    const { a, b } = trio();
    const { pa, pb } = connect(a, b);
    const unbound = a.evtchn.allocUnbound(b.domid);
    const closed = 200;
    for (const port of [pa, unbound, closed, 0, 1023, 1024, 5000]) {
      b.evtchn.dispatch();
      b.machine.fill(si(b, 0), 4096, 0);
      const fast = evtchnSend(a.layout, a.boot.slot, port);
      const fastPage = new Uint8Array(4096);
      b.machine.copyOut(si(b, 0), fastPage);
      b.machine.fill(si(b, 0), 4096, 0);
      const [slow] = op(a, EVTCHNOP.send, port);
      expect(slow, `port ${port}`).to.equal(fast);
      expect(b.machine.bytesEqual(si(b, 0), fastPage), `port ${port}`).to.equal(true);
    }
    expect(readPortBinding(a.layout, a.boot.slot, pa)).to.deep.equal({ state: ECS.interdomain, remoteDom: b.domid, remotePort: pb, remoteSlot: b.boot.slot });
    expect(readPortBinding(a.layout, a.boot.slot, 0)).to.equal(undefined);
  });

  it('keeps the port-table mirror equal to the hypervisor\'s bindings through random bind/close sequences (property)', () => {
    type Op = { k: 'alloc'; who: number; peer: number } | { k: 'bind'; who: number; pick: number } | { k: 'close'; who: number; pick: number } | { k: 'send'; who: number; port: number };
    const arb: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ k: fc.constant('alloc' as const), who: fc.nat(2), peer: fc.nat(2) }),
      fc.record({ k: fc.constant('bind' as const), who: fc.nat(2), pick: fc.nat() }),
      fc.record({ k: fc.constant('close' as const), who: fc.nat(2), pick: fc.nat() }),
      fc.record({ k: fc.constant('send' as const), who: fc.nat(2), port: fc.integer({ min: 0, max: 40 }) }),
    );
    fc.assert(fc.property(fc.array(arb, { maxLength: 40 }), (ops) => {
      const { hv, d0, a, b } = trio(32);
      const ks = [d0, a, b];
      for (const o of ops) {
        const k = ks[o.who]!;
        const d = hv.domain(k.domid)!;
        if (o.k === 'alloc') op(k, EVTCHNOP.alloc_unbound, DOMID_SELF, ks[o.peer]!.domid);
        else if (o.k === 'bind') {
          // Bind to some unbound port offered to us, if any.
          const offers: [number, number][] = [];
          for (const other of ks) hv.domain(other.domid)!.ports.forEach((p, i) => { if (p.state === ECS.unbound && p.remoteDom === k.domid) offers.push([other.domid, i]); });
          if (offers.length > 0) {
            const [dom, port] = offers[o.pick % offers.length]!;
            const [r] = op(k, EVTCHNOP.bind_interdomain, dom, port);
            expect([0, -XEN_ERRNO.ENOSPC]).to.include(r);
          }
        } else if (o.k === 'close') {
          const open = d.ports.map((p, i) => [p.state, i] as const).filter(([s, i]) => s !== ECS.closed && i > 0);
          if (open.length > 0) expect(op(k, EVTCHNOP.close, open[o.pick % open.length]![1])[0]).to.equal(0);
        } else {
          const st = d.ports[o.port]?.state;
          const expected = o.port > 0 && st !== undefined && st !== ECS.closed ? 0 : EINVAL;
          expect(evtchnSend(k.layout, k.boot.slot, o.port)).to.equal(expected);
        }
        // The mirror and the authoritative state agree on every port of every domain.
        for (const kk of ks) {
          const dd = hv.domain(kk.domid)!;
          for (let p = 1; p < 32; p++) {
            const want = dd.ports[p]!;
            const got = readPortBinding(kk.layout, kk.boot.slot, p)!;
            expect(got.state).to.equal(want.state);
            expect(got.remoteDom).to.equal(want.remoteDom);
            expect(got.remotePort).to.equal(want.remotePort);
            if (want.state === ECS.interdomain) {
              expect(got.remoteSlot).to.equal(hv.domain(want.remoteDom)!.slot);
              // And both ends point at each other.
              const peer = hv.domain(want.remoteDom)!.ports[want.remotePort]!;
              expect([peer.state, peer.remoteDom, peer.remotePort]).to.deep.equal([ECS.interdomain, kk.domid, p]);
            }
          }
        }
      }
    }), { numRuns: 60 });
  });
});
