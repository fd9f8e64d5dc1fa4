/**
 * A NIC, as hardware, and the wire it is plugged into.
 *
 * The NIC sees bus addresses only and reaches memory only by DMA through its
 * IommuView. It has a transmit and a receive descriptor ring in the driver's
 * coherent DMA memory (bus addresses in its register window), runs in its
 * own worker (dom0/devices/nic-main.ts) concurrently with the CPUs, and
 * raises its interrupt on the owner's port like the disk controller
 * (dom0/dma/mmio.ts). Write-back: the device writes each descriptor's
 * `result` (bytes moved, or a negative NIC_STATUS) by DMA, then publishes
 * txHead / rxHead; it interrupts only when a head passes the driver's
 * txIrqEvent / rxIrqEvent, and asks for doorbells with txEvent / rxEvent.
 *
 * The wire is a cable, not machine memory: its own small shared memory
 * holding one frame channel per direction (a pair of NICs), or one channel
 * a NIC's transmit side feeds back to its own receive side (a loopback).
 * Each channel is a byte ring of length-prefixed frames with free-running
 * head/tail indices. A frame that does not fit is dropped on the wire and
 * counted, as Ethernet drops; frames wait in the channel (the receiving
 * NIC's FIFO) while the receiver has no buffer posted. After putting frames
 * on the wire the sender rings the receiving NIC's doorbell, whose machine
 * address the receiver registered in the wire header — so both ends must be
 * NICs of the same machine.
 */
import { DEVICE_STATUS, FATAL_REASON, InterruptLine, MMIO_COMMON, MmioWindow, needNotify } from '../dma/mmio.ts';
import { IommuView } from '../../shared/dma/iommu-view.ts';
import type { MachineLayout } from '../../shared/machine-layout.ts';
import { MachineMemory, type PageSize } from '../../shared/memory/machine-memory.ts';
import type { BusAddr, MachineAddr } from '../../shared/types.ts';

// ------------------------------------------------------------------- the wire

/** Wire header (frame 0 of the wire's memory); each end writes its own slot. */
export const WIRE = {
  magic: 0, // u32 [HOST] 'WIRE'
  mode: 4, // u32 [HOST] 0 = pair, 1 = loopback
  /** u32 × 2 per end [END] machine address of the end's doorbell (lo, hi); 0 = nothing plugged in. */
  doorbell: 8,
  CHANNELS: 4096,
  MAGIC: 0x45524957,
} as const;

/** One direction of the wire. */
export const WIRE_CHANNEL = {
  head: 0, // u32 [RX end] bytes consumed, free-running
  tail: 4, // u32 [TX end] bytes produced, free-running
  frames: 8, // u32 [TX end] frames put on the wire
  drops: 12, // u32 [TX end] frames dropped because the channel was full
  DATA: 64,
  /** Bytes of frame data per channel (a power of two). */
  BYTES: 512 * 1024,
} as const;

export type WireMode = 'pair' | 'loopback';
export type WireEnd = 0 | 1;

/** The wire's memory, handed to NIC workers. */
export type WireMemory = MachineMemory['sab'];

export class Wire {
  private readonly mask = WIRE_CHANNEL.BYTES - 1;

  private constructor(readonly mem: MachineMemory) {}

  /** [create mode] is a new cable (its own memory). */
  static create(mode: WireMode): Wire {
    const mem = MachineMemory.create({ memBytes: 4 << 20, pageSize: 4096 });
    mem.setU32(WIRE.mode as MachineAddr, mode === 'loopback' ? 1 : 0);
    // Magic last: an end that sees it sees the mode.
    mem.atomicStore32(WIRE.magic as MachineAddr, WIRE.MAGIC);
    return new Wire(mem);
  }

  static attach(sab: WireMemory): Wire {
    const mem = MachineMemory.attach(sab, 4096 as PageSize);
    if (mem.atomicLoad32(WIRE.magic as MachineAddr) !== WIRE.MAGIC) throw new Error('not a wire');
    return new Wire(mem);
  }

