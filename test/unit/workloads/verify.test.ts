import { expect } from 'chai';
import { asDomId } from '../../../shared/types.ts';
import {
  GEN_NEVER,
  GEN_UNKNOWN,
  VERIFY_HDR,
  VERIFY_MAGIC,
  VerifyBuffer,
  VerifyTracker,
  crc32c,
  crc32cUpdate,
  describeMismatch,
  readHeader,
} from '../../../domU/workloads/verify.ts';

const SECTORS = 4096;

function flip(b: Uint8Array, at: number, xor: number): void {
  b[at] = (b[at] as number) ^ xor;
}

function block(nbytes: number): VerifyBuffer {
  return new VerifyBuffer(new Uint8Array(nbytes));
}

/** Writes a block through the tracker as an acknowledged write and returns its bytes. */
function ackedWrite(tr: VerifyTracker, lba: number, nbytes: number): { vb: VerifyBuffer; gen: number } {
  const vb = block(nbytes);
  const gen = tr.fillWrite(vb, lba, nbytes);
  tr.writeDone(lba, nbytes / 512, gen, true);
  return { vb, gen };
}

describe('crc32c', () => {
  it('matches the standard check value and the RFC 3720 (iSCSI) vectors', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).to.equal(0xe3069283);
    expect(crc32c(new Uint8Array(32))).to.equal(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).to.equal(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).to.equal(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).to.equal(0x113fdb5c);
  });

  it('gives the same value computed in pieces as in one go, at every split and length', () => {
    const data = Uint8Array.from({ length: 77 }, (_, i) => (i * 37 + 11) & 0xff);
    for (let len = 0; len <= data.length; len++) {
      const whole = crc32c(data, 0, len);
      for (let cut = 0; cut <= len; cut += 5) expect(crc32cUpdate(crc32c(data, 0, cut), data, cut, len)).to.equal(whole);
    }
  });
});

