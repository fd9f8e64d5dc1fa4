/**
 * A guest kernel's event-channel layer (2-level): binds ports to handlers and
 * dispatches pending events from shared_info, as Linux's events_2l does.
 *
 * Upcall protocol, receiver side: clear upcall_pending, exchange the selector
 * to 0, then for each selected word scan pending & ~mask, clearing each bit
 * before calling its handler — so an event sent during the handler sets the
 * bit again and is seen on the next pass. Sends go through the fast path
 * (hypervisor/evtchn-deliver.ts) on this worker; binds and closes are hypercalls.
 */
import { ECS, EVTCHNOP, SHARED_INFO, VCPU_INFO } from '../abi/evtchn.ts';
import { HYPERVISOR, errnoName } from '../abi/xen.ts';
import type { DomainMemory } from '../memory/domain-memory.ts';
import type { MachineLayout } from '../machine-layout.ts';
import { evtchnSend, evtchnUnmask } from '../../hypervisor/evtchn-deliver.ts';
import type { Hypercaller } from '../hypercall/channel.ts';
import { asPort, DOMID_SELF, type GuestAddr, type Port } from '../types.ts';

export type EventHandler = (port: Port) => void;

export class EvtchnError extends Error {
  override readonly name = 'EvtchnError';
  constructor(readonly op: string, readonly errno: number) {
    super(`${op} failed: ${errnoName(errno)}`);
  }
}

export class EventChannels {
  private readonly handlers = new Map<number, EventHandler>();
  private readonly si: number;
  /** Events dispatched to handlers, and events that found no handler. */
  delivered = 0;
  spurious = 0;

  constructor(
    private readonly mem: DomainMemory,
    private readonly layout: MachineLayout,
    private readonly slot: number,
    private readonly hc: Hypercaller,
    sharedInfoPfn: number,
    readonly nrPorts: number,
  ) {
    this.si = sharedInfoPfn * mem.pageSize;
  }

  private g(off: number): GuestAddr { return (this.si + off) as GuestAddr; }

  /** [allocUnbound remoteDom] makes a port that remoteDom may bind to. */
  allocUnbound(remoteDom: number): Port {
    const [r, port] = this.hc.call(HYPERVISOR.event_channel_op, EVTCHNOP.alloc_unbound, DOMID_SELF, remoteDom);
    if (r < 0) throw new EvtchnError('EVTCHNOP_alloc_unbound', r);
    return asPort(port);
  }
  /** [bindInterdomain remoteDom remotePort] connects to a peer's unbound port. */
  bindInterdomain(remoteDom: number, remotePort: number): Port {
    const [r, port] = this.hc.call(HYPERVISOR.event_channel_op, EVTCHNOP.bind_interdomain, remoteDom, remotePort);
    if (r < 0) throw new EvtchnError('EVTCHNOP_bind_interdomain', r);
    return asPort(port);
  }
  close(port: Port): void {
    this.handlers.delete(port);
    const [r] = this.hc.call(HYPERVISOR.event_channel_op, EVTCHNOP.close, port);
    if (r < 0) throw new EvtchnError('EVTCHNOP_close', r);
  }
  status(port: Port): number {
    const [r] = this.hc.call(HYPERVISOR.event_channel_op, EVTCHNOP.status, port);
    return r < 0 ? ECS.closed : r;
  }

  /**
   * [bind port handler] routes port's events to handler and unmasks the port,
   * as Linux's irq start-up does: a port number reused after being closed
   * while masked must not stay deaf. An event already pending fires now.
   */
  bind(port: Port, handler: EventHandler): void {
    this.handlers.set(port, handler);
    this.unmask(port);
  }
  unbind(port: Port): void { this.handlers.delete(port); }

  /** [notify port] is EVTCHNOP_send on this vCPU (fast path). */
  notify(port: Port): void {
    const r = evtchnSend(this.layout, this.slot, port);
    if (r < 0) throw new EvtchnError('EVTCHNOP_send', r);
  }

  mask(port: Port): void {
    this.mem.atomicOr32(this.g(SHARED_INFO.evtchn_mask + (port >>> 5) * 4), 1 << (port & 31));
  }
  /** [unmask port] clears the mask; an event that arrived while masked fires now. */
  unmask(port: Port): void {
    const r = evtchnUnmask(this.layout, this.slot, port);
    if (r < 0) throw new EvtchnError('EVTCHNOP_unmask', r);
  }
  isPending(port: Port): boolean {
    return (this.mem.atomicLoad32(this.g(SHARED_INFO.evtchn_pending + (port >>> 5) * 4)) & (1 << (port & 31))) !== 0;
  }

  /** [upcallPending] tells whether Xen has flagged an upcall since the last dispatch. */
  upcallPending(): boolean {
    return (this.mem.atomicLoad32(this.g(VCPU_INFO.evtchn_upcall_pending)) & 1) !== 0;
  }

  /** [dispatch] runs handlers for every pending, unmasked port; returns how many. */
  dispatch(): number {
    if (!this.upcallPending()) return 0;
    let n = 0;
    // Clear first: an event arriving from here on raises the upcall again.
    this.mem.atomicAnd32(this.g(VCPU_INFO.evtchn_upcall_pending), ~1);
    const selWords = Math.ceil(this.nrPorts / 64 / 32);
    for (let sw = 0; sw < selWords; sw++) {
      let sel = this.mem.atomicExchange32(this.g(VCPU_INFO.evtchn_pending_sel + sw * 4), 0) >>> 0;
      while (sel !== 0) {
        const sb = 31 - Math.clz32(sel);
        sel &= ~(1 << sb);
        const word64 = sw * 32 + sb;
        for (let half = 0; half < 2; half++) {
          const w = word64 * 2 + half;
          const pendAddr = this.g(SHARED_INFO.evtchn_pending + w * 4);
          let bits = (this.mem.atomicLoad32(pendAddr) & ~this.mem.atomicLoad32(this.g(SHARED_INFO.evtchn_mask + w * 4))) >>> 0;
          while (bits !== 0) {
            const b = 31 - Math.clz32(bits);
            bits &= ~(1 << b);
            // Clear before handling: the handler's final check plus a new send re-set it.
            this.mem.atomicAnd32(pendAddr, ~(1 << b));
            const port = (w * 32 + b) as Port;
            const h = this.handlers.get(port);
            if (h === undefined) { this.spurious++; continue; }
            this.delivered++;
            n++;
            h(port);
          }
        }
      }
    }
    return n;
  }
}
