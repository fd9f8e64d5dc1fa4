/**
 * A hostile frontend against blkback (XSA-155, XSA-216, XSA-39 shapes):
 * garbage requests, bad grants, sectors past the end, segments past the
 * page, a request rewritten after the backend copied it, and finally
 * req_prod leaping ahead. Each garbage request gets an error status with its
 * id echoed, and the backend keeps serving; the leap disconnects that
 * frontend (Closing + an error node). Meanwhile a well-behaved guest on the
 * same backend runs a verified fio job that must finish untouched.
 */
import { expect } from 'chai';
import {
  BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_RESERVED_1, BLKIF_OP_WRITE, BLKIF_REQUEST_INDIRECT,
  BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY,
} from '../../../shared/abi/blkif.ts';
import { RamDisk, ReadOnlyDisk } from '../../../dom0/devices/disk-store.ts';
import { DiskStoreStorage } from '../../../dom0/blkback/storage.ts';
import { asDomId } from '../../../shared/types.ts';
import { backendPath, errorPath } from '../../../shared/xenbus/paths.ts';
import { XenbusState } from '../../../shared/xenbus/state.ts';
import { BlkWorld, verifiedJob } from '../../helpers/blk-world.ts';
import { RawFront, rawRequestBytes, type RawRequest, type RawResponse } from '../../helpers/blk-raw-front.ts';
import { GatedStorage } from '../../helpers/blk-storage.ts';

const XVDA = 51712;
const SECTORS = 16384;

