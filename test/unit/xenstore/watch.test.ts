import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { XS } from '../../../shared/abi/xenstore.ts';
import { latin1 } from '../../../dom0/xenstore/wire.ts';
import { events, expectErr, expectOk, guest, okText, op, world, write } from './helpers.ts';

describe('xenstore watches', () => {
  it('answers OK and then fires once at once with the watched path, req_id 0 and tx_id 0', () => {
    const { d, dom0 } = world([]);
    const h = op(d, dom0, XS.WATCH, ['/w', 'tok'], { reqId: 55 });
    expectOk(h);
    expect(h.reply.reqId).to.equal(55);
    expect(events(h).map((e) => [e.conn === dom0, e.path, e.token])).to.deep.equal([[true, '/w', 'tok']]);
    d.process(dom0, { type: XS.WATCH, reqId: 56, txId: 0, payload: Buffer.from('/w2\0t2\0') });
    expect(dom0.take()?.type).to.equal(XS.WATCH); // the reply is queued before the event
    expect(dom0.take()?.type).to.equal(XS.WATCH_EVENT);
  });

  it('fires for the node and its descendants, never for siblings or ancestors', () => {
    const { d, dom0 } = world([]);
    const w = d.connect(asDomId(0));
    op(d, w, XS.WATCH, ['/a/b', 'T']);
    expect(events(write(d, dom0, '/a/b', '1')).map((e) => e.path)).to.deep.equal(['/a/b']);
    expect(events(write(d, dom0, '/a/b/c/d', '1')).map((e) => e.path)).to.deep.equal(['/a/b/c/d']);
    expect(events(write(d, dom0, '/a/bc', '1'))).to.deep.equal([]);
    expect(events(write(d, dom0, '/a', 'x'))).to.deep.equal([]);
    expect(events(op(d, dom0, XS.SET_PERMS, ['/a/b/c', 'n0'])).map((e) => e.path)).to.deep.equal(['/a/b/c']);
    expect(events(op(d, dom0, XS.MKDIR, ['/a/b/e'])).map((e) => e.path)).to.deep.equal(['/a/b/e']);
    expect(events(op(d, dom0, XS.MKDIR, ['/a/b/e']))).to.deep.equal([]); // already there: no change
  });

  it('fires a watch below a recursively removed parent with the watched path', () => {
    const { d, dom0 } = world([]);
    const w = d.connect(asDomId(0));
    expectOk(write(d, dom0, '/r/x/y/z', '1'));
    op(d, w, XS.WATCH, ['/r/x/y', 'deep']);
    op(d, w, XS.WATCH, ['/r', 'top']);
    op(d, w, XS.WATCH, ['/r/x/y/never/created', 'ghost']);
    const fired = events(op(d, dom0, XS.RM, ['/r/x'])).map((e) => `${e.token}:${e.path}`).sort();
    expect(fired).to.deep.equal(['deep:/r/x/y', 'ghost:/r/x/y/never/created', 'top:/r/x']);
  });

  it('reports relative event paths to a relative watch', () => {
    const { d, dom0, g } = world([3]);
    const g3 = guest(g, 3);
    const h = op(d, g3, XS.WATCH, ['device', 'fe']);
    expect(events(h).map((e) => e.path)).to.deep.equal(['device']);
    const fired = events(write(d, dom0, '/local/domain/3/device/vbd/51712/state', '1'));
    expect(fired.map((e) => [e.conn === g3, e.path])).to.deep.equal([[true, 'device/vbd/51712/state']]);
    op(d, g3, XS.WATCH, ['/local/domain/3/device', 'abs']);
    const both = events(write(d, dom0, '/local/domain/3/device/x', '1')).map((e) => `${e.token}:${e.path}`).sort();
    expect(both).to.deep.equal(['abs:/local/domain/3/device/x', 'fe:device/x']);
  });

  it('does not tell a guest about changes to nodes it may not read', () => {
    const { d, dom0, g } = world([1, 2]);
    const g1 = guest(g, 1);
    op(d, g1, XS.WATCH, ['/local/domain/2', 'spy']);
    op(d, g1, XS.WATCH, ['/', 'everything']);
    expect(events(write(d, guest(g, 2), 'private', 'x'))).to.deep.equal([]);
    expect(events(write(d, dom0, '/local/domain/2/other', 'x'))).to.deep.equal([]);
    // Once granted, it hears.
    expectOk(op(d, guest(g, 2), XS.SET_PERMS, ['private', 'n2', 'r1']));
    const fired = events(write(d, guest(g, 2), 'private', 'y')).map((e) => e.token).sort();
    expect(fired).to.deep.equal(['everything', 'spy']);
  });

  it('refuses a duplicate watch with EEXIST and an unknown unwatch with ENOENT; unwatch stops events', () => {
    const { d, dom0 } = world([]);
    const w = d.connect(asDomId(0));
    expectOk(op(d, w, XS.WATCH, ['/u', 't']));
    expectErr(op(d, w, XS.WATCH, ['/u', 't']), 'EEXIST');
    expectOk(op(d, w, XS.WATCH, ['/u', 't2'])); // same path, other token: fine
    expectErr(op(d, w, XS.UNWATCH, ['/u', 'zzz']), 'ENOENT');
    expectErr(op(d, w, XS.WATCH, ['/u']), 'EINVAL');
    expectOk(op(d, w, XS.UNWATCH, ['/u', 't']));
    expect(events(write(d, dom0, '/u/x', '1')).map((e) => e.token)).to.deep.equal(['t2']);
    expectOk(op(d, w, XS.RESET_WATCHES, ['']));
    expect(events(write(d, dom0, '/u/x', '2'))).to.deep.equal([]);
    expect(d.watchCount).to.equal(0);
  });

  it('fires @introduceDomain and @releaseDomain, and release drops the guest\'s watches and transactions', () => {
    const { d, dom0, g } = world([4]);
    const g4 = guest(g, 4);
    const w = d.connect(asDomId(0));
    op(d, w, XS.WATCH, ['@introduceDomain', 'intro']);
    op(d, w, XS.WATCH, ['@releaseDomain', 'rel']);
    w.clearOutbox();
    expect(d.introduceDomain(asDomId(9)).ok).to.equal(true);
    expect(latin1(w.take()?.payload ?? new Uint8Array())).to.equal('@introduceDomain\0intro\0');
    op(d, g4, XS.WATCH, ['/local/domain/4', 'mine']);
    op(d, g4, XS.TRANSACTION_START, ['']);
    expect(g4.watches.size).to.equal(1);
    const h = op(d, dom0, XS.RELEASE, ['4']);
    expectOk(h);
    expect(events(h).map((e) => [e.conn === w, e.path, e.token])).to.deep.equal([[true, '@releaseDomain', 'rel']]);
    expect(g4.closed).to.equal(true);
    expect(g4.watches.size).to.equal(0);
    expect(g4.transactions.size).to.equal(0);
    expect(d.isIntroduced(asDomId(4))).to.equal(false);
    expectErr(op(d, dom0, XS.RELEASE, ['4']), 'ENOENT');
    expect(okText(op(d, dom0, XS.IS_DOMAIN_INTRODUCED, ['4']))).to.equal('F\0');
  });

  it('keeps special events from guests unless the special node grants them read', () => {
    const { d, dom0, g } = world([5]);
    const g5 = guest(g, 5);
    op(d, g5, XS.WATCH, ['@introduceDomain', 'i']);
    g5.clearOutbox();
    d.introduceDomain(asDomId(10));
    expect(g5.pending).to.equal(0);
    expectOk(op(d, dom0, XS.SET_PERMS, ['@introduceDomain', 'n0', 'r5']));
    d.introduceDomain(asDomId(11));
    expect(g5.take()?.type).to.equal(XS.WATCH_EVENT);
  });

  it('drops watch events for a connection that never reads, beyond its queue limit', () => {
    const { d, dom0 } = world([], { quota: { queuedEvents: 8 } });
    const lazy = d.connect(asDomId(0));
    d.process(lazy, { type: XS.WATCH, reqId: 1, txId: 0, payload: Buffer.from('/flood\0t\0') });
    for (let i = 0; i < 50; i++) d.process(dom0, { type: XS.WRITE, reqId: 1, txId: 0, payload: Buffer.from(`/flood/${i}\0v`) });
    expect(lazy.queuedEvents).to.equal(8);
    expect(lazy.droppedEvents).to.equal(50 + 1 - 8);
    expect(lazy.take()?.type).to.equal(XS.WATCH);
    expectOk(write(d, dom0, '/flood/ok', 'still serving'));
  });
});
