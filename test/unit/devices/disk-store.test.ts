import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import {
  RAM_CHUNK_SIZE, RamDisk, ReadOnlyDisk, SECTOR_SIZE, describeDiskError, type DiskError, type DiskStore,
} from '../../../dom0/devices/disk-store.ts';
import { FileDisk } from '../../../dom0/devices/disk-store-file.ts';
import { unwrap, type Result } from '../../../shared/result.ts';

const GiB = 1024 ** 3;
const SECTORS_PER_GIB = GiB / SECTOR_SIZE;

function pattern(nSectors: number, seed: number): Uint8Array {
  const b = new Uint8Array(nSectors * SECTOR_SIZE);
  for (let i = 0; i < b.length; i++) b[i] = (i * 31 + seed * 7 + (i >>> 9)) & 0xff;
  return b;
}
function readBack(d: DiskStore, sector: number, nSectors: number): Uint8Array {
  const b = new Uint8Array(nSectors * SECTOR_SIZE).fill(0xaa); // prove the read overwrites every byte
  unwrap(d.read(sector, b), 'read');
  return b;
}
function errorOf<T>(r: Result<T, DiskError>): DiskError {
  if (r.ok) throw new Error('expected an error, got ok');
  return r.error;
}

describe('RamDisk', () => {
  it('costs no memory until written, then one 64 KiB chunk per chunk touched', () => {
    const d = new RamDisk({ sectors: SECTORS_PER_GIB });
    expect(d.sectors).to.equal(SECTORS_PER_GIB);
    expect(d.allocatedBytes).to.equal(0);
    expect(readBack(d, SECTORS_PER_GIB - 8, 8)).to.deep.equal(new Uint8Array(8 * SECTOR_SIZE));
    expect(d.allocatedBytes, 'reads allocate nothing').to.equal(0);
    unwrap(d.write(SECTORS_PER_GIB - 1, pattern(1, 1)));
    expect(d.allocatedChunks).to.equal(1);
    expect(d.allocatedBytes).to.equal(RAM_CHUNK_SIZE);
    expect(readBack(d, SECTORS_PER_GIB - 1, 1)).to.deep.equal(pattern(1, 1));
  });

  it('reads back a write that straddles a chunk boundary, and zeros around it', () => {
    const d = new RamDisk({ sectors: 1024 });
    const data = pattern(4, 2);
    unwrap(d.write(126, data)); // sectors 126..129 span chunks 0 and 1
    expect(d.allocatedChunks).to.equal(2);
    const all = readBack(d, 124, 8);
    expect(all.subarray(0, 2 * SECTOR_SIZE)).to.deep.equal(new Uint8Array(2 * SECTOR_SIZE));
    expect(all.subarray(2 * SECTOR_SIZE, 6 * SECTOR_SIZE)).to.deep.equal(data);
    expect(all.subarray(6 * SECTOR_SIZE)).to.deep.equal(new Uint8Array(2 * SECTOR_SIZE));
  });

  it('honours off and len into the caller buffer', () => {
    const d = new RamDisk({ sectors: 64 });
    const buf = pattern(3, 3);
    unwrap(d.write(10, buf, SECTOR_SIZE, SECTOR_SIZE)); // only the middle sector
    const into = new Uint8Array(3 * SECTOR_SIZE).fill(0x55);
    unwrap(d.read(10, into, 2 * SECTOR_SIZE, SECTOR_SIZE));
    expect(into.subarray(0, 2 * SECTOR_SIZE).every((x) => x === 0x55)).to.equal(true);
    expect(into.subarray(2 * SECTOR_SIZE)).to.deep.equal(buf.subarray(SECTOR_SIZE, 2 * SECTOR_SIZE));
  });

  it('frees whole chunks on discard and zeroes the partly covered ones', () => {
    const d = new RamDisk({ sectors: 4096 });
    unwrap(d.write(0, pattern(512, 4))); // chunks 0..3
    expect(d.allocatedChunks).to.equal(4);
    unwrap(d.discard(100, 300)); // sectors 100..399: chunks 1 and 2 whole, 0 and 3 in part
    expect(d.allocatedChunks).to.equal(2);
    const after = readBack(d, 0, 512);
    const expected = pattern(512, 4);
    expected.fill(0, 100 * SECTOR_SIZE, 400 * SECTOR_SIZE);
    expect(after).to.deep.equal(expected);
  });

  it('discards a whole 1 GiB disk by walking only the allocated chunks', () => {
    const d = new RamDisk({ sectors: SECTORS_PER_GIB });
    unwrap(d.write(0, pattern(1, 5)));
    unwrap(d.write(SECTORS_PER_GIB / 2 + 3, pattern(1, 6)));
    const t0 = performance.now();
    unwrap(d.discard(0, SECTORS_PER_GIB));
    expect(performance.now() - t0).to.be.lessThan(50);
    expect(d.allocatedChunks).to.equal(0);
    expect(readBack(d, SECTORS_PER_GIB / 2 + 3, 1)).to.deep.equal(new Uint8Array(SECTOR_SIZE));
  });

  it('refuses out-of-range sectors with the offending values, and keeps serving', () => {
    const d = new RamDisk({ sectors: 100 });
    const buf = new Uint8Array(2 * SECTOR_SIZE);
    expect(errorOf(d.read(99, buf))).to.deep.equal({ kind: 'out-of-range', op: 'read', sector: 99, nrSectors: 2, sectors: 100 });
    expect(errorOf(d.write(100, buf, 0, SECTOR_SIZE))).to.deep.include({ kind: 'out-of-range', sector: 100, nrSectors: 1 });
    expect(errorOf(d.read(-1, buf))).to.deep.include({ kind: 'out-of-range', sector: -1 });
    expect(errorOf(d.read(1.5, buf))).to.deep.include({ kind: 'out-of-range', sector: 1.5 });
    expect(errorOf(d.read(Number.NaN, buf)).kind).to.equal('out-of-range');
    expect(errorOf(d.read(2 ** 60, buf)).kind).to.equal('out-of-range');
    expect(errorOf(d.discard(50, 51))).to.deep.equal({ kind: 'out-of-range', op: 'discard', sector: 50, nrSectors: 51, sectors: 100 });
    expect(errorOf(d.discard(0, -1)).kind).to.equal('out-of-range');
    expect(d.allocatedChunks, 'a refused write stores nothing').to.equal(0);
    expect(d.counters().errors).to.equal(8);
    unwrap(d.write(98, buf)); // the last two sectors are fine
    expect(readBack(d, 98, 2)).to.deep.equal(buf);
  });

  it('refuses lengths that are not whole sectors and buffer ranges outside the buffer', () => {
    const d = new RamDisk({ sectors: 100 });
    const buf = new Uint8Array(4096);
    expect(errorOf(d.write(0, buf, 0, 511))).to.deep.equal({ kind: 'misaligned', op: 'write', len: 511, sectorSize: 512 });
    expect(errorOf(d.read(0, new Uint8Array(513)))).to.deep.include({ kind: 'misaligned', len: 513 });
    expect(errorOf(d.read(0, buf, 4000, 512))).to.deep.equal({ kind: 'bad-buffer', op: 'read', off: 4000, len: 512, bufLen: 4096 });
    expect(errorOf(d.write(0, buf, -512, 512)).kind).to.equal('bad-buffer');
    expect(errorOf(d.write(0, buf, 0, -512)).kind).to.equal('bad-buffer');
    expect(describeDiskError(errorOf(d.write(0, buf, 0, 511)))).to.match(/length 511 is not a multiple of the 512-byte sector/);
  });

  it('counts operations and bytes, and refuses everything once closed', () => {
    const d = new RamDisk({ sectors: 1000 });
    unwrap(d.write(0, new Uint8Array(3 * SECTOR_SIZE)));
    unwrap(d.read(0, new Uint8Array(2 * SECTOR_SIZE)));
    unwrap(d.read(5, new Uint8Array(SECTOR_SIZE)));
    unwrap(d.flush());
    unwrap(d.discard(0, 7));
    expect(d.counters()).to.deep.equal({
      reads: 2, writes: 1, flushes: 1, discards: 1, bytesRead: 3 * SECTOR_SIZE, bytesWritten: 3 * SECTOR_SIZE, sectorsDiscarded: 7, errors: 0,
    });
    unwrap(d.close());
    unwrap(d.close());
    expect(errorOf(d.read(0, new Uint8Array(SECTOR_SIZE)))).to.deep.equal({ kind: 'closed', op: 'read' });
    expect(errorOf(d.flush())).to.deep.equal({ kind: 'closed', op: 'flush' });
    expect(errorOf(d.discard(0, 1))).to.deep.equal({ kind: 'closed', op: 'discard' });
  });

  it('agrees with a flat-array model over random writes, reads and discards', () => {
    const SECTORS = 600; // ~4.7 chunks: odd size, partial last chunk
    const op = fc.oneof(
      fc.record({ t: fc.constant('w' as const), s: fc.integer({ min: 0, max: SECTORS - 1 }), n: fc.integer({ min: 1, max: 200 }), seed: fc.nat(255) }),
      fc.record({ t: fc.constant('d' as const), s: fc.integer({ min: 0, max: SECTORS - 1 }), n: fc.integer({ min: 0, max: 400 }) }),
      fc.record({ t: fc.constant('r' as const), s: fc.integer({ min: 0, max: SECTORS - 1 }), n: fc.integer({ min: 1, max: 300 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
        const d = new RamDisk({ sectors: SECTORS });
        const model = new Uint8Array(SECTORS * SECTOR_SIZE);
        for (const o of ops) {
          const fits = o.s + o.n <= SECTORS;
          if (o.t === 'w') {
            const data = pattern(o.n, o.seed);
            const r = d.write(o.s, data);
            expect(r.ok).to.equal(fits);
            if (fits) model.set(data, o.s * SECTOR_SIZE);
          } else if (o.t === 'd') {
            const r = d.discard(o.s, o.n);
            expect(r.ok).to.equal(fits);
            if (fits) model.fill(0, o.s * SECTOR_SIZE, (o.s + o.n) * SECTOR_SIZE);
          } else if (fits) {
            expect(readBack(d, o.s, o.n)).to.deep.equal(model.subarray(o.s * SECTOR_SIZE, (o.s + o.n) * SECTOR_SIZE));
          }
        }
        expect(readBack(d, 0, SECTORS)).to.deep.equal(model);
      }),
      { numRuns: 150 },
    );
  });
});

describe('ReadOnlyDisk', () => {
  it('passes reads through and refuses writes and discards without touching the medium', () => {
    const inner = new RamDisk({ sectors: 64 });
    unwrap(inner.write(3, pattern(2, 9)));
    const cd = new ReadOnlyDisk(inner);
    expect(cd.readOnly).to.equal(true);
    expect(cd.sectors).to.equal(64);
    expect(readBack(cd, 3, 2)).to.deep.equal(pattern(2, 9));
    expect(errorOf(cd.write(3, new Uint8Array(SECTOR_SIZE)))).to.deep.equal({ kind: 'read-only', op: 'write' });
    expect(errorOf(cd.discard(0, 64))).to.deep.equal({ kind: 'read-only', op: 'discard' });
    expect(inner.counters().writes, 'only the setup write reached the medium').to.equal(1);
    expect(inner.counters().discards).to.equal(0);
    expect(readBack(inner, 3, 2)).to.deep.equal(pattern(2, 9));
    unwrap(cd.flush());
    expect(cd.counters()).to.deep.include({ reads: 1, writes: 0, discards: 0, flushes: 1, errors: 2 });
    unwrap(cd.close());
    expect(inner.isClosed).to.equal(true);
  });
});

describe('FileDisk', () => {
  let dir: string;
  beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'xensim-disk-')); });
  afterEach(() => { rmSync(dir, { recursive: true, force: true }); });

  it('creates a sparse image of the asked size and keeps its data across close and reopen', () => {
    const path = join(dir, 'a.img');
    const d = unwrap(FileDisk.open({ path, sectors: 2048 }));
    expect(statSync(path).size).to.equal(2048 * SECTOR_SIZE);
    unwrap(d.write(1000, pattern(8, 1)));
    unwrap(d.write(2047, pattern(1, 2)));
    unwrap(d.flush());
    unwrap(d.close());
    const again = unwrap(FileDisk.open({ path })); // size from the file
    expect(again.sectors).to.equal(2048);
    expect(readBack(again, 1000, 8)).to.deep.equal(pattern(8, 1));
    expect(readBack(again, 2047, 1)).to.deep.equal(pattern(1, 2));
    expect(readBack(again, 0, 4)).to.deep.equal(new Uint8Array(4 * SECTOR_SIZE));
    unwrap(again.close());
    // The bytes really are at sector * 512 in a raw image.
    expect(new Uint8Array(readFileSync(path)).subarray(1000 * SECTOR_SIZE, 1008 * SECTOR_SIZE)).to.deep.equal(pattern(8, 1));
  });

  it('extends a shorter image and refuses images that cannot back the disk', () => {
    const path = join(dir, 'b.img');
    writeFileSync(path, pattern(4, 3));
    const d = unwrap(FileDisk.open({ path, sectors: 16 }));
    expect(statSync(path).size).to.equal(16 * SECTOR_SIZE);
    expect(readBack(d, 0, 4)).to.deep.equal(pattern(4, 3));
    unwrap(d.close());

    const odd = join(dir, 'odd.img');
    writeFileSync(odd, new Uint8Array(1000));
    expect(errorOf(FileDisk.open({ path: odd }))).to.deep.include({ kind: 'bad-image', path: odd, size: 1000 });
    expect(errorOf(FileDisk.open({ path: odd, sectors: 4, readOnly: true }))).to.deep.include({ kind: 'bad-image', size: 1000 });
    expect(errorOf(FileDisk.open({ path: join(dir, 'missing.iso'), readOnly: true }))).to.deep.include({ kind: 'io-error', op: 'open', code: 'ENOENT' });
    expect(errorOf(FileDisk.open({ path: join(dir, 'new.img') }))).to.deep.include({ kind: 'bad-image', size: 0 });
  });

  it('opens an image read-only like a CD-ROM: reads work, writes are refused and the file is unchanged', () => {
    const path = join(dir, 'cd.iso');
    writeFileSync(path, pattern(8, 4));
    const cd = unwrap(FileDisk.open({ path, readOnly: true }));
    expect(cd.readOnly).to.equal(true);
    expect(readBack(cd, 2, 2)).to.deep.equal(pattern(8, 4).subarray(2 * SECTOR_SIZE, 4 * SECTOR_SIZE));
    expect(errorOf(cd.write(0, new Uint8Array(SECTOR_SIZE)))).to.deep.equal({ kind: 'read-only', op: 'write' });
    expect(errorOf(cd.discard(0, 1))).to.deep.equal({ kind: 'read-only', op: 'discard' });
    unwrap(cd.close());
    expect(new Uint8Array(readFileSync(path))).to.deep.equal(pattern(8, 4));
  });

  it('reads discarded ranges back as zeros', () => {
    const path = join(dir, 'c.img');
    const d = unwrap(FileDisk.open({ path, sectors: 512 }));
    unwrap(d.write(0, pattern(512, 5)));
    unwrap(d.discard(10, 300));
    const expected = pattern(512, 5);
    expected.fill(0, 10 * SECTOR_SIZE, 310 * SECTOR_SIZE);
    expect(readBack(d, 0, 512)).to.deep.equal(expected);
    unwrap(d.close());
  });

  it('keeps flushed writes and loses unflushed ones when the volatile cache loses power', () => {
    const path = join(dir, 'v.img');
    const d = unwrap(FileDisk.open({ path, sectors: 1024, volatileWriteCache: true }));
    unwrap(d.write(100, pattern(4, 1))); // A
    unwrap(d.flush());
    expect(d.dirtySectors).to.equal(0);
    unwrap(d.write(102, pattern(4, 2))); // B overlaps A's last two sectors, not flushed
    unwrap(d.write(500, pattern(130, 3))); // C spans chunk boundaries, not flushed
    expect(d.dirtySectors).to.equal(134);
    // Read-your-writes before the crash: the cache is in front of the file.
    expect(readBack(d, 102, 4)).to.deep.equal(pattern(4, 2));
    expect(d.crash()).to.deep.equal({ lostSectors: 134 });
    expect(errorOf(d.read(0, new Uint8Array(SECTOR_SIZE))).kind).to.equal('closed');

    const after = unwrap(FileDisk.open({ path }));
    expect(readBack(after, 100, 4), 'flushed A survives, B is lost').to.deep.equal(pattern(4, 1));
    expect(readBack(after, 500, 130)).to.deep.equal(new Uint8Array(130 * SECTOR_SIZE));
    unwrap(after.close());
  });

  it('writes the volatile cache back on flush and on an orderly close, discards included', () => {
    const path = join(dir, 'w.img');
    const d = unwrap(FileDisk.open({ path, sectors: 1024, volatileWriteCache: true }));
    unwrap(d.write(0, pattern(1024, 6)));
    unwrap(d.flush());
    unwrap(d.discard(64, 256)); // chunk 1 whole (null data) and parts of chunks 0 and 2
    unwrap(d.write(200, pattern(1, 7)));
    const expected = pattern(1024, 6);
    expected.fill(0, 64 * SECTOR_SIZE, 320 * SECTOR_SIZE);
    expected.set(pattern(1, 7), 200 * SECTOR_SIZE);
    expect(readBack(d, 0, 1024)).to.deep.equal(expected);
    expect(new Uint8Array(readFileSync(path)), 'nothing reached the file yet').to.deep.equal(pattern(1024, 6));
    unwrap(d.close()); // orderly detach flushes
    expect(new Uint8Array(readFileSync(path))).to.deep.equal(expected);
  });

  it('agrees with a flat-array model when random operations mix with flushes and crashes', () => {
    const SECTORS = 400;
    const op = fc.oneof(
      fc.record({ t: fc.constant('w' as const), s: fc.integer({ min: 0, max: SECTORS - 1 }), n: fc.integer({ min: 1, max: 150 }), seed: fc.nat(255) }),
      fc.record({ t: fc.constant('d' as const), s: fc.integer({ min: 0, max: SECTORS - 1 }), n: fc.integer({ min: 1, max: 300 }) }),
      fc.record({ t: fc.constant('f' as const) }),
      fc.record({ t: fc.constant('crash' as const) }),
    );
    const path = join(dir, 'm.img');
    fc.assert(
      fc.property(fc.array(op, { maxLength: 25 }), (ops) => {
        rmSync(path, { force: true });
        let d = unwrap(FileDisk.open({ path, sectors: SECTORS, volatileWriteCache: true }));
        const durable = new Uint8Array(SECTORS * SECTOR_SIZE); // what the file must hold after a crash
        const current = new Uint8Array(SECTORS * SECTOR_SIZE); // what reads must see now
        for (const o of ops) {
          if (o.t === 'f') { unwrap(d.flush()); durable.set(current); continue; }
          if (o.t === 'crash') {
            d.crash();
            current.set(durable);
            d = unwrap(FileDisk.open({ path, volatileWriteCache: true }));
            expect(readBack(d, 0, SECTORS)).to.deep.equal(durable);
            continue;
          }
          if (o.s + o.n > SECTORS) continue;
          if (o.t === 'w') {
            const data = pattern(o.n, o.seed);
            unwrap(d.write(o.s, data));
            current.set(data, o.s * SECTOR_SIZE);
          } else {
            unwrap(d.discard(o.s, o.n));
            current.fill(0, o.s * SECTOR_SIZE, (o.s + o.n) * SECTOR_SIZE);
          }
        }
        expect(readBack(d, 0, SECTORS)).to.deep.equal(current);
        unwrap(d.close());
      }),
      { numRuns: 60 },
    );
  });

  it('keeps unflushed writes when only the writing process dies (no volatile cache)', function () {
    this.timeout(20000);
    const path = join(dir, 'k.img');
    const mod = fileURLToPath(new URL('../../../dom0/devices/disk-store-file.ts', import.meta.url));
    const script = `
      import { FileDisk } from ${JSON.stringify(mod)};
      const d = FileDisk.open({ path: ${JSON.stringify(path)}, sectors: 64 });
      if (!d.ok) process.exit(3);
      const b = new Uint8Array(512).fill(0x5a);
      if (!d.value.write(7, b).ok) process.exit(4);
      process.kill(process.pid, 'SIGKILL');`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.signal, r.stderr).to.equal('SIGKILL');
    const d = unwrap(FileDisk.open({ path }));
    expect(readBack(d, 7, 1)).to.deep.equal(new Uint8Array(SECTOR_SIZE).fill(0x5a));
    unwrap(d.close());
  });
});
