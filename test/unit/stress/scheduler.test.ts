import { expect } from 'chai';
import { Scheduler, TracingHypercaller } from '../../../stress/scheduler.ts';
import { testMachine } from '../../helpers/machine.ts';
import { DirectHypercaller } from '../../../hypervisor/direct.ts';
import { DomainKernel } from '../../../shared/kernel/kernel.ts';

/** Three tasks on two vCPUs appending to one log at every yield point. */
async function interleave(seed: number): Promise<{ log: string[]; hash: string }> {
  const s = new Scheduler({ seed });
  const a = s.addVcpu('a');
  const b = s.addVcpu('b');
  const log: string[] = [];
  for (const [v, name] of [[a, 'a1'], [a, 'a2'], [b, 'b1']] as const) {
    s.spawn(v, name, async (p) => {
      for (let i = 0; i < 20; i++) { log.push(`${name}:${i}`); await p.point(`${name}-${i}`); }
    });
  }
  while ((await s.runStep()) === 'ran') { /* until every task is done */ }
  return { log, hash: s.trace.hash };
}

describe('stress Scheduler', () => {
  it('replays the same interleaving and trace hash for a seed, and another seed interleaves differently', async () => {
    const x = await interleave(11);
    const y = await interleave(11);
    const z = await interleave(12);
    expect(y.log).to.deep.equal(x.log);
    expect(y.hash).to.equal(x.hash);
    expect(x.log).to.have.length(60);
    expect(z.log).to.not.deep.equal(x.log);
    expect(z.hash).to.not.equal(x.hash);
    // Genuinely interleaved: a1 does not simply run to completion first.
    expect(x.log.slice(0, 20).every((l) => l.startsWith('a1'))).to.equal(false);
  });

  it('resumes a task waiting in until only once its condition holds, and times out a budget', async () => {
    const s = new Scheduler({ seed: 3 });
    const v = s.addVcpu('v');
    let flag = false;
    const seen: string[] = [];
    s.spawn(v, 'waiter', async (p) => {
      seen.push(`got ${String(await p.until(() => flag, 'flag'))} at ${s.step}`);
      seen.push(`budget ${String(await p.until(() => false, 'never', 5))}`);
    });
    s.spawn(v, 'setter', async (p) => {
      for (let i = 0; i < 10; i++) await p.point('spin');
      flag = true;
    });
    while ((await s.runStep()) === 'ran') { /* run */ }
    expect(seen[0]).to.match(/^got true at \d+$/);
    expect(Number(seen[0]!.split(' ').pop())).to.be.at.least(11);
    expect(seen[1]).to.equal('budget false');
  });

  it('skips idle time to the earliest sleeper instead of reporting a deadlock', async () => {
    const s = new Scheduler({ seed: 1 });
    const v = s.addVcpu('v');
    let woke = -1;
    s.spawn(v, 'sleeper', async (p) => { await p.sleep(1000, 'nap'); woke = s.step; });
    while ((await s.runStep()) === 'ran') { /* run */ }
    expect(woke).to.be.at.least(1000);
    expect(s.deadlock).to.equal(undefined);
  });

  it('reports a deadlock naming the waiting tasks, but not daemons waiting for work', async () => {
    const s = new Scheduler({ seed: 1 });
    const v = s.addVcpu('d1');
    s.spawn(v, 'service', async (p) => { await p.until(() => false, 'idle'); }, { daemon: true });
    expect(await s.runStep()).to.equal('ran');
    expect(await s.runStep()).to.equal('idle');
    s.spawn(v, 'pinger', async (p) => { await p.until(() => false, 'ping:wait'); });
    expect(await s.runStep()).to.equal('ran');
    expect(await s.runStep()).to.equal('deadlock');
    expect(s.deadlock).to.deep.equal(['d1/pinger (parked at ping:wait)']);
  });

  it('never runs a killed vCPU again: its tasks freeze at their next yield point', async () => {
    const s = new Scheduler({ seed: 5 });
    const v = s.addVcpu('victim');
    const w = s.addVcpu('killer');
    let after = 0;
    s.spawn(v, 'work', async (p) => { for (;;) { await p.point('loop'); after++; } });
    s.spawn(w, 'kill', async (p) => { await p.until(() => after >= 3, 'wait'); s.kill(v); });
    for (let i = 0; i < 200 && (await s.runStep()) === 'ran'; i++) { /* run */ }
    const frozen = after;
    for (let i = 0; i < 50; i++) await s.runStep();
    expect(after).to.equal(frozen);
    expect(v.tasks.every((t) => t.state === 'dead')).to.equal(true);
  });

  it('records an exception out of a task as a failure and keeps running the others', async () => {
    const s = new Scheduler({ seed: 2 });
    const v = s.addVcpu('v');
    let other = false;
    s.spawn(v, 'bad', async (p) => { await p.point('x'); throw new Error('boom'); });
    s.spawn(v, 'good', async (p) => { await p.point('y'); other = true; });
    while ((await s.runStep()) === 'ran') { /* run */ }
    expect(other).to.equal(true);
    expect(s.failures).to.have.length(1);
    expect(s.failures[0]!.error).to.equal('Error: boom');
  });

  it('dispatches a pending upcall as an irq unit of the receiving vCPU and traces hypercalls', async () => {
    const m = testMachine(16 << 20);
    const s = new Scheduler({ seed: 9 });
    const mk = (name: string, model: 'pm' | 'vp', priv: boolean, domid?: number) => {
      const r = m.hv.createDomain({ name, memoryKiB: 1024, model, privileged: priv, domid, foreignPages: 16, maxGrantFrames: 1 });
      if (!r.ok) throw new Error(JSON.stringify(r.error));
      return new DomainKernel(m.mem, r.value, { spinUs: 0, grantFrames: 1, hypercaller: new TracingHypercaller(new DirectHypercaller(m.hv, r.value.slot), s, name) });
    };
    const k0 = mk('d0', 'pm', true, 0);
    const k1 = mk('d1', 'vp', false);
    const v0 = s.addVcpu('d0', k0);
    const v1 = s.addVcpu('d1', k1);
    const p1 = k1.evtchn.allocUnbound(0);
    const p0 = k0.evtchn.bindInterdomain(k1.domid, p1);
    let got = 0;
    k0.evtchn.bind(p0, () => { got++; });
    k1.evtchn.bind(p1, () => { /* the stale event from the bind */ });
    s.spawn(v1, 'sender', async (p) => { for (let i = 0; i < 5; i++) { await p.point('send'); k1.evtchn.notify(p1); await p.until(() => got > i, 'wait'); } });
    while ((await s.runStep()) === 'ran') { /* run */ }
    expect(got).to.equal(5);
    expect(v0.ran.irq).to.be.at.least(5);
    expect(v1.ran.task).to.be.at.least(5);
    // EVTCHNOP_alloc_unbound (event_channel_op 32, cmd 6) went through the tracing hypercaller.
    expect(s.trace.tail(200).some((l) => /hc d1 op32\(6,/.test(l.text))).to.equal(true);
  });
});
