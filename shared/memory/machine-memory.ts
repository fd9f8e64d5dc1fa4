/**
 * MachineMemory: the ONLY holder of the machine's SharedArrayBuffer and of the
 * typed views over it (the one door to memory; see docs/ARCHITECTURE.md).
 *
 * Every other module reaches memory through this class (the hypervisor, which
 * sees machine addresses), through DomainMemory (a domain's MMU-checked view,
 * shared/memory/domain-memory.ts), or through a MemRegion built on either.
 *
 * Ordering contract (the JS memory model, as Xen's barriers map onto it):
 *  - plain reads/writes (DataView, copies) are unordered between threads;
 *  - an `atomicStore32` is a release: every earlier write (plain or atomic) by the
 *    same thread is visible to a thread that observes the stored value through an
 *    `atomicLoad32` (an acquire). This is our `wmb()`/`rmb()` pair;
 *  - read-modify-write atomics (add/or/and/cmpxchg) are full barriers (`mb()`).
 * Every publish of an index or flag therefore goes through an atomic, and the
 * comment at each call site says who must see what.
 */
import { asMachineAddr, type MachineAddr, type Mfn } from '../types.ts';

export const PAGE_SIZES = [4096, 16384] as const;
export type PageSize = (typeof PAGE_SIZES)[number];

export interface MachineMemoryConfig {
  /** Bytes of machine memory; a multiple of pageSize. Default 256 MiB. */
  readonly memBytes: number;
  /** 4 KiB (x86, Arm) or 16 KiB (as ia64 could be configured). */
  readonly pageSize: PageSize;
}

export const DEFAULT_MEMORY: MachineMemoryConfig = { memBytes: 256 * 1024 * 1024, pageSize: 4096 };
/** Largest machine we accept: 4 GiB — Node 20 cannot build the typed views over a larger SharedArrayBuffer. */
export const MAX_MEM_BYTES = 4 * 1024 * 1024 * 1024;

export type WaitResult = 'ok' | 'not-equal' | 'timed-out';

/**
 * Copies of at most this many bytes (ring slots, descriptors, headers) are
 * done as 32-bit word moves when both ends are 4-aligned. V8's
 * TypedArray.prototype.set costs ~45 ns before it moves a byte when its source
 * is a SharedArrayBuffer (and a subarray view per call on top), while a
 * 112-byte blkif slot moves as 28 words in ~15-20 ns. Larger copies are one
 * memcpy (set / copyWithin) as before.
 */
const SMALL_COPY = 256;
/** Private buffers whose word views are kept: a few rings per thread. */
const WORD_CACHE = 8;
/** Only small private buffers (slot-sized) are cached, so the cache never pins a large one. */
const WORD_CACHE_MAX_BYTES = 4096;

/** Moves n 32-bit words; unrolled by 4, which is what makes small copies cheap. */
function copyWords(d: Int32Array, dOff: number, s: Int32Array, sOff: number, n: number): void {
  let k = 0;
  for (; k + 4 <= n; k += 4) {
    d[dOff + k] = s[sOff + k] as number;
    d[dOff + k + 1] = s[sOff + k + 1] as number;
    d[dOff + k + 2] = s[sOff + k + 2] as number;
    d[dOff + k + 3] = s[sOff + k + 3] as number;
  }
  for (; k < n; k++) d[dOff + k] = s[sOff + k] as number;
}

export class MachineMemory {
  readonly sab: SharedArrayBuffer;
  readonly byteLength: number;
  readonly pageSize: PageSize;
  readonly pageShift: number;
  readonly frames: number;
  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly i32: Int32Array;
  private readonly dv: DataView;
  /** Private buffers recently copied through, and a 32-bit view of each (see wordsOf). */
  private readonly wordKeys: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(WORD_CACHE).fill(undefined);
  private readonly wordViews: (Int32Array | undefined)[] = new Array<Int32Array | undefined>(WORD_CACHE).fill(undefined);
  private wordNext = 0;
  /** Machine addresses fit a u32 (≤ 4 GiB of memory), so word indices are a shift. */
  private readonly u32Addrs: boolean;

