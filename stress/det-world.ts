/**
 * The deterministic world: a whole machine in one thread under the seeded
 * scheduler. The hypervisor (or a mutant of it) on a fresh MachineMemory;
 * dom0 with xenstored, a xenstore ring backend per guest, and the vstress
 * backends, echo services and storm sinks; guests with their kernel, their
 * xenstore ring (XsClient), their vstress frontend and workloads; and a
 * toolstack vCPU that creates and destroys domains as xl would. Every domain
 * calls the hypervisor through a DirectHypercaller wrapped for the trace.
 *
 * Everything a guest or dom0 does runs as a unit of its own vCPU. The
 * toolstack also calls guest kernels directly while building a guest (the
 * guest's boot code, which has no vCPU of its own yet).
 */
import { DCB } from '../shared/abi/machine.ts';
import { SHARED_INFO, VCPU_INFO } from '../shared/abi/evtchn.ts';
import { GRANT_ENTRY_V1, GTF } from '../shared/abi/grant.ts';
import { MachineMemory } from '../shared/memory/machine-memory.ts';
import { DomainKernel } from '../shared/kernel/kernel.ts';
import { asDomId, asGref, type DomId, type GrantHandle, type MachineAddr, type Mfn, type Pfn, type Port } from '../shared/types.ts';
import { Hypervisor } from '../hypervisor/hypervisor.ts';
import { DirectHypercaller } from '../hypervisor/direct.ts';
import type { MaptrackEntry } from '../hypervisor/domain.ts';
import { XenStored } from '../dom0/xenstore/xenstored.ts';
import { XsRingBackend } from '../dom0/xenstore/ring-transport.ts';
import { XsLocalClient } from '../dom0/xenstore/local-client.ts';
import { XenstoreFront } from '../domU/xenstore-front.ts';
import { domainDirs, createDeviceDirs, removeDeviceDirs } from '../toolstack/devices.ts';
import { Dom0Stress } from './dom0-stress.ts';
import { shutdown, startup } from './events.ts';
import { GuestStress, type GuestAct } from './guest-stress.ts';
import { takeBallooned } from './pages.ts';
import type { StressHost, TaskOptions } from './host.ts';
import { injector, type GuestInfo, type InjectionTarget, type InjectorName } from './injectors.ts';
import type { Mutant } from './mutants.ts';
import type { StressPlatform } from './platform.ts';
import type { Prng } from './prng.ts';
import { Scheduler, TracingHypercaller, type VCpu } from './scheduler.ts';
import type { GuestSpec, StressConfig } from './config.ts';
import { VSTRESS_DEVID, VSTRESS_TYPE } from './vstress.ts';
import { vbdDeviceSpec } from './blk-plugin.ts';
import { NetPeers, stepTimers, vifDeviceSpec } from './net-plugin.ts';
import { XsProber } from './xs-view.ts';
import { newDomainBooks, type DomainBooks, type DomainView, type GrantEntryIssue, type P2mIssue, type WorldView, type XenstoreView } from './view.ts';

class DetHost implements StressHost {
  constructor(readonly k: DomainKernel, readonly books: DomainBooks, private readonly sched: Scheduler, readonly vcpu: VCpu) {}
  spawn(name: string, body: (p: StressPlatform) => Promise<void>, opts?: TaskOptions): void { this.sched.spawn(this.vcpu, name, body, opts); }
  now(): number { return this.sched.step; }
  get stopping(): boolean { return this.sched.stopping; }
  note(text: string): void { this.sched.note(`  ${this.vcpu.name}: ${text}`); }
}

interface XsRing { readonly ring: XsRingBackend; readonly pfn: Pfn; readonly handle: GrantHandle; readonly port: Port }

interface Dom0Node {
  readonly k: DomainKernel;
  readonly vcpu: VCpu;
  readonly host: DetHost;
  readonly books: DomainBooks;
  readonly xenstored: XenStored;
  readonly xs: XsLocalClient;
  readonly stress: Dom0Stress;
  readonly rings: Map<number, XsRing>;
}

