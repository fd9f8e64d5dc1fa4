/**
 * The shadow table (Linux blkfront's rinfo->shadow[]): one entry per ring
 * slot, holding what the frontend must remember about a request in flight —
 * which part of which I/O it carries, which pages it lent — so that a
 * response can be matched, its data copied back, its pages given back, and
 * so that after a backend restart every request in flight can be re-issued
 * (blkif_recover).
 *
 * The request id on the wire is (slot, generation): the low word is the
 * slot, the high word counts the slot's uses. A response is accepted only if
 * its slot is in flight AND carries the current generation; anything else —
 * an unknown id, a slot already completed, a stale id from before the slot
 * was reused — is counted and ignored, so a hostile or confused backend can
 * never complete an I/O twice. (Linux marks the device broken instead; we
 * keep serving, as the brief asks.)
 */
import type { GrantPage } from './grants.ts';

/** What the workload asked for: one BlockDevice call. */
export interface BlkIo {
  kind: 'read' | 'write' | 'flush' | 'discard';
  sector: number;
  nrSectors: number;
  /** read: filled; write: read. null for flush/discard. */
  buf: Uint8Array | null;
  resolve: ((s: 'ok' | 'error' | 'eopnotsupp') => void) | null;
  /** Parts not yet completed. */
  partsLeft: number;
  status: 'ok' | 'error' | 'eopnotsupp';
}

/** A sub-range of an I/O that goes out as one ring request. */
export interface Part {
  io: BlkIo;
  /** First sector of the part, relative to io.sector. */
  sectorOff: number;
  nrSectors: number;
}

export class ShadowEntry {
  gen = 0;
  inUse = false;
  part: Part | null = null;
  /** The wire operation we sent. */
  operation = 0;
  nData = 0;
  readonly data: (GrantPage | null)[];
  nInd = 0;
  readonly ind: (GrantPage | null)[] = [null, null, null, null, null, null, null, null];
  constructor(readonly slot: number, maxSegs: number) {
    this.data = new Array<GrantPage | null>(maxSegs).fill(null);
  }
}

export class ShadowTable {
  readonly entries: ShadowEntry[] = [];
  private readonly free: number[] = [];
  private inUseCount = 0;

  constructor(readonly size: number, maxSegs: number) {
    for (let i = 0; i < size; i++) this.entries.push(new ShadowEntry(i, maxSegs));
    for (let i = size - 1; i >= 0; i--) this.free.push(i);
  }

  get inFlight(): number { return this.inUseCount; }
  get available(): number { return this.free.length; }

  /** [take] is a free entry, its generation advanced; undefined when every slot is in flight. */
  take(): ShadowEntry | undefined {
    const i = this.free.pop();
    if (i === undefined) return undefined;
    const e = this.entries[i] as ShadowEntry;
    e.gen = (e.gen + 1) >>> 0;
    e.inUse = true;
    this.inUseCount++;
    return e;
  }

  /** [lookup idLo idHi] is the entry a response names, or undefined if it names none in flight. */
  lookup(idLo: number, idHi: number): ShadowEntry | undefined {
    if (idLo >= this.size) return undefined;
    const e = this.entries[idLo] as ShadowEntry;
    if (!e.inUse || e.gen !== idHi) return undefined;
    return e;
  }

  release(e: ShadowEntry): void {
    e.inUse = false;
    e.part = null;
    e.nData = 0;
    e.nInd = 0;
    this.inUseCount--;
    this.free.push(e.slot);
  }

  /** Every entry in flight (for resume and teardown). */
  inFlightEntries(): ShadowEntry[] {
    return this.entries.filter((e) => e.inUse);
  }
}
