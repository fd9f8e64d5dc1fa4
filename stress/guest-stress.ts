/**
 * A guest's side of a stress run, the same in both modes: its vstress
 * frontend (probed through XenBus on its own xenstore ring), a ping client,
 * its XenStore traffic, and — for a hostile guest — the acts injectors ask
 * for. Every act runs as a task on the guest's own vCPU, through the same
 * kernel primitives a real guest has: hostility is what it does with them.
 */
import { GNTST } from '../shared/abi/grant.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import { MemoryFault } from '../shared/memory/domain-memory.ts';
import { asDomId, asGref, type DomId, type GuestAddr, type Pfn } from '../shared/types.ts';
import { createFrontendBus, type XenbusFrontend } from '../shared/xenbus/frontend.ts';
import type { XenbusBus } from '../shared/xenbus/device.ts';
import type { XsHandle } from '../shared/xenbus/xs-handle.ts';
import { PingClient, StormSender } from './events.ts';
import type { MapOracle, StressHost } from './host.ts';
import { BlkStressFrontend } from './blk-plugin.ts';
import { NetHostileFrontend, NetStressFrontend, type NetPeers } from './net-plugin.ts';
import { PageBook, takeBallooned } from './pages.ts';
import type { StressPlatform } from './platform.ts';
import { VSTRESS_TYPE, VstressFront, type FrontMutant, type HostileRingAct } from './vstress.ts';
import { XsAbuser, XsWorkload, type XsAbuseAct } from './xs-work.ts';

/** Everything a hostile guest can be asked to do. */
export type GuestAct =
  | { readonly kind: 'ring'; readonly act: HostileRingAct }
  | { readonly kind: 'xs'; readonly act: XsAbuseAct; readonly victims: readonly number[] }
  | { readonly kind: 'storm'; readonly events: number }
  | { readonly kind: 'grant-exhaustion' }
  | { readonly kind: 'bad-batch' }
  | { readonly kind: 'wild-access'; readonly victims: readonly number[] };

export interface GuestStressOptions {
  readonly hostile: boolean;
  readonly frontMutant?: FrontMutant;
  readonly oracle?: MapOracle;
  /** Requests the vstress frontend keeps in flight. */
  readonly depth: number;
  readonly quota: { readonly nodes: number; readonly transactions: number; readonly entrySize: number };
  /** Run blkfront and a verified workload on xvda (well-behaved guests; blk-plugin.ts). */
  readonly blk?: { readonly persistent: boolean };
  /** Run netfront and a verified UDP exchange with the other guests on this network (well-behaved guests; net-plugin.ts). */
  readonly net?: NetPeers;
}

export class GuestStress {
  readonly pages: PageBook;
  readonly front: VstressFront;
  private bus: XenbusBus<XenbusFrontend<number>> | undefined;
  ping: PingClient | undefined;
  storm: StormSender | undefined;
  private readonly xsWork: XsWorkload | undefined;
  private readonly abuser: XsAbuser | undefined;
  readonly blk: BlkStressFrontend | undefined;
  readonly net: NetStressFrontend | undefined;
  readonly netHostile: NetHostileFrontend | undefined;
  private busyActs = 0;

  constructor(readonly host: StressHost, private readonly xs: XsHandle, private readonly opts: GuestStressOptions) {
    this.pages = new PageBook(host.k, host.books);
    this.front = new VstressFront(host, this.pages, { hostile: opts.hostile, mutant: opts.frontMutant, depth: opts.depth, oracle: opts.oracle });
    if (opts.hostile) this.abuser = new XsAbuser(host, xs, opts.quota);
    else this.xsWork = new XsWorkload(host, xs);
    this.blk = opts.blk !== undefined && !opts.hostile ? new BlkStressFrontend(host, xs, opts.depth, opts.blk.persistent) : undefined;
    this.net = opts.net !== undefined && !opts.hostile ? new NetStressFrontend(host, xs, opts.net) : undefined;
    this.netHostile = opts.net !== undefined && opts.hostile ? new NetHostileFrontend(host, xs, opts.net) : undefined;
  }

  private get k(): DomainKernel { return this.host.k; }
  get hostile(): boolean { return this.opts.hostile; }

