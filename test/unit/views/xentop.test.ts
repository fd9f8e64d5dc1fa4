import { expect } from 'chai';
import type { DomainState, DomainStats, NodeStats } from '../../../cli/views/stats.ts';
import { hms, intFieldWidth, xentopBatch, xentopSummary, type XentopSample } from '../../../cli/views/xentop.ts';
import { gccMissing, runC } from './c-oracle.ts';

const idle: DomainState = { running: false, blocked: false, paused: false, dying: false, shutdown: null };
const node: NodeStats = { xenVersion: '4.17.3', totMemKiB: 16776740, freeMemKiB: 7776740, numCpus: 8, cpuHz: 2_394_000_000 };
const net0 = (o: Partial<DomainStats['nets'][number]> = {}): DomainStats['nets'][number] => ({
  txBytes: 0, txPackets: 0, txErrs: 0, txDrop: 0, rxBytes: 0, rxPackets: 0, rxErrs: 0, rxDrop: 0, ...o,
});

const dom0: DomainStats = {
  name: 'Domain-0', domid: 0, state: { ...idle, running: true }, cpuNs: 11_794_300_000_000n, memKiB: 768000, maxMemKiB: null,
  vcpus: 4, vcpusOnline: 4, nets: [], vbds: [],
};
const web: DomainStats = {
  name: 'guest-web', domid: 3, state: { ...idle, blocked: true }, cpuNs: 42_700_000_000n, memKiB: 524288, maxMemKiB: 524288,
  vcpus: 2, vcpusOnline: 2,
  nets: [net0({ txBytes: 3 * 1048576, rxBytes: 10240, rxPackets: 80, txPackets: 2100, rxDrop: 1 })],
  vbds: [
    { dev: 51712, backendType: 'blkback', ooReqs: 2, rdReqs: 1000, wrReqs: 2000, rdSects: 8000, wrSects: 16000 },
    { dev: 51728, backendType: 'blkback', ooReqs: 0, rdReqs: 5, wrReqs: 0, rdSects: 40, wrSects: 0 },
  ],
};
const db: DomainStats = {
  name: 'crashed-db', domid: 5, state: { ...idle, shutdown: 'crash' }, cpuNs: 5_000_000_000n, memKiB: 262144, maxMemKiB: 262144,
  vcpus: 1, vcpusOnline: 1, nets: [], vbds: [{ dev: 51712, backendType: 'blkback', error: true, ooReqs: 0, rdReqs: 0, wrReqs: 0, rdSects: 0, wrSects: 0 }],
};
const sample: XentopSample = {
  node, time: '12:34:56', domains: [dom0, web, db],
  prev: { domains: [{ domid: 0, cpuNs: 11_793_800_000_000n }, { domid: 3, cpuNs: 40_700_000_000n }], elapsedUs: 1_000_000 },
};

const HEADER = '      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID\n';
const ROW_DB = 'crashed-db ---c--          5    0.0     262144    1.6     262144       1.6     1    0        0        0    1        -        -        -          -          -    0\n';
const ROW_DOM0 = '  Domain-0 -----r      11794   50.0     768000    4.6   no limit       n/a     4    0        0        0    0        0        0        0          0          0    0\n';
const ROW_WEB = ' guest-web --b---         42  200.0     524288    3.1     524288       3.1     2    1     3072       10    2        2     1005     2000       8040      16000    0\n';