  get memory(): WireMemory { return this.mem.sab; }
  get mode(): WireMode { return this.mem.getU32(WIRE.mode as MachineAddr) === 1 ? 'loopback' : 'pair'; }

  private ch(c: number, f: number): MachineAddr { return (WIRE.CHANNELS + c * (WIRE_CHANNEL.DATA + WIRE_CHANNEL.BYTES) + f) as MachineAddr; }
  private data(c: number, idx: number): MachineAddr { return this.ch(c, WIRE_CHANNEL.DATA + (idx & this.mask)); }

  /** The channel an end transmits on, and the one it receives from. */
  txChannel(end: WireEnd): number { return end; }
  rxChannel(end: WireEnd): number { return this.mode === 'loopback' ? 0 : 1 - end; }
  /** The end that receives what `end` sends. */
  peer(end: WireEnd): WireEnd { return this.mode === 'loopback' ? end : ((1 - end) as WireEnd); }

  /** Plugs an end in: the machine address of its doorbell. */
  plug(end: WireEnd, doorbell: number): void {
    const a = (WIRE.doorbell + end * 8) as MachineAddr;
    this.mem.atomicStore32((a + 4) as MachineAddr, Math.floor(doorbell / 2 ** 32));
    this.mem.atomicStore32(a, doorbell >>> 0);
  }
  unplug(end: WireEnd): void { this.plug(end, 0); }
  /** The doorbell of end (0 when nothing is plugged in). */
  doorbellOf(end: WireEnd): number {
    const a = (WIRE.doorbell + end * 8) as MachineAddr;
    return (this.mem.atomicLoad32(a) >>> 0) + (this.mem.atomicLoad32((a + 4) as MachineAddr) >>> 0) * 2 ** 32;
  }

  /** [send end frame off len] puts one frame on the wire; false if it was dropped (channel full). */
  send(end: WireEnd, frame: Uint8Array, off: number, len: number): boolean {
    const c = this.txChannel(end);
    const head = this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.head)) >>> 0;
    const tail = this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.tail)) >>> 0;
    const need = 4 + ((len + 3) & ~3);
    if (WIRE_CHANNEL.BYTES - ((tail - head) >>> 0) < need) {
      this.mem.atomicAdd32(this.ch(c, WIRE_CHANNEL.drops), 1);
      return false;
    }
    this.mem.setU32(this.data(c, tail), len);
    this.copyIn(c, (tail + 4) >>> 0, frame, off, len);
    // Release: the receiver that loads the new tail sees the frame.
    this.mem.atomicStore32(this.ch(c, WIRE_CHANNEL.tail), (tail + need) >>> 0);
    this.mem.atomicAdd32(this.ch(c, WIRE_CHANNEL.frames), 1);
    // A receiver that is not a NIC (no doorbell: an outside host) sleeps on the tail.
    this.mem.notify32(this.ch(c, WIRE_CHANNEL.tail));
    return true;
  }

  /**
   * [waitFrames end timeoutMs] sleeps until a frame is waiting for end (or the
   * timeout): how an end without a doorbell (an outside host) idles.
   */
  waitFrames(end: WireEnd, timeoutMs: number): void {
    const c = this.rxChannel(end);
    const tail = this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.tail));
    if (((tail - this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.head))) >>> 0) !== 0) return;
    this.mem.wait32(this.ch(c, WIRE_CHANNEL.tail), tail, timeoutMs);
  }

  /** [peek end] is the length of the next frame waiting for end, or -1. */
  peek(end: WireEnd): number {
    const c = this.rxChannel(end);
    const head = this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.head)) >>> 0;
    const tail = this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.tail)) >>> 0;
    return head === tail ? -1 : this.mem.getU32(this.data(c, head));
  }

  /** [recv end into] takes the next frame (into may be undefined to drop it); returns its length or -1. */
  recv(end: WireEnd, into: Uint8Array | undefined): number {
    const c = this.rxChannel(end);
    const head = this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.head)) >>> 0;
    const tail = this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.tail)) >>> 0;
    if (head === tail) return -1;
    const len = this.mem.getU32(this.data(c, head));
    if (into !== undefined) this.copyOut(c, (head + 4) >>> 0, into, Math.min(len, into.length));
    // Release: the sender that sees the new head may reuse the bytes.
    this.mem.atomicStore32(this.ch(c, WIRE_CHANNEL.head), (head + 4 + ((len + 3) & ~3)) >>> 0);
    return len;
  }

  private copyIn(c: number, idx: number, from: Uint8Array, off: number, len: number): void {
    const first = Math.min(len, WIRE_CHANNEL.BYTES - (idx & this.mask));
    this.mem.copyIn(this.data(c, idx), from, off, first);
    if (len > first) this.mem.copyIn(this.data(c, 0), from, off + first, len - first);
  }
  private copyOut(c: number, idx: number, into: Uint8Array, len: number): void {
    const first = Math.min(len, WIRE_CHANNEL.BYTES - (idx & this.mask));
    this.mem.copyOut(this.data(c, idx), into, 0, first);
    if (len > first) this.mem.copyOut(this.data(c, 0), into, first, len - first);
  }

  counters(): { channels: { frames: number; drops: number; queuedBytes: number }[] } {
    const n = this.mode === 'loopback' ? 1 : 2;
    return {
      channels: Array.from({ length: n }, (_, c) => ({
        frames: this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.frames)),
        drops: this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.drops)),
        queuedBytes: ((this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.tail)) - this.mem.atomicLoad32(this.ch(c, WIRE_CHANNEL.head))) >>> 0),
      })),
    };
  }
}

