import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  fioDidYouMean, fioJobFileText, fioJobsFromOptions, parseFioJobFile, parseFioSize, parseFioTime, readFioJobFile, type FioJob,
} from '../../../cli/config/fio-job.ts';

const EXAMPLES = join(import.meta.dirname, '../../../examples');

function jobs(text: string): readonly FioJob[] {
  const r = parseFioJobFile(text, { source: 'j.fio' });
  if (!r.ok) throw new Error(r.error.message);
  return r.value.jobs;
}
function one(text: string): FioJob {
  const js = jobs(text);
  expect(js).to.have.length(1);
  const j = js[0];
  if (j === undefined) throw new Error('no job');
  return j;
}
function error(text: string): string {
  const r = parseFioJobFile(text, { source: 'j.fio' });
  if (r.ok) throw new Error(`parsed, expected an error:\n${text}`);
  return r.error.message;
}

/** Job files we accept; each must also pass `fio --parse-only`. */
const ACCEPTED: Record<string, string> = {
  flags: '[j]\nstonewall\ntime_based\nruntime=1s\ngroup_reporting\n',
  mix: '[global]\nioengine=libaio\ndirect=1\n[m]\nrw=randrw\nrwmixread=70\nbs=4k,8k\niodepth=16\nnumjobs=4\nsize=16m\n',
  aliases: '[a]\nreadwrite=readwrite\nblocksize=8k\ntimeout=500ms\nwait_for_previous\n',
  comments: '; top\n# also\n[c]  ; after a header\nbs=4k ; trailing\nrw=write # trailing\n   \n',
  units: '[u]\nbs=1KB\nsize=512KiB\nruntime=2m\nramp_time=100ms\nrate_iops=100,200\n',
  reporting: '[r]\npercentile_list=50:99:99.9\nlat_percentiles=1\nverify=crc32c\nfilename=/dev/xvdb\n',
  engine: '[e]\nioengine=psync\niodepth=8\nrw=read\nbs=64k\nrate_iops=1000\n',
  twoGlobals: '[global]\nbs=8k\n[a]\n[global]\nbs=16k\n[b]\nstonewall\n',
  extras: '[x]\noffset=10%\noffset_increment=1m\nfsync=4\ndo_verify=0\nverify_fatal=1\ncontinue_on_error=io\nrandseed=42\nbwavgtime=250\niopsavgtime=250\n',
  domainFile: '[d]\nfilename=domu1/xvdc\nioengine=io_uring\n',
};

