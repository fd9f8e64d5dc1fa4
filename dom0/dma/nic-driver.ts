/**
 * dom0's driver for the NIC (dom0/devices/nic.ts), through a DmaApi.
 *
 * Transmit: the frame is copied into the slot's page (the driver's own
 * packet buffer), mapped to-device, described in the TX ring and published
 * with txTail; the doorbell rings only if the device asked (txEvent).
 * Completed slots (up to txHead) are unmapped and reclaimed on the interrupt.
 * Receive: every RX slot's page stays mapped from-device and posted; on the
 * interrupt each filled slot (up to rxHead) is unmapped — the CPU then sees
 * the frame — copied out, and mapped and posted again (rxTail, with a
 * doorbell if the device was waiting for a buffer).
 */
import { DEVICE_STATUS, MMIO_COMMON, MmioWindow, needNotify } from './mmio.ts';
import { NIC_DESC, NIC_REGS } from '../devices/nic.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import type { Pfn, Port } from '../../shared/types.ts';
import { describeDmaError, type CoherentBuffer, type DmaApi, type DmaError, type DmaMapping } from './dma-api.ts';
import { allocPages } from './frames.ts';

export type NicDriverError =
  | { readonly kind: 'device-not-ready'; readonly status: number }
  | { readonly kind: 'tx-full'; readonly entries: number }
  | { readonly kind: 'too-big'; readonly len: number; readonly max: number }
  | { readonly kind: 'out-of-pages'; readonly pages: number }
  | { readonly kind: 'dma'; readonly error: DmaError };

export function describeNicDriverError(e: NicDriverError): string {
  switch (e.kind) {
    case 'device-not-ready': return `the NIC is not running (status ${e.status})`;
    case 'tx-full': return `all ${e.entries} transmit slots are in flight`;
    case 'too-big': return `a ${e.len}-byte frame exceeds the ${e.max}-byte buffer`;
    case 'out-of-pages': return `out of pages for ${e.pages} packet buffers`;
    case 'dma': return describeDmaError(e.error);
  }
}

export interface NicDriverOptions {
  readonly txEntries?: number;
  readonly rxEntries?: number;
  /** Where the rings' coherent memory comes from (default: dma). */
  readonly queueDma?: DmaApi;
}

export interface NicDriverCounters {
  sent: number;
  txErrors: number;
  received: number;
  rxErrors: number;
  kicks: number;
  interrupts: number;
}

export class NicDriver {
  readonly mmio: MmioWindow;
  readonly port: Port;
  /** Frames received and not yet taken by take(). */
  private readonly inbox: Uint8Array[] = [];
  /** Called for each frame received (instead of queueing it), if set. */
  onFrame: ((frame: Uint8Array) => void) | undefined;
  private readonly txMaps: (DmaMapping | undefined)[];
  private readonly rxMaps: (DmaMapping | undefined)[];
  private txTail = 0;
  private txPublished = 0;
  private txDone = 0;
  private rxHead = 0;
  private rxTail = 0;
  private rxPublished = 0;
  private readonly desc = Buffer.alloc(NIC_DESC.SIZE);
  private readonly c: NicDriverCounters = { sent: 0, txErrors: 0, received: 0, rxErrors: 0, kicks: 0, interrupts: 0 };

  private constructor(
    private readonly k: DomainKernel,
    readonly dma: DmaApi,
    private readonly queueDma: DmaApi,
    readonly rings: CoherentBuffer,
    readonly txEntries: number,
    readonly rxEntries: number,
    private readonly txPages: readonly Pfn[],
    private readonly rxPages: readonly Pfn[],
  ) {
    this.mmio = new MmioWindow(k.machine, dma.device.blockAddr);
    this.txMaps = new Array(txEntries).fill(undefined);
    this.rxMaps = new Array(rxEntries).fill(undefined);
    this.port = k.evtchn.allocUnbound(k.domid);
    k.bindHandler(this.port, () => { this.poll(); });
  }