interface GuestNode {
  readonly domid: number;
  readonly spec: GuestSpec;
  readonly k: DomainKernel;
  readonly vcpu: VCpu;
  readonly host: DetHost;
  readonly books: DomainBooks;
  readonly gs: GuestStress;
  alive: boolean;
  /** Settles when the guest is destroyed: the toolstack stops waiting for anything the guest would have done. */
  readonly died: Promise<'died'>;
  die: () => void;
}

export class DetWorld implements InjectionTarget {
  readonly mem: MachineMemory;
  readonly hv: Hypervisor;
  readonly sched: Scheduler;
  readonly toolstack: VCpu;
  readonly dom0: Dom0Node;
  readonly nodes = new Map<number, GuestNode>();
  readonly gone: GuestNode[] = [];
  readonly fired = new Map<InjectorName, number>();
  created = 0;
  /** The stress network's directory of guests and frame counts (net-plugin.ts). */
  readonly netPeers = new NetPeers();
  /** The network drivers run (asked for, or a netback mutant needs them). */
  readonly netOn: boolean;
  destroyed = 0;
  private pendingCleanups = 0;
  private booted = false;
  private readonly prober: XsProber;
  /** Stranded events seen by the per-step monitor (distinct, first sightings). */
  private readonly stranded: string[] = [];

  constructor(readonly cfg: StressConfig, readonly mutant?: Mutant, traceDepth = 64) {
    this.sched = new Scheduler({ seed: cfg.seed, traceDepth });
    this.mem = MachineMemory.create({ memBytes: cfg.memBytes, pageSize: 4096 });
    const hvOpts = { seed: cfg.seed };
    this.hv = mutant?.hypervisor?.(this.mem, hvOpts) ?? new Hypervisor(this.mem, hvOpts);
    this.netOn = cfg.net || mutant?.net !== undefined;
    this.toolstack = this.sched.addVcpu('xl');
    this.dom0 = this.buildDom0();
    this.prober = new XsProber(this.dom0.xenstored);
    if (this.netOn) this.netPeers.attachDom0(this.dom0.stress.net, this.dom0.books.workloads);
    this.sched.afterStep = () => this.monitorEvents();
  }

  /**
   * The 2-level delivery invariant, after every step: a port pending and
   * unmasked has its selector bit and upcall_pending raised (or the domain
   * would only see it if another event happened to come).
   */
  private monitorEvents(): void {
    const mem = this.mem;
    for (const d of this.hv.domains.values()) {
      if (!d.alive) continue;
      const si = this.hv.layout.sharedInfo(d.slot);
      const at = (off: number) => mem.atomicLoad32((si + off) as MachineAddr);
      const up = at(VCPU_INFO.evtchn_upcall_pending) & 1;
      const words = Math.ceil(d.spec.nrPorts / 32);
      for (let w = 0; w < words; w++) {
        const bits = (at(SHARED_INFO.evtchn_pending + w * 4) & ~at(SHARED_INFO.evtchn_mask + w * 4)) >>> 0;
        if (bits === 0) continue;
        const sw = w >>> 1;
        const sel = at(VCPU_INFO.evtchn_pending_sel + (sw >>> 5) * 4) & (1 << (sw & 31));
        if (up !== 0 && sel !== 0) continue;
        const port = w * 32 + (31 - Math.clz32(bits & -bits));
        const msg = `d${d.domid} port ${port} (${up === 0 ? 'no upcall_pending' : 'no selector bit'})`;
        if (!this.stranded.includes(msg)) { this.stranded.push(msg); this.sched.note(`stranded event ${msg}`); }
      }
    }
  }

  // ---------------------------------------------------------------- dom0

