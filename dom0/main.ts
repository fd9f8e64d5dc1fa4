// dom0 worker entry: the guest kernel plus dom0's services (xenstored and
// its socket), the block backends and the network (netback, bridge xenbr0),
// serving the dom0 agent. Thin on purpose.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../shared/memory/machine-memory.ts';
import { childEndpoint } from '../shared/worker/endpoint.ts';
import { DomainKernel } from '../shared/kernel/kernel.ts';
import type { DomainWorkerData } from '../toolstack/worker-data.ts';
import { Dom0Services } from './dom0.ts';
import { Dom0Agent } from './agent.ts';
import { XsLocalClient } from './xenstore/local-client.ts';
import { startVbdBackends } from './vbd.ts';
import { startNetback } from './netback/start.ts';

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, { idleMs: 2, ...data.kernel });
const services = new Dom0Services(kernel);
const run = kernel.run();
// Driver chatter goes to stderr only when asked (XENSIM_VERBOSE=1).
const log = process.env.XENSIM_VERBOSE ? (l: string) => console.error(`d${kernel.domid}: ${l}`) : undefined;
const vbd = await startVbdBackends(kernel, new XsLocalClient(services.xenstored, 0), { ...data.drivers?.blkback, log });
const net = await startNetback(kernel, new XsLocalClient(services.xenstored, 0), { ...data.drivers?.netback, log });
if (!net.ok) throw new Error(`cannot watch the vif backend directory: ${JSON.stringify(net.error)}`);
Comlink.expose(new Dom0Agent(kernel, services, vbd, net.value), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await run;
await services.close();
process.exit(0);
