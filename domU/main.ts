// domU worker entry: attach memory, boot the guest kernel, serve the agent,
// run the vCPU loop. Thin on purpose.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../shared/memory/machine-memory.ts';
import { childEndpoint } from '../shared/worker/endpoint.ts';
import { DomainKernel } from '../shared/kernel/kernel.ts';
import { GuestAgent } from '../shared/kernel/agent.ts';
import type { DomainWorkerData } from '../toolstack/worker-data.ts';

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, data.kernel);
Comlink.expose(new GuestAgent(kernel), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await kernel.run();
process.exit(0);
