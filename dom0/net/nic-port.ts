/**
 * The physical NIC as a port of a dom0 bridge (Linux: eth0 enslaved to
 * xenbr0), driven through dom0's DMA API — the driver that joins the bridge
 * (dom0/net/bridge.ts) and the NIC model (dom0/devices/nic.ts).
 *
 * Transmit (bridge → wire): the bridge hands the port a packet whose
 * fragments may be dom0's own chunks or a guest's grant-mapped pages, and the
 * NIC takes bus addresses only. The port copies the frame into its TX copy
 * buffer (one per ring slot, carved back to back from one pfn-contiguous run
 * of dom0 pages, as a kmalloc'd array would be — so a buffer may straddle a
 * page boundary), maps that buffer to-device with the DMA API chosen by
 * configuration, and writes one TX descriptor per bus segment it got (the
 * NIC gathers them: NIC_DESC_MORE). What each API does with a straddling
 * buffer is the point: `iommu` gives one IOVA range, `swiotlb` bounces it
 * when its two pages are not machine-contiguous, `p2m`/`xlate` hand the NIC
 * two machine segments, `direct` one. Descriptors are published with one
 * doorbell per burst, from the net loop, after the bridge has queued what it
 * forwards. Sent slots are unmapped and reclaimed on the interrupt (or when
 * the ring fills). While the ring is full, frames wait in a software queue
 * (Linux's qdisc, txqueuelen frames; beyond it they are dropped), their
 * grant-mapped fragments copied out first so no guest's TX slots wait on the
 * NIC, and go on the ring as completions free slots.
 *
 * Receive (wire → bridge): every RX slot holds a page of the packet pool,
 * mapped from-device and posted. On the interrupt each filled slot is
 * unmapped (the CPU now sees what the device wrote, swiotlb copies back), its
 * page becomes the received packet's own storage (no copy), a fresh pool page
 * is mapped and posted in its place, and the packet enters the bridge as a
 * frame arriving on this port. A pool with no page to spare drops the frame
 * and reposts the same page: the ring never runs dry.
 *
 * Counters: the bridge counts the port's traffic (rx/tx packets and bytes,
 * drops); the port counts what its driver did (NicPortCounters); the DMA API
 * and the NIC count their own. They add up: every packet the bridge sent out
 * here was queued on the ring (some after waiting in the software queue), and
 * every queued one is sent or errored once reclaimed.
 */
import { DEVICE_STATUS, MMIO_COMMON, MmioWindow, needNotify } from '../dma/mmio.ts';
import { NIC_DESC, NIC_DESC_MORE, NIC_REGS } from '../devices/nic.ts';
import { describeDmaError, type CoherentBuffer, type DmaApi, type DmaError, type DmaMapping } from '../dma/dma-api.ts';
import { allocRun } from '../dma/frames.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import type { Pfn, Port } from '../../shared/types.ts';
import type { Bridge, BridgeAttachment, BridgePort } from './bridge.ts';
import type { NetLoop, NetPhase, NetWork } from './loop.ts';
import { FRAG_LOCAL, NET_PAGE, type NetPacket, type PacketPool } from './packet.ts';

export interface NicPortOptions {
  /** Interface name on the bridge (default eth0). */
  readonly name?: string;
  /** The NIC's own MAC (default 02:00:00:00:<device id>). */
  readonly mac?: string;
  /** IPv4 MTU of the wire, 68..NET_PAGE−14 (default 1500): an RX buffer is one pool page. */
  readonly mtu?: number;
  /** TX and RX ring entries, powers of two in 1..4096 (default 64 each). */
  readonly txEntries?: number;
  readonly rxEntries?: number;
  /** Where the rings' coherent memory comes from (default: the data DMA API). */
  readonly queueDma?: DmaApi;
  /** Frames held while the TX ring is full (Linux's txqueuelen, default 1000); beyond it the port drops. */
  readonly txQueueLen?: number;
}

