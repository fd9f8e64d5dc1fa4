/**
 * A hostile frontend against dom0's blkback across real workers, while a
 * well-behaved guest on the same dom0 runs a verified fio job. The hostile
 * guest (test/helpers/blk-hostile-domu-main.ts) does the XenBus handshake
 * like any blkfront, then writes garbage into its own ring: unknown
 * operations, nr_segments 0 and 12, grant references it never granted or
 * granted read-only, sectors past the end of its disk, segments past the
 * page, a slot of 0xff bytes, requests rewritten after they were published,
 * and finally a req_prod that leaps ahead. Each garbage request is answered
 * with an error status and its id echoed; the leap gets the frontend
 * disconnected (an error node and Closing). dom0 keeps serving: the good
 * guest's job finishes untouched, and the hypervisor's books balance.
 */
import { expect } from 'chai';
import type * as Comlink from 'comlink';
import { Machine } from '../../toolstack/machine.ts';
import type { DomUAgent } from '../../domU/agent.ts';
import type { BlkbackCounters } from '../../dom0/blkback/blkback.ts';
import type { FioJson } from '../../domU/workloads/fio-json.ts';
import {
  BLKIF_OP_READ, BLKIF_OP_RESERVED_1, BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
} from '../../shared/abi/blkif.ts';
import { XenbusState } from '../../shared/xenbus/state.ts';
import { unwrap } from '../../shared/result.ts';
import type { RawRequest, RawResponse } from '../helpers/blk-raw-front.ts';
import type { HostileDomUAgent, RewriteCase } from '../helpers/blk-hostile-domu-main.ts';

const XVDA = 51712;
const SECTORS = (16 << 20) / 512;

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

