// A domU worker entry for the XenBus tests: the usual guest plus a frontend
// bus for the test device type ('vtest') that records its handshakes.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { DomainWorkerData } from '../../toolstack/worker-data.ts';
import { XenstoreFront } from '../../domU/xenstore-front.ts';
import { DomUAgent } from '../../domU/agent.ts';
import { createFrontendBus } from '../../shared/xenbus/frontend.ts';
import { ok } from '../../shared/result.ts';
import { asDomId } from '../../shared/types.ts';

class VtestDomUAgent extends DomUAgent {
  readonly seen = { setups: 0, connected: 0, resumed: 0, teardowns: [] as string[], feature: '' };
  async startFrontends(): Promise<boolean> {
    let serial = 100;
    const bus = createFrontendBus<string>(this.front.client, asDomId(this.k.domid), 'vtest', () => ({
      readBackend: async (ctx) => {
        const r = await ctx.xs.readString(`${ctx.backPath}/feature-test`);
        return ok(r.ok ? r.value : '');
      },
      setup: (_ctx, feature, info) => {
        this.seen.setups++;
        this.seen.feature = feature;
        if (info.resumed) this.seen.resumed++;
        return ok({ 'ring-ref': String(serial++), 'event-channel': '7' });
      },
      connected: () => { this.seen.connected++; return ok(undefined); },
      teardown: (_ctx, reason) => { this.seen.teardowns.push(reason); },
    }));
    return (await bus.start()).ok;
  }
  vtest() { return { ...this.seen, teardowns: [...this.seen.teardowns] }; }
  constructor(k: DomainKernel, readonly front: XenstoreFront) { super(k, front); }
}

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, data.kernel);
const store = new XenstoreFront(kernel);
Comlink.expose(new VtestDomUAgent(kernel, store), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await kernel.run();
