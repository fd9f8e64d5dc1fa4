import { expect } from 'chai';
import { asDomId, type DomId, type MachineAddr } from '../../../shared/types.ts';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { machineRegion, type MemRegion } from '../../../shared/memory/region.ts';
import {
  XS, XENSTORE_CONNECTED, XENSTORE_DOMAIN_INTERFACE as XSIF, XENSTORE_ERROR_NONE, XENSTORE_ERROR_PROTO,
  XENSTORE_ERROR_RINGIDX, XENSTORE_SERVER_FEATURE_ERROR, XENSTORE_SERVER_FEATURE_RECONNECTION,
} from '../../../shared/abi/xenstore.ts';
import { XenStored, type XsConnection } from '../../../dom0/xenstore/xenstored.ts';
import { XsRingBackend } from '../../../dom0/xenstore/ring-transport.ts';
import { XsWireDecoder, encodeXsMsg, latin1, payloadOf, type XsMsg } from '../../../dom0/xenstore/wire.ts';
import { XsClient, type XsResult } from '../../../domU/kernel/xs-client.ts';

const mem = MachineMemory.create({ memBytes: 4 << 20, pageSize: 4096 });
let nextFrame = 16;
function freshPage(): MemRegion {
  const page = machineRegion(mem, (nextFrame++ * 4096) as MachineAddr, 1);
  page.fill(0, 4096, 0);
  return page;
}

function unwrap<T>(r: XsResult<T>): T {
  if (!r.ok) throw new Error(`xenstore request failed: ${JSON.stringify(r.error)}`);
  return r.value;
}

interface Guest {
  readonly domid: DomId;
  readonly page: MemRegion;
  readonly be: XsRingBackend;
  readonly fe: XsClient;
}

/** A guest wired to the daemon through a ring page; events are delivered as microtasks (or synchronously). */
function attach(d: XenStored, dom0: XsConnection, id: number, opts: { sync?: boolean; page?: MemRegion } = {}): Guest {
  const domid = prepareDomain(d, dom0, id);
  const page = opts.page ?? freshPage();
  const holder: { be?: XsRingBackend; fe?: XsClient } = {};
  const run = (f: () => void) => (opts.sync ? f() : queueMicrotask(f));
  holder.be = new XsRingBackend(d, domid, page, () => run(() => holder.fe?.poll()));
  holder.fe = new XsClient(page, () => run(() => holder.be?.poll()));
  return { domid, page, be: holder.be, fe: holder.fe };
}

/** What the toolstack does before a guest talks to xenstored: introduce it and give it its home. */
function prepareDomain(d: XenStored, dom0: XsConnection, id: number): DomId {
  const domid = asDomId(id);
  d.introduceDomain(domid);
  d.process(dom0, { type: XS.MKDIR, reqId: 1, txId: 0, payload: payloadOf(`/local/domain/${id}`) });
  d.process(dom0, { type: XS.SET_PERMS, reqId: 1, txId: 0, payload: payloadOf(`/local/domain/${id}`, `n${id}`, 'r0') });
  dom0.clearOutbox();
  return domid;
}

function setup(): { d: XenStored; dom0: XsConnection } {
  const d = new XenStored();
  return { d, dom0: d.connect(asDomId(0)) };
}

