/**
 * `xensim bench` end to end at a tiny size: the built-in default through the
 * real entry point (bin/xensim.mjs, as a user runs it), a grant-strategy
 * sweep whose counters show each strategy at work in dom0, and the errors
 * its options give.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readResults, xensimInProcess } from '../helpers/cli.ts';
import type { XensimResults } from '../../cli/report/results.ts';

const ROOT = join(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/xensim.mjs');

function child(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '', ...env } });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}



describe('xensim bench (real machines, tiny size)', function () {
  this.timeout(120_000);
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-bench-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs the default benchmark end to end: dom0 and 2 guests, reads then verified writes, a verified stream, a table and a valid document', async () => {
    const json = join(dir, 'default.json');
    const r = await child(['bench', '--duration', '0.3', '--size', '4M', '--json', json], { CI: 'true' });
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.contain('xensim bench: scenario default, 1 of 1 cell(s)').and.match(/\n\s+0\s+ok\s/);
    expect(r.stdout).to.contain('domu1').and.contain('domu2');
    expect(r.stderr).to.not.contain('network');
    expect(r.stdout).to.contain('network device counters per packet');
    // No progress bar without a terminal (and never under CI).
    expect(r.stderr).to.not.contain('\r');
    const doc = readResults(json);
    expect(doc.command).to.equal('bench');
    const cell = doc.cells[0]!;
    expect(cell.status).to.equal('ok');
    expect(cell.block.map((b) => b.domain)).to.deep.equal(['domu1', 'domu2']);
    for (const b of cell.block) {
      const [read, write] = b.fio.jobs;
      expect(read?.jobname).to.equal('randread-4k');
      expect(read?.error).to.equal(0);
      expect(read?.read.total_ios).to.be.greaterThan(0);
      expect(write?.jobname).to.equal('seqwrite-64k');
      expect(write?.error).to.equal(0);
      expect(write?.write.io_bytes).to.be.greaterThan(0);
      // The write job read its region back and every block's header checked out.
      expect(write?.xensim.verify?.mismatches).to.equal(0);
      expect(write?.xensim.verify?.verified_sectors).to.be.greaterThan(0);
    }
    expect(cell.xentop?.domains.map((d) => d.name)).to.deep.equal(['Domain-0', 'domu1', 'domu2']);
    // The disks are physical: a DMA block controller each, driven through dom0's swiotlb DMA API, no fault, no stray DMA.
    for (const d of ['domu1', 'domu2']) {
      const dev = cell.counters.find((c) => c.domain === d && c.device === 'xvda@dma-disk')!;
      expect(dev.ios).to.be.greaterThan(0);
      expect(dev.totals['ctrl_reads']! + dev.totals['ctrl_writes']!).to.be.at.least(dev.ios);
      expect(dev.totals['dma_maps']).to.be.greaterThan(0);
      expect([dev.totals['ctrl_dmaFaults'], dev.totals['iommu_strayDma']]).to.deep.equal([0, 0]);
    }
    // The stream: iperf3's shape, every byte arrived and checked, per-packet counters of both vifs.
    expect(cell.network).to.have.length(1);
    const n = cell.network[0]!;
    expect(n).to.deep.include({ from: 'domu1', to: 'domu2', protocol: 'tcp', parallel: 1 });
    const end = n.iperf3.end as { sum_sent: { bytes: number }; sum_received: { bytes: number } };
    expect(end.sum_sent.bytes).to.be.greaterThan(0);
    expect(end.sum_received.bytes).to.equal(end.sum_sent.bytes);
    expect(n.iperf3.intervals.length).to.be.greaterThan(0);
    const recv = (n.iperf3.xensim as { receiver_streams: { corrupt_bytes: number; closed: boolean }[] }).receiver_streams;
    expect(recv.map((x) => [x.corrupt_bytes, x.closed])).to.deep.equal([[0, true]]);
    const vifs = cell.counters.filter((c) => c.kind === 'network');
    expect(vifs.map((c) => [c.domain, c.device])).to.deep.equal([['domu1', 'vif1.0'], ['domu2', 'vif2.0']]);
    expect(vifs[0]!.ios).to.be.greaterThan(0);
    expect(cell.series.some((s) => s.kind === 'network' && s.samples.length > 0)).to.equal(true);
    // xentop's NET columns saw the traffic.
    const d1 = cell.xentop?.domains.find((d) => d.name === 'domu1');
    expect(d1?.nets[0]?.tx_bytes ?? 0).to.be.greaterThan(0);
  });

  it('sweeps grant strategies into dom0: map mode maps every request, copy mode copies, and --top shows xentop', async () => {
    const json = join(dir, 'grants.json');
    const r = await xensimInProcess('bench', '--grants', 'map,copy', '--domains', '1', '--iodepth', '4', '--duration', '0.2', '--size', '2M', '--json', json, '--top');
    expect(r.code, r.err).to.equal(0);
    // Without a terminal --top prints `xentop -b` iterations, before the results table.
    expect(r.out).to.match(/^\s+NAME\s+STATE\s+CPU\(sec\)/m);
    expect(r.out.indexOf('NAME')).to.be.lessThan(r.out.indexOf('xensim bench: scenario default'));
    const doc = readResults(json);
    expect(doc.scenario.sweep.map((a) => a.path)).to.deep.equal(['grants', 'domains', 'iodepth']);
    const be = (i: number) => doc.cells[i]!.counters.find((c) => c.device === 'xvda@blkback')!;
    expect(doc.cells.map((c) => c.point['grants'])).to.deep.equal(['map', 'copy']);
    expect(be(0).totals['grant_maps']).to.be.at.least(be(0).ios);
    expect(be(0).totals['grant_copies']).to.equal(0);
    expect(be(1).totals['grant_copies']).to.be.at.least(be(1).ios);
    for (const c of doc.cells) for (const j of c.block[0]!.fio.jobs) expect(j['job options']['iodepth']).to.equal('4');
  });

  it('runs the network suite alone: streams and no block work; one guest is refused', async () => {
    const r = await xensimInProcess('bench', '--suite', 'network', '--duration', '0.3', '--json', '-');
    expect(r.code, r.err).to.equal(0);
    const doc = JSON.parse(r.out) as XensimResults;
    const cell = doc.cells[0]!;
    expect(cell.status, cell.error ?? '').to.equal('ok');
    expect(cell.block).to.deep.equal([]);
    expect(cell.network.map((n) => `${n.from}->${n.to}`)).to.deep.equal(['domu1->domu2']);
    const one = await xensimInProcess('bench', '--suite', 'network', '--domains', '1');
    expect(one.code).to.not.equal(0);
    expect(one.err).to.contain('the network suite streams between guests: it needs --domains 2 or more, got 1');
  });

  it('refuses bad option values with what it expected', async () => {
    const cases: [string[], string][] = [
      [['--grants', 'persistent,mapp'], 'expected persistent, map, copy, got "mapp"; did you mean map?'],
      [['--grants', 'map,map'], 'map is given twice'],
      [['--iodepth', '0,32'], 'expected integers from 1 to 256, got "0"'],
      [['--domains', '1,,2'], 'without empty items'],
      [['--suite', 'disk'], 'expected block, network, all'],
      [['--size', '3'], 'expected a size from 1M to 4G'],
      [['--duration', '0'], 'expected seconds above 0'],
      [['--shard', '2/1'], 'K must be from 1 to N'],
    ];
    for (const [args, want] of cases) {
      const r = await xensimInProcess('bench', ...args);
      expect(r.code, args.join(' ')).to.equal(1);
      expect(r.err, args.join(' ')).to.contain(want);
      expect(r.out).to.equal('');
    }
  });
});
