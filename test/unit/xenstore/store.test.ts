import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { XS } from '../../../shared/abi/xenstore.ts';
import { XS_PERM, parsePerm, parsePerms, permForCaller, permToString } from '../../../dom0/xenstore/store.ts';
import { expectErr, expectOk, guest, okText, op, read, world, write } from './helpers.ts';

const caller = (domid: number, privileged = false, target?: number) => ({
  domid: asDomId(domid), privileged, target: target === undefined ? undefined : asDomId(target),
});

describe('xenstore store and permissions', () => {
  it('parses and prints n/r/w/b permission strings', () => {
    for (const s of ['n0', 'r1', 'w2', 'b3', 'b65535']) {
      const p = parsePerm(s);
      expect(p.ok && permToString(p.value), s).to.equal(s);
    }
    for (const s of ['', 'x1', 'r', 'r-1', 'r65536', 'rr1', 'r1a', 'R1']) expect(parsePerm(s).ok, s).to.equal(false);
    expect(parsePerms([]).ok).to.equal(false);
  });

  it('gives the owner and dom0 everything, a listed domain its entry, anyone else the default', () => {
    const perms = unwrapPerms(['r5', 'w6', 'n7', 'b8']);
    const all = XS_PERM.READ | XS_PERM.WRITE | XS_PERM.OWNER;
    expect(permForCaller(caller(5), perms)).to.equal(all);
    expect(permForCaller(caller(0, true), perms)).to.equal(all);
    expect(permForCaller(caller(6), perms)).to.equal(XS_PERM.WRITE);
    expect(permForCaller(caller(7), perms)).to.equal(XS_PERM.NONE);
    expect(permForCaller(caller(8), perms)).to.equal(XS_PERM.READ | XS_PERM.WRITE);
    expect(permForCaller(caller(9), perms)).to.equal(XS_PERM.READ); // the default from entry 0
    expect(permForCaller(caller(9, false, 5), perms)).to.equal(all); // SET_TARGET: acts as the owner
  });

  it('keeps a guest out of another domain\'s subtree, without saying what exists there', () => {
    const { d, dom0, g } = world([1, 2]);
    const g1 = guest(g, 1);
    const g2 = guest(g, 2);
    expectOk(write(d, g2, '/local/domain/2/secret', 'x'));
    expectErr(read(d, g1, '/local/domain/2/secret'), 'EACCES');
    expectErr(read(d, g1, '/local/domain/2/absent'), 'EACCES'); // not ENOENT: no probing
    expectErr(write(d, g1, '/local/domain/2/secret', 'y'), 'EACCES');
    expectErr(write(d, g1, '/local/domain/2/new', 'y'), 'EACCES');
    expectErr(op(d, g1, XS.MKDIR, ['/local/domain/2/d']), 'EACCES');
    expectErr(op(d, g1, XS.RM, ['/local/domain/2/secret']), 'EACCES');
    expectErr(op(d, g1, XS.DIRECTORY, ['/local/domain/2']), 'EACCES');
    expectErr(op(d, g1, XS.GET_PERMS, ['/local/domain/2/secret']), 'EACCES');
    expectErr(read(d, g1, '/tool/xenstored'), 'EACCES');
    expectErr(write(d, g1, '/evil', 'x'), 'EACCES');
    expectErr(write(d, g1, '/local/domain/9/x', 'x'), 'EACCES');
    expect(okText(read(d, dom0, '/local/domain/2/secret'))).to.equal('x');
    // A guest's own absent node is plain ENOENT.
    expectErr(read(d, g1, '/local/domain/1/absent'), 'ENOENT');
    expectOk(write(d, g1, 'mine', 'ok'));
    expect(okText(read(d, g1, 'mine'))).to.equal('ok');
  });

  it('lets a frontend read but not write its backend\'s nodes, and a stranger do neither', () => {
    const { d, dom0, g } = world([1, 2]);
    const be = '/local/domain/0/backend/vbd/1/51712';
    expectOk(write(d, dom0, `${be}/state`, '2'));
    expectOk(op(d, dom0, XS.SET_PERMS, [be, 'n0', 'r1']));
    expectOk(op(d, dom0, XS.SET_PERMS, [`${be}/state`, 'n0', 'r1']));
    expect(okText(read(d, guest(g, 1), `${be}/state`))).to.equal('2');
    expectErr(write(d, guest(g, 1), `${be}/state`, '6'), 'EACCES');
    expectErr(write(d, guest(g, 1), `${be}/feature-hack`, '1'), 'EACCES');
    expectErr(read(d, guest(g, 2), `${be}/state`), 'EACCES');
    // Granting write to the frontend on one node opens that node only.
    expectOk(op(d, dom0, XS.SET_PERMS, [`${be}/state`, 'n0', 'b1']));
    expectOk(write(d, guest(g, 1), `${be}/state`, '5'));
    expectErr(write(d, guest(g, 1), `${be}/other`, '1'), 'EACCES');
  });

  it('makes an unprivileged creator the owner of what it creates, keeping the rest of the list', () => {
    const { d, dom0, g } = world([1]);
    expectOk(op(d, dom0, XS.SET_PERMS, ['/local/domain/1', 'n1', 'r0', 'r4']));
    expectOk(write(d, guest(g, 1), 'device/vbd/51712/ring-ref', '8'));
    expect(okText(op(d, dom0, XS.GET_PERMS, ['/local/domain/1/device/vbd/51712/ring-ref']))).to.equal('n1\0r0\0r4\0');
    expectOk(write(d, dom0, '/local/domain/1/by-dom0', 'x'));
    expect(okText(op(d, dom0, XS.GET_PERMS, ['/local/domain/1/by-dom0']))).to.equal('n1\0r0\0r4\0');
  });

  it('lets only the owner change permissions, and never hand the node to someone else', () => {
    const { d, g } = world([1, 2]);
    const g1 = guest(g, 1);
    expectOk(write(d, g1, 'shared', 'v'));
    expectOk(op(d, g1, XS.SET_PERMS, ['shared', 'n1', 'r2']));
    expect(okText(read(d, guest(g, 2), '/local/domain/1/shared'))).to.equal('v');
    expectErr(op(d, guest(g, 2), XS.SET_PERMS, ['/local/domain/1/shared', 'b2']), 'EACCES');
    expectErr(op(d, g1, XS.SET_PERMS, ['shared', 'n2']), 'EPERM');
    expectErr(op(d, g1, XS.SET_PERMS, ['shared', 'q1']), 'EINVAL');
    expectErr(op(d, g1, XS.SET_PERMS, ['shared']), 'EINVAL');
    expectOk(op(d, g1, XS.SET_PERMS, ['shared', 'n1']));
    expectErr(read(d, guest(g, 2), '/local/domain/1/shared'), 'EACCES');
  });

  it('counts nodes by owner and stays consistent through creates, chowns and removals', () => {
    const { d, dom0, g } = world([1]);
    const before = d.store.accounting.nodes(asDomId(1));
    expectOk(write(d, guest(g, 1), 'a/b/c', '1'));
    expect(d.store.accounting.nodes(asDomId(1))).to.equal(before + 3);
    expectOk(op(d, dom0, XS.SET_PERMS, ['/local/domain/1/a/b/c', 'n0']));
    expect(d.store.accounting.nodes(asDomId(1))).to.equal(before + 2);
    expectOk(op(d, dom0, XS.RM, ['/local/domain/1/a']));
    expect(d.store.accounting.nodes(asDomId(1))).to.equal(before);
    expect(d.store.check()).to.deep.equal([]);
  });
});

function unwrapPerms(s: string[]) {
  const r = parsePerms(s);
  if (!r.ok) throw new Error('bad perms');
  return r.value;
}
