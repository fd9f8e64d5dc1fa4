/**
 * `npm run bench -- evtchn`: event-channel notify-to-wake latency (a ping-pong
 * between two domains, one event each way) and one-way sends per second, next
 * to a raw Atomics ping-pong between two bare workers with the same spin policy.
 */
import { Machine } from '../toolstack/machine.ts';
import { figure, repeat, type Benchmark, type Figure } from './harness.ts';
import { rawPingPongNs } from './baselines/raw.ts';
import { unwrap } from '../shared/result.ts';


const bench: Benchmark = async ({ quick }) => {
  const runs = quick ? 3 : 5;
  const n = quick ? 20_000 : 100_000;
  const figures: Figure[] = [];
  for (const [label, spinUs] of [['spin', 20], ['no spin', 0]] as const) {
    const raw = await repeat(runs, () => rawPingPongNs(n, spinUs));
    const m = await Machine.boot({ memBytes: 64 << 20, hvSpinUs: 0 });
    const a = await m.createDomain({ name: 'a', memoryKiB: 8192, model: 'vp', kernel: { spinUs } });
    const b = await m.createDomain({ name: 'b', memoryKiB: 8192, model: 'vp', kernel: { spinUs } });
    const pb = unwrap(await b.agent.allocUnbound(a.domid));
    const pa = unwrap(await a.agent.bindInterdomain(b.domid, pb));
    await b.agent.echo(pb);
    unwrap(await a.agent.pingPong(pa, 1000));
    const ours = await repeat(runs, async () => unwrap(await a.agent.pingPong(pa, n)).ns / n);
    figures.push(figure({
      name: `event ping-pong round trip (${label})`, value: ours.median / 1000, unit: 'µs', better: 'lower',
      baseline: { name: `raw Atomics ping-pong (${label})`, value: raw.median / 1000 }, runs: ours.runs.map((x) => x / 1000),
    }));
    if (spinUs > 0) {
      await b.agent.countEvents(pb);
      const sends = await repeat(runs, async () => n / ((await a.agent.sendMany(pa, n)) / 1e9));
      figures.push(figure({
        name: 'EVTCHNOP_send per second (fast path, receiver coalescing)', value: sends.median, unit: 'sends/s', better: 'higher',
        baseline: { name: 'raw ping-pong round trips per second', value: 1e9 / raw.median }, runs: sends.runs,
      }));
    }
    await m.shutdown();
  }
  return figures;
};
export default bench;
