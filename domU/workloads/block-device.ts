/**
 * The seams a guest workload drives: a block device, and a clock.
 *
 * [BlockDevice] is what fio-engine.ts issues I/O against. blkfront implements it
 * for a real (simulated) xvd; test/helpers/mem-block-device.ts implements it in
 * memory. The workload neither knows nor cares which: it sees 512-byte sectors,
 * asynchronous completions with a status, and a bag of counters it reports
 * without interpreting (hypercalls, grant maps, notifications …).
 *
 * [WorkloadClock] is how every workload engine reads time and waits. Engines never
 * call process.hrtime or setTimeout themselves, so a deterministic scheduler can
 * drive them with virtual time (see STYLE.md, "one platform seam").
 * [systemClock] is the real-time implementation.
 */

/** The sector size the block interface speaks (blkif's 512-byte sectors, XEN-FACTS). */
export const SECTOR_SIZE = 512 as const;
/** log2(SECTOR_SIZE). */
export const SECTOR_SHIFT = 9 as const;

/**
 * How one block operation ended. The mapping from blkif:
 *  - 'ok'          BLKIF_RSP_OKAY
 *  - 'error'       BLKIF_RSP_ERROR, or a request the device refused (out of range, read-only)
 *  - 'eopnotsupp'  BLKIF_RSP_EOPNOTSUPP (e.g. discard or flush the backend does not offer)
 */
export type IoStatus = 'ok' | 'error' | 'eopnotsupp';

/**
 * [DeviceCounters] is a flat snapshot of monotonically increasing counters
 * (name → count since the device was created). Workloads diff two snapshots and
 * report the difference per I/O; they never interpret the names. Suggested names
 * (use them when they apply, so reports line up across devices):
 * `hypercalls`, `grant_maps`, `grant_unmaps`, `grant_copies`, `notifications_sent`,
 * `notifications_received`, `dma_translations`, `ring_requests`, `ring_responses`.
 */
export type DeviceCounters = Readonly<Record<string, number>>;

/**
 * [BlockDevice] is a block device as a guest workload sees it.
 *
 * Contract (the caller is the workload; the device is the driver):
 *  - `sector` is in 512-byte units, a non-negative safe integer; `sector + bytes/512 <= sectors`.
 *  - `bytes.length` is a positive multiple of 512 and at most `maxRequestBytes`.
 *  - The buffer belongs to the device from the call until the promise settles: a read
 *    fills it, a write reads it, and the caller neither reads nor changes it meanwhile.
 *    After settling the device keeps no reference to it (so callers reuse buffers).
 *  - The promise always resolves, never rejects. A request that breaks the contract
 *    above resolves 'error' (as a disk answers EIO), it does not throw.
 *  - Completions may arrive in any order; each call is independent. `flush()` completes
 *    after every write that completed before flush() was called is durable; it orders
 *    nothing else (like REQ_PREFLUSH, not a queue drain).
 *  - A write acknowledged 'ok' is what later reads return, until the next write there.
 *    Content of a range after a failed write or a discard is undefined.
 */
export interface BlockDevice {
  readonly sectorSize: typeof SECTOR_SIZE;
  /** Capacity in 512-byte sectors (xenstore `sectors`). */
  readonly sectors: number;
  /** Largest single read/write in bytes (e.g. 11 segments × 4 KiB = 44 KiB without indirect descriptors). */
  readonly maxRequestBytes: number;
  /** True if writes and discards will fail ('error'), as with a `mode=r` disk. */
  readonly readOnly: boolean;
  read(sector: number, into: Uint8Array): Promise<IoStatus>;
  write(sector: number, from: Uint8Array): Promise<IoStatus>;
  flush(): Promise<IoStatus>;
  discard(sector: number, nrSectors: number): Promise<IoStatus>;
  /** A fresh snapshot of the device's counters (see DeviceCounters). */
  counters(): DeviceCounters;
}

/**
 * [WorkloadClock] is the only way workload engines observe or spend time.
 *  - `now()` is a monotonic time in nanoseconds (any origin).
 *  - `sleepUntil(t)` resolves once `now() >= t`, at the earliest in a later macrotask
 *    (so it also serves as "yield to other work" when t <= now()). It never rejects.
 */
export interface WorkloadClock {
  now(): bigint;
  sleepUntil(deadlineNs: bigint): Promise<void>;
}

/**
 * [systemClock] is real time: process.hrtime for now(); setTimeout for waits of a
 * millisecond or more, setImmediate below that (finer, at the cost of polling).
 */
export const systemClock: WorkloadClock = {
  now: () => process.hrtime.bigint(),
  sleepUntil(deadlineNs: bigint): Promise<void> {
    return new Promise<void>((resolve) => {
      const step = (): void => {
        const left = deadlineNs - process.hrtime.bigint();
        if (left <= 0n) resolve();
        else if (left >= 1_000_000n) setTimeout(step, Number(left / 1_000_000n));
        else setImmediate(step);
      };
      setImmediate(step);
    });
  },
};

/** [diffCounters after before] is after − before, for every name in either (missing = 0). */
export function diffCounters(after: DeviceCounters, before: DeviceCounters): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(after)) out[k] = (after[k] ?? 0) - (before[k] ?? 0);
  for (const k of Object.keys(before)) if (!(k in out)) out[k] = -(before[k] ?? 0);
  return out;
}
