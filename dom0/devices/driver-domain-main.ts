// Worker entry of a domain that drives DMA devices (dom0 or a driver domain):
// the guest kernel plus the DMA agent (DMA APIs, disk and NIC drivers).
// Thin on purpose; start it with Machine.createDomain({ entry: DRIVER_DOMAIN_ENTRY, ... }).
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../shared/kernel/kernel.ts';
import { DmaAgent } from '../dma/dma-agent.ts';
import type { DomainWorkerData } from '../../toolstack/worker-data.ts';

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, data.kernel);
Comlink.expose(new DmaAgent(kernel), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await kernel.run();
process.exit(0);