export interface NicPortCounters {
  /** Frames copied, mapped and queued on the TX ring. */
  txQueued: number;
  /** Queued frames the NIC sent (reclaimed with a positive result). */
  txSent: number;
  /** Queued frames the NIC refused (DMA fault, bad descriptor). */
  txErrors: number;
  /** Frames that waited in the software queue because the TX ring was full. */
  txQueuedSoft: number;
  /** Queued frames whose grant-mapped fragments were copied out first (their guests' slots released). */
  txOrphaned: number;
  /** Frames refused because the ring and the software queue were full (or a copy-out found no pages). */
  txBusy: number;
  /** Frames refused because the DMA API could not map them. */
  txMapErrors: number;
  /** TX descriptors written (one per bus segment). */
  txDescriptors: number;
  /** Frames whose buffer the NIC had to gather from more than one bus segment. */
  txGathered: number;
  /** Frames received into a posted buffer and handed to the bridge. */
  rxFrames: number;
  rxBytes: number;
  /** RX completions with an error status (too big, DMA fault). */
  rxErrors: number;
  /** Frames dropped because the packet pool had no page to post in the buffer's place. */
  rxPoolEmpty: number;
  /** Buffers that could not be mapped again (the slot stays empty). */
  rxPostErrors: number;
  interrupts: number;
  kicks: number;
  /** The device published a head beyond what was posted (ignored). */
  deviceErrors: number;
}

export type NicPortError =
  | { readonly kind: 'device-not-ready'; readonly status: number }
  | { readonly kind: 'bad-option'; readonly option: string; readonly value: number }
  | { readonly kind: 'out-of-pages'; readonly pages: number }
  | { readonly kind: 'name-taken'; readonly name: string }
  | { readonly kind: 'dma'; readonly error: DmaError };

export function describeNicPortError(e: NicPortError): string {
  switch (e.kind) {
    case 'device-not-ready': return `the NIC is not running (status ${e.status})`;
    case 'bad-option': return `${e.option} ${e.value} is out of range`;
    case 'out-of-pages': return `out of dom0 pages (wanted ${e.pages})`;
    case 'name-taken': return `the bridge already has a port named ${e.name}`;
    case 'dma': return describeDmaError(e.error);
  }
}

/** One queued frame: its mapping and the descriptors it took. */
interface TxRecord {
  map: DmaMapping | undefined;
  /** Free-running index of its first descriptor, and how many it took. */
  first: number;
  ndesc: number;
}

/** Most passes of one interrupt (each takes everything completed so far). */
const POLL_ROUNDS = 16;

const pow2 = (e: number): boolean => Number.isInteger(e) && e >= 1 && e <= 4096 && (e & (e - 1)) === 0;

export class NicPort implements BridgePort, NetWork {
  readonly acceptsGso = false;
  readonly acceptsCsumBlank = false;
  readonly maxFrame: number;
  readonly mmio: MmioWindow;
  readonly port: Port;
  private attachment: BridgeAttachment | undefined;
  private readonly ps: number;
  /** Bytes per TX copy buffer (14 + MTU, rounded up to 64). */
  private readonly txBufBytes: number;
  private readonly txRecs: TxRecord[];
  /** Descriptors written, published, and reclaimed (free-running). */
  private txTail = 0;
  private txPublished = 0;
  private txDone = 0;
  /** Frames queued and reclaimed (free-running): frame i uses copy buffer i & (txEntries − 1). */
  private txFrames = 0;
  private txFramesDone = 0;
  private readonly rxMaps: (DmaMapping | undefined)[];
  private readonly rxPages: Int32Array;
  private rxHead = 0;
  private rxTail = 0;
  private rxPublished = 0;
  /** The software queue in front of the ring (qdisc): packets we hold a reference to, oldest first. */
  private readonly softq: (NetPacket | undefined)[] = [];
  private softHead = 0;
  private readonly txQueueLen: number;
  private kickDeferred = false;
  /** poll() ran out of its budget with completions left: the net loop calls it again. */
  private pollDeferred = false;
  private detached = false;
  private readonly desc = Buffer.alloc(NIC_DESC.SIZE);
  private readonly c: NicPortCounters = {
    txQueued: 0, txSent: 0, txErrors: 0, txQueuedSoft: 0, txOrphaned: 0, txBusy: 0, txMapErrors: 0, txDescriptors: 0, txGathered: 0,
    rxFrames: 0, rxBytes: 0, rxErrors: 0, rxPoolEmpty: 0, rxPostErrors: 0, interrupts: 0, kicks: 0, deviceErrors: 0,
  };

