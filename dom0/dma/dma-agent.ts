/**
 * The guest agent of a domain that drives DMA devices (dom0 or a driver
 * domain): everything GuestAgent offers, plus attaching a DMA API and a
 * driver to a device the toolstack plugged in, running I/O through it, and
 * the benchmark loop that must run inside the domain's own worker (the
 * control plane is far too slow to be on the data path).
 *
 * Errors come back as values; a driver failure never takes the domain down.
 */
import type { DeviceInfo } from '../../hypervisor/iommu.ts';
import { GuestAgent, type AgentResult } from '../../shared/kernel/agent.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { Pfn } from '../../shared/types.ts';
import { createDmaApi, type DmaConfig } from './create-dma.ts';
import { describeDmaError, diffCounters, type DmaApi, type DmaCounters, type DmaPiece } from './dma-api.ts';
import { DmaDiskDriver, describeDiskDriverError, type DiskDriverCounters, type DiskDriverOptions, type DiskIoResult, type DiskOpName } from './disk-driver.ts';
import { allocRun } from './frames.ts';
import { mapGrantsForDma, unmapGrantsForDma, type ForeignPage, type GrantForDma } from './grant-dma.ts';
import { NicDriver, describeNicDriverError, type NicDriverCounters, type NicDriverOptions } from './nic-driver.ts';

export interface AttachOptions {
  /** Where the queues come from, when the data DMA API is `legacy` (a driver with right rings, wrong buffers). */
  readonly queueConfig?: DmaConfig;
}

export interface DiskBenchConfig {
  readonly op: DiskOpName;
  /** Bytes per I/O (a multiple of the page size), one pfn-contiguous buffer each. */
  readonly ioBytes: number;
  /** I/Os kept in flight. */
  readonly depth: number;
  /** I/Os to complete (after warm-up), at most. */
  readonly ios: number;
  /** Stop submitting after this long (the I/Os in flight still complete); default: no limit. */
  readonly durationMs?: number;
  /** Warm-up I/Os (not measured), and the warm-up's time limit. */
  readonly warmup?: number;
  readonly warmupMs?: number;
  readonly timeoutMs?: number;
}

export interface DiskBenchReport {
  readonly ns: number;
  readonly ios: number;
  readonly bytes: number;
  readonly errors: number;
  /** The DMA API's work during the measured I/Os. */
  readonly dma: DmaCounters;
  readonly driver: DiskDriverCounters;
  /** All hypercalls the domain made during the measured I/Os. */
  readonly hypercalls: number;
}

interface Attached {
  readonly dma: DmaApi;
  readonly queueDma: DmaApi;
  readonly disk?: DmaDiskDriver;
  readonly nic?: NicDriver;
}

function attempt<T>(fn: () => T): AgentResult<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}

export class DmaAgent extends GuestAgent {
  private readonly attached = new Map<number, Attached>();
  private nextHandle = 1;
  private readonly foreign = new Map<number, ForeignPage>();

  constructor(k: DomainKernel) { super(k); }

  private apis(device: DeviceInfo, cfg: DmaConfig, opts: AttachOptions): { dma: DmaApi; queueDma: DmaApi } {
    const dma = createDmaApi(this.k, device, cfg);
    if (!dma.ok) throw new Error(describeDmaError(dma.error));
    if (opts.queueConfig === undefined) return { dma: dma.value, queueDma: dma.value };
    const q = createDmaApi(this.k, device, opts.queueConfig);
    if (!q.ok) throw new Error(describeDmaError(q.error));
    return { dma: dma.value, queueDma: q.value };
  }

  private get(h: number): Attached {
    const a = this.attached.get(h);
    if (a === undefined) throw new Error(`no attached device with handle ${h}`);
    return a;
  }
  private disk(h: number): DmaDiskDriver {
    const d = this.get(h).disk;
    if (d === undefined) throw new Error(`handle ${h} is not a disk`);
    return d;
  }
  private nic(h: number): NicDriver {
    const n = this.get(h).nic;
    if (n === undefined) throw new Error(`handle ${h} is not a NIC`);
    return n;
  }

  // ---- disks ---------------------------------------------------------------

  /** Creates the DMA API cfg for device and attaches the disk driver; returns a handle. */
  attachDisk(device: DeviceInfo, cfg: DmaConfig, opts: DiskDriverOptions & AttachOptions = {}): AgentResult<number> {
    return attempt(() => {
      const { dma, queueDma } = this.apis(device, cfg, opts);
      const r = DmaDiskDriver.attach(this.k, dma, { ...opts, queueDma });
      if (!r.ok) throw new Error(describeDiskDriverError(r.error));
      const h = this.nextHandle++;
      this.attached.set(h, { dma, queueDma, disk: r.value });
      return h;
    });
  }

