/**
 * dom0's driver for the DMA block controller (dom0/devices/dma-disk-controller.ts):
 * the only place that turns a block request into descriptors, and it does so
 * through a DmaApi — whichever implementation the domain was configured with
 * (or `legacy`, the broken driver that skips translation).
 *
 * Queues: one coherent allocation holds the submission queue, the completion
 * queue and one SG-list area per slot. A request takes a slot (its index is
 * the descriptor id, with a generation in the high word so a stale or forged
 * completion is recognised), maps its buffer for the right direction, writes
 * its descriptor through the MMU, and is published by kick(): store sqTail
 * (release), then ring the doorbell only if the tail passed the device's
 * sqEvent. Completions arrive on the interrupt port: poll() consumes them,
 * unmaps each buffer (the CPU then sees the device's data), re-arms cqEvent
 * and checks once more (RING_FINAL_CHECK_FOR_RESPONSES).
 */
import { DEVICE_STATUS, MMIO_COMMON, MmioWindow, needNotify } from './mmio.ts';
import { DISK_CPL, DISK_DESC, DISK_OP, DISK_REGS, DISK_STATUS, SG_ENTRY } from '../devices/dma-disk-controller.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import type { Port } from '../../shared/types.ts';
import { describeDmaError, type BusSegment, type CoherentBuffer, type DmaApi, type DmaError, type DmaMapping, type DmaPiece } from './dma-api.ts';

export type DiskOpName = keyof typeof DISK_OP;

const NO_SEGMENTS: readonly BusSegment[] = [];

/** Writes a u64 (a bus address or sector below 2^53) as two little-endian words. */
function putU64(b: Buffer, o: number, v: number): void {
  b.writeUInt32LE(v >>> 0, o);
  b.writeUInt32LE(Math.floor(v / 2 ** 32), o + 4);
}

function putSeg(b: Buffer, o: number, bus: number, len: number): void {
  putU64(b, o + SG_ENTRY.bus, bus);
  b.writeUInt32LE(len, o + SG_ENTRY.len);
  b.writeUInt32LE(0, o + SG_ENTRY.len + 4);
}

export interface DiskIo {
  readonly op: DiskOpName;
  /** First 512-byte sector. */
  readonly sector: number;
  /** The buffer (empty for flush). */
  readonly buffer: readonly DmaPiece[];
}

export interface DiskIoResult {
  /** DISK_STATUS. */
  readonly status: number;
  readonly bytes: number;
}

export type DiskDriverError =
  | { readonly kind: 'device-not-ready'; readonly status: number }
  | { readonly kind: 'queue-full'; readonly entries: number }
  | { readonly kind: 'too-many-segments'; readonly segments: number; readonly max: number }
  | { readonly kind: 'dma'; readonly error: DmaError };

export function describeDiskDriverError(e: DiskDriverError): string {
  switch (e.kind) {
    case 'device-not-ready': return `the controller is not running (status ${e.status})`;
    case 'queue-full': return `all ${e.entries} queue slots are in flight`;
    case 'too-many-segments': return `the mapping has ${e.segments} bus segments; the controller takes ${e.max}`;
    case 'dma': return describeDmaError(e.error);
  }
}

export interface DiskDriverOptions {
  /** Queue entries (a power of two; default 32, like a one-page blkif ring). */
  readonly entries?: number;
  /** SG entries per request (default 64, at most the controller's maximum). */
  readonly maxSegs?: number;
  /**
   * Where the queues' coherent memory comes from (default: dma). A `legacy`
   * driver that bypasses the DMA API for its data buffers but got its rings
   * right is modelled by passing the proper API here.
   */
  readonly queueDma?: DmaApi;
}

interface Slot {
  gen: number;
  mapping: DmaMapping | undefined;
  done: ((r: DiskIoResult) => void) | undefined;
}

export interface DiskDriverCounters {
  submitted: number;
  completed: number;
  errors: number;
  /** Doorbells rung / interrupts handled (polls that found completions). */
  kicks: number;
  interrupts: number;
  /** Completions naming no request in flight (a buggy or hostile device). */
  bogusCompletions: number;
}

