/**
 * The modelled price of a grant unmap.
 *
 * In Xen, mapping a grant is cheap; unmapping it is not: the mapper's TLBs
 * may still hold the foreign page, so GNTTABOP_unmap_grant_ref ends in a TLB
 * flush on every vCPU of the mapping domain that may have run the mapping —
 * an IPI to each of dom0's other vCPUs, and a wait for all of them. That
 * shootdown is what capped blkback at 400–650k IOPS and what persistent
 * grants removed (PERF-FACTS P1, P2). Shared memory in one process pays
 * nothing of the kind, so without a model the simulation shows mapping as
 * the fast path — the opposite of Xen.
 *
 * [UnmapCostModel] charges each unmap hypercall (one batch, one shootdown)
 * `flushNs + ipiNs × (dom0Vcpus − 1)` of busy CPU on the thread that made it,
 * which is what the unmapping vCPU spends waiting for the IPIs' acks. It is
 * off unless configured; `chargedNs` and `shootdowns` count what it cost.
 */
export interface UnmapCostOptions {
  /** dom0's vCPUs: the shootdown IPIs every vCPU but the one unmapping. */
  readonly dom0Vcpus: number;
  /** Cost of one IPI round trip (send, remote flush, ack), ns. Default 2000. */
  readonly ipiNs?: number;
  /** Cost of the local flush and the hypercall's own work, ns. Default 1000. */
  readonly flushNs?: number;
}

export class UnmapCostModel {
  readonly perBatchNs: number;
  chargedNs = 0;
  shootdowns = 0;

  constructor(readonly opts: UnmapCostOptions) {
    if (!(Number.isInteger(opts.dom0Vcpus) && opts.dom0Vcpus >= 1)) throw new RangeError(`dom0Vcpus must be a positive integer, got ${opts.dom0Vcpus}`);
    this.perBatchNs = (opts.flushNs ?? 1000) + (opts.ipiNs ?? 2000) * (opts.dom0Vcpus - 1);
  }

  /** [charge] spends one shootdown's time, busy (an IPI wait is not a sleep). */
  charge(): void {
    const ns = this.perBatchNs;
    this.shootdowns++;
    this.chargedNs += ns;
    const end = process.hrtime.bigint() + BigInt(ns);
    while (process.hrtime.bigint() < end) { /* the IPIs are in flight */ }
  }
}
