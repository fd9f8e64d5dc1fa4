/**
 * The XenStore tree: nodes with a binary value, an ordered child list and a
 * permission list, indexed by absolute path in one Map.
 *
 * Permissions (docs/misc/xenstore.txt, cxenstored `perm_for_conn`): a node's
 * list is `[owner+default, entry, entry, …]`, written on the wire as `n0`,
 * `r1`, `w2`, `b3` (none / read / write / both + decimal domid). The first
 * entry names the owner and gives the default for every domain not listed.
 * The privileged domain (dom0) and the owner get read+write+owner; another
 * domain gets the first later entry naming it (or naming its SET_TARGET
 * target), else the default. A node created by an unprivileged domain inherits
 * its parent's list with the owner replaced by the creator; dom0's creations
 * inherit the list unchanged.
 *
 * Generations: every change to a node (value, permissions, child list) gives it
 * a fresh generation from one store-wide counter; transactions compare them at
 * commit (transaction.ts) and DIRECTORY_PART reports them.
 *
 * Tree operations are written once against `NodeView`, which the store
 * implements directly and a transaction implements as a copy-on-write overlay
 * of the nodes it touches — no operation copies the tree.
 */
import { asDomId, type DomId } from '../../shared/types.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import type { XsErrno } from '../../shared/abi/xenstore.ts';
import { XS_SPECIAL_INTRODUCE_DOMAIN, XS_SPECIAL_RELEASE_DOMAIN } from '../../shared/abi/xenstore.ts';
import { ancestorsOf, basename, childPath, parentOf } from './path.ts';
import { DomainAccounting, type XsQuota } from './quota.ts';

/** enum xs_perm_type bits (xenstore_lib.h); only READ and WRITE travel on the wire. */
export const XS_PERM = { NONE: 0, READ: 1, WRITE: 2, OWNER: 8 } as const;
export type XsPermBits = number;

export interface XsPermEntry {
  readonly id: DomId;
  /** XS_PERM.READ | XS_PERM.WRITE subset. */
  readonly perms: XsPermBits;
}
/** A node's permission list; never empty (entry 0 = owner + default). */
export type NodePerms = readonly XsPermEntry[];

/** Who is asking: the connection's domain, whether it is privileged, and its SET_TARGET target. */
export interface XsCaller {
  readonly domid: DomId;
  readonly privileged: boolean;
  readonly target?: DomId | undefined;
}

/** [parsePerm s] decodes one `n0`/`r1`/`w2`/`b3` string, or EINVAL. */
export function parsePerm(s: string): Result<XsPermEntry, 'EINVAL'> {
  if (s.length < 2 || s.length > 6) return err('EINVAL');
  let perms: number;
  switch (s[0]) {
    case 'n': perms = XS_PERM.NONE; break;
    case 'r': perms = XS_PERM.READ; break;
    case 'w': perms = XS_PERM.WRITE; break;
    case 'b': perms = XS_PERM.READ | XS_PERM.WRITE; break;
    default: return err('EINVAL');
  }
  const digits = s.slice(1);
  if (!/^[0-9]+$/.test(digits)) return err('EINVAL');
  const id = Number(digits);
  if (id > 0xffff) return err('EINVAL');
  return ok({ id: asDomId(id), perms });
}

/** [parsePerms strings] decodes a whole permission list (at least one entry). */
export function parsePerms(strings: readonly string[]): Result<NodePerms, 'EINVAL'> {
  if (strings.length === 0) return err('EINVAL');
  const out: XsPermEntry[] = [];
  for (const s of strings) {
    const p = parsePerm(s);
    if (!p.ok) return p;
    out.push(p.value);
  }
  return ok(out);
}

export function permToString(p: XsPermEntry): string {
  const r = (p.perms & XS_PERM.READ) !== 0;
  const w = (p.perms & XS_PERM.WRITE) !== 0;
  return `${r && w ? 'b' : r ? 'r' : w ? 'w' : 'n'}${p.id}`;
}

/** [permForCaller caller perms] is the XS_PERM bits the caller has on a node with these perms. */
export function permForCaller(caller: XsCaller, perms: NodePerms): XsPermBits {
  const owner = perms[0];
  const all = XS_PERM.READ | XS_PERM.WRITE | XS_PERM.OWNER;
  if (caller.privileged || owner === undefined) return caller.privileged ? all : XS_PERM.NONE;
  const t = caller.target;
  if (owner.id === caller.domid || (t !== undefined && owner.id === t)) return all;
  for (let i = 1; i < perms.length; i++) {
    const p = perms[i] as XsPermEntry;
    if (p.id === caller.domid || (t !== undefined && p.id === t)) return p.perms;
  }
  return owner.perms;
}