  private kernel(req: Parameters<Hypervisor['createDomain']>[0], grantFrames: number): DomainKernel {
    const r = this.hv.createDomain(req);
    if (!r.ok) throw new Error(`createDomain ${req.name}: ${JSON.stringify(r.error)}`);
    const hc = new TracingHypercaller(new DirectHypercaller(this.hv, r.value.slot), this.sched, `d${r.value.domid}`);
    return new DomainKernel(this.mem, r.value, { spinUs: 0, grantFrames, hypercaller: hc });
  }

  private buildDom0(): Dom0Node {
    const k = this.kernel({ name: 'Domain-0', domid: 0, memoryKiB: 4096, model: 'pm', privileged: true, foreignPages: 1024, maxGrantFrames: 1, nrPorts: 256 }, 1);
    const vcpu = this.sched.addVcpu('d0', k);
    const books = newDomainBooks(0, 'Domain-0', 'dom0', false);
    const host = new DetHost(k, books, this.sched, vcpu);
    const q = this.cfg.quota;
    const xsOpts = { quota: { nodes: q.nodes, watches: q.watches, transactions: q.transactions, entrySize: q.entrySize } };
    const xenstored = this.mutant?.xenstored?.(xsOpts) ?? new XenStored(xsOpts);
    const xs = new XsLocalClient(xenstored, 0, { schedule: (fn) => this.sched.defer(vcpu, 'xs-drain', fn) });
    const stress = new Dom0Stress(host, xs, {
      backMutant: this.mutant?.back, echoMutant: this.mutant?.echo, stormMutant: this.mutant?.storm,
      blk: this.cfg.blk ? { mutant: this.mutant?.blk, clock: () => this.sched.step } : undefined,
      net: this.netOn ? { schedule: (fn) => this.sched.defer(vcpu, 'net-loop', fn), timers: stepTimers(host), mutant: this.mutant?.net } : undefined,
    });
    return { k, vcpu, host, books, xenstored, xs, stress, rings: new Map() };
  }

  /** As XS_INTRODUCE's dom0 wiring: map the guest's xenstore page (grant ref 1), bind its port, serve the ring. */
  private introduceXs(domid: number, ref: number, remotePort: number): void {
    const d0 = this.dom0;
    const k = d0.k;
    const pfn = takeBallooned(k, d0.books);
    if (pfn === undefined) throw new Error('dom0 is out of ballooned pages');
    const [m] = k.gnttab.mapGrantRefs([{ domid: domid as DomId, ref: asGref(ref), readonly: false, hostPfn: pfn }]);
    if (m === undefined || m.status !== 0) throw new Error(`dom0 cannot map d${domid}'s xenstore page: ${m?.status}`);
    d0.books.expectedMaptrack++;
    const port = k.evtchn.bindInterdomain(domid, remotePort);
    const ring = new XsRingBackend(d0.xenstored, asDomId(domid), k.mem.region([pfn]), () => k.evtchn.notify(port));
    k.evtchn.bind(port, () => ring.poll());
    startup(d0.host, port);
    d0.rings.set(domid, { ring, pfn, handle: m.handle, port });
    d0.xenstored.introduceDomain(asDomId(domid));
    ring.poll();
  }

  private releaseXs(domid: number): void {
    const d0 = this.dom0;
    this.prober.forget(domid);
    d0.xenstored.releaseDomain(asDomId(domid));
    const r = d0.rings.get(domid);
    if (r === undefined) return;
    d0.rings.delete(domid);
    r.ring.close();
    shutdown(d0.host, r.port);
    const [s] = d0.k.gnttab.unmapGrantRefs([{ handle: r.handle, hostPfn: r.pfn }]);
    if (s === 0) { d0.books.expectedMaptrack--; d0.k.ballooned.release(r.pfn); }
  }

  // ---------------------------------------------------------------- guests

  /** Does dom0 hold a mapping of granter's ref right now (the hypervisor's own tables)? */
  private readonly oracle = (granter: number, ref: number): boolean => {
    const d = this.hv.domain(0);
    if (d === undefined) return false;
    for (const e of d.maptrack) if (e !== undefined && e.granter === granter && e.ref === ref) return true;
    return false;
  };

