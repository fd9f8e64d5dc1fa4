// DMA disk controller worker entry: attach machine memory, open the medium,
// run the controller, serve its control plane. Thin on purpose.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { MachineLayout } from '../../shared/machine-layout.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { describeDiskError, RamDisk, ReadOnlyDisk, type DiskStore } from './disk-store.ts';
import { FileDisk } from './disk-store-file.ts';
import { DmaDiskController } from './dma-disk-controller.ts';
import type { DeviceControlApi, DeviceWorkerData } from '../../toolstack/device-host.ts';

const data = workerData as Extract<DeviceWorkerData, { kind: 'dma-disk' }>;
const s = data.spec;
let disk: DiskStore;
if (s.image !== undefined) {
  const r = FileDisk.open({ path: s.image, sectors: s.sectors, readOnly: s.readOnly });
  if (!r.ok) throw new Error(describeDiskError(r.error));
  disk = r.value;
} else {
  const ram = new RamDisk({ sectors: s.sectors ?? 1 << 16 });
  disk = s.readOnly === true ? new ReadOnlyDisk(ram) : ram;
}
const dev = new DmaDiskController(new MachineLayout(MachineMemory.attach(data.sab, data.pageSize)), data.blockAddr, disk, {
  spinUs: s.spinUs, idleMs: s.idleMs, maxSegs: s.maxSegs, maxBytes: s.maxBytes,
});
const control: DeviceControlApi = { counters: () => dev.counters(), iommu: () => dev.view.counters(), stop: () => dev.stop() };
Comlink.expose(control, childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'device-ready' });
await dev.run();
disk.close();
process.exit(0);