  /** Starts the frontend bus (the handshake starts when the toolstack creates the device) and the XenStore workload. */
  async start(): Promise<boolean> {
    const bus = createFrontendBus<number>(this.xs, asDomId(this.k.domid), VSTRESS_TYPE, () => this.front.hooks());
    this.bus = bus;
    const r = await bus.start();
    if (!r.ok) return false;
    if (this.blk !== undefined && !(await this.blk.start())) return false;
    if (this.net !== undefined && !(await this.net.start())) return false;
    if (this.netHostile !== undefined && !(await this.netHostile.start())) return false;
    this.xsWork?.start();
    return true;
  }

  /** Offers dom0 a port to echo on; the pings start once dom0 has bound it (startPing). */
  offerPing(): number {
    this.ping = new PingClient(this.host, 0);
    return this.ping.port;
  }
  startPing(): void { this.ping?.start(); }

  offerStorm(): number {
    this.storm = new StormSender(this.host, 0);
    return this.storm.port;
  }

  /** [act a] starts a hostile act; false when this guest is not hostile or cannot do it now. */
  act(a: GuestAct): boolean {
    if (!this.opts.hostile) return false;
    switch (a.kind) {
      case 'ring': return this.front.requestAct(a.act);
      case 'xs': return this.abuser?.act(a.act, a.victims) ?? false;
      case 'storm':
        if (this.storm === undefined) return false;
        this.storm.burst(a.events);
        return true;
      case 'grant-exhaustion': return this.task('grant-exhaustion', (p) => this.exhaustGrants(p));
      case 'bad-batch': return this.task('bad-batch', (p) => this.badBatch(p));
      case 'wild-access': return this.task('wild-access', (p) => this.wildAccess(p, a.victims));
    }
  }

  private task(name: string, body: (p: StressPlatform) => Promise<void>): boolean {
    if (this.busyActs > 0) return false;
    this.busyActs++;
    this.host.spawn(name, async (p) => { try { await body(p); } finally { this.busyActs--; } });
    return true;
  }

  /** Grants one page to dom0 over and over until the table is full: the refusal must be clean. */
  private async exhaustGrants(p: StressPlatform): Promise<void> {
    const g = this.host.books.grants;
    const pfn = this.pages.alloc();
    if (pfn === undefined) return;
    const refs = [];
    g.exhaustionRuns++;
    try {
      for (let i = 0; ; i++) {
        if ((i & 63) === 0) await p.point('exhaust:grant');
        const ref = this.pages.grant(0, pfn, true, 'exhaustion');
        if (ref === undefined) break;
        refs.push(ref);
      }
      if (this.k.gnttab.freeCount !== 0) g.exhaustionFailures++;
    } catch (e) {
      g.exhaustionFailures++;
      this.host.note(`grant exhaustion threw: ${(e as Error).message}`);
    }
    await p.point('exhaust:release');
    for (const ref of refs) this.pages.endAccess(ref, false);
    this.pages.free(pfn);
  }

