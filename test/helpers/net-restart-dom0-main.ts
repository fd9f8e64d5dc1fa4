// A dom0 worker entry for the netback-restart tests: dom0's usual services
// and network, plus an agent that can kill netback abruptly (every backend
// device stops, the interfaces and bridges go, nothing queued is delivered)
// and start a new instance, as when a network driver domain reboots. The
// toolstack then re-creates the backend directories (Machine.recreateVifBackends)
// and the guests' netfronts reconnect.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { AgentResult } from '../../shared/kernel/agent.ts';
import type { DomainWorkerData } from '../../toolstack/worker-data.ts';
import { Dom0Services } from '../../dom0/dom0.ts';
import { Dom0Agent } from '../../dom0/agent.ts';
import { XsLocalClient } from '../../dom0/xenstore/local-client.ts';
import { startNetback, type Dom0Network } from '../../dom0/netback/start.ts';

export class NetRestartDom0Agent extends Dom0Agent {
  instances = 1;

  constructor(k: DomainKernel, svc: Dom0Services, net: Dom0Network, private readonly xsb: XsLocalClient, private readonly log?: (l: string) => void) {
    super(k, svc, undefined, net);
  }

  /** [killNetback] stops every vif device, the bus, the interfaces and the bridges; returns how many vifs it served. */
  async killNetback(): Promise<number> {
    const net = this.net;
    this.net = undefined;
    if (net === undefined) return 0;
    const n = net.netback.vifs.size;
    await net.stop();
    return n;
  }

  /** [restartNetback] starts a new netback instance (and bridge xenbr0) watching the vif backend directory. */
  async restartNetback(): Promise<AgentResult<number>> {
    if (this.net !== undefined) return { ok: false, error: 'netback is running' };
    const r = await startNetback(this.k, this.xsb, this.log ? { log: this.log } : {});
    if (!r.ok) return { ok: false, error: JSON.stringify(r.error) };
    this.net = r.value;
    return { ok: true, value: ++this.instances };
  }
}

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, { idleMs: 2, ...data.kernel });
const services = new Dom0Services(kernel);
const run = kernel.run();
const log = process.env.XENSIM_VERBOSE ? (l: string) => console.error(`d${kernel.domid}: ${l}`) : undefined;
const xsb = new XsLocalClient(services.xenstored, 0);
const net = await startNetback(kernel, xsb, { ...data.drivers?.netback, ...(log ? { log } : {}) });
if (!net.ok) throw new Error(`cannot watch the vif backend directory: ${JSON.stringify(net.error)}`);
Comlink.expose(new NetRestartDom0Agent(kernel, services, net.value, xsb, log), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await run;
await services.close();
process.exit(0);