  private constructor(
    private readonly k: DomainKernel,
    readonly dma: DmaApi,
    private readonly queueDma: DmaApi,
    private readonly pool: PacketPool,
    private readonly loop: NetLoop,
    readonly name: string,
    readonly mac: string,
    readonly mtu: number,
    private readonly rings: CoherentBuffer,
    readonly txEntries: number,
    readonly rxEntries: number,
    /** The TX copy buffers' pfn-contiguous run. */
    private readonly txRun: readonly Pfn[],
    txQueueLen: number,
  ) {
    this.ps = k.pageSize;
    this.txQueueLen = txQueueLen;
    this.maxFrame = 14 + mtu;
    this.txBufBytes = (this.maxFrame + 63) & ~63;
    this.mmio = new MmioWindow(k.machine, dma.device.blockAddr);
    this.txRecs = Array.from({ length: txEntries }, () => ({ map: undefined, first: 0, ndesc: 0 }));
    this.rxMaps = new Array<DmaMapping | undefined>(rxEntries).fill(undefined);
    this.rxPages = new Int32Array(rxEntries).fill(-1);
    this.port = k.evtchn.allocUnbound(k.domid);
    k.bindHandler(this.port, () => { this.poll(); });
  }

  /**
   * [attach k dma bridge pool loop opts] programs the NIC behind dma (rings,
   * posted RX buffers, interrupt port), enables it, and plugs it into bridge
   * as a port. The DMA API is what configuration chose (dom0/dma/create-dma.ts).
   */
  static attach(k: DomainKernel, dma: DmaApi, bridge: Bridge, pool: PacketPool, loop: NetLoop, opts: NicPortOptions = {}): Result<NicPort, NicPortError> {
    const mmio = new MmioWindow(k.machine, dma.device.blockAddr);
    const status = mmio.load(MMIO_COMMON.status);
    if (status !== DEVICE_STATUS.running) return err({ kind: 'device-not-ready', status });
    const te = opts.txEntries ?? 64;
    const re = opts.rxEntries ?? 64;
    const mtu = opts.mtu ?? 1500;
    if (!pow2(te)) return err({ kind: 'bad-option', option: 'txEntries', value: te });
    if (!pow2(re)) return err({ kind: 'bad-option', option: 'rxEntries', value: re });
    if (!(Number.isInteger(mtu) && mtu >= 68 && mtu <= NET_PAGE - 14)) return err({ kind: 'bad-option', option: 'mtu', value: mtu });
    const ql = opts.txQueueLen ?? 1000;
    if (!(Number.isInteger(ql) && ql >= 0)) return err({ kind: 'bad-option', option: 'txQueueLen', value: ql });
    const name = opts.name ?? 'eth0';
    if (bridge.portNames.includes(name)) return err({ kind: 'name-taken', name });
    const qdma = opts.queueDma ?? dma;
    const rings = qdma.allocCoherent((te + re) * NIC_DESC.SIZE);
    if (!rings.ok) return err({ kind: 'dma', error: rings.error });
    const bufBytes = ((14 + mtu + 63) & ~63) * te;
    const runPages = Math.ceil(bufBytes / k.pageSize);
    const run = allocRun(k.ram, runPages);
    if (run === undefined) {
      qdma.freeCoherent(rings.value);
      return err({ kind: 'out-of-pages', pages: runPages });
    }
    const hex = (b: number): string => (b & 0xff).toString(16).padStart(2, '0');
    const mac = opts.mac ?? `02:00:00:00:${hex(dma.device.id >>> 8)}:${hex(dma.device.id)}`;
    const p = new NicPort(k, dma, qdma, pool, loop, name, mac, mtu, rings.value, te, re, run, opts.txQueueLen ?? 1000);
    const m = p.mmio;
    m.store(MMIO_COMMON.enable, 0);
    m.store64(NIC_REGS.txBase, rings.value.bus);
    m.store64(NIC_REGS.rxBase, rings.value.bus + te * NIC_DESC.SIZE);
    m.store(NIC_REGS.txEntries, te);
    m.store(NIC_REGS.rxEntries, re);
    m.store(NIC_REGS.txTail, 0);
    m.store(NIC_REGS.rxTail, 0);
    m.store(NIC_REGS.txIrqEvent, 1);
    m.store(NIC_REGS.rxIrqEvent, 1);
    m.store(MMIO_COMMON.irqPort, p.port);
    for (let i = 0; i < re; i++) {
      const r = p.postRx();
      if (!r.ok) {
        p.teardown();
        return err(r.error);
      }
    }
    m.store(NIC_REGS.rxTail, p.rxTail);
    p.rxPublished = p.rxTail;
    // Release: the device that sees enable sees the rings and every posted buffer.
    m.store(MMIO_COMMON.enable, 1);
    m.ring();
    p.attachment = bridge.attach(p);
    return ok(p);
  }