  /** Builds a guest, introduces it to xenstored, creates its vstress device and wires its ping (and storm) ports. */
  private async createGuest(spec: GuestSpec): Promise<void> {
    const k = this.kernel({ name: spec.name, memoryKiB: spec.memoryKiB, model: spec.model, maxGrantFrames: spec.maxGrantFrames, foreignPages: 64, nrPorts: 64 }, spec.maxGrantFrames);
    const domid = k.domid;
    this.created++;
    const vcpu = this.sched.addVcpu(`d${domid}`, k);
    const books = newDomainBooks(domid, spec.name, 'guest', spec.hostile);
    const host = new DetHost(k, books, this.sched, vcpu);
    const xsf = new XenstoreFront(k);
    const gs = new GuestStress(host, xsf.client, {
      hostile: spec.hostile, frontMutant: this.mutant?.front, oracle: this.oracle, depth: this.cfg.depth, quota: this.cfg.quota,
      blk: this.cfg.blk ? { persistent: this.cfg.blkPersistent } : undefined,
      net: this.netOn ? this.netPeers : undefined,
    });
    let die!: () => void;
    const died = new Promise<'died'>((r) => { die = () => r('died'); });
    const node: GuestNode = { domid, spec, k, vcpu, host, books, gs, alive: true, died, die };
    this.nodes.set(domid, node);
    const xs = this.dom0.xs;
    const dd = await domainDirs(xs, asDomId(domid), spec.name);
    if (!dd.ok) throw new Error(`domainDirs d${domid}: ${JSON.stringify(dd.error)}`);
    if (!node.alive) return;
    this.introduceXs(domid, xsf.info.ref, xsf.info.port);
    const started = await Promise.race([gs.start(), node.died]);
    if (started === 'died' || !node.alive) return;
    if (!started) throw new Error(`d${domid}: the vstress frontend bus did not start`);
    const dev = await createDeviceDirs(xs, { type: VSTRESS_TYPE, frontDom: asDomId(domid), backDom: asDomId(0), devid: VSTRESS_DEVID });
    if (!dev.ok) throw new Error(`createDeviceDirs d${domid}: ${JSON.stringify(dev.error)}`);
    if (!node.alive) return;
    if (gs.blk !== undefined) {
      const vbd = await createDeviceDirs(xs, vbdDeviceSpec(domid));
      if (!vbd.ok) throw new Error(`createDeviceDirs vbd d${domid}: ${JSON.stringify(vbd.error)}`);
      if (!node.alive) return;
    }
    if (gs.net !== undefined || gs.netHostile !== undefined) {
      const vif = await createDeviceDirs(xs, vifDeviceSpec(domid));
      if (!vif.ok) throw new Error(`createDeviceDirs vif d${domid}: ${JSON.stringify(vif.error)}`);
      if (!node.alive) return;
    }
    this.dom0.stress.bindPing(domid, gs.offerPing());
    gs.startPing();
    if (spec.hostile) this.dom0.stress.bindStorm(domid, gs.offerStorm());
    this.sched.note(`guest d${domid} ${spec.name} up${spec.hostile ? ' (hostile)' : ''}`);
  }

  /** The part of destruction Xen does at once: the vCPU stops, the hypervisor tears the domain down. */
  private destroyNow(g: GuestNode): void {
    g.alive = false;
    g.die();
    this.nodes.delete(g.domid);
    this.gone.push(g);
    this.sched.kill(g.vcpu);
    this.netPeers.gone(g.domid);
    for (const p of g.books.pings) p.aborted = true;
    for (const w of g.books.workloads) if (!w.done) w.aborted = true;
    const r = this.hv.destroyDomain(g.domid);
    this.destroyed++;
    this.sched.note(`destroy d${g.domid}: ${r.ok ? r.value : JSON.stringify(r.error)}`);
  }

