/**
 * XenStore transactions as cxenstored implements them since 2017 (per-node
 * generation counts instead of a copy of the whole database):
 *
 *  - A transaction is an overlay of the nodes it changed (copy-on-write: a node
 *    is copied the first time the transaction changes it; untouched nodes are
 *    read from the live tree). It sees its own writes.
 *  - The first access to each path records the generation the transaction saw
 *    (ABSENT for a node that did not exist) and a private copy of the node:
 *    later reads in the transaction see that copy, not changes made outside
 *    it meanwhile (cxenstored keeps accessed nodes under a transaction key;
 *    Xen's test-xenstore "ta err" checks exactly this read stability).
 *  - Commit fails with EAGAIN if and only if some recorded path now has a
 *    different generation (changed, created or deleted since) — a change to a
 *    node the transaction never looked at does not conflict.
 *  - Watch events raised inside the transaction are kept and fired only when
 *    the commit succeeds; an abort drops them.
 */
import type { DomId } from '../../shared/types.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import type { XsTxId } from '../../shared/abi/xenstore.ts';
import type { NodeView, XsNode, XsStore } from './store.ts';
import type { WatchTrigger } from './watch.ts';

/** Generation recorded for a path that did not exist when first accessed. */
const ABSENT = -1;

export type CommitError = { kind: 'conflict'; path: string } | { kind: 'quota'; domid: DomId };

export class XsTransaction implements NodeView {
  /** Final state of each node this transaction changed (null = deleted), in first-change order. */
  private readonly overlay = new Map<string, XsNode | null>();
  /** Generation of each path when this transaction first accessed it. */
  private readonly seen = new Map<string, number>();
  /** The node as first accessed (null = absent then): what later reads in the transaction see. */
  private readonly snapshot = new Map<string, XsNode | null>();
  /** Ownership count changes to apply on commit. */
  private readonly ownerDelta = new Map<DomId, number>();
  /** Watch events to fire on commit. */
  readonly triggers: WatchTrigger[] = [];

  constructor(
    readonly id: XsTxId,
    private readonly base: XsStore,
  ) {}

  /** Distinct paths read or written (the quota_trans_nodes measure). */
  get accessed(): number { return this.seen.size; }

  /** [first path] is the node as this transaction first saw it, recording that access. */
  private first(path: string): XsNode | undefined {
    const s = this.snapshot.get(path);
    if (s !== undefined) return s ?? undefined;
    const live = this.base.get(path);
    this.seen.set(path, live?.gen ?? ABSENT);
    // Value and perms are never mutated in place (replaced on change); the child set is, so copy it.
    const copy = live ? { value: live.value, perms: live.perms, children: new Set(live.children), gen: live.gen } : null;
    this.snapshot.set(path, copy);
    return copy ?? undefined;
  }

  get(path: string): XsNode | undefined {
    if (this.overlay.has(path)) return this.overlay.get(path) ?? undefined;
    return this.first(path);
  }

  modify(path: string): XsNode {
    const mine = this.overlay.get(path);
    if (mine) {
      mine.gen = this.base.nextGen();
      return mine;
    }
    const seen = this.first(path);
    if (!seen || this.overlay.has(path)) throw new RangeError(`xenstore transaction: modify of absent node ${path}`);
    // Copy-on-write from what this transaction saw.
    const copy: XsNode = { value: seen.value, perms: seen.perms, children: new Set(seen.children), gen: this.base.nextGen() };
    this.overlay.set(path, copy);
    return copy;
  }

  create(path: string, node: XsNode): void {
    this.first(path);
    this.overlay.set(path, node);
    this.addOwnedNodes((node.perms[0] as { id: DomId }).id, 1);
  }

  remove(path: string): void {
    const n = this.get(path);
    if (!n) return;
    this.overlay.set(path, null);
    this.addOwnedNodes((n.perms[0] as { id: DomId }).id, -1);
  }

  ownedNodes(domid: DomId): number { return this.base.ownedNodes(domid) + (this.ownerDelta.get(domid) ?? 0); }
  addOwnedNodes(domid: DomId, delta: number): void { this.ownerDelta.set(domid, (this.ownerDelta.get(domid) ?? 0) + delta); }
  nextGen(): number { return this.base.nextGen(); }

  /**
   * [conflict] is the first path whose live generation differs from the one
   * this transaction saw, or undefined.
   */
  conflict(): string | undefined {
    for (const [path, gen] of this.seen) {
      if ((this.base.get(path)?.gen ?? ABSENT) !== gen) return path;
    }
    return undefined;
  }

  /**
   * [commit nodeQuota] applies the overlay to the live tree, or changes nothing
   * and says why. For an unprivileged committer, `nodeQuota` re-checks the node
   * count of every domain whose count grew (other commits may have raced, as
   * cxenstored's acc_fix_domains re-checks); undefined skips the check.
   */
  commit(nodeQuota: number | undefined): Result<readonly WatchTrigger[], CommitError> {
    const path = this.conflict();
    if (path !== undefined) return err({ kind: 'conflict', path });
    if (nodeQuota !== undefined) {
      for (const [domid, delta] of this.ownerDelta) {
        if (delta > 0 && this.base.ownedNodes(domid) + delta > nodeQuota) return err({ kind: 'quota', domid });
      }
    }
    for (const [p, node] of this.overlay) this.base.install(p, node);
    for (const [domid, delta] of this.ownerDelta) if (delta !== 0) this.base.addOwnedNodes(domid, delta);
    return ok(this.triggers);
  }
}