// -------------------------------------------------------------------- the NIC

/** NIC registers, after MMIO_COMMON in the window. */
export const NIC_REGS = {
  txBase: 64, // u64 [DRV] bus address of the TX ring (txEntries × NIC_DESC.SIZE)
  rxBase: 72, // u64 [DRV] bus address of the RX ring
  txEntries: 80, // u32 [DRV] a power of two, 1..4096
  rxEntries: 84, // u32 [DRV] a power of two, 1..4096
  txTail: 88, // u32 [DRV] TX descriptors posted, free-running
  txHead: 92, // u32 [DEV] TX descriptors sent and written back
  txEvent: 96, // u32 [DEV] ring the doorbell when txTail moves past this
  txIrqEvent: 100, // u32 [DRV] interrupt when txHead moves past this
  rxTail: 104, // u32 [DRV] RX buffers posted
  rxHead: 108, // u32 [DEV] RX buffers filled and written back
  rxEvent: 112, // u32 [DEV] ring the doorbell when rxTail moves past this (set while a frame waits for a buffer)
  rxIrqEvent: 116, // u32 [DRV] interrupt when rxHead moves past this
  txFrames: 120, // u32 [DEV]
  rxFrames: 124, // u32 [DEV]
  rxNoBuffer: 128, // u32 [DEV] times a frame found no RX buffer posted (it waits on the wire)
  dmaFaults: 132, // u32 [DEV]
  SIZE: 136,
} as const;

/** A TX or RX descriptor in the driver's memory. */
export const NIC_DESC = {
  bus: 0, // u64 [DRV] the frame or a piece of it (TX), or the buffer (RX)
  len: 8, // u32 [DRV] bytes at bus (TX; | NIC_DESC_MORE when the frame goes on in the next descriptor), or buffer size (RX)
  result: 12, // i32 [DEV] bytes sent / received, or a negative NIC_STATUS
  SIZE: 16,
} as const;

/**
 * TX gather: in a TX descriptor's len, "the frame continues in the next
 * descriptor" (a NIC's end-of-packet bit, inverted, so a one-descriptor frame
 * is a plain length). The device sends nothing of a frame before its last
 * descriptor is posted, and writes each descriptor's own length back as its
 * result when the frame went out (the frame's status on every one otherwise).
 */
export const NIC_DESC_MORE = 0x8000_0000;
export const NIC_DESC_LEN_MASK = 0x7fff_ffff;

export const NIC_STATUS = {
  /** The frame or buffer DMA faulted in the IOMMU. */
  dmaError: -1,
  /** RX: the frame was larger than the buffer (dropped). */
  tooBig: -2,
  /** TX: length 0 or beyond MAX_FRAME. */
  badDescriptor: -3,
} as const;