  counters(): NicPortCounters { return { ...this.c }; }
  /** TX descriptors in flight (posted, not reclaimed). */
  get txInFlight(): number { return (this.txTail - this.txDone) >>> 0; }
  get bridge(): Bridge | undefined { return this.attachment?.bridge; }

  private writeDesc(ringOff: number, bus: number, len: number): void {
    const d = this.desc;
    d.writeUInt32LE(bus >>> 0, NIC_DESC.bus);
    d.writeUInt32LE(Math.floor(bus / 2 ** 32), NIC_DESC.bus + 4);
    d.writeUInt32LE(len >>> 0, NIC_DESC.len);
    d.writeInt32LE(0, NIC_DESC.result);
    this.rings.region.copyIn(ringOff, d);
  }
  private readResult(ringOff: number): number {
    this.rings.region.copyOut(ringOff, this.desc);
    return this.desc.readInt32LE(NIC_DESC.result);
  }
  private txOff(i: number): number { return (i & (this.txEntries - 1)) * NIC_DESC.SIZE; }
  private rxOff(i: number): number { return (this.txEntries + (i & (this.rxEntries - 1))) * NIC_DESC.SIZE; }

  // ---- transmit -------------------------------------------------------------

  /**
   * BridgePort.transmit: onto the ring if it has room (and nothing waits
   * before it), else into the software queue (holding a reference) until TX
   * completions free slots; dropped only when that queue is full too.
   */
  transmit(pkt: NetPacket): boolean {
    if (this.detached || pkt.len === 0 || pkt.len > this.maxFrame) return false;
    if (this.softq.length - this.softHead === 0) {
      const r = this.queueOnRing(pkt);
      if (r !== 'full') return r === 'queued';
    }
    if (this.softq.length - this.softHead >= this.txQueueLen) {
      this.c.txBusy++;
      return false;
    }
    // Held for an unknown time: copy a guest's grant-mapped fragments out first, so that no
    // guest's TX slots wait on this NIC (skb_orphan_frags; netback RX does the same).
    if (pkt.hasForeign()) {
      if (!this.pool.orphan(pkt)) {
        this.c.txBusy++;
        return false;
      }
      this.c.txOrphaned++;
    }
    this.pool.ref(pkt);
    this.softq.push(pkt);
    this.c.txQueuedSoft++;
    // Only a TX completion moves the queue: ask for its interrupt (a reclaim here may have left
    // the event behind the device's head), and catch completions that came before the re-arm.
    this.mmio.store(NIC_REGS.txIrqEvent, (this.txDone + 1) >>> 0);
    if (this.txCompletionsWaiting() && !this.pollDeferred) {
      this.pollDeferred = true;
      this.loop.defer('rx', this);
    }
    return true;
  }

