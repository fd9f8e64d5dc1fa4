// NIC worker entry: attach machine memory and the wire, run the NIC, serve
// its control plane. Thin on purpose.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { MachineLayout } from '../../shared/machine-layout.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { Nic, Wire } from './nic.ts';
import type { DeviceControlApi, DeviceWorkerData } from '../../toolstack/device-host.ts';

const data = workerData as Extract<DeviceWorkerData, { kind: 'nic' }>;
const nic = new Nic(new MachineLayout(MachineMemory.attach(data.sab, data.pageSize)), data.blockAddr, Wire.attach(data.wire), data.end, {
  spinUs: data.spec.spinUs, idleMs: data.spec.idleMs,
});
const control: DeviceControlApi = { counters: () => nic.counters(), iommu: () => nic.view.counters(), stop: () => nic.stop() };
Comlink.expose(control, childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'device-ready' });
await nic.run();
process.exit(0);
