// Worker entry: the backend end of test/integration/ring-workers.test.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory, type PageSize } from '../../shared/memory/machine-memory.ts';
import { runBack, type RingRunConfig } from './ring-common.ts';

const data = workerData as { sab: MachineMemory['sab']; pageSize: PageSize; cfg: RingRunConfig };
parentPort?.postMessage(runBack(MachineMemory.attach(data.sab, data.pageSize), data.cfg));
