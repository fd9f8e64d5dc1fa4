/**
 * The stress agents: dom0's and a domU's guest agents (dom0/agent.ts,
 * domU/agent.ts) extended with the stress components, for real-thread runs.
 * The main thread (stress/run-threads.ts) sets each domain up, wires ports
 * between them as the toolstack, starts hostile acts, and reads each
 * domain's books; the components run on the domain's own worker, driven by
 * its kernel's vCPU loop, exactly the code the deterministic world runs.
 */
import { DCB } from '../shared/abi/machine.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import { Dom0Agent } from '../dom0/agent.ts';
import type { Dom0Services } from '../dom0/dom0.ts';
import { XsLocalClient } from '../dom0/xenstore/local-client.ts';
import { DomUAgent } from '../domU/agent.ts';
import type { XenstoreFront } from '../domU/xenstore-front.ts';
import type { QuotaSpec } from './config.ts';
import { Dom0Stress, type Dom0StressOptions } from './dom0-stress.ts';
import { GuestStress, type GuestAct } from './guest-stress.ts';
import type { StressHost, TaskOptions } from './host.ts';
import { ThreadPlatform, type StressPlatform } from './platform.ts';
import { Prng } from './prng.ts';
import { newDomainBooks, type DomainBooks, type XenstoreView } from './view.ts';
import type { FrontMutant } from './vstress.ts';
import { XsProber } from './xs-view.ts';

/** A domain's books as its worker reports them, with what only its own thread can count consistently. */
export interface WorkerBooks {
  readonly books: DomainBooks;
  /** Grant maps minus unmaps from the domain's own DCB counters: its maptrack entries in use, read beside its books. */
  readonly maptrackInUse: number;
  readonly lostWakeups: number;
  /** Exceptions out of stress tasks on this worker. */
  readonly taskFailures: string[];
  /** Tasks still running (workloads wind down to 0). */
  readonly running: number;
}

/** A StressHost on a domain's worker thread. */
class ThreadHost implements StressHost {
  readonly failures: string[] = [];
  running = 0;
  constructor(readonly k: DomainKernel, readonly books: DomainBooks, readonly plat: ThreadPlatform) {}
  spawn(name: string, body: (p: StressPlatform) => Promise<void>, opts?: TaskOptions): void {
    const daemon = opts?.daemon ?? false;
    if (!daemon) this.running++;
    body(this.plat.child(name)).catch((e: unknown) => {
      this.failures.push(`d${this.k.domid}/${name}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }).finally(() => { if (!daemon) this.running--; });
  }
  /** Wall-clock ms: the main thread compares it with its own clock. */
  now(): number { return performance.timeOrigin + performance.now(); }
  get stopping(): boolean { return this.plat.stopping; }
  note(_text: string): void { /* threads keep no trace */ }

  report(): WorkerBooks {
    const k = this.k;
    const f = (x: number) => k.machine.atomicLoad32(k.layout.dcbField(k.boot.slot, x)) >>> 0;
    return {
      books: structuredClone(this.books), maptrackInUse: f(DCB.statGrantMaps) - f(DCB.statGrantUnmaps),
      lostWakeups: k.lostWakeups, taskFailures: [...this.failures], running: this.running,
    };
  }
}

export interface Dom0SetupOptions extends Dom0StressOptions {
  readonly seed: number;
}

export class StressDom0Agent extends Dom0Agent {
  private host: ThreadHost | undefined;
  private stress: Dom0Stress | undefined;
  private readonly prober: XsProber;

  constructor(k: DomainKernel, private readonly services: Dom0Services) {
    super(k, services);
    this.prober = new XsProber(services.xenstored);
  }

  /** Starts dom0's stress side: the vstress backend bus on an in-process XenStore client. */
  async stressSetup(o: Dom0SetupOptions): Promise<boolean> {
    const books = newDomainBooks(0, 'Domain-0', 'dom0', false);
    this.host = new ThreadHost(this.k, books, new ThreadPlatform(new Prng(o.seed).fork('d0')));
    this.stress = new Dom0Stress(this.host, new XsLocalClient(this.services.xenstored, 0), o);
    return this.stress.startBackends();
  }
  private s(): Dom0Stress {
    if (this.stress === undefined) throw new Error('stressSetup first');
    return this.stress;
  }
  bindPing(guest: number, port: number): void { this.s().bindPing(guest, port); }
  bindStorm(guest: number, port: number): void { this.s().bindStorm(guest, port); }
  guestGone(guest: number): void { this.s().guestGone(guest); this.prober.forget(guest); }
  restartBackends(): Promise<boolean> { return this.s().restartBackends(); }
  get restarts(): number { return this.stress?.restarts ?? 0; }
  windDown(): void { this.host?.plat.requestStop(); }
  /** dom0's books; its expected maptrack also counts the xenstore pages Dom0Services maps for each guest. */
  stressBooks(): WorkerBooks | undefined {
    const r = this.host?.report();
    if (r === undefined) return undefined;
    const extra = this.introduced().length + (this.stress?.driverMappings() ?? 0);
    return { ...r, books: { ...r.books, expectedMaptrack: r.books.expectedMaptrack + extra } };
  }
  xsView(nominal: Pick<QuotaSpec, 'nodes' | 'watches' | 'transactions'>): XenstoreView {
    return this.prober.view(this.introduced(), nominal);
  }
  xsRequests(): number { return this.services.xenstored.stats.requests; }
}

export interface GuestSetupOptions {
  readonly seed: number;
  readonly hostile: boolean;
  readonly depth: number;
  readonly quota: QuotaSpec;
  readonly frontMutant?: FrontMutant;
  readonly blk?: { readonly persistent: boolean };
}

export class StressDomUAgent extends DomUAgent {
  private host: ThreadHost | undefined;
  private gs: GuestStress | undefined;

  constructor(k: DomainKernel, private readonly xsFront: XenstoreFront) { super(k, xsFront); }

  /** Starts the guest's stress side: its vstress frontend bus and XenStore workload. */
  async stressSetup(o: GuestSetupOptions): Promise<boolean> {
    const books = newDomainBooks(this.k.domid, this.k.boot.name, 'guest', o.hostile);
    this.host = new ThreadHost(this.k, books, new ThreadPlatform(new Prng(o.seed).fork(`d${this.k.domid}`)));
    this.gs = new GuestStress(this.host, this.xsFront.client, { hostile: o.hostile, frontMutant: o.frontMutant, depth: o.depth, quota: o.quota, blk: o.blk });
    return this.gs.start();
  }
  private g(): GuestStress {
    if (this.gs === undefined) throw new Error('stressSetup first');
    return this.gs;
  }
  offerPing(): number { return this.g().offerPing(); }
  startPing(): void { this.g().startPing(); }
  offerStorm(): number { return this.g().offerStorm(); }
  act(a: GuestAct): boolean { return this.g().act(a); }
  connected(): boolean { return this.gs?.front.connected ?? false; }
  windDown(): void { this.host?.plat.requestStop(); }
  stressBooks(): WorkerBooks | undefined {
    this.gs?.pages.scan();
    return this.host?.report();
  }
}
