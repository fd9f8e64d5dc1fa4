/**
 * What every DMA API implementation shares: checking a buffer description,
 * merging bus segments, live-mapping bookkeeping and counters, and wrapping
 * coherent pages for the CPU.
 */
import type { DeviceInfo } from '../../hypervisor/iommu.ts';
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import { type Result, err, ok } from '../../shared/result.ts';
import type { BusAddr, Pfn } from '../../shared/types.ts';
import {
  MAX_MAPPING_BYTES, zeroCounters,
  type BusSegment, type CoherentBuffer, type DmaApi, type DmaCounters, type DmaDirection, type DmaError, type DmaKind, type DmaMapping, type DmaPiece,
} from './dma-api.ts';

/** [dmaLimit bits] is the first bus address a device with a bits-wide DMA mask cannot reach. */
export function dmaLimit(bits: number): number {
  return bits >= 53 ? Number.POSITIVE_INFINITY : 2 ** bits;
}

/** [piecePages p ps] is the number of pages piece p touches. */
export function piecePages(p: DmaPiece, ps: number): number {
  return Math.ceil((p.offset + p.len) / ps);
}

/** [checkPieces pieces ps] validates a buffer description; returns its pages and bytes. */
export function checkPieces(pieces: readonly DmaPiece[], ps: number): Result<{ pages: number; bytes: number }, DmaError> {
  if (pieces.length === 0) return err({ kind: 'bad-buffer', reason: 'a buffer needs at least one piece', index: 0 });
  let pages = 0;
  let bytes = 0;
  for (let i = 0; i < pieces.length; i++) {
    const p = pieces[i] as DmaPiece;
    if (!Number.isInteger(p.pfn) || p.pfn < 0) return err({ kind: 'bad-buffer', reason: `pfn ${String(p.pfn)} is not a frame number`, index: i });
    if (!Number.isInteger(p.offset) || p.offset < 0 || p.offset >= ps) return err({ kind: 'bad-buffer', reason: `offset ${String(p.offset)} is not within a page`, index: i });
    if (!Number.isInteger(p.len) || p.len <= 0) return err({ kind: 'bad-buffer', reason: `length ${String(p.len)} is not a positive integer`, index: i });
    pages += piecePages(p, ps);
    bytes += p.len;
  }
  if (bytes > MAX_MAPPING_BYTES) return err({ kind: 'too-large', bytes, max: MAX_MAPPING_BYTES });
  return ok({ pages, bytes });
}

/** [pushSegment segs bus len] appends [bus, bus+len), merging with the last segment when contiguous. */
export function pushSegment(segs: BusSegment[], bus: number, len: number): void {
  const last = segs[segs.length - 1];
  if (last !== undefined && last.bus + last.len === bus) {
    segs[segs.length - 1] = { bus: last.bus, len: last.len + len };
  } else {
    segs.push({ bus: bus as BusAddr, len });
  }
}

/**
 * [DmaBase] holds the per-instance state every implementation needs: the
 * kernel, the device, counters, and the live mappings (each with the
 * implementation's private record R, so unmap can find what map set up).
 */
export abstract class DmaBase<R> implements DmaApi {
  protected readonly c: DmaCounters = zeroCounters();
  protected readonly live = new Map<number, { readonly mapping: DmaMapping; readonly rec: R }>();
  protected readonly coherent = new Map<number, { readonly buf: CoherentBuffer; readonly rec: R | undefined }>();
  private nextId = 1;
  protected readonly ps: number;
  /** First bus address the device cannot reach. */
  protected readonly limit: number;

  constructor(
    readonly kind: DmaKind,
    protected readonly k: DomainKernel,
    readonly device: DeviceInfo,
  ) {
    this.ps = k.pageSize;
    this.limit = dmaLimit(device.dmaMaskBits);
  }

  abstract mapBuffer(pieces: readonly DmaPiece[], dir: DmaDirection): Result<DmaMapping, DmaError>;
  abstract allocCoherent(bytes: number): Result<CoherentBuffer, DmaError>;
  /** Undo what map did (the mapping is already off the live list). */
  protected abstract release(m: DmaMapping, rec: R): Result<void, DmaError>;
  /** Undo what allocCoherent did besides the pages (IOMMU entries); default nothing. */
  protected releaseCoherent(_c: CoherentBuffer, _rec: R | undefined): Result<void, DmaError> { return ok(undefined); }

  counters(): DmaCounters { return { ...this.c }; }

  /** Records a successful mapping and counts it. */
  protected finish(dir: DmaDirection, segments: readonly BusSegment[], bytes: number, pages: number, rec: R): Result<DmaMapping, DmaError> {
    const mapping: DmaMapping = { id: this.nextId++, kind: this.kind, dir, segments, bytes, pages };
    this.live.set(mapping.id, { mapping, rec });
    this.c.maps++;
    this.c.pagesMapped += pages;
    this.c.bytesMapped += bytes;
    this.c.segments += segments.length;
    return ok(mapping);
  }

  protected fail<T>(e: DmaError): Result<T, DmaError> {
    this.c.mapErrors++;
    return err(e);
  }

  unmap(m: DmaMapping): Result<void, DmaError> {
    const e = this.live.get(m.id);
    if (e === undefined) return err({ kind: 'unknown-mapping', id: m.id });
    this.live.delete(m.id);
    this.c.unmaps++;
    return this.release(e.mapping, e.rec);
  }

  /** The default sync: nothing to copy (the device works on the buffer itself). */
  syncForDevice(m: DmaMapping): Result<void, DmaError> {
    if (!this.live.has(m.id)) return err({ kind: 'unknown-mapping', id: m.id });
    this.c.syncs++;
    return ok(undefined);
  }
  syncForCpu(m: DmaMapping): Result<void, DmaError> {
    if (!this.live.has(m.id)) return err({ kind: 'unknown-mapping', id: m.id });
    this.c.syncs++;
    return ok(undefined);
  }

  /** Zeroes the pages and wraps them as a coherent buffer at bus. */
  protected makeCoherent(pfns: readonly Pfn[], bus: number, bytes: number, rec: R | undefined): CoherentBuffer {
    for (const p of pfns) this.k.mem.fill(this.k.gpa(p), this.ps, 0);
    const buf: CoherentBuffer = { id: this.nextId++, pfns, bus: bus as BusAddr, bytes, region: this.k.mem.region(pfns) };
    this.coherent.set(buf.id, { buf, rec });
    this.c.coherentAllocs++;
    return buf;
  }

  freeCoherent(c: CoherentBuffer): Result<void, DmaError> {
    const e = this.coherent.get(c.id);
    if (e === undefined) return err({ kind: 'unknown-mapping', id: c.id });
    this.coherent.delete(c.id);
    const r = this.releaseCoherent(e.buf, e.rec);
    for (const p of e.buf.pfns) this.k.ram.release(p);
    this.c.coherentFrees++;
    return r;
  }

  /** [coherentPages bytes] is the page count of a coherent request, or an error. */
  protected coherentPages(bytes: number): Result<number, DmaError> {
    if (!Number.isInteger(bytes) || bytes <= 0) return err({ kind: 'bad-buffer', reason: `coherent size ${bytes} is not a positive integer`, index: 0 });
    if (bytes > MAX_MAPPING_BYTES) return err({ kind: 'too-large', bytes, max: MAX_MAPPING_BYTES });
    return ok(Math.ceil(bytes / this.ps));
  }
}
