/**
 * A DMA block controller, as hardware: it sees bus addresses only — never
 * guest addresses or grant references — and reaches memory only by DMA
 * through its IommuView, so every access is translated (or faulted, or
 * audited as stray) the way its IOMMU context says. It runs in its own worker
 * (dom0/devices/dma-disk-main.ts), concurrently with the CPUs; the same class
 * runs in one thread under unit tests (processOnce).
 *
 * Programming model (NVMe-like, with Xen's ring.h notification rules):
 *  - a submission queue and a completion queue in the driver's coherent DMA
 *    memory, at bus addresses written into the register window (MMIO);
 *  - each descriptor names a scatter-gather list of bus segments (two inline,
 *    more in a separate SG list at `sglBus`);
 *  - the driver publishes descriptors by storing `sqTail` and rings the
 *    doorbell only when the tail passes the device's `sqEvent`;
 *  - the device reads descriptors by DMA (a batch at a time), moves the data
 *    between the disk (a DiskStore) and the segments by DMA, writes
 *    completions by DMA, stores `cqTail`, and raises its interrupt (an event
 *    on the owner's port) only when the tail passes the driver's `cqEvent`.
 *    It pushes completions every `pushEvery` requests (netback's "push
 *    responses earlier").
 *
 * A hostile or buggy driver gets an error status per request (bad
 * descriptor, DMA fault, I/O error) and the device keeps serving; only a
 * queue the device cannot read or write, or a producer index claiming more
 * than the queue holds, stops it (status fatal, with the reason).
 */
import { DEVICE_STATUS, FATAL_REASON, InterruptLine, MMIO_COMMON, MmioWindow, needNotify } from '../dma/mmio.ts';
import { IommuView } from '../../shared/dma/iommu-view.ts';
import type { MachineLayout } from '../../shared/machine-layout.ts';
import type { BusAddr } from '../../shared/types.ts';
import { SECTOR_SIZE, type DiskStore } from './disk-store.ts';

/** Disk registers, after MMIO_COMMON in the window. */
export const DISK_REGS = {
  sqBase: 64, // u64 [DRV] bus address of the submission queue (queueEntries × DISK_DESC.SIZE, bus-contiguous)
  cqBase: 72, // u64 [DRV] bus address of the completion queue (queueEntries × DISK_CPL.SIZE)
  queueEntries: 80, // u32 [DRV] a power of two, 1..4096
  sqTail: 84, // u32 [DRV] descriptors published, free-running
  sqHead: 88, // u32 [DEV] descriptors taken
  sqEvent: 92, // u32 [DEV] ring the doorbell when sqTail moves past this
  cqTail: 96, // u32 [DEV] completions published
  cqHead: 100, // u32 [DRV] completions consumed
  cqEvent: 104, // u32 [DRV] raise the interrupt when cqTail moves past this
  sectors: 108, // u64 [DEV] capacity in 512-byte sectors
  maxSegs: 116, // u32 [DEV] segments per request
  maxBytes: 120, // u32 [DEV] bytes per request
  requests: 124, // u32 [DEV] requests completed
  errors: 128, // u32 [DEV] completions with a non-zero status
  dmaFaults: 132, // u32 [DEV] requests that took an IOMMU fault
  SIZE: 136,
} as const;

/** A submission queue entry, in the driver's memory, read by the device. */
export const DISK_DESC = {
  id: 0, // u64 [DRV] echoed in the completion
  op: 8, // u8 [DRV] DISK_OP
  nrSegs: 10, // u16 [DRV] 1..maxSegs (0 for flush)
  sector: 16, // u64 [DRV] first 512-byte sector
  sglBus: 24, // u64 [DRV] bus address of nrSegs SG_ENTRYs when nrSegs > INLINE
  inline: 32, // 2 × SG_ENTRY [DRV] the segments when nrSegs <= INLINE
  INLINE: 2,
  SIZE: 64,
} as const;

/** One scatter-gather element: a run of bus addresses. */
export const SG_ENTRY = {
  bus: 0, // u64 [DRV]
  len: 8, // u32 [DRV] bytes
  SIZE: 16,
} as const;