  /** One I/O on buffer pieces the caller names, waited for (events dispatched meanwhile). */
  diskIo(h: number, op: DiskOpName, sector: number, buffer: DmaPiece[], timeoutMs = 10_000): AgentResult<DiskIoResult> {
    return attempt(() => {
      const d = this.disk(h);
      let res: DiskIoResult | undefined;
      const s = d.submit({ op, sector, buffer }, (r) => { res = r; });
      if (!s.ok) throw new Error(describeDiskDriverError(s.error));
      d.kick();
      if (!this.k.waitFor(() => res !== undefined, timeoutMs)) throw new Error(`disk ${op} at sector ${sector} timed out`);
      return res as DiskIoResult;
    });
  }

  /** Writes bytes to the disk from fresh pfn-contiguous pages; returns the status. */
  diskWrite(h: number, sector: number, bytes: Uint8Array): AgentResult<DiskIoResult> {
    return this.withBuffer(bytes.length, (pfn) => {
      this.k.mem.copyIn(this.k.gpa(pfn), bytes);
      return this.diskIo(h, 'write', sector, [{ pfn, offset: 0, len: bytes.length }]);
    });
  }

  /** Reads len bytes from the disk into fresh pfn-contiguous pages and returns them. */
  diskRead(h: number, sector: number, len: number): AgentResult<{ status: number; data: Uint8Array }> {
    return this.withBuffer(len, (pfn) => {
      const r = this.diskIo(h, 'read', sector, [{ pfn, offset: 0, len }]);
      if (!r.ok) return r;
      const data = new Uint8Array(len);
      this.k.mem.copyOut(this.k.gpa(pfn), data);
      return { ok: true, value: { status: r.value.status, data } };
    });
  }

  private withBuffer<T>(len: number, fn: (pfn: Pfn) => AgentResult<T>): AgentResult<T> {
    const n = Math.ceil(len / this.k.pageSize);
    const pfns = allocRun(this.k.ram, n);
    if (pfns === undefined) return { ok: false, error: `no run of ${n} free pages` };
    try {
      return fn(pfns[0] as Pfn);
    } finally {
      for (const p of pfns) this.k.ram.release(p);
    }
  }

  /**
   * The benchmark loop: keep `depth` I/Os of `ioBytes` in flight until `ios`
   * complete (after `warmup`), each a pfn-contiguous buffer of its own,
   * resubmitted from the completion handler. Reports time and counters.
   */
  diskBench(h: number, cfg: DiskBenchConfig): AgentResult<DiskBenchReport> {
    return attempt(() => {
      const d = this.disk(h);
      const a = this.get(h);
      const ps = this.k.pageSize;
      if (cfg.ioBytes % ps !== 0) throw new Error(`ioBytes must be a multiple of ${ps}`);
      const pages = cfg.ioBytes / ps;
      const bufs: Pfn[][] = [];
      try {
        for (let i = 0; i < cfg.depth; i++) {
          const run = allocRun(this.k.ram, pages);
          if (run === undefined) throw new Error(`no run of ${pages} free pages for buffer ${i}`);
          bufs.push(run);
        }
        const ioSectors = cfg.ioBytes / 512;
        const span = Math.max(1, Math.floor(d.sectors / ioSectors));
        const runPhase = (total: number, durationMs: number | undefined): { ns: number; errors: number; ios: number } => {
          let submitted = 0;
          let completed = 0;
          let errors = 0;
          let stopped = false;
          let failure: string | undefined;
          const t0 = process.hrtime.bigint();
          const deadline = durationMs === undefined ? undefined : t0 + BigInt(Math.round(durationMs * 1e6));
          const submitOne = (slot: number): void => {
            const sector = (submitted % span) * ioSectors;
            submitted++;
            const r = d.submit({ op: cfg.op, sector, buffer: cfg.op === 'flush' ? [] : [{ pfn: (bufs[slot] as Pfn[])[0] as Pfn, offset: 0, len: cfg.ioBytes }] }, (res) => {
              completed++;
              if (res.status !== 0) errors++;
              if (stopped || submitted >= total) return;
              if (deadline !== undefined && process.hrtime.bigint() >= deadline) { stopped = true; return; }
              submitOne(slot);
            });
            if (!r.ok) failure = describeDiskDriverError(r.error);
          };
          for (let i = 0; i < Math.min(cfg.depth, total); i++) submitOne(i);
          d.kick();
          const finished = () => failure !== undefined || (completed === submitted && (stopped || submitted >= total));
          if (!this.k.waitFor(finished, cfg.timeoutMs ?? 60_000)) throw new Error(`benchmark stalled at ${completed}/${submitted}`);
          if (failure !== undefined) throw new Error(failure);
          return { ns: Number(process.hrtime.bigint() - t0), errors, ios: completed };
        };
        if ((cfg.warmup ?? 0) > 0) runPhase(cfg.warmup ?? 0, cfg.warmupMs);
        const c0 = a.dma.counters();
        const d0 = d.counters();
        const h0 = this.k.hc.calls;
        const { ns, errors, ios } = runPhase(cfg.ios, cfg.durationMs);
        const d1 = d.counters();
        return {
          ns, ios, bytes: ios * cfg.ioBytes, errors, dma: diffCounters(c0, a.dma.counters()),
          driver: {
            submitted: d1.submitted - d0.submitted, completed: d1.completed - d0.completed, errors: d1.errors - d0.errors,
            kicks: d1.kicks - d0.kicks, interrupts: d1.interrupts - d0.interrupts, bogusCompletions: d1.bogusCompletions - d0.bogusCompletions,
          },
          hypercalls: this.k.hc.calls - h0,
        };
      } finally {
        for (const b of bufs) for (const p of b) this.k.ram.release(p);
      }
    });
  }

