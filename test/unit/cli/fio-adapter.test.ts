import { expect } from 'chai';
import { parseFioJobFile } from '../../../cli/config/fio-job.ts';
import { toEngineSpec } from '../../../cli/run/fio-adapter.ts';

function job(text: string) {
  const r = parseFioJobFile(text, { source: 't.fio' });
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  const j = r.value.jobs[0];
  if (j === undefined) throw new Error('no job');
  return j;
}

describe('fio job → engine spec', () => {
  it('turns sizes, times and verify into the engine\'s units', () => {
    const r = toEngineSpec(job('[j]\nioengine=libaio\nrw=randrw\nrwmixread=70\nbs=16k\niodepth=8\nsize=50%\nruntime=2\ntime_based\nramp_time=500ms\nverify=crc32c\n'), 64 << 20);
    expect(r.ok).to.equal(true);
    if (!r.ok) return;
    expect(r.value).to.include({ name: 'j', rw: 'randrw', rwmixread: 70, bs: 16384, iodepth: 8, size: 32 << 20, runtime: 2, time_based: true, ramp_time: 0.5, verify: true });
  });
  it('refuses different read and write block sizes for a mixed job, naming the job', () => {
    const r = toEngineSpec(job('[mix]\nrw=randrw\nbs=4k,8k\n'), 64 << 20);
    expect(r.ok).to.equal(false);
    if (!r.ok) expect(r.error).to.match(/t\.fio:1 \[mix\]: bs=4096,8192/);
  });
  it('uses the write block size for a write-only job and sums per-direction rate caps', () => {
    const r = toEngineSpec(job('[w]\nrw=write\nbs=4k,64k\nrate_iops=100,200\n'), 64 << 20);
    expect(r.ok && r.value.bs).to.equal(65536);
    expect(r.ok && r.value.rate_iops).to.equal(200);
  });
  it('refuses a size larger than the device', () => {
    expect(toEngineSpec(job('[big]\nrw=read\nsize=1g\n'), 64 << 20).ok).to.equal(false);
  });
});
