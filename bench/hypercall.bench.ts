/**
 * `npm run bench -- hypercall`: the cost of a trap into the hypervisor worker.
 *  - a no-op hypercall round trip, next to a raw shared-memory mailbox round
 *    trip between two bare workers with the same spin policy (target <= 1.3x);
 *  - no-op calls per second for one domain with adaptive spinning (target >= 150k/s);
 *  - a batched GNTTABOP_copy of 4 KiB pages, next to memcpy in the same run.
 */
import { HYPERVISOR } from '../shared/abi/xen.ts';
import { Machine } from '../toolstack/machine.ts';
import { figure, repeat, type Benchmark, type Figure } from './harness.ts';
import { rawMailboxNs, rawMemcpyBps } from './baselines/raw.ts';
import { unwrap } from '../shared/result.ts';


const bench: Benchmark = async ({ quick }) => {
  const runs = quick ? 3 : 5;
  const n = quick ? 20_000 : 100_000;
  const figures: Figure[] = [];

  for (const [label, spinUs] of [['spin', 50], ['no spin', 0]] as const) {
    const raw = await repeat(runs, () => rawMailboxNs(n, spinUs));
    const m = await Machine.boot({ memBytes: 64 << 20, hvSpinUs: spinUs });
    const d = await m.createDomain({ name: 'caller', memoryKiB: 8192, model: 'vp', kernel: { hypercallSpinUs: spinUs, spinUs } });
    await d.agent.nopHypercalls(HYPERVISOR.xensim_nop, 1000); // warm up
    const ours = await repeat(runs, async () => (await d.agent.nopHypercalls(HYPERVISOR.xensim_nop, n)) / n);
    await m.shutdown();
    figures.push(figure({
      name: `nop hypercall round trip (${label})`, value: ours.median / 1000, unit: 'µs', better: 'lower',
      baseline: { name: `raw mailbox round trip (${label})`, value: raw.median / 1000 }, target: 1.3, runs: ours.runs.map((x) => x / 1000),
    }));
    if (spinUs > 0) {
      figures.push(figure({
        name: 'nop hypercalls per second, one domain (adaptive spin)', value: 1e9 / ours.median, unit: 'calls/s', better: 'higher',
        baseline: { name: 'issue target: 150k calls/s', value: 150_000 }, target: 1, runs: ours.runs.map((x) => 1e9 / x),
      }));
    }
  }

  // Batched grant copy: dom0 copies 16 granted 4 KiB pages of a domU per hypercall.
  const m = await Machine.boot({ memBytes: 64 << 20, hvSpinUs: 50 });
  const dom0 = await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 8192, model: 'pm', privileged: true });
  const domU = await m.createDomain({ name: 'guest', memoryKiB: 8192, model: 'vp' });
  const batch = 16;
  const refs: number[] = [];
  const pages: number[] = [];
  for (let i = 0; i < batch; i++) {
    refs.push(unwrap(await domU.agent.grant(0, unwrap(await domU.agent.allocPage()), true)));
    pages.push(unwrap(await dom0.agent.allocPage()));
  }
  const iters = quick ? 2000 : 10_000;
  const copy = await repeat(runs, async () => {
    const r = await dom0.agent.benchGrantCopy(domU.domid, refs, pages, iters);
    if (!r.ok) throw new Error('grant copy failed');
    return (iters * batch * 4096) / (r.ns / 1e9);
  });
  await m.shutdown();
  const memcpy = await repeat(runs, () => rawMemcpyBps(4096, iters * batch * 4096));
  figures.push(figure({
    name: `grant copy, ${batch} x 4 KiB per hypercall`, value: copy.median / 1e9, unit: 'GB/s', better: 'higher',
    baseline: { name: 'memcpy 4 KiB in a SharedArrayBuffer', value: memcpy.median / 1e9 }, runs: copy.runs.map((x) => x / 1e9),
  }));
  figures.push(figure({
    name: `grant copy hypercalls per second (${batch} pages each)`, value: copy.median / (batch * 4096), unit: 'calls/s', better: 'higher',
    baseline: { name: 'nop hypercalls per second (spin)', value: (figures[1]?.value ?? NaN) }, runs: copy.runs.map((x) => x / (batch * 4096)),
  }));
  return figures;
};
export default bench;
