/**
 * XsLocalClient (dom0's in-process XsHandle) against a real XenStored, and the
 * same operations through a guest's ring client, to show both behave as one
 * XsHandle.
 */
import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { XS } from '../../../shared/abi/xenstore.ts';
import { XenStored } from '../../../dom0/xenstore/xenstored.ts';
import { XsLocalClient } from '../../../dom0/xenstore/local-client.ts';
import type { XsHandle } from '../../../shared/xenbus/xs-handle.ts';
import { must, settle, world } from './helpers.ts';

async function exercise(xs: XsHandle, base: string): Promise<unknown[]> {
  const out: unknown[] = [];
  out.push(await xs.write(`${base}/a`, 'one'));
  out.push(await xs.readString(`${base}/a`));
  out.push(await xs.mkdir(`${base}/d`));
  out.push(await xs.directory(base));
  out.push(await xs.getPerms(`${base}/a`));
  out.push(await xs.rm(`${base}/a`));
  out.push(await xs.read(`${base}/a`));
  out.push(await xs.transaction(async (tx) => {
    const w = await xs.write(`${base}/t1`, 'x', tx);
    if (!w.ok) return w;
    return xs.write(`${base}/t2`, 'y', tx);
  }));
  out.push(await xs.readString(`${base}/t2`));
  return out;
}

describe('XsLocalClient', () => {
  it('answers like the ring client does for the same operations', async () => {
    const w = await world();
    const g = await w.guest(1);
    const viaRing = await exercise(g.xs, '/local/domain/1/data/r');
    const viaLocal = await exercise(new XsLocalClient(w.d, 1), '/local/domain/1/data/r2');
    expect(JSON.stringify(viaLocal).replaceAll('/r2', '/r')).to.equal(JSON.stringify(viaRing));
    expect((viaRing[6] as { ok: boolean; error: { errno: string } }).error.errno).to.equal('ENOENT');
  });

  it('checks permissions for an unprivileged domid and none for dom0', async () => {
    const d = new XenStored();
    const dom0 = new XsLocalClient(d, 0);
    const d5 = new XsLocalClient(d, 5);
    must(await dom0.write('/secret', 's'), 'write');
    must(await dom0.setPerms('/secret', ['n0']), 'perms');
    const r = await d5.read('/secret');
    expect(r.ok ? 'ok' : r.error).to.deep.equal({ kind: 'xs-error', errno: 'EACCES', op: 'READ', path: '/secret' });
    expect(must(await dom0.readString('/secret'), 'dom0 read')).to.equal('s');
  });

  it('delivers watch events from a later drain, never inside the writer\'s call', async () => {
    const d = new XenStored();
    const a = new XsLocalClient(d, 0);
    const b = new XsLocalClient(d, 0);
    const seen: string[] = [];
    must(await a.watch('/w', 'tok', (path) => seen.push(path)), 'watch');
    await settle(2);
    expect(seen).to.deep.equal(['/w']); // the initial event
    const p = b.write('/w/x', '1');
    expect(seen).to.deep.equal(['/w']); // not synchronously, inside b's request
    must(await p, 'write');
    await settle(2);
    expect(seen).to.deep.equal(['/w', '/w/x']);
    must(await a.unwatch('/w', 'tok'), 'unwatch');
    must(await b.write('/w/y', '1'), 'write');
    await settle(2);
    expect(seen).to.have.length(2);
  });

  it('redoes a transaction whose commit answers EAGAIN, and gives up after the configured attempts', async () => {
    const d = new XenStored();
    const a = new XsLocalClient(d, 0, { maxTransactionAttempts: 3 });
    const other = new XsLocalClient(d, 0);
    must(await a.write('/c', '0'), 'seed');
    let runs = 0;
    const r = await a.transaction(async (tx) => {
      runs++;
      const v = await a.readString('/c', tx);
      if (!v.ok) return v;
      if (runs === 1) must(await other.write('/c', 'theirs'), 'interfere');
      return a.write('/c', `${v.value}+1`, tx);
    });
    expect(r.ok).to.equal(true);
    expect(runs).to.equal(2);
    expect(a.stats.transactionRetries).to.equal(1);
    expect(must(await a.readString('/c'), 'read')).to.equal('theirs+1');
    runs = 0;
    const never = await a.transaction(async (tx) => {
      runs++;
      const v = await a.readString('/c', tx);
      if (!v.ok) return v;
      must(await other.write('/c', `x${runs}`), 'interfere');
      return a.write('/c', 'mine', tx);
    });
    expect(never.ok ? 'ok' : never.error).to.deep.include({ kind: 'xs-error', errno: 'EAGAIN' });
    expect(runs).to.equal(3);
  });

  it('fails every later request with "disconnected" once xenstored drops its connection', async () => {
    const d = new XenStored();
    d.introduceDomain(asDomId(4));
    const c = new XsLocalClient(d, 4);
    expect((await c.getDomainPath(asDomId(4))).ok).to.equal(true);
    d.releaseDomain(asDomId(4));
    const r = await c.read('/x');
    expect(r.ok ? 'ok' : r.error.kind).to.equal('disconnected');
    expect(c.error?.kind).to.equal('disconnected');
  });

  it('refuses an oversized request without sending it', async () => {
    const d = new XenStored();
    const c = new XsLocalClient(d, 0);
    const before = d.stats.requests;
    const r = await c.write('/big', 'x'.repeat(5000));
    expect(r.ok ? 'ok' : r.error).to.deep.equal({ kind: 'too-big', op: 'WRITE', len: 5 + 5000 });
    expect(d.stats.requests).to.equal(before);
    expect(XS.WRITE).to.equal(11);
  });
});