  /** What the toolstack and dom0 do after: release xenstore, stop dom0's services for it, remove its directories. */
  private async cleanupAfter(domid: number): Promise<void> {
    this.releaseXs(domid);
    this.dom0.stress.guestGone(domid);
    const xs = this.dom0.xs;
    await xs.rm(`/local/domain/${domid}`);
    await removeDeviceDirs(xs, { type: VSTRESS_TYPE, frontDom: asDomId(domid), backDom: asDomId(0), devid: VSTRESS_DEVID });
    if (this.cfg.blk) await removeDeviceDirs(xs, vbdDeviceSpec(domid));
    if (this.netOn) await removeDeviceDirs(xs, vifDeviceSpec(domid));
  }

  // ---------------------------------------------------------------- lifecycle

  /** Boots dom0's services and the configured guests (running the scheduler until they are up). */
  async boot(maxSteps = 200_000): Promise<void> {
    this.sched.spawn(this.toolstack, 'boot', async () => {
      const dd = await domainDirs(this.dom0.xs, asDomId(0), 'Domain-0');
      if (!dd.ok) throw new Error(`domainDirs d0: ${JSON.stringify(dd.error)}`);
      if (!(await this.dom0.stress.startBackends())) throw new Error('the vstress backend bus did not start');
      for (const spec of this.cfg.guests) await this.createGuest(spec);
      this.booted = true;
    });
    await this.runUntil(() => this.booted, maxSteps);
    const f = this.sched.failures.find((x) => x.task === 'boot');
    if (f !== undefined) throw new Error(`boot failed: ${f.error}`);
    if (!this.booted) throw new Error(`boot did not finish in ${maxSteps} steps (deadlock: ${this.sched.deadlock?.join(', ') ?? 'none'})`);
  }

  /** Runs scheduler steps until cond holds, nothing is left to run, or maxSteps pass. */
  async runUntil(cond: () => boolean, maxSteps: number): Promise<'done' | 'idle' | 'deadlock' | 'limit'> {
    const end = this.sched.step + maxSteps;
    while (!cond()) {
      if (this.sched.step >= end) return 'limit';
      const r = await this.sched.runStep();
      if (r !== 'ran') return r;
    }
    return 'done';
  }

  /** Destroys every guest and waits for dom0 to let go of their pages (zombies finish). */
  async teardown(maxSteps = 100_000): Promise<void> {
    let done = false;
    this.sched.spawn(this.toolstack, 'teardown', async (p) => {
      for (const g of [...this.nodes.values()]) {
        this.destroyNow(g);
        await this.cleanupAfter(g.domid);
      }
      await p.until(() => this.pendingCleanups === 0 && this.zombies().length === 0, 'teardown:zombies', 20_000);
      done = true;
    });
    await this.runUntil(() => done, maxSteps);
  }

  zombies(): number[] {
    return [...this.hv.domains.values()].filter((d) => d.state === 'zombie').map((d) => d.domid);
  }

  // ---------------------------------------------------------------- InjectionTarget

  guests_(): GuestNode[] { return [...this.nodes.values()]; }

  guests(): GuestInfo[] {
    return [...this.nodes.values()].map((g) => ({ domid: g.domid, hostile: g.spec.hostile, connected: g.gs.front.connected }));
  }

  act(domid: number, a: GuestAct): Promise<boolean> {
    const g = this.nodes.get(domid);
    return Promise.resolve(g !== undefined && g.alive && g.gs.act(a));
  }

