/**
 * From a parsed fio job (cli/config/fio-job.ts: fio's options as the user
 * wrote them, per direction, in µs) to what the workload engine runs
 * (domU/workloads/fio-engine.ts: one block size, bytes and seconds). Sizes
 * given as a percentage become bytes of the device the job targets.
 */
import type { FioJob, FioSize } from '../config/fio-job.ts';
import type { FioJobSpec } from '../../domU/workloads/fio-engine.ts';
import { type Result, err, ok } from '../../shared/result.ts';

function bytesOf(s: FioSize | null, deviceBytes: number): number | undefined {
  if (s === null) return undefined;
  if ('bytes' in s) return s.bytes;
  return Math.floor((deviceBytes * s.percent) / 100 / 512) * 512;
}

/** [toEngineSpec job deviceBytes] is the engine's spec for job, or why xensim cannot run it. */
export function toEngineSpec(job: FioJob, deviceBytes: number): Result<FioJobSpec, string> {
  const where = `${job.source.file}${job.source.line > 0 ? `:${job.source.line}` : ''} [${job.section}]`;
  const reads = job.rwmixread > 0;
  const writes = job.rwmixread < 100;
  if (reads && writes && job.bs.read !== job.bs.write) {
    return err(`${where}: bs=${job.bs.read},${job.bs.write}: xensim runs one block size per job; give the same size for reads and writes`);
  }
  const bs = reads ? job.bs.read : job.bs.write;
  const size = bytesOf(job.size, deviceBytes);
  if (size !== undefined && size > deviceBytes) return err(`${where}: size=${size} bytes is larger than the ${deviceBytes}-byte device`);
  const rate = job.rate_iops === null ? undefined : (reads ? job.rate_iops.read : 0) + (writes ? job.rate_iops.write : 0);
  const spec: FioJobSpec = {
    name: job.name,
    rw: job.rw,
    bs,
    iodepth: job.iodepth,
    numjobs: job.numjobs,
    ...(size !== undefined ? { size } : {}),
    ...(bytesOf(job.offset, deviceBytes) !== undefined ? { offset: bytesOf(job.offset, deviceBytes) } : {}),
    ...(job.offset_increment !== null ? { offset_increment: job.offset_increment } : {}),
    ...(job.runtime_us !== null ? { runtime: job.runtime_us / 1e6 } : {}),
    time_based: job.time_based,
    ramp_time: job.ramp_time_us / 1e6,
    rwmixread: job.rwmixread,
    ...(rate !== undefined && rate > 0 ? { rate_iops: rate } : {}),
    verify: job.verify !== null && job.verify !== '0' && job.verify !== 'null',
    ...(job.do_verify !== null ? { do_verify: job.do_verify } : {}),
    verify_fatal: job.verify_fatal,
    fsync: job.fsync,
    continue_on_error: job.continue_on_error,
    ...(job.randseed !== null ? { randseed: job.randseed } : {}),
    stonewall: job.stonewall,
    group_reporting: job.group_reporting,
    ...(job.percentile_list !== null ? { percentile_list: job.percentile_list } : {}),
    lat_percentiles: job.lat_percentiles,
    bwavgtime: job.bwavgtime_ms,
    iopsavgtime: job.iopsavgtime_ms,
    options: job.options,
  };
  return ok(spec);
}
