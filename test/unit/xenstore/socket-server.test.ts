import { expect } from 'chai';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asDomId } from '../../../shared/types.ts';
import { XS } from '../../../shared/abi/xenstore.ts';
import { XenStored } from '../../../dom0/xenstore/xenstored.ts';
import { XsSocketServer } from '../../../dom0/xenstore/socket-server.ts';
import { XsWireDecoder, encodeXsMsg, latin1, payloadOf, type XsMsg } from '../../../dom0/xenstore/wire.ts';

/** A minimal socket client: send messages, collect replies and events. */
class SockClient {
  readonly got: XsMsg[] = [];
  closed = false;
  private readonly dec = new XsWireDecoder({ acceptType: () => true });
  private constructor(readonly sock: Socket) {
    sock.on('data', (b: Buffer) => {
      const r = this.dec.push(b);
      if (r.ok) this.got.push(...r.value);
    });
    sock.on('close', () => { this.closed = true; });
    sock.on('error', () => undefined);
  }
  static open(path: string): Promise<SockClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new SockClient(s)));
      s.once('error', reject);
    });
  }
  send(m: XsMsg): void { this.sock.write(encodeXsMsg(m)); }
  async until(pred: () => boolean, what: string): Promise<void> {
    for (let i = 0; i < 400; i++) {
      if (pred()) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`timed out waiting for ${what}`);
  }
}

describe('xenstored socket server', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'xs-sock-')); });
  afterEach(() => { rmSync(dir, { recursive: true, force: true }); });

  it('cuts off only the client that breaks the framing', async () => {
    const d = new XenStored();
    const srv = await XsSocketServer.listen(d, join(dir, 'sock'));
    if (!srv.ok) throw new Error(JSON.stringify(srv.error));
    try {
      const good = await SockClient.open(srv.value.path);
      const bad = await SockClient.open(srv.value.path);
      good.send({ type: XS.WATCH, reqId: 1, txId: 0, payload: payloadOf('/w', 'tok') });
      await good.until(() => good.got.length === 2, 'watch reply and event');
      const hdr = Buffer.alloc(16);
      hdr.writeUInt32LE(XS.WRITE, 0);
      hdr.writeUInt32LE(4097, 12);
      bad.sock.write(hdr);
      await bad.until(() => bad.closed, 'the bad client to be closed');
      expect(srv.value.stats.protocolErrors).to.equal(1);
      good.send({ type: XS.WRITE, reqId: 2, txId: 0, payload: new Uint8Array(Buffer.from('/w/x\0v')) });
      await good.until(() => good.got.length === 4, 'write reply and event');
      expect(good.got.map((m) => [m.type, m.reqId, latin1(m.payload)])).to.deep.equal([
        [XS.WATCH, 1, 'OK\0'],
        [XS.WATCH_EVENT, 0, '/w\0tok\0'],
        [XS.WRITE, 2, 'OK\0'],
        [XS.WATCH_EVENT, 0, '/w/x\0tok\0'],
      ]);
      const unknown = await SockClient.open(srv.value.path);
      const h2 = Buffer.alloc(16);
      h2.writeUInt32LE(0x1234, 0);
      unknown.sock.write(h2);
      await unknown.until(() => unknown.closed, 'the unknown-type client to be closed');
      expect(good.closed).to.equal(false);
      good.sock.destroy();
      await good.until(() => d.connections.size === 0, 'connections to go');
      expect(d.watchCount).to.equal(0);
    } finally {
      await srv.value.close();
    }
  });

  it('serves requests split across many small writes', async () => {
    const d = new XenStored();
    const srv = await XsSocketServer.listen(d, join(dir, 'sock'));
    if (!srv.ok) throw new Error(JSON.stringify(srv.error));
    try {
      const c = await SockClient.open(srv.value.path);
      const bytes = encodeXsMsg({ type: XS.WRITE, reqId: 9, txId: 0, payload: new Uint8Array(Buffer.from('/split\0value')) });
      for (const b of bytes) {
        c.sock.write(Buffer.from([b]));
        await new Promise((r) => setImmediate(r));
      }
      await c.until(() => c.got.length === 1, 'the reply');
      expect(latin1(c.got[0]?.payload ?? new Uint8Array())).to.equal('OK\0');
      c.sock.destroy();
    } finally {
      await srv.value.close();
    }
  });

  it('keeps a client that never reads from growing the daemon without bound', async () => {
    const d = new XenStored({ quota: { queuedEvents: 100 } });
    const srv = await XsSocketServer.listen(d, join(dir, 'sock'));
    if (!srv.ok) throw new Error(JSON.stringify(srv.error));
    try {
      const lazy = await SockClient.open(srv.value.path);
      lazy.sock.pause(); // reads nothing from now on
      lazy.send({ type: XS.WATCH, reqId: 1, txId: 0, payload: payloadOf('/f', 't') });
      await lazy.until(() => d.watchCount === 1, 'the watch');
      const writer = d.connect(asDomId(0));
      for (let i = 0; i < 30000; i++) {
        d.process(writer, { type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(Buffer.from(`/f/${i % 50}\0v`)) });
        writer.clearOutbox();
        if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
      }
      const conn = [...d.connections].find((c) => c !== writer);
      expect(conn?.queuedEvents).to.be.at.most(100);
      expect(d.stats.eventsDropped).to.be.above(0);
      const other = await SockClient.open(srv.value.path);
      other.send({ type: XS.READ, reqId: 5, txId: 0, payload: payloadOf('/f/1') });
      await other.until(() => other.got.length === 1, 'a reply to another client');
      expect(latin1(other.got[0]?.payload ?? new Uint8Array())).to.equal('v');
      lazy.sock.destroy();
      other.sock.destroy();
    } finally {
      await srv.value.close();
    }
  });

  it('refuses socket paths of 108 bytes or more, and files that are not sockets', async () => {
    const d = new XenStored();
    const long = await XsSocketServer.listen(d, `/tmp/${'x'.repeat(110)}`);
    expect(!long.ok && long.error.kind).to.equal('path-too-long');
    writeFileSync(join(dir, 'plain'), 'not a socket');
    const taken = await XsSocketServer.listen(d, join(dir, 'plain'));
    expect(!taken.ok && taken.error.kind).to.equal('path-in-use');
    // A stale socket left behind is replaced.
    const first = await XsSocketServer.listen(d, join(dir, 'sock'));
    if (!first.ok) throw new Error('listen');
    const second = await XsSocketServer.listen(new XenStored(), join(dir, 'sock'));
    expect(second.ok).to.equal(true);
    if (second.ok) await second.value.close();
    await first.value.close();
  });
});
