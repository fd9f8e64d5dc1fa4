// A dom0 worker entry for the vbd-on-DMA tests: dom0's usual services and
// vbd backends (dom0/vbd.ts, with the blkback options the toolstack passed),
// plus one control call dom0's agent does not have yet: attach dom0's DMA API
// and a disk driver to a DMA block controller the toolstack plugged in, so
// that vbds with params "dma:NAME" are served through it.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { AgentResult } from '../../shared/kernel/agent.ts';
import type { DomainWorkerData } from '../../toolstack/worker-data.ts';
import type { DeviceInfo } from '../../hypervisor/iommu.ts';
import type { DmaConfig } from '../../dom0/dma/create-dma.ts';
import type { DiskDriverOptions } from '../../dom0/dma/disk-driver.ts';
import { Dom0Services } from '../../dom0/dom0.ts';
import { Dom0Agent } from '../../dom0/agent.ts';
import { XsLocalClient } from '../../dom0/xenstore/local-client.ts';
import { attachVbdDmaDisk, startVbdBackends } from '../../dom0/vbd.ts';
import type { BlkbackDriver } from '../../dom0/blkback/xenbus.ts';

export class DmaVbdDom0Agent extends Dom0Agent {
  constructor(k: DomainKernel, svc: Dom0Services, vbd: BlkbackDriver) { super(k, svc, vbd); }

  /** [attachVbdDmaDisk device cfg opts] drives the controller `device` for vbds with params dma:<device.name>. */
  attachVbdDmaDisk(device: DeviceInfo, cfg: DmaConfig, opts: Omit<DiskDriverOptions, 'queueDma'> = {}): AgentResult<number> {
    const r = attachVbdDmaDisk(this.k, device, cfg, opts);
    return r.ok ? r : { ok: false, error: r.error };
  }
}

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, { idleMs: 2, ...data.kernel });
const services = new Dom0Services(kernel);
const run = kernel.run();
const log = process.env.XENSIM_VERBOSE ? (l: string) => console.error(`d${kernel.domid}: ${l}`) : undefined;
const vbd = await startVbdBackends(kernel, new XsLocalClient(services.xenstored, 0), { ...data.drivers?.blkback, log });
Comlink.expose(new DmaVbdDom0Agent(kernel, services, vbd), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await run;
await services.close();
process.exit(0);