  // ---- NICs ----------------------------------------------------------------

  attachNic(device: DeviceInfo, cfg: DmaConfig, opts: NicDriverOptions & AttachOptions = {}): AgentResult<number> {
    return attempt(() => {
      const { dma, queueDma } = this.apis(device, cfg, opts);
      const r = NicDriver.attach(this.k, dma, { ...opts, queueDma });
      if (!r.ok) throw new Error(describeNicDriverError(r.error));
      const h = this.nextHandle++;
      this.attached.set(h, { dma, queueDma, nic: r.value });
      return h;
    });
  }

  /** Queues frames and kicks; returns how many were accepted (the rest found the TX ring full). */
  nicSend(h: number, frames: Uint8Array[]): AgentResult<number> {
    return attempt(() => {
      const n = this.nic(h);
      let sent = 0;
      for (const f of frames) {
        let r = n.send(f);
        if (!r.ok && r.error.kind === 'tx-full') {
          n.kick();
          this.k.waitFor(() => n.txInFlight < n.txEntries, 1000);
          r = n.send(f);
        }
        if (!r.ok) break;
        sent++;
      }
      n.kick();
      return sent;
    });
  }

  /** Waits until count frames have arrived (or the timeout) and returns them. */
  nicReceive(h: number, count: number, timeoutMs = 5000): AgentResult<Uint8Array[]> {
    return attempt(() => {
      const n = this.nic(h);
      const got: Uint8Array[] = [];
      this.k.waitFor(() => { got.push(...n.take()); return got.length >= count; }, timeoutMs);
      return got;
    });
  }

  nicCounters(h: number): AgentResult<NicDriverCounters> { return attempt(() => this.nic(h).counters()); }

  // ---- common --------------------------------------------------------------

  dmaCounters(h: number): AgentResult<DmaCounters> { return attempt(() => this.get(h).dma.counters()); }
  diskCounters(h: number): AgentResult<DiskDriverCounters> { return attempt(() => this.disk(h).counters()); }

  detach(h: number): AgentResult<void> {
    return attempt(() => {
      const a = this.get(h);
      a.disk?.detach();
      a.nic?.detach();
      this.attached.delete(h);
    });
  }

  /** Maps other domains' grants for DMA at ballooned pfns; returns the pfns. */
  mapForeign(grants: GrantForDma[]): AgentResult<number[]> {
    return attempt(() => {
      const r = mapGrantsForDma(this.k, grants);
      if (!r.ok) throw new Error(`grant ${r.error.index}: ${r.error.message}`);
      for (const f of r.value) this.foreign.set(f.pfn, f);
      return r.value.map((f) => f.pfn as number);
    });
  }

  unmapForeign(pfns: number[]): AgentResult<number[]> {
    return attempt(() => {
      const pages = pfns.map((p) => {
        const f = this.foreign.get(p);
        if (f === undefined) throw new Error(`pfn ${p} is not a foreign page mapped for DMA`);
        return f;
      });
      for (const p of pfns) this.foreign.delete(p);
      return unmapGrantsForDma(this.k, pages);
    });
  }
}
