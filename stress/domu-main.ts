// domU worker entry for threads-mode stress runs: the usual guest plus the
// stress agent (vstress frontend, pings, XenStore traffic, hostile acts). Thin on purpose.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../shared/memory/machine-memory.ts';
import { childEndpoint } from '../shared/worker/endpoint.ts';
import { DomainKernel } from '../shared/kernel/kernel.ts';
import type { DomainWorkerData } from '../toolstack/worker-data.ts';
import { XenstoreFront } from '../domU/xenstore-front.ts';
import { StressDomUAgent } from './agents.ts';

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, data.kernel);
const store = new XenstoreFront(kernel);
Comlink.expose(new StressDomUAgent(kernel, store), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await kernel.run();
process.exit(0);
