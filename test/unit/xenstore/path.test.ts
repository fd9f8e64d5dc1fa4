import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX, XS } from '../../../shared/abi/xenstore.ts';
import {
  canonicalize, childPath, isChildOrSelf, parentOf, relativize, validChars,
} from '../../../dom0/xenstore/path.ts';
import { expectErr, expectOk, okText, op, read, world, write, guest } from './helpers.ts';

const d0 = asDomId(0);
const d5 = asDomId(5);
const priv = { allowSpecial: false, privileged: true };
const unpriv = { allowSpecial: false, privileged: false };

describe('xenstore paths', () => {
  it('accepts Xen\'s character set and the root', () => {
    expect(validChars('/local/domain/0/device-model_x@y')).to.equal(true);
    for (const p of ['/', '/a', '/a/b-c_d', '/A9/@x']) expect(canonicalize(p, d0, priv).ok, p).to.equal(true);
  });

  it('refuses other characters, doubled and trailing slashes, and the empty path with EINVAL', () => {
    for (const p of ['', '/a b', '/a.b', 'a/../b', '/a//b', '/a/', '//', '/ä', '/a\tb', '/a:b']) {
      const r = canonicalize(p, d0, priv);
      expect(r.ok, JSON.stringify(p)).to.equal(false);
      if (!r.ok) expect(r.error).to.equal('EINVAL');
    }
  });

  it('resolves relative paths under the caller\'s /local/domain/<domid>', () => {
    const r = canonicalize('device/vbd', d5, unpriv);
    expect(r.ok && r.value).to.deep.equal({ path: '/local/domain/5/device/vbd', relative: true });
    const s = canonicalize('name', d0, priv);
    expect(s.ok && s.value.path).to.equal('/local/domain/0/name');
  });

  it('holds absolute paths to 3072 bytes and relative ones to 2048', () => {
    const abs = (n: number) => '/' + 'a'.repeat(n - 1);
    expect(canonicalize(abs(XENSTORE_ABS_PATH_MAX), d0, priv).ok).to.equal(true);
    expect(canonicalize(abs(XENSTORE_ABS_PATH_MAX + 1), d0, priv).ok).to.equal(false);
    expect(canonicalize('r'.repeat(XENSTORE_REL_PATH_MAX), d0, priv).ok).to.equal(true);
    expect(canonicalize('r'.repeat(XENSTORE_REL_PATH_MAX + 1), d0, priv).ok).to.equal(false);
  });

  it('holds an unprivileged domain to 2048 bytes below its home but lets dom0 go to 3072', () => {
    const under = (n: number) => `/local/domain/5/${'x'.repeat(n)}`;
    expect(canonicalize(under(XENSTORE_REL_PATH_MAX), d5, unpriv).ok).to.equal(true);
    expect(canonicalize(under(XENSTORE_REL_PATH_MAX + 1), d5, unpriv).ok).to.equal(false);
    expect(canonicalize(under(XENSTORE_REL_PATH_MAX + 1), d0, priv).ok).to.equal(true);
    const elsewhere = '/' + 'y'.repeat(XENSTORE_REL_PATH_MAX + 10);
    expect(canonicalize(elsewhere, d5, unpriv).ok).to.equal(false);
  });

  it('accepts @special names only where the operation allows them', () => {
    expect(canonicalize('@introduceDomain', d0, priv).ok).to.equal(false);
    const r = canonicalize('@releaseDomain', d0, { allowSpecial: true, privileged: true });
    expect(r.ok && r.value).to.deep.equal({ path: '@releaseDomain', relative: false });
  });

  it('knows parents, children and relative event paths', () => {
    expect(parentOf('/a/b/c')).to.equal('/a/b');
    expect(parentOf('/a')).to.equal('/');
    expect(childPath('/', 'a')).to.equal('/a');
    expect(isChildOrSelf('/a/b', '/a')).to.equal(true);
    expect(isChildOrSelf('/ab', '/a')).to.equal(false);
    expect(isChildOrSelf('/a', '/')).to.equal(true);
    expect(isChildOrSelf('@releaseDomain', '/')).to.equal(false);
    expect(relativize('/local/domain/5/device/vbd', '/local/domain/5')).to.equal('device/vbd');
  });

  it('answers EINVAL to bad paths on the wire and keeps serving', () => {
    const { d, dom0, g } = world([3]);
    const g3 = guest(g, 3);
    for (const p of ['a/../b', '/x//y', '/x/', '', '/sp ace', '@introduceDomain']) {
      expectErr(read(d, dom0, p), 'EINVAL');
      expectErr(write(d, g3, p, 'v'), 'EINVAL');
      expectErr(op(d, dom0, XS.MKDIR, [p]), 'EINVAL');
      expectErr(op(d, dom0, XS.RM, [p]), 'EINVAL');
    }
    expectOk(write(d, g3, 'data/ok', 'yes'));
    expect(okText(read(d, dom0, '/local/domain/3/data/ok'))).to.equal('yes');
  });
});
