/**
 * The hypervisor's private record of a domain (Xen's `struct domain`): what it
 * owns, where its tables are, its grant table, maptrack and event channels.
 * The parts other threads must read live in the domain's slot (shared/abi/machine.ts).
 */
import type { MemoryModel } from '../shared/abi/machine.ts';
import type { DomId, Mfn, Pfn } from '../shared/types.ts';
import type { P2mTable } from './p2m.ts';

/** One active (pinned) grant of this domain: Xen's `struct active_grant_entry`. */
export interface ActiveGrant {
  /** The machine frame pinned when the first pin was taken; fixed while pinned. */
  readonly mfn: Mfn;
  /** The domain allowed to use the grant (checked at pin time). */
  readonly grantee: DomId;
  hostRo: number;
  hostRw: number;
  devRo: number;
  devRw: number;
  /** Transient pins held by an in-progress GNTTABOP_copy. */
  copyRo: number;
  copyRw: number;
}

/** One grant mapping made BY this domain: a maptrack entry, whose index is the handle. */
export interface MaptrackEntry {
  granter: DomId;
  ref: number;
  /** GNTMAP_host_map | GNTMAP_device_map | GNTMAP_readonly still held by this entry. */
  flags: number;
  /** Where the frame appears in this domain's P2M (host maps), or -1. */
  hostPfn: number;
  mfn: Mfn;
}

export interface PortState {
  state: number; // ECS
  /** For unbound: the domain allowed to bind; for interdomain: the peer. */
  remoteDom: DomId;
  remotePort: number;
}

export interface DomainSpec {
  readonly name: string;
  /** RAM in pages. */
  readonly pages: number;
  readonly model: MemoryModel;
  readonly privileged: boolean;
  /** Guest-physical pages reserved (unpopulated) for foreign grant mappings. */
  readonly foreignPages: number;
  readonly nrPorts: number;
  readonly maxGrantFrames: number;
  readonly maxMaptrack: number;
}

export class Domain {
  state: 'running' | 'paused' | 'shutdown' | 'crashed' | 'dying' | 'zombie' = 'running';
  /** Machine frames this domain owns (RAM and grant-table frames). */
  readonly owned = new Set<Mfn>();
  /** First RAM pfn (0, or the first mfn for a P==M domain). */
  ramBase = 0;
  sharedInfoPfn = 0 as Pfn;
  grantPfnBase = 0 as Pfn;
  foreignBase = 0 as Pfn;
  /** For PV (p2m) guests: pfn of the guest's own pfn→mfn list in its RAM, and its length in pages. */
  p2mListPfn = -1;
  p2mListPages = 0;
  grantFrames: Mfn[] = [];
  readonly active = new Map<number, ActiveGrant>();
  readonly maptrack: (MaptrackEntry | undefined)[] = [];
  readonly maptrackFree: number[] = [];
  maptrackInUse = 0;
  readonly ports: PortState[];
  /** The domain's hypercall buffer as a machine address range. */
  hcbufAddr = 0;
  hcbufBytes = 0;
  portsMfn = 0 as Mfn;
  portsFrames = 0;
  p2mMfn = 0 as Mfn;
  p2mFrames = 0;
  generation = 0;

  constructor(
    readonly domid: DomId,
    readonly slot: number,
    readonly spec: DomainSpec,
    readonly p2m: P2mTable,
  ) {
    this.ports = Array.from({ length: spec.nrPorts }, () => ({ state: 0, remoteDom: 0 as DomId, remotePort: 0 }));
  }

  get name(): string { return this.spec.name; }
  get model(): MemoryModel { return this.spec.model; }
  get alive(): boolean { return this.state === 'running' || this.state === 'paused'; }
}
