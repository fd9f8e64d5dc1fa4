// domU worker entry: attach memory, boot the guest kernel, connect XenStore,
// probe its block and network devices, serve the agent, run the vCPU loop.
// Thin on purpose.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../shared/memory/machine-memory.ts';
import { childEndpoint } from '../shared/worker/endpoint.ts';
import { DomainKernel } from '../shared/kernel/kernel.ts';
import type { DomainWorkerData } from '../toolstack/worker-data.ts';
import { createFrontendBus } from '../shared/xenbus/frontend.ts';
import { asDomId } from '../shared/types.ts';
import { XenstoreFront } from './xenstore-front.ts';
import { DomUAgent } from './agent.ts';
import { blkfrontDriver } from './blkfront/xenbus.ts';
import { createNetfront } from './netfront/start.ts';

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, data.kernel);
const store = new XenstoreFront(kernel);
const blk = blkfrontDriver(kernel, data.drivers?.blkfront);
const log = process.env.XENSIM_VERBOSE ? (l: string) => console.error(`d${kernel.domid}: ${l}`) : undefined;
const net = createNetfront(kernel, store.client, { ...data.drivers?.netfront, ...(log ? { log } : {}) });
const run = kernel.run();
// The vbd and vif buses wait for device directories the toolstack creates later.
void createFrontendBus(store.client, asDomId(kernel.domid), 'vbd', blk.driver).start();
void net.bus.start();
Comlink.expose(new DomUAgent(kernel, store, blk, net.driver), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await run;
process.exit(0);
