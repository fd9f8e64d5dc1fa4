/**
 * blkfront against a backend the test controls (test/helpers/blk-raw-back.ts):
 * what it puts on the wire (segments, grant permissions, indirect pages) and
 * how it treats responses it must not trust — unknown ids, duplicates, stale
 * generations, wrong operations, an impossible rsp_prod. An I/O completes
 * exactly once, from a response that names it.
 */
import { expect } from 'chai';
import {
  BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
} from '../../../shared/abi/blkif.ts';
import { GNTST } from '../../../shared/abi/grant.ts';
import type { BlkifRequestDirect, BlkifRequestIndirect } from '../../../shared/ring/codec.ts';
import { asDomId } from '../../../shared/types.ts';
import { XenbusState } from '../../../shared/xenbus/state.ts';
import { BlkWorld, type Blkfront } from '../../helpers/blk-world.ts';
import { RawBack } from '../../helpers/blk-raw-back.ts';

const XVDA = 51712;

describe('blkfront against a backend it must not trust (one thread)', function () {
  this.timeout(30000);
  let w: BlkWorld;
  afterEach(async () => { await w?.close(); });

  async function setup(features: Record<string, string> = {}, opts = {}): Promise<{ raw: RawBack; dev: Blkfront }> {
    w = await BlkWorld.create({ noBackend: true });
    const g = await w.addGuest(1, { maxQueues: 1, ...opts });
    await w.createDisk(1, XVDA);
    const raw = new RawBack(w.dom0, w.xs.dom0, { type: 'vbd', frontDom: asDomId(1), backDom: asDomId(0), devid: XVDA }, { sectors: '8192', ...features });
    await raw.be.start();
    const dev = await w.until(() => g.front.devices.get(XVDA), 'blkfront');
    await w.within(dev.whenConnected(), 'connected');
    await w.until(() => raw.be.state === XenbusState.Connected || undefined, 'raw backend connected');
    return { raw, dev };
  }

  async function requests(raw: RawBack, n: number) {
    const got: ReturnType<RawBack['requests']> = [];
    await w.until(() => { got.push(...raw.requests()); return got.length >= n || undefined; }, `${n} request(s)`);
    return got;
  }

  it('grants a write\'s pages read-only and a read\'s writable, one 4 KiB segment each, data copied both ways', async () => {
    const { raw, dev } = await setup();
    const data = new Uint8Array(8192).map((_, i) => (i * 7) & 0xff);
    const wp = dev.write(16, data);
    const [wr] = await requests(raw, 1) as BlkifRequestDirect[];
    expect(wr!.operation).to.equal(BLKIF_OP_WRITE);
    expect(wr!.sectorNumber).to.equal(16);
    expect(wr!.seg.map((s) => [s.firstSect, s.lastSect])).to.deep.equal([[0, 7], [0, 7]]);
    const page0 = raw.readGrant(1, wr!.seg[0]!.gref) as Uint8Array;
    expect(Buffer.compare(page0, data.subarray(0, 4096))).to.equal(0);
    expect(raw.writeGrant(1, wr!.seg[0]!.gref, new Uint8Array(4096))).to.equal(GNTST.permission_denied);
    raw.respond(wr!.id, BLKIF_OP_WRITE, BLKIF_RSP_OKAY);
    expect(await w.within(wp, 'write')).to.equal('ok');
    const into = new Uint8Array(1024);
    const rp = dev.read(100, into);
    const [rd] = await requests(raw, 1) as BlkifRequestDirect[];
    expect(rd!.operation).to.equal(BLKIF_OP_READ);
    expect(rd!.seg.map((s) => [s.firstSect, s.lastSect])).to.deep.equal([[0, 1]]);
    expect(raw.writeGrant(1, rd!.seg[0]!.gref, new Uint8Array(4096).fill(0xab))).to.equal(GNTST.okay);
    raw.respond(rd!.id, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    expect(await w.within(rp, 'read')).to.equal('ok');
    expect(into.every((x) => x === 0xab)).to.equal(true);
    // The grants were revoked once answered (not persistent: the backend did not offer it).
    expect(raw.readGrant(1, rd!.seg[0]!.gref)).to.equal(GNTST.permission_denied);
  });

  it('ignores responses for unknown ids, duplicates and stale generations; completes each I/O once', async () => {
    // A response can only come in a slot a request freed (the ring itself refuses more), so the
    // bogus backend spends the slots of four requests on one good answer and three lies.
    const { raw, dev } = await setup();
    const settled = [0, 0, 0, 0, 0, 0];
    const ps = [0, 1, 2, 3].map((i) => dev.read(i * 8, new Uint8Array(4096)).then((s) => { settled[i]!++; return s; }));
    const qs = await requests(raw, 4);
    const q0 = qs[0]!.id;
    const lo = Number(q0 & 0xffffffffn);
    const hi = Number(q0 >> 32n);
    const inFlight = new Set(qs.map((q) => Number(q.id & 0xffffffffn)));
    let free = 0;
    while (inFlight.has(free)) free++;
    raw.respond(BigInt(lo) | (BigInt(hi + 7) << 32n), BLKIF_OP_READ, BLKIF_RSP_OKAY); // q0's slot, wrong generation
    raw.respond(BigInt(free) | (BigInt(hi) << 32n), BLKIF_OP_READ, BLKIF_RSP_OKAY); // a slot not in flight
    raw.respond(0xdeadbeefn, BLKIF_OP_READ, BLKIF_RSP_OKAY); // garbage
    raw.respond(q0, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    expect(await w.within(ps[0]!, 'read 0')).to.equal('ok');
    expect(dev.counters().bad_responses).to.equal(3);
    // One more request, one more slot: the backend answers q0 again.
    const p4 = dev.read(64, new Uint8Array(4096)).then((s) => { settled[4]!++; return s; });
    const [q4] = await requests(raw, 1);
    raw.respond(q0, BLKIF_OP_READ, BLKIF_RSP_ERROR);
    await w.until(() => dev.counters().bad_responses === 4 || undefined, 'the duplicate counted');
    // And q4's slot reused q0's with a new generation: q0's id does not complete it either.
    expect(Number(q4!.id & 0xffffffffn)).to.equal(lo);
    expect(q4!.id).to.not.equal(q0);
    for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
    expect(settled).to.deep.equal([1, 0, 0, 0, 0, 0]);
    expect(dev.counters().io_completed).to.equal(1);
    expect(dev.backlog).to.equal(4);
    void p4;
  });

  it('fails an I/O whose response carries another operation, and counts it', async () => {
    const { raw, dev } = await setup();
    const p = dev.write(0, new Uint8Array(512));
    const [q] = await requests(raw, 1);
    raw.respond(q!.id, BLKIF_OP_READ, BLKIF_RSP_OKAY);
    expect(await w.within(p, 'write')).to.equal('error');
    expect(dev.counters().bad_response_ops).to.equal(1);
  });

  it('stops reading a ring whose rsp_prod runs past its requests, without throwing', async () => {
    const { raw, dev } = await setup();
    let settled = false;
    void dev.read(0, new Uint8Array(4096)).then(() => { settled = true; });
    await requests(raw, 1);
    raw.lieRspProd(500);
    await w.until(() => dev.queues[0]!.broken || undefined, 'ring marked broken');
    expect(settled).to.equal(false);
    expect(dev.backlog).to.equal(1); // kept for a resume
  });

  it('describes a 1 MiB write with one indirect request whose descriptor page is read-only', async () => {
    const { raw, dev } = await setup({ 'feature-max-indirect-segments': '256' });
    expect(dev.segsPerRequest).to.equal(256);
    const data = new Uint8Array(1 << 20).map((_, i) => (i >> 12) & 0xff);
    const p = dev.write(2048, data);
    const [q] = await requests(raw, 1) as BlkifRequestIndirect[];
    expect(q!.operation).to.equal(BLKIF_OP_INDIRECT);
    expect(q!.indirectOp).to.equal(BLKIF_OP_WRITE);
    expect(q!.nrSegments).to.equal(256);
    const ind = q!.indirectGrefs[0]!;
    expect(raw.writeGrant(1, ind, new Uint8Array(4096))).to.equal(GNTST.permission_denied);
    const descs = Buffer.from(raw.readGrant(1, ind) as Uint8Array);
    for (const i of [0, 100, 255]) {
      expect([descs.readUInt8(i * 8 + 4), descs.readUInt8(i * 8 + 5)]).to.deep.equal([0, 7]);
      const page = raw.readGrant(1, descs.readUInt32LE(i * 8)) as Uint8Array;
      expect(page.every((x) => x === (i & 0xff)), `segment ${i}'s page`).to.equal(true);
    }
    raw.respond(q!.id, BLKIF_OP_WRITE, BLKIF_RSP_OKAY); // Linux blkback answers with indirect_op
    expect(await w.within(p, 'write')).to.equal('ok');
  });
});
