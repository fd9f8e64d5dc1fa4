/**
 * `xensim run` end to end: real machines (hypervisor, dom0 and guest
 * workers) running small scenarios, the results document checked against the
 * published schema, --shard and `xensim merge` round trip, and the errors a
 * bad scenario, xl config or job file gives. Kept small: each cell's jobs run
 * for a fraction of a second.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateResults } from '../../cli/report/schema.ts';
import { readResults, xensimInProcess } from '../helpers/cli.ts';
import type { XensimResults } from '../../cli/report/results.ts';

const ROOT = join(import.meta.dirname, '../..');



const TINY = `name: tiny
seed: 11
machine:
  memory: 128M
  dom0: { memory: 32M }
domains:
  - xl: |
      name = "g"
      type = "pvh"
      memory = 16
      disk = [ 'ram:4M,,xvda' ]
block:
  - domain: g
    vdev: xvda
    fio: { rw: randrw, bs: 4k, iodepth: 8, ioengine: libaio, size: 2M, runtime: 250ms, time_based: 1, verify: crc32c }
`;

describe('xensim run (real machines)', function () {
  this.timeout(120_000);
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-run-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs the shards of a sweep over grant modes, and xensim merge puts them back together', async () => {
    const file = join(dir, 'sweep.yaml');
    writeFileSync(file, `${TINY}sweep:\n  machine.dom0.blkback.mode: [map, copy]\n`);
    const a = await xensimInProcess('run', file, '--shard', '1/2', '--json', join(dir, 'a.json'), '--html', join(dir, 'a.html'), '--seed', '12');
    expect(a.code, a.err).to.equal(0);
    const b = await xensimInProcess('run', file, '--shard', '2/2', '--json', join(dir, 'b.json'), '--seed', '12');
    expect(b.code, b.err).to.equal(0);
    expect(a.err).to.match(/^export XENSTORED_PATH=\/.*xenstored\.sock$/m);
    expect(a.out).to.contain('xensim run: scenario tiny, 1 of 2 cell(s), shard 1/2').and.match(/\n\s+0\s+map\s+ok\s/);

    const docA = readResults(join(dir, 'a.json'));
    expect(docA.scenario.seed).to.equal(12);
    expect(docA.shard).to.deep.equal({ k: 1, n: 2 });
    const cell = docA.cells[0]!;
    expect(cell).to.deep.include({ index: 0, status: 'ok', error: null });
    expect(cell.point).to.deep.equal({ 'machine.dom0.blkback.mode': 'map' });
    const job = cell.block[0]!.fio.jobs[0]!;
    expect(job.error).to.equal(0);
    expect(job.read.io_bytes + job.write.io_bytes).to.be.greaterThan(0);
    expect(job.xensim.verify?.mismatches).to.equal(0);
    // blkback in dom0 mapped every request's pages (map mode), and says so per request.
    const be = cell.counters.find((c) => c.device === 'xvda@blkback')!;
    expect(be.totals['grant_maps']).to.be.at.least(be.ios);
    expect(be.totals['grant_copies']).to.equal(0);
    expect(cell.counters.map((c) => c.device)).to.include('xvda');
    const g = cell.xentop?.domains.find((d) => d.name === 'g');
    expect(cell.xentop?.domains.map((d) => d.name)).to.deep.equal(['Domain-0', 'g']);
    expect((g?.vbds[0]?.rd_reqs ?? 0) + (g?.vbds[0]?.wr_reqs ?? 0)).to.be.greaterThan(0);
    expect(cell.series.map((s) => `${s.device}/${s.direction}`)).to.include.members(['xvda/read', 'xvda/write']);
    expect(readFileSync(join(dir, 'a.html'), 'utf8')).to.match(/^<!DOCTYPE html>/i).and.contain('<svg');

    const docB = readResults(join(dir, 'b.json'));
    const copyBe = docB.cells[0]!.counters.find((c) => c.device === 'xvda@blkback')!;
    expect(copyBe.totals['grant_copies']).to.be.at.least(copyBe.ios);

    const m = await xensimInProcess('merge', join(dir, 'all.json'), join(dir, 'b.json'), join(dir, 'a.json'));
    expect(m.code, m.err).to.equal(0);
    const all = readResults(join(dir, 'all.json'));
    expect(all.cells.map((c) => [c.index, c.point['machine.dom0.blkback.mode']])).to.deep.equal([[0, 'map'], [1, 'copy']]);
    expect(all.scenario.sweep).to.deep.equal([{ path: 'machine.dom0.blkback.mode', values: ['map', 'copy'] }]);

    // Both shards describe one scenario (--seed included): the digest merge checks is the same.
    const other = JSON.parse(readFileSync(join(dir, 'b.json'), 'utf8')) as XensimResults;
    expect(other.scenario.digest).to.equal(docA.scenario.digest);
  });

  it('runs block work and network streams of a cell at once: a TCP stream by bytes and a paced UDP stream, in iperf3 shape', async () => {
    const file = join(dir, 'net.yaml');
    const yaml = TINY.replace('memory: 128M', 'memory: 256M').replace("disk = [ 'ram:4M,,xvda' ]", "disk = [ 'ram:4M,,xvda' ]\n      vif = [ '' ]\n  - xl: |\n      name = \"h\"\n      memory = 16\n      vif = [ 'ip=192.168.7.2' ]\n  - xl: |\n      name = \"u\"\n      memory = 16\n      vif = [ '' ]\n  - xl: |\n      name = \"v\"\n      memory = 16\n      vif = [ '' ]");
    writeFileSync(file, `${yaml}network:\n  - { from: g, to: h, bytes: 2M }\n  - { from: u, to: v, protocol: udp, time: 500ms, bitrate: 20M, size: 1000 }\n`);
    const r = await xensimInProcess('run', file, '--json', '-');
    expect(r.code, r.err).to.equal(0);
    // JSON mode: stdout is the document and nothing else.
    const doc = JSON.parse(r.out) as XensimResults;
    expect(validateResults(doc).ok).to.equal(true);
    const cell = doc.cells[0]!;
    expect(cell.status, cell.error ?? '').to.equal('ok');
    expect(cell.block[0]?.fio.jobs[0]?.error).to.equal(0);
    expect(cell.network.map((n) => [n.from, n.to, n.protocol])).to.deep.equal([['g', 'h', 'tcp'], ['u', 'v', 'udp']]);
    const [tcp, udp] = cell.network;
    type End = { sum_sent: { bytes: number; packets?: number }; sum_received: { bytes: number; lost_packets?: number } };
    const tcpEnd = tcp!.iperf3.end as End;
    expect(tcpEnd.sum_sent.bytes).to.equal(2 << 20);
    expect(tcpEnd.sum_received.bytes).to.equal(2 << 20);
    const udpEnd = udp!.iperf3.end as End;
    // 20 Mbit/s of 1000-byte datagrams for 0.5 s is about 1250 of them.
    expect(udpEnd.sum_sent.packets ?? 0).to.be.within(600, 1400);
    expect((udp!.iperf3.start as { test_start: { blksize: number } }).test_start.blksize).to.equal(1000);
    // The guest spoke the address its vifspec gave.
    expect(JSON.stringify(tcp!.iperf3.start)).to.contain('192.168.7.2');
  });

  it('gives up on a cell at --timeout, reports it failed, and exits', async () => {
    const file = join(dir, 'tiny.yaml');
    writeFileSync(file, TINY);
    const r = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const c = spawn(process.execPath, [join(ROOT, 'bin/xensim.mjs'), 'run', file, '--timeout', '0.2'], { env: { ...process.env, NODE_OPTIONS: '' } });
      let stdout = '';
      c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      c.on('error', reject);
      c.on('close', (code) => resolve({ code, stdout }));
    });
    expect(r.code).to.equal(1);
    expect(r.stdout).to.contain('cell 0: FAILED: the cell did not finish within 0.2 s');
  });

  it('runs examples/block.yaml unchanged', async () => {
    const r = await xensimInProcess('run', join(ROOT, 'examples/block.yaml'), '--json', join(dir, 'block.json'));
    expect(r.code, r.err).to.equal(0);
    const doc = readResults(join(dir, 'block.json'));
    expect(doc.cells[0]?.block.map((b) => `${b.domain}/${b.vdev}`)).to.deep.equal(['reader/xvda', 'writer/xvda']);
    for (const b of doc.cells[0]!.block) for (const j of b.fio.jobs) expect(j.error, `${b.domain} ${j.jobname}`).to.equal(0);
  });
});

describe('xensim run: bad inputs (nothing boots)', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-run-bad-'));
    writeFileSync(join(dir, 'bad.fio'), '[j]\nrw=randread\nbogus=1\n');
    writeFileSync(join(dir, 'bad.cfg'), 'name = "g"\nmemory = lots\n');
    writeFileSync(join(dir, 'good.cfg'), "name = \"g\"\nmemory = 16\ndisk = [ 'ram:4M,,xvda' ]\n");
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function refused(yaml: string): Promise<string> {
    const file = join(dir, 's.yaml');
    writeFileSync(file, yaml);
    const r = await xensimInProcess('run', file, '--json', join(dir, 'never.json'));
    expect(r.code, r.out).to.equal(1);
    expect(r.out).to.equal('');
    expect(existsSync(join(dir, 'never.json'))).to.equal(false);
    return r.err;
  }

  it('names the scenario key it does not know, with its place', async () => {
    expect(await refused('machin:\n  memory: 1G\n')).to.contain('s.yaml:1:1: machin: unknown key `machin\'; did you mean `machine\'?');
  });

  it('names the xl.cfg file and what is wrong in it', async () => {
    const err = await refused('domains:\n  - config: bad.cfg\n');
    expect(err).to.contain(join(dir, 'bad.cfg')).and.contain('domains[0].config: invalid domain configuration');
  });

  it('says when an xl.cfg file is missing', async () => {
    expect(await refused('domains:\n  - config: nope.cfg\n')).to.contain(`cannot read ${join(dir, 'nope.cfg')}: ENOENT`);
  });

  it('quotes fio for a bad job file, with the file and line', async () => {
    const err = await refused('domains:\n  - config: good.cfg\nblock:\n  - { domain: g, vdev: xvda, fio: bad.fio }\n');
    expect(err).to.contain('block[0].fio').and.contain(join(dir, 'bad.fio')).and.contain('Bad option <bogus=1>');
  });

  it('refuses a disk xensim cannot serve before booting anything', async () => {
    const err = await refused("domains:\n  - xl: |\n      name = \"g\"\n      disk = [ 'format=qcow2, vdev=xvda, target=/no/such.qcow2' ]\n");
    expect(err).to.contain('g: disk xvda').and.contain('format=qcow2: xensim serves raw images and ram:SIZE disks only');
  });

  it('says when the scenario file itself is missing, and refuses a bad --seed or --shard', async () => {
    const r = await xensimInProcess('run', join(dir, 'missing.yaml'));
    expect(r.code).to.equal(1);
    expect(r.err).to.contain('missing.yaml: cannot read the scenario: No such file or directory');
    const s = await xensimInProcess('run', join(dir, 's.yaml'), '--seed', '-1');
    expect(s.code).to.equal(1);
    expect(s.err).to.contain("option '--seed <N>' argument '-1' is invalid");
    const k = await xensimInProcess('run', join(dir, 's.yaml'), '--shard', '0/2');
    expect(k.code).to.equal(1);
    expect(k.err).to.contain('K must be from 1 to N');
  });

  it('refuses more shards than cells', async () => {
    writeFileSync(join(dir, 'one.yaml'), 'domains: []\n');
    const r = await xensimInProcess('run', join(dir, 'one.yaml'), '--shard', '2/3');
    expect(r.code).to.equal(1);
    expect(r.err).to.contain('the sweep has 1 cell(s), so 3 shards would leave 2 of them empty');
  });
});
