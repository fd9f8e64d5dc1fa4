/**
 * Mutants: deliberately broken components, one known bug each, that a stress
 * run can be built with. A checker that never catches anything proves
 * nothing; test/unit/stress/mutants.test.ts runs each mutant in the scenario
 * that exercises it and requires the checkers named in `caughtBy` to report
 * it — and the same scenario without the mutant to stay clean.
 *
 * Hypervisor and xenstored mutants are subclasses that wrap the real code
 * (the bug is added after the real operation, as a missing or extra step);
 * driver mutants are switches in stress/vstress.ts and stress/events.ts.
 *
 * Driver mutants: the real blkback's (the "a blkback that
 * acknowledges before writing") is a `blk` switch the block plug-in
 * (blk-plugin.ts) passes to its backend; netback's join the same way.
 */
import { GNTMAP, GNTTABOP, GNTTAB_UNMAP, GRANT_ENTRY_V1, GTF } from '../shared/abi/grant.ts';
import { HYPERVISOR } from '../shared/abi/xen.ts';
import { XS } from '../shared/abi/xenstore.ts';
import type { MachineMemory } from '../shared/memory/machine-memory.ts';
import type { MachineAddr, Mfn, Pfn } from '../shared/types.ts';
import { Hypervisor, type HypervisorOptions } from '../hypervisor/hypervisor.ts';
import type { MaptrackEntry } from '../hypervisor/domain.ts';
import { XenStored, type XenStoredOptions, type XsConnection, type XsMsg } from '../dom0/xenstore/xenstored.ts';
import type { XsHandled } from '../dom0/xenstore/xenstored.ts';
import type { EchoMutant, StormMutant } from './events.ts';
import type { InjectorName } from './injectors.ts';
import type { BackMutant, FrontMutant } from './vstress.ts';
import type { BlkMutant } from './blk-plugin.ts';
import type { NetMutant } from './net-plugin.ts';

export const MUTANT_NAMES = [
  'hv-forget-maptrack',
  'hv-pin-keeps-reading',
  'hv-unmap-keeps-p2m',
  'back-double-fetch',
  'back-stale-id',
  'back-ack-before-write',
  'back-read-after-unmap',
  'back-refuse-all',
  'back-no-unmap-on-disconnect',
  'front-free-early',
  'echo-unmask-no-reraise',
  'storm-per-send-handler',
  'xenstored-no-perms',
  'xenstored-no-quota',
  'blkback-ack-before-write',
  'netback-deliver-twice',
] as const;
export type MutantName = (typeof MUTANT_NAMES)[number];

export interface Mutant {
  readonly name: MutantName;
  readonly description: string;
  /** The checkers that must report it. */
  readonly caughtBy: readonly string[];
  /** What a run needs to exercise it: these injectors, and hostile guests if any are listed. */
  readonly injectors: readonly InjectorName[];
  readonly hypervisor?: (mem: MachineMemory, opts: HypervisorOptions) => Hypervisor;
  readonly xenstored?: (opts: XenStoredOptions) => XenStored;
  readonly back?: BackMutant;
  readonly front?: FrontMutant;
  readonly echo?: EchoMutant;
  readonly storm?: StormMutant;
  /** The real blkback's mutant (the run enables the block drivers). */
  readonly blk?: BlkMutant;
  /** The real netback's mutant (the run enables the network drivers, deterministic mode). */
  readonly net?: NetMutant;
}

// ---------------------------------------------------------------- hypervisors

/** The maptrack entries a GNTTABOP_unmap_grant_ref batch names, read before the call. */
function unmapTargets(hv: Hypervisor, slot: number, op: number, args: readonly number[]): { handle: number; e: MaptrackEntry; status: MachineAddr }[] {
  if (op !== HYPERVISOR.grant_table_op || args[0] !== GNTTABOP.unmap_grant_ref) return [];
  const d = hv.domainInSlot(slot);
  if (d === undefined) return [];
  const count = args[2] ?? 0;
  const base = hv.hcbuf(d, args[1] ?? 0, count * GNTTAB_UNMAP.SIZE);
  if (base === undefined) return [];
  const out = [];
  for (let i = 0; i < count; i++) {
    const a = base + i * GNTTAB_UNMAP.SIZE;
    const handle = hv.mem.getU32((a + GNTTAB_UNMAP.handle) as MachineAddr);
    const e = d.maptrack[handle];
    if (e !== undefined) out.push({ handle, e: { ...e }, status: (a + GNTTAB_UNMAP.status) as MachineAddr });
  }
  return out;
}