  private constructor(sab: SharedArrayBuffer, pageSize: PageSize) {
    this.sab = sab;
    this.byteLength = sab.byteLength;
    this.pageSize = pageSize;
    this.pageShift = Math.log2(pageSize);
    this.frames = sab.byteLength / pageSize;
    this.u8 = new Uint8Array(sab);
    this.u16 = new Uint16Array(sab);
    this.i32 = new Int32Array(sab);
    this.dv = new DataView(sab);
    this.u32Addrs = sab.byteLength <= 0x1_0000_0000;
  }

  /** [create cfg] allocates a fresh, zeroed machine memory. */
  static create(cfg: MachineMemoryConfig = DEFAULT_MEMORY): MachineMemory {
    if (!PAGE_SIZES.includes(cfg.pageSize)) {
      throw new RangeError(`page size must be one of ${PAGE_SIZES.join(', ')}, got ${cfg.pageSize}`);
    }
    if (!Number.isSafeInteger(cfg.memBytes) || cfg.memBytes <= 0 || cfg.memBytes % cfg.pageSize !== 0) {
      throw new RangeError(`machine memory must be a positive multiple of the page size (${cfg.pageSize}), got ${cfg.memBytes}`);
    }
    if (cfg.memBytes < 16 * cfg.pageSize * 64) {
      throw new RangeError(`machine memory of ${cfg.memBytes} bytes is too small (at least ${16 * cfg.pageSize * 64})`);
    }
    if (cfg.memBytes > MAX_MEM_BYTES) {
      throw new RangeError(`machine memory of ${cfg.memBytes} bytes exceeds the ${MAX_MEM_BYTES}-byte limit`);
    }
    return new MachineMemory(new SharedArrayBuffer(cfg.memBytes), cfg.pageSize);
  }

  /** [attach sab pageSize] is a view of memory created elsewhere (in another worker). */
  static attach(sab: SharedArrayBuffer, pageSize: PageSize): MachineMemory {
    if (sab.byteLength % pageSize !== 0) throw new RangeError('machine memory is not a whole number of frames');
    return new MachineMemory(sab, pageSize);
  }

  /** [frameAddr mfn] is the machine address of frame mfn's first byte. */
  frameAddr(mfn: Mfn): MachineAddr {
    if (mfn >= this.frames) throw new RangeError(`mfn ${mfn} is beyond machine memory (${this.frames} frames)`);
    return (mfn * this.pageSize) as MachineAddr;
  }

  /** [frameOf addr] is the machine frame holding addr. */
  frameOf(addr: MachineAddr): Mfn {
    return Math.floor(addr / this.pageSize) as Mfn;
  }

  private check(addr: number, len: number): void {
    // SAFETY: every access below is bounds-checked here; typed arrays would
    // silently drop out-of-range writes, which would hide bugs.
    if (!(addr >= 0 && len >= 0 && addr + len <= this.byteLength)) {
      throw new RangeError(`machine access ${addr.toString(16)}+${len} is outside memory (${this.byteLength} bytes)`);
    }
  }
  private check32(addr: number): number {
    this.check(addr, 4);
    if ((addr & 3) !== 0) throw new RangeError(`atomic 32-bit access at ${addr.toString(16)} is not 4-byte aligned`);
    return this.wordIndex(addr);
  }
  private check16(addr: number): number {
    this.check(addr, 2);
    if ((addr & 1) !== 0) throw new RangeError(`atomic 16-bit access at ${addr.toString(16)} is not 2-byte aligned`);
    return this.u32Addrs ? addr >>> 1 : addr / 2;
  }