  destroyGuest(domid: number): Promise<boolean> {
    const g = this.nodes.get(domid);
    if (g === undefined || !g.alive || this.sched.stopping) return Promise.resolve(false);
    this.destroyNow(g);
    this.pendingCleanups++;
    this.sched.spawn(this.toolstack, `cleanup-d${domid}`, async (p) => {
      try { await this.cleanupAfter(domid); } finally { this.pendingCleanups--; }
      // Churn: a replacement guest comes up a while later.
      await p.sleep(300, 'churn');
      if (!this.sched.stopping && this.created < this.cfg.maxGuestsCreated) {
        await this.createGuest({ ...g.spec, name: `${g.spec.name}-r${this.created}` });
      }
    });
    return Promise.resolve(true);
  }

  restartBackends(): Promise<boolean> {
    if (this.sched.stopping || this.dom0.stress.restartRefusal() !== undefined) return Promise.resolve(false);
    this.dom0.host.spawn('restart-backends', async () => { await this.dom0.stress.restartBackends(); });
    return Promise.resolve(true);
  }

  /** Fires one injector drawn from the configured set; records it when it fired. */
  async inject(rng: Prng): Promise<void> {
    if (this.cfg.injectors.length === 0) return;
    const name = rng.pick(this.cfg.injectors);
    const detail = await injector(name).fire(this, rng, { stormEvents: this.cfg.stormEvents });
    if (detail === undefined) return;
    this.fired.set(name, (this.fired.get(name) ?? 0) + 1);
    this.sched.note(`inject ${name} ${detail}`);
  }

  // ---------------------------------------------------------------- the view

  private faults(slot: number): number {
    return this.mem.atomicLoad32(this.hv.layout.dcbField(slot, DCB.faults)) >>> 0;
  }

  /** [view final] is the machine as the checkers see it now. */
  view(final: boolean, deadlock?: string[]): WorldView {
    const domains: DomainView[] = [];
    // dom0's drivers that count their own mappings (blkback) add them to what dom0 knows it holds.
    const d0books = { ...this.dom0.books, expectedMaptrack: this.dom0.books.expectedMaptrack + this.dom0.stress.driverMappings() };
    const booksOf = (domid: number): DomainBooks | undefined => domid === 0 ? d0books : this.nodes.get(domid)?.books;
    const hostileOf = (domid: number): boolean => this.nodes.get(domid)?.spec.hostile ?? this.gone.find((g) => g.domid === domid)?.spec.hostile ?? false;
    for (const d of this.hv.domains.values()) {
      domains.push({
        domid: d.domid, name: d.name, state: d.state, hostile: hostileOf(d.domid), faults: this.faults(d.slot),
        activeGrants: d.active.size, maptrackInUse: d.maptrackInUse, books: d.alive ? booksOf(d.domid) : undefined,
      });
    }
    for (const g of this.gone) {
      domains.push({ domid: g.domid, name: g.spec.name, state: 'gone', hostile: g.spec.hostile, faults: 0, activeGrants: 0, maptrackInUse: 0, books: g.books });
    }
    for (const g of this.nodes.values()) g.gs.pages.scan();
    const failures = this.sched.failures
      .filter((f) => !this.isHostileVcpu(f.vcpu))
      .map((f) => `${f.vcpu}/${f.task} at step ${f.step}: ${f.error}`);
    return {
      mode: 'deterministic', final, now: this.sched.step, lostAfter: 20_000,
      reconcile: this.hv.reconcile(), domains, zombies: this.zombies(),
      grantEntries: this.grantEntryIssues(), p2m: this.p2mIssues(), xenstore: this.xenstoreView(), strandedEvents: [...this.stranded],
      deadlock: deadlock?.filter((t) => !this.isHostileVcpu(t.split('/')[0] ?? '')),
      taskFailures: failures,
    };
  }

  private isHostileVcpu(name: string): boolean {
    const m = /^d(\d+)$/.exec(name);
    if (m === null) return false;
    const domid = Number(m[1]);
    return this.nodes.get(domid)?.spec.hostile ?? this.gone.find((g) => g.domid === domid)?.spec.hostile ?? false;
  }