  static attach(k: DomainKernel, dma: DmaApi, opts: NicDriverOptions = {}): Result<NicDriver, NicDriverError> {
    const mmio = new MmioWindow(k.machine, dma.device.blockAddr);
    const status = mmio.load(MMIO_COMMON.status);
    if (status !== DEVICE_STATUS.running) return err({ kind: 'device-not-ready', status });
    const te = opts.txEntries ?? 32;
    const re = opts.rxEntries ?? 32;
    for (const e of [te, re]) if (!(e >= 1 && e <= 4096 && (e & (e - 1)) === 0)) throw new RangeError(`ring entries must be a power of two in 1..4096, got ${e}`);
    const qdma = opts.queueDma ?? dma;
    const rings = qdma.allocCoherent((te + re) * NIC_DESC.SIZE);
    if (!rings.ok) return err({ kind: 'dma', error: rings.error });
    const pages = allocPages(k.ram, te + re);
    if (pages === undefined) { qdma.freeCoherent(rings.value); return err({ kind: 'out-of-pages', pages: te + re }); }
    const drv = new NicDriver(k, dma, qdma, rings.value, te, re, pages.slice(0, te), pages.slice(te));
    const m = drv.mmio;
    m.store(MMIO_COMMON.enable, 0);
    m.store64(NIC_REGS.txBase, rings.value.bus);
    m.store64(NIC_REGS.rxBase, rings.value.bus + te * NIC_DESC.SIZE);
    m.store(NIC_REGS.txEntries, te);
    m.store(NIC_REGS.rxEntries, re);
    m.store(NIC_REGS.txTail, 0);
    m.store(NIC_REGS.rxTail, 0);
    m.store(NIC_REGS.txIrqEvent, 1);
    m.store(NIC_REGS.rxIrqEvent, 1);
    m.store(MMIO_COMMON.irqPort, drv.port);
    // Post every receive buffer before enabling.
    for (let i = 0; i < re; i++) {
      const r = drv.postRx();
      if (!r.ok) { drv.detach(); return err({ kind: 'dma', error: r.error }); }
    }
    m.store(NIC_REGS.rxTail, drv.rxTail);
    drv.rxPublished = drv.rxTail;
    // Release: the device that sees enable sees the rings and the posted buffers.
    m.store(MMIO_COMMON.enable, 1);
    m.ring();
    return ok(drv);
  }

  counters(): NicDriverCounters { return { ...this.c }; }
  get txInFlight(): number { return (this.txTail - this.txDone) >>> 0; }

  private writeDesc(ringOff: number, bus: number, len: number): void {
    const d = this.desc;
    d.writeUInt32LE(bus >>> 0, NIC_DESC.bus);
    d.writeUInt32LE(Math.floor(bus / 2 ** 32), NIC_DESC.bus + 4);
    d.writeUInt32LE(len, NIC_DESC.len);
    d.writeInt32LE(0, NIC_DESC.result);
    this.rings.region.copyIn(ringOff, d);
  }
  private readResult(ringOff: number): number {
    this.rings.region.copyOut(ringOff, this.desc);
    return this.desc.readInt32LE(NIC_DESC.result);
  }
  private rxOff(i: number): number { return (this.txEntries + (i & (this.rxEntries - 1))) * NIC_DESC.SIZE; }
  private txOff(i: number): number { return (i & (this.txEntries - 1)) * NIC_DESC.SIZE; }

  /** Maps the next RX slot's page from-device and writes its descriptor (not yet published). */
  private postRx(): Result<void, DmaError> {
    const slot = this.rxTail & (this.rxEntries - 1);
    const pfn = this.rxPages[slot] as Pfn;
    const r = this.dma.mapBuffer([{ pfn, offset: 0, len: this.k.pageSize }], 'from-device');
    if (!r.ok) return r;
    this.rxMaps[slot] = r.value;
    const seg = r.value.segments;
    // One page from-device: every implementation gives one segment (a bounce slot, an IOVA, or the frame).
    this.writeDesc(this.rxOff(this.rxTail), (seg[0] as { bus: number }).bus, this.k.pageSize);
    this.rxTail = (this.rxTail + 1) >>> 0;
    return ok(undefined);
  }

  /** [send frame] queues one frame for transmission (kick() publishes it). */
  send(frame: Uint8Array): Result<void, NicDriverError> {
    if (frame.length === 0 || frame.length > this.k.pageSize) return err({ kind: 'too-big', len: frame.length, max: this.k.pageSize });
    if (this.txInFlight === this.txEntries) this.reclaimTx();
    if (this.txInFlight === this.txEntries) return err({ kind: 'tx-full', entries: this.txEntries });
    const slot = this.txTail & (this.txEntries - 1);
    const pfn = this.txPages[slot] as Pfn;
    this.k.mem.copyIn(this.k.gpa(pfn), frame);
    const r = this.dma.mapBuffer([{ pfn, offset: 0, len: frame.length }], 'to-device');
    if (!r.ok) return err({ kind: 'dma', error: r.error });
    this.txMaps[slot] = r.value;
    this.writeDesc(this.txOff(this.txTail), (r.value.segments[0] as { bus: number }).bus, frame.length);
    this.txTail = (this.txTail + 1) >>> 0;
    return ok(undefined);
  }