export class DmaDiskDriver {
  readonly mmio: MmioWindow;
  readonly entries: number;
  readonly maxSegs: number;
  /** Device capacity in sectors. */
  readonly sectors: number;
  readonly port: Port;
  private readonly slots: Slot[];
  private readonly free: number[] = [];
  private readonly sqOff = 0;
  private readonly cqOff: number;
  private readonly sglOff: number;
  private tailPvt = 0;
  private published = 0;
  private cqHead = 0;
  private readonly desc = Buffer.alloc(DISK_DESC.SIZE);
  private readonly sgl: Buffer;
  private cpl = Buffer.alloc(0);
  private inPoll = false;
  private readonly c: DiskDriverCounters = { submitted: 0, completed: 0, errors: 0, kicks: 0, interrupts: 0, bogusCompletions: 0 };

  private constructor(
    private readonly k: DomainKernel,
    readonly dma: DmaApi,
    private readonly queueDma: DmaApi,
    /** The queues' coherent memory (tests craft hostile descriptors in it). */
    readonly queue: CoherentBuffer,
    entries: number,
    maxSegs: number,
    sectors: number,
  ) {
    this.mmio = new MmioWindow(k.machine, dma.device.blockAddr);
    this.entries = entries;
    this.maxSegs = maxSegs;
    this.sectors = sectors;
    this.cqOff = entries * DISK_DESC.SIZE;
    this.sglOff = this.cqOff + entries * DISK_CPL.SIZE;
    this.sgl = Buffer.alloc(maxSegs * SG_ENTRY.SIZE);
    this.slots = Array.from({ length: entries }, () => ({ gen: 0, mapping: undefined, done: undefined }));
    for (let i = entries - 1; i >= 0; i--) this.free.push(i);
    this.port = k.evtchn.allocUnbound(k.domid);
    k.bindHandler(this.port, () => { this.poll(); });
  }

  /**
   * [attach k dma opts] programs the controller behind dma.device: allocates
   * the queues (coherent DMA memory), binds the interrupt port, enables it.
   */
  static attach(k: DomainKernel, dma: DmaApi, opts: DiskDriverOptions = {}): Result<DmaDiskDriver, DiskDriverError> {
    const mmio = new MmioWindow(k.machine, dma.device.blockAddr);
    const status = mmio.load(MMIO_COMMON.status);
    if (status !== DEVICE_STATUS.running) return err({ kind: 'device-not-ready', status });
    const entries = opts.entries ?? 32;
    if (!(entries >= 1 && entries <= 4096 && (entries & (entries - 1)) === 0)) throw new RangeError(`queue entries must be a power of two in 1..4096, got ${entries}`);
    const maxSegs = Math.min(opts.maxSegs ?? 64, mmio.load(DISK_REGS.maxSegs));
    const sectors = mmio.load64(DISK_REGS.sectors);
    const bytes = entries * (DISK_DESC.SIZE + DISK_CPL.SIZE + maxSegs * SG_ENTRY.SIZE);
    const qdma = opts.queueDma ?? dma;
    const q = qdma.allocCoherent(bytes);
    if (!q.ok) return err({ kind: 'dma', error: q.error });
    const drv = new DmaDiskDriver(k, dma, qdma, q.value, entries, maxSegs, sectors);
    const m = drv.mmio;
    m.store(MMIO_COMMON.enable, 0);
    m.store64(DISK_REGS.sqBase, q.value.bus);
    m.store64(DISK_REGS.cqBase, q.value.bus + drv.cqOff);
    m.store(DISK_REGS.queueEntries, entries);
    m.store(DISK_REGS.sqTail, 0);
    m.store(DISK_REGS.cqHead, 0);
    m.store(DISK_REGS.cqEvent, 1);
    m.store(MMIO_COMMON.irqPort, drv.port);
    // Release: the device that sees enable sees the queue registers.
    m.store(MMIO_COMMON.enable, 1);
    m.ring();
    return ok(drv);
  }

