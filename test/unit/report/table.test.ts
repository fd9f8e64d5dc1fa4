import { expect } from 'chai';
import { formatCountersTable, formatFailures, formatResults, formatSummaryTable, textTable } from '../../../cli/report/table.ts';
import { createProgress, interactive, isCI, type ViewStream } from '../../../cli/report/live.ts';
import { summarizeCell, type XensimResults } from '../../../cli/report/results.ts';
import { fixtureDoc } from './fixture.ts';

type Mutable<T> = { -readonly [K in keyof T]: Mutable<T[K]> };

/** The fixture with its measured numbers replaced by round ones, so the text can be pinned. */
async function pinned(): Promise<Mutable<XensimResults>> {
  const d = (await fixtureDoc()) as Mutable<XensimResults>;
  d.cells.forEach((c, i) => {
    const j = c.block[0]!.fio.jobs[0]!;
    j.read.bw_bytes = (i + 1) * 10 * 1024 * 1024;
    j.write.bw_bytes = (i + 1) * 512 * 1024;
    j.read.iops = (i + 1) * 2560;
    j.write.iops = (i + 1) * 128;
    j.read.clat_ns.mean = 50_000;
    j.read.clat_ns.N = 100;
    j.write.clat_ns.mean = 150_000;
    j.write.clat_ns.N = 100;
    j.read.clat_ns.percentile = { '99.000000': 250_000 * (i + 1) };
    j.write.clat_ns.percentile = { '99.000000': 1000 };
    (c.network[0]!.iperf3.end as { sum_received: { bits_per_second: number } }).sum_received.bits_per_second = 2.5e9 / (i + 1);
    c.duration_ms = 1500 + i * 250;
    c.counters = [
      { domain: 'domu1', device: 'xvda', kind: 'block', per: 'io', ios: 64, totals: { hypercalls: 128 + i * 64, grant_copies: 64 }, per_io: { hypercalls: 2 + i, grant_copies: 1 } },
      { domain: 'domu1', device: 'vif1.0', kind: 'network', per: 'packet', ios: 1000, totals: { tx_frames: 1000 }, per_io: { tx_frames: 1 } },
    ];
  });
  return d;
}

