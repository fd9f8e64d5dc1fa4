/**
 * Classic libpcap capture files (ECOSYSTEM.md §5), as tcpdump, tshark and
 * capinfos read them: a 24-byte global header, then per packet a 16-byte
 * record header and the frame (Ethernet without FCS).
 *
 * The writer writes little-endian (the magic tells a reader the byte order)
 * and takes timestamps from *simulated* time as bigint nanoseconds, so a
 * capture shows the simulation's clock, not the host's. The reader accepts
 * both byte orders and both precisions, and reports a file that ends inside
 * a record as 'truncated' with how many whole records came before it.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { err, ok, type Result } from '../result.ts';

/** Magic for microsecond timestamps. */
export const PCAP_MAGIC_USEC = 0xa1b2c3d4;
/** Magic for nanosecond timestamps. */
export const PCAP_MAGIC_NSEC = 0xa1b23c4d;
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;
/** LINKTYPE_ETHERNET: IEEE 802.3 frames without FCS. */
export const LINKTYPE_ETHERNET = 1;
/** Snapshot length we write unless told otherwise (what ECOSYSTEM.md §5's tried file used). */
export const PCAP_DEFAULT_SNAPLEN = 65535;
/** libpcap's MAXIMUM_SNAPLEN: a record claiming more than this is corrupt, not big. */
export const PCAP_MAX_RECORD = 262144;

/** Global (file) header. */
export const PcapFileHdr = {
  /** u32 magic: PCAP_MAGIC_USEC or PCAP_MAGIC_NSEC in the writer's byte order */
  magic: 0,
  /** u16 major version (2) */
  versionMajor: 4,
  /** u16 minor version (4) */
  versionMinor: 6,
  /** i32 GMT offset of the timestamps (always 0) */
  thiszone: 8,
  /** u32 timestamp accuracy (always 0) */
  sigfigs: 12,
  /** u32 max bytes kept per packet */
  snaplen: 16,
  /** u32 LINKTYPE_* of every record */
  network: 20,
  SIZE: 24,
} as const;

/** Per-packet record header. */
export const PcapRecHdr = {
  /** u32 seconds since the epoch */
  tsSec: 0,
  /** u32 microseconds (or nanoseconds with the NSEC magic) within the second */
  tsFrac: 4,
  /** u32 bytes of frame stored after this header */
  inclLen: 8,
  /** u32 bytes the frame had on the wire (> inclLen when cut at snaplen) */
  origLen: 12,
  SIZE: 16,
} as const;

export type PcapPrecision = 'us' | 'ns';

// ---------------------------------------------------------------- sinks

/** [PcapSink] is where a writer's bytes go, in order. */
export interface PcapSink {
  write(bytes: Uint8Array): void;
  /** Flushes and releases; resolves when the bytes are handed to the OS (or kept in memory). */
  end(): Promise<void>;
}

/** [bufferSink ()] keeps the capture in memory; bytes() is the file so far. */
export function bufferSink(): PcapSink & { bytes(): Buffer } {
  const chunks: Buffer[] = [];
  return {
    write(b) { chunks.push(Buffer.from(b)); },
    end() { return Promise.resolve(); },
    bytes() { return Buffer.concat(chunks); },
  };
}

/**
 * [fileSink path] writes to a file with synchronous writes, batched 64 KiB at
 * a time (a capture is written from the thread that sees the packets; this
 * keeps record order trivially and costs one syscall per batch).
 */
export function fileSink(path: string): PcapSink {
  const fd = openSync(path, 'w', 0o644);
  const BATCH = 64 * 1024;
  let buf = Buffer.alloc(BATCH);
  let used = 0;
  let open = true;
  const drain = (): void => {
    let done = 0;
    while (done < used) done += writeSync(fd, buf, done, used - done);
    used = 0;
  };
  return {
    write(b) {
      if (!open) throw new RangeError(`pcap file ${path} is closed`);
      if (used + b.length > buf.length) {
        drain();
        if (b.length > buf.length) buf = Buffer.alloc(b.length);
      }
      buf.set(b, used);
      used += b.length;
    },
    end() {
      if (open) {
        open = false;
        drain();
        closeSync(fd);
      }
      return Promise.resolve();
    },
  };
}

/** [streamSink w] writes to a Node stream (e.g. fs.createWriteStream); end() resolves on 'finish'. */
export function streamSink(w: Writable): PcapSink {
  return {
    write(b) { w.write(Buffer.from(b)); },
    end() {
      return new Promise((resolve, reject) => {
        w.once('error', reject);
        w.end(() => resolve());
      });
    },
  };
}

