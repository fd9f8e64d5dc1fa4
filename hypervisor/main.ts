// Hypervisor worker entry: attach machine memory, format it, serve hypercalls
// and the control plane. Thin on purpose; the logic is in hypervisor.ts.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory, type PageSize } from '../shared/memory/machine-memory.ts';
import { childEndpoint } from '../shared/worker/endpoint.ts';
import { HypervisorControl } from './control.ts';
import { HypercallServer } from './hypercall-server.ts';
import { Hypervisor, type HypervisorOptions } from './hypervisor.ts';

const data = workerData as { sab: SharedArrayBuffer; pageSize: PageSize; options: HypervisorOptions & { spinUs?: number } };
const mem = MachineMemory.attach(data.sab, data.pageSize);
const hv = new Hypervisor(mem, data.options);
const server = new HypercallServer(hv, { spinUs: data.options.spinUs });
Comlink.expose(new HypervisorControl(hv, server), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'hypervisor-ready' });
await server.run();
process.exit(0);