  // ---- plain little-endian loads and stores (payload and private fields) ----
  getU8(a: MachineAddr): number { this.check(a, 1); return this.u8[a] as number; }
  setU8(a: MachineAddr, v: number): void { this.check(a, 1); this.u8[a] = v; }
  getU16(a: MachineAddr): number { this.check(a, 2); return this.dv.getUint16(a, true); }
  setU16(a: MachineAddr, v: number): void { this.check(a, 2); this.dv.setUint16(a, v, true); }
  getI16(a: MachineAddr): number { this.check(a, 2); return this.dv.getInt16(a, true); }
  setI16(a: MachineAddr, v: number): void { this.check(a, 2); this.dv.setInt16(a, v, true); }
  getU32(a: MachineAddr): number { this.check(a, 4); return this.dv.getUint32(a, true); }
  setU32(a: MachineAddr, v: number): void { this.check(a, 4); this.dv.setUint32(a, v, true); }
  getI32(a: MachineAddr): number { this.check(a, 4); return this.dv.getInt32(a, true); }
  setI32(a: MachineAddr, v: number): void { this.check(a, 4); this.dv.setInt32(a, v, true); }
  getU64(a: MachineAddr): bigint { this.check(a, 8); return this.dv.getBigUint64(a, true); }
  setU64(a: MachineAddr, v: bigint): void { this.check(a, 8); this.dv.setBigUint64(a, v, true); }

  // ---- atomics (indices, flags, doorbells) ----
  /** Acquire load: sees every write made before the matching atomicStore32. */
  atomicLoad32(a: MachineAddr): number {
    // The in-range, aligned case inline (ring indices are loaded per batch and polled while spinning).
    if (this.u32Addrs && a >= 0 && (a & 3) === 0 && a + 4 <= this.byteLength) return Atomics.load(this.i32, a >>> 2);
    return Atomics.load(this.i32, this.check32(a));
  }
  /** Release store: every earlier write by this thread is visible to an acquirer of v. */
  atomicStore32(a: MachineAddr, v: number): void {
    if (this.u32Addrs && a >= 0 && (a & 3) === 0 && a + 4 <= this.byteLength) Atomics.store(this.i32, a >>> 2, v | 0);
    else Atomics.store(this.i32, this.check32(a), v | 0);
  }
  /** Full barrier; returns the previous value. */
  atomicAdd32(a: MachineAddr, v: number): number { return Atomics.add(this.i32, this.check32(a), v | 0); }
  atomicOr32(a: MachineAddr, v: number): number { return Atomics.or(this.i32, this.check32(a), v | 0); }
  atomicAnd32(a: MachineAddr, v: number): number { return Atomics.and(this.i32, this.check32(a), v | 0); }
  atomicExchange32(a: MachineAddr, v: number): number { return Atomics.exchange(this.i32, this.check32(a), v | 0); }
  /** Full barrier; returns the previous value (== expected on success). Values are signed int32. */
  atomicCmpxchg32(a: MachineAddr, expected: number, replacement: number): number {
    return Atomics.compareExchange(this.i32, this.check32(a), expected | 0, replacement | 0);
  }
  atomicLoad16(a: MachineAddr): number { return Atomics.load(this.u16, this.check16(a)); }
  atomicStore16(a: MachineAddr, v: number): void { Atomics.store(this.u16, this.check16(a), v & 0xffff); }
  atomicCmpxchg16(a: MachineAddr, expected: number, replacement: number): number {
    return Atomics.compareExchange(this.u16, this.check16(a), expected & 0xffff, replacement & 0xffff);
  }
  atomicOr16(a: MachineAddr, v: number): number { return Atomics.or(this.u16, this.check16(a), v & 0xffff); }
  atomicAnd16(a: MachineAddr, v: number): number { return Atomics.and(this.u16, this.check16(a), v & 0xffff); }

