// Outside-host worker entry: attach the wire (and machine memory, to ring the
// NIC's doorbell at the other end), answer frames until stopped, serve the
// control plane between waits. Thin on purpose.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import type { MachineAddr } from '../../shared/types.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { Wire } from './nic.ts';
import { OutsideHost } from './nic-host.ts';
import type { OutsideHostControlApi, OutsideHostWorkerData } from '../../toolstack/device-host.ts';

const data = workerData as OutsideHostWorkerData;
const mem = MachineMemory.attach(data.sab, data.pageSize);
const host = new OutsideHost(Wire.attach(data.wire), data.end, { mac: data.mac }, (bell) => {
  mem.atomicAdd32(bell as MachineAddr, 1);
  mem.notify32(bell as MachineAddr, 1);
});
let stopped = false;
const control: OutsideHostControlApi = { counters: () => host.counters(), stop: () => { stopped = true; } };
Comlink.expose(control, childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'device-ready' });
const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));
while (!stopped) {
  // Sleep on the wire (bounded, so control messages get served), answer, yield.
  if (host.serveOnce() === 0) host.wire.waitFrames(host.end, data.idleMs ?? 2);
  await yieldToLoop();
}
process.exit(0);
