/**
 * A whole machine in ONE thread for unit tests: a Hypervisor on a fresh
 * MachineMemory and guest kernels wired to it with DirectHypercaller.
 */
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { Hypervisor, type CreateDomainRequest, type HypervisorOptions } from '../../hypervisor/hypervisor.ts';
import { DirectHypercaller } from '../../hypervisor/direct.ts';
import { DomainKernel, type KernelOptions } from '../../shared/kernel/kernel.ts';

export interface TestMachine {
  readonly mem: MachineMemory;
  readonly hv: Hypervisor;
  domain(req: CreateDomainRequest, opts?: KernelOptions): DomainKernel;
}

export function testMachine(memBytes = 32 << 20, opts: HypervisorOptions & { pageSize?: 4096 | 16384 } = {}): TestMachine {
  const mem = MachineMemory.create({ memBytes, pageSize: opts.pageSize ?? 4096 });
  const hv = new Hypervisor(mem, opts);
  return {
    mem,
    hv,
    domain(req, kopts = {}) {
      const r = hv.createDomain(req);
      if (!r.ok) throw new Error(`createDomain: ${JSON.stringify(r.error)}`);
      return new DomainKernel(mem, r.value, { spinUs: 0, ...kopts, hypercaller: new DirectHypercaller(hv, r.value.slot) });
    },
  };
}
