/** What the toolstack hands a domain's worker at start (workerData). */
import type { PageSize } from '../shared/memory/machine-memory.ts';
import type { DomainBootInfo } from '../hypervisor/hypervisor.ts';
import type { KernelOptions } from '../shared/kernel/kernel.ts';
import type { VbdBackendOptions } from '../dom0/vbd.ts';
import type { BlkfrontOptions } from '../domU/blkfront/blkfront.ts';
import type { NetbackWorkerOptions } from '../dom0/netback/start.ts';
import type { NetfrontOptions } from '../domU/netfront/netfront.ts';

export interface DomainWorkerData {
  readonly sab: SharedArrayBuffer;
  readonly pageSize: PageSize;
  readonly boot: DomainBootInfo;
  readonly kernel?: KernelOptions;
  /** Driver settings (structured-clone data only). */
  readonly drivers?: DriverOptions;
}

export interface DriverOptions {
  /** dom0 / driver domains: how vbd backends move data and what they offer. */
  readonly blkback?: Omit<VbdBackendOptions, 'onDevice' | 'log'>;
  /** domUs: what blkfront asks for. */
  readonly blkfront?: Omit<BlkfrontOptions, 'extraCounters'>;
  /** dom0 / driver domains: the bridges, the packet pool and what netback offers (txMode, maxQueues, limits). */
  readonly netback?: NetbackWorkerOptions;
  /** domUs: what netfront asks for (queues, buffers, GSO, checksum offload). */
  readonly netfront?: Omit<NetfrontOptions, 'log'>;
}