/** A completion queue entry, written by the device. */
export const DISK_CPL = {
  id: 0, // u64 [DEV] the descriptor's id
  status: 8, // i32 [DEV] DISK_STATUS
  bytes: 12, // u32 [DEV] bytes transferred
  SIZE: 16,
} as const;

/** Operations, numbered as blkif's. */
export const DISK_OP = { read: 0, write: 1, flush: 3 } as const;

export const DISK_STATUS = {
  okay: 0,
  /** The medium refused (out of range, read-only, I/O error): BLKIF_RSP_ERROR. */
  ioError: -1,
  /** Unknown operation: BLKIF_RSP_EOPNOTSUPP. */
  notSupported: -2,
  /** A data or SG-list DMA faulted in the IOMMU. */
  dmaError: -3,
  /** The descriptor itself is malformed (segments, lengths). */
  badDescriptor: -4,
} as const;

export const MAX_QUEUE_ENTRIES = 4096;

export interface DiskControllerOptions {
  /** Spin this long (µs) for new work before sleeping (default 20; 0 never spins). */
  readonly spinUs?: number;
  /** Longest sleep before returning to the event loop (ms, default 10). */
  readonly idleMs?: number;
  /** Segments per request (default 256). */
  readonly maxSegs?: number;
  /** Bytes per request (default 1 MiB). */
  readonly maxBytes?: number;
  /** Push completions (and maybe interrupt) every this many requests (default 16). */
  readonly pushEvery?: number;
}

export interface DiskControllerCounters {
  requests: number;
  reads: number;
  writes: number;
  flushes: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
  dmaFaults: number;
  interrupts: number;
  sleeps: number;
  batches: number;
  status: number;
  fatalReason: number;
}

const u64 = (b: Buffer, o: number): number => b.readUInt32LE(o) + b.readUInt32LE(o + 4) * 2 ** 32;

export class DmaDiskController {
  readonly mmio: MmioWindow;
  readonly view: IommuView;
  private readonly irq: InterruptLine;
  private readonly spinNs: bigint;
  private readonly idleMs: number;
  private readonly maxSegs: number;
  private readonly maxBytes: number;
  private readonly pushEvery: number;
  private stopped = false;
  // Queue state, valid while configured.
  private configured = false;
  private entries = 0;
  private sqBase = 0;
  private cqBase = 0;
  private head = 0;
  private cqTail = 0;
  // Private buffers: the device's own RAM (descriptor fetch, SG list, staging, completion batch).
  private descBuf = Buffer.alloc(0);
  private readonly sgBuf: Buffer;
  private readonly staging: Buffer;
  private readonly cplBuf: Buffer;
  private pending = 0;
  private readonly c: DiskControllerCounters = {
    requests: 0, reads: 0, writes: 0, flushes: 0, bytesRead: 0, bytesWritten: 0, errors: 0, dmaFaults: 0, interrupts: 0, sleeps: 0, batches: 0,
    status: 0, fatalReason: 0,
  };

  constructor(
    private readonly layout: MachineLayout,
    blockAddr: number,
    readonly disk: DiskStore,
    opts: DiskControllerOptions = {},
  ) {
    this.mmio = new MmioWindow(layout.mem, blockAddr);
    this.view = new IommuView(layout, blockAddr);
    this.irq = new InterruptLine(layout, this.mmio);
    this.spinNs = BigInt(Math.round((opts.spinUs ?? 20) * 1000));
    this.idleMs = opts.idleMs ?? 10;
    this.maxSegs = opts.maxSegs ?? 256;
    this.maxBytes = opts.maxBytes ?? 1 << 20;
    this.pushEvery = opts.pushEvery ?? 16;
    this.sgBuf = Buffer.alloc(this.maxSegs * SG_ENTRY.SIZE);
    this.staging = Buffer.alloc(this.maxBytes);
    this.cplBuf = Buffer.alloc(this.pushEvery * DISK_CPL.SIZE);
    const m = this.mmio;
    m.store64(DISK_REGS.sectors, disk.sectors);
    m.store(DISK_REGS.maxSegs, this.maxSegs);
    m.store(DISK_REGS.maxBytes, this.maxBytes);
    // Release: a driver that sees `running` sees the capacity registers.
    m.store(MMIO_COMMON.status, DEVICE_STATUS.running);
  }