/** MUTANT: an unmap that forgets to free the maptrack entry (the handle stays allocated, naming the old mapping). */
class ForgetMaptrackHypervisor extends Hypervisor {
  override hypercall(slot: number, op: number, args: readonly number[]): [number, number] {
    const targets = unmapTargets(this, slot, op, args);
    const r = super.hypercall(slot, op, args);
    const d = this.domainInSlot(slot);
    if (d === undefined) return r;
    for (const t of targets) {
      if (this.mem.getI16(t.status) !== 0 || d.maptrack[t.handle] !== undefined) continue;
      d.maptrack[t.handle] = t.e;
      const i = d.maptrackFree.lastIndexOf(t.handle);
      if (i >= 0) d.maptrackFree.splice(i, 1);
      d.maptrackInUse++;
    }
    return r;
  }
}

/** MUTANT: unpinning that forgets to clear GTF_reading when the last pin goes (on unmap and after a copy). */
class PinKeepsReadingHypervisor extends Hypervisor {
  override hypercall(slot: number, op: number, args: readonly number[]): [number, number] {
    if (op !== HYPERVISOR.grant_table_op || (args[0] !== GNTTABOP.unmap_grant_ref && args[0] !== GNTTABOP.copy)) return super.hypercall(slot, op, args);
    const before = new Set<string>();
    for (const g of this.domains.values()) for (const ref of g.active.keys()) before.add(`${g.domid}:${ref}`);
    const copyRefs = args[0] === GNTTABOP.copy ? this.copyRefs(slot, args) : [];
    const r = super.hypercall(slot, op, args);
    const per = this.pageSize / GRANT_ENTRY_V1.SIZE;
    const mark = (domid: number, ref: number) => {
      const g = this.domain(domid);
      if (g === undefined || g.active.has(ref)) return;
      const f = g.grantFrames[Math.floor(ref / per)];
      if (f === undefined) return;
      const e = (this.mem.frameAddr(f) + (ref % per) * GRANT_ENTRY_V1.SIZE) as MachineAddr;
      if ((this.mem.atomicLoad32(e) & GTF.type_mask) === GTF.permit_access) this.mem.atomicOr32(e, GTF.reading);
    };
    for (const k of before) { const [g, ref] = k.split(':').map(Number) as [number, number]; mark(g, ref); }
    for (const [g, ref] of copyRefs) mark(g, ref);
    return r;
  }

  /** The (granter, ref) pairs a copy batch names on its grant sides. */
  private copyRefs(slot: number, args: readonly number[]): [number, number][] {
    const d = this.domainInSlot(slot);
    if (d === undefined) return [];
    const count = args[2] ?? 0;
    const base = this.hcbuf(d, args[1] ?? 0, count * 40);
    if (base === undefined) return [];
    const out: [number, number][] = [];
    for (let i = 0; i < count; i++) {
      const a = base + i * 40;
      const flags = this.mem.getU16((a + 34) as MachineAddr);
      for (const [side, bit] of [[0, 1], [16, 2]] as const) {
        if ((flags & bit) === 0) continue;
        const dom = this.mem.getU16((a + side + 8) as MachineAddr);
        out.push([dom === 0x7ff0 ? d.domid : dom, this.mem.getU32((a + side) as MachineAddr)]);
      }
    }
    return out;
  }
}

/** MUTANT: an unmap that drops the pin and the mapcount but leaves the mapper's P2M entry behind. */
class UnmapKeepsP2mHypervisor extends Hypervisor {
  override hypercall(slot: number, op: number, args: readonly number[]): [number, number] {
    const targets = unmapTargets(this, slot, op, args);
    const r = super.hypercall(slot, op, args);
    const d = this.domainInSlot(slot);
    if (d === undefined) return r;
    for (const t of targets) {
      if (this.mem.getI16(t.status) !== 0 || (t.e.flags & GNTMAP.host_map) === 0 || t.e.hostPfn < 0) continue;
      d.p2m.set(t.e.hostPfn as Pfn, t.e.mfn as Mfn, (t.e.flags & GNTMAP.readonly) === 0, true);
    }
    return r;
  }
}

// ---------------------------------------------------------------- xenstored

/** MUTANT: READ and DIRECTORY skip the permission check for everyone. */
class NoPermsXenStored extends XenStored {
  override handle(conn: XsConnection, msg: XsMsg): XsHandled {
    if (conn.caller.privileged || (msg.type !== XS.READ && msg.type !== XS.DIRECTORY)) return super.handle(conn, msg);
    conn.caller.privileged = true;
    try { return super.handle(conn, msg); } finally { conn.caller.privileged = false; }
  }
}

