// dom0 worker entry for threads-mode stress runs: dom0's usual services plus
// the stress agent (vstress backends, echo services, storm sinks). Thin on purpose.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../shared/memory/machine-memory.ts';
import { childEndpoint } from '../shared/worker/endpoint.ts';
import { DomainKernel } from '../shared/kernel/kernel.ts';
import type { DomainWorkerData } from '../toolstack/worker-data.ts';
import { Dom0Services } from '../dom0/dom0.ts';
import { StressDom0Agent } from './agents.ts';

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, { idleMs: 2, ...data.kernel });
const services = new Dom0Services(kernel);
Comlink.expose(new StressDom0Agent(kernel, services), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await kernel.run();
await services.close();
process.exit(0);
