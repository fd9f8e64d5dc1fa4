/**
 * Per-domain quotas. We follow the C xenstored (cxenstored, tools/xenstored/
 * core.c, watch.c, transaction.c, domain.c) for both limits and error names:
 *
 * | quota                 | cxenstored name              | default | error    |
 * |-----------------------|------------------------------|---------|----------|
 * | nodes owned           | quota_nb_entry_per_domain    | 1000    | ENOSPC   |
 * | watches               | quota_nb_watch_per_domain    | 128     | E2BIG    |
 * | open transactions     | quota_max_transaction        | 10      | ENOSPC   |
 * | value size (bytes)    | quota_max_entry_size         | 2048    | ENOSPC   |
 * | permissions per node  | quota_nb_perms_per_node      | 5       | ENOSPC   |
 * | nodes per transaction | quota_trans_nodes            | 1024    | ENOSPC   |
 * | path below home       | quota_max_path_len           | 2048    | EINVAL   |
 *
 * (oxenstored differs: it answers E2BIG for oversized values and EQUOTA-style
 * errors elsewhere; we do not follow it.) Two deliberate differences from
 * cxenstored: the limit is exact (cxenstored's `> quota` tests for watches and
 * transactions let one extra through; we refuse the (N+1)th), and the value-size
 * check counts the value bytes only (cxenstored counts its whole record:
 * header, permissions, value and children names). Quotas never apply to the
 * privileged domain (dom0), as in cxenstored's `domain_is_unprivileged` checks.
 */
import type { DomId } from '../../shared/types.ts';
import type { XsErrno } from '../../shared/abi/xenstore.ts';
import { XENSTORE_REL_PATH_MAX } from '../../shared/abi/xenstore.ts';

export interface XsQuota {
  /** Nodes a domain may own. */
  readonly nodes: number;
  /** Watches a domain may hold (over all its connections). */
  readonly watches: number;
  /** Transactions a domain may have open at once. */
  readonly transactions: number;
  /** Largest value in bytes. */
  readonly entrySize: number;
  /** Largest permission list (entries, owner included). */
  readonly permsPerNode: number;
  /** Distinct nodes one transaction may read or write. */
  readonly transactionNodes: number;
  /** Longest path below /local/domain/<id>/ (or absolute path elsewhere). */
  readonly pathLen: number;
  /** Watch events queued for one connection before further events are dropped (not a Xen quota). */
  readonly queuedEvents: number;
}

export const CXENSTORED_QUOTA: XsQuota = {
  nodes: 1000,
  watches: 128,
  transactions: 10,
  entrySize: 2048,
  permsPerNode: 5,
  transactionNodes: 1024,
  pathLen: XENSTORE_REL_PATH_MAX,
  queuedEvents: 1024,
};

/** The quota errors, by quota, as cxenstored returns them. */
export const QUOTA_ERRNO = {
  nodes: 'ENOSPC',
  watches: 'E2BIG',
  transactions: 'ENOSPC',
  entrySize: 'ENOSPC',
  permsPerNode: 'ENOSPC',
  transactionNodes: 'ENOSPC',
  pathLen: 'EINVAL',
} as const satisfies Record<Exclude<keyof XsQuota, 'queuedEvents'>, XsErrno>;

interface DomainUsage {
  nodes: number;
  watches: number;
  transactions: number;
}

/** What each domain currently uses; the store and the daemon keep it up to date. */
export class DomainAccounting {
  private readonly usage = new Map<DomId, DomainUsage>();

  private of(domid: DomId): DomainUsage {
    let u = this.usage.get(domid);
    if (!u) {
      u = { nodes: 0, watches: 0, transactions: 0 };
      this.usage.set(domid, u);
    }
    return u;
  }

  nodes(domid: DomId): number { return this.usage.get(domid)?.nodes ?? 0; }
  watches(domid: DomId): number { return this.usage.get(domid)?.watches ?? 0; }
  transactions(domid: DomId): number { return this.usage.get(domid)?.transactions ?? 0; }

  addNodes(domid: DomId, delta: number): void { this.of(domid).nodes += delta; }
  addWatches(domid: DomId, delta: number): void { this.of(domid).watches += delta; }
  addTransactions(domid: DomId, delta: number): void { this.of(domid).transactions += delta; }

  /** Every domain with non-zero usage (for CONTROL quota and the consistency check). */
  snapshot(): Map<DomId, Readonly<DomainUsage>> {
    const out = new Map<DomId, Readonly<DomainUsage>>();
    for (const [d, u] of this.usage) if (u.nodes || u.watches || u.transactions) out.set(d, { ...u });
    return out;
  }
}
