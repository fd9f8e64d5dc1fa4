// domU worker entry: attach memory, boot the guest kernel, connect XenStore,
// serve the agent, run the vCPU loop. Thin on purpose.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../shared/memory/machine-memory.ts';
import { childEndpoint } from '../shared/worker/endpoint.ts';
import { DomainKernel } from '../shared/kernel/kernel.ts';
import type { DomainWorkerData } from '../toolstack/worker-data.ts';
import { XenstoreFront } from './xenstore-front.ts';
import { DomUAgent } from './agent.ts';

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, data.kernel);
const store = new XenstoreFront(kernel);
Comlink.expose(new DomUAgent(kernel, store), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await kernel.run();
process.exit(0);