export interface XsNode {
  /** The value; never mutated in place (replaced on write). */
  value: Uint8Array;
  /** Never mutated in place (replaced on SET_PERMS). */
  perms: NodePerms;
  /** Child names in creation order (as C xenstored keeps them). */
  children: Set<string>;
  /** Generation of the last change to this node. */
  gen: number;
}

/** The node operations the tree algorithms need; implemented by XsStore and XsTransaction. */
export interface NodeView {
  get(path: string): XsNode | undefined;
  /** The node at path (which exists), ready to change in place; its generation is bumped. */
  modify(path: string): XsNode;
  /** Adds a node at a path that does not exist (its parent's child list is the caller's business). */
  create(path: string, node: XsNode): void;
  /** Deletes one node (not its children; not its parent's child entry). */
  remove(path: string): void;
  /** Nodes owned by domid as this view sees them. */
  ownedNodes(domid: DomId): number;
  addOwnedNodes(domid: DomId, delta: number): void;
  nextGen(): number;
}

const EMPTY = new Uint8Array(0);

/** The live tree. */
export class XsStore implements NodeView {
  private readonly nodes = new Map<string, XsNode>();
  private gen = 0;
  /** Special nodes: permission lists only (cxenstored keeps them as nodes outside "/"). */
  readonly special = new Map<string, NodePerms>();

  constructor(readonly accounting: DomainAccounting = new DomainAccounting()) {
    const dom0 = asDomId(0);
    const rootPerms: NodePerms = [{ id: dom0, perms: XS_PERM.NONE }];
    this.create('/', { value: EMPTY, perms: rootPerms, children: new Set(), gen: this.nextGen() });
    // cxenstored's setup_structure: "/", "/tool", "/tool/xenstored" owned by dom0.
    for (const p of ['/tool', '/tool/xenstored']) {
      this.create(p, { value: EMPTY, perms: rootPerms, children: new Set(), gen: this.nextGen() });
      this.modify(parentOf(p)).children.add(basename(p));
    }
    this.special.set(XS_SPECIAL_INTRODUCE_DOMAIN, rootPerms);
    this.special.set(XS_SPECIAL_RELEASE_DOMAIN, rootPerms);
  }

  get size(): number { return this.nodes.size; }
  get(path: string): XsNode | undefined { return this.nodes.get(path); }
  has(path: string): boolean { return this.nodes.has(path); }
  modify(path: string): XsNode {
    const n = this.nodes.get(path);
    if (!n) throw new RangeError(`xenstore: modify of absent node ${path}`);
    n.gen = this.nextGen();
    return n;
  }
  create(path: string, node: XsNode): void {
    this.nodes.set(path, node);
    this.accounting.addNodes((node.perms[0] as XsPermEntry).id, 1);
  }
  remove(path: string): void {
    const n = this.nodes.get(path);
    if (!n) return;
    this.nodes.delete(path);
    this.accounting.addNodes((n.perms[0] as XsPermEntry).id, -1);
  }
  ownedNodes(domid: DomId): number { return this.accounting.nodes(domid); }
  addOwnedNodes(domid: DomId, delta: number): void { this.accounting.addNodes(domid, delta); }
  nextGen(): number { return ++this.gen; }

  /**
   * [install path node] puts a transaction's final version of a node (or null:
   * deleted) into the live tree with a fresh generation. Ownership counts are
   * applied by the caller from the transaction's deltas.
   */
  install(path: string, node: XsNode | null): void {
    if (node === null) {
      this.nodes.delete(path);
    } else {
      node.gen = this.nextGen();
      this.nodes.set(path, node);
    }
  }

  /** Every path, for the consistency check and tests. */
  paths(): IterableIterator<string> { return this.nodes.keys(); }

