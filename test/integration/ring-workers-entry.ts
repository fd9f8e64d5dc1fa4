// Worker entry for test/integration/ring-workers.test.ts: one end of the ring
// (workerData.role), started only once BOTH ends are loaded. Without that
// barrier, the end spawned first could go to sleep while the other is still
// starting up (hundreds of ms on a busy machine), time out, and look like a
// lost wake-up.
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory, type PageSize } from '../../shared/memory/machine-memory.ts';
import { bellRegion, runBack, runFront, type RingRunConfig } from '../helpers/ring-common.ts';

/** Offset of the start-barrier word in the bell page (the wake words sit at 0 and 64). */
export const START_BARRIER = 128;

const data = workerData as { sab: MachineMemory['sab']; pageSize: PageSize; cfg: RingRunConfig; role: 'front' | 'back' };
const mem = MachineMemory.attach(data.sab, data.pageSize);
const bells = bellRegion(mem, data.cfg);
// Full barrier: count ourselves in; the second to arrive wakes the first.
if (bells.atomicAddU32(START_BARRIER, 1) + 1 >= 2) bells.notify32(START_BARRIER);
while (bells.atomicLoadU32(START_BARRIER) < 2) bells.wait32(START_BARRIER, 1, 100);
parentPort?.postMessage(data.role === 'front' ? runFront(mem, data.cfg) : runBack(mem, data.cfg));
