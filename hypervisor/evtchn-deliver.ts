/**
 * The event-channel delivery path, as Xen runs it: on the *sending* vCPU.
 *
 * Xen has no hypervisor thread — EVTCHNOP_send executes on the caller's CPU,
 * under the channel's lock, and sets bits in the receiver's shared_info. xensim
 * does the same: the sender's worker runs this hypervisor code against the
 * hypervisor-written port table (a seqlock-protected mirror of the bindings)
 * and the receiver's shared_info page, so a notification costs one wake, not a
 * round trip through the hypervisor worker. The hypervisor worker keeps the
 * authoritative bindings and does every bind/close; it runs this same code for
 * sends it must make itself.
 *
 * Lifetime: a sender bumps the receiver slot's `inflight` before touching its
 * shared_info and re-checks the slot's domid/state; the hypervisor marks a
 * dying slot, then waits for inflight to drain before reusing its frames.
 * (Sequentially consistent atomics on both sides make this Dekker pattern safe.)
 */
import { ECS, SHARED_INFO, VCPU_INFO } from '../shared/abi/evtchn.ts';
import { DCB, DOMAIN_STATE, PORT_ENTRY } from '../shared/abi/machine.ts';
import { XEN_ERRNO } from '../shared/abi/xen.ts';
import type { MachineLayout } from '../shared/machine-layout.ts';
import type { MachineAddr } from '../shared/types.ts';

export interface PortBinding {
  readonly state: number;
  readonly remoteDom: number;
  readonly remotePort: number;
  readonly remoteSlot: number;
}

/** [readPortBinding layout slot port] is a consistent snapshot of a port-table entry. */
export function readPortBinding(layout: MachineLayout, slot: number, port: number): PortBinding | undefined {
  const mem = layout.mem;
  const nr = mem.atomicLoad32(layout.dcbField(slot, DCB.nrPorts));
  if (!(port > 0 && port < nr)) return undefined;
  const base = (mem.atomicLoad32(layout.dcbField(slot, DCB.portsMfn)) * mem.pageSize + port * PORT_ENTRY.SIZE) as MachineAddr;
  for (;;) {
    // Seqlock read: the hypervisor makes seq odd, rewrites, then makes it even.
    const s1 = mem.atomicLoad32(base);
    if ((s1 & 1) !== 0) continue;
    const sd = mem.atomicLoad32((base + PORT_ENTRY.stateDom) as MachineAddr);
    const remotePort = mem.atomicLoad32((base + PORT_ENTRY.remotePort) as MachineAddr);
    const remoteSlot = mem.atomicLoad32((base + PORT_ENTRY.remoteSlot) as MachineAddr);
    if (mem.atomicLoad32(base) === s1) return { state: sd & 0xff, remoteDom: sd >>> 8, remotePort, remoteSlot };
  }
}

/**
 * [markPending layout slot port] sets port pending in slot's shared_info and,
 * if it was newly pending and unmasked, raises the upcall and kicks the vCPU.
 * Returns true when the domain was kicked. The caller holds the slot (inflight).
 */
export function markPending(layout: MachineLayout, slot: number, port: number): boolean {
  const mem = layout.mem;
  const si = layout.sharedInfo(slot);
  const word = (port >>> 5) * 4;
  const bit = 1 << (port & 31);
  // Full barrier (RMW): the receiver that later sees this bit sees every write
  // the sender made before sending (ring requests and producer index).
  const prev = mem.atomicOr32((si + SHARED_INFO.evtchn_pending + word) as MachineAddr, bit);
  if ((prev & bit) !== 0) return false; // already pending: the receiver has yet to scan it
  if ((mem.atomicLoad32((si + SHARED_INFO.evtchn_mask + word) as MachineAddr) & bit) !== 0) return false; // masked: fires on unmask
  const selWord = port >>> 6; // one selector bit per 64-bit pending word
  mem.atomicOr32((si + VCPU_INFO.evtchn_pending_sel + (selWord >>> 5) * 4) as MachineAddr, 1 << (selWord & 31));
  // upcall_pending is byte 0 of vcpu_info[0]; set it after the selector so a
  // receiver that clears it and then scans the selector cannot miss this port.
  const up = mem.atomicOr32((si + VCPU_INFO.evtchn_upcall_pending) as MachineAddr, 1);
  if ((up & 1) !== 0) return false; // an upcall is already pending: the receiver will scan
  const wake = layout.dcbField(slot, DCB.wake);
  mem.atomicAdd32(wake, 1); // the receiver re-checks upcall_pending if wake moved
  mem.notify32(wake, 1);
  return true;
}