describe('xentop -b', () => {
  it('prints the header with xentop\'s widths and rows sorted by name, case-insensitively', () => {
    expect(xentopBatch(sample)).to.equal(HEADER + ROW_DB + ROW_DOM0 + ROW_WEB);
  });

  it('uses STATE order d s b c p r: a crash is c, not s', () => {
    const row = xentopBatch({ ...sample, domains: [db] }).split('\n')[1] ?? '';
    expect(row.slice(11, 17)).to.equal('---c--');
    const off = xentopBatch({ ...sample, domains: [{ ...db, state: { ...idle, shutdown: 'poweroff', dying: true } }] }).split('\n')[1] ?? '';
    expect(off.slice(11, 17)).to.equal('ds----');
  });

  it('prints nothing at all, not even the header, for no domains', () => {
    expect(xentopBatch({ ...sample, domains: [] })).to.equal('');
  });

  it('widens VBD and NET columns to INT_FIELD_WIDTH(value + 1), header included', () => {
    const big: DomainStats = {
      ...web, name: 'big',
      nets: [net0({ txBytes: 99_999_999n * 1024n })], // 99999999k: 8 digits, but log10(1e8)+1 = 9
      vbds: [{ dev: 51712, backendType: 'blkback', ooReqs: 123_456_789, rdReqs: 99_999_999, wrReqs: 1, rdSects: 12_345_678_901n, wrSects: 0 }],
    };
    const out = xentopBatch({ node, time: '00:00:00', domains: [big] }).split('\n');
    expect(out[0]).to.equal('      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS  NETTX(k) NETRX(k) VBDS   VBD_OO    VBD_RD   VBD_WR   VBD_RSECT  VBD_WSECT SSID');
    expect(out[1]).to.equal('       big --b---         42    0.0     524288    3.1     524288       3.1     2    1  99999999        0    1 123456789  99999999        1 12345678901          0    0');
  });

  it('with -x adds one line per VBD, with [major:minor] and dashes for unreadable statistics', () => {
    const out = xentopBatch(sample, { vbds: true });
    expect(out).to.equal(
      HEADER + ROW_DB +
      'VBD BlkBack 51712 [ca: 0]  OO:        -   RD:        -   WR:        -   RSECT:          -   WSECT:          -\n' +
      ROW_DOM0 + ROW_WEB +
      'VBD BlkBack 51712 [ca: 0]  OO:        2   RD:     1000   WR:     2000   RSECT:       8000   WSECT:      16000\n' +
      'VBD BlkBack 51728 [ca:10]  OO:        0   RD:        5   WR:        0   RSECT:         40   WSECT:          0\n',
    );
  });

  it('with -n adds one line per vif, RX before TX', () => {
    const out = xentopBatch({ ...sample, domains: [web] }, { networks: true }).split('\n');
    expect(out[2]).to.equal('Net0 RX:    10240bytes       80pkts        0err        1drop  TX:  3145728bytes     2100pkts        0err        0drop');
  });

  it('with -v lists online vcpus five to a line', () => {
    const vcpuStats = [1, 2, 3, 4, 5, 6, 7].map((s, i) => ({ online: i !== 3, cpuNs: BigInt(s) * 1_000_000_000n + 999_999_999n }));
    const out = xentopBatch({ node, time: 't', domains: [{ ...dom0, vcpus: 7, vcpuStats }] }, { vcpus: true }).split('\n');
    expect(out.slice(2, 4)).to.deep.equal([
      'VCPUs(sec):   0:          1s  1:          2s  2:          3s  4:          5s',
      '          5:          6s  6:          7s',
    ]);
  });

  it('with -f widens NAME to the longest name instead of cutting at 10, and -z puts Domain-0 first', () => {
    const long = { ...db, name: 'a-rather-long-domain-name' };
    const cut = xentopBatch({ node, time: 't', domains: [dom0, long] });
    expect(cut.split('\n').map((l) => l.slice(0, 11))).to.deep.equal(['      NAME ', 'a-rather-l ', '  Domain-0 ', '']);
    const full = xentopBatch({ node, time: 't', domains: [dom0, long] }, { fullName: true, dom0First: true }).split('\n');
    expect(full.map((l) => l.slice(0, 26))).to.deep.equal([
      '                     NAME ', '                 Domain-0 ', 'a-rather-long-domain-name ', '',
    ]);
  });

  it('repeats the header before each domain with -r', () => {
    expect(xentopBatch(sample, { repeatHeader: true })).to.equal(HEADER + ROW_DB + HEADER + ROW_DOM0 + HEADER + ROW_WEB);
  });

  it('renders do_summary()\'s three lines, counting each domain once in xentop\'s order', () => {
    expect(xentopSummary(sample)).to.equal(
      'xentop - 12:34:56   Xen 4.17.3\n' +
      '3 domains: 1 running, 1 blocked, 0 paused, 1 crashed, 0 dying, 0 shutdown \n' +
      'Mem: 16776740k total, 9000000k used, 7776740k free    CPUs: 8 @ 2394MHz\n',
    );
    expect(hms(45296)).to.equal('12:34:56');
    expect(hms(86400 + 5)).to.equal('00:00:05');
  });

  it('sizes columns like glibc\'s log10 at every power of ten (gcc oracle)', function () {
    const why = gccMissing();
    if (why !== null) {
      console.warn(`SKIPPED: INT_FIELD_WIDTH golden test because ${why}`);
      this.skip();
    }
    this.timeout(30000);
    const vals: bigint[] = [1n];
    for (let k = 1n; k <= 19n; k++) vals.push(10n ** k - 1n, 10n ** k, 10n ** k + 1n);
    vals.push(2n ** 53n, 2n ** 53n + 1n, 2n ** 63n);
    // volatile: keep gcc from folding log10 at compile time; xentop calls glibc's at run time.
    const body = vals.map((v) => `{ volatile unsigned long long n = ${v}ULL; printf("%u\\n", (unsigned int)(log10(n) + 1)); }`).join('\n');
    const golden = runC(body, '#include <math.h>').toString('utf8').trimEnd().split('\n').map(Number);
    expect(vals.map(intFieldWidth)).to.deep.equal(golden);
  });
});
