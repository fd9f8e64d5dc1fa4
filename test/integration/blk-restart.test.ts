/**
 * blkback dies with requests in flight and a new instance, with other
 * limits, takes over, across real workers (Linux blkfront_resume +
 * blkif_recover). The guest's verified fio job runs at iodepth 32 through
 * it: dom0 holds every request in front of the medium, kills the backend (no
 * answer to anything in flight), the toolstack removes and re-creates the
 * backend directory, and blkfront re-issues what it had in flight, re-split
 * to the new limits. Nothing acknowledged is lost (a verified read pass over
 * the whole region), nothing is acknowledged twice (the device completed
 * exactly the I/Os fio saw; the verify tracker would have thrown on a second
 * completion), the dead backend answered nothing, and the hypervisor's books
 * balance.
 */
import { expect } from 'chai';
import type * as Comlink from 'comlink';
import { Machine } from '../../toolstack/machine.ts';
import type { Dom0Agent } from '../../dom0/agent.ts';
import type { BlkbackCounterName } from '../../dom0/blkback/blkback.ts';
import type { DomUAgent } from '../../domU/agent.ts';
import type { FioJobSpec } from '../../domU/workloads/fio-engine.ts';
import type { FioJson } from '../../domU/workloads/fio-json.ts';
import type { RestartBackendOptions, RestartDom0Agent } from '../helpers/blk-restart-dom0-main.ts';
import { asDomId } from '../../shared/types.ts';
import { unwrap } from '../../shared/result.ts';

type VbdRow = Awaited<ReturnType<Dom0Agent['vbdStats']>>[number];

const XVDA = 51712;
const REGION = 32 << 20;
const BS = 64 * 1024;
const DEPTH = 32;
const BACKEND_KEYS = { params: 'ram:64M', mode: 'w', 'device-type': 'disk', type: 'ram', removable: '0', dev: 'xvda' };

const job = (name: string, runtime: number): FioJobSpec => ({
  name, rw: 'randrw', bs: BS, iodepth: DEPTH, size: REGION, runtime, time_based: true, verify: true,
});