  /** Moves waiting packets onto the ring while it has room; returns how many. */
  private drainSoftQueue(): number {
    let n = 0;
    while (this.softHead < this.softq.length) {
      const pkt = this.softq[this.softHead] as NetPacket;
      if (this.queueOnRing(pkt) === 'full') break;
      this.softq[this.softHead++] = undefined;
      this.pool.release(pkt);
      n++;
    }
    if (this.softHead === this.softq.length) {
      this.softq.length = 0;
      this.softHead = 0;
    } else if (this.softHead > 1024) {
      this.softq.splice(0, this.softHead);
      this.softHead = 0;
    }
    return n;
  }

  /** Copies pkt into its slot's buffer, maps it and writes its descriptors; 'full' when the ring has no room. */
  private queueOnRing(pkt: NetPacket): 'queued' | 'full' | 'dropped' {
    const slots = this.txEntries;
    if (((this.txFrames - this.txFramesDone) >>> 0) === slots) this.reclaimTx();
    if (((this.txFrames - this.txFramesDone) >>> 0) === slots) return 'full';
    const at = (this.txFrames & (slots - 1)) * this.txBufBytes;
    const pfn = this.txRun[Math.floor(at / this.ps)] as Pfn;
    const offset = at % this.ps;
    // At most one bus segment per page the buffer touches: make sure that many descriptors are free.
    const worst = Math.ceil((offset + pkt.len) / this.ps);
    if (this.txInFlight + worst > this.txEntries) this.reclaimTx();
    if (this.txInFlight + worst > this.txEntries) return 'full';
    const scratch = this.pool.scratchBuffer;
    this.pool.copyOut(pkt, scratch, 0, 0, pkt.len);
    this.k.mem.copyIn(this.k.gpa(pfn, offset), scratch, 0, pkt.len);
    const r = this.dma.mapBuffer([{ pfn, offset, len: pkt.len }], 'to-device');
    if (!r.ok) {
      this.c.txMapErrors++;
      return 'dropped';
    }
    const segs = r.value.segments;
    if (segs.length > worst) {
      // Every implementation merges within a page: more segments than pages is a broken DMA API.
      this.dma.unmap(r.value);
      throw new Error(`${this.name}: a ${pkt.len}-byte buffer over ${worst} page(s) mapped to ${segs.length} segments`);
    }
    const rec = this.txRecs[this.txFrames & (slots - 1)] as TxRecord;
    rec.map = r.value;
    rec.first = this.txTail;
    rec.ndesc = segs.length;
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i] as (typeof segs)[number];
      this.writeDesc(this.txOff(this.txTail), s.bus, i < segs.length - 1 ? (s.len | NIC_DESC_MORE) : s.len);
      this.txTail = (this.txTail + 1) >>> 0;
    }
    this.txFrames = (this.txFrames + 1) >>> 0;
    this.c.txQueued++;
    this.c.txDescriptors += segs.length;
    if (segs.length > 1) this.c.txGathered++;
    if (!this.kickDeferred) {
      this.kickDeferred = true;
      this.loop.defer('rx', this);
    }
    return 'queued';
  }

  /** NetWork: publish what the bridge queued during the handler that just ran (and finish a poll that ran out of budget). */
  runNetWork(_phase: NetPhase): void {
    this.kickDeferred = false;
    if (this.pollDeferred) {
      this.pollDeferred = false;
      this.poll(); // kicks too
    } else this.kick();
  }

  /** Publishes written TX descriptors and reposted RX buffers, ringing the doorbell where the device asked. */
  kick(): void {
    if (this.detached) return;
    const m = this.mmio;
    let ring = false;
    if (this.txTail !== this.txPublished) {
      const old = this.txPublished;
      this.txPublished = this.txTail;
      // Release: the device sees the descriptors (and the mapped frames) /before/ the new tail.
      m.store(NIC_REGS.txTail, this.txTail);
      ring ||= needNotify(this.txTail, old, m.load(NIC_REGS.txEvent));
    }
    if (this.rxTail !== this.rxPublished) {
      const old = this.rxPublished;
      this.rxPublished = this.rxTail;
      // Release: the device sees the buffers' descriptors /before/ the new tail.
      m.store(NIC_REGS.rxTail, this.rxTail);
      ring ||= needNotify(this.rxTail, old, m.load(NIC_REGS.rxEvent));
    }
    if (ring) {
      this.c.kicks++;
      m.ring();
    }
  }

  private reclaimTx(): number {
    const head = this.mmio.load(NIC_REGS.txHead);
    let n = 0;
    while (this.txFramesDone !== this.txFrames) {
      const rec = this.txRecs[this.txFramesDone & (this.txEntries - 1)] as TxRecord;
      // The frame is done when the device's head has passed all of its descriptors.
      if (((head - rec.first) >>> 0) < rec.ndesc || ((head - rec.first) >>> 0) > this.txEntries) break;
      const res = this.readResult(this.txOff(rec.first + rec.ndesc - 1));
      if (rec.map !== undefined) this.dma.unmap(rec.map);
      rec.map = undefined;
      if (res > 0) this.c.txSent++;
      else this.c.txErrors++;
      this.txDone = (rec.first + rec.ndesc) >>> 0;
      this.txFramesDone = (this.txFramesDone + 1) >>> 0;
      n++;
    }
    return n;
  }

  // ---- receive --------------------------------------------------------------

  /** Maps the next RX slot's page from-device and writes its descriptor (published by kick). */
  private postRx(): Result<void, NicPortError> {
    const slot = this.rxTail & (this.rxEntries - 1);
    let pg = this.rxPages[slot] as number;
    if (pg < 0) {
      pg = this.pool.allocPage();
      if (pg < 0) return err({ kind: 'out-of-pages', pages: 1 });
      this.rxPages[slot] = pg;
    }
    const r = this.dma.mapBuffer([{ pfn: pg as Pfn, offset: 0, len: NET_PAGE }], 'from-device');
    if (!r.ok) return err({ kind: 'dma', error: r.error });
    const seg = r.value.segments[0];
    if (r.value.segments.length !== 1 || seg === undefined) {
      // One page at offset 0 is one segment in every implementation; anything else is our bug.
      this.dma.unmap(r.value);
      throw new Error(`${this.name}: a one-page RX buffer mapped to ${r.value.segments.length} segments`);
    }
    this.rxMaps[slot] = r.value;
    this.writeDesc(this.rxOff(this.rxTail), seg.bus, NET_PAGE);
    this.rxTail = (this.rxTail + 1) >>> 0;
    return ok(undefined);
  }

  private receiveRx(): number {
    const head = this.mmio.load(NIC_REGS.rxHead);
    // The device may complete only what was posted; a head beyond that is a device error, not a loop.
    if (((head - this.rxHead) >>> 0) > ((this.rxTail - this.rxHead) >>> 0)) {
      this.c.deviceErrors++;
      return 0;
    }
    let n = 0;
    while (this.rxHead !== head) {
      const slot = this.rxHead & (this.rxEntries - 1);
      const res = this.readResult(this.rxOff(this.rxHead));
      const mp = this.rxMaps[slot];
      if (mp !== undefined) this.dma.unmap(mp); // the CPU now sees what the device wrote
      this.rxMaps[slot] = undefined;
      let pkt: NetPacket | undefined;
      if (res > 0 && res <= NET_PAGE) {
        const fresh = this.pool.allocPage();
        if (fresh < 0) this.c.rxPoolEmpty++; // drop; the same page is posted again
        else {
          const pg = this.rxPages[slot] as number;
          this.rxPages[slot] = fresh;
          pkt = this.pool.get();
          this.pool.ownPage(pkt, pg);
          pkt.addFrag(FRAG_LOCAL, pg, 0, res);
          this.c.rxFrames++;
          this.c.rxBytes += res;
        }
      } else this.c.rxErrors++;
      this.rxHead = (this.rxHead + 1) >>> 0;
      n++;
      if (!this.postRx().ok) this.c.rxPostErrors++;
      if (pkt !== undefined) {
        if (this.attachment !== undefined) this.attachment.input(pkt);
        else this.pool.release(pkt);
      }
    }
    return n;
  }

  /** [poll] the interrupt handler: reclaim sent frames, pass received ones up, re-arm, check again. */
  poll(): number {
    if (this.detached) return 0;
    let n = 0;
    let quiet = false;
    for (let round = 0; round < POLL_ROUNDS && !quiet; round++) {
      n += this.reclaimTx() + this.receiveRx();
      if (this.softHead < this.softq.length) this.drainSoftQueue();
      // Interrupt me when the device's heads pass what I have seen.
      this.mmio.store(NIC_REGS.txIrqEvent, (this.txDone + 1) >>> 0);
      this.mmio.store(NIC_REGS.rxIrqEvent, (this.rxHead + 1) >>> 0);
      // Check again after re-arming: a completion that raced the re-arm raised no interrupt.
      quiet = !this.rxCompletionsWaiting() && !this.txCompletionsWaiting();
    }
    if (!quiet && !this.pollDeferred) {
      // Still busy after our budget: no interrupt will come for what is there, so come back from the net loop.
      this.pollDeferred = true;
      this.loop.defer('rx', this);
    }
    if (n > 0) this.c.interrupts++;
    this.kick();
    return n;
  }

  /** Filled RX buffers not taken yet (a head beyond what was posted counts as none: receiveRx refuses it). */
  private rxCompletionsWaiting(): boolean {
    const d = (this.mmio.load(NIC_REGS.rxHead) - this.rxHead) >>> 0;
    return d !== 0 && d <= ((this.rxTail - this.rxHead) >>> 0);
  }

  private txCompletionsWaiting(): boolean {
    if (this.txFramesDone === this.txFrames) return false;
    const rec = this.txRecs[this.txFramesDone & (this.txEntries - 1)] as TxRecord;
    const d = (this.mmio.load(NIC_REGS.txHead) - rec.first) >>> 0;
    return d >= rec.ndesc && d <= this.txEntries;
  }

  // ---- teardown -------------------------------------------------------------

  /** Leaves the bridge, stops the NIC, unmaps every buffer and gives every page back. */
  detach(): void {
    if (this.detached) return;
    this.attachment?.detach();
    this.attachment = undefined;
    this.teardown();
  }

  private teardown(): void {
    this.detached = true;
    for (let i = this.softHead; i < this.softq.length; i++) {
      const q = this.softq[i];
      if (q !== undefined) this.pool.release(q);
    }
    this.softq.length = 0;
    this.softHead = 0;
    this.mmio.store(MMIO_COMMON.enable, 0);
    this.mmio.ring();
    for (const rec of this.txRecs) {
      if (rec.map !== undefined) this.dma.unmap(rec.map);
      rec.map = undefined;
    }
    for (let i = 0; i < this.rxEntries; i++) {
      const mp = this.rxMaps[i];
      if (mp !== undefined) this.dma.unmap(mp);
      this.rxMaps[i] = undefined;
      const pg = this.rxPages[i] as number;
      if (pg >= 0) this.pool.freePage(pg);
      this.rxPages[i] = -1;
    }
    this.k.evtchn.unbind(this.port);
    this.k.evtchn.close(this.port);
    for (const p of this.txRun) this.k.ram.release(p);
    this.queueDma.freeCoherent(this.rings);
  }
}