/** A raw, possibly hostile guest: writes bytes into req and reads rsp by hand. */
class RawGuest {
  private prod: number;
  private cons: number;
  private readonly dec = new XsWireDecoder({ acceptType: () => true });
  constructor(private readonly page: MemRegion) {
    this.prod = page.atomicLoadU32(XSIF.REQ_PROD);
    this.cons = page.atomicLoadU32(XSIF.RSP_CONS);
  }
  send(bytes: Uint8Array): void {
    for (const b of bytes) {
      this.page.setU8(XSIF.REQ + (this.prod & 1023), b);
      this.prod = (this.prod + 1) >>> 0;
    }
    this.page.atomicStoreU32(XSIF.REQ_PROD, this.prod);
  }
  receive(): XsMsg[] {
    const prod = this.page.atomicLoadU32(XSIF.RSP_PROD);
    const bytes: number[] = [];
    while (this.cons !== prod) {
      bytes.push(this.page.getU8(XSIF.RSP + (this.cons & 1023)));
      this.cons = (this.cons + 1) >>> 0;
    }
    this.page.atomicStoreU32(XSIF.RSP_CONS, this.cons);
    const r = this.dec.push(new Uint8Array(bytes));
    if (!r.ok) throw new Error('bad reply stream');
    return r.value;
  }
}