describe('a hostile frontend next to a good guest, across real workers', function () {
  this.timeout(120_000);
  let m: Machine;
  let bad: Comlink.Remote<HostileDomUAgent>;
  let good: Comlink.Remote<DomUAgent>;
  let badId = 0;
  let goodId = 0;
  let goodJob: Promise<Awaited<ReturnType<DomUAgent['runFio']>>>;
  let goodFront0: Record<string, number> = {};
  let goodReqsAtLeap = 0;
  /** blkback's counters for domid's disk (vbdStats carries a BlkbackDevice snapshot). */
  const stats = async (domid: number): Promise<BlkbackCounters> => {
    const row = (await m.dom0!.vbdStats()).find((s) => s.frontDom === domid);
    if (row === undefined) throw new Error(`dom0 serves no disk of d${domid}`);
    return row.counters as BlkbackCounters;
  };

  before(async () => {
    m = await Machine.boot({ memBytes: 384 << 20 });
    await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 96 * 1024, model: 'p2m', privileged: true });
    const h = await m.createDomain({ name: 'hostile', memoryKiB: 16 * 1024, model: 'vp', kind: 'domU', entry: new URL('../helpers/blk-hostile-domu-main.ts', import.meta.url) });
    badId = h.domid;
    bad = h.agent as unknown as Comlink.Remote<HostileDomUAgent>;
    const g = await m.createDomain({ name: 'good', memoryKiB: 32 * 1024, model: 'vp' });
    goodId = g.domid;
    good = m.domU(goodId);
    await m.attachDisk(badId, { vdev: 'xvda', target: 'ram:16M' });
    await m.attachDisk(goodId, { vdev: 'xvda', target: 'ram:16M' });
    unwrap(await bad.rawConnect(XVDA));
    // The good guest connects, then runs its verified job through everything below.
    expect(job0(unwrap(await good.runFio(XVDA, [{ name: 'warm', rw: 'write', bs: 65536, iodepth: 4, size: 1 << 20, verify: true }]))).error).to.equal(0);
    goodFront0 = (await good.blkCounters(XVDA)) ?? {};
    goodJob = good.runFio(XVDA, [{ name: 'good', rw: 'randrw', bs: 4096, iodepth: 16, size: 8 << 20, runtime: 5, time_based: true, verify: true }]);
  });
  after(async () => { await m?.shutdown(); });

  it('answers each kind of garbage with an error status and the id echoed, then serves a good request', async () => {
    const rw = await bad.rawGrantPage(false, 0xee);
    const ro = await bad.rawGrantPage(true, 0xdd);
    const seg = [{ gref: rw.gref, first: 0, last: 7 }];
    const cases: { what: string; req: RawRequest; status: number }[] = [
      { what: 'unknown op (RESERVED_1)', req: { op: BLKIF_OP_RESERVED_1, id: 1, sector: 0, segs: seg }, status: BLKIF_RSP_EOPNOTSUPP },
      { what: 'unknown op 200', req: { op: 200, id: 2, sector: 0, segs: seg }, status: BLKIF_RSP_EOPNOTSUPP },
      { what: 'nr_segments 0', req: { op: BLKIF_OP_READ, id: 3, sector: 0, nrSegments: 0 }, status: BLKIF_RSP_ERROR },
      { what: 'nr_segments 12', req: { op: BLKIF_OP_WRITE, id: 4, sector: 0, nrSegments: 12, segs: seg }, status: BLKIF_RSP_ERROR },
      { what: 'a gref never granted', req: { op: BLKIF_OP_READ, id: 5, sector: 0, segs: [{ gref: 4000, first: 0, last: 7 }] }, status: BLKIF_RSP_ERROR },
      { what: 'a gref past the grant table', req: { op: BLKIF_OP_READ, id: 6, sector: 0, segs: [{ gref: 0xfffffff0, first: 0, last: 7 }] }, status: BLKIF_RSP_ERROR },
      { what: 'a read into a read-only grant', req: { op: BLKIF_OP_READ, id: 7, sector: 0, segs: [{ gref: ro.gref, first: 0, last: 7 }] }, status: BLKIF_RSP_ERROR },
      { what: 'sectors past the end', req: { op: BLKIF_OP_READ, id: 8, sector: SECTORS - 4, segs: seg }, status: BLKIF_RSP_ERROR },
      { what: 'a sector beyond 2^53', req: { op: BLKIF_OP_WRITE, id: 9, sector: 1n << 60n, segs: seg }, status: BLKIF_RSP_ERROR },
      { what: 'last_sect 8, past the page', req: { op: BLKIF_OP_WRITE, id: 10, sector: 0, segs: [{ gref: rw.gref, first: 0, last: 8 }] }, status: BLKIF_RSP_ERROR },
      { what: 'first_sect > last_sect', req: { op: BLKIF_OP_READ, id: 11, sector: 0, segs: [{ gref: rw.gref, first: 6, last: 2 }] }, status: BLKIF_RSP_ERROR },
    ];
    for (const c of cases) {
      const got = await bad.rawAnswer(c.req);
      expect(got, c.what).to.have.length(1);
      const r = got[0] as RawResponse;
      expect(r.status, c.what).to.equal(c.status);
      expect(r.id, `${c.what}: id echoed`).to.equal(c.req.id);
      expect(r.op, `${c.what}: operation echoed`).to.equal(c.req.op);
    }
    // A slot full of 0xff: refused, the id echoed, the rest of the response defined (XSA-216).
    const ff = await bad.rawAnswer(new Uint8Array(112).fill(0xff));
    expect(ff).to.have.length(1);
    expect(ff[0]!.status).to.equal(BLKIF_RSP_EOPNOTSUPP);
    expect([...ff[0]!.bytes.subarray(0, 8)]).to.deep.equal(new Array(8).fill(0xff));
    expect([...ff[0]!.bytes.subarray(12, 16)]).to.deep.equal([0, 0, 0, 0]);
    // Not broken: a good write, then a read of it into another page.
    expect((await bad.rawAnswer({ op: BLKIF_OP_WRITE, id: 100, sector: 64, segs: [{ gref: ro.gref, first: 0, last: 7 }] }))[0]?.status).to.equal(BLKIF_RSP_OKAY);
    expect((await bad.rawAnswer({ op: BLKIF_OP_READ, id: 101, sector: 64, segs: seg }))[0]?.status).to.equal(BLKIF_RSP_OKAY);
    expect((await bad.rawPageBytes(rw.pfn)).every((b) => b === 0xdd)).to.equal(true);
    const c = await stats(badId);
    expect(c.protocol_errors).to.equal(0);
    expect(c.reject_unknown_operation).to.equal(3);
    expect(c.reject_bad_segment_count).to.equal(2);
    expect(c.reject_bad_grant).to.equal(3);
    expect(c.reject_beyond_disk).to.equal(2);
    expect(c.reject_bad_segment).to.equal(2);
    expect(c.error_responses + c.eopnotsupp_responses).to.equal(cases.length + 1);
  });

  it('answers a request whose sector and grants are rewritten after publishing exactly once, from the one copy blkback took', async () => {
    const src = await bad.rawGrantPage(true, 0x5a);
    const before = await stats(badId);
    const cases: RewriteCase[] = [];
    for (let i = 0; i < 24; i++) {
      cases.push({
        first: { op: BLKIF_OP_WRITE, id: 1000 + i, sector: 256 + 8 * i, segs: [{ gref: src.gref, first: 0, last: 7 }] },
        // A grant never made, at a sector past the end: refused whichever part blkback copied.
        second: { op: BLKIF_OP_WRITE, id: 1000 + i, sector: SECTORS + 8, segs: [{ gref: 4002, first: 0, last: 7 }] },
        delayUs: i % 3 === 0 ? 0 : i % 3 === 1 ? 20 : 200,
      });
    }
    const got = await bad.rawRewrite(cases);
    expect(got.map((r) => r.id).sort((a, b) => a - b)).to.deep.equal(cases.map((c) => c.first.id));
    const outcomes = { published: 0, rewritten: 0 };
    for (const r of got) {
      expect(r.op).to.equal(BLKIF_OP_WRITE);
      expect([BLKIF_RSP_OKAY, BLKIF_RSP_ERROR]).to.include(r.status);
      outcomes[r.status === BLKIF_RSP_OKAY ? 'published' : 'rewritten']++;
    }
    console.log(`      blkback acted on the published request ${outcomes.published} times, on a rewritten one ${outcomes.rewritten} times`);
    const after = await stats(badId);
    // Each slot was read once: the rewrite never became a second request.
    expect(after.ring_requests - before.ring_requests).to.equal(cases.length);
    expect(after.error_responses - before.error_responses).to.equal(outcomes.rewritten);
    expect(after.protocol_errors).to.equal(0);
  });

  it('disconnects the frontend whose req_prod leaps ahead: an error node and Closing', async () => {
    const g = await stats(goodId);
    goodReqsAtLeap = g.rd_req + g.wr_req;
    await bad.rawLeap(1000);
    const be = `/local/domain/0/backend/vbd/${badId}/${XVDA}`;
    await until('the backend Closing or Closed', async () => {
      const s = await m.dom0!.xsRead(`${be}/state`);
      return s.ok && (s.value === String(XenbusState.Closing) || s.value === String(XenbusState.Closed));
    });
    const e = await m.dom0!.xsRead(`/local/domain/0/error/backend/vbd/${badId}/${XVDA}/error`);
    expect(e.ok && e.value).to.match(/^req-prod-overflow: frontend provided bogus ring requests/);
    await until('the hostile frontend Closed', async () => (await bad.rawState()).state === XenbusState.Closed);
    expect((await bad.rawState()).teardowns).to.deep.equal(['close']);
    expect((await stats(badId)).protocol_errors).to.be.at.least(1);
  });

  it('lets the good guest finish its verified job untouched, and keeps serving it', async () => {
    const j = job0(unwrap(await goodJob));
    expect(j.error, j.xensim.error_message ?? '').to.equal(0);
    expect(j.xensim.failed_ios).to.equal(0);
    expect(j.xensim.verify?.mismatches).to.equal(0);
    expect(j.xensim.verify?.verified_sectors).to.be.greaterThan(0);
    const front = (await good.blkCounters(XVDA)) ?? {};
    expect((front.io_completed ?? 0) - (goodFront0.io_completed ?? 0)).to.equal(j.read.total_ios + j.write.total_ios);
    expect(front.io_errors ?? 0).to.equal(0);
    const c = await stats(goodId);
    expect(c.error_responses).to.equal(0);
    expect(c.protocol_errors).to.equal(0);
    // Its job was still running when the hostile guest was thrown out.
    expect(c.rd_req + c.wr_req).to.be.greaterThan(goodReqsAtLeap);
    // After all that, dom0 still serves it: a verified read of everything it wrote.
    const back = job0(unwrap(await good.runFio(XVDA, [{ name: 'read-back', rw: 'read', bs: 65536, iodepth: 8, size: 8 << 20, verify: true }])));
    expect(back.error).to.equal(0);
    expect(back.xensim.verify?.mismatches).to.equal(0);
    expect(back.xensim.verify?.verified_sectors).to.be.greaterThan(0);
    const rec = await m.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });
});
