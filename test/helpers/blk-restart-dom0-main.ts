// A dom0 worker entry for the backend-restart tests: dom0's usual services
// plus vbd backends that the agent can kill abruptly, as if blkback died
// (bus and devices stop, nothing in flight is answered), and start again as
// a new instance with other limits. The media (ram:SIZE, opened by
// dom0/vbd.ts) outlive a backend instance in vbd's dom0-wide registry, as a
// real disk outlives its driver; while `holdIo` is on,
// requests stop in front of the medium, so they are in flight in blkback
// when it dies. What a dead backend held never reaches the medium.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { AgentResult } from '../../shared/kernel/agent.ts';
import type { DomainWorkerData } from '../../toolstack/worker-data.ts';
import { Dom0Services } from '../../dom0/dom0.ts';
import { Dom0Agent } from '../../dom0/agent.ts';
import { XsLocalClient } from '../../dom0/xenstore/local-client.ts';
import type { BlkStorage, BlkStorageFeatures, BlkStorageIo } from '../../dom0/blkback/storage.ts';
import type { BlkbackDevice } from '../../dom0/blkback/blkback.ts';
import { blkbackDriver, type BlkbackDriver, type BlkFrontendInfo } from '../../dom0/blkback/xenbus.ts';
import { openVbdStorage, type VbdBackendOptions } from '../../dom0/vbd.ts';
import { createBackendBus, type XenbusBackend } from '../../shared/xenbus/backend.ts';
import type { XenbusBus } from '../../shared/xenbus/device.ts';
import { err, ok } from '../../shared/result.ts';
import { asDomId } from '../../shared/types.ts';

/** What a new backend instance offers (the DriverOptions.blkback subset the tests vary). */
export type RestartBackendOptions = Omit<VbdBackendOptions, 'onDevice' | 'log'>;

/** [HoldingStorage inner] passes requests to inner, or, while `holding`, keeps them in front of it. */
class HoldingStorage implements BlkStorage {
  holding = false;
  private held: BlkStorageIo[] = [];
  constructor(private readonly inner: BlkStorage) {}
  get sectors(): number { return this.inner.sectors; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get sectorSize(): number { return this.inner.sectorSize; }
  get physicalSectorSize(): number { return this.inner.physicalSectorSize; }
  get features(): BlkStorageFeatures { return this.inner.features; }
  get maxInflight(): number { return this.inner.maxInflight; }
  get inflight(): number { return this.inner.inflight + this.held.length; }
  get heldCount(): number { return this.held.length; }
  submit(io: BlkStorageIo): void {
    if (this.holding) this.held.push(io);
    else this.inner.submit(io);
  }
  kick(): void { this.inner.kick(); }
  /**
   * [dropHeld] ends every held request without touching the medium: blkback
   * died with them in flight. Their rings are dead, so nothing is answered;
   * the completion only lets the dead backend let go of their grants.
   */
  dropHeld(): number {
    const h = this.held;
    this.held = [];
    this.holding = false;
    for (const io of h) io.complete('error');
    return h.length;
  }
  /** The vbd is removed for good (blkback closes only then): the medium goes. */
  close(): void { this.inner.close(); }
}

interface Instance {
  readonly drv: BlkbackDriver;
  readonly bus: XenbusBus<XenbusBackend<BlkFrontendInfo>>;
  readonly storages: HoldingStorage[];
}

type VbdRow = ReturnType<Dom0Agent['vbdStats']>[number];

export class RestartDom0Agent extends Dom0Agent {
  private live: Instance | undefined;
  private holding = false;
  /** Devices of killed instances, to show that they answered nothing after dying. */
  private readonly dead: { key: string; dev: BlkbackDevice }[] = [];
  instances = 0;

  constructor(k: DomainKernel, svc: Dom0Services, private readonly xsb: XsLocalClient, private readonly log?: (l: string) => void) { super(k, svc); }

  /** [startBackends opts] starts a new blkback instance serving every vbd of this domain. */
  async startBackends(opts: RestartBackendOptions = {}): Promise<AgentResult<number>> {
    if (this.live !== undefined) return { ok: false, error: 'a backend instance is already running' };
    const storages: HoldingStorage[] = [];
    const drv = blkbackDriver(this.k, {
      ...opts,
      log: this.log,
      openStorage: (id, p) => {
        if (!p.params.startsWith('ram:')) return err({ kind: 'bad-params', message: `this dom0 serves ram:SIZE disks only, not "${p.params.slice(0, 64)}"` });
        // vbd's registry hands a restarted backend the medium its predecessor served.
        const inner = openVbdStorage(this.k, id, p, undefined);
        if (!inner.ok) return inner;
        const s = new HoldingStorage(inner.value);
        s.holding = this.holding;
        storages.push(s);
        return ok(s);
      },
    });
    const bus = createBackendBus(this.xsb, asDomId(this.k.domid), 'vbd', drv.driver, { log: this.log });
    const r = await bus.start();
    if (!r.ok) return { ok: false, error: `cannot watch the vbd backend directory: ${JSON.stringify(r.error)}` };
    this.live = { drv, bus, storages };
    return { ok: true, value: ++this.instances };
  }

  /** From now on requests stop in front of the media (in flight in blkback) until the backend dies. */
  holdIo(): void {
    this.holding = true;
    for (const s of this.live?.storages ?? []) s.holding = true;
  }

  /** Requests held in front of the media now. */
  heldCount(): number {
    let n = 0;
    for (const s of this.live?.storages ?? []) n += s.heldCount;
    return n;
  }

  /**
   * [killBackends] is blkback dying: the bus stops watching, every device
   * stops (its rings halt and its event channels close; nothing in flight is
   * answered), XenStore is left as it was. The held requests are dropped.
   * Returns how many were held and each dead device's counters at death.
   */
  async killBackends(): Promise<{ held: number; devices: VbdRow[] }> {
    const inst = this.live;
    this.live = undefined;
    this.holding = false;
    if (inst === undefined) return { held: 0, devices: [] };
    await inst.bus.stop();
    for (const b of [...inst.bus.registered.values()]) await b.stop();
    const devices = rows(inst.drv.devices);
    for (const [key, dev] of inst.drv.devices) this.dead.push({ key, dev });
    let held = 0;
    for (const s of inst.storages) held += s.dropHeld();
    return { held, devices };
  }

  /** The devices of killed instances, their counters now. */
  deadStats(): VbdRow[] {
    return this.dead.map(({ key, dev }) => row(key, dev));
  }

  /** The live instance's devices (xentop's VBD counters and the rest). */
  override vbdStats(): VbdRow[] {
    return this.live === undefined ? [] : rows(this.live.drv.devices);
  }
}

function row(key: string, dev: BlkbackDevice): VbdRow {
  const [f, d] = key.split('/').map(Number) as [number, number];
  return { key, frontDom: f, devid: d, counters: dev.snapshot() };
}
function rows(devs: ReadonlyMap<string, BlkbackDevice>): VbdRow[] {
  return [...devs.entries()].map(([key, dev]) => row(key, dev));
}

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, { idleMs: 2, ...data.kernel });
const services = new Dom0Services(kernel);
const run = kernel.run();
const log = process.env.XENSIM_VERBOSE ? (l: string) => console.error(`d${kernel.domid}: ${l}`) : undefined;
const agent = new RestartDom0Agent(kernel, services, new XsLocalClient(services.xenstored, 0), log);
const started = await agent.startBackends(data.drivers?.blkback);
if (!started.ok) throw new Error(started.error);
Comlink.expose(agent, childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await run;
await services.close();
process.exit(0);