describe('xenstore over a guest ring page', () => {
  it('advertises reconnection and error reporting before using the ring', () => {
    const { d, dom0 } = setup();
    const g = attach(d, dom0, 1);
    expect(g.page.atomicLoadU32(XSIF.SERVER_FEATURES)).to.equal(XENSTORE_SERVER_FEATURE_RECONNECTION | XENSTORE_SERVER_FEATURE_ERROR);
  });

  it('serves reads, writes, directories, permissions and removals to the guest client', async () => {
    const { d, dom0 } = setup();
    const { fe } = attach(d, dom0, 1);
    unwrap(await fe.write('device/vbd/51712/state', '1'));
    unwrap(await fe.write('/local/domain/1/bin', new Uint8Array([0, 1, 2])));
    expect(unwrap(await fe.readString('device/vbd/51712/state'))).to.equal('1');
    expect([...unwrap(await fe.read('bin'))]).to.deep.equal([0, 1, 2]);
    expect(unwrap(await fe.directory('/local/domain/1'))).to.deep.equal(['device', 'bin']);
    unwrap(await fe.mkdir('data/empty'));
    expect(unwrap(await fe.getPerms('data/empty'))).to.deep.equal(['n1', 'r0']);
    unwrap(await fe.setPerms('data/empty', ['n1', 'r0', 'r5']));
    expect(unwrap(await fe.getPerms('data/empty'))).to.deep.equal(['n1', 'r0', 'r5']);
    unwrap(await fe.rm('data'));
    const gone = await fe.read('data/empty');
    expect(!gone.ok && gone.error).to.deep.include({ kind: 'xs-error', errno: 'ENOENT' });
    expect(unwrap(await fe.getDomainPath(asDomId(1)))).to.equal('/local/domain/1');
    expect(fe.stats.unmatchedReplies).to.equal(0);
  });

  it('matches concurrent replies by req_id', async () => {
    const { d, dom0 } = setup();
    const { fe } = attach(d, dom0, 1);
    await Promise.all(Array.from({ length: 40 }, (_, i) => fe.write(`k${i}`, `v${i}`)));
    const values = await Promise.all(Array.from({ length: 40 }, (_, i) => fe.readString(`k${i}`)));
    expect(values.map(unwrap)).to.deep.equal(Array.from({ length: 40 }, (_, i) => `v${i}`));
  });

  it('carries messages across the ring wrap with indices starting just below 2^32', async () => {
    const { d, dom0 } = setup();
    const page = freshPage();
    for (const off of [XSIF.REQ_CONS, XSIF.REQ_PROD, XSIF.RSP_CONS, XSIF.RSP_PROD]) page.atomicStoreU32(off, 0xffff_fc00);
    const { fe } = attach(d, dom0, 1, { page });
    for (let i = 0; i < 60; i++) {
      const v = String.fromCharCode(65 + (i % 26)).repeat(700 + i);
      unwrap(await fe.write(`wrap/${i}`, v));
      expect(unwrap(await fe.readString(`wrap/${i}`))).to.equal(v);
    }
    // Both queues went round many times and past 2^32.
    expect(page.atomicLoadU32(XSIF.REQ_PROD)).to.be.below(0xffff_fc00);
    expect(page.atomicLoadU32(XSIF.RSP_PROD)).to.be.below(0xffff_fc00);
  });

  it('hands over a reply of four ring sizes as the guest drains it', async () => {
    const { d, dom0 } = setup();
    const { fe, be } = attach(d, dom0, 1);
    const big = 'z'.repeat(4096 - '/local/domain/1/huge'.length - 1);
    d.process(dom0, { type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(Buffer.from(`/local/domain/1/huge\0${big}`)) });
    expect(unwrap(await fe.readString('huge'))).to.equal(big);
    expect(be.stats.bytesOut).to.be.above(4 * 1000);
  });

  it('reassembles a request the guest writes one byte at a time', () => {
    const { d, dom0 } = setup();
    const page = freshPage();
    prepareDomain(d, dom0, 1);
    const raw = new RawGuest(page);
    const backend = new XsRingBackend(d, asDomId(1), page, () => undefined);
    const req = encodeXsMsg({ type: XS.WRITE, reqId: 77, txId: 0, payload: new Uint8Array(Buffer.from('slow\0bytes')) });
    for (let i = 0; i < req.length; i++) {
      raw.send(req.subarray(i, i + 1));
      backend.poll();
      if (i < req.length - 1) expect(page.atomicLoadU32(XSIF.RSP_PROD)).to.equal(0);
    }
    const replies = raw.receive();
    expect(replies.map((m) => [m.type, m.reqId, latin1(m.payload)])).to.deep.equal([[XS.WRITE, 77, 'OK\0']]);
    const check = d.handle(dom0, { type: XS.READ, reqId: 1, txId: 0, payload: payloadOf('/local/domain/1/slow') });
    expect(latin1(check.reply.payload)).to.equal('bytes');
  });

  it('delivers watch events caused by other domains, starting with the initial one', async () => {
    const { d, dom0 } = setup();
    const { fe } = attach(d, dom0, 1);
    const seen: string[] = [];
    unwrap(await fe.watch('backend-state', 'be', (p) => seen.push(p)));
    unwrap(await fe.watch('/local/domain/1/abs', 'abs', (p) => seen.push(p)));
    d.process(dom0, { type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(Buffer.from('/local/domain/1/backend-state\x004')) });
    d.process(dom0, { type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(Buffer.from('/local/domain/1/abs/x\x001')) });
    await new Promise((r) => setImmediate(r));
    expect(seen).to.deep.equal(['backend-state', '/local/domain/1/abs', 'backend-state', '/local/domain/1/abs/x']);
    unwrap(await fe.unwatch('backend-state', 'be'));
    d.process(dom0, { type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(Buffer.from('/local/domain/1/backend-state\x005')) });
    await new Promise((r) => setImmediate(r));
    expect(seen.length).to.equal(4);
    const dup = await fe.watch('x', 'abs', () => undefined);
    expect(!dup.ok && dup.error.kind).to.equal('duplicate-token');
  });

  it('retries a transaction whose commit answers EAGAIN', async () => {
    const { d, dom0 } = setup();
    const { fe } = attach(d, dom0, 1);
    unwrap(await fe.write('counter', '1'));
    let attempts = 0;
    const r = await fe.transaction(async (tx) => {
      attempts++;
      const v = Number(unwrap(await fe.readString('counter', tx)));
      if (attempts === 1) {
        // Someone else bumps the counter between our read and our commit.
        d.process(dom0, { type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(Buffer.from('/local/domain/1/counter\x0010')) });
      }
      return fe.write('counter', String(v + 1), tx);
    });
    unwrap(r);
    expect(attempts).to.equal(2);
    expect(unwrap(await fe.readString('counter'))).to.equal('11');
  });

  it('keeps one guest out of another guest\'s nodes over their rings', async () => {
    const { d, dom0 } = setup();
    const a = attach(d, dom0, 1);
    const b = attach(d, dom0, 2);
    unwrap(await b.fe.write('secret', 'x'));
    const r = await a.fe.read('/local/domain/2/secret');
    expect(!r.ok && r.error).to.deep.include({ errno: 'EACCES' });
    const w = await a.fe.write('/local/domain/2/secret', 'mine');
    expect(!w.ok && w.error).to.deep.include({ errno: 'EACCES' });
    expect(unwrap(await b.fe.readString('secret'))).to.equal('x');
  });

  it('runs with synchronous, re-entrant notifications (single-threaded scheduler)', async () => {
    const { d, dom0 } = setup();
    const { fe } = attach(d, dom0, 1, { sync: true });
    const seen: string[] = [];
    unwrap(await fe.watch('w', 't', (p) => seen.push(p)));
    for (let i = 0; i < 20; i++) unwrap(await fe.write(`w/${i}`, 'x'.repeat(300)));
    expect(seen.length).to.equal(21);
    expect(unwrap(await fe.directory('w')).length).to.equal(20);
  });

  it('stops serving a guest whose req_prod leaps more than a ring ahead, without spinning, and serves it again after reconnection', async () => {
    const { d, dom0 } = setup();
    const bad = attach(d, dom0, 1);
    const good = attach(d, dom0, 2);
    unwrap(await bad.fe.watch('w', 'tok', () => undefined));
    const watchesBefore = d.watchCount;
    const cons = bad.page.atomicLoadU32(XSIF.REQ_CONS);
    bad.page.atomicStoreU32(XSIF.REQ_PROD, (cons + 5000) >>> 0);
    bad.be.poll();
    expect(bad.be.state).to.equal('failed');
    expect(bad.page.atomicLoadU32(XSIF.ERROR)).to.equal(XENSTORE_ERROR_RINGIDX);
    expect(d.watchCount).to.equal(watchesBefore - 1);
    expect(bad.be.connection.closed).to.equal(true);
    for (let i = 0; i < 1000; i++) bad.be.poll(); // idempotent, returns at once
    const r = await bad.fe.write('x', '1');
    expect(!r.ok && r.error.kind).to.equal('disconnected');
    // Other guests are not affected.
    unwrap(await good.fe.write('still', 'served'));
    // The guest asks for a fresh ring and is served again.
    unwrap(await bad.fe.reconnect());
    expect(bad.be.state).to.equal('connected');
    expect(bad.page.atomicLoadU32(XSIF.ERROR)).to.equal(XENSTORE_ERROR_NONE);
    expect(bad.page.atomicLoadU32(XSIF.CONNECTION)).to.equal(XENSTORE_CONNECTED);
    unwrap(await bad.fe.write('after', 'reconnect'));
    expect(unwrap(await bad.fe.readString('after'))).to.equal('reconnect');
  });

  it('stops serving a guest that moves rsp_cons past rsp_prod', async () => {
    const { d, dom0 } = setup();
    const g = attach(d, dom0, 1);
    unwrap(await g.fe.write('a', '1'));
    g.page.atomicStoreU32(XSIF.RSP_CONS, (g.page.atomicLoadU32(XSIF.RSP_PROD) + 2000) >>> 0);
    d.process(dom0, { type: XS.WRITE, reqId: 1, txId: 0, payload: payloadOf('/x') });
    d.process(g.be.connection, { type: XS.READ, reqId: 2, txId: 0, payload: payloadOf('a') });
    expect(g.be.state).to.equal('failed');
    expect(g.page.atomicLoadU32(XSIF.ERROR)).to.equal(XENSTORE_ERROR_RINGIDX);
    const after = d.handle(dom0, { type: XS.READ, reqId: 3, txId: 0, payload: payloadOf('/local/domain/1/a') });
    expect(latin1(after.reply.payload)).to.equal('1');
    unwrap(await g.fe.reconnect());
    expect(unwrap(await g.fe.readString('a'))).to.equal('1');
  });

  it('stops serving a guest that sends a header with len > 4096 (protocol error) and no one else', async () => {
    const { d, dom0 } = setup();
    const page = freshPage();
    const g = attach(d, dom0, 1, { page });
    const other = attach(d, dom0, 2);
    const raw = new RawGuest(page);
    const hdr = Buffer.alloc(16);
    hdr.writeUInt32LE(XS.WRITE, 0);
    hdr.writeUInt32LE(5000, 12);
    raw.send(new Uint8Array(hdr));
    g.be.poll();
    expect(g.be.state).to.equal('failed');
    expect(page.atomicLoadU32(XSIF.ERROR)).to.equal(XENSTORE_ERROR_PROTO);
    unwrap(await other.fe.write('ok', 'yes'));
    unwrap(await g.fe.reconnect());
    unwrap(await g.fe.write('after', 'reconnect'));
  });

  it('stops reading requests from a guest that never reads its replies, and resumes when it does', () => {
    const { d, dom0 } = setup();
    const page = freshPage();
    prepareDomain(d, dom0, 1);
    const backend = new XsRingBackend(d, asDomId(1), page, () => undefined);
    const raw = new RawGuest(page);
    const big = 'q'.repeat(1500);
    d.process(dom0, { type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(Buffer.from(`/local/domain/1/big\0${big}`)) });
    const read = encodeXsMsg({ type: XS.READ, reqId: 9, txId: 0, payload: payloadOf('big') });
    let sent = 0;
    for (let round = 0; round < 200; round++) {
      // Fill the request queue as far as it goes, never touching rsp_cons.
      const used = (page.atomicLoadU32(XSIF.REQ_PROD) - page.atomicLoadU32(XSIF.REQ_CONS)) >>> 0;
      if (1024 - used >= read.length) {
        raw.send(read);
        sent++;
      }
      backend.poll();
    }
    // The backend stopped consuming once a few replies were stuck: bounded memory, no spin.
    expect(backend.connection.pending).to.be.at.most(5);
    expect(backend.stats.requests).to.be.below(sent);
    let replies = 0;
    for (let round = 0; round < 2000 && replies < sent; round++) {
      replies += raw.receive().length;
      backend.poll();
    }
    expect(replies).to.equal(sent);
    expect(backend.state).to.equal('connected');
  });

  it('fails every pending request on the client when xenstored publishes a bogus rsp_prod', async () => {
    const { d, dom0 } = setup();
    const page = freshPage();
    prepareDomain(d, dom0, 1);
    const fe = new XsClient(page, () => undefined); // nobody serves: requests stay pending
    const p1 = fe.read('x');
    const p2 = fe.write('y', '1');
    expect(fe.inFlight).to.equal(2);
    page.atomicStoreU32(XSIF.RSP_PROD, (page.atomicLoadU32(XSIF.RSP_CONS) + 4000) >>> 0);
    fe.poll();
    for (const r of await Promise.all([p1, p2])) expect(!r.ok && r.error.kind).to.equal('disconnected');
    expect(fe.error?.kind).to.equal('disconnected');
  });

  it('stops serving a released domain\'s ring', async () => {
    const { d, dom0 } = setup();
    const g = attach(d, dom0, 1);
    unwrap(await g.fe.write('x', '1'));
    d.releaseDomain(asDomId(1));
    expect(g.be.state).to.equal('closed');
    const seen = g.be.stats.requests;
    g.fe.write('y', '1').catch(() => undefined);
    g.be.poll();
    expect(g.be.stats.requests).to.equal(seen);
  });

  it('refuses requests over the payload limit on the client without sending them', async () => {
    const { d, dom0 } = setup();
    const { fe } = attach(d, dom0, 1);
    const r = await fe.write('big', 'x'.repeat(4096));
    expect(!r.ok && r.error.kind).to.equal('too-big');
    unwrap(await fe.write('small', 'ok'));
  });
});
