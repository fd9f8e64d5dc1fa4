import { expect } from 'chai';
import { ECS, SHARED_INFO, VCPU_INFO } from '../../../shared/abi/evtchn.ts';
import { EvtchnError } from '../../../shared/kernel/evtchn.ts';
import { testMachine } from '../../helpers/machine.ts';
import type { DomainKernel } from '../../../shared/kernel/kernel.ts';
import { asPort, type MachineAddr, type Port } from '../../../shared/types.ts';

function machine(nrPorts?: number) {
  const m = testMachine(16 << 20);
  const a = m.domain({ name: 'a', memoryKiB: 512, model: 'vp', nrPorts }, { grantFrames: 1 });
  const b = m.domain({ name: 'b', memoryKiB: 512, model: 'vp', nrPorts }, { grantFrames: 1 });
  return { m, a, b };
}

/** A loopback channel inside one domain: notify(p1) raises p2 and vice versa. */
function loopback(k: DomainKernel): [Port, Port] {
  const p1 = k.evtchn.allocUnbound(k.domid);
  const p2 = k.evtchn.bindInterdomain(k.domid, p1);
  k.evtchn.dispatch(); // drop the bind-time event
  return [p1, p2];
}

describe('guest event channels (shared/kernel/evtchn.ts)', () => {
  it('clears each bit before calling its handler, so an event sent from the handler is seen on the next dispatch', () => {
    const { a } = machine();
    const [p1, p2] = loopback(a);
    const seen: number[] = [];
    a.evtchn.bind(p2, (p) => {
      seen.push(p);
      // While we handle p2, its bit must already be clear: this send must re-raise it.
      expect(a.evtchn.isPending(p2)).to.equal(false);
      if (seen.length === 1) a.evtchn.notify(p1);
    });
    a.evtchn.notify(p1);
    expect(a.evtchn.dispatch()).to.equal(1);
    expect(a.evtchn.upcallPending()).to.equal(true);
    expect(a.evtchn.isPending(p2)).to.equal(true);
    expect(a.evtchn.dispatch()).to.equal(1);
    expect(seen).to.deep.equal([p2, p2]);
    expect(a.evtchn.dispatch()).to.equal(0);
    expect(a.evtchn.upcallPending()).to.equal(false);
  });

  it('consumes upcall_pending and the selector on dispatch, and does nothing without an upcall', () => {
    const { a, b } = machine();
    const pa = a.evtchn.allocUnbound(b.domid);
    const pb = b.evtchn.bindInterdomain(a.domid, pa);
    let n = 0;
    b.evtchn.bind(pb, () => { n++; });
    b.evtchn.dispatch();
    n = 0;
    a.evtchn.notify(pa);
    const si = b.layout.sharedInfo(b.boot.slot);
    expect(b.machine.getU8(si)).to.equal(1);
    // Pending bit set but no upcall flagged: the guest does not scan (2-level protocol).
    b.machine.atomicAnd32((si + VCPU_INFO.evtchn_upcall_pending) as MachineAddr, ~1);
    expect(b.evtchn.dispatch()).to.equal(0);
    expect(n).to.equal(0);
    b.machine.atomicOr32((si + VCPU_INFO.evtchn_upcall_pending) as MachineAddr, 1);
    expect(b.evtchn.dispatch()).to.equal(1);
    expect(b.machine.getU8(si)).to.equal(0);
    expect(b.machine.getU32((si + VCPU_INFO.evtchn_pending_sel) as MachineAddr)).to.equal(0);
    expect(b.machine.getU32((si + SHARED_INFO.evtchn_pending) as MachineAddr)).to.equal(0);
    expect(b.evtchn.delivered).to.equal(2);
  });

  it('counts a pending port with no handler as spurious and clears it', () => {
    const { a, b } = machine();
    const pa = a.evtchn.allocUnbound(b.domid);
    const pb = b.evtchn.bindInterdomain(a.domid, pa);
    expect(b.evtchn.dispatch()).to.equal(0);
    expect(b.evtchn.spurious).to.equal(1);
    expect(b.evtchn.isPending(pb)).to.equal(false);
  });

  it('never calls the handler of a port closed by an earlier handler in the same dispatch (XSA-331)', () => {
    const { a, b } = machine();
    const pa1 = a.evtchn.allocUnbound(b.domid);
    const pb1 = b.evtchn.bindInterdomain(a.domid, pa1);
    const pa2 = a.evtchn.allocUnbound(b.domid);
    const pb2 = b.evtchn.bindInterdomain(a.domid, pa2);
    b.evtchn.dispatch();
    const calls: number[] = [];
    // dispatch scans high bits first: pb2 > pb1.
    b.evtchn.bind(pb2, (p) => { calls.push(p); b.evtchn.close(pb1); });
    b.evtchn.bind(pb1, (p) => { calls.push(p); });
    a.evtchn.notify(pa1);
    a.evtchn.notify(pa2);
    expect(b.evtchn.dispatch()).to.equal(1);
    expect(calls).to.deep.equal([pb2]);
    expect(b.evtchn.status(pb1)).to.equal(ECS.closed);
    expect(b.evtchn.isPending(pb1)).to.equal(false);
  });

  it('dispatches ports in every pending word and selector word, up to the 2-level limit of 4096', () => {
    const { a } = machine(4096);
    const ports: Port[] = [];
    for (let i = 0; i < 4095; i++) ports.push(a.evtchn.allocUnbound(a.domid));
    expect(ports[ports.length - 1]).to.equal(4095);
    // Every port is now unbound (offered to ourselves). Free 11 spares, and bind each
    // chosen port to one of them, so that notifying the spare raises the chosen port.
    const chosen = [1, 31, 32, 63, 64, 1023, 1024, 2047, 2048, 3001, 4095];
    const got: number[] = [];
    const spares = [4094, 4093, 4092, 4091, 4090, 4089, 4088, 4087, 4086, 4085, 4084];
    for (const s of spares) a.evtchn.close(asPort(s));
    const senders: Port[] = [];
    for (const p of chosen) {
      const s = a.evtchn.bindInterdomain(a.domid, p);
      senders.push(s);
      a.evtchn.bind(asPort(p), (x) => got.push(x));
      a.evtchn.bind(s, () => {});
    }
    a.evtchn.dispatch();
    got.length = 0;
    for (const s of senders) a.evtchn.notify(s);
    const si = a.layout.sharedInfo(a.boot.slot);
    expect(a.machine.getU32((si + VCPU_INFO.evtchn_pending_sel + 4) as MachineAddr)).to.not.equal(0); // second selector word used
    expect(a.evtchn.dispatch()).to.equal(chosen.length);
    expect([...got].sort((x, y) => x - y)).to.deep.equal(chosen);
  });

  it('throws EvtchnError for sends on closed ports and failed binds, and reports closed status for bad ports', () => {
    const { a, b } = machine(64);
    expect(() => a.evtchn.notify(asPort(5))).to.throw(EvtchnError, /EINVAL/);
    expect(() => a.evtchn.bindInterdomain(b.domid, 5)).to.throw(EvtchnError, /EVTCHNOP_bind_interdomain failed: EINVAL/);
    expect(() => a.evtchn.close(asPort(5))).to.throw(EvtchnError, /EVTCHNOP_close/);
    expect(() => a.evtchn.unmask(asPort(64))).to.throw(EvtchnError, /EVTCHNOP_unmask/);
    expect(a.evtchn.status(asPort(5))).to.equal(ECS.closed);
    expect(a.evtchn.status(asPort(9999))).to.equal(ECS.closed);
    const p = a.evtchn.allocUnbound(b.domid);
    expect(a.evtchn.status(p)).to.equal(ECS.unbound);
    // A send on an unbound port is accepted and goes nowhere, as in Xen.
    expect(() => a.evtchn.notify(p)).to.not.throw();
  });
});
