import { expect } from 'chai';
import fc from 'fast-check';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  XS, XSD_SOCKMSG, XENSTORE_ABS_PATH_MAX, XENSTORE_PAYLOAD_MAX, XENSTORE_DOMAIN_INTERFACE, XENSTORE_REL_PATH_MAX,
  XENSTORE_RING_SIZE, XSD_ERRORS, XS_TYPE_COUNT,
} from '../../../shared/abi/xenstore.ts';
import { XsWireDecoder, encodeXsMsg, splitStrings, type XsMsg } from '../../../dom0/xenstore/wire.ts';

function header(type: number, reqId: number, txId: number, len: number): Uint8Array {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(reqId, 4);
  b.writeUInt32LE(txId, 8);
  b.writeUInt32LE(len, 12);
  return new Uint8Array(b);
}

describe('xenstore wire format', () => {
  it('lays out xsd_sockmsg and the ring page as xs_wire.h does', () => {
    expect(XSD_SOCKMSG).to.deep.equal({ TYPE: 0, REQ_ID: 4, TX_ID: 8, LEN: 12, SIZE: 16 });
    expect(XENSTORE_DOMAIN_INTERFACE).to.deep.equal({
      REQ: 0, RSP: 1024, REQ_CONS: 2048, REQ_PROD: 2052, RSP_CONS: 2056, RSP_PROD: 2060,
      SERVER_FEATURES: 2064, CONNECTION: 2068, ERROR: 2072, SIZE: 2076,
    });
    expect([XS.WATCH_EVENT, XS.ERROR, XS.RESET_WATCHES, XS.DIRECTORY_PART, XS_TYPE_COUNT]).to.deep.equal([15, 16, 21, 22, 23]);
    expect(XSD_ERRORS[0]).to.equal('EINVAL');
    expect(XSD_ERRORS.length).to.equal(16);
  });

  it('matches the offsets, sizes and numbers gcc reports for /usr/include/xen/io/xs_wire.h', function () {
    if (spawnSync('gcc', ['--version']).status !== 0) {
      console.warn('SKIPPED: xs_wire.h layout oracle because gcc is not installed');
      this.skip();
    }
    if (!existsSync('/usr/include/xen/io/xs_wire.h')) {
      console.warn('SKIPPED: xs_wire.h layout oracle because libxen-dev is not installed');
      this.skip();
    }
    this.timeout(30000);
    const dir = mkdtempSync(join(tmpdir(), 'xs-oracle-'));
    try {
      const src = `#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <xen/io/xs_wire.h>
#define O(t, f) printf("\\"%s\\":%zu,", #f, offsetof(struct t, f))
int main(void) {
  printf("{");
  O(xsd_sockmsg, type); O(xsd_sockmsg, req_id); O(xsd_sockmsg, tx_id); O(xsd_sockmsg, len);
  printf("\\"sockmsg\\":%zu,", sizeof(struct xsd_sockmsg));
  O(xenstore_domain_interface, req); O(xenstore_domain_interface, rsp);
  O(xenstore_domain_interface, req_cons); O(xenstore_domain_interface, req_prod);
  O(xenstore_domain_interface, rsp_cons); O(xenstore_domain_interface, rsp_prod);
  O(xenstore_domain_interface, server_features); O(xenstore_domain_interface, connection);
  O(xenstore_domain_interface, error);
  printf("\\"intf\\":%zu,", sizeof(struct xenstore_domain_interface));
  printf("\\"types\\":[%d,%d,%d,%d,%d,%d],", XS_CONTROL, XS_WATCH_EVENT, XS_ERROR, XS_RESET_WATCHES, XS_DIRECTORY_PART, XS_TYPE_COUNT);
  printf("\\"limits\\":[%d,%d,%d,%d],", XENSTORE_PAYLOAD_MAX, XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX, XENSTORE_RING_SIZE);
  printf("\\"errors\\":[");
  for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++) printf("%s\\"%s\\"", i ? "," : "", xsd_errors[i].errstring);
  printf("]}\\n");
  return 0;
}
`;
      writeFileSync(join(dir, 'o.c'), src);
      execFileSync('gcc', ['-std=gnu11', '-Wall', '-o', join(dir, 'o'), join(dir, 'o.c')]);
      const got = JSON.parse(execFileSync(join(dir, 'o')).toString()) as Record<string, unknown>;
      expect(got).to.deep.equal({
        type: XSD_SOCKMSG.TYPE, req_id: XSD_SOCKMSG.REQ_ID, tx_id: XSD_SOCKMSG.TX_ID, len: XSD_SOCKMSG.LEN, sockmsg: XSD_SOCKMSG.SIZE,
        req: XENSTORE_DOMAIN_INTERFACE.REQ, rsp: XENSTORE_DOMAIN_INTERFACE.RSP,
        req_cons: XENSTORE_DOMAIN_INTERFACE.REQ_CONS, req_prod: XENSTORE_DOMAIN_INTERFACE.REQ_PROD,
        rsp_cons: XENSTORE_DOMAIN_INTERFACE.RSP_CONS, rsp_prod: XENSTORE_DOMAIN_INTERFACE.RSP_PROD,
        server_features: XENSTORE_DOMAIN_INTERFACE.SERVER_FEATURES, connection: XENSTORE_DOMAIN_INTERFACE.CONNECTION,
        error: XENSTORE_DOMAIN_INTERFACE.ERROR, intf: XENSTORE_DOMAIN_INTERFACE.SIZE,
        types: [XS.CONTROL, XS.WATCH_EVENT, XS.ERROR, XS.RESET_WATCHES, XS.DIRECTORY_PART, XS_TYPE_COUNT],
        limits: [XENSTORE_PAYLOAD_MAX, XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX, XENSTORE_RING_SIZE],
        errors: [...XSD_ERRORS],
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('encodes little-endian headers byte for byte', () => {
    const m = encodeXsMsg({ type: XS.READ, reqId: 0x01020304, txId: 7, payload: new Uint8Array([0x2f, 0]) });
    expect([...m]).to.deep.equal([...header(2, 0x01020304, 7, 2), 0x2f, 0]);
  });

  it('reassembles messages fed one byte at a time and several per chunk', () => {
    const msgs: XsMsg[] = [
      { type: XS.WRITE, reqId: 1, txId: 0, payload: new Uint8Array(Buffer.from('/a\0value')) },
      { type: XS.TRANSACTION_START, reqId: 2, txId: 0, payload: new Uint8Array([0]) },
      { type: XS.DIRECTORY, reqId: 3, txId: 9, payload: new Uint8Array(0) },
    ];
    const stream = Buffer.concat(msgs.map(encodeXsMsg));
    const slow = new XsWireDecoder();
    const got: XsMsg[] = [];
    for (let i = 0; i < stream.length; i++) {
      const r = slow.push(stream, i, 1);
      expect(r.ok).to.equal(true);
      if (r.ok) got.push(...r.value);
    }
    expect(got).to.deep.equal(msgs);
    const fast = new XsWireDecoder().push(stream);
    expect(fast.ok && fast.value).to.deep.equal(msgs);
  });

  it('decodes any chunking of a valid stream into the same messages (property)', () => {
    const msgArb = fc.record({
      type: fc.integer({ min: 0, max: XS_TYPE_COUNT - 1 }),
      reqId: fc.nat(),
      txId: fc.nat(),
      payload: fc.uint8Array({ maxLength: 300 }),
    });
    fc.assert(fc.property(fc.array(msgArb, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (msgs, cuts) => {
      const stream = Buffer.concat(msgs.map(encodeXsMsg));
      const dec = new XsWireDecoder();
      const got: XsMsg[] = [];
      let off = 0;
      let k = 0;
      while (off < stream.length) {
        const n = Math.min(cuts[k++ % cuts.length] as number, stream.length - off);
        const r = dec.push(stream, off, n);
        if (!r.ok) return false;
        got.push(...r.value);
        off += n;
      }
      return JSON.stringify(got.map((m) => ({ ...m, payload: [...m.payload] }))) ===
        JSON.stringify(msgs.map((m) => ({ ...m, payload: [...m.payload] }))) && dec.partial === 0;
    }), { seed: 0x5eed, numRuns: 200 });
  });

  it('refuses len > 4096 and unknown types for good, but accepts exactly 4096', () => {
    const okMax = new XsWireDecoder().push(Buffer.concat([header(XS.WRITE, 0, 0, XENSTORE_PAYLOAD_MAX), Buffer.alloc(XENSTORE_PAYLOAD_MAX)]));
    expect(okMax.ok && okMax.value.length).to.equal(1);
    const big = new XsWireDecoder();
    const r = big.push(header(XS.WRITE, 0, 0, XENSTORE_PAYLOAD_MAX + 1));
    expect(!r.ok && r.error).to.deep.equal({ kind: 'payload-too-long', len: 4097, type: XS.WRITE });
    expect(big.push(header(XS.READ, 0, 0, 0)).ok).to.equal(false); // sticky
    const odd = new XsWireDecoder().push(header(0xffff, 0, 0, 0));
    expect(!odd.ok && odd.error).to.deep.equal({ kind: 'unknown-type', type: 0xffff });
    const reset = new XsWireDecoder();
    reset.push(header(99, 0, 0, 0));
    reset.reset();
    const again = reset.push(header(XS.READ, 5, 0, 0));
    expect(again.ok && again.value[0]?.reqId).to.equal(5);
  });

  it('splits NUL-terminated strings like get_strings, ignoring bytes after the last NUL', () => {
    expect(splitStrings(new Uint8Array(Buffer.from('a\0bc\0tail')))).to.deep.equal(['a', 'bc']);
    expect(splitStrings(new Uint8Array(0))).to.deep.equal([]);
    expect(splitStrings(new Uint8Array([0, 0]))).to.deep.equal(['', '']);
  });
});
