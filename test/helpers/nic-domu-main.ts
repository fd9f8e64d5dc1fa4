// A domU worker entry for the NIC-port tests: a normal guest (XenStore,
// netfront, the usual agent) plus one call the agent does not have: send
// raw Ethernet frames on a vif and collect what comes back — how a guest
// pings a host outside the machine without a network stack.
import * as Comlink from 'comlink';
import { parentPort, workerData } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { childEndpoint } from '../../shared/worker/endpoint.ts';
import { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { AgentResult } from '../../shared/kernel/agent.ts';
import type { DomainWorkerData } from '../../toolstack/worker-data.ts';
import { createFrontendBus } from '../../shared/xenbus/frontend.ts';
import { asDomId } from '../../shared/types.ts';
import { XenstoreFront } from '../../domU/xenstore-front.ts';
import { DomUAgent } from '../../domU/agent.ts';
import { blkfrontDriver } from '../../domU/blkfront/xenbus.ts';
import { createNetfront } from '../../domU/netfront/start.ts';

export class NicTestDomUAgent extends DomUAgent {
  /**
   * [exchange devid frames want timeoutMs] sends frames on vif devid (waiting
   * for ring room as needed) and returns every frame received until `want`
   * arrived or the timeout passed (then what did arrive).
   */
  async exchange(devid: number, frames: Uint8Array[], want: number, timeoutMs = 5000): Promise<AgentResult<Uint8Array[]>> {
    const w = await this.waitVif(devid, timeoutMs);
    if (!w.ok) return w;
    const dev = await this.net!.device(devid);
    const got: Uint8Array[] = [];
    let done: (() => void) | undefined;
    const all = new Promise<void>((r) => { done = r; });
    dev.onReceive((f) => {
      got.push(f.slice());
      if (got.length >= want) done?.();
    });
    try {
      for (const f of frames) {
        while (!dev.send(f)) await dev.whenWritable();
      }
      if (want > 0) await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs))]);
      else await new Promise((r) => setTimeout(r, 20));
      return { ok: true, value: got };
    } finally {
      dev.onReceive(undefined);
    }
  }

  /**
   * [pingTimes devid frames timeoutMs] sends frames one at a time, each after
   * the previous one's answer arrived, and returns each round trip in ns
   * (measured inside the guest, no control plane in between).
   */
  async pingTimes(devid: number, frames: Uint8Array[], timeoutMs = 5000): Promise<AgentResult<number[]>> {
    const w = await this.waitVif(devid, timeoutMs);
    if (!w.ok) return w;
    const dev = await this.net!.device(devid);
    const times: number[] = [];
    let answered: (() => void) | undefined;
    dev.onReceive(() => answered?.());
    try {
      for (const f of frames) {
        const back = new Promise<boolean>((r) => {
          answered = () => r(true);
          setTimeout(() => r(false), timeoutMs);
        });
        const t0 = process.hrtime.bigint();
        while (!dev.send(f)) await dev.whenWritable();
        if (!(await back)) return { ok: false, error: `no answer to frame ${times.length} within ${timeoutMs} ms` };
        times.push(Number(process.hrtime.bigint() - t0));
      }
      return { ok: true, value: times };
    } finally {
      dev.onReceive(undefined);
    }
  }
}

const data = workerData as DomainWorkerData;
const kernel = new DomainKernel(MachineMemory.attach(data.sab, data.pageSize), data.boot, data.kernel);
const store = new XenstoreFront(kernel);
const blk = blkfrontDriver(kernel, data.drivers?.blkfront);
const net = createNetfront(kernel, store.client, { ...data.drivers?.netfront });
const run = kernel.run();
void createFrontendBus(store.client, asDomId(kernel.domid), 'vbd', blk.driver).start();
void net.bus.start();
Comlink.expose(new NicTestDomUAgent(kernel, store, blk, net.driver), childEndpoint(parentPort!));
parentPort!.postMessage({ xensim: 'domain-ready', domid: kernel.domid });
await run;
process.exit(0);