  get inflight(): number { return this.entries - this.free.length; }
  get freeSlots(): number { return this.free.length; }
  counters(): DiskDriverCounters { return { ...this.c }; }
  /** Device status (DEVICE_STATUS) and, when fatal, why. */
  deviceStatus(): { status: number; fatalReason: number } {
    return { status: this.mmio.load(MMIO_COMMON.status), fatalReason: this.mmio.load(MMIO_COMMON.fatalReason) };
  }

  /**
   * [submit io done] maps io's buffer and queues its descriptor; done runs
   * from poll() once the device completes it (the buffer unmapped by then).
   * Nothing reaches the device until kick().
   */
  submit(io: DiskIo, done: (r: DiskIoResult) => void): Result<number, DiskDriverError> {
    const slotIdx = this.free.pop();
    if (slotIdx === undefined) return err({ kind: 'queue-full', entries: this.entries });
    const slot = this.slots[slotIdx] as Slot;
    let mapping: DmaMapping | undefined;
    if (io.op !== 'flush') {
      const r = this.dma.mapBuffer(io.buffer, io.op === 'write' ? 'to-device' : 'from-device');
      if (!r.ok) { this.free.push(slotIdx); return err({ kind: 'dma', error: r.error }); }
      mapping = r.value;
      if (mapping.segments.length > this.maxSegs) {
        this.dma.unmap(mapping);
        this.free.push(slotIdx);
        return err({ kind: 'too-many-segments', segments: mapping.segments.length, max: this.maxSegs });
      }
    }
    slot.gen = (slot.gen + 1) & 0xffff;
    slot.mapping = mapping;
    slot.done = done;
    const d = this.desc;
    d.writeUInt32LE(slotIdx, DISK_DESC.id);
    d.writeUInt32LE(slot.gen, DISK_DESC.id + 4);
    d.writeUInt32LE(DISK_OP[io.op], DISK_DESC.op); // op, a zero byte, and nrSegs below
    const segs = mapping === undefined ? NO_SEGMENTS : mapping.segments;
    d.writeUInt16LE(segs.length, DISK_DESC.nrSegs);
    d.writeUInt32LE(0, DISK_DESC.nrSegs + 2);
    putU64(d, DISK_DESC.sector, io.sector);
    if (segs.length <= DISK_DESC.INLINE) {
      putU64(d, DISK_DESC.sglBus, 0);
      for (let i = 0; i < DISK_DESC.INLINE; i++) {
        const s = segs[i];
        putSeg(d, DISK_DESC.inline + i * SG_ENTRY.SIZE, s === undefined ? 0 : s.bus, s === undefined ? 0 : s.len);
      }
    } else {
      const area = this.sglOff + slotIdx * this.maxSegs * SG_ENTRY.SIZE;
      for (let i = 0; i < segs.length; i++) {
        const s = segs[i] as BusSegment;
        putSeg(this.sgl, i * SG_ENTRY.SIZE, s.bus, s.len);
      }
      this.queue.region.copyIn(area, this.sgl, 0, segs.length * SG_ENTRY.SIZE);
      putU64(d, DISK_DESC.sglBus, this.queue.bus + area);
      d.fill(0, DISK_DESC.inline, DISK_DESC.SIZE);
    }
    this.queue.region.copyIn(this.sqOff + (this.tailPvt & (this.entries - 1)) * DISK_DESC.SIZE, d);
    this.tailPvt = (this.tailPvt + 1) >>> 0;
    this.c.submitted++;
    return ok(slotIdx);
  }

  /**
   * [submitRaw bytes done] queues a descriptor exactly as given except its id
   * (the slot's): adversarial tests play a buggy or hostile driver with it.
   */
  submitRaw(bytes: Uint8Array, done: (r: DiskIoResult) => void): Result<number, DiskDriverError> {
    const slotIdx = this.free.pop();
    if (slotIdx === undefined) return err({ kind: 'queue-full', entries: this.entries });
    const slot = this.slots[slotIdx] as Slot;
    slot.gen = (slot.gen + 1) & 0xffff;
    slot.mapping = undefined;
    slot.done = done;
    const d = this.desc;
    d.fill(0);
    d.set(bytes.subarray(0, DISK_DESC.SIZE));
    d.writeUInt32LE(slotIdx, DISK_DESC.id);
    d.writeUInt32LE(slot.gen, DISK_DESC.id + 4);
    this.queue.region.copyIn(this.sqOff + (this.tailPvt & (this.entries - 1)) * DISK_DESC.SIZE, d);
    this.tailPvt = (this.tailPvt + 1) >>> 0;
    this.c.submitted++;
    return ok(slotIdx);
  }

