/**
 * XenStore workloads, over the guest's own xenstore ring (XsClient):
 *
 *  - XsWorkload (well-behaved): writes, reads back, lists and removes nodes
 *    in its home, and keeps a private `data/secret` that no other guest may read.
 *  - XsAbuser (hostile, driven by injectors): quota exhaustion, malformed and
 *    foreign paths, transaction storms, reading other guests' secrets. After
 *    each act one well-formed request must still succeed: xenstored refuses
 *    the abuse and keeps serving (msgpack's "instance is not broken").
 */
import { isXsError, type XsHandle } from '../shared/xenbus/xs-handle.ts';
import type { XsTxId } from '../shared/abi/xenstore.ts';
import type { StressHost } from './host.ts';
import type { StressPlatform } from './platform.ts';
import { newWorkloadBooks, type WorkloadBooks } from './view.ts';

export const SECRET_KEY = 'data/secret';

/** The guest's good XenStore traffic. */
export class XsWorkload {
  readonly work: WorkloadBooks;
  constructor(private readonly host: StressHost, private readonly xs: XsHandle) {
    this.work = newWorkloadBooks('xenstore-rw', host.k.domid, false);
    host.books.workloads.push(this.work);
  }

  start(): void {
    this.host.spawn('xs-rw', async (p) => {
      const w = this.work;
      const rng = p.rng;
      const keys = new Map<string, string>();
      const ok = (r: { ok: boolean }, what: string): boolean => {
        w.ops++;
        if (r.ok) { w.okOps++; return true; }
        w.errors++;
        this.host.note(`xs-rw ${what} failed`);
        return false;
      };
      await p.point('xs:secret');
      ok(await this.xs.write(SECRET_KEY, `s3cret-${this.host.k.domid}-${rng.next()}`), 'write secret');
      while (!p.stopping) {
        await p.point('xs:op');
        const choice = rng.int(10);
        if (choice < 4 || keys.size === 0) {
          const k = `data/stress/k${rng.int(16)}`;
          const v = `v${rng.next().toString(16)}`;
          if (ok(await this.xs.write(k, v), `write ${k}`)) keys.set(k, v);
        } else if (choice < 8) {
          const k = rng.pick([...keys.keys()]);
          const r = await this.xs.readString(k);
          if (ok(r, `read ${k}`) && r.ok && r.value !== keys.get(k)) {
            w.verifyFailures.push(`d${this.host.k.domid} ${k}: read '${r.value}', wrote '${keys.get(k)}'`);
          }
        } else if (choice < 9) {
          const r = await this.xs.directory('data/stress');
          if (ok(r, 'directory') && r.ok) {
            for (const k of keys.keys()) {
              if (!r.value.includes(k.slice('data/stress/'.length))) w.verifyFailures.push(`d${this.host.k.domid} directory data/stress lacks ${k}`);
            }
          }
        } else {
          const k = rng.pick([...keys.keys()]);
          if (ok(await this.xs.rm(k), `rm ${k}`)) keys.delete(k);
        }
        await p.sleep(rng.int(30), 'xs:think');
      }
      w.done = true;
    });
  }
}

export type XsAbuseAct = 'quota' | 'bad-paths' | 'tx-storm' | 'snoop';

/** A hostile guest's XenStore abuse: each act runs as its own task. */
export class XsAbuser {
  readonly work: WorkloadBooks;
  private busy = false;

  constructor(
    private readonly host: StressHost,
    private readonly xs: XsHandle,
    /** The nominal quotas the daemon is held to. */
    private readonly quota: { readonly nodes: number; readonly transactions: number; readonly entrySize: number },
  ) {
    this.work = newWorkloadBooks('xenstore-abuse', host.k.domid, true);
    host.books.workloads.push(this.work);
  }

  /** Starts act (false when another act is still running). `victims` are other guests' domids. */
  act(act: XsAbuseAct, victims: readonly number[]): boolean {
    if (this.busy) return false;
    this.busy = true;
    this.host.spawn(`xs-abuse-${act}`, async (p) => {
      try {
        switch (act) {
          case 'quota': await this.exhaustQuota(p); break;
          case 'bad-paths': await this.badPaths(p); break;
          case 'tx-storm': await this.txStorm(p); break;
          case 'snoop': await this.snoop(p, victims); break;
        }
        await this.stillServing(p, act);
      } finally {
        this.busy = false;
      }
    });
    return true;
  }

  private get xsb() { return this.host.books.xs; }

