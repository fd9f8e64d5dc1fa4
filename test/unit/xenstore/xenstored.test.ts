import { expect } from 'chai';
import fc from 'fast-check';
import { asDomId, type DomId } from '../../../shared/types.ts';
import { XS, XENSTORE_PAYLOAD_MAX } from '../../../shared/abi/xenstore.ts';
import { XenStored } from '../../../dom0/xenstore/xenstored.ts';
import { latin1 } from '../../../dom0/xenstore/wire.ts';
import { events, expectErr, expectOk, guest, okText, op, raw, read, world, write } from './helpers.ts';

describe('xenstored requests', () => {
  it('writes create missing parents with empty values; reads return the raw value without a NUL', () => {
    const { d, dom0 } = world([]);
    expectOk(write(d, dom0, '/a/b/c', 'v1'));
    expect(okText(read(d, dom0, '/a/b/c'))).to.equal('v1');
    expect(okText(read(d, dom0, '/a/b'))).to.equal('');
    const bin = raw(d, dom0, XS.WRITE, new Uint8Array([0x2f, 0x62, 0x69, 0x6e, 0, 1, 0, 2]));
    expectOk(bin);
    expect([...read(d, dom0, '/bin').reply.payload]).to.deep.equal([1, 0, 2]);
    expectOk(write(d, dom0, '/empty', ''));
    expect(read(d, dom0, '/empty').reply.payload.length).to.equal(0);
  });

  it('mkdir leaves existing values alone; rm removes subtrees and is content with an absent leaf', () => {
    const { d, dom0 } = world([]);
    expectOk(write(d, dom0, '/m/x', 'keep'));
    expectOk(op(d, dom0, XS.MKDIR, ['/m/x']));
    expect(okText(read(d, dom0, '/m/x'))).to.equal('keep');
    expectOk(op(d, dom0, XS.MKDIR, ['/m/y/z']));
    expectOk(op(d, dom0, XS.RM, ['/m']));
    expectErr(read(d, dom0, '/m/y/z'), 'ENOENT');
    expectOk(op(d, dom0, XS.RM, ['/m'])); // absent, parent "/" exists
    expectErr(op(d, dom0, XS.RM, ['/m/q']), 'ENOENT'); // absent, parent absent too
    expectErr(op(d, dom0, XS.RM, ['/']), 'EINVAL');
    expect(d.store.check()).to.deep.equal([]);
  });

  it('lists children in creation order, and an empty directory as an empty payload', () => {
    const { d, dom0 } = world([]);
    for (const k of ['zeta', 'alpha', 'mid']) expectOk(write(d, dom0, `/dir/${k}`, ''));
    expect(okText(op(d, dom0, XS.DIRECTORY, ['/dir']))).to.equal('zeta\0alpha\0mid\0');
    expect(op(d, dom0, XS.DIRECTORY, ['/dir/mid']).reply.payload.length).to.equal(0);
    expectErr(op(d, dom0, XS.DIRECTORY, ['/nodir']), 'ENOENT');
  });

  it('answers E2BIG to a directory too long for one reply, and pages it with DIRECTORY_PART', () => {
    const { d, dom0 } = world([]);
    const names: string[] = [];
    for (let i = 0; i < 400; i++) {
      names.push(`child-number-${i}`);
      expectOk(write(d, dom0, `/big/child-number-${i}`, ''));
    }
    expectErr(op(d, dom0, XS.DIRECTORY, ['/big']), 'E2BIG');
    let off = 0;
    let gen: string | undefined;
    const got: string[] = [];
    for (let pages = 0; pages < 10; pages++) {
      const h = op(d, dom0, XS.DIRECTORY_PART, ['/big', String(off)]);
      const p = okText(h);
      expect(h.reply.payload.length).to.be.at.most(XENSTORE_PAYLOAD_MAX);
      const parts = p.split('\0');
      gen ??= parts[0];
      expect(parts[0]).to.equal(gen); // unchanged node, unchanged generation
      const children = parts.slice(1);
      const last = p.endsWith('\0\0');
      const list = children.filter((c) => c !== '');
      got.push(...list);
      off += list.reduce((n, c) => n + c.length + 1, 0);
      if (last) break;
    }
    expect(got).to.deep.equal(names);
    const past = okText(op(d, dom0, XS.DIRECTORY_PART, ['/big', '999999']));
    expect(past).to.equal(`${gen}\0\0`);
    expectOk(write(d, dom0, '/big/one-more', ''));
    const changed = okText(op(d, dom0, XS.DIRECTORY_PART, ['/big', '0'])).split('\0')[0];
    expect(changed).to.not.equal(gen);
  });

  it('gets and sets permissions as n/r/w/b strings, owner first', () => {
    const { d, dom0 } = world([]);
    expectOk(write(d, dom0, '/perm', 'x'));
    expect(okText(op(d, dom0, XS.GET_PERMS, ['/perm']))).to.equal('n0\0');
    expectOk(op(d, dom0, XS.SET_PERMS, ['/perm', 'b3', 'r1', 'w2', 'n4']));
    expect(okText(op(d, dom0, XS.GET_PERMS, ['/perm']))).to.equal('b3\0r1\0w2\0n4\0');
    expect(okText(op(d, dom0, XS.GET_PERMS, ['@releaseDomain']))).to.equal('n0\0');
    expectErr(op(d, dom0, XS.GET_PERMS, ['@nosuch']), 'ENOENT');
  });

  it('echoes req_id and tx_id in every reply, success or error', () => {
    const { d, dom0 } = world([]);
    for (const reqId of [0, 1, 0xffffffff]) {
      const good = read(d, dom0, '/tool', { reqId });
      expect([good.reply.type, good.reply.reqId, good.reply.txId]).to.deep.equal([XS.READ, reqId, 0]);
      const bad = read(d, dom0, '/absent', { reqId });
      expect([bad.reply.type, bad.reply.reqId]).to.deep.equal([XS.ERROR, reqId]);
    }
  });

  it('answers domain-path and is-introduced questions', () => {
    const { d, dom0, g } = world([7]);
    expect(okText(op(d, dom0, XS.GET_DOMAIN_PATH, ['7']))).to.equal('/local/domain/7\0');
    expect(okText(op(d, guest(g, 7), XS.GET_DOMAIN_PATH, ['0']))).to.equal('/local/domain/0\0');
    expectErr(op(d, dom0, XS.GET_DOMAIN_PATH, ['x7']), 'EINVAL');
    expect(okText(op(d, dom0, XS.IS_DOMAIN_INTRODUCED, ['7']))).to.equal('T\0');
    expect(okText(op(d, dom0, XS.IS_DOMAIN_INTRODUCED, ['8']))).to.equal('F\0');
    expect(okText(op(d, dom0, XS.IS_DOMAIN_INTRODUCED, ['0']))).to.equal('T\0');
  });

  it('introduces a domain through its hook and fires @introduceDomain; only dom0 may', () => {
    const seen: [DomId, number, number][] = [];
    const d = new XenStored({ onIntroduce: (domid, mfn, port) => { seen.push([domid, mfn, port]); return domid === 66 ? 'EINVAL' : undefined; } });
    const dom0 = d.connect(asDomId(0));
    const w = d.connect(asDomId(0));
    op(d, w, XS.WATCH, ['@introduceDomain', 'i']);
    const h = op(d, dom0, XS.INTRODUCE, ['5', '-42', '3']);
    expectOk(h);
    expect(seen).to.deep.equal([[5, -42, 3]]);
    expect(events(h).map((e) => e.path)).to.deep.equal(['@introduceDomain']);
    expect(d.isIntroduced(asDomId(5))).to.equal(true);
    expectOk(op(d, dom0, XS.INTRODUCE, ['5', '1', '3'])); // again: no second event
    expect(seen.length).to.equal(1);
    expectErr(op(d, dom0, XS.INTRODUCE, ['66', '1', '1']), 'EINVAL');
    expectErr(op(d, dom0, XS.INTRODUCE, ['0', '1', '1']), 'EINVAL');
    expectErr(op(d, dom0, XS.INTRODUCE, ['5', '1']), 'EINVAL');
    const g5 = d.connect(asDomId(5));
    for (const [t, args] of [[XS.INTRODUCE, ['6', '1', '1']], [XS.RELEASE, ['5']], [XS.RESUME, ['5']], [XS.SET_TARGET, ['5', '6']], [XS.CONTROL, ['help']]] as const) {
      expectErr(op(d, g5, t, [...args]), 'EACCES');
    }
    expectOk(op(d, dom0, XS.RESUME, ['5']));
  });

  it('lets SET_TARGET give a device model its target\'s rights', () => {
    const { d, dom0, g } = world([2, 3]);
    expectOk(write(d, guest(g, 3), 'disk', 'img'));
    expectErr(read(d, guest(g, 2), '/local/domain/3/disk'), 'EACCES');
    expectOk(op(d, dom0, XS.SET_TARGET, ['2', '3']));
    expect(okText(read(d, guest(g, 2), '/local/domain/3/disk'))).to.equal('img');
  });

  it('answers CONTROL help, check and quota to dom0', () => {
    const { d, dom0, g } = world([1]);
    expect(okText(op(d, dom0, XS.CONTROL, ['help']))).to.contain('check');
    expect(okText(op(d, dom0, XS.CONTROL, ['check']))).to.equal('OK\0');
    expect(okText(op(d, dom0, XS.CONTROL, ['quota']))).to.contain('nodes: 1000');
    expectOk(write(d, guest(g, 1), 'x', '1'));
    expect(okText(op(d, dom0, XS.CONTROL, ['quota', '1']))).to.contain('nodes: 2');
    expectErr(op(d, dom0, XS.CONTROL, ['frobnicate']), 'EINVAL');
    expectOk(op(d, dom0, XS.CONTROL, ['log', 'on']));
  });

  it('answers ENOSYS to message types it does not serve', () => {
    const { d, dom0 } = world([]);
    for (const t of [XS.WATCH_EVENT, XS.ERROR, 20]) expectErr(op(d, dom0, t, ['/x']), 'ENOSYS');
    expectOk(write(d, dom0, '/after', 'ok'));
  });

  it('answers malformed payloads with EINVAL and keeps serving', () => {
    const { d, dom0, g } = world([1]);
    const g1 = guest(g, 1);
    const bad: [number, number[]][] = [
      [XS.READ, []], // no NUL at all
      [XS.READ, [0x2f, 0x61]], // unterminated
      [XS.READ, [0x2f, 0x61, 0, 0x2f, 0x62, 0]], // two strings where one is due
      [XS.WRITE, []],
      [XS.WRITE, [0x2f, 0x61]], // path without its NUL
      [XS.MKDIR, [0]],
      [XS.WATCH, [0x2f, 0x61, 0]],
      [XS.WATCH, [0x2f, 0x61, 0, 0x74, 0, 0x78, 0]], // three strings
      [XS.SET_PERMS, [0x2f, 0x61, 0, 0x7a, 0x31, 0]],
      [XS.TRANSACTION_END, [0x54]],
      [XS.DIRECTORY_PART, [0x2f, 0]],
      [XS.GET_DOMAIN_PATH, [0x2d, 0x31, 0]],
      [XS.INTRODUCE, [0x31, 0, 0x78, 0, 0x31, 0]],
    ];
    for (const [type, bytes] of bad) {
      for (const conn of [dom0, g1]) {
        const h = raw(d, conn, type, new Uint8Array(bytes));
        expect(h.reply.type, `${type} ${JSON.stringify(bytes)}`).to.equal(XS.ERROR);
      }
    }
    expectOk(write(d, g1, 'fine', 'yes'));
    expect(okText(read(d, dom0, '/local/domain/1/fine'))).to.equal('yes');
    expect(d.store.check()).to.deep.equal([]);
  });

  it('never throws and stays consistent under random requests from any domain (fuzz, seeded)', () => {
    const { d, dom0, g } = world([1, 2]);
    const conns = [dom0, guest(g, 1), guest(g, 2)];
    const pathArb = fc.constantFrom('/', '/a', '/a/b', 'x', 'x/y', '/local/domain/1/z', '/local/domain/2', '@releaseDomain', '/a//b', 'bad path', '');
    const strArb = fc.oneof(pathArb, fc.constantFrom('T', 'F', 'b1', 'n0', 'r2', 'w9', '0', '1', '4294967295', 'help'), fc.string({ maxLength: 12 }));
    const reqArb = fc.record({
      conn: fc.integer({ min: 0, max: 2 }),
      type: fc.integer({ min: 0, max: 25 }),
      tx: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 })),
      strings: fc.array(strArb, { maxLength: 4 }),
      tail: fc.uint8Array({ maxLength: 6 }),
    });
    fc.assert(fc.property(fc.array(reqArb, { maxLength: 60 }), (reqs) => {
      for (const r of reqs) {
        if (r.type === XS.RELEASE) continue; // keep our guests introduced
        const conn = conns[r.conn] as (typeof conns)[number];
        if (conn.closed) continue;
        const head = Buffer.from(r.strings.map((s) => `${s}\0`).join(''), 'latin1');
        const payload = new Uint8Array(Buffer.concat([head, Buffer.from(r.tail)]));
        const h = d.handle(conn, { type: r.type, reqId: 3, txId: r.tx, payload });
        if (h.reply.reqId !== 3 || h.reply.payload.length > XENSTORE_PAYLOAD_MAX) return false;
        if (h.reply.type !== XS.ERROR && h.reply.type !== r.type) return false;
      }
      return d.store.check().length === 0;
    }), { seed: 20240611, numRuns: 300 });
    expectOk(write(d, dom0, '/after-fuzz', 'ok'));
    expect(latin1(read(d, dom0, '/after-fuzz').reply.payload)).to.equal('ok');
  });
});
