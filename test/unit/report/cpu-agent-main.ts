// A domU worker entry whose agent also serves threadCpuNs() — the optional
// method toolstack/stats.ts asks for — and a way to keep the vCPU busy, so the
// report tests can check CPU time end to end over comlink. It is domU/main.ts
// plus those two methods; domU/agent.ts is expected to gain threadCpuNs().
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../../shared/kernel/kernel.ts';
import type { DomainWorkerData } from '../../../toolstack/worker-data.ts';
import { XenstoreFront } from '../../../domU/xenstore-front.ts';
import { DomUAgent } from '../../../domU/agent.ts';
import { readThreadCpuNs } from '../../../toolstack/stats.ts';

class CpuAgent extends DomUAgent {
  /**
   * Keeps the vCPU busy until its thread has had `ms` of CPU (or 10 s have
   * passed): CPU time, not wall time, so a loaded host only makes it slower.
   */
  burnCpu(ms: number): number {
    const start = readThreadCpuNs() ?? 0;
    const deadline = Date.now() + 10_000;
    let now = start;
    while (now - start < ms * 1e6 && Date.now() < deadline) {
      for (let i = 0; i < 10_000; i++) { /* busy */ }
      now = readThreadCpuNs() ?? 0;
    }
    return now - start;
  }
}

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, data.kernel);
const store = new XenstoreFront(kernel);
Comlink.expose(new CpuAgent(kernel, store), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await kernel.run();
process.exit(0);
