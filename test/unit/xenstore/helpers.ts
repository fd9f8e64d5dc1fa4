/**
 * Test helpers for driving the xenstored core directly (no transport):
 * build requests, run them through `handle`, and read replies and events.
 */
import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import { XS, type XsErrno } from '../../../shared/abi/xenstore.ts';
import { XenStored, type XenStoredOptions, type XsConnection, type XsHandled } from '../../../dom0/xenstore/xenstored.ts';
import { latin1, payloadOf } from '../../../dom0/xenstore/wire.ts';

export interface Call {
  readonly tx?: number;
  readonly reqId?: number;
}

/** [op d conn type strings] sends a request whose payload is the strings, each NUL-terminated. */
export function op(d: XenStored, conn: XsConnection, type: number, strings: readonly string[], c: Call = {}): XsHandled {
  return d.handle(conn, { type, reqId: c.reqId ?? 7, txId: c.tx ?? 0, payload: payloadOf(...strings) });
}

/** [raw d conn type payload] sends a request with exactly these payload bytes. */
export function raw(d: XenStored, conn: XsConnection, type: number, payload: Uint8Array, c: Call = {}): XsHandled {
  return d.handle(conn, { type, reqId: c.reqId ?? 7, txId: c.tx ?? 0, payload });
}

export function write(d: XenStored, conn: XsConnection, path: string, value: string, c: Call = {}): XsHandled {
  return raw(d, conn, XS.WRITE, new Uint8Array(Buffer.from(`${path}\0${value}`, 'latin1')), c);
}
export function read(d: XenStored, conn: XsConnection, path: string, c: Call = {}): XsHandled {
  return op(d, conn, XS.READ, [path], c);
}

/** The reply payload as a string; fails the test if the reply is an error. */
export function okText(h: XsHandled): string {
  const text = latin1(h.reply.payload);
  expect(h.reply.type, `expected success, got ${h.reply.type === XS.ERROR ? text : h.reply.type}`).to.not.equal(XS.ERROR);
  return text;
}

/** Asserts the reply is XS_ERROR with this errno name. */
export function expectErr(h: XsHandled, errno: XsErrno): void {
  expect(h.reply.type, `expected ${errno}, got success "${latin1(h.reply.payload)}"`).to.equal(XS.ERROR);
  expect(latin1(h.reply.payload)).to.equal(`${errno}\0`);
}

export function expectOk(h: XsHandled): void {
  expect(okText(h)).to.equal('OK\0');
}

/** The watch events of a handled request as {conn, path, token}. */
export function events(h: XsHandled): { conn: XsConnection; path: string; token: string }[] {
  return h.events.map((e) => {
    expect(e.msg.type).to.equal(XS.WATCH_EVENT);
    expect(e.msg.reqId).to.equal(0);
    expect(e.msg.txId).to.equal(0);
    const [path, token] = latin1(e.msg.payload).split('\0');
    return { conn: e.conn, path: path as string, token: token as string };
  });
}

/** A daemon with dom0 and guests 1..n connected, each guest owning /local/domain/<id>. */
export function world(guests: readonly number[] = [1, 2], opts: XenStoredOptions = {}): {
  d: XenStored;
  dom0: XsConnection;
  g: Map<number, XsConnection>;
} {
  const d = new XenStored(opts);
  const dom0 = d.connect(asDomId(0));
  const g = new Map<number, XsConnection>();
  for (const id of guests) {
    expect(d.introduceDomain(asDomId(id)).ok).to.equal(true);
    expectOk(op(d, dom0, XS.MKDIR, [`/local/domain/${id}`]));
    expectOk(op(d, dom0, XS.SET_PERMS, [`/local/domain/${id}`, `n${id}`, 'r0']));
    g.set(id, d.connect(asDomId(id)));
  }
  return { d, dom0, g };
}

export function guest(g: Map<number, XsConnection>, id: number): XsConnection {
  const c = g.get(id);
  if (!c) throw new Error(`no guest ${id}`);
  return c;
}
