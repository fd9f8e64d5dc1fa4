/**
 * The persistent-grant cache (Linux xen-blkback: get_persistent_gnt,
 * add_persistent_gnt, put_persistent_gnt, purge_persistent_gnt): grants the
 * frontend keeps granted and we keep mapped, looked up by gref, so a request
 * whose pages are all cached costs no hypercall at all.
 *
 * Linux's limits (blkback.c): at most `max_persistent_grants` (1056) mapped;
 * when the cache is full, new grants are mapped for one request only and the
 * cache is marked overflowing; every LRU interval (100 ms) a full or
 * overflowing cache drops the least recently used idle grants, down to 5 %
 * below the limit (LRU_PERCENT_CLEAN); and grants unused for
 * `persistent_grant_unused_seconds` (60 s) are dropped. As in Linux, each
 * ring (queue) has its own cache with its own limit.
 *
 * Time comes from an injected clock (ms), so tests can age grants.
 * Purging only decides what to drop; the caller unmaps (batched).
 */
import type { GrantHandle, Gref, Pfn } from '../../shared/types.ts';

/** blkback's max_persistent_grants default. */
export const MAX_PERSISTENT_GRANTS = 1056;
/** persistent_grant_unused_seconds default, in ms. */
export const PERSISTENT_GRANT_UNUSED_MS = 60_000;
/** LRU_INTERVAL: how often a purge may run (ms). */
export const LRU_INTERVAL_MS = 100;
/** LRU_PERCENT_CLEAN: how far below the limit a purge cleans. */
export const LRU_PERCENT_CLEAN = 5;

/** One persistently mapped grant. */
export interface PersistentGrant {
  readonly gref: Gref;
  /** The ballooned dom0 pfn it is mapped at. */
  readonly pfn: Pfn;
  readonly handle: GrantHandle;
  /** Mapped read-only (an indirect page): data that the device writes cannot use it. */
  readonly readonly: boolean;
  /** Requests using it now (PERSISTENT_GNT_ACTIVE): never purged while > 0. */
  active: number;
  /** Clock (ms) at its last use. */
  lastUsed: number;
  /** Dropped from the cache while active: unmap when the last user lets go. */
  evicted: boolean;
}

export interface PersistentCacheOptions {
  readonly max?: number;
  readonly unusedMs?: number;
  readonly lruIntervalMs?: number;
  readonly clock: () => number;
}

const NOTHING: readonly PersistentGrant[] = [];

export class PersistentGrantCache {
  private readonly map = new Map<number, PersistentGrant>();
  readonly max: number;
  private readonly unusedMs: number;
  private readonly lruIntervalMs: number;
  private readonly clock: () => number;
  private lastPurge: number;
  /** A grant could not be added because the cache was full (vbd.overflow_max_grants). */
  overflow = false;
  /** Grants dropped by LRU purges / for being unused too long. */
  purgedLru = 0;
  purgedUnused = 0;

  constructor(opts: PersistentCacheOptions) {
    this.max = opts.max ?? MAX_PERSISTENT_GRANTS;
    this.unusedMs = opts.unusedMs ?? PERSISTENT_GRANT_UNUSED_MS;
    this.lruIntervalMs = opts.lruIntervalMs ?? LRU_INTERVAL_MS;
    this.clock = opts.clock;
    this.lastPurge = opts.clock();
  }

  get size(): number { return this.map.size; }
  get full(): boolean { return this.map.size >= this.max; }

  /** [get gref now] is the cached grant (made active), or undefined. */
  get(gref: number, now: number): PersistentGrant | undefined {
    const g = this.map.get(gref);
    if (g === undefined) return undefined;
    g.active++;
    g.lastUsed = now;
    return g;
  }

  /** [has gref] without touching it. */
  has(gref: number): boolean { return this.map.has(gref); }

  /**
   * [add gref pfn handle readonly now] caches a fresh mapping (made active);
   * undefined (and the cache marked overflowing) when it is full.
   */
  add(gref: Gref, pfn: Pfn, handle: GrantHandle, readonly: boolean, now: number): PersistentGrant | undefined {
    if (this.map.size >= this.max || this.map.has(gref)) {
      this.overflow = true;
      return undefined;
    }
    const g: PersistentGrant = { gref, pfn, handle, readonly, active: 1, lastUsed: now, evicted: false };
    this.map.set(gref, g);
    return g;
  }

  /** [put g] ends one use; true when g was evicted meanwhile and must now be unmapped. */
  put(g: PersistentGrant): boolean {
    g.active--;
    return g.evicted && g.active === 0;
  }

  /**
   * [purge now force] runs purge_persistent_gnt if an LRU interval has passed
   * (or force): drops grants unused for unusedMs, and — when full or
   * overflowing — the least recently used idle ones down to 5 % below max.
   * Returns the grants to unmap now (idle ones only).
   */
  purge(now: number = this.clock(), force = false): readonly PersistentGrant[] {
    if (!force && now - this.lastPurge < this.lruIntervalMs) return NOTHING;
    this.lastPurge = now;
    const out: PersistentGrant[] = [];
    for (const [ref, g] of this.map) {
      if (g.active === 0 && now - g.lastUsed >= this.unusedMs) {
        this.map.delete(ref);
        this.purgedUnused++;
        out.push(g);
      }
    }
    if (this.map.size >= this.max || this.overflow) {
      const clean = Math.floor(this.max / 100) * LRU_PERCENT_CLEAN;
      let want = Math.min(this.map.size, this.map.size - this.max + clean);
      if (want > 0) {
        const idle = [...this.map.values()].filter((g) => g.active === 0).sort((a, b) => a.lastUsed - b.lastUsed);
        for (const g of idle) {
          if (want === 0) break;
          this.map.delete(g.gref);
          this.purgedLru++;
          out.push(g);
          want--;
        }
      }
      this.overflow = false;
    }
    return out;
  }

  /**
   * [drain] empties the cache (disconnect): idle grants are returned for
   * unmapping; active ones are marked evicted and returned by put() later.
   */
  drain(): PersistentGrant[] {
    const out: PersistentGrant[] = [];
    for (const g of this.map.values()) {
      if (g.active === 0) out.push(g);
      else g.evicted = true;
    }
    this.map.clear();
    return out;
  }
}