async function until(what: string, cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function job0(f: FioJson) {
  return f.jobs[0] as FioJson['jobs'][number];
}

describe('blkback restarted with requests in flight, across real workers', function () {
  this.timeout(120_000);
  let m: Machine;
  let d0: Comlink.Remote<RestartDom0Agent>;
  let u: Comlink.Remote<DomUAgent>;
  let domid = 0;
  const counter = (row: VbdRow | undefined, name: BlkbackCounterName): number => row?.counters[name] ?? 0;
  const state = async (path: string): Promise<string> => { const r = await d0.xsRead(`${path}/state`); return r.ok ? r.value : 'gone'; };

  before(async () => {
    m = await Machine.boot({ memBytes: 384 << 20 });
    const h0 = await m.createDomain({
      name: 'Domain-0', domid: 0, memoryKiB: 96 * 1024, model: 'p2m', privileged: true, kind: 'dom0',
      entry: new URL('../helpers/blk-restart-dom0-main.ts', import.meta.url), drivers: { blkback: { mode: 'persistent', maxIndirectSegments: 256 } },
    });
    d0 = h0.agent as unknown as Comlink.Remote<RestartDom0Agent>;
    const g = await m.createDomain({ name: 'guest1', memoryKiB: 32 * 1024, model: 'vp' });
    domid = g.domid;
    u = m.domU(domid);
    await m.attachDisk(domid, { vdev: 'xvda', target: BACKEND_KEYS.params });
  });
  after(async () => { await m?.shutdown(); });

  /**
   * Runs a verified job and, while it runs, kills the backend with every
   * request of the job held in it, then starts `to`. Returns what fio and
   * the counters said.
   */
  async function restartDuringJob(to: RestartBackendOptions, partsPerIo: number) {
    const be = `/local/domain/0/backend/vbd/${domid}/${XVDA}`;
    const fe = `/local/domain/${domid}/device/vbd/${XVDA}`;
    const front0 = (await u.blkCounters(XVDA)) ?? {};
    const running = u.runFio(XVDA, [job(`across-${to.mode}`, 2.5)]);
    // Let some I/O be acknowledged before the backend dies: it must survive.
    await until('I/O acknowledged before the restart', async () => ((await u.blkCounters(XVDA))?.io_completed ?? 0) > (front0.io_completed ?? 0) + 200);
    await d0.holdIo();
    const want = DEPTH * partsPerIo;
    await until(`${want} requests in flight in blkback`, async () => (await d0.heldCount()) >= want, 10_000);
    const atDeath = (await u.blkCounters(XVDA)) ?? {};
    const killed = await d0.killBackends();
    // The toolstack sees the backend gone and removes its directory, as xl would.
    expect((await d0.xsRm(be)).ok).to.equal(true);
    await until('the frontend back in Initialising', async () => (await state(fe)) === '1');
    expect(unwrap(await d0.startBackends(to))).to.be.greaterThan(1);
    expect((await d0.createDeviceDirs({ type: 'vbd', frontDom: asDomId(domid), backDom: asDomId(0), devid: XVDA, backendKeys: BACKEND_KEYS, sides: 'backend' })).ok).to.equal(true);
    await until('both ends Connected again', async () => (await state(fe)) === '4' && (await state(be)) === '4');
    const fio = job0(unwrap(await running));
    const front = (await u.blkCounters(XVDA)) ?? {};
    return { want, killed, atDeath, front0, front, fio };
  }

  function expectNothingLostOrDoubled(r: Awaited<ReturnType<typeof restartDuringJob>>): void {
    const { fio, front, front0, atDeath } = r;
    expect(fio.error, fio.xensim.error_message ?? '').to.equal(0);
    expect(fio.xensim.failed_ios).to.equal(0);
    expect(fio.xensim.verify?.mismatches).to.equal(0);
    expect(fio.xensim.verify?.verified_sectors).to.be.greaterThan(0);
    // Every I/O fio saw complete was completed once by the device, and no more.
    const ios = fio.read.total_ios + fio.write.total_ios;
    expect(fio.xensim.group_ios).to.equal(ios);
    expect((front.io_completed ?? 0) - (front0.io_completed ?? 0)).to.equal(ios);
    expect((front.io_errors ?? 0) - (front0.io_errors ?? 0)).to.equal(0);
    expect(front.bad_responses ?? 0).to.equal(0);
    expect(front.bad_response_ops ?? 0).to.equal(0);
    // The job went on after the restart: more finished than the re-issued requests.
    expect((front.io_completed ?? 0) - (atDeath.io_completed ?? 0)).to.be.greaterThan(DEPTH);
  }

  it('re-issues 32 requests from a dead persistent/indirect backend to a map backend without indirect, losing none', async () => {
    const r = await restartDuringJob({ mode: 'map', maxIndirectSegments: 0 }, 1);
    // 32 I/Os of 64 KiB, one indirect request each, all held in the backend when it died.
    expect(r.killed.held).to.equal(32);
    const deadAtDeath = r.killed.devices.find((d) => d.frontDom === domid);
    expect(counter(deadAtDeath, 'indirect_requests')).to.be.greaterThan(0);
    expect(r.front.resumes).to.equal(1);
    expect((r.front.requeued ?? 0) - (r.front0.requeued ?? 0)).to.equal(32);
    expectNothingLostOrDoubled(r);
    // The dead backend answered nothing after it died.
    const deadNow = (await d0.deadStats()).find((d) => d.frontDom === domid);
    expect(counter(deadNow, 'ring_responses')).to.equal(counter(deadAtDeath, 'ring_responses'));
    // The new one never saw an indirect request: each 64 KiB I/O came split to 11 + 5 segments.
    const live = (await d0.vbdStats()).find((d) => d.frontDom === domid);
    expect(counter(live, 'indirect_requests')).to.equal(0);
    expect(counter(live, 'ring_requests')).to.be.at.least(2 * 32);
    expect(counter(live, 'error_responses')).to.equal(0);
    expect(counter(live, 'grant_maps')).to.be.greaterThan(0);
    expect(counter(live, 'persistent_hits')).to.equal(0);
    const rec = await m.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });

  it('does it again from that backend to a copying one with indirect segments, 64 split requests in flight', async () => {
    const r = await restartDuringJob({ mode: 'copy', maxIndirectSegments: 64 }, 2);
    expect(r.killed.held).to.equal(64);
    expect(r.front.resumes).to.equal(2);
    expect((r.front.requeued ?? 0) - (r.front0.requeued ?? 0)).to.equal(64);
    expectNothingLostOrDoubled(r);
    const live = (await d0.vbdStats()).find((d) => d.frontDom === domid);
    expect(counter(live, 'grant_copies')).to.be.greaterThan(0);
    expect(counter(live, 'error_responses')).to.equal(0);
    // I/Os issued after the restart are one indirect request again.
    expect(counter(live, 'indirect_requests')).to.be.greaterThan(0);
    const dead = await d0.deadStats();
    expect(dead).to.have.length(2);
  });

  it('reads back every write acknowledged across both restarts', async () => {
    const back = job0(unwrap(await u.runFio(XVDA, [{ name: 'read-back', rw: 'read', bs: 256 * 1024, iodepth: 8, size: REGION, verify: true }])));
    expect(back.error, back.xensim.error_message ?? '').to.equal(0);
    expect(back.read.io_bytes).to.equal(REGION);
    expect(back.xensim.verify?.mismatches).to.equal(0);
    // The region was written all over by two 2.5 s jobs: nearly every sector holds an acknowledged write.
    expect(back.xensim.verify?.verified_sectors).to.be.greaterThan((REGION / 512) * 0.5);
    const rec = await m.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });
});
