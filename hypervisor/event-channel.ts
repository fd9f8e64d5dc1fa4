/**
 * Event channels, 2-level ABI: the hypervisor's authoritative bindings, and
 * their seqlock-protected mirror in each domain's port table that the
 * fast-path send (evtchn-deliver.ts) reads on the sender's own vCPU.
 *
 * Hypercall arguments are passed by value in the mailbox (cmd, then the
 * struct's IN fields in order); OUT values come back as the second result.
 */
import { ECS, EVTCHNOP, SHARED_INFO } from '../shared/abi/evtchn.ts';
import { PORT_ENTRY } from '../shared/abi/machine.ts';
import { XEN_ERRNO } from '../shared/abi/xen.ts';
import { DOMID_SELF, type DomId, type MachineAddr } from '../shared/types.ts';
import type { Domain } from './domain.ts';
import { evtchnSend, evtchnUnmask, markPending } from './evtchn-deliver.ts';
import type { Hypervisor } from './hypervisor.ts';

/** [XEN] republishes d's binding of port in its port table (seqlock write). */
function publish(hv: Hypervisor, d: Domain, port: number): void {
  const mem = hv.mem;
  const base = (mem.frameAddr(d.portsMfn) + port * PORT_ENTRY.SIZE) as MachineAddr;
  const p = d.ports[port];
  if (p === undefined) return;
  const seq = mem.atomicLoad32(base);
  mem.atomicStore32(base, seq + 1); // odd: readers retry until we finish
  const peer = p.state === ECS.interdomain ? hv.domain(p.remoteDom) : undefined;
  mem.atomicStore32((base + PORT_ENTRY.stateDom) as MachineAddr, (p.state | (p.remoteDom << 8)) | 0);
  mem.atomicStore32((base + PORT_ENTRY.remotePort) as MachineAddr, p.remotePort);
  mem.atomicStore32((base + PORT_ENTRY.remoteSlot) as MachineAddr, peer?.slot ?? -1);
  mem.atomicStore32(base, seq + 2); // even: stable; readers that saw seq+0 retry
}

function allocPort(d: Domain): number {
  for (let p = 1; p < d.ports.length; p++) if ((d.ports[p] as { state: number }).state === ECS.closed) return p;
  return -1;
}

function validPort(d: Domain, port: number): boolean {
  return Number.isInteger(port) && port > 0 && port < d.ports.length;
}

/** Frees a port: its pending bit is cleared so a reused port starts quiet (free_evtchn). */
function freePort(hv: Hypervisor, d: Domain, port: number): void {
  const p = d.ports[port];
  if (p === undefined) return;
  p.state = ECS.closed; p.remoteDom = 0 as DomId; p.remotePort = 0;
  publish(hv, d, port);
  const si = hv.layout.sharedInfo(d.slot);
  hv.mem.atomicAnd32((si + SHARED_INFO.evtchn_pending + (port >>> 5) * 4) as MachineAddr, ~(1 << (port & 31)));
}

/** EVTCHNOP_close: the peer of an interdomain channel reverts to unbound (bindable by us again). */
export function closePort(hv: Hypervisor, d: Domain, port: number): number {
  if (!validPort(d, port)) return -XEN_ERRNO.EINVAL;
  const p = d.ports[port] as { state: number; remoteDom: DomId; remotePort: number };
  if (p.state === ECS.closed) return -XEN_ERRNO.EINVAL;
  if (p.state === ECS.interdomain) {
    const peer = hv.domain(p.remoteDom);
    const pp = peer?.ports[p.remotePort];
    if (peer !== undefined && pp !== undefined && pp.state === ECS.interdomain && pp.remoteDom === d.domid && pp.remotePort === port) {
      pp.state = ECS.unbound; pp.remoteDom = d.domid; pp.remotePort = 0;
      publish(hv, peer, p.remotePort);
    }
  }
  freePort(hv, d, port);
  return 0;
}

export function closeAllPorts(hv: Hypervisor, d: Domain): void {
  for (let p = 1; p < d.ports.length; p++) if ((d.ports[p] as { state: number }).state !== ECS.closed) closePort(hv, d, p);
}

export function eventChannelOp(hv: Hypervisor, d: Domain, cmd: number, args: readonly number[]): [number, number] {
  const a1 = args[1] ?? 0;
  const a2 = args[2] ?? 0;
  switch (cmd) {
    case EVTCHNOP.alloc_unbound: {
      // IN: dom (DOMID_SELF, or any domain for a privileged caller), remote_dom. OUT: port.
      const dom = a1 === DOMID_SELF ? d.domid : a1;
      // As Xen: an unknown (or dying) domain is -ESRCH first, then a non-privileged caller naming another is -EPERM.
      const owner = dom === d.domid ? d : hv.domain(dom);
      if (owner === undefined || !owner.alive) return [-XEN_ERRNO.ESRCH, 0];
      if (owner !== d && !d.spec.privileged) return [-XEN_ERRNO.EPERM, 0];
      const remote = a2 === DOMID_SELF ? d.domid : a2;
      if (!(Number.isInteger(remote) && remote >= 0 && remote < 0x7ff0)) return [-XEN_ERRNO.EINVAL, 0];
      const port = allocPort(owner);
      if (port < 0) return [-XEN_ERRNO.ENOSPC, 0];
      const p = owner.ports[port] as { state: number; remoteDom: DomId; remotePort: number };
      p.state = ECS.unbound; p.remoteDom = remote as DomId; p.remotePort = 0;
      publish(hv, owner, port);
      return [0, port];
    }
    case EVTCHNOP.bind_interdomain: {
      // IN: remote_dom, remote_port. OUT: local_port.
      const rd = hv.domain(a1 === DOMID_SELF ? d.domid : a1);
      if (rd === undefined || !rd.alive) return [-XEN_ERRNO.ESRCH, 0];
      if (!validPort(rd, a2)) return [-XEN_ERRNO.EINVAL, 0];
      const rp = rd.ports[a2] as { state: number; remoteDom: DomId; remotePort: number };
      if (rp.state !== ECS.unbound || rp.remoteDom !== d.domid) return [-XEN_ERRNO.EINVAL, 0];
      const port = allocPort(d);
      if (port < 0) return [-XEN_ERRNO.ENOSPC, 0];
      const lp = d.ports[port] as { state: number; remoteDom: DomId; remotePort: number };
      lp.state = ECS.interdomain; lp.remoteDom = rd.domid; lp.remotePort = a2;
      rp.state = ECS.interdomain; rp.remoteDom = d.domid; rp.remotePort = port;
      publish(hv, rd, a2);
      publish(hv, d, port);
      // As Xen does: the new local port starts pending, since the peer may have
      // sent before we bound ("possibly a stale event").
      markPending(hv.layout, d.slot, port);
      return [0, port];
    }
    case EVTCHNOP.close:
      return [closePort(hv, d, a1), 0];
    case EVTCHNOP.send:
      return [evtchnSend(hv.layout, d.slot, a1), 0];
    case EVTCHNOP.unmask:
      return [evtchnUnmask(hv.layout, d.slot, a1), 0];
    case EVTCHNOP.status: {
      if (!validPort(d, a1)) return [-XEN_ERRNO.EINVAL, 0];
      const p = d.ports[a1] as { state: number; remoteDom: DomId; remotePort: number };
      return [p.state, p.state === ECS.interdomain ? (p.remoteDom << 16) | p.remotePort : p.remoteDom];
    }
    default:
      return [-XEN_ERRNO.ENOSYS, 0];
  }
}
