/**
 * Watches (docs/misc/xenstore.txt "Watches"; cxenstored watch.c):
 *  - a watch on W fires for a change to W or to anything below W, with the
 *    changed path as the event path;
 *  - the recursive removal of a parent of W fires W's watch with event path W;
 *  - registration fires once at once with event path W (the daemon sends it);
 *  - a watch set with a relative path gets relative event paths;
 *  - @introduceDomain / @releaseDomain match only themselves;
 *  - an unprivileged watcher gets an event only if it may read the node
 *    (with the permissions the node had when it changed: for a removal the
 *    removed node's, for SET_PERMS the old or the new list).
 *
 * Watches are indexed by path, so matching one change costs one Map lookup
 * per path component, not a scan of every watch; only the recursive removal
 * of a subtree scans the index for watches below it.
 */
import { XS_PERM, permForCaller, type NodePerms, type XsCaller } from './store.ts';
import { ancestorsOf, isChildOrSelf, relativize } from './path.ts';

/** One change that may fire watches. */
export interface WatchTrigger {
  /** The changed node (absolute path or @special). */
  readonly path: string;
  /** Permission lists that decide who may see the event (any one granting read suffices). */
  readonly perms: readonly NodePerms[];
  /** For a recursive removal: every removed path with its permissions. */
  readonly removed?: ReadonlyMap<string, NodePerms>;
}

export interface WatchOwner {
  readonly caller: XsCaller;
}

export interface XsWatch<C extends WatchOwner> {
  readonly owner: C;
  /** Canonical watched path (absolute or @special). */
  readonly path: string;
  readonly token: string;
  /** The caller's home (/local/domain/<id>) when the watch was set with a relative path. */
  readonly relativeBase: string | undefined;
}

export interface WatchFiring<C extends WatchOwner> {
  readonly watch: XsWatch<C>;
  /** Event path as the watcher sees it (relative for a relative watch). */
  readonly eventPath: string;
}

export class WatchTable<C extends WatchOwner> {
  private readonly byPath = new Map<string, XsWatch<C>[]>();
  private count = 0;

  get size(): number { return this.count; }

  /** [eventPathFor watch path] is path as watch's owner should see it. */
  static eventPathFor<C extends WatchOwner>(watch: XsWatch<C>, path: string): string {
    return watch.relativeBase === undefined ? path : relativize(path, watch.relativeBase);
  }

  find(owner: C, path: string, token: string): XsWatch<C> | undefined {
    return this.byPath.get(path)?.find((w) => w.owner === owner && w.token === token);
  }

  add(watch: XsWatch<C>): void {
    const list = this.byPath.get(watch.path);
    if (list) list.push(watch);
    else this.byPath.set(watch.path, [watch]);
    this.count++;
  }

  /** [remove owner path token] drops one watch; false if there was none. */
  remove(owner: C, path: string, token: string): boolean {
    const list = this.byPath.get(path);
    if (!list) return false;
    const i = list.findIndex((w) => w.owner === owner && w.token === token);
    if (i < 0) return false;
    list.splice(i, 1);
    if (list.length === 0) this.byPath.delete(path);
    this.count--;
    return true;
  }

  private static mayRead(caller: XsCaller, perms: readonly NodePerms[]): boolean {
    if (caller.privileged) return true;
    for (const p of perms) if ((permForCaller(caller, p) & XS_PERM.READ) !== 0) return true;
    return false;
  }

  /** [match trigger] is every watch the change fires, with the event path each sees. */
  match(trigger: WatchTrigger): WatchFiring<C>[] {
    const out: WatchFiring<C>[] = [];
    const fire = (list: readonly XsWatch<C>[] | undefined, path: string, perms: readonly NodePerms[]): void => {
      if (!list) return;
      for (const w of list) {
        if (WatchTable.mayRead(w.owner.caller, perms)) out.push({ watch: w, eventPath: WatchTable.eventPathFor(w, path) });
      }
    };
    // Watches on the changed path and on each of its ancestors.
    fire(this.byPath.get(trigger.path), trigger.path, trigger.perms);
    if (trigger.path.charCodeAt(0) !== 0x40 /* @ */) {
      for (const a of ancestorsOf(trigger.path)) fire(this.byPath.get(a), trigger.path, trigger.perms);
    }
    // Recursive removal: watches strictly below the removed root fire with their own path.
    if (trigger.removed) {
      for (const [wpath, list] of this.byPath) {
        if (wpath === trigger.path || !isChildOrSelf(wpath, trigger.path)) continue;
        let perms = trigger.removed.get(wpath);
        if (!perms) {
          for (const a of ancestorsOf(wpath)) {
            perms = trigger.removed.get(a);
            if (perms) break;
          }
        }
        fire(list, wpath, perms ? [perms] : trigger.perms);
      }
    }
    return out;
  }
}
