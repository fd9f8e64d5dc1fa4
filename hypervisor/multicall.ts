/**
 * HYPERVISOR_multicall: a batch of hypercalls in one crossing. Entries are
 * Xen's `struct multicall_entry` (64 bytes: op u64, result u64, args[6] u64)
 * in the caller's hypercall buffer; each result is written back. A nested
 * multicall is refused with -EINVAL, as Xen does.
 */
import { HYPERVISOR, XEN_ERRNO } from '../shared/abi/xen.ts';
import type { MachineAddr } from '../shared/types.ts';
import type { Domain } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';

export const MULTICALL_ENTRY = { op: 0, result: 8, args: 16, SIZE: 64 } as const;

export function multicall(hv: Hypervisor, d: Domain, off: number, count: number): number {
  if (!(Number.isInteger(count) && count >= 0)) return -XEN_ERRNO.EINVAL;
  const buf = hv.hcbuf(d, off, count * MULTICALL_ENTRY.SIZE);
  if (buf === undefined) return -XEN_ERRNO.EFAULT;
  const mem = hv.mem;
  for (let i = 0; i < count; i++) {
    const e = (buf + i * MULTICALL_ENTRY.SIZE) as MachineAddr;
    const op = Number(mem.getU64(e));
    const args: number[] = [];
    for (let k = 0; k < 6; k++) args.push(Number(BigInt.asIntN(64, mem.getU64((e + MULTICALL_ENTRY.args + k * 8) as MachineAddr))));
    const [r] = op === HYPERVISOR.multicall ? [-XEN_ERRNO.EINVAL] : hv.hypercall(d.slot, op, args);
    mem.setU64((e + MULTICALL_ENTRY.result) as MachineAddr, BigInt.asUintN(64, BigInt(r)));
  }
  return 0;
}