  counters(): DiskControllerCounters {
    return { ...this.c, status: this.mmio.load(MMIO_COMMON.status), fatalReason: this.mmio.load(MMIO_COMMON.fatalReason), interrupts: this.mmio.load(MMIO_COMMON.interrupts) };
  }

  private fatal(reason: number): number {
    this.mmio.store(MMIO_COMMON.fatalReason, reason);
    this.mmio.store(MMIO_COMMON.status, DEVICE_STATUS.fatal);
    this.configured = false;
    this.irq.raise(); // let the driver notice
    return 0;
  }

  /** Reads the queue registers once the driver enables the device. */
  private configure(): boolean {
    const m = this.mmio;
    const e = m.load(DISK_REGS.queueEntries);
    const sq = m.load64(DISK_REGS.sqBase);
    const cq = m.load64(DISK_REGS.cqBase);
    if (!(e >= 1 && e <= MAX_QUEUE_ENTRIES && (e & (e - 1)) === 0) || sq % DISK_DESC.SIZE !== 0 || cq % DISK_CPL.SIZE !== 0) {
      this.fatal(FATAL_REASON.badQueueConfig);
      return false;
    }
    this.entries = e;
    this.sqBase = sq;
    this.cqBase = cq;
    this.head = m.load(DISK_REGS.sqHead);
    this.cqTail = m.load(DISK_REGS.cqTail);
    m.store(DISK_REGS.sqEvent, (this.head + 1) >>> 0); // the first descriptor rings the doorbell
    if (this.descBuf.length < e * DISK_DESC.SIZE) this.descBuf = Buffer.alloc(e * DISK_DESC.SIZE);
    this.configured = true;
    return true;
  }

  /** The driver turned the device off: forget the queues, zero the device's indices. */
  private reset(): void {
    this.configured = false;
    this.pending = 0;
    this.mmio.store(DISK_REGS.sqHead, 0);
    this.mmio.store(DISK_REGS.cqTail, 0);
    this.head = 0;
    this.cqTail = 0;
  }

  /**
   * [processOnce] takes every published descriptor (up to the completion
   * queue's room), executes them in order and publishes their completions.
   * Returns how many it took.
   */
  processOnce(): number {
    const m = this.mmio;
    const status = m.load(MMIO_COMMON.status);
    if (m.load(MMIO_COMMON.enable) !== 1) {
      if (this.configured || status === DEVICE_STATUS.fatal) {
        this.reset();
        m.store(MMIO_COMMON.fatalReason, FATAL_REASON.none);
        m.store(MMIO_COMMON.status, DEVICE_STATUS.running);
      }
      return 0;
    }
    if (status === DEVICE_STATUS.fatal) return 0;
    if (!this.configured && !this.configure()) return 0;
    const tail = m.load(DISK_REGS.sqTail);
    const avail = (tail - this.head) >>> 0;
    if (avail === 0) return 0;
    if (avail > this.entries) return this.fatal(FATAL_REASON.producerOverflow);
    const used = (this.cqTail - m.load(DISK_REGS.cqHead)) >>> 0;
    if (used > this.entries) return this.fatal(FATAL_REASON.producerOverflow);
    const n = Math.min(avail, this.entries - used);
    if (n === 0) return 0; // completion queue full: wait for the driver to consume
    // Fetch the batch of descriptors (at most two DMAs: the queue may wrap).
    const idx = this.head & (this.entries - 1);
    const first = Math.min(n, this.entries - idx);
    const D = DISK_DESC.SIZE;
    let r = this.view.dmaRead((this.sqBase + idx * D) as BusAddr, this.descBuf, 0, first * D);
    if (r.ok && n > first) r = this.view.dmaRead(this.sqBase as BusAddr, this.descBuf, first * D, (n - first) * D);
    if (!r.ok) return this.fatal(FATAL_REASON.queueReadFault);
    this.c.batches++;
    for (let i = 0; i < n; i++) {
      this.execute(i * D);
      if (this.pending === this.pushEvery && !this.pushCompletions()) return i + 1;
    }
    this.head = (this.head + n) >>> 0;
    m.store(DISK_REGS.sqHead, this.head);
    this.pushCompletions();
    return n;
  }

