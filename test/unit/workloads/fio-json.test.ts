import { expect } from 'chai';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unwrap } from '../../../shared/result.ts';
import { systemClock } from '../../../domU/workloads/block-device.ts';
import { runFio, type FioJobSpec, type FioRunResult } from '../../../domU/workloads/fio-engine.ts';
import { ctime, fioPercentileKey, jobOptionsOf, toFioJson, type FioJson } from '../../../domU/workloads/fio-json.ts';
import { MemBlockDevice } from '../../helpers/mem-block-device.ts';

/** Keys ECOSYSTEM.md §4.1 lists for fio 3.33's JSON. */
const TOP_KEYS = ['fio version', 'timestamp', 'timestamp_ms', 'time', 'jobs', 'disk_util'];
const JOB_KEYS = [
  'jobname', 'groupid', 'error', 'eta', 'elapsed', 'job options', 'read', 'write', 'trim', 'sync', 'job_runtime', 'usr_cpu', 'sys_cpu', 'ctx', 'majf', 'minf',
  'iodepth_level', 'iodepth_submit', 'iodepth_complete', 'latency_ns', 'latency_us', 'latency_ms', 'latency_depth', 'latency_target', 'latency_percentile', 'latency_window',
];
const DDIR_KEYS = [
  'io_bytes', 'io_kbytes', 'bw_bytes', 'bw', 'iops', 'runtime', 'total_ios', 'short_ios', 'drop_ios', 'slat_ns', 'clat_ns', 'lat_ns',
  'bw_min', 'bw_max', 'bw_agg', 'bw_mean', 'bw_dev', 'bw_samples', 'iops_min', 'iops_max', 'iops_mean', 'iops_stddev', 'iops_samples',
];
const LAT_KEYS = ['min', 'max', 'mean', 'stddev', 'N'];
const PERCENTILE_KEYS = ['1.000000', '5.000000', '10.000000', '20.000000', '30.000000', '40.000000', '50.000000', '60.000000', '70.000000', '80.000000', '90.000000', '95.000000', '99.000000', '99.500000', '99.900000', '99.950000', '99.990000'];

function newDevice(): MemBlockDevice {
  return new MemBlockDevice({ sectors: 16384, perRequestCounters: { hypercalls: 2, grant_copies: 1 } });
}

/** The run's fio JSON, round-tripped through text as a user's tool would read it. */
function asJson(run: FioRunResult, globalOptions?: Record<string, string>): FioJson {
  return JSON.parse(JSON.stringify(toFioJson(run, { timestampMs: 1_700_000_000_123, ...(globalOptions ? { globalOptions } : {}) }))) as FioJson;
}

async function fioJsonOf(specs: FioJobSpec[], dev = newDevice(), globalOptions?: Record<string, string>): Promise<FioJson> {
  return asJson(unwrap(await runFio(specs, { device: dev, clock: systemClock })), globalOptions);
}

function keysOf(o: unknown): string[] {
  return Object.keys(o as object).sort();
}

