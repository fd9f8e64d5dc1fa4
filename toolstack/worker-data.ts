/** What the toolstack hands a domain's worker at start (workerData). */
import type { PageSize } from '../shared/memory/machine-memory.ts';
import type { DomainBootInfo } from '../hypervisor/hypervisor.ts';
import type { KernelOptions } from '../shared/kernel/kernel.ts';

export interface DomainWorkerData {
  readonly sab: SharedArrayBuffer;
  readonly pageSize: PageSize;
  readonly boot: DomainBootInfo;
  readonly kernel?: KernelOptions;
}
