import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { XS } from '../../../shared/abi/xenstore.ts';
import type { XenStored, XsConnection } from '../../../dom0/xenstore/xenstored.ts';
import { events, expectErr, expectOk, guest, okText, op, read, world, write } from './helpers.ts';

function start(d: XenStored, conn: XsConnection): number {
  const h = op(d, conn, XS.TRANSACTION_START, ['']);
  const id = Number(okText(h).replace(/\0$/, ''));
  expect(Number.isInteger(id) && id > 0).to.equal(true);
  return id;
}
const end = (d: XenStored, conn: XsConnection, tx: number, commit = true) =>
  op(d, conn, XS.TRANSACTION_END, [commit ? 'T' : 'F'], { tx });

describe('xenstore transactions', () => {
  it('sees its own writes while others see none until commit', () => {
    const { d, dom0 } = world([]);
    const other = d.connect(asDomId(0));
    const tx = start(d, dom0);
    expectOk(write(d, dom0, '/t/a', '1', { tx }));
    expect(okText(read(d, dom0, '/t/a', { tx }))).to.equal('1');
    expect(okText(op(d, dom0, XS.DIRECTORY, ['/t'], { tx }))).to.equal('a\0');
    expectErr(read(d, other, '/t/a'), 'ENOENT');
    expectErr(read(d, dom0, '/t/a'), 'ENOENT'); // outside the transaction
    expectOk(end(d, dom0, tx));
    expect(okText(read(d, other, '/t/a'))).to.equal('1');
    expect(d.store.check()).to.deep.equal([]);
  });

  it('fails the commit with EAGAIN when a node it read changed since', () => {
    const { d, dom0 } = world([]);
    const other = d.connect(asDomId(0));
    expectOk(write(d, dom0, '/c/x', '1'));
    const tx = start(d, dom0);
    expect(okText(read(d, dom0, '/c/x', { tx }))).to.equal('1');
    expectOk(write(d, dom0, '/c/y', 'mine', { tx }));
    expectOk(write(d, other, '/c/x', '2'));
    expectErr(end(d, dom0, tx), 'EAGAIN');
    expectErr(read(d, dom0, '/c/y'), 'ENOENT'); // nothing applied
    expectErr(end(d, dom0, tx), 'ENOENT'); // the transaction is gone
  });

  it('keeps reading what it first saw after an outside change, then fails the commit (test-xenstore "ta err")', () => {
    const { d, dom0 } = world([]);
    const other = d.connect(asDomId(0));
    expectOk(write(d, dom0, '/s/a', 'a'));
    expectOk(write(d, dom0, '/s/k', 'k'));
    const tx = start(d, dom0);
    expect(okText(read(d, dom0, '/s/a', { tx }))).to.equal('a');
    expect(okText(op(d, dom0, XS.DIRECTORY, ['/s'], { tx }))).to.equal('a\0k\0');
    expectOk(write(d, other, '/s/a', 'b'));
    expectOk(write(d, other, '/s/new', 'n'));
    expect(okText(read(d, dom0, '/s/a', { tx }))).to.equal('a'); // read stability
    expect(okText(op(d, dom0, XS.DIRECTORY, ['/s'], { tx }))).to.equal('a\0k\0');
    expect(okText(read(d, dom0, '/s/new', { tx }))).to.equal('n'); // never seen before: read live
    expectOk(write(d, dom0, '/s/a', 'c', { tx }));
    expect(okText(read(d, dom0, '/s/a', { tx }))).to.equal('c');
    expectErr(end(d, dom0, tx), 'EAGAIN');
    expect(okText(read(d, other, '/s/a'))).to.equal('b');
    expect(d.store.check()).to.deep.equal([]);
  });

  it('commits when only nodes it never touched changed', () => {
    const { d, dom0 } = world([]);
    const other = d.connect(asDomId(0));
    expectOk(write(d, dom0, '/p/x', '1'));
    expectOk(write(d, dom0, '/q/z', '1'));
    const tx = start(d, dom0);
    expect(okText(read(d, dom0, '/p/x', { tx }))).to.equal('1');
    expectOk(write(d, dom0, '/p/x', '10', { tx }));
    expectOk(write(d, other, '/q/z', '2'));
    expectOk(write(d, other, '/q/new', '3'));
    expectOk(end(d, dom0, tx));
    expect(okText(read(d, other, '/p/x'))).to.equal('10');
  });

  it('conflicts when a node it wrote, or found absent, was changed or created since', () => {
    const { d, dom0 } = world([]);
    const other = d.connect(asDomId(0));
    expectOk(write(d, dom0, '/w/x', '1'));
    const t1 = start(d, dom0);
    expectOk(write(d, dom0, '/w/x', 'tx', { tx: t1 }));
    expectOk(write(d, other, '/w/x', 'outside'));
    expectErr(end(d, dom0, t1), 'EAGAIN');
    expect(okText(read(d, dom0, '/w/x'))).to.equal('outside');

    const t2 = start(d, dom0);
    expectErr(read(d, dom0, '/w/later', { tx: t2 }), 'ENOENT');
    expectOk(write(d, other, '/w/later', 'now'));
    expectErr(end(d, dom0, t2), 'EAGAIN');
  });

  it('conflicts with a removal of a node it read', () => {
    const { d, dom0 } = world([]);
    const other = d.connect(asDomId(0));
    expectOk(write(d, dom0, '/r/a/b', '1'));
    const tx = start(d, dom0);
    expect(okText(read(d, dom0, '/r/a/b', { tx }))).to.equal('1');
    expectOk(op(d, other, XS.RM, ['/r/a']));
    expectErr(end(d, dom0, tx), 'EAGAIN');
  });

  it('removes subtrees and re-creates nodes inside a transaction, applying the final state', () => {
    const { d, dom0 } = world([]);
    expectOk(write(d, dom0, '/s/a/b', '1'));
    expectOk(write(d, dom0, '/s/a/c', '2'));
    const tx = start(d, dom0);
    expectOk(op(d, dom0, XS.RM, ['/s/a'], { tx }));
    expectErr(read(d, dom0, '/s/a/b', { tx }), 'ENOENT');
    expectOk(write(d, dom0, '/s/a/c', 'new', { tx }));
    expect(okText(op(d, dom0, XS.DIRECTORY, ['/s/a'], { tx }))).to.equal('c\0');
    expect(okText(read(d, dom0, '/s/a/b'))).to.equal('1'); // live tree untouched so far
    expectOk(end(d, dom0, tx));
    expectErr(read(d, dom0, '/s/a/b'), 'ENOENT');
    expect(okText(read(d, dom0, '/s/a/c'))).to.equal('new');
    expect(d.store.check()).to.deep.equal([]);
  });

  it('drops everything on abort, events included', () => {
    const { d, dom0 } = world([]);
    const watcher = d.connect(asDomId(0));
    op(d, watcher, XS.WATCH, ['/ab', 'tok']);
    const tx = start(d, dom0);
    const h = write(d, dom0, '/ab/x', '1', { tx });
    expect(events(h)).to.deep.equal([]);
    const e = end(d, dom0, tx, false);
    expectOk(e);
    expect(events(e)).to.deep.equal([]);
    expectErr(read(d, dom0, '/ab/x'), 'ENOENT');
  });

  it('fires watch events only when the commit succeeds', () => {
    const { d, dom0 } = world([]);
    const watcher = d.connect(asDomId(0));
    op(d, watcher, XS.WATCH, ['/ev', 'tok']);
    const tx = start(d, dom0);
    expect(events(write(d, dom0, '/ev/a', '1', { tx }))).to.deep.equal([]);
    expect(events(write(d, dom0, '/ev/b', '2', { tx }))).to.deep.equal([]);
    const fired = events(end(d, dom0, tx));
    expect(fired.map((e) => [e.conn === watcher, e.path, e.token])).to.deep.equal([
      [true, '/ev/a', 'tok'],
      [true, '/ev/b', 'tok'],
    ]);
  });

  it('reports ENOENT for unknown transaction ids, EBUSY for nested starts, EINVAL for a bad end', () => {
    const { d, dom0 } = world([]);
    const other = d.connect(asDomId(0));
    expectErr(read(d, dom0, '/tool', { tx: 999 }), 'ENOENT');
    expectErr(end(d, dom0, 0), 'ENOENT');
    const tx = start(d, dom0);
    expectErr(op(d, dom0, XS.TRANSACTION_START, [''], { tx }), 'EBUSY');
    expectErr(read(d, other, '/tool', { tx }), 'ENOENT'); // ids belong to their connection
    expectErr(op(d, dom0, XS.TRANSACTION_END, ['X'], { tx }), 'EINVAL');
    expectOk(write(d, dom0, '/still/usable', '1', { tx }));
    expectOk(end(d, dom0, tx));
    expect(okText(read(d, dom0, '/still/usable'))).to.equal('1');
  });

  it('echoes the transaction id in replies to requests inside it', () => {
    const { d, dom0 } = world([]);
    const tx = start(d, dom0);
    const h = write(d, dom0, '/echo', 'v', { tx, reqId: 4242 });
    expect(h.reply.txId).to.equal(tx);
    expect(h.reply.reqId).to.equal(4242);
    const e = read(d, dom0, '/nope', { tx, reqId: 99 });
    expect([e.reply.type, e.reply.reqId, e.reply.txId]).to.deep.equal([XS.ERROR, 99, tx]);
  });

  it('lets a guest write its frontend keys in one transaction, as blkfront does', () => {
    const { d, dom0, g } = world([1]);
    const g1 = guest(g, 1);
    expectOk(write(d, dom0, '/local/domain/1/device/vbd/51712/state', '1'));
    const tx = start(d, g1);
    for (const [k, v] of [['ring-ref', '8'], ['event-channel', '5'], ['protocol', 'x86_64-abi'], ['state', '3']]) {
      expectOk(write(d, g1, `device/vbd/51712/${k}`, v as string, { tx }));
    }
    expectOk(end(d, g1, tx));
    expect(okText(op(d, dom0, XS.DIRECTORY, ['/local/domain/1/device/vbd/51712']))).to.equal('state\0ring-ref\0event-channel\0protocol\0');
    expect(d.store.check()).to.deep.equal([]);
  });
});
