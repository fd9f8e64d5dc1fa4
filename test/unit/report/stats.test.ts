import { expect } from 'chai';
import { StatsCollector, domainStateOf, readThreadCpuNs, xentopSampleOf, type DeviceStats, type StatsMachine } from '../../../toolstack/stats.ts';
import type { DomainSummary } from '../../../hypervisor/control.ts';
import { xlStateFlags } from '../../../cli/views/xl.ts';
import { xentopStateFlags } from '../../../cli/views/xentop.ts';

function summary(domid: number, name: string, state: string, pages: number): DomainSummary {
  return { domid, name, state, model: 'vp', pages, ownedFrames: pages, grantFrames: 1, activeGrants: 0, maptrackInUse: 0, openPorts: 2 };
}

/** A Machine stand-in: a domain table and agents that answer as the test says. */
function fakeMachine(doms: DomainSummary[], agents: Record<number, unknown>): StatsMachine {
  return {
    hv: { domains: () => doms, freeFrames: () => 1000 },
    mem: { frames: 8192, pageSize: 4096 },
    domain: (id) => (id in agents ? { agent: agents[id] } : undefined),
  };
}

function burn(ms: number): void {
  const t = Date.now();
  while (Date.now() - t < ms) { /* spin */ }
}

describe('toolstack statistics', function () {
  this.timeout(20_000);

  it("reads the calling thread's CPU time, which grows with work and not with sleep", async function () {
    const t0 = readThreadCpuNs();
    if (t0 === null) {
      console.warn('SKIPPED: thread CPU time, because /proc/thread-self is not available here');
      this.skip();
    }
    // The process's CPU time is the reference: while this thread spins, it is nearly all of it,
    // however loaded the host is.
    const p0 = process.cpuUsage();
    burn(150);
    const p1 = process.cpuUsage(p0);
    const t1 = readThreadCpuNs() as number;
    const processNs = (p1.user + p1.system) * 1000;
    expect(t1 - (t0 as number)).to.be.at.most(processNs + 10e6);
    expect(t1 - (t0 as number)).to.be.at.least(processNs * 0.7 - 10e6);
    expect(t1 - (t0 as number)).to.be.greaterThan(10e6);
    await new Promise((r) => setTimeout(r, 150));
    const t2 = readThreadCpuNs() as number;
    expect(t2 - t1).to.be.lessThan(30e6);
  });

  it('maps the hypervisor states to the flags xl list and xentop print', () => {
    expect(xlStateFlags(domainStateOf('running', true))).to.equal('r-----');
    expect(xlStateFlags(domainStateOf('running', false))).to.equal('-b----');
    expect(xlStateFlags(domainStateOf('paused', false))).to.equal('--p---');
    expect(xlStateFlags(domainStateOf('crashed', false))).to.equal('---sc-');
    expect(xentopStateFlags(domainStateOf('crashed', false))).to.equal('---c--');
    expect(xlStateFlags(domainStateOf('shutdown', false))).to.equal('---s--');
    expect(xlStateFlags(domainStateOf('dying', false))).to.equal('-----d');
    expect(xlStateFlags(domainStateOf('zombie', false))).to.equal('-----d');
  });

  it('builds each domain from the domain table: memory from its pages, one vcpu, sorted by domid', async () => {
    const m = fakeMachine([summary(2, 'b', 'paused', 1024), summary(0, 'Domain-0', 'running', 8192)], {});
    const s = await new StatsCollector(m, { cpuHz: 2_000_000_000 }).sample();
    expect(s.domains.map((d) => [d.name, d.domid, d.memKiB, d.maxMemKiB, d.vcpus, d.vcpusOnline])).to.deep.equal([
      ['Domain-0', 0, 32768, 32768, 1, 1],
      ['b', 2, 4096, 4096, 1, 1],
    ]);
    expect(s.node).to.deep.equal({ xenVersion: '4.17-xensim', totMemKiB: 32768, freeMemKiB: 4000, numCpus: s.node.numCpus, cpuHz: 2_000_000_000 });
    expect(s.domains[1]?.state.paused).to.equal(true);
    expect(s.domains[0]?.cpuNs).to.equal(0); // no agent, no CPU time
  });

  it("takes CPU time from an agent's threadCpuNs() and calls a domain blocked when it idles", async () => {
    let cpu = 1_000_000;
    const agent = { threadCpuNs: () => cpu };
    const c = new StatsCollector(fakeMachine([summary(1, 'guest', 'running', 256)], { 1: agent }));
    const first = await c.sample();
    expect(first.domains[0]?.cpuNs).to.equal(1_000_000);
    expect(first.cpuMeasured).to.deep.equal([1]);
    // Busy: CPU time grows as fast as the clock.
    const t = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, 40));
    cpu += Number(process.hrtime.bigint() - t) + 5_000_000;
    const busy = await c.sample();
    expect(xlStateFlags(busy.domains[0]!.state)).to.equal('r-----');
    // Idle: no CPU time while the clock runs.
    await new Promise((r) => setTimeout(r, 40));
    const idle = await c.sample();
    expect(xlStateFlags(idle.domains[0]!.state)).to.equal('-b----');
    const x = xentopSampleOf(idle, busy);
    expect(x.prev?.domains).to.deep.equal([{ domid: 1, cpuNs: cpu }]);
    expect(x.prev?.elapsedUs).to.be.greaterThan(30_000);
  });

  it('asks an agent without the optional methods once, then never again', async () => {
    let calls = 0;
    // As comlink answers a call to a method the worker's agent does not have: a rejection.
    const missing = (): Promise<never> => {
      calls++;
      return Promise.reject(new TypeError("Cannot read properties of undefined (reading 'apply')"));
    };
    const agent = { threadCpuNs: missing, deviceStats: missing };
    const c = new StatsCollector(fakeMachine([summary(1, 'guest', 'running', 256)], { 1: agent }));
    for (let i = 0; i < 3; i++) {
      const s = await c.sample();
      expect(s.domains[0]?.cpuNs).to.equal(0);
      expect(s.domains[0]?.vbds).to.deep.equal([]);
    }
    expect(calls).to.equal(2);
  });

  it('takes VBD and NET counters from the drivers, else from the agent, else none', async () => {
    const fromDrivers: DeviceStats = { vbds: [{ dev: 51712, backendType: 'blkback', ooReqs: 0, rdReqs: 5, wrReqs: 6, rdSects: 40, wrSects: 48 }], nets: [] };
    const fromAgent: DeviceStats = { vbds: [], nets: [{ txBytes: 1, txPackets: 1, txErrs: 0, txDrop: 0, rxBytes: 2, rxPackets: 1, rxErrs: 0, rxDrop: 0 }] };
    const m = fakeMachine([summary(1, 'a', 'running', 256), summary(2, 'b', 'running', 256)], { 1: { deviceStats: () => fromAgent }, 2: { deviceStats: () => fromAgent } });
    const s = await new StatsCollector(m, { deviceStats: (domid) => (domid === 1 ? fromDrivers : null) }).sample();
    expect(s.domains[0]?.vbds).to.deep.equal(fromDrivers.vbds);
    expect(s.domains[1]?.nets).to.deep.equal(fromAgent.nets);
  });

  it('keeps the last known values of a domain that does not answer in time', async () => {
    let hang = false;
    const agent = { threadCpuNs: () => (hang ? new Promise<number>(() => {}) : 7_000_000) };
    const c = new StatsCollector(fakeMachine([summary(1, 'g', 'running', 256)], { 1: agent }), { timeoutMs: 50 });
    expect((await c.sample()).domains[0]?.cpuNs).to.equal(7_000_000);
    hang = true;
    const t = Date.now();
    expect((await c.sample()).domains[0]?.cpuNs).to.equal(7_000_000);
    expect(Date.now() - t).to.be.lessThan(1000);
  });
});