describe('fio JSON output', () => {
  it("has fio's top-level, job, direction and latency keys (ECOSYSTEM.md §4.1)", async () => {
    const out = await fioJsonOf([{ name: 'rr', rw: 'randrw', bs: 4096, iodepth: 4, size: 1024 * 1024 }]);
    expect(Object.keys(out)).to.deep.equal(TOP_KEYS);
    const job = out.jobs[0]!;
    expect(Object.keys(job)).to.deep.equal([...JOB_KEYS, 'xensim']);
    for (const d of [job.read, job.write, job.trim]) expect(Object.keys(d)).to.deep.equal(DDIR_KEYS);
    expect(Object.keys(job.read.slat_ns)).to.deep.equal(LAT_KEYS);
    expect(Object.keys(job.read.clat_ns)).to.deep.equal([...LAT_KEYS, 'percentile']);
    expect(Object.keys(job.read.clat_ns.percentile!)).to.deep.equal(PERCENTILE_KEYS);
    expect(Object.keys(job.read.lat_ns)).to.deep.equal(LAT_KEYS); // lat percentiles only with lat_percentiles=1
    expect(Object.keys(job.iodepth_level)).to.deep.equal(['1', '2', '4', '8', '16', '32', '>=64']);
    expect(Object.keys(job.latency_ms)).to.deep.equal(['2', '4', '10', '20', '50', '100', '250', '500', '750', '1000', '2000', '>=2000']);
    expect(out['fio version']).to.match(/^xensim-/);
    expect(out.timestamp).to.equal(1_700_000_000);
    expect(out.timestamp_ms).to.equal(1_700_000_000_123);
    expect(out.time).to.equal(ctime(1_700_000_000_123));
  });

  it("uses fio's units: bytes, KiB/s, ms, ns, and iops = ios / runtime", async () => {
    const out = await fioJsonOf([{ name: 'w', rw: 'randwrite', bs: 8192, iodepth: 2, size: 2 * 1024 * 1024 }]);
    const w = out.jobs[0]!.write;
    expect(w.total_ios).to.equal(256);
    expect(w.io_bytes).to.equal(2 * 1024 * 1024);
    expect(w.io_kbytes).to.equal(2048);
    expect(w.bw).to.be.closeTo(w.bw_bytes / 1024, 1);
    expect(w.runtime).to.be.a('number').and.to.be.at.least(0);
    expect(w.iops).to.be.closeTo((w.bw_bytes / 8192), 1);
    expect(w.clat_ns.min).to.be.at.most(w.clat_ns.percentile!['50.000000']!);
    expect(w.clat_ns.percentile!['99.990000']!).to.be.at.most(w.clat_ns.max * 1.01);
    expect(w.lat_ns.mean).to.be.closeTo(w.slat_ns.mean + w.clat_ns.mean, 1);
    expect(w.clat_ns.N).to.equal(256);
    const pctSum = Object.values(out.jobs[0]!.latency_ns).concat(Object.values(out.jobs[0]!.latency_us), Object.values(out.jobs[0]!.latency_ms)).reduce((a, b) => a + b, 0);
    expect(pctSum).to.be.closeTo(100, 1e-6);
  });

  it('keeps a read object with iops 0 (and no percentiles) for a job that did no reads', async () => {
    const out = await fioJsonOf([{ name: 'w', rw: 'write', bs: 4096, size: 64 * 1024 }]);
    const r = out.jobs[0]!.read;
    expect(r).to.include({ io_bytes: 0, total_ios: 0, iops: 0, bw: 0, runtime: 0 });
    expect(r.clat_ns).to.deep.equal({ min: 0, max: 0, mean: 0, stddev: 0, N: 0 });
  });

  it('reports per-I/O device counters in the xensim object', async () => {
    const out = await fioJsonOf([{ name: 'x', rw: 'randread', bs: 4096, size: 256 * 1024, fsync: 0 }]);
    const x = out.jobs[0]!.xensim;
    expect(x.group_ios).to.equal(64);
    expect(x.counters).to.include({ hypercalls: 128, grant_copies: 64, reads: 64 });
    expect(x.per_io).to.include({ hypercalls: 2, grant_copies: 1 });
    expect(x.region).to.deep.equal([{ offset: 0, size: 256 * 1024 }]);
    expect(x.verify).to.equal(null);
  });

  it('folds a group into one job with group_reporting, summing what fio sums', async () => {
    const spec: FioJobSpec = { name: 'g', rw: 'randread', bs: 4096, iodepth: 2, numjobs: 4, size: 256 * 1024, group_reporting: true };
    const run = unwrap(await runFio([spec], { device: newDevice(), clock: systemClock }));
    const together = asJson(run);
    const apart = asJson({ ...run, jobs: run.jobs.map((j) => ({ ...j, spec: { ...j.spec, group_reporting: false } })) });
    expect(apart.jobs).to.have.length(4);
    expect(together.jobs).to.have.length(1);
    const g = together.jobs[0]!;
    expect(g.jobname).to.equal('g');
    expect(g.read.total_ios).to.equal(256);
    expect(g.read.io_bytes).to.equal(apart.jobs.reduce((n, j) => n + j.read.io_bytes, 0));
    expect(g.read.clat_ns.N).to.equal(256);
    expect(g.read.clat_ns.min).to.equal(Math.min(...apart.jobs.map((j) => j.read.clat_ns.min)));
    expect(g.read.runtime).to.equal(Math.max(...apart.jobs.map((j) => j.read.runtime)));
    expect(g.xensim.clones).to.equal(4);
    expect(g.job_runtime).to.be.closeTo(apart.jobs.reduce((n, j) => n + j.job_runtime, 0), 2);
    expect(g.read.bw_samples).to.equal(apart.jobs.reduce((n, j) => n + j.read.bw_samples, 0));
  });

  it('shows verify results and mismatch reports', async () => {
    const dev = new MemBlockDevice({ sectors: 4096, fault: (io) => (io.op === 'write' && io.seq === 1 ? { kind: 'corrupt', byteOffset: 700, xor: 0x10 } : undefined) });
    const out = await fioJsonOf([{ name: 'v', rw: 'write', bs: 4096, size: 64 * 1024, verify: true }], dev);
    const j = out.jobs[0]!;
    expect(j.error).to.equal(84);
    expect(j.read.total_ios).to.equal(16); // the verify pass, counted as reads as fio does
    expect(j['job options']).to.deep.equal({ rw: 'write', bs: '4096', size: '65536', verify: 'crc32c' });
    expect(j.xensim.verify).to.include({ mismatches: 1 });
    expect(j.xensim.verify?.reports[0]).to.include({ kind: 'corrupt', lba: 9 });
    expect(j.xensim.verify?.reports[0]?.badBytes).to.deep.equal([{ offset: 700 - 512, length: 1 }]);
    expect(j.xensim.verify?.reports[0]?.text).to.match(/^corrupt: lba 9 /);
  });

  it("formats job options as fio shows them, and percentile keys as fio's %f", () => {
    expect(jobOptionsOf({ name: 'j', rw: 'randrw', rwmixread: 70, time_based: true, runtime: 2, group_reporting: true, percentile_list: [50, 99] })).to.deep.equal({
      rw: 'randrw',
      rwmixread: '70',
      runtime: '2',
      percentile_list: '50:99',
    });
    expect(jobOptionsOf({ name: 'j', rw: 'read', options: { bs: '4k' } })).to.deep.equal({ bs: '4k' });
    expect(fioPercentileKey(99.95)).to.equal('99.950000');
    expect(ctime(Date.UTC(2024, 0, 5, 12, 0, 0))).to.match(/^\w{3} Jan {2}5 \d\d:\d\d:\d\d 2024$/);
  });

  it("matches the key sets of a real fio run's JSON", async function () {
    this.timeout(30_000);
    if (spawnSync('fio', ['--version']).status !== 0) {
      console.warn('SKIPPED: real-fio key comparison because fio is not installed');
      this.skip();
    }
    const dir = mkdtempSync(join(tmpdir(), 'xensim-fio-'));
    try {
      writeFileSync(
        join(dir, 'job.fio'),
        ['[global]', `filename=${join(dir, 'data')}`, 'size=256k', 'bs=4k', 'ioengine=psync', '[j]', 'rw=randrw', 'rwmixread=50', ''].join('\n'),
      );
      execFileSync('fio', ['--output-format=json', `--output=${join(dir, 'out.json')}`, join(dir, 'job.fio')], { stdio: 'ignore' });
      const real = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as FioJson;
      const ours = await fioJsonOf([{ name: 'j', rw: 'randrw', bs: 4096, size: 256 * 1024 }], newDevice(), { size: '256k', bs: '4k' });
      expect(keysOf(ours)).to.deep.equal(keysOf(real));
      const [rj, oj] = [real.jobs[0]!, ours.jobs[0]!];
      expect(keysOf(oj).filter((k) => k !== 'xensim')).to.deep.equal(keysOf(rj));
      for (const d of ['read', 'write', 'trim'] as const) {
        expect(keysOf(oj[d]), d).to.deep.equal(keysOf(rj[d]));
        for (const l of ['slat_ns', 'lat_ns'] as const) expect(keysOf(oj[d][l]), `${d}.${l}`).to.deep.equal(keysOf(rj[d][l]));
      }
      for (const d of ['read', 'write'] as const) {
        expect(keysOf(oj[d].clat_ns), `${d}.clat_ns`).to.deep.equal(keysOf(rj[d].clat_ns));
        expect(keysOf(oj[d].clat_ns.percentile), `${d}.clat_ns.percentile`).to.deep.equal(keysOf(rj[d].clat_ns.percentile));
      }
      for (const k of ['iodepth_level', 'iodepth_submit', 'iodepth_complete', 'latency_ns', 'latency_us', 'latency_ms', 'sync'] as const) {
        expect(keysOf(oj[k]), k).to.deep.equal(keysOf(rj[k]));
      }
      expect(keysOf(oj.trim.clat_ns)).to.deep.equal(keysOf(rj.trim.clat_ns)); // no percentiles without I/O, in both
      // Types match too: numbers where fio has numbers, strings in "job options".
      for (const k of DDIR_KEYS) expect(typeof oj.read[k as keyof typeof oj.read], k).to.equal(typeof rj.read[k as keyof typeof rj.read]);
      expect(Object.values(oj['job options']).every((v) => typeof v === 'string')).to.equal(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