describe('VerifyTracker', () => {
  const dom1 = asDomId(1);
  const dom2 = asDomId(2);

  it('stamps every sector with magic, domid, its own lba, the generation and a valid checksum', () => {
    const tr = new VerifyTracker(dom1, SECTORS);
    const { vb, gen } = ackedWrite(tr, 100, 4096);
    for (let s = 0; s < 8; s++) {
      const h = readHeader(vb.u8, s * 512);
      expect(h).to.include({ magic: VERIFY_MAGIC, domid: 1, index: s, lba: 100 + s, generation: gen, length: 4096 });
      expect(h.checksum).to.equal(h.computedChecksum);
    }
    expect(tr.expected(100)).to.equal(gen);
    expect(tr.expected(99)).to.equal(GEN_NEVER);
  });

  it('makes the payload a function of (domid, lba, generation) only', () => {
    const a = new VerifyTracker(dom1, SECTORS);
    const b = new VerifyTracker(dom1, SECTORS);
    const x = ackedWrite(a, 8, 512).vb.u8;
    const y = ackedWrite(b, 8, 512).vb.u8;
    expect(Buffer.from(x).equals(Buffer.from(y))).to.equal(true);
    const z = ackedWrite(new VerifyTracker(dom2, SECTORS), 8, 512).vb.u8;
    expect(Buffer.from(x.subarray(VERIFY_HDR.SIZE)).equals(Buffer.from(z.subarray(VERIFY_HDR.SIZE)))).to.equal(false);
  });

  it('accepts a read that returns exactly the acknowledged data, at any read size', () => {
    const tr = new VerifyTracker(dom1, SECTORS);
    const w1 = ackedWrite(tr, 0, 4096);
    const w2 = ackedWrite(tr, 8, 4096);
    const big = block(8192);
    big.u8.set(w1.vb.u8, 0);
    big.u8.set(w2.vb.u8, 4096);
    expect(tr.checkRead(big, 0, 8192)).to.equal(0);
    const small = block(1024);
    small.u8.set(w2.vb.u8.subarray(1024, 2048));
    expect(tr.checkRead(small, 10, 1024)).to.equal(0);
    expect(tr.mismatchCount).to.equal(0);
    expect(tr.verifiedSectors).to.equal(18);
  });

  it('catches a lost write: the read returns the previous generation, reported as stale with both generations', () => {
    const tr = new VerifyTracker(dom1, SECTORS);
    const old = ackedWrite(tr, 40, 4096);
    const newer = ackedWrite(tr, 40, 4096); // acknowledged, but the device "lost" it
    expect(tr.checkRead(old.vb, 40, 4096)).to.equal(8);
    const m = tr.mismatches[0];
    expect(m?.kind).to.equal('stale');
    expect(m?.lba).to.equal(40);
    expect(m?.expectedGeneration).to.equal(newer.gen);
    expect(m?.found?.generation).to.equal(old.gen);
    expect(m?.badFields).to.deep.equal(['generation']);
    expect(tr.mismatchesByKind.stale).to.equal(8);
    expect(describeMismatch(m!)).to.match(/^stale: lba 40 expected dom1 gen 2, found dom1 lba 40 gen 1/);
  });

  it('catches a write that never landed on fresh disk as unwritten', () => {
    const tr = new VerifyTracker(dom1, SECTORS);
    ackedWrite(tr, 0, 1024);
    expect(tr.checkRead(block(1024), 0, 1024)).to.equal(2);
    expect(tr.mismatches.map((m) => m.kind)).to.deep.equal(['unwritten', 'unwritten']);
    expect(tr.mismatches[0]?.found).to.equal(undefined);
    expect(tr.mismatches[0]?.badFields).to.deep.equal(['magic']);
  });

  it('catches a misdirected write from another domain, naming the domain and lba it carries', () => {
    const mine = new VerifyTracker(dom1, SECTORS);
    const theirs = new VerifyTracker(dom2, SECTORS);
    ackedWrite(mine, 200, 512);
    const stray = ackedWrite(theirs, 900, 512); // dom2 meant lba 900, it landed on our 200
    expect(mine.checkRead(stray.vb, 200, 512)).to.equal(1);
    const m = mine.mismatches[0]!;
    expect(m.kind).to.equal('misdirected');
    expect(m.found).to.include({ domid: 2, lba: 900, checksumOk: true });
    expect(m.badFields).to.include.members(['domid', 'lba']);
  });

  it("catches a misdirected write within the domain (another lba's data)", () => {
    const tr = new VerifyTracker(dom1, SECTORS);
    ackedWrite(tr, 300, 512);
    const other = ackedWrite(tr, 301, 512);
    expect(tr.checkRead(other.vb, 300, 512)).to.equal(1);
    expect(tr.mismatches[0]).to.include({ kind: 'misdirected', lba: 300 });
    expect(tr.mismatches[0]?.found?.lba).to.equal(301);
  });

  it('calls a partly landed write torn: new sectors beside old ones of the same write', () => {
    const tr = new VerifyTracker(dom1, SECTORS);
    const old = ackedWrite(tr, 64, 4096);
    const neu = ackedWrite(tr, 64, 4096);
    const mixed = block(4096);
    mixed.u8.set(neu.vb.u8.subarray(0, 3 * 512), 0); // 3 sectors landed
    mixed.u8.set(old.vb.u8.subarray(3 * 512), 3 * 512); // 5 still old
    expect(tr.checkRead(mixed, 64, 4096)).to.equal(5);
    expect(tr.mismatches.map((m) => [m.kind, m.lba])).to.deep.equal([64 + 3, 64 + 4, 64 + 5, 64 + 6, 64 + 7].map((l) => ['torn', l]));
    // Same for a torn first write over a never-written area.
    const fresh = new VerifyTracker(dom1, SECTORS);
    const w = ackedWrite(fresh, 0, 2048);
    const half = block(2048);
    half.u8.set(w.vb.u8.subarray(0, 1024));
    expect(fresh.checkRead(half, 0, 2048)).to.equal(2);
    expect(fresh.mismatches.map((m) => m.kind)).to.deep.equal(['torn', 'torn']);
  });

  it('reports a corrupted byte as corrupt, with its exact offset in the sector', () => {
    const tr = new VerifyTracker(dom1, SECTORS);
    const { vb } = ackedWrite(tr, 16, 4096);
    flip(vb.u8, 2 * 512 + 100, 0x20);
    flip(vb.u8, 2 * 512 + 101, 0x01);
    flip(vb.u8, 5 * 512 + 300, 0xff);
    expect(tr.checkRead(vb, 16, 4096)).to.equal(2);
    const [a, b] = tr.mismatches;
    expect(a).to.include({ kind: 'corrupt', lba: 18, badByteCount: 2, readOffset: 1024 });
    expect(a?.badBytes).to.deep.equal([{ offset: 100, length: 2 }]);
    expect(a?.badFields).to.deep.equal(['checksum']);
    expect(b).to.include({ kind: 'corrupt', lba: 21, badByteCount: 1 });
    expect(b?.badBytes).to.deep.equal([{ offset: 300, length: 1 }]);
  });

  it('with fullPayloadCheck, catches a payload that is wrong even though header and checksum agree', () => {
    const tr = new VerifyTracker(dom1, SECTORS, { fullPayloadCheck: true });
    const { vb } = ackedWrite(tr, 0, 512);
    flip(vb.u8, 200, 1);
    // Re-seal the checksum so only the payload comparison can notice.
    const h = crc32cUpdate(crc32c(vb.u8, 0, VERIFY_HDR.CHECKSUM), vb.u8, VERIFY_HDR.CHECKSUM + 4, 512);
    vb.u32[VERIFY_HDR.CHECKSUM / 4] = h;
    expect(tr.checkRead(vb, 0, 512)).to.equal(1);
    expect(tr.mismatches[0]?.kind).to.equal('corrupt');
    // The flipped payload byte, and the re-sealed checksum field, differ from what was written.
    expect(tr.mismatches[0]?.badBytes).to.deep.include({ offset: 200, length: 1 });
    expect(tr.mismatches[0]?.badBytes[0]?.offset).to.be.within(VERIFY_HDR.CHECKSUM, VERIFY_HDR.CHECKSUM + 3);
    expect(new VerifyTracker(dom1, SECTORS).checkRead(vb, 0, 512)).to.equal(0); // unwritten there: not checked
  });

  it('does not check sectors whose content is unknown: never written, failed write, discarded', () => {
    const tr = new VerifyTracker(dom1, SECTORS);
    const failed = block(512);
    tr.writeDone(5, 1, tr.fillWrite(failed, 5, 512), false);
    expect(tr.expected(5)).to.equal(GEN_UNKNOWN);
    ackedWrite(tr, 6, 512);
    tr.forget(6, 1);
    expect(tr.checkRead(block(512 * 3), 4, 512 * 3)).to.equal(0);
    expect(tr.unverifiedSectors).to.equal(3);
    expect(tr.written(4, 3)).to.equal(false);
  });

  it('locks ranges so no two in-flight I/Os overlap, and refuses to unlock what is not locked', () => {
    const tr = new VerifyTracker(dom1, SECTORS);
    expect(tr.tryLock(10, 8)).to.equal(true);
    expect(tr.tryLock(17, 8)).to.equal(false);
    expect(tr.tryLock(18, 8)).to.equal(true);
    tr.unlock(10, 8);
    expect(tr.tryLock(17, 1)).to.equal(true);
    expect(() => tr.unlock(40, 1)).to.throw(/not locked/);
  });

  it('keeps only maxReports reports but counts every mismatch', () => {
    const tr = new VerifyTracker(dom1, SECTORS, { maxReports: 3 });
    ackedWrite(tr, 0, 4096);
    expect(tr.checkRead(block(4096), 0, 4096)).to.equal(8);
    expect(tr.mismatches).to.have.length(3);
    expect(tr.mismatchCount).to.equal(8);
  });

  it('tracks sectors beyond the first 32 MiB chunk and near the device end', () => {
    const tr = new VerifyTracker(dom1, 1 << 20);
    const { vb } = ackedWrite(tr, (1 << 20) - 8, 4096);
    expect(tr.checkRead(vb, (1 << 20) - 8, 4096)).to.equal(0);
    const far = ackedWrite(tr, 70_000, 4096);
    expect(tr.checkRead(far.vb, 70_000, 4096)).to.equal(0);
    expect(tr.verifiedSectors).to.equal(16);
  });
});