  /** Writes nodes until xenstored says ENOSPC; creating more than the quota allows is the daemon's bug. */
  private async exhaustQuota(p: StressPlatform): Promise<void> {
    const limit = this.quota.nodes + 16;
    let created = 0;
    for (let i = 0; i < limit && !p.stopping; i++) {
      await p.point('xsa:quota');
      const r = await this.xs.write(`data/junk/n${i}`, 'x');
      this.work.ops++;
      if (r.ok) {
        created++;
        this.work.okOps++;
        // The guest owns at least its home's nodes plus these: past the quota no write may succeed.
        if (created > this.quota.nodes) this.xsb.overQuotaWrites++;
        continue;
      }
      if (isXsError(r.error, 'ENOSPC')) { this.xsb.quotaRefusals++; break; }
      this.work.errors++;
      break;
    }
    await p.point('xsa:quota-clean');
    await this.xs.rm('data/junk');
  }

  private async badPaths(p: StressPlatform): Promise<void> {
    const d = this.host.k.domid;
    const cases: { path: string; value: string; why: string }[] = [
      { path: 'data/a//b', value: 'x', why: 'empty component' },
      { path: 'data/trailing/', value: 'x', why: 'trailing slash' },
      { path: 'data/sp ace', value: 'x', why: 'invalid character' },
      { path: 'data/dot.dot', value: 'x', why: 'invalid character' },
      { path: `data/${'L'.repeat(2100)}`, value: 'x', why: 'longer than the per-domain path quota' },
      { path: `/${'A'.repeat(3100)}`, value: 'x', why: 'longer than XENSTORE_ABS_PATH_MAX' },
      { path: '/local/domain/0/stress-owned', value: 'x', why: "dom0's home" },
      { path: '/tool/xenstored/stress', value: 'x', why: "xenstored's own tree" },
      { path: '@releaseDomain', value: 'x', why: 'a special node' },
      { path: 'data/toolarge', value: 'v'.repeat(this.quota.entrySize + 1), why: 'a value over the entry-size quota' },
    ];
    for (const c of cases) {
      if (p.stopping) return;
      await p.point('xsa:bad-path');
      const r = await this.xs.write(c.path, c.value);
      this.xsb.badPathsTried++;
      this.work.ops++;
      if (r.ok) this.xsb.badPathsAccepted.push(`d${d} wrote '${c.path.slice(0, 40)}${c.path.length > 40 ? '…' : ''}' (${c.why})`);
      else this.work.errors++;
    }
  }

  /** Opens transactions past the quota, commits conflicting ones, abandons the rest. */
  private async txStorm(p: StressPlatform): Promise<void> {
    const open: XsTxId[] = [];
    for (let i = 0; i < this.quota.transactions + 4 && !p.stopping; i++) {
      await p.point('xsa:tx-start');
      const r = await this.xs.transactionStart();
      this.work.ops++;
      if (r.ok) { open.push(r.value); this.work.okOps++; continue; }
      if (isXsError(r.error, 'ENOSPC') || isXsError(r.error, 'EAGAIN')) this.xsb.transactionsRefused++;
      else this.work.errors++;
      break;
    }
    if (open.length > this.quota.transactions) this.xsb.overQuotaWrites += open.length - this.quota.transactions;
    // Everyone writes the same key; only the first commit may succeed.
    for (const tx of open) {
      await p.point('xsa:tx-write');
      await this.xs.write('data/txkey', `t${tx}`, tx);
    }
    for (const [i, tx] of open.entries()) {
      await p.point('xsa:tx-end');
      await this.xs.transactionEnd(tx, i % 3 !== 2);
    }
  }

  /** Reads other guests' private secrets: every read must be refused. */
  private async snoop(p: StressPlatform, victims: readonly number[]): Promise<void> {
    for (const v of victims) {
      if (v === this.host.k.domid || p.stopping) continue;
      await p.point('xsa:snoop');
      const path = `/local/domain/${v}/${SECRET_KEY}`;
      const r = await this.xs.readString(path);
      this.xsb.snoopAttempts++;
      this.work.ops++;
      if (r.ok) this.xsb.snoopLeaks.push(`d${this.host.k.domid} read ${path} = '${r.value}'`);
      const l = await this.xs.directory(`/local/domain/${v}/data`);
      this.xsb.snoopAttempts++;
      if (l.ok) this.xsb.snoopLeaks.push(`d${this.host.k.domid} listed /local/domain/${v}/data: ${l.value.join(',')}`);
    }
  }

  /** After abuse, one good write and read must work. */
  private async stillServing(p: StressPlatform, act: string): Promise<void> {
    if (p.stopping) return;
    await p.point('xsa:check');
    const v = `ok${p.rng.next()}`;
    const w = await this.xs.write('data/alive', v);
    const r = w.ok ? await this.xs.readString('data/alive') : w;
    if (!r.ok || (r.ok && r.value !== v)) {
      this.xsb.brokenAfterAbuse.push(`d${this.host.k.domid} after ${act}: ${r.ok ? `read '${r.value}'` : JSON.stringify(r.error)}`);
    }
  }
}