  /** Writes the batched completions by DMA, publishes cqTail, raises the interrupt if asked. */
  private pushCompletions(): boolean {
    if (this.pending === 0) return true;
    const m = this.mmio;
    const C = DISK_CPL.SIZE;
    const idx = this.cqTail & (this.entries - 1);
    const first = Math.min(this.pending, this.entries - idx);
    let r = this.view.dmaWrite((this.cqBase + idx * C) as BusAddr, this.cplBuf, 0, first * C);
    if (r.ok && this.pending > first) r = this.view.dmaWrite(this.cqBase as BusAddr, this.cplBuf, first * C, (this.pending - first) * C);
    if (!r.ok) { this.fatal(FATAL_REASON.queueWriteFault); return false; }
    const old = this.cqTail;
    this.cqTail = (this.cqTail + this.pending) >>> 0;
    this.pending = 0;
    // Release: the driver that loads the new tail sees the completions DMA'd above.
    m.store(DISK_REGS.cqTail, this.cqTail);
    if (needNotify(this.cqTail, old, m.load(DISK_REGS.cqEvent))) this.irq.raise();
    return true;
  }

  private complete(idLo: number, idHi: number, status: number, bytes: number): void {
    const o = this.pending * DISK_CPL.SIZE;
    this.cplBuf.writeUInt32LE(idLo, o);
    this.cplBuf.writeUInt32LE(idHi, o + 4);
    this.cplBuf.writeInt32LE(status, o + DISK_CPL.status);
    this.cplBuf.writeUInt32LE(bytes >>> 0, o + DISK_CPL.bytes);
    this.pending++;
    this.c.requests++;
    this.mmio.add(DISK_REGS.requests);
    if (status !== DISK_STATUS.okay) { this.c.errors++; this.mmio.add(DISK_REGS.errors); }
  }

  /** Executes the descriptor at descBuf[o] (a private copy: validated once, never re-read). */
  private execute(o: number): void {
    const d = this.descBuf;
    const idLo = d.readUInt32LE(o + DISK_DESC.id);
    const idHi = d.readUInt32LE(o + DISK_DESC.id + 4);
    const op = d.readUInt8(o + DISK_DESC.op);
    const nrSegs = d.readUInt16LE(o + DISK_DESC.nrSegs);
    const sector = u64(d, o + DISK_DESC.sector);
    if (op === DISK_OP.flush) {
      this.c.flushes++;
      const r = this.disk.flush();
      return this.complete(idLo, idHi, r.ok ? DISK_STATUS.okay : DISK_STATUS.ioError, 0);
    }
    if (op !== DISK_OP.read && op !== DISK_OP.write) return this.complete(idLo, idHi, DISK_STATUS.notSupported, 0);
    if (nrSegs === 0 || nrSegs > this.maxSegs) return this.complete(idLo, idHi, DISK_STATUS.badDescriptor, 0);
    // The segments: inline, or an SG list fetched by DMA.
    let segs: Buffer;
    let so: number;
    if (nrSegs <= DISK_DESC.INLINE) {
      segs = d;
      so = o + DISK_DESC.inline;
    } else {
      const r = this.view.dmaRead(u64(d, o + DISK_DESC.sglBus) as BusAddr, this.sgBuf, 0, nrSegs * SG_ENTRY.SIZE);
      if (!r.ok) return this.dmaFault(idLo, idHi);
      segs = this.sgBuf;
      so = 0;
    }
    let total = 0;
    for (let i = 0; i < nrSegs; i++) {
      const len = segs.readUInt32LE(so + i * SG_ENTRY.SIZE + SG_ENTRY.len);
      if (len === 0) return this.complete(idLo, idHi, DISK_STATUS.badDescriptor, 0);
      total += len;
    }
    if (total > this.maxBytes || total % SECTOR_SIZE !== 0) return this.complete(idLo, idHi, DISK_STATUS.badDescriptor, 0);
    const buf = this.staging;
    if (op === DISK_OP.write) {
      // Device reads memory (to-device DMA), then writes the medium: a fault writes nothing.
      let off = 0;
      for (let i = 0; i < nrSegs; i++) {
        const e = so + i * SG_ENTRY.SIZE;
        const len = segs.readUInt32LE(e + SG_ENTRY.len);
        const r = this.view.dmaRead(u64(segs, e + SG_ENTRY.bus) as BusAddr, buf, off, len);
        if (!r.ok) return this.dmaFault(idLo, idHi);
        off += len;
      }
      const w = this.disk.write(sector, buf, 0, total);
      if (!w.ok) return this.complete(idLo, idHi, DISK_STATUS.ioError, 0);
      this.c.writes++;
      this.c.bytesWritten += total;
      return this.complete(idLo, idHi, DISK_STATUS.okay, total);
    }
    const rd = this.disk.read(sector, buf, 0, total);
    if (!rd.ok) return this.complete(idLo, idHi, DISK_STATUS.ioError, 0);
    let off = 0;
    for (let i = 0; i < nrSegs; i++) {
      const e = so + i * SG_ENTRY.SIZE;
      const len = segs.readUInt32LE(e + SG_ENTRY.len);
      const r = this.view.dmaWrite(u64(segs, e + SG_ENTRY.bus) as BusAddr, buf, off, len);
      if (!r.ok) return this.dmaFault(idLo, idHi);
      off += len;
    }
    this.c.reads++;
    this.c.bytesRead += total;
    return this.complete(idLo, idHi, DISK_STATUS.okay, total);
  }