describe('fio job files', () => {
  it('merges [global] into each following job and fills in fio defaults', () => {
    const [a, b] = jobs('[global]\nbs=8k\nioengine=libaio\n[a]\nrw=randread\niodepth=4\n[b]\nbs=16k\n');
    expect(a).to.deep.include({ name: 'a', rw: 'randread', iodepth: 4, ioengine: 'libaio', numjobs: 1, direct: false, time_based: false });
    expect(a?.bs).to.deep.equal({ read: 8192, write: 8192 });
    expect(b).to.deep.include({ name: 'b', rw: 'read', iodepth: 1, ioengine: 'libaio', rwmixread: 100 });
    expect(b?.bs).to.deep.equal({ read: 16384, write: 16384 });
    expect(a?.options).to.deep.equal({ bs: '8k', ioengine: 'libaio', rw: 'randread', iodepth: '4' });
  });

  it('applies a later [global] only to the jobs after it', () => {
    const [a, b] = jobs(ACCEPTED['twoGlobals'] ?? '');
    expect(a?.bs.read).to.equal(8192);
    expect(b?.bs.read).to.equal(16384);
  });

  it('reads bare flags and =0/=1 flags', () => {
    const j = one(ACCEPTED['flags'] ?? '');
    expect(j).to.deep.include({ stonewall: true, time_based: true, group_reporting: true, runtime_us: 1_000_000 });
    expect(one('[j]\ntime_based=0\n').time_based).to.equal(false);
  });

  it('strips comments after options and blanks around = (as fio 3.33 does)', () => {
    const j = one(ACCEPTED['comments'] ?? '');
    expect(j).to.deep.include({ section: 'c', rw: 'write' });
    expect(one('[j]\n  bs = 8k  \n').bs.read).to.equal(8192);
  });

  it("uses fio's base-2 sizes: 4k = 4096, 1KB = 1024, and (inverted, as fio documents) KiB = 1000", () => {
    expect(parseFioSize('4k')).to.deep.equal({ ok: true, value: 4096 });
    expect(parseFioSize('4K')).to.deep.equal({ ok: true, value: 4096 });
    expect(parseFioSize('1KB')).to.deep.equal({ ok: true, value: 1024 });
    expect(parseFioSize('1kib')).to.deep.equal({ ok: true, value: 1000 });
    expect(parseFioSize('16m')).to.deep.equal({ ok: true, value: 16 << 20 });
    expect(parseFioSize('1MiB')).to.deep.equal({ ok: true, value: 1_000_000 });
    expect(parseFioSize('2g')).to.deep.equal({ ok: true, value: 2 * 1024 ** 3 });
    expect(parseFioSize('512b')).to.deep.equal({ ok: true, value: 512 });
    expect(parseFioSize('0x1000')).to.deep.equal({ ok: true, value: 4096 });
    expect(parseFioSize('1.5k').ok).to.equal(false);
    expect(parseFioSize('0x10k').ok).to.equal(false);
    expect(parseFioSize('4q').ok).to.equal(false);
  });

  it('reads times in seconds by default, and d/h/m/s/ms/us', () => {
    expect(parseFioTime('2')).to.deep.equal({ ok: true, value: 2e6 });
    expect(parseFioTime('2s')).to.deep.equal({ ok: true, value: 2e6 });
    expect(parseFioTime('2m')).to.deep.equal({ ok: true, value: 120e6 });
    expect(parseFioTime('500ms')).to.deep.equal({ ok: true, value: 500e3 });
    expect(parseFioTime('250us')).to.deep.equal({ ok: true, value: 250 });
    expect(parseFioTime('1h')).to.deep.equal({ ok: true, value: 3600e6 });
    expect(parseFioTime('1.5s').ok).to.equal(false);
    expect(parseFioTime('abc').ok).to.equal(false);
  });

  it('reads bs and rate_iops per direction', () => {
    const j = one('[j]\nrw=randrw\nbs=4k,64k\nrate_iops=100,200\n');
    expect(j.bs).to.deep.equal({ read: 4096, write: 65536 });
    expect(j.rate_iops).to.deep.equal({ read: 100, write: 200 });
    expect(one('[j]\nbs=,8k\n').bs).to.deep.equal({ read: 4096, write: 8192 });
    expect(one('[j]\nrate_iops=50\n').rate_iops).to.deep.equal({ read: 50, write: 50 });
  });

  it('mixes with rwmixread / rwmixwrite (the last one wins), and pins pure patterns to 100 / 0', () => {
    expect(one('[j]\nrw=randrw\n').rwmixread).to.equal(50);
    expect(one('[j]\nrw=rw\nrwmixread=70\n').rwmixread).to.equal(70);
    expect(one('[j]\nrw=randrw\nrwmixread=70\nrwmixwrite=20\n').rwmixread).to.equal(80);
    expect(one('[j]\nrw=readwrite\n').rw).to.equal('rw');
    expect(one('[j]\nrw=randwrite\nrwmixread=70\n').rwmixread).to.equal(0);
  });

  it('runs psync and sync at depth 1 whatever iodepth says, keeping the request', () => {
    const r = parseFioJobFile('[j]\nioengine=psync\niodepth=8\n', { source: 'j.fio' });
    if (!r.ok) throw new Error(r.error.message);
    expect(r.value.jobs[0]).to.deep.include({ iodepth: 1, iodepth_requested: 8 });
    expect(r.value.warnings[0]).to.contain('iodepth=8 has no effect with ioengine=psync');
    expect(one('[j]\nioengine=sync\niodepth=4\n').iodepth).to.equal(1);
    expect(one('[j]\nioengine=io_uring\niodepth=4\n').iodepth).to.equal(4);
    expect(one('[j]\n').ioengine).to.equal('psync');
  });

  it('numbers reporting groups at each stonewall, as fio groupid', () => {
    expect(jobs('[a]\n[b]\n[c]\nstonewall\n[d]\n[e]\nwait_for_previous\n').map((j) => j.groupid)).to.deep.equal([0, 0, 1, 1, 2]);
    expect(jobs('[a]\nstonewall\n').map((j) => j.groupid)).to.deep.equal([0]);
  });

  it('reads filename as a guest disk, optionally in another domain', () => {
    expect(one('[j]\nfilename=/dev/xvdb\n').filename).to.deep.equal({ raw: '/dev/xvdb', domain: null, vdev: 'xvdb', devid: 51728 });
    expect(one('[j]\nfilename=xvda\n').filename?.devid).to.equal(51712);
    expect(one('[j]\nfilename=domu1/xvdc\n').filename).to.deep.include({ domain: 'domu1', vdev: 'xvdc' });
    expect(error('[j]\nfilename=/tmp/file\n')).to.contain('xensim jobs name one guest disk');
    expect(error('[j]\nfilename=xvda:xvdb\n')).to.contain("several files (fio's ':' separator)");
  });

  it('accepts verify= and the percentile options', () => {
    const j = one(ACCEPTED['reporting'] ?? '');
    expect(j).to.deep.include({ verify: 'crc32c', lat_percentiles: true });
    expect(j.percentile_list).to.deep.equal([50, 99, 99.9]);
  });

  describe('errors', () => {
    const cases: [string, string][] = [
      ['[j]\nbogus=1\n', 'j.fio:2: Bad option <bogus=1>\nDid you mean bs?'],
      ['[j]\niodepht=4\n', 'Bad option <iodepht=4>\nDid you mean iodepth?'],
      ['[j]\nxyzzyq=4\n', 'j.fio:2: Bad option <xyzzyq=4>'],
      ['bs=4k\n[j]\n', 'j.fio:1: fio: option <bs=4k> outside of [] job section'],
      ['[j]\nrw=sideways\n', 'fio: failed parsing rw=sideways'],
      ['[j]\nrw=trim\n', 'rw=trim: trim workloads are not supported by xensim'],
      ['[j]\nrw=randtrimwrite\n', 'rw=randtrimwrite: trim workloads are not supported by xensim'],
      ['[j]\nrw=randread:8\n', 'offset modifiers'],
      ['[j]\niodepth=0\n', 'j.fio:2: iodepth: min value out of range: 0 (1 min)'],
      ['[j]\nrwmixread=101\n', 'rwmixread: max value out of range: 101 (100 max)'],
      ['[j]\nbs=0\n', 'bs: min value out of range: 0 (1 min)'],
      ['[j]\nbs=1000\n', 'multiples of 512 bytes'],
      ['[j]\nbs\n', 'Option bs requires an argument'],
      ['[j]\ndirect=2\n', 'direct: max value out of range: 2 (1 max)'],
      ['[j]\nlat_percentiles\n', 'Option lat_percentiles requires an argument'],
      ['[j]\nverify=bogus\n', 'fio: failed parsing verify=bogus'],
      ['[j]\nioengine=posixaio\n', 'ioengine=posixaio is not supported by xensim (supported: libaio, io_uring, psync, sync)'],
      ['[j]\nnumjobs=0\n', 'numjobs: min value out of range: 0 (1 min)'],
      ['[j]\nruntime=abc\n', 'fio: failed parsing runtime=abc'],
      ['[j]\npercentile_list=50:101\n', 'value out of range: 101.000000'],
      ['[j]\ntime_based\n', 'j.fio:1: job j: time_based needs runtime='],
      ['[j]\nbssplit=4k/50\n', 'Option bssplit is not supported by xensim'],
      ['[j\n', "bad section header `[j'"],
      ['include other.fio\n', 'include directives are not supported'],
      ['[global]\nbs=4k\n', 'no jobs defined'],
    ];
    for (const [text, want] of cases) {
      it(`reports ${JSON.stringify(text)}`, () => {
        expect(error(text)).to.contain(want);
      });
    }
    it('suggests like fio: within half the name, else nothing', () => {
      expect(fioDidYouMean('bogus')).to.equal('bs');
      expect(fioDidYouMean('runtim')).to.equal('runtime');
      expect(fioDidYouMean('xyzzyq')).to.equal(null);
    });
  });

  describe('inline options', () => {
    it('reads a flat object as one job, with the same meaning as a job file', () => {
      const r = fioJobsFromOptions({ rw: 'randread', bs: '4k', iodepth: 32, time_based: true, runtime: '2s', percentile_list: [50, 99] }, { defaultName: 'dom1-xvda' });
      if (!r.ok) throw new Error(r.error.message);
      const fromFile = one('[dom1-xvda]\nrw=randread\nbs=4k\niodepth=32\ntime_based=1\nruntime=2s\npercentile_list=50:99\n');
      expect({ ...r.value.jobs[0], source: null }).to.deep.equal({ ...fromFile, source: null });
    });

    it('reads { global, jobs } as several jobs', () => {
      const r = fioJobsFromOptions({ global: { bs: '8k' }, jobs: [{ name: 'w', rw: 'write' }, { rw: 'read', stonewall: true }] });
      if (!r.ok) throw new Error(r.error.message);
      expect(r.value.jobs.map((j) => [j.name, j.rw, j.bs.read, j.groupid])).to.deep.equal([['w', 'write', 8192, 0], ['job1', 'read', 8192, 1]]);
    });

    it('applies overrides over every job, after its own options', () => {
      const r = parseFioJobFile('[global]\nioengine=libaio\n[a]\niodepth=4\n[b]\niodepth=8\n', { overrides: { iodepth: 32 } });
      if (!r.ok) throw new Error(r.error.message);
      expect(r.value.jobs.map((j) => j.iodepth)).to.deep.equal([32, 32]);
      const bad = fioJobsFromOptions({ rw: 'read' }, { overrides: { iodepth: 0 } });
      expect(!bad.ok && bad.error.message).to.contain('override iodepth=0: iodepth: min value out of range');
    });

    it('reports unknown inline options like fio', () => {
      const r = fioJobsFromOptions({ rw: 'read', blocksz: '4k' }, { source: 's.yaml:block[0].fio' });
      expect(!r.ok && r.error.message).to.equal('s.yaml:block[0].fio: Bad option <blocksz=4k>\nDid you mean blocksize?');
    });
  });

  describe('against the real fio (fio --parse-only)', function () {
    let dir = '';
    let haveFio = false;
    before(function () {
      haveFio = spawnSync('fio', ['--version'], { encoding: 'utf8' }).status === 0;
      if (!haveFio) {
        console.warn('SKIPPED: fio --parse-only cross-checks because fio is not installed');
        this.skip();
      }
      dir = mkdtempSync(join(tmpdir(), 'xensim-fio-'));
    });
    after(() => {
      if (dir !== '') rmSync(dir, { recursive: true, force: true });
    });
    const fioParse = (name: string, text: string): { status: number | null; out: string } => {
      const path = join(dir, `${name}.fio`);
      writeFileSync(path, text);
      const r = spawnSync('fio', ['--parse-only', path], { encoding: 'utf8' });
      return { status: r.status, out: `${r.stdout}${r.stderr}` };
    };

    it('accepts every job file we accept (fixtures, rendered inline jobs, and examples/*.fio)', () => {
      const files: [string, string][] = Object.entries(ACCEPTED);
      const inline = fioJobsFromOptions({ global: { ioengine: 'libaio', direct: true }, jobs: [{ rw: 'randwrite', bs: '4k', iodepth: 8, time_based: true, runtime: '1s', percentile_list: [50, 99.9] }] });
      if (!inline.ok) throw new Error(inline.error.message);
      files.push(['inline', fioJobFileText(inline.value.jobs)]);
      for (const f of readdirSync(EXAMPLES).filter((x) => x.endsWith('.fio'))) files.push([`example-${f}`, readFileSync(join(EXAMPLES, f), 'utf8')]);
      expect(files.length).to.be.at.least(12);
      for (const [name, text] of files) {
        const ours = parseFioJobFile(text, { source: name });
        expect(ours.ok, `${name}: ${ours.ok ? '' : ours.error.message}`).to.equal(true);
        const theirs = fioParse(name, text);
        expect(theirs.status, `fio --parse-only ${name}:\n${theirs.out}`).to.equal(0);
      }
    });

    it('rejects a bogus option in both, with the same message and suggestion', () => {
      const text = '[j]\nbogus=1\n';
      const theirs = fioParse('bogus', text);
      expect(theirs.status).to.equal(1);
      expect(theirs.out).to.contain('Bad option <bogus=1>').and.contain('Did you mean bs?');
      expect(error(text)).to.contain('Bad option <bogus=1>\nDid you mean bs?');
    });

    it('rejects the value errors fio rejects', () => {
      for (const [name, text] of [['rw', '[j]\nrw=sideways\n'], ['iodepth', '[j]\niodepth=0\n'], ['bs', '[j]\nbs=0\n'], ['direct', '[j]\ndirect=2\n'], ['mix', '[j]\nrwmixread=101\n'], ['runtime', '[j]\nruntime=abc\n'], ['noarg', '[j]\nbs\n'], ['outside', 'bs=4k\n[j]\n']] as const) {
        expect(fioParse(name, text).status, name).to.not.equal(0);
        expect(parseFioJobFile(text).ok, name).to.equal(false);
      }
    });

    it('reads examples/*.fio through readFioJobFile', () => {
      for (const f of readdirSync(EXAMPLES).filter((x) => x.endsWith('.fio'))) {
        const r = readFioJobFile(join(EXAMPLES, f));
        expect(r.ok, f).to.equal(true);
      }
    });
  });
});