/** Largest frame on the wire (a jumbo frame). */
export const MAX_FRAME = 9216;

export interface NicOptions {
  readonly spinUs?: number;
  readonly idleMs?: number;
}

export interface NicCounters {
  txFrames: number;
  rxFrames: number;
  txBytes: number;
  rxBytes: number;
  wireDrops: number;
  rxNoBuffer: number;
  dmaFaults: number;
  interrupts: number;
  sleeps: number;
  status: number;
  fatalReason: number;
}

const u64 = (b: Buffer, o: number): number => b.readUInt32LE(o) + b.readUInt32LE(o + 4) * 2 ** 32;

export class Nic {
  readonly mmio: MmioWindow;
  readonly view: IommuView;
  private readonly irq: InterruptLine;
  private readonly spinNs: bigint;
  private readonly idleMs: number;
  private stopped = false;
  private configured = false;
  private txEntries = 0;
  private rxEntries = 0;
  private txBase = 0;
  private rxBase = 0;
  private txHead = 0;
  private rxHead = 0;
  private txDesc = Buffer.alloc(0);
  private readonly rxDesc = Buffer.alloc(NIC_DESC.SIZE);
  private readonly frame = Buffer.alloc(MAX_FRAME);
  private waitingForBuffer = false;
  /** txTail when the posted descriptors ended inside a frame (-1: they did not): nothing to send until it moves. */
  private txWaitTail = -1;
  private readonly c = { txFrames: 0, rxFrames: 0, txBytes: 0, rxBytes: 0, wireDrops: 0, rxNoBuffer: 0, dmaFaults: 0, sleeps: 0 };

  constructor(
    private readonly layout: MachineLayout,
    blockAddr: number,
    readonly wire: Wire,
    readonly end: WireEnd,
    opts: NicOptions = {},
  ) {
    this.mmio = new MmioWindow(layout.mem, blockAddr);
    this.view = new IommuView(layout, blockAddr);
    this.irq = new InterruptLine(layout, this.mmio);
    this.spinNs = BigInt(Math.round((opts.spinUs ?? 20) * 1000));
    this.idleMs = opts.idleMs ?? 10;
    wire.plug(end, this.mmio.base + MMIO_COMMON.doorbell);
    this.mmio.store(MMIO_COMMON.status, DEVICE_STATUS.running);
  }

  counters(): NicCounters {
    return {
      ...this.c, interrupts: this.mmio.load(MMIO_COMMON.interrupts), status: this.mmio.load(MMIO_COMMON.status),
      fatalReason: this.mmio.load(MMIO_COMMON.fatalReason),
    };
  }

  private fatal(reason: number): number {
    this.mmio.store(MMIO_COMMON.fatalReason, reason);
    this.mmio.store(MMIO_COMMON.status, DEVICE_STATUS.fatal);
    this.configured = false;
    this.irq.raise();
    return 0;
  }

  private configure(): boolean {
    const m = this.mmio;
    const te = m.load(NIC_REGS.txEntries);
    const re = m.load(NIC_REGS.rxEntries);
    const tb = m.load64(NIC_REGS.txBase);
    const rb = m.load64(NIC_REGS.rxBase);
    const pow2 = (e: number) => e >= 1 && e <= 4096 && (e & (e - 1)) === 0;
    if (!pow2(te) || !pow2(re) || tb % NIC_DESC.SIZE !== 0 || rb % NIC_DESC.SIZE !== 0) {
      this.fatal(FATAL_REASON.badQueueConfig);
      return false;
    }
    this.txEntries = te; this.rxEntries = re; this.txBase = tb; this.rxBase = rb;
    this.txHead = m.load(NIC_REGS.txHead);
    this.rxHead = m.load(NIC_REGS.rxHead);
    if (this.txDesc.length < te * NIC_DESC.SIZE) this.txDesc = Buffer.alloc(te * NIC_DESC.SIZE);
    m.store(NIC_REGS.txEvent, (this.txHead + 1) >>> 0);
    this.configured = true;
    return true;
  }

