/**
 * HYPERVISOR_multicall: a batch of hypercalls in one crossing. Entries are
 * Xen's `struct multicall_entry` (64 bytes: op u64, result u64, args[6] u64)
 * in the caller's hypercall buffer; each result is written back. A nested
 * multicall is refused with -EINVAL, as Xen does. Each 64-bit field is read
 * and written as two u32 words (no BigInt), into one reused argument array.
 */
import { HYPERVISOR, XEN_ERRNO } from '../shared/abi/xen.ts';
import type { MachineAddr } from '../shared/types.ts';
import type { Domain } from './domain.ts';
import type { Hypervisor } from './hypervisor.ts';

export const MULTICALL_ENTRY = { op: 0, result: 8, args: 16, SIZE: 64 } as const;

const TWO32 = 0x1_0000_0000;
/** The entry's arguments; reused (a multicall never runs inside another: nesting is refused). */
const args: number[] = [0, 0, 0, 0, 0, 0];

export function multicall(hv: Hypervisor, d: Domain, off: number, count: number): number {
  if (!(Number.isInteger(count) && count >= 0)) return -XEN_ERRNO.EINVAL;
  const buf = hv.hcbuf(d, off, count * MULTICALL_ENTRY.SIZE);
  if (buf === undefined) return -XEN_ERRNO.EFAULT;
  const mem = hv.mem;
  for (let i = 0; i < count; i++) {
    const e = buf + i * MULTICALL_ENTRY.SIZE;
    // op: u64, as a number (correctly rounded beyond 2^53, as Number(bigint)).
    const op = mem.getU32(e as MachineAddr) + mem.getU32((e + 4) as MachineAddr) * TWO32;
    for (let k = 0; k < 6; k++) {
      // Each argument is a signed 64-bit value: the high word carries the sign.
      const at = e + MULTICALL_ENTRY.args + k * 8;
      args[k] = mem.getI32((at + 4) as MachineAddr) * TWO32 + mem.getU32(at as MachineAddr);
    }
    const r = op === HYPERVISOR.multicall ? -XEN_ERRNO.EINVAL : hv.hypercall(d.slot, op, args)[0];
    // The result as a u64: two's complement for a negative one.
    const hi = Math.floor(r / TWO32);
    mem.setU32((e + MULTICALL_ENTRY.result) as MachineAddr, r - hi * TWO32);
    mem.setU32((e + MULTICALL_ENTRY.result + 4) as MachineAddr, hi >>> 0);
  }
  return 0;
}