// ---------------------------------------------------------------- writer

export interface PcapWriterOptions {
  /** 'us' (magic a1b2c3d4, what every tool reads) or 'ns' (a1b23c4d). Default 'us'. */
  readonly precision?: PcapPrecision;
  readonly snaplen?: number;
  readonly linktype?: number;
}

export type PcapWriteError =
  /** Before the epoch, or past 2106 (u32 seconds). */
  | { readonly kind: 'bad-timestamp'; readonly tsNs: bigint }
  /** origLen smaller than the bytes given. */
  | { readonly kind: 'bad-length'; readonly frameLen: number; readonly origLen: number }
  | { readonly kind: 'closed' };

const NS_PER_S = 1_000_000_000n;
const U32_MAX = 0xffff_ffffn;

/**
 * [PcapWriter sink opts] writes the global header at once, then one record
 * per writePacket. Frames longer than snaplen are cut, keeping their
 * original length in orig_len, as a capturing tcpdump would.
 */
export class PcapWriter {
  readonly precision: PcapPrecision;
  readonly snaplen: number;
  private closed = false;
  private count = 0;

  constructor(private readonly sink: PcapSink, opts: PcapWriterOptions = {}) {
    this.precision = opts.precision ?? 'us';
    this.snaplen = opts.snaplen ?? PCAP_DEFAULT_SNAPLEN;
    if (!Number.isInteger(this.snaplen) || this.snaplen <= 0 || this.snaplen > PCAP_MAX_RECORD) {
      throw new RangeError(`snaplen must be in 1..${PCAP_MAX_RECORD}, got ${this.snaplen}`);
    }
    const h = Buffer.alloc(PcapFileHdr.SIZE);
    h.writeUInt32LE(this.precision === 'ns' ? PCAP_MAGIC_NSEC : PCAP_MAGIC_USEC, PcapFileHdr.magic);
    h.writeUInt16LE(PCAP_VERSION_MAJOR, PcapFileHdr.versionMajor);
    h.writeUInt16LE(PCAP_VERSION_MINOR, PcapFileHdr.versionMinor);
    h.writeInt32LE(0, PcapFileHdr.thiszone);
    h.writeUInt32LE(0, PcapFileHdr.sigfigs);
    h.writeUInt32LE(this.snaplen, PcapFileHdr.snaplen);
    h.writeUInt32LE(opts.linktype ?? LINKTYPE_ETHERNET, PcapFileHdr.network);
    this.sink.write(h);
  }

  /** [packets] is the number of records written. */
  get packets(): number {
    return this.count;
  }

  /**
   * [writePacket tsNs frame origLen] appends one record stamped tsNs
   * (simulated ns since the epoch; µs files truncate to the microsecond).
   */
  writePacket(tsNs: bigint, frame: Uint8Array, origLen = frame.length): Result<void, PcapWriteError> {
    if (this.closed) return err({ kind: 'closed' });
    if (tsNs < 0n || tsNs / NS_PER_S > U32_MAX) return err({ kind: 'bad-timestamp', tsNs });
    if (!Number.isInteger(origLen) || origLen < frame.length || origLen > 0xffff_ffff) {
      return err({ kind: 'bad-length', frameLen: frame.length, origLen });
    }
    const sec = Number(tsNs / NS_PER_S);
    const ns = Number(tsNs % NS_PER_S);
    const incl = Math.min(frame.length, this.snaplen);
    const rec = Buffer.alloc(PcapRecHdr.SIZE + incl);
    rec.writeUInt32LE(sec, PcapRecHdr.tsSec);
    rec.writeUInt32LE(this.precision === 'ns' ? ns : Math.floor(ns / 1000), PcapRecHdr.tsFrac);
    rec.writeUInt32LE(incl, PcapRecHdr.inclLen);
    rec.writeUInt32LE(origLen, PcapRecHdr.origLen);
    rec.set(frame.subarray(0, incl), PcapRecHdr.SIZE);
    this.sink.write(rec);
    this.count++;
    return ok(undefined);
  }