  /** Publishes queued frames and reposted buffers, ringing the doorbell where the device asked. */
  kick(): void {
    const m = this.mmio;
    let ring = false;
    if (this.txTail !== this.txPublished) {
      const old = this.txPublished;
      this.txPublished = this.txTail;
      // Release: the device sees the descriptors /before/ the new tail.
      m.store(NIC_REGS.txTail, this.txTail);
      ring ||= needNotify(this.txTail, old, m.load(NIC_REGS.txEvent));
    }
    if (this.rxTail !== this.rxPublished) {
      const old = this.rxPublished;
      this.rxPublished = this.rxTail;
      m.store(NIC_REGS.rxTail, this.rxTail);
      ring ||= needNotify(this.rxTail, old, m.load(NIC_REGS.rxEvent));
    }
    if (ring) { this.c.kicks++; m.ring(); }
  }

  private reclaimTx(): number {
    const head = this.mmio.load(NIC_REGS.txHead);
    let n = 0;
    while (this.txDone !== head && this.txInFlight > 0) {
      const slot = this.txDone & (this.txEntries - 1);
      const res = this.readResult(this.txOff(this.txDone));
      const mp = this.txMaps[slot];
      if (mp !== undefined) this.dma.unmap(mp);
      this.txMaps[slot] = undefined;
      if (res > 0) this.c.sent++;
      else this.c.txErrors++;
      this.txDone = (this.txDone + 1) >>> 0;
      n++;
    }
    return n;
  }

  private receiveRx(): number {
    const head = this.mmio.load(NIC_REGS.rxHead);
    let n = 0;
    while (this.rxHead !== head && ((this.rxTail - this.rxHead) >>> 0) > 0) {
      const slot = this.rxHead & (this.rxEntries - 1);
      const res = this.readResult(this.rxOff(this.rxHead));
      const mp = this.rxMaps[slot];
      if (mp !== undefined) this.dma.unmap(mp); // the CPU now sees what the device wrote
      this.rxMaps[slot] = undefined;
      if (res > 0) {
        const f = new Uint8Array(Math.min(res, this.k.pageSize));
        this.k.mem.copyOut(this.k.gpa(this.rxPages[slot] as Pfn), f);
        this.c.received++;
        if (this.onFrame !== undefined) this.onFrame(f);
        else this.inbox.push(f);
      } else {
        this.c.rxErrors++;
      }
      this.rxHead = (this.rxHead + 1) >>> 0;
      n++;
      this.postRx();
    }
    return n;
  }

  /** [poll] the interrupt handler: reclaim sent frames, take received ones, re-arm, check again. */
  poll(): number {
    let n = 0;
    for (;;) {
      n += this.reclaimTx() + this.receiveRx();
      this.mmio.store(NIC_REGS.txIrqEvent, (this.txDone + 1) >>> 0);
      this.mmio.store(NIC_REGS.rxIrqEvent, (this.rxHead + 1) >>> 0);
      if (this.mmio.load(NIC_REGS.txHead) === this.txDone && this.mmio.load(NIC_REGS.rxHead) === this.rxHead) break;
    }
    if (n > 0) this.c.interrupts++;
    this.kick();
    return n;
  }

  /** Takes the frames received so far. */
  take(): Uint8Array[] { return this.inbox.splice(0); }

  detach(): void {
    this.mmio.store(MMIO_COMMON.enable, 0);
    this.mmio.ring();
    for (const mp of [...this.txMaps, ...this.rxMaps]) if (mp !== undefined) this.dma.unmap(mp);
    this.txMaps.fill(undefined);
    this.rxMaps.fill(undefined);
    this.k.evtchn.unbind(this.port);
    this.k.evtchn.close(this.port);
    for (const p of [...this.txPages, ...this.rxPages]) this.k.ram.release(p);
    this.queueDma.freeCoherent(this.rings);
  }
}