  /** Publishes queued descriptors; rings the doorbell if the device asked for it. */
  kick(): void {
    if (this.tailPvt === this.published) return;
    const old = this.published;
    this.published = this.tailPvt;
    // Release: the device sees the descriptors /before/ the new tail.
    this.mmio.store(DISK_REGS.sqTail, this.tailPvt);
    if (needNotify(this.tailPvt, old, this.mmio.load(DISK_REGS.sqEvent))) {
      this.c.kicks++;
      this.mmio.ring();
    }
  }

  /**
   * [poll] consumes completions (the interrupt handler): for each, unmap its
   * buffer and call its done. Completions queued by those callbacks are
   * kicked at the end. Returns how many completed.
   */
  poll(): number {
    if (this.inPoll) return 0;
    this.inPoll = true;
    let n = 0;
    try {
      for (;;) {
        const tail = this.mmio.load(DISK_REGS.cqTail);
        const avail = (tail - this.cqHead) >>> 0;
        if (avail > this.entries) { this.c.bogusCompletions++; break; } // a device claiming more than the queue holds
        if (avail > 0) {
          if (this.cpl.length < avail * DISK_CPL.SIZE) this.cpl = Buffer.alloc(this.entries * DISK_CPL.SIZE);
          for (let i = 0; i < avail; i++) {
            const idx = (this.cqHead + i) & (this.entries - 1);
            this.queue.region.copyOut(this.cqOff + idx * DISK_CPL.SIZE, this.cpl, i * DISK_CPL.SIZE, DISK_CPL.SIZE);
          }
          this.cqHead = tail;
          this.mmio.store(DISK_REGS.cqHead, this.cqHead);
          for (let i = 0; i < avail; i++) n += this.completeOne(i * DISK_CPL.SIZE);
        }
        // RING_FINAL_CHECK_FOR_RESPONSES: ask for the next interrupt, then look once more.
        this.mmio.store(DISK_REGS.cqEvent, (this.cqHead + 1) >>> 0);
        if (this.mmio.load(DISK_REGS.cqTail) === this.cqHead) break;
      }
    } finally {
      this.inPoll = false;
    }
    if (n > 0) this.c.interrupts++;
    this.kick();
    return n;
  }

  private completeOne(o: number): number {
    const c = this.cpl;
    const idx = c.readUInt32LE(o + DISK_CPL.id);
    const gen = c.readUInt32LE(o + DISK_CPL.id + 4);
    const slot = this.slots[idx];
    if (slot === undefined || slot.done === undefined || slot.gen !== gen) { this.c.bogusCompletions++; return 0; }
    const status = c.readInt32LE(o + DISK_CPL.status);
    const bytes = c.readUInt32LE(o + DISK_CPL.bytes);
    const done = slot.done;
    if (slot.mapping !== undefined) this.dma.unmap(slot.mapping);
    slot.mapping = undefined;
    slot.done = undefined;
    this.free.push(idx);
    this.c.completed++;
    if (status !== DISK_STATUS.okay) this.c.errors++;
    done({ status, bytes });
    return 1;
  }

  /** Stops the controller and releases the queues and the port. In-flight requests are dropped. */
  detach(): void {
    this.mmio.store(MMIO_COMMON.enable, 0);
    this.mmio.ring();
    for (const s of this.slots) if (s.mapping !== undefined) { this.dma.unmap(s.mapping); s.mapping = undefined; s.done = undefined; }
    this.k.evtchn.unbind(this.port);
    this.k.evtchn.close(this.port);
    this.queueDma.freeCoherent(this.queue);
  }
}