  /**
   * Map and copy batches mixing good elements (our own grants) with bad ones:
   * each element must get its own status, good ones succeed, bad ones change
   * nothing (XSA-361: a failed batch element leaves no pin behind).
   */
  private async badBatch(p: StressPlatform): Promise<void> {
    const k = this.k;
    const g = this.host.books.grants;
    const self = k.domid as DomId;
    const a = this.pages.alloc();
    const b = this.pages.alloc();
    if (a === undefined || b === undefined) { if (a !== undefined) this.pages.free(a); return; }
    const ref = this.pages.grant(self, a, false, 'self-map');
    if (ref === undefined) { this.pages.free(a); this.pages.free(b); return; }
    g.badBatches++;
    const hosts: Pfn[] = [];
    for (let i = 0; i < 5; i++) { const h = takeBallooned(k, this.host.books); if (h !== undefined) hosts.push(h); }
    if (hosts.length < 5) { for (const h of hosts) k.ballooned.release(h); this.pages.endAccess(ref, true); this.pages.free(b); return; }
    await p.point('batch:map');
    const cases = [
      { domid: self, ref, good: true, why: 'our own grant' },
      { domid: self, ref: asGref(0xfffff), good: false, why: 'a ref beyond the table' },
      { domid: self, ref: asGref(this.k.gnttab.nrEntries - 1), good: false, why: 'a ref never granted' },
      { domid: 0x7ff4 as DomId, ref, good: false, why: 'DOMID_INVALID' },
      { domid: self, ref, good: true, why: 'the same grant again' },
    ];
    const res = k.gnttab.mapGrantRefs(cases.map((c, i) => ({ domid: c.domid, ref: c.ref, readonly: false, hostPfn: hosts[i] as Pfn })));
    const mapped: { handle: number; pfn: Pfn }[] = [];
    res.forEach((r, i) => {
      const c = cases[i] as (typeof cases)[number];
      if (r.status === 0) { mapped.push({ handle: r.handle, pfn: hosts[i] as Pfn }); this.host.books.expectedMaptrack++; }
      if ((r.status === 0) !== c.good) g.badBatchMismatches.push(`d${k.domid} map of ${c.why}: status ${r.status}`);
    });
    await p.point('batch:copy');
    const copies = [
      { q: { source: { gref: ref, domid: self, offset: 0 }, dest: { frame: b, offset: 0 }, len: 512 }, good: true, why: 'grant to own page' },
      { q: { source: { gref: asGref(0xfffff), domid: self, offset: 0 }, dest: { frame: b, offset: 0 }, len: 512 }, good: false, why: 'a ref beyond the table' },
      { q: { source: { gref: ref, domid: self, offset: 4000 }, dest: { frame: b, offset: 0 }, len: 512 }, good: false, why: 'a copy past the page end' },
      { q: { source: { gref: ref, domid: 0x7ff4 as DomId, offset: 0 }, dest: { frame: b, offset: 0 }, len: 8 }, good: false, why: 'DOMID_INVALID' },
    ];
    const cs = k.gnttab.copy(copies.map((c) => c.q));
    cs.forEach((st, i) => {
      const c = copies[i] as (typeof copies)[number];
      if ((st === GNTST.okay) !== c.good) g.badBatchMismatches.push(`d${k.domid} copy of ${c.why}: status ${st}`);
    });
    await p.point('batch:unmap');
    const st = k.gnttab.unmapGrantRefs(mapped.map((m) => ({ handle: m.handle as never, hostPfn: m.pfn })));
    st.forEach((s) => { if (s === 0) this.host.books.expectedMaptrack--; });
    for (const h of hosts) k.ballooned.release(h);
    this.pages.endAccess(ref, true);
    this.pages.free(b);
  }

  /**
   * Touches memory the guest was never given: an unpopulated pfn, a pfn past
   * its P2M, and grants of other guests. Each access must fault (counted as
   * expected) and each map must be refused.
   */
  private async wildAccess(p: StressPlatform, victims: readonly number[]): Promise<void> {
    const k = this.k;
    const books = this.host.books;
    const probes: { gpa: number; why: string }[] = [
      { gpa: (k.boot.foreignBase + k.boot.foreignPages - 1) * k.pageSize, why: 'an unpopulated pfn' },
      { gpa: k.boot.p2mEntries * k.pageSize + 8, why: 'a pfn past its P2M' },
    ];
    for (const pr of probes) {
      await p.point('wild:touch');
      try {
        k.mem.getU32(pr.gpa as GuestAddr);
        books.isolation.push(`d${k.domid} read ${pr.why} without a fault`);
      } catch (e) {
        if (!(e instanceof MemoryFault)) throw e;
        books.expectedFaults++;
      }
    }
    for (const v of victims) {
      if (v === k.domid) continue;
      await p.point('wild:map');
      const host = takeBallooned(k, books);
      if (host === undefined) return;
      const ref = 8 + p.rng.int(24);
      const [r] = k.gnttab.mapGrantRefs([{ domid: v as DomId, ref: asGref(ref), readonly: true, hostPfn: host }]);
      if (r !== undefined && r.status === 0) {
        books.isolation.push(`d${k.domid} mapped d${v}'s grant ref ${ref}, which was not granted to it`);
        this.host.books.expectedMaptrack++;
        const [s] = k.gnttab.unmapGrantRefs([{ handle: r.handle, hostPfn: host }]);
        if (s === 0) this.host.books.expectedMaptrack--;
      }
      k.ballooned.release(host);
    }
  }

  async stop(): Promise<void> {
    await this.bus?.stop();
    await this.blk?.stop();
    await this.net?.stop();
    await this.netHostile?.stop();
  }
}