  private reset(): void {
    this.configured = false;
    this.txHead = 0;
    this.rxHead = 0;
    this.txWaitTail = -1;
    this.mmio.store(NIC_REGS.txHead, 0);
    this.mmio.store(NIC_REGS.rxHead, 0);
  }

  /** [processOnce] sends every posted frame and receives what the wire holds; returns the frames moved. */
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
    const t = this.transmit();
    if (t < 0) return 0;
    return t + this.receive();
  }

  private transmit(): number {
    const m = this.mmio;
    const tail = m.load(NIC_REGS.txTail);
    const n = (tail - this.txHead) >>> 0;
    if (n === 0) return 0;
    if (n > this.txEntries) return this.fatal(FATAL_REASON.producerOverflow) - 1;
    const D = NIC_DESC.SIZE;
    const idx = this.txHead & (this.txEntries - 1);
    const first = Math.min(n, this.txEntries - idx);
    let r = this.view.dmaRead((this.txBase + idx * D) as BusAddr, this.txDesc, 0, first * D);
    if (r.ok && n > first) r = this.view.dmaRead(this.txBase as BusAddr, this.txDesc, first * D, (n - first) * D);
    if (!r.ok) return this.fatal(FATAL_REASON.queueReadFault) - 1;
    let sent = 0;
    // Descriptors [i, j] are one frame: every one but the last has NIC_DESC_MORE (gather).
    let i = 0;
    while (i < n) {
      let j = i;
      let total = 0;
      let bad = false;
      for (; j < n; j++) {
        const raw = this.txDesc.readUInt32LE(j * D + NIC_DESC.len);
        const len = raw & NIC_DESC_LEN_MASK;
        if (len === 0) bad = true;
        total += len;
        if ((raw & NIC_DESC_MORE) === 0) break;
      }
      if (j === n) {
        // The frame's last descriptor is not posted yet: wait for it, unless the
        // chain fills the whole ring and can never end (then it is malformed).
        if (i > 0 || n < this.txEntries) break;
        j = n - 1;
        bad = true;
      }
      let status = 0;
      if (bad || total > MAX_FRAME) status = NIC_STATUS.badDescriptor;
      else {
        for (let k = i, off = 0; k <= j; k++) {
          const o = k * D;
          const len = this.txDesc.readUInt32LE(o + NIC_DESC.len) & NIC_DESC_LEN_MASK;
          if (!this.view.dmaRead(u64(this.txDesc, o + NIC_DESC.bus) as BusAddr, this.frame, off, len).ok) {
            status = NIC_STATUS.dmaError;
            this.c.dmaFaults++;
            m.add(NIC_REGS.dmaFaults);
            break;
          }
          off += len;
        }
        if (status === 0) {
          if (!this.wire.send(this.end, this.frame, 0, total)) this.c.wireDrops++;
          this.c.txFrames++;
          this.c.txBytes += total;
          m.add(NIC_REGS.txFrames);
          sent++;
        }
      }
      for (let k = i; k <= j; k++) {
        const o = k * D;
        this.txDesc.writeInt32LE(status === 0 ? this.txDesc.readUInt32LE(o + NIC_DESC.len) & NIC_DESC_LEN_MASK : status, o + NIC_DESC.result);
      }
      i = j + 1;
    }
    const done = i;
    this.txWaitTail = done < n ? tail : -1;
    if (done === 0) return 0;
    // Write the descriptors back (results), then publish the head.
    const back = Math.min(done, first);
    r = this.view.dmaWrite((this.txBase + idx * D) as BusAddr, this.txDesc, 0, back * D);
    if (r.ok && done > back) r = this.view.dmaWrite(this.txBase as BusAddr, this.txDesc, back * D, (done - back) * D);
    if (!r.ok) return this.fatal(FATAL_REASON.queueWriteFault) - 1;
    if (sent > 0) this.wakePeer();
    const old = this.txHead;
    this.txHead = (this.txHead + done) >>> 0;
    m.store(NIC_REGS.txHead, this.txHead);
    if (needNotify(this.txHead, old, m.load(NIC_REGS.txIrqEvent))) this.irq.raise();
    return done;
  }

  private wakePeer(): void {
    const peer = this.wire.peer(this.end);
    if (peer === this.end) return; // loopback: we receive next
    const bell = this.wire.doorbellOf(peer);
    if (bell === 0) return; // nothing plugged in at the far end: frames wait in the cable
    const mem = this.layout.mem;
    mem.atomicAdd32(bell as MachineAddr, 1);
    mem.notify32(bell as MachineAddr, 1);
  }

  private receive(): number {
    const m = this.mmio;
    const old = this.rxHead;
    let n = 0;
    this.waitingForBuffer = false;
    for (;;) {
      const len = this.wire.peek(this.end);
      if (len < 0) break;
      const rxTail = m.load(NIC_REGS.rxTail);
      const posted = (rxTail - this.rxHead) >>> 0;
      if (posted > this.rxEntries) return this.fatal(FATAL_REASON.producerOverflow);
      if (posted === 0) {
        this.waitingForBuffer = true;
        this.c.rxNoBuffer++;
        m.add(NIC_REGS.rxNoBuffer);
        break;
      }
      const at = (this.rxBase + (this.rxHead & (this.rxEntries - 1)) * NIC_DESC.SIZE) as BusAddr;
      if (!this.view.dmaRead(at, this.rxDesc).ok) return this.fatal(FATAL_REASON.queueReadFault);
      const size = this.rxDesc.readUInt32LE(NIC_DESC.len);
      let result: number;
      if (len > size || len > MAX_FRAME) {
        this.wire.recv(this.end, undefined);
        result = NIC_STATUS.tooBig;
      } else {
        this.wire.recv(this.end, this.frame);
        if (this.view.dmaWrite(u64(this.rxDesc, NIC_DESC.bus) as BusAddr, this.frame, 0, len).ok) {
          result = len;
          this.c.rxFrames++;
          this.c.rxBytes += len;
          m.add(NIC_REGS.rxFrames);
        } else {
          result = NIC_STATUS.dmaError;
          this.c.dmaFaults++;
          m.add(NIC_REGS.dmaFaults);
        }
      }
      this.rxDesc.writeInt32LE(result, NIC_DESC.result);
      if (!this.view.dmaWrite(at, this.rxDesc).ok) return this.fatal(FATAL_REASON.queueWriteFault);
      this.rxHead = (this.rxHead + 1) >>> 0;
      n++;
    }
    if (n > 0) {
      m.store(NIC_REGS.rxHead, this.rxHead);
      if (needNotify(this.rxHead, old, m.load(NIC_REGS.rxIrqEvent))) this.irq.raise();
    }
    return n;
  }

  stop(): void {
    this.stopped = true;
    this.mmio.ring();
  }

  private hasWork(): boolean {
    const m = this.mmio;
    if (m.load(MMIO_COMMON.enable) !== 1) return this.configured;
    if (m.load(MMIO_COMMON.status) === DEVICE_STATUS.fatal) return false;
    if (!this.configured) return true;
    const txTail = m.load(NIC_REGS.txTail);
    if (((txTail - this.txHead) >>> 0) !== 0 && txTail !== this.txWaitTail) return true;
    return this.wire.peek(this.end) >= 0 && ((m.load(NIC_REGS.rxTail) - this.rxHead) >>> 0) !== 0;
  }

  /** The NIC's loop on its own worker (the same idle protocol as the disk controller). */
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
      // Ask for a doorbell on the next descriptor posted (past a half-posted frame, if one waits).
      m.store(NIC_REGS.txEvent, this.txWaitTail >= 0 ? (this.txWaitTail + 1) >>> 0 : (this.txHead + 1) >>> 0);
      // A frame waiting for a buffer: ask for a doorbell on the next buffer posted; otherwise for none.
      const rxTail = m.load(NIC_REGS.rxTail);
      m.store(NIC_REGS.rxEvent, this.waitingForBuffer ? (rxTail + 1) >>> 0 : (rxTail + 0x8000_0000) >>> 0);
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
    this.wire.unplug(this.end);
  }
}