describe('a hostile frontend against blkback (one thread)', function () {
  this.timeout(30000);
  let w: BlkWorld;
  afterEach(async () => { await w?.close(); });

  async function hostileSetup(): Promise<{ raw: RawFront; gate: GatedStorage }> {
    w = await BlkWorld.create({ backend: { mode: 'map', maxIndirectSegments: 32 } });
    const { k, xsGuest } = await w.addRawGuest(1);
    const gate = new GatedStorage(new DiskStoreStorage(w.dom0.mem, new RamDisk({ sectors: SECTORS })));
    await w.createDisk(1, XVDA, { storage: gate });
    const raw = new RawFront(k, xsGuest.xs, XVDA);
    await raw.fe.start();
    await w.until(() => w.backDevice(1)?.isConnected === true && raw.fe.state === XenbusState.Connected, 'raw frontend connected');
    return { raw, gate };
  }

  async function answer(raw: RawFront, r: RawRequest | Uint8Array): Promise<RawResponse> {
    raw.send(r);
    const got: RawResponse[] = [];
    await w.until(() => { got.push(...raw.responses()); return got.length > 0 || undefined; }, 'a response');
    expect(got).to.have.length(1);
    return got[0] as RawResponse;
  }

  it('answers every kind of garbage with an error and the id echoed, and serves a good request after', async () => {
    const { raw } = await hostileSetup();
    const good = raw.grantPage(false, 0xee);
    const ro = raw.grantPage(true, 0xdd);
    const seg = [{ gref: good.gref, first: 0, last: 7 }];
    const cases: { what: string; req: RawRequest; status: number }[] = [
      { what: 'unknown op (RESERVED_1)', req: { op: BLKIF_OP_RESERVED_1, id: 1, sector: 0, segs: seg }, status: BLKIF_RSP_EOPNOTSUPP },
      { what: 'unknown op 200', req: { op: 200, id: 2, sector: 0, segs: seg }, status: BLKIF_RSP_EOPNOTSUPP },
      { what: 'nr_segments 0', req: { op: BLKIF_OP_READ, id: 3, sector: 0, nrSegments: 0 }, status: BLKIF_RSP_ERROR },
      { what: 'nr_segments 12', req: { op: BLKIF_OP_READ, id: 4, sector: 0, nrSegments: 12, segs: seg }, status: BLKIF_RSP_ERROR },
      { what: 'nr_segments 255', req: { op: BLKIF_OP_WRITE, id: 5, sector: 0, nrSegments: 255, segs: seg }, status: BLKIF_RSP_ERROR },
      { what: 'a gref never granted', req: { op: BLKIF_OP_READ, id: 6, sector: 0, segs: [{ gref: 4000, first: 0, last: 7 }] }, status: BLKIF_RSP_ERROR },
      { what: 'a gref past the table', req: { op: BLKIF_OP_READ, id: 7, sector: 0, segs: [{ gref: 0xfffffff0, first: 0, last: 7 }] }, status: BLKIF_RSP_ERROR },
      { what: 'a read into a read-only grant', req: { op: BLKIF_OP_READ, id: 8, sector: 0, segs: [{ gref: ro.gref, first: 0, last: 7 }] }, status: BLKIF_RSP_ERROR },
      { what: 'the second segment bad', req: { op: BLKIF_OP_READ, id: 9, sector: 0, segs: [{ gref: good.gref, first: 0, last: 3 }, { gref: 4001, first: 0, last: 3 }] }, status: BLKIF_RSP_ERROR },
      { what: 'sectors past the end', req: { op: BLKIF_OP_READ, id: 10, sector: SECTORS - 4, segs: seg }, status: BLKIF_RSP_ERROR },
      { what: 'a sector beyond 2^53', req: { op: BLKIF_OP_WRITE, id: 11, sector: 1n << 60n, segs: seg }, status: BLKIF_RSP_ERROR },
      { what: 'first_sect > last_sect', req: { op: BLKIF_OP_WRITE, id: 12, sector: 0, segs: [{ gref: good.gref, first: 5, last: 2 }] }, status: BLKIF_RSP_ERROR },
      { what: 'last_sect 8 (past the page)', req: { op: BLKIF_OP_WRITE, id: 13, sector: 0, segs: [{ gref: good.gref, first: 0, last: 8 }] }, status: BLKIF_RSP_ERROR },
      { what: 'last_sect 255', req: { op: BLKIF_OP_READ, id: 14, sector: 0, segs: [{ gref: good.gref, first: 7, last: 255 }] }, status: BLKIF_RSP_ERROR },
    ];
    for (const c of cases) {
      const r = await answer(raw, c.req);
      expect(r.status, c.what).to.equal(c.status);
      expect(r.id, `${c.what}: id echoed`).to.equal(c.req.id);
      expect(r.op, `${c.what}: operation echoed`).to.equal(c.req.op);
    }
    // Indirect garbage: a bad indirect_op, zero and too many segments, and a page of bad descriptors.
    const indPage = raw.grantPage(true, 0);
    const indirect = (id: number, indirectOp: number, nr: number, gref: number): Uint8Array => {
      const b = Buffer.alloc(112);
      b.writeUInt8(BLKIF_OP_INDIRECT, 0);
      b.writeUInt8(indirectOp, BLKIF_REQUEST_INDIRECT.indirect_op);
      b.writeUInt16LE(nr, BLKIF_REQUEST_INDIRECT.nr_segments);
      b.writeUInt32LE(id, BLKIF_REQUEST_INDIRECT.id);
      b.writeUInt32LE(gref, BLKIF_REQUEST_INDIRECT.indirect_grefs);
      return new Uint8Array(b.buffer, b.byteOffset, 112);
    };
    const descs = Buffer.alloc(16 * 8);
    for (let i = 0; i < 16; i++) { descs.writeUInt32LE(good.gref, i * 8); descs.writeUInt8(0, i * 8 + 4); descs.writeUInt8(i === 9 ? 9 : 7, i * 8 + 5); }
    raw.k.mem.copyIn(raw.k.gpa(indPage.pfn), new Uint8Array(descs.buffer, descs.byteOffset, descs.length));
    for (const [what, bytes, status, op] of [
      ['indirect_op DISCARD', indirect(20, BLKIF_OP_DISCARD, 4, indPage.gref), BLKIF_RSP_ERROR, BLKIF_OP_DISCARD],
      ['indirect with 0 segments', indirect(21, BLKIF_OP_READ, 0, indPage.gref), BLKIF_RSP_ERROR, BLKIF_OP_READ],
      ['indirect beyond our 32 segments', indirect(22, BLKIF_OP_READ, 33, indPage.gref), BLKIF_RSP_ERROR, BLKIF_OP_READ],
      ['indirect descriptor with last_sect 9', indirect(23, BLKIF_OP_READ, 16, indPage.gref), BLKIF_RSP_ERROR, BLKIF_OP_READ],
      ['indirect page never granted', indirect(24, BLKIF_OP_READ, 4, 3999), BLKIF_RSP_ERROR, BLKIF_OP_READ],
    ] as const) {
      const r = await answer(raw, bytes);
      expect(r.status, what).to.equal(status);
      expect(r.id, `${what}: id`).to.equal(Buffer.from(bytes).readUInt32LE(8));
      expect(r.op, `${what}: op`).to.equal(op);
    }
    // XSA-216: the response slot is fully defined even over a slot full of 0xff.
    const ff = new Uint8Array(112).fill(0xff);
    const r = await answer(raw, ff);
    expect(r.status).to.equal(BLKIF_RSP_EOPNOTSUPP);
    expect([...r.bytes.subarray(0, 8)]).to.deep.equal(new Array(8).fill(0xff)); // the id, echoed
    expect(r.bytes[9]).to.equal(0);
    expect([...r.bytes.subarray(12, 16)]).to.deep.equal([0, 0, 0, 0]);
    // Still serving: a good write then read round-trips.
    expect((await answer(raw, { op: BLKIF_OP_WRITE, id: 100, sector: 64, segs: seg })).status).to.equal(BLKIF_RSP_OKAY);
    const dst = raw.grantPage(false, 0);
    expect((await answer(raw, { op: BLKIF_OP_READ, id: 101, sector: 64, segs: [{ gref: dst.gref, first: 0, last: 7 }] })).status).to.equal(BLKIF_RSP_OKAY);
    expect(raw.pageBytes(dst.pfn).every((x) => x === 0xee)).to.equal(true);
    const c = w.backDevice(1)!.snapshot();
    expect(c.protocol_errors).to.equal(0);
    expect(c.reject_unknown_operation).to.equal(3);
    expect(c.reject_bad_segment_count).to.equal(3);
    expect(c.reject_bad_grant).to.equal(5);
    expect(c.reject_beyond_disk).to.equal(2);
    expect(c.reject_bad_segment).to.equal(4);
    expect(c.reject_bad_indirect_op + c.reject_bad_indirect_count).to.equal(3);
    // Every mapping made for a refused request was undone (XSA-361): only the ring page stays mapped.
    expect(c.grant_maps - c.grant_unmaps).to.equal(1);
    expect(c.grant_map_failures).to.equal(5);
  });

  it('acts on its private copy when the guest rewrites a request after the backend took it', async () => {
    const { raw, gate } = await hostileSetup();
    const src = raw.grantPage(true, 0x5a);
    gate.hold = true;
    const i = raw.send({ op: BLKIF_OP_WRITE, id: 77, sector: 200, segs: [{ gref: src.gref, first: 0, last: 7 }] });
    await w.until(() => gate.heldCount === 1 || undefined, 'the write at the medium');
    // Now rewrite the slot: another op, sector, id and a bogus grant. The backend must not care.
    raw.writeSlot(rawRequestBytes({ op: BLKIF_OP_READ, id: 666, sector: 9999, segs: [{ gref: 4002, first: 0, last: 7 }] }), i);
    gate.hold = false;
    gate.release();
    const got: RawResponse[] = [];
    await w.until(() => { got.push(...raw.responses()); return got.length > 0 || undefined; }, 'response');
    expect(got).to.have.length(1);
    expect(got[0]!.id).to.equal(77);
    expect(got[0]!.op).to.equal(BLKIF_OP_WRITE);
    expect(got[0]!.status).to.equal(BLKIF_RSP_OKAY);
    expect(gate.seen).to.deep.equal([{ op: 'write', sector: 200, nrSectors: 8, nrSegments: 1, fua: false }]);
    const c = w.backDevice(1)!.snapshot();
    expect(c.ring_requests).to.equal(1); // the rewritten slot was never read again
  });

  it('disconnects a frontend whose req_prod leaps ahead, while a good guest finishes its verified job', async () => {
    const { raw } = await hostileSetup();
    const good = await w.addGuest(2);
    const dev = await w.addDisk(good, XVDA);
    const job = verifiedJob(w, dev, { size: 2 << 20, iodepth: 16 }, 2);
    // A few good requests first, then the leap.
    const page = raw.grantPage(false, 1);
    expect((await answer(raw, { op: BLKIF_OP_READ, id: 1, sector: 0, segs: [{ gref: page.gref, first: 0, last: 7 }] })).status).to.equal(BLKIF_RSP_OKAY);
    raw.publish(raw.reqProd + 1000);
    const back = w.backDevice(1)!;
    await w.until(() => back.protocolError !== null || undefined, 'protocol error');
    const id = { type: 'vbd', frontDom: asDomId(1), backDom: asDomId(0), devid: XVDA };
    const be = backendPath(id);
    await w.until(() => raw.fe.state === XenbusState.Closed || undefined, 'the hostile frontend closed');
    const err = await w.xs.dom0.readString(errorPath(0, be));
    expect(err.ok && err.value).to.match(/^req-prod-overflow: frontend provided bogus ring requests/);
    expect(back.snapshot().protocol_errors).to.be.at.least(1);
    expect(back.isConnected).to.equal(false);
    expect(raw.teardowns).to.deep.equal(['close']);
    // The good guest never noticed.
    const r = await job;
    expect(r.mismatches).to.equal(0);
    expect(r.readIos).to.equal(512);
    const gc = w.backDevice(2)!.snapshot();
    expect(gc.error_responses).to.equal(0);
    expect(gc.protocol_errors).to.equal(0);
    expect(dev.counters().io_errors).to.equal(0);
  });

  it('refuses a frontend that asks for the 32-bit ABI: error node and Closing, nothing mapped', async () => {
    w = await BlkWorld.create();
    const { k, xsGuest } = await w.addRawGuest(1);
    await w.createDisk(1, XVDA);
    const raw = new RawFront(k, xsGuest.xs, XVDA, false, 'x86_32-abi');
    await raw.fe.start();
    const be = backendPath({ type: 'vbd', frontDom: asDomId(1), backDom: asDomId(0), devid: XVDA });
    await w.until(() => raw.fe.state === XenbusState.Closed || undefined, 'the frontend closed');
    const e = await w.xs.dom0.readString(errorPath(0, be));
    expect(e.ok && e.value).to.match(/bad-protocol/);
    expect(w.backDevice(1)!.isConnected).to.equal(false);
    expect(w.backDevice(1)!.snapshot().grant_maps).to.equal(0);
  });

  it('refuses writes and discards a guest forges against read-only media', async () => {
    w = await BlkWorld.create();
    const { k, xsGuest } = await w.addRawGuest(1);
    await w.createDisk(1, XVDA, { disk: new ReadOnlyDisk(new RamDisk({ sectors: 2048 })), mode: 'r' });
    const raw = new RawFront(k, xsGuest.xs, XVDA);
    await raw.fe.start();
    await w.until(() => w.backDevice(1)?.isConnected === true && raw.fe.state === XenbusState.Connected, 'connected');
    const src = raw.grantPage(true, 1);
    const wr = await answer(raw, { op: BLKIF_OP_WRITE, id: 5, sector: 0, segs: [{ gref: src.gref, first: 0, last: 7 }] });
    expect(wr.status).to.equal(BLKIF_RSP_ERROR);
    const b = Buffer.alloc(112);
    b.writeUInt8(BLKIF_OP_DISCARD, 0);
    b.writeUInt32LE(6, 8);
    b.writeBigUInt64LE(8n, 24);
    const ds = await answer(raw, new Uint8Array(b.buffer, b.byteOffset, 112));
    expect(ds.status).to.equal(BLKIF_RSP_EOPNOTSUPP); // read-only media offer no discard at all
    expect(w.backDevice(1)!.snapshot().reject_read_only).to.equal(1);
  });
});