  /** Sleeps while the word at a equals expected (the caller re-checks its condition after). */
  wait32(a: MachineAddr, expected: number, timeoutMs: number): WaitResult {
    return Atomics.wait(this.i32, this.check32(a), expected | 0, timeoutMs);
  }
  /** Async variant for event-loop driven threads; keep a ref'd handle while awaiting. */
  waitAsync32(a: MachineAddr, expected: number, timeoutMs: number): Promise<WaitResult> | WaitResult {
    const r = Atomics.waitAsync(this.i32, this.check32(a), expected | 0, timeoutMs);
    return r.async ? r.value : r.value;
  }
  /** Wakes up to count waiters on the word at a; returns how many woke. */
  notify32(a: MachineAddr, count = Infinity): number {
    return Atomics.notify(this.i32, this.check32(a), count);
  }

  // ---- bulk copies (one memcpy each, or word moves for small aligned ones; never byte loops) ----
  copy(dst: MachineAddr, src: MachineAddr, len: number): void {
    this.check(dst, len); this.check(src, len);
    this.u8.copyWithin(dst, src, src + len);
  }
  copyIn(dst: MachineAddr, from: Uint8Array, fromOff = 0, len = from.length - fromOff): void {
    this.check(dst, len);
    if (!(fromOff >= 0 && len >= 0 && fromOff + len <= from.length)) throw new RangeError('copyIn source range is outside the buffer');
    if (len <= SMALL_COPY && ((dst | fromOff | len) & 3) === 0) {
      const w = this.wordsOf(from, fromOff, len);
      if (w !== null) {
        copyWords(this.i32, this.wordIndex(dst), w, fromOff >>> 2, len >>> 2);
        return;
      }
    }
    this.u8.set(len === from.length && fromOff === 0 ? from : from.subarray(fromOff, fromOff + len), dst);
  }
  copyOut(src: MachineAddr, into: Uint8Array, intoOff = 0, len = into.length - intoOff): void {
    this.check(src, len);
    if (!(intoOff >= 0 && len >= 0 && intoOff + len <= into.length)) throw new RangeError('copyOut target range is outside the buffer');
    if (len <= SMALL_COPY && ((src | intoOff | len) & 3) === 0) {
      const w = this.wordsOf(into, intoOff, len);
      if (w !== null) {
        copyWords(w, intoOff >>> 2, this.i32, this.wordIndex(src), len >>> 2);
        return;
      }
    }
    into.set(this.u8.subarray(src, src + len), intoOff);
  }

  /**
   * [copyOutWords src into intoWord words] copies `words` 32-bit words from
   * the 4-aligned machine address src into a private Int32Array (the rings'
   * slot buffers): the small-copy path, with no view to look up. `into` must
   * be private memory, never a view of machine memory (which only this class
   * holds): the words move one by one, so overlapping ranges would not copy
   * as memmove does.
   */
  copyOutWords(src: MachineAddr, into: Int32Array, intoWord: number, words: number): void {
    // One flat function (checks and loop inline): it sits under three layers
    // on the rings' data path, where the JIT's inlining budget runs out.
    // SAFETY: both sides bounds-checked (typed arrays drop out-of-range
    // element writes silently), src 4-aligned, words a whole count.
    if (!(src >= 0 && (src & 3) === 0 && words >= 0 && (words | 0) === words && src + words * 4 <= this.byteLength && intoWord >= 0 && intoWord + words <= into.length)) {
      this.wordCopyFault(src, into, intoWord, words);
    }
    const m = this.i32;
    const s = this.u32Addrs ? src >>> 2 : src / 4;
    let k = 0;
    for (; k + 4 <= words; k += 4) {
      into[intoWord + k] = m[s + k] as number;
      into[intoWord + k + 1] = m[s + k + 1] as number;
      into[intoWord + k + 2] = m[s + k + 2] as number;
      into[intoWord + k + 3] = m[s + k + 3] as number;
    }
    for (; k < words; k++) into[intoWord + k] = m[s + k] as number;
  }
  /** [copyInWords dst from fromWord words] copies words from a private Int32Array to the 4-aligned dst. */
  copyInWords(dst: MachineAddr, from: Int32Array, fromWord: number, words: number): void {
    if (!(dst >= 0 && (dst & 3) === 0 && words >= 0 && (words | 0) === words && dst + words * 4 <= this.byteLength && fromWord >= 0 && fromWord + words <= from.length)) {
      this.wordCopyFault(dst, from, fromWord, words);
    }
    const m = this.i32;
    const d = this.u32Addrs ? dst >>> 2 : dst / 4;
    let k = 0;
    for (; k + 4 <= words; k += 4) {
      m[d + k] = from[fromWord + k] as number;
      m[d + k + 1] = from[fromWord + k + 1] as number;
      m[d + k + 2] = from[fromWord + k + 2] as number;
      m[d + k + 3] = from[fromWord + k + 3] as number;
    }
    for (; k < words; k++) m[d + k] = from[fromWord + k] as number;
  }
  /** Throws the RangeError a bad word copy deserves (kept out of line). */
  private wordCopyFault(a: number, w: Int32Array, at: number, words: number): never {
    this.check(a, words * 4);
    if ((a & 3) !== 0) throw new RangeError(`word copy at ${a.toString(16)} is not 4-byte aligned`);
    throw new RangeError(`word copy of ${words} words at ${at} is outside the ${w.length}-word private buffer`);
  }