  /** [close ()] ends the sink; later writes return 'closed'. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return this.sink.end();
  }
}

export interface PcapPacket {
  readonly tsNs: bigint;
  readonly frame: Uint8Array;
  readonly origLen?: number;
}

/** [encodePcap packets opts] is a whole capture file in memory. */
export function encodePcap(packets: Iterable<PcapPacket>, opts: PcapWriterOptions = {}): Result<Buffer, PcapWriteError> {
  const sink = bufferSink();
  const w = new PcapWriter(sink, opts);
  for (const p of packets) {
    const r = w.writePacket(p.tsNs, p.frame, p.origLen);
    if (!r.ok) return r;
  }
  return ok(sink.bytes());
}

// ---------------------------------------------------------------- reader

export interface PcapHeader {
  readonly byteOrder: 'le' | 'be';
  readonly precision: PcapPrecision;
  readonly versionMajor: number;
  readonly versionMinor: number;
  readonly thiszone: number;
  readonly sigfigs: number;
  readonly snaplen: number;
  readonly linktype: number;
}

export interface PcapRecord {
  /** 0-based position in the file (tshark's frame.number − 1). */
  readonly index: number;
  /** Byte offset of the record header in the file. */
  readonly offset: number;
  readonly tsNs: bigint;
  readonly inclLen: number;
  readonly origLen: number;
  /** The stored frame (a view into the file bytes). */
  readonly data: Uint8Array;
}

export type PcapReadError =
  | { readonly kind: 'short-header'; readonly len: number; readonly need: number }
  | { readonly kind: 'bad-magic'; readonly magic: number }
  /** The file ends inside record `index`; `recordsRead` whole records precede it. */
  | {
    readonly kind: 'truncated'; readonly index: number; readonly offset: number;
    readonly part: 'record-header' | 'record-data'; readonly need: number; readonly have: number; readonly recordsRead: number;
  }
  /** A record claiming more bytes than any capture holds: the file is corrupt. */
  | { readonly kind: 'bad-record'; readonly index: number; readonly offset: number; readonly inclLen: number; readonly limit: number };

/**
 * [PcapReader.open bytes] checks the global header; next() then yields
 * records one at a time (null at a clean end of file), so a caller can keep
 * the records before a truncation.
 */
export class PcapReader {
  private pos: number = PcapFileHdr.SIZE;
  private index = 0;
  private failed: PcapReadError | null = null;

  private constructor(private readonly buf: Buffer, readonly header: PcapHeader) {}

