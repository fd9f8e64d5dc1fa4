import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { XS } from '../../../shared/abi/xenstore.ts';
import { CXENSTORED_QUOTA } from '../../../dom0/xenstore/quota.ts';
import type { XenStored, XsConnection } from '../../../dom0/xenstore/xenstored.ts';
import { expectErr, expectOk, guest, okText, op, read, world, write } from './helpers.ts';

const startTx = (d: XenStored, c: XsConnection) => op(d, c, XS.TRANSACTION_START, ['']);
const txId = (h: ReturnType<typeof startTx>) => Number(okText(h).replace(/\0$/, ''));

describe('xenstore quotas (cxenstored limits and errors)', () => {
  it('has cxenstored\'s defaults', () => {
    expect(CXENSTORED_QUOTA).to.include({ nodes: 1000, watches: 128, transactions: 10, entrySize: 2048, permsPerNode: 5, transactionNodes: 1024 });
  });

  it('stops a guest at 1000 owned nodes with ENOSPC, and lets it create again after a removal', () => {
    const { d, g } = world([1]);
    const g1 = guest(g, 1);
    const owned = d.store.accounting.nodes(asDomId(1)); // its home directory
    expectOk(op(d, g1, XS.MKDIR, ['q']));
    let made = owned + 1;
    while (made < 1000) {
      expectOk(write(d, g1, `q/n${made}`, ''));
      made++;
    }
    expect(d.store.accounting.nodes(asDomId(1))).to.equal(1000);
    expectErr(write(d, g1, 'q/one-too-many', ''), 'ENOSPC');
    expectErr(op(d, g1, XS.MKDIR, ['q/deep/er']), 'ENOSPC');
    expectErr(read(d, g1, 'q/deep'), 'ENOENT'); // a refused mkdir -p leaves no half-made path
    expectOk(op(d, g1, XS.RM, [`q/n${owned + 1}`]));
    expectOk(write(d, g1, 'q/fits-again', 'yes'));
    expect(d.store.check()).to.deep.equal([]);
  });

  it('stops a guest at 128 watches with E2BIG', () => {
    const { d, g } = world([1]);
    const g1 = guest(g, 1);
    for (let i = 0; i < 128; i++) expectOk(op(d, g1, XS.WATCH, ['w', `t${i}`]));
    expectErr(op(d, g1, XS.WATCH, ['w', 'extra']), 'E2BIG');
    // The quota is per domain: a second connection of the same domain is counted too.
    const again = d.connect(asDomId(1));
    expectErr(op(d, again, XS.WATCH, ['w', 'other-conn']), 'E2BIG');
    expectOk(op(d, g1, XS.UNWATCH, ['w', 't0']));
    expectOk(op(d, g1, XS.WATCH, ['w', 'extra']));
  });

  it('stops a flood of transactions at 10 open with ENOSPC, and frees a slot on end', () => {
    const { d, g } = world([1]);
    const g1 = guest(g, 1);
    const ids = [];
    for (let i = 0; i < 10; i++) ids.push(txId(startTx(d, g1)));
    for (let i = 0; i < 1000; i++) expectErr(startTx(d, g1), 'ENOSPC');
    expectOk(op(d, g1, XS.TRANSACTION_END, ['F'], { tx: ids[0] as number }));
    const t = txId(startTx(d, g1));
    expectOk(write(d, g1, 'after-flood', '1', { tx: t }));
    expectOk(op(d, g1, XS.TRANSACTION_END, ['T'], { tx: t }));
    expect(okText(read(d, g1, 'after-flood'))).to.equal('1');
  });

  it('refuses values over 2048 bytes from a guest with ENOSPC but not from dom0', () => {
    const { d, dom0, g } = world([1]);
    const g1 = guest(g, 1);
    expectOk(write(d, g1, 'big', 'v'.repeat(2048)));
    expectErr(write(d, g1, 'big', 'v'.repeat(2049)), 'ENOSPC');
    expectErr(write(d, g1, 'bigger', 'v'.repeat(4000)), 'ENOSPC');
    expect(okText(read(d, g1, 'big')).length).to.equal(2048);
    expectOk(write(d, dom0, '/local/domain/1/from-dom0', 'v'.repeat(4000)));
    expectOk(write(d, g1, 'small', 'ok'));
  });

  it('refuses more than 5 permission entries from a guest with ENOSPC', () => {
    const { d, dom0, g } = world([1]);
    const g1 = guest(g, 1);
    expectOk(write(d, g1, 'p', 'x'));
    expectOk(op(d, g1, XS.SET_PERMS, ['p', 'n1', 'r2', 'r3', 'r4', 'r5']));
    expectErr(op(d, g1, XS.SET_PERMS, ['p', 'n1', 'r2', 'r3', 'r4', 'r5', 'r6']), 'ENOSPC');
    expectOk(op(d, dom0, XS.SET_PERMS, ['/local/domain/1/p', 'n1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7']));
    expect(okText(op(d, g1, XS.GET_PERMS, ['p']))).to.equal('n1\0r2\0r3\0r4\0r5\0r6\0r7\0');
  });

  it('caps the nodes one guest transaction may touch, but always lets it end', () => {
    const { d, g } = world([1], { quota: { transactionNodes: 20 } });
    const g1 = guest(g, 1);
    const t = txId(startTx(d, g1));
    let refused = false;
    for (let i = 0; i < 40 && !refused; i++) {
      const h = write(d, g1, `tx/k${i}`, 'v', { tx: t });
      if (h.reply.type === XS.ERROR) {
        expectErr(h, 'ENOSPC');
        refused = true;
      }
    }
    expect(refused).to.equal(true);
    expectOk(op(d, g1, XS.TRANSACTION_END, ['T'], { tx: t }));
    expectOk(write(d, g1, 'tx/after', 'v'));
  });

  it('re-checks the node quota at commit, when two transactions raced for the last nodes', () => {
    const { d, g } = world([1], { quota: { nodes: 6 } });
    const g1 = guest(g, 1);
    expectOk(op(d, g1, XS.MKDIR, ['a']));
    expectOk(op(d, g1, XS.MKDIR, ['b']));
    // 3 nodes owned (home, a, b). Each transaction adds 2 under its own directory:
    // either fits alone, not both, and they touch disjoint nodes (no EAGAIN).
    const ta = txId(startTx(d, g1));
    const tb = txId(startTx(d, g1));
    expectOk(write(d, g1, 'a/x/y', '1', { tx: ta }));
    expectOk(write(d, g1, 'b/x/y', '1', { tx: tb }));
    expectOk(op(d, g1, XS.TRANSACTION_END, ['T'], { tx: ta }));
    expectErr(op(d, g1, XS.TRANSACTION_END, ['T'], { tx: tb }), 'ENOSPC');
    expectErr(read(d, g1, 'b/x'), 'ENOENT');
    expect(d.store.accounting.nodes(asDomId(1))).to.equal(5);
    expectOk(write(d, g1, 'b', 'one more fits'));
    expectOk(write(d, g1, 'b/last', '1'));
    expectErr(write(d, g1, 'b/over', '1'), 'ENOSPC');
    expect(d.store.check()).to.deep.equal([]);
  });

  it('does not hold dom0 to any quota', () => {
    const { d, dom0 } = world([], { quota: { nodes: 5, watches: 2, transactions: 1 } });
    for (let i = 0; i < 20; i++) expectOk(write(d, dom0, `/dom0/n${i}`, 'x'));
    for (let i = 0; i < 5; i++) expectOk(op(d, dom0, XS.WATCH, ['/dom0', `t${i}`]));
    for (let i = 0; i < 3; i++) okText(startTx(d, dom0));
  });
});