// ---------------------------------------------------------------- the list

const hv = (C: typeof Hypervisor) => (mem: MachineMemory, opts: HypervisorOptions): Hypervisor => new C(mem, opts);

export const MUTANTS: readonly Mutant[] = [
  {
    name: 'hv-forget-maptrack', description: 'the hypervisor forgets to free a maptrack entry on unmap',
    caughtBy: ['frame-table', 'grant-leak'], injectors: [], hypervisor: hv(ForgetMaptrackHypervisor),
  },
  {
    name: 'hv-pin-keeps-reading', description: 'a grant pin forgets to clear GTF_reading when its last pin goes',
    caughtBy: ['grant-entries'], injectors: [], hypervisor: hv(PinKeepsReadingHypervisor),
  },
  {
    name: 'hv-unmap-keeps-p2m', description: "an unmap leaves the mapper's P2M entry: it still reaches the granter's page",
    caughtBy: ['memory-isolation'], injectors: [], hypervisor: hv(UnmapKeepsP2mHypervisor),
  },
  {
    name: 'back-double-fetch', description: 'a backend fetches a ring request twice (XSA-155)',
    caughtBy: ['ring-protocol'], injectors: [], back: 'double-fetch',
  },
  {
    name: 'back-stale-id', description: "a backend answers with a previous request's id (a duplicated response)",
    caughtBy: ['ring-protocol'], injectors: [], back: 'stale-id',
  },
  {
    name: 'back-ack-before-write', description: 'a backend acknowledges a write before it stores it',
    caughtBy: ['acked-writes-read-back'], injectors: [], back: 'ack-before-write',
  },
  {
    name: 'back-read-after-unmap', description: 'a backend unmaps a grant before it is done with the page',
    caughtBy: ['memory-isolation'], injectors: [], back: 'read-after-unmap',
  },
  {
    name: 'back-refuse-all', description: 'a backend answers every request with an error',
    caughtBy: ['progress'], injectors: [], back: 'refuse-all',
  },
  {
    name: 'back-no-unmap-on-disconnect', description: 'a backend forgets to unmap the ring when its frontend goes away',
    caughtBy: ['grant-leak'], injectors: ['domain-destroy'], back: 'no-unmap-on-disconnect',
  },
  {
    name: 'front-free-early', description: 'a frontend frees a granted page before the backend answered (XSA-396)',
    caughtBy: ['granted-page-reuse'], injectors: [], front: 'free-early',
  },
  {
    name: 'echo-unmask-no-reraise', description: "dom0's EOI clears the mask bit by hand, so an event that arrived while masked is lost",
    caughtBy: ['event-delivery'], injectors: [], echo: 'unmask-no-reraise',
  },
  {
    name: 'storm-per-send-handler', description: "dom0's handler does work per event sent instead of per notification (XSA-332)",
    caughtBy: ['event-storm-bound'], injectors: ['event-storm'], storm: 'per-send-handler',
  },
  {
    name: 'xenstored-no-perms', description: 'xenstored skips the permission check on READ and DIRECTORY',
    caughtBy: ['xenstore-permissions'], injectors: ['xs-snoop'], xenstored: (o) => new NoPermsXenStored(o),
  },
  {
    name: 'xenstored-no-quota', description: 'xenstored enforces no node or transaction quota',
    caughtBy: ['xenstore-limits'], injectors: ['xs-quota', 'xs-tx-storm'],
    xenstored: (o) => new XenStored({ ...o, quota: { ...o.quota, nodes: 1_000_000, transactions: 1_000 } }),
  },
  {
    name: 'blkback-ack-before-write', description: 'blkback acknowledges writes before they reach the disk (the issue\'s own mutant, on the real driver)',
    caughtBy: ['acked-writes-read-back'], injectors: [], blk: 'ack-before-write',
  },
  {
    name: 'netback-deliver-twice', description: 'netback puts every packet the bridge sends a guest on its RX ring twice',
    caughtBy: ['acked-writes-read-back'], injectors: [], net: 'deliver-twice',
  },
];

export function mutant(name: MutantName): Mutant {
  const m = MUTANTS.find((x) => x.name === name);
  if (m === undefined) throw new Error(`no mutant named ${name}`);
  return m;
}

export function isMutantName(s: string): s is MutantName {
  return (MUTANT_NAMES as readonly string[]).includes(s);
}