  private dmaFault(idLo: number, idHi: number): void {
    this.c.dmaFaults++;
    this.mmio.add(DISK_REGS.dmaFaults);
    this.complete(idLo, idHi, DISK_STATUS.dmaError, 0);
  }

  stop(): void {
    this.stopped = true;
    this.mmio.ring();
  }

  /**
   * [run] is the device's loop on its own worker: process; when idle, ask for
   * a doorbell on the next descriptor (sqEvent), check once more, spin
   * briefly, then sleep on the doorbell. Returns to the event loop when the
   * host flags a control message and after every idle timeout.
   */
  async run(): Promise<void> {
    const m = this.mmio;
    const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));
    let busy = 0;
    while (!this.stopped) {
      const n = this.processOnce();
      if (m.load(MMIO_COMMON.control) !== 0) {
        m.store(MMIO_COMMON.control, 0);
        await yieldToLoop();
        continue;
      }
      if (n > 0) {
        if (++busy % 256 === 0) await yieldToLoop();
        continue;
      }
      const seq = m.doorbell();
      // RING_FINAL_CHECK: re-arm, then look again before sleeping.
      m.store(DISK_REGS.sqEvent, (this.head + 1) >>> 0);
      if (this.hasWork()) continue;
      if (this.spinNs > 0n) {
        const until = process.hrtime.bigint() + this.spinNs;
        let woke = false;
        while (process.hrtime.bigint() < until) {
          if (m.doorbell() !== seq || this.hasWork()) { woke = true; break; }
        }
        if (woke) continue;
      }
      this.c.sleeps++;
      m.add(MMIO_COMMON.sleeps);
      if (m.waitDoorbell(seq, this.idleMs) === 'timed-out') await yieldToLoop();
    }
  }

  private hasWork(): boolean {
    const m = this.mmio;
    if (m.load(MMIO_COMMON.enable) !== 1) return this.configured;
    if (m.load(MMIO_COMMON.status) === DEVICE_STATUS.fatal) return false;
    if (!this.configured) return true;
    // Work the device can do now: descriptors, and room for their completions.
    return ((m.load(DISK_REGS.sqTail) - this.head) >>> 0) !== 0 && ((this.cqTail - m.load(DISK_REGS.cqHead)) >>> 0) < this.entries;
  }
}
