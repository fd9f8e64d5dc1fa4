/**
 * A domU's agent: the generic guest agent plus the guest's XenStore client,
 * so tools and tests can see XenStore as the guest sees it (permissions apply).
 */
import { GuestAgent, type AgentResult } from '../shared/kernel/agent.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import type { XenstoreFront, StoreInfo } from './xenstore-front.ts';

function xs<T>(r: { ok: true; value: T } | { ok: false; error: unknown }): AgentResult<T> {
  return r.ok ? { ok: true, value: r.value } : { ok: false, error: typeof r.error === 'object' ? JSON.stringify(r.error) : String(r.error) };
}

export class DomUAgent extends GuestAgent {
  constructor(k: DomainKernel, private readonly store: XenstoreFront) { super(k); }

  storeInfo(): StoreInfo { return this.store.info; }
  async xsRead(path: string): Promise<AgentResult<string>> { return xs(await this.store.client.readString(path)); }
  async xsWrite(path: string, value: string): Promise<AgentResult<void>> { return xs(await this.store.client.write(path, value)); }
  async xsDirectory(path: string): Promise<AgentResult<string[]>> { return xs(await this.store.client.directory(path)); }
  async xsRm(path: string): Promise<AgentResult<void>> { return xs(await this.store.client.rm(path)); }
}
