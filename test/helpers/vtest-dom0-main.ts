// A dom0 worker entry for the XenBus tests: dom0's usual services plus a
// backend bus for a test device type ('vtest') whose backends can be stopped
// and started again, as when a backend driver goes away and comes back.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { DomainWorkerData } from '../../toolstack/worker-data.ts';
import { Dom0Services } from '../../dom0/dom0.ts';
import { Dom0Agent } from '../../dom0/agent.ts';
import { XsLocalClient } from '../../dom0/xenstore/local-client.ts';
import { createBackendBus, type XenbusBackend } from '../../shared/xenbus/backend.ts';
import type { XenbusBus } from '../../shared/xenbus/device.ts';
import { ok } from '../../shared/result.ts';
import { asDomId } from '../../shared/types.ts';

class VtestDom0Agent extends Dom0Agent {
  private bus: XenbusBus<XenbusBackend<string>> | undefined;
  readonly seen: { connects: number; disconnects: number; ringRefs: string[] } = { connects: 0, disconnects: 0, ringRefs: [] };
  constructor(k: DomainKernel, svc: Dom0Services, private readonly xsb: XsLocalClient) { super(k, svc); }
  async startBackends(): Promise<boolean> {
    this.bus = createBackendBus<string>(this.xsb, asDomId(0), 'vtest', () => ({
      probe: () => ok({ 'feature-test': '1' }),
      readFrontend: async (ctx) => {
        const r = await ctx.xs.readString(`${ctx.frontPath}/ring-ref`);
        return r.ok ? ok(r.value) : { ok: false, error: { kind: 'missing-key', message: 'ring-ref' } };
      },
      connect: (_ctx, ringRef) => { this.seen.connects++; this.seen.ringRefs.push(ringRef); return ok({ 'sectors': '2048' }); },
      disconnect: () => { this.seen.disconnects++; },
    }));
    return (await this.bus.start()).ok;
  }
  async stopBackends(): Promise<void> {
    const bus = this.bus;
    this.bus = undefined;
    if (bus === undefined) return;
    await bus.stop();
    for (const d of bus.registered.values()) d.stop();
  }
  override stats(): ReturnType<Dom0Agent['stats']> & { vtest: { connects: number; disconnects: number; ringRefs: string[] } } {
    return { ...super.stats(), vtest: { ...this.seen, ringRefs: [...this.seen.ringRefs] } };
  }
}

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, { idleMs: 2, ...data.kernel });
const services = new Dom0Services(kernel);
Comlink.expose(new VtestDom0Agent(kernel, services, new XsLocalClient(services.xenstored, 0)), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await kernel.run();