  /** Every grant entry's in-use bits and frame against the hypervisor's active entries. */
  private grantEntryIssues(): GrantEntryIssue[] {
    const out: GrantEntryIssue[] = [];
    const mem = this.mem;
    const per = mem.pageSize / GRANT_ENTRY_V1.SIZE;
    for (const g of this.hv.domains.values()) {
      for (let fi = 0; fi < g.grantFrames.length; fi++) {
        const base = mem.frameAddr(g.grantFrames[fi] as never);
        for (let i = 0; i < per; i++) {
          const ref = fi * per + i;
          const e = (base + i * GRANT_ENTRY_V1.SIZE) as MachineAddr;
          const flags = mem.atomicLoad32(e) & 0xffff;
          const a = g.active.get(ref);
          const pins = a === undefined ? 0 : a.hostRo + a.hostRw + a.devRo + a.devRw + a.copyRo + a.copyRw;
          const wpins = a === undefined ? 0 : a.hostRw + a.devRw + a.copyRw;
          const inUse = flags & (GTF.reading | GTF.writing);
          if (pins === 0 && inUse !== 0) out.push({ granter: g.domid, ref, kind: 'in-use-without-pin', detail: `flags 0x${flags.toString(16)} with no pin` });
          else if (pins > 0 && (flags & GTF.reading) === 0) out.push({ granter: g.domid, ref, kind: 'pin-without-in-use', detail: `${pins} pins, flags 0x${flags.toString(16)}` });
          else if (pins > 0 && wpins === 0 && (flags & GTF.writing) !== 0) out.push({ granter: g.domid, ref, kind: 'writing-without-write-pin', detail: `flags 0x${flags.toString(16)}` });
          if (a !== undefined && g.alive) {
            const frame = mem.getU32((e + GRANT_ENTRY_V1.frame) as MachineAddr);
            const mfn = g.model === 'p2m' ? frame : g.p2m.inRange(frame) ? g.p2m.lookup(frame as Pfn) : undefined;
            if (mfn !== a.mfn) out.push({ granter: g.domid, ref, kind: 'rewritten-while-pinned', detail: `entry names frame ${frame}, pinned mfn ${a.mfn}` });
          }
        }
      }
    }
    return out;
  }

  /** Every present P2M entry: owned by the domain, its shared_info, or a foreign frame backed by a live mapping. */
  private p2mIssues(): P2mIssue[] {
    const out: P2mIssue[] = [];
    const ft = this.hv.frameTable;
    for (const d of this.hv.domains.values()) {
      if (!d.alive) continue;
      const byPfn = new Map<number, MaptrackEntry>();
      for (const e of d.maptrack) if (e !== undefined && e.hostPfn >= 0) byPfn.set(e.hostPfn, e);
      for (let pfn = 0; pfn < d.p2m.entries; pfn++) {
        const e = d.p2m.get(pfn as Pfn);
        if (!e.present) continue;
        if (e.foreign) {
          const m = byPfn.get(pfn);
          if (m === undefined || m.mfn !== e.mfn) { out.push({ domid: d.domid, pfn, mfn: e.mfn, detail: 'foreign entry with no grant mapping behind it' }); continue; }
          const a = this.hv.domain(m.granter)?.active.get(m.ref);
          if (a === undefined || a.mfn !== e.mfn) out.push({ domid: d.domid, pfn, mfn: e.mfn, detail: `mapping of d${m.granter} ref ${m.ref} whose pinned frame is ${a?.mfn ?? 'none'}` });
        } else if (pfn !== d.sharedInfoPfn && ft.owner(e.mfn as Mfn) !== d.domid) {
          out.push({ domid: d.domid, pfn, mfn: e.mfn, detail: `frame owned by d${ft.owner(e.mfn as Mfn)}` });
        }
      }
    }
    return out;
  }

  private xenstoreView(): XenstoreView {
    const live = [...this.nodes.values()].filter((g) => this.dom0.rings.has(g.domid)).map((g) => g.domid);
    return this.prober.view(live, this.cfg.quota);
  }
}