  /** The 32-bit word index of a 4-aligned, bounds-checked machine address. */
  private wordIndex(a: number): number {
    // An integer shift keeps the index a small integer for the JIT; beyond
    // 4 GiB a shift would wrap, so divide (exact: a is 4-aligned).
    return this.u32Addrs ? a >>> 2 : a / 4;
  }

  /**
   * [wordsOf bytes off len] is a cached 32-bit view of the private buffer
   * `bytes` (word i = bytes[4i .. 4i+3]) covering [off, off + len), or null
   * when there is none to be had: bytes not 4-aligned in its buffer, larger
   * than a page (not a slot buffer; never pinned by the cache), bytes over
   * machine memory itself (a word loop must not copy between
   * overlapping ranges; set() handles overlap), or the view no longer covers
   * the range because the buffer shrank or was detached. The cache is keyed by
   * the Uint8Array itself (its buffer and byteOffset never change): rings copy
   * every slot through the same one or two private buffers, so after the first
   * copy this is an identity compare.
   */
  private wordsOf(bytes: Uint8Array, off: number, len: number): Int32Array | null {
    const keys = this.wordKeys;
    let w: Int32Array | undefined;
    for (let i = 0; i < WORD_CACHE; i++) {
      if (keys[i] === undefined) break;
      if (keys[i] === bytes) {
        w = this.wordViews[i];
        break;
      }
    }
    if (w === undefined) {
      if ((bytes.byteOffset & 3) !== 0 || bytes.length > WORD_CACHE_MAX_BYTES || bytes.buffer === this.sab) return null;
      w = new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
      const slot = this.wordNext;
      this.wordNext = (slot + 1) % WORD_CACHE;
      keys[slot] = bytes;
      this.wordViews[slot] = w;
    }
    // SAFETY: a view whose buffer shrank or was detached reads as shorter (or
    // empty); typed arrays would then drop the copy silently, so re-check.
    return (off + len) / 4 <= w.length ? w : null;
  }
  fill(dst: MachineAddr, len: number, byte = 0): void {
    this.check(dst, len);
    this.u8.fill(byte, dst, dst + len);
  }
  /** [equal a b len] compares two machine ranges byte for byte. */
  equal(a: MachineAddr, b: MachineAddr, len: number): boolean {
    this.check(a, len); this.check(b, len);
    return Buffer.compare(Buffer.from(this.u8.buffer, a, len), Buffer.from(this.u8.buffer, b, len)) === 0;
  }
  /** [bytesEqual a bytes] compares a machine range with a private buffer. */
  bytesEqual(a: MachineAddr, bytes: Uint8Array): boolean {
    this.check(a, bytes.length);
    return Buffer.compare(Buffer.from(this.u8.buffer, a, bytes.length), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)) === 0;
  }

  addr(n: number): MachineAddr { return asMachineAddr(n); }
}
