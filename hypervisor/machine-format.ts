/**
 * Formatting a fresh machine at hypervisor boot: the header in frame 0, then
 * the frame table, the domain slots and the arena (Xen heap), all owned by
 * DOMID_XEN. Everything after is free for domains.
 */
import { DCB, FRAME_ENTRY, FRAME_TYPE, MACHINE_HEADER, SLOT_FRAMES } from '../shared/abi/machine.ts';
import type { MachineMemory } from '../shared/memory/machine-memory.ts';
import { DOMID_XEN, type MachineAddr, type Mfn } from '../shared/types.ts';
import { FrameTable } from './frame-table.ts';

export interface MachineFormatOptions {
  /** Domain slots: how many domains may exist at once (including zombies). Default 64. */
  readonly nrSlots?: number;
  /** Bytes of Xen heap for P2M tables, port tables and hypercall buffers. Default max(2 MiB, memory/32). */
  readonly arenaBytes?: number;
}

export interface FormattedMachine {
  readonly frameTable: FrameTable;
  readonly slotsMfn: number;
  readonly nrSlots: number;
  readonly arenaStart: number;
  readonly arenaEnd: number;
  /** First frame available to domains. */
  readonly firstFree: number;
}

export function formatMachine(mem: MachineMemory, opts: MachineFormatOptions = {}): FormattedMachine {
  const nrSlots = opts.nrSlots ?? 64;
  if (!Number.isInteger(nrSlots) || nrSlots < 2 || nrSlots > MACHINE_HEADER.MAX_SLOTS) {
    throw new RangeError(`nrSlots must be an integer in 2..${MACHINE_HEADER.MAX_SLOTS}, got ${nrSlots}`);
  }
  const ps = mem.pageSize;
  const pages = (bytes: number) => Math.ceil(bytes / ps);
  const ftFrames = pages(mem.frames * FRAME_ENTRY.SIZE);
  const arenaFrames = pages(opts.arenaBytes ?? Math.max(2 << 20, mem.byteLength / 32));
  const ftMfn = 1;
  const slotsMfn = ftMfn + ftFrames;
  const arenaStart = slotsMfn + nrSlots * SLOT_FRAMES;
  const arenaEnd = arenaStart + arenaFrames;
  if (arenaEnd + 64 > mem.frames) throw new RangeError(`machine of ${mem.frames} frames is too small for its own tables (${arenaEnd} frames)`);

  const hdr = (f: number, v: number) => mem.setU32(f as MachineAddr, v);
  hdr(MACHINE_HEADER.pageSize, ps);
  hdr(MACHINE_HEADER.frames, mem.frames);
  hdr(MACHINE_HEADER.frameTableMfn, ftMfn);
  hdr(MACHINE_HEADER.frameTableFrames, ftFrames);
  hdr(MACHINE_HEADER.slotsMfn, slotsMfn);
  hdr(MACHINE_HEADER.nrSlots, nrSlots);
  hdr(MACHINE_HEADER.arenaStart, arenaStart);
  hdr(MACHINE_HEADER.arenaEnd, arenaEnd);

  const ft = new FrameTable(mem, (ftMfn * ps) as MachineAddr, mem.frames);
  for (let m = 0; m < mem.frames; m++) {
    if (m < arenaEnd) ft.assign(m as Mfn, DOMID_XEN, FRAME_TYPE.xen, -1);
    else ft.release(m as Mfn);
  }
  for (let s = 0; s < nrSlots; s++) {
    mem.atomicStore32((((slotsMfn + s * SLOT_FRAMES) * ps) + DCB.domid) as MachineAddr, -1);
  }
  // Magic last: a worker that sees it sees a formatted machine.
  mem.atomicStore32(MACHINE_HEADER.magic as MachineAddr, MACHINE_HEADER.MAGIC);
  return { frameTable: ft, slotsMfn, nrSlots, arenaStart, arenaEnd, firstFree: arenaEnd };
}