describe('the results tables', function () {
  this.timeout(30_000);

  it('lays out columns two spaces apart, numbers right-aligned, no trailing spaces', () => {
    expect(textTable(['name', 'n', 'x'], [['a', '1', ''], ['long name', '100', '']], ['l', 'r', 'l'])).to.equal(
      'name         n  x\n' +
      'a            1\n' +
      'long name  100\n',
    );
  });

  it('prints one row per cell with its settings, throughput, IOPS, latency and network', async () => {
    expect(formatSummaryTable(await pinned())).to.equal(
      'cell  machine.dom0.dma  block.0.fio.iodepth  status      read      write  r IOPS  w IOPS  clat mean  clat p99      network    time\n' +
      '   0  swiotlb           1                    ok      10 MiB/s  512 KiB/s    2560     128     100 µs    250 µs   2.5 Gbit/s   1.5 s\n' +
      '   1  swiotlb           8                    ok      20 MiB/s    1 MiB/s    5120     256     100 µs    500 µs  1.25 Gbit/s  1.75 s\n' +
      '   2  iommu             1                    ok      30 MiB/s  1.5 MiB/s    7680     384     100 µs    750 µs   833 Mbit/s     2 s\n' +
      '   3  iommu             8                    ok      40 MiB/s    2 MiB/s   10240     512     100 µs      1 ms   625 Mbit/s  2.25 s\n',
    );
  });

  it('prints the per-I/O counters per kind of device', async () => {
    expect(formatCountersTable(await pinned())).to.equal(
      'block device counters per completed I/O\n' +
      'cell  domain  device  I/Os  grant_copies  hypercalls\n' +
      '   0  domu1   xvda      64             1           2\n' +
      '   1  domu1   xvda      64             1           3\n' +
      '   2  domu1   xvda      64             1           4\n' +
      '   3  domu1   xvda      64             1           5\n' +
      '\n' +
      'network device counters per packet\n' +
      'cell  domain  device  packets  tx_frames\n' +
      '   0  domu1   vif1.0     1000          1\n' +
      '   1  domu1   vif1.0     1000          1\n' +
      '   2  domu1   vif1.0     1000          1\n' +
      '   3  domu1   vif1.0     1000          1\n',
    );
  });

  it('leaves out counters that are zero in every row, and says how many', async () => {
    const d = await pinned();
    const c = d.cells[0]!.counters[0]!;
    (d.cells[0]!.counters as unknown[])[0] = { ...c, per_io: { ...c.per_io, grant_maps: 0, bounce_bytes: 0 } };
    const out = formatCountersTable(d);
    expect(out).to.contain('block device counters per completed I/O (2 counters that are 0 in every row left out; --json has them)\n');
    expect(out).to.not.contain('grant_maps');
    expect(out).to.contain('network device counters per packet\n');
  });

  it('marks failed cells and lists what went wrong', async () => {
    const d = await pinned();
    d.cells[1]!.status = 'failed';
    d.cells[1]!.error = 'domu1 crashed: guest kernel panic';
    d.cells[2]!.block[0]!.fio.jobs[0]!.error = 84;
    d.cells[2]!.block[0]!.fio.jobs[0]!.xensim.error_message = 'verify: 1 bad sector(s)';
    expect(formatSummaryTable(d).split('\n')[2]).to.match(/^ {3}1 {2}swiotlb {11}8 {20}FAILED /);
    expect(formatSummaryTable(d).split('\n')[3]).to.match(/ errors /);
    expect(formatFailures(d)).to.equal(
      'problems\n' +
      '  cell 1: FAILED: domu1 crashed: guest kernel panic\n' +
      '  cell 2: domu1/xvda job domu1-xvda: error 84: verify: 1 bad sector(s)\n',
    );
  });

  it('starts the printout with what ran, where, and on which machine', async () => {
    const d = await pinned();
    const text = formatResults(d);
    expect(text.split('\n')[0]).to.match(
      /^xensim run: scenario report-fixture, 4 of 4 cell\(s\) — 2026-01-31T12:00:00\.000Z — xensim \d+\.\d+\.\d+, \d+ cpus, node v\d+\.\d+\.\d+; machine 128 MiB, 4096 B pages, dom0 p2m\/swiotlb, iommu off$/,
    );
    expect(text).to.include('block device counters per completed I/O');
    expect(formatResults(d, { counters: false })).not.to.include('counters');
  });

  it('sums a cell the way the table shows it', async () => {
    const s = summarizeCell((await pinned()).cells[0] as XensimResults['cells'][number]);
    expect(s.read_bw).to.equal(10 * 1024 * 1024);
    expect(s.clat_mean_ns).to.equal(100_000); // (50 µs × 100 + 150 µs × 100) / 200
    expect(s.clat_p99_ns).to.equal(250_000);
    expect(s.net_bps).to.equal(2.5e9);
  });
});

class FakeStream implements ViewStream {
  text = '';
  constructor(readonly isTTY: boolean, readonly columns = 100) {}
  write(s: string): boolean {
    this.text += s;
    return true;
  }
}

describe('the progress bar', () => {
  it('draws on a terminal, redrawing one line with \\r and clearing it at the end', () => {
    const s = new FakeStream(true);
    let t = 0;
    const p = createProgress({ total: 4, stream: s, env: {}, now: () => t });
    expect(p.enabled).to.equal(true);
    p.start('machine.dom0.dma=iommu');
    t = 65_000;
    p.tick();
    p.update(0.5);
    expect(s.text).to.include('\r[..............................] 0/4   0% 0:00 machine.dom0.dma=iommu\x1b[K');
    expect(s.text).to.include('\r[########......................] 1/4  25% 1:05 machine.dom0.dma=iommu\x1b[K');
    expect(s.text).to.include('1/4  37% 1:05');
    expect(s.text).not.to.include('\n');
    p.done();
    expect(s.text.endsWith('\r\x1b[K')).to.equal(true);
  });

  it('draws nothing when stderr is not a terminal, in JSON mode, or under CI', () => {
    for (const [stream, opts] of [
      [new FakeStream(false), { env: {} }],
      [new FakeStream(true), { env: {}, json: true }],
      [new FakeStream(true), { env: { CI: 'true' } }],
      [new FakeStream(true), { env: { CI: '1' } }],
    ] as const) {
      const p = createProgress({ total: 2, stream, ...opts });
      p.start('x');
      p.tick();
      p.done();
      expect(p.enabled).to.equal(false);
      expect(stream.text).to.equal('');
    }
  });

  it('reads CI as CI systems set it', () => {
    expect(isCI({ CI: 'true' })).to.equal(true);
    expect(isCI({ CI: 'false' })).to.equal(false);
    expect(isCI({ CI: '' })).to.equal(false);
    expect(isCI({})).to.equal(false);
    expect(interactive({ isTTY: true, write: () => true }, { env: {} })).to.equal(true);
  });
});