  /**
   * [check] lists broken invariants (empty when sound): every non-root node's
   * parent exists and lists it, every listed child exists, ownership counts
   * match.
   */
  check(): string[] {
    const problems: string[] = [];
    const owned = new Map<DomId, number>();
    for (const [path, n] of this.nodes) {
      const owner = n.perms[0];
      if (!owner) { problems.push(`${path}: empty permission list`); continue; }
      owned.set(owner.id, (owned.get(owner.id) ?? 0) + 1);
      for (const c of n.children) if (!this.nodes.has(childPath(path, c))) problems.push(`${path}: lists missing child ${c}`);
      if (path !== '/') {
        const parent = this.nodes.get(parentOf(path));
        if (!parent) problems.push(`${path}: parent missing`);
        else if (!parent.children.has(basename(path))) problems.push(`${path}: not listed by its parent`);
      }
    }
    for (const [d, u] of this.accounting.snapshot()) {
      if ((owned.get(d) ?? 0) !== u.nodes) problems.push(`d${d}: accounted ${u.nodes} nodes, owns ${owned.get(d) ?? 0}`);
    }
    for (const [d, count] of owned) {
      if (this.accounting.nodes(d) !== count) problems.push(`d${d}: owns ${count} nodes, accounted ${this.accounting.nodes(d)}`);
    }
    return problems;
  }
}

/**
 * [errnoFromParents view caller path errno need]: cxenstored's rule that a
 * failure must not tell a caller about a node it may not see — ENOENT only if
 * the nearest existing ancestor grants `need`, EACCES otherwise.
 */
export function errnoFromParents(view: NodeView, caller: XsCaller, path: string, errno: XsErrno, need: XsPermBits): XsErrno {
  for (const a of ancestorsOf(path)) {
    const n = view.get(a);
    if (n) return (permForCaller(caller, n.perms) & need) !== 0 ? errno : 'EACCES';
  }
  return 'EACCES';
}

/** [getChecked view caller path need] is the node if it exists and the caller has all of `need`. */
export function getChecked(view: NodeView, caller: XsCaller, path: string, need: XsPermBits): Result<XsNode, XsErrno> {
  const n = view.get(path);
  if (n && (permForCaller(caller, n.perms) & need) === need) return ok(n);
  return err(errnoFromParents(view, caller, path, n ? 'EACCES' : 'ENOENT', need));
}

/**
 * [createNode view caller path value quota] creates path and any missing
 * ancestors (empty values), each inheriting its parent's permissions with the
 * owner replaced by an unprivileged creator. Checks the node quota for every
 * new node before creating any, so a refusal changes nothing.
 */
export function createNode(view: NodeView, caller: XsCaller, path: string, value: Uint8Array, quota: XsQuota): Result<XsNode, XsErrno> {
  const missing: string[] = [path];
  let existing: string | undefined;
  for (const a of ancestorsOf(path)) {
    if (view.get(a)) { existing = a; break; }
    missing.push(a);
  }
  if (existing === undefined) throw new RangeError('xenstore: the root node is missing');
  if (!caller.privileged && view.ownedNodes(caller.domid) + missing.length > quota.nodes) return err('ENOSPC');
  let parentPath = existing;
  let parentPerms = (view.get(existing) as XsNode).perms;
  let node: XsNode | undefined;
  for (let i = missing.length - 1; i >= 0; i--) {
    const p = missing[i] as string;
    const perms: NodePerms = caller.privileged
      ? parentPerms
      : [{ id: caller.domid, perms: (parentPerms[0] as XsPermEntry).perms }, ...parentPerms.slice(1)];
    node = { value: i === 0 ? value : EMPTY, perms, children: new Set(), gen: view.nextGen() };
    view.modify(parentPath).children.add(basename(p));
    view.create(p, node);
    parentPath = p;
    parentPerms = perms;
  }
  return ok(node as XsNode);
}

/**
 * [removeSubtree view path] deletes path and everything below it and unlinks
 * it from its parent. Returns each removed path with the permissions it had
 * (watch events are checked against them), the removed root first.
 */
export function removeSubtree(view: NodeView, path: string): Map<string, NodePerms> {
  const removed = new Map<string, NodePerms>();
  const stack = [path];
  while (stack.length > 0) {
    const p = stack.pop() as string;
    const n = view.get(p);
    if (!n) continue;
    removed.set(p, n.perms);
    for (const c of n.children) stack.push(childPath(p, c));
  }
  for (const p of removed.keys()) view.remove(p);
  view.modify(parentOf(path)).children.delete(basename(path));
  return removed;
}

/** [setPerms view path perms] replaces a node's permission list, moving its ownership count. */
export function setNodePerms(view: NodeView, path: string, perms: NodePerms): NodePerms {
  const n = view.modify(path);
  const old = n.perms;
  const oldOwner = (old[0] as XsPermEntry).id;
  const newOwner = (perms[0] as XsPermEntry).id;
  if (oldOwner !== newOwner) {
    view.addOwnedNodes(oldOwner, -1);
    view.addOwnedNodes(newOwner, 1);
  }
  n.perms = perms;
  return old;
}