  static open(bytes: Uint8Array): Result<PcapReader, PcapReadError> {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (buf.length < PcapFileHdr.SIZE) return err({ kind: 'short-header', len: buf.length, need: PcapFileHdr.SIZE });
    const le = buf.readUInt32LE(PcapFileHdr.magic);
    const be = buf.readUInt32BE(PcapFileHdr.magic);
    let byteOrder: 'le' | 'be';
    let magic: number;
    if (le === PCAP_MAGIC_USEC || le === PCAP_MAGIC_NSEC) { byteOrder = 'le'; magic = le; }
    else if (be === PCAP_MAGIC_USEC || be === PCAP_MAGIC_NSEC) { byteOrder = 'be'; magic = be; }
    else return err({ kind: 'bad-magic', magic: le });
    const u16 = (o: number): number => (byteOrder === 'le' ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
    const u32 = (o: number): number => (byteOrder === 'le' ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
    const i32 = (o: number): number => (byteOrder === 'le' ? buf.readInt32LE(o) : buf.readInt32BE(o));
    return ok(new PcapReader(buf, {
      byteOrder,
      precision: magic === PCAP_MAGIC_NSEC ? 'ns' : 'us',
      versionMajor: u16(PcapFileHdr.versionMajor),
      versionMinor: u16(PcapFileHdr.versionMinor),
      thiszone: i32(PcapFileHdr.thiszone),
      sigfigs: u32(PcapFileHdr.sigfigs),
      snaplen: u32(PcapFileHdr.snaplen),
      linktype: u32(PcapFileHdr.network),
    }));
  }

  /** [next ()] is the next record, null at the end, or the error that stops the file (repeated on later calls). */
  next(): Result<PcapRecord | null, PcapReadError> {
    if (this.failed !== null) return err(this.failed);
    const buf = this.buf;
    const at = this.pos;
    if (at === buf.length) return ok(null);
    const fail = (e: PcapReadError): Result<never, PcapReadError> => {
      this.failed = e;
      return err(e);
    };
    if (at + PcapRecHdr.SIZE > buf.length) {
      return fail({ kind: 'truncated', index: this.index, offset: at, part: 'record-header', need: PcapRecHdr.SIZE, have: buf.length - at, recordsRead: this.index });
    }
    const le = this.header.byteOrder === 'le';
    const u32 = (o: number): number => (le ? buf.readUInt32LE(at + o) : buf.readUInt32BE(at + o));
    const inclLen = u32(PcapRecHdr.inclLen);
    if (inclLen > PCAP_MAX_RECORD) {
      return fail({ kind: 'bad-record', index: this.index, offset: at, inclLen, limit: PCAP_MAX_RECORD });
    }
    const dataAt = at + PcapRecHdr.SIZE;
    if (dataAt + inclLen > buf.length) {
      return fail({ kind: 'truncated', index: this.index, offset: at, part: 'record-data', need: inclLen, have: buf.length - dataAt, recordsRead: this.index });
    }
    const frac = BigInt(u32(PcapRecHdr.tsFrac));
    const rec: PcapRecord = {
      index: this.index,
      offset: at,
      tsNs: BigInt(u32(PcapRecHdr.tsSec)) * NS_PER_S + (this.header.precision === 'ns' ? frac : frac * 1000n),
      inclLen,
      origLen: u32(PcapRecHdr.origLen),
      data: buf.subarray(dataAt, dataAt + inclLen),
    };
    this.pos = dataAt + inclLen;
    this.index++;
    return ok(rec);
  }
}

export interface PcapCapture {
  readonly header: PcapHeader;
  readonly records: readonly PcapRecord[];
}

/** [readPcap bytes] is the whole capture, or the first thing wrong with it. */
export function readPcap(bytes: Uint8Array): Result<PcapCapture, PcapReadError> {
  const r = PcapReader.open(bytes);
  if (!r.ok) return r;
  const records: PcapRecord[] = [];
  for (;;) {
    const n = r.value.next();
    if (!n.ok) return n;
    if (n.value === null) return ok({ header: r.value.header, records });
    records.push(n.value);
  }
}

/** [describePcapError e] is a one-line message in the words tshark users know. */
export function describePcapError(e: PcapReadError): string {
  switch (e.kind) {
    case 'short-header':
      return `not a pcap file: ${e.len} bytes, shorter than the ${e.need}-byte global header`;
    case 'bad-magic':
      return `not a classic pcap file: magic 0x${e.magic.toString(16).padStart(8, '0')} (want a1b2c3d4 or a1b23c4d)`;
    case 'truncated':
      return `the capture appears to have been cut short in the middle of a packet: record ${e.index + 1} at byte ${e.offset} ` +
        `needs ${e.need} bytes of ${e.part === 'record-header' ? 'record header' : 'frame'}, only ${e.have} remain (${e.recordsRead} whole records before it)`;
    case 'bad-record':
      return `corrupt capture: record ${e.index + 1} at byte ${e.offset} claims ${e.inclLen} bytes (more than ${e.limit})`;
  }
}

export interface PcapSummary {
  readonly packets: number;
  /** Sum of incl_len. */
  readonly bytesCaptured: number;
  /** Sum of orig_len. */
  readonly bytesOnWire: number;
  /** Records stored shorter than they were on the wire. */
  readonly cutAtSnaplen: number;
  readonly firstTsNs: bigint | null;
  readonly lastTsNs: bigint | null;
  /** capinfos' "Strict time order": every timestamp ≥ the one before. */
  readonly inTimeOrder: boolean;
  /** Frames per EtherType (Ethernet captures; frames shorter than 14 bytes count under -1). */
  readonly byEthertype: ReadonlyMap<number, number>;
}

/** [summarizePcap c] is what `xensim` prints about a capture (cf. capinfos). */
export function summarizePcap(c: PcapCapture): PcapSummary {
  let bytesCaptured = 0;
  let bytesOnWire = 0;
  let cutAtSnaplen = 0;
  let inTimeOrder = true;
  let prev: bigint | null = null;
  const byEthertype = new Map<number, number>();
  for (const r of c.records) {
    bytesCaptured += r.inclLen;
    bytesOnWire += r.origLen;
    if (r.inclLen < r.origLen) cutAtSnaplen++;
    if (prev !== null && r.tsNs < prev) inTimeOrder = false;
    prev = r.tsNs;
    if (c.header.linktype === LINKTYPE_ETHERNET) {
      const t = r.data.length >= 14 ? ((r.data[12] as number) << 8) | (r.data[13] as number) : -1;
      byEthertype.set(t, (byEthertype.get(t) ?? 0) + 1);
    }
  }
  const first = c.records[0];
  const last = c.records[c.records.length - 1];
  return {
    packets: c.records.length,
    bytesCaptured,
    bytesOnWire,
    cutAtSnaplen,
    firstTsNs: first === undefined ? null : first.tsNs,
    lastTsNs: last === undefined ? null : last.tsNs,
    inTimeOrder,
    byEthertype,
  };
}