/** [withSlot layout slot domid fn] runs fn while holding slot alive, if it still hosts domid. */
export function withLiveSlot(layout: MachineLayout, slot: number, domid: number, fn: () => void): boolean {
  const mem = layout.mem;
  const inflight = layout.dcbField(slot, DCB.inflight);
  mem.atomicAdd32(inflight, 1);
  try {
    if (mem.atomicLoad32(layout.dcbField(slot, DCB.domid)) !== domid) return false;
    const st = mem.atomicLoad32(layout.dcbField(slot, DCB.state));
    if (st !== DOMAIN_STATE.running && st !== DOMAIN_STATE.paused) return false;
    fn();
    return true;
  } finally {
    mem.atomicAdd32(inflight, -1);
  }
}

/**
 * [evtchnSend layout slot port] is EVTCHNOP_send from the domain in slot:
 * 0 on success (including a send on an unbound port, which Xen drops), or
 * -EINVAL for a port that is not open.
 */
export function evtchnSend(layout: MachineLayout, slot: number, port: number): number {
  const b = readPortBinding(layout, slot, port);
  if (b === undefined || b.state === ECS.closed) return -XEN_ERRNO.EINVAL;
  layout.mem.atomicAdd32(layout.dcbField(slot, DCB.statEvtchnSent), 1);
  if (b.state === ECS.interdomain) {
    withLiveSlot(layout, b.remoteSlot, b.remoteDom, () => {
      markPending(layout, b.remoteSlot, b.remotePort);
      layout.mem.atomicAdd32(layout.dcbField(b.remoteSlot, DCB.statEvtchnDelivered), 1);
    });
  } else if (b.state === ECS.ipi || b.state === ECS.virq) {
    markPending(layout, slot, port);
  }
  return 0;
}

/**
 * [evtchnUnmask layout slot port] is EVTCHNOP_unmask: clears the mask bit and,
 * if the port is pending, raises the upcall again (an event sent while masked
 * fires now). Runs on the owner's own vCPU.
 */
export function evtchnUnmask(layout: MachineLayout, slot: number, port: number): number {
  const mem = layout.mem;
  const nr = mem.atomicLoad32(layout.dcbField(slot, DCB.nrPorts));
  if (!(port > 0 && port < nr)) return -XEN_ERRNO.EINVAL;
  const si = layout.sharedInfo(slot);
  const word = (port >>> 5) * 4;
  const bit = 1 << (port & 31);
  mem.atomicAnd32((si + SHARED_INFO.evtchn_mask + word) as MachineAddr, ~bit);
  if ((mem.atomicLoad32((si + SHARED_INFO.evtchn_pending + word) as MachineAddr) & bit) !== 0) {
    const selWord = port >>> 6;
    mem.atomicOr32((si + VCPU_INFO.evtchn_pending_sel + (selWord >>> 5) * 4) as MachineAddr, 1 << (selWord & 31));
    const up = mem.atomicOr32((si + VCPU_INFO.evtchn_upcall_pending) as MachineAddr, 1);
    if ((up & 1) === 0) {
      mem.atomicAdd32(layout.dcbField(slot, DCB.wake), 1);
      mem.notify32(layout.dcbField(slot, DCB.wake), 1);
    }
  }
  return 0;
}
