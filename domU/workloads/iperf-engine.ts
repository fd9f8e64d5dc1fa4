/**
 * An iperf3-like traffic engine over NetDevices: a client that sends `parallel`
 * streams to a server, as TCP-like reliable streams or UDP-like paced datagrams,
 * in real Ethernet/IPv4/TCP|UDP frames (frames.ts).
 *
 * TCP-like streams: three-way handshake (SYN with MSS and window-scale options),
 * 32-bit sequence numbers over a byte stream, cumulative ACKs (every second segment,
 * at once when out of order, and at the end of each receive batch), a fixed receive
 * window, NewReno congestion control (slow start, limited transmit, fast retransmit
 * after three duplicate ACKs with partial-ACK recovery, RTO with RFC 6298 estimation
 * and back-off, go-back-N on timeout; no SACK), FIN to end. The receiver buffers out-of-order
 * segments and delivers bytes strictly in order; it checks every delivered byte
 * against the sender's deterministic pattern, so loss, reordering or corruption that
 * got through shows up as `corruptBytes`, not as silently wrong totals.
 *
 * UDP-like streams: datagrams of `length` bytes carrying iperf3's header (sec, usec,
 * 64-bit packet count), paced at `bitrate` per stream; the server counts loss,
 * reordering and RFC 1889 jitter as iperf3 does. Three end markers close a stream.
 *
 * Times come from the injected WorkloadClock; client and server must share its
 * origin (true for process.hrtime across threads of one process). One endpoint per
 * NetDevice (it installs the device's receive handler). Not done: reverse (-R) and
 * bidirectional modes (run a client on the other device instead), ARP (peers' MACs
 * are configured; the server learns the client's from its frames).
 */
import { err, ok, type Result } from '../../shared/result.ts';
import { diffCounters, type DeviceCounters, type WorkloadClock } from './block-device.ts';
import {
  ETH,
  FrameInfo,
  IPPROTO_TCP,
  IPPROTO_UDP,
  TCP_ACK,
  TCP_FIN,
  TCP_PAYLOAD_OFFSET,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  UDP_PAYLOAD_OFFSET,
  formatIpv4,
  parseFrameInto,
  parseIpv4,
  parseMac,
  writeTcpFrame,
  writeUdpFrame,
  type FlowAddr,
  type FrameError,
  type TcpSegmentFields,
} from './frames.ts';
import { CHECKSUM_NONE, CHECKSUM_PARTIAL, CHECKSUM_UNNECESSARY, type ChecksumState, type NetDevice } from './net-device.ts';

// ---------------------------------------------------------------------------
// Test specification (iperf3 long option names)
// ---------------------------------------------------------------------------

/** [IperfSpec] is an iperf3 client command line; names follow iperf3's long options. */
export interface IperfSpec {
  /** -u selects 'udp'; default 'tcp'. */
  readonly protocol?: 'tcp' | 'udp';
  /** -t seconds to send (default 10 when neither bytes nor blockcount is given). */
  readonly time?: number;
  /** -n bytes to send in total (all streams). */
  readonly bytes?: number;
  /** -k blocks (of `length`) to send in total. */
  readonly blockcount?: number;
  /** -l bytes per write (TCP, default 128 KiB) or per datagram (UDP, default mtu − 28 − … = 1460 with mtu 1500). */
  readonly length?: number;
  /** -P parallel streams (default 1). */
  readonly parallel?: number;
  /** -i seconds between interval reports (default 1; 0 = none). */
  readonly interval?: number;
  /** -O seconds at the start not counted (default 0). */
  readonly omit?: number;
  /** -b bits/s per stream (UDP default 1 Mbit/s, TCP default 0 = unlimited). */
  readonly bitrate?: number;
  /** -w receive window in bytes (TCP, default 256 KiB). */
  readonly window?: number;
  /** -p server port (default 5201). */
  readonly port?: number;
}

export type IperfSpecError =
  | { readonly kind: 'bad-addr'; readonly what: string; readonly text: string }
  | { readonly kind: 'bad-option'; readonly option: keyof IperfSpec; readonly value: number }
  | { readonly kind: 'datagram-too-large'; readonly length: number; readonly max: number };

/** The spec with every default applied (what the test actually did). */
export interface ResolvedIperfSpec {
  readonly protocol: 'tcp' | 'udp';
  readonly time: number;
  readonly bytes: number;
  readonly blockcount: number;
  readonly length: number;
  readonly parallel: number;
  readonly interval: number;
  readonly omit: number;
  readonly bitrate: number;
  readonly window: number;
  readonly port: number;
}

const IPV4_TCP_HEADERS = 40;
const IPV4_UDP_HEADERS = 28;
/** iperf3's UDP header in each datagram: sec u32, usec u32, pcount u64 (big-endian, `--udp-counters-64bit`). */
export const IPERF_UDP_HDR = {
  /** u32 [TX] send time, seconds */
  SEC: 0,
  /** u32 [TX] send time, microseconds */
  USEC: 4,
  /** u64 [TX] packet count from 1; top bit set marks an end marker (ours, not iperf3's) */
  PCOUNT: 8,
  SIZE: 16,
} as const;

export function resolveIperfSpec(spec: IperfSpec, mtu: number): Result<ResolvedIperfSpec, IperfSpecError> {
  const protocol = spec.protocol ?? 'tcp';
  const mss = mtu - IPV4_TCP_HEADERS;
  const length = spec.length ?? (protocol === 'tcp' ? 128 * 1024 : mss);
  const maxDatagram = mtu - IPV4_UDP_HEADERS;
  const r: ResolvedIperfSpec = {
    protocol,
    time: spec.time ?? (spec.bytes === undefined && spec.blockcount === undefined ? 10 : 0),
    bytes: spec.bytes ?? 0,
    blockcount: spec.blockcount ?? 0,
    length,
    parallel: spec.parallel ?? 1,
    interval: spec.interval ?? 1,
    omit: spec.omit ?? 0,
    bitrate: spec.bitrate ?? (protocol === 'udp' ? 1_000_000 : 0),
    window: spec.window ?? 256 * 1024,
    port: spec.port ?? 5201,
  };
  for (const option of ['time', 'bytes', 'blockcount', 'interval', 'omit', 'bitrate'] as const) {
    const v = r[option];
    if (!(Number.isFinite(v) && v >= 0)) return err({ kind: 'bad-option', option, value: v });
  }
  if (!Number.isSafeInteger(r.parallel) || r.parallel < 1 || r.parallel > 128) return err({ kind: 'bad-option', option: 'parallel', value: r.parallel });
  if (!Number.isSafeInteger(r.length) || r.length < (protocol === 'udp' ? IPERF_UDP_HDR.SIZE : 1)) return err({ kind: 'bad-option', option: 'length', value: r.length });
  if (protocol === 'udp' && r.length > maxDatagram) return err({ kind: 'datagram-too-large', length: r.length, max: maxDatagram });
  if (!Number.isSafeInteger(r.window) || r.window < 2 * mss || r.window > 0xffff << 7) return err({ kind: 'bad-option', option: 'window', value: r.window });
  if (!Number.isSafeInteger(r.port) || r.port < 1 || r.port > 65535) return err({ kind: 'bad-option', option: 'port', value: r.port });
  return ok(r);
}

// ---------------------------------------------------------------------------
// The payload pattern (both ends compute it; nothing is buffered for retransmission)
// ---------------------------------------------------------------------------

/**
 * The pattern of stream `key` repeats every PATTERN_PERIOD bytes, a prime: a segment
 * (a multiple of 4 bytes, at most 64 KiB) delivered at the wrong offset matches only
 * if it was displaced by a multiple of 65521 × its length, far beyond any window.
 * Each stream's period is generated once, with 64 KiB of wrap-around appended, so any
 * slice is one contiguous copy (fill) or one native compare (check).
 */
const PATTERN_PERIOD = 65521;
const PATTERN_SLICE_MAX = 0x1_0000;
const patternTables = new Map<number, Uint8Array>();

function patternTable(key: number): Uint8Array {
  let t = patternTables.get(key);
  if (t !== undefined) return t;
  t = new Uint8Array(PATTERN_PERIOD + PATTERN_SLICE_MAX);
  let x = Math.imul(key ^ 0x27d4eb2f, 0x9e3779b1) | 1;
  for (let i = 0; i < PATTERN_PERIOD; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    t[i] = x >>> 24;
  }
  t.copyWithin(PATTERN_PERIOD, 0, PATTERN_SLICE_MAX);
  if (patternTables.size > 4096) patternTables.clear(); // bound the cache
  patternTables.set(key, t);
  return t;
}

/** [fillPattern buf at key off len] writes bytes [off, off+len) of stream `key`'s pattern at buf[at]. */
export function fillPattern(buf: Uint8Array, at: number, key: number, off: number, len: number): void {
  const t = patternTable(key);
  for (let done = 0; done < len; ) {
    const n = Math.min(len - done, PATTERN_SLICE_MAX);
    const start = (off + done) % PATTERN_PERIOD;
    buf.set(t.subarray(start, start + n), at + done);
    done += n;
  }
}

/** [patternMismatches buf at key off len] counts bytes that differ from the pattern. */
export function patternMismatches(buf: Uint8Array, at: number, key: number, off: number, len: number): number {
  const t = patternTable(key);
  let bad = 0;
  for (let done = 0; done < len; ) {
    const n = Math.min(len - done, PATTERN_SLICE_MAX);
    const start = (off + done) % PATTERN_PERIOD;
    // One native comparison; count bytes only when something differs.
    if (Buffer.compare(buf.subarray(at + done, at + done + n), t.subarray(start, start + n)) !== 0) {
      for (let i = 0; i < n; i++) if (buf[at + done + i] !== t[start + i]) bad++;
    }
    done += n;
  }
  return bad;
}

/** UDP payload bytes after the header are pattern bytes at offset pcount·2^16 + i. */
const UDP_PATTERN_STRIDE = 0x1_0000;
const END_MARKER_BIT = 0x8000_0000;

// ---------------------------------------------------------------------------
// Shared plumbing
// ---------------------------------------------------------------------------

function seqAdd(isn: number, off: number): number {
  return (isn + (off % 0x1_0000_0000)) >>> 0;
}
/** [unwrap near isn seq] is the stream offset of seq (relative to isn) closest to `near`. */
function unwrap(near: number, isn: number, seq: number): number {
  return near + ((seq - seqAdd(isn, near)) | 0);
}

/** A reusable transmit buffer with cached exact-length views (send() takes whole arrays). */
class TxBuffer {
  readonly buf: Uint8Array;
  private readonly views: (Uint8Array | undefined)[] = [];
  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }
  view(len: number): Uint8Array {
    let v = this.views[len];
    if (v === undefined) this.views[len] = v = this.buf.subarray(0, len);
    return v;
  }
}

export interface EndpointCounters {
  framesSent: number;
  framesReceived: number;
  /** Frames sent but refused by a full device (retried later). */
  sendBusy: number;
  /** Received frames dropped as unusable, by reason. */
  rxErrors: Partial<Record<FrameError | 'not-for-us', number>>;
}
function newCounters(): EndpointCounters {
  return { framesSent: 0, framesReceived: 0, sendBusy: 0, rxErrors: {} };
}

/**
 * How far behind its pace a sender may fall and still send what it owes, in
 * one burst (ns). iperf3 paces by the average rate since the start; we bound
 * the catch-up, but beyond a guest vCPU's longest idle sleep (10 ms), so a
 * sender whose worker slept through its slots still meets the bitrate.
 */
const PACING_CATCH_UP_NS = 20e6;

const ST_SYN_SENT = 1;
/** Server side: our SYN|ACK is out, the client's ACK not yet in. */
const ST_SYN_RCVD = 1;
const ST_ESTABLISHED = 2;
const ST_FIN_SENT = 3;
const ST_DONE = 4;

const STEP_NOTHING = 0;
const STEP_SENT = 1;
const STEP_BLOCKED = 2;
const STEP_WAIT = 3;

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

export interface IperfClientOptions {
  readonly device: NetDevice;
  readonly clock: WorkloadClock;
  readonly localIp: string;
  readonly serverIp: string;
  readonly serverMac: string;
  readonly spec: IperfSpec;
  /** First local port (stream i uses basePort + i); default 40000. */
  readonly basePort?: number;
  /** Seed for initial sequence numbers (default 1). */
  readonly seed?: number;
  /** RTO bounds in ms (defaults 20 and 2000; initial 200). */
  readonly minRtoMs?: number;
  readonly maxRtoMs?: number;
  readonly initialRtoMs?: number;
  /** Give up when a stream makes no progress for this long (default 10000 ms). */
  readonly stallTimeoutMs?: number;
  /** Send this many frames at most before yielding to the event loop (default 256). */
  readonly burst?: number;
  readonly cpuUsage?: () => { readonly user: number; readonly system: number };
}

/** One stream's counters in one interval (times ns since the measurement origin). */
export interface IperfIntervalStream {
  readonly socket: number;
  readonly startNs: number;
  readonly endNs: number;
  readonly bytes: number;
  readonly packets: number;
  readonly retransmits: number;
  readonly sndCwnd: number;
  readonly sndWnd: number;
  readonly rttUs: number;
  readonly rttvarUs: number;
  readonly omitted: boolean;
}

export interface IperfClientStreamReport {
  readonly socket: number;
  readonly localPort: number;
  readonly remotePort: number;
  /** Payload bytes the application wrote after the omit period (as iperf3 counts them). */
  readonly bytes: number;
  readonly packets: number;
  readonly retransmits: number;
  readonly maxSndCwnd: number;
  readonly maxSndWnd: number;
  readonly minRttUs: number;
  readonly maxRttUs: number;
  readonly meanRttUs: number;
  /** When the stream's application wrote its last byte, ns since the measurement origin. */
  readonly endNs: number;
}

export interface IperfClientReport {
  readonly spec: ResolvedIperfSpec;
  readonly localIp: string;
  readonly serverIp: string;
  readonly mtu: number;
  readonly mss: number;
  /** Absolute clock times (ns): when we started connecting, when measurement began (after omit) and ended. */
  readonly connectStartNs: bigint;
  readonly originNs: bigint;
  readonly endNs: bigint;
  readonly streams: readonly IperfClientStreamReport[];
  readonly intervals: readonly (readonly IperfIntervalStream[])[];
  readonly error: string | undefined;
  readonly endpoint: EndpointCounters;
  /** Device counter deltas over the test. */
  readonly deviceCounters: Readonly<Record<string, number>>;
  readonly cpu: { readonly userUs: number; readonly systemUs: number; readonly wallUs: number };
}

class SendStream {
  state = 0;
  readonly flow: FlowAddr;
  readonly socket: number;
  readonly key: number;
  // TCP send state (offsets are stream byte offsets; sequence = isn + 1 + offset)
  isn = 0;
  irs = 0;
  sndUna = 0;
  sndNxt = 0;
  sndMax = 0;
  appEnd = 0;
  appDone = false;
  finSent = false;
  synDue = false;
  synRetransmitted = false;
  synSentAt = 0;
  ackDue = false;
  peerFin = false;
  rexmitDue = false;
  cwnd = 0;
  ssthresh = Infinity;
  peerWnd = 0;
  peerWscale = 0;
  mss = 0;
  dupAcks = 0;
  inRecovery = false;
  recover = 0;
  srtt = 0;
  rttvar = 0;
  rto = 0;
  rtoAt = Infinity;
  timerArmed = false;
  timedOffset = -1;
  timedAt = 0;
  lastProgressNs = 0;
  // pacing
  nextSendAt = 0;
  waitUntil = Infinity;
  // UDP
  pcount = 0;
  endMarkers = 0;
  // stats (cumulative; omit handled by snapshots)
  bytesNew = 0;
  packets = 0;
  retransmits = 0;
  maxCwnd = 0;
  maxSndWnd = 0;
  rttMin = Infinity;
  rttMax = 0;
  rttSum = 0;
  rttCount = 0;
  lastNewDataNs = 0;
  // snapshots
  ivBytes = 0;
  ivPackets = 0;
  ivRetransmits = 0;
  omitBytes = 0;
  omitPackets = 0;
  omitRetransmits = 0;
  readonly onTimer: () => void;
  constructor(flow: FlowAddr, socket: number, client: IperfClient) {
    this.flow = flow;
    this.socket = socket;
    this.key = flow.srcPort;
    this.onTimer = (): void => client.streamTimer(this);
  }
}

/** Shared send budget for -n / -k (Infinity when time-based). */
class Budget {
  constructor(
    public bytes: number,
    public blocks: number,
  ) {}
  /** [claim n] takes up to n bytes (one block); 0 when exhausted. */
  claim(n: number): number {
    if (this.bytes <= 0 || this.blocks <= 0) return 0;
    const got = Math.min(n, this.bytes);
    this.bytes -= got;
    this.blocks--;
    return got;
  }
}

export class IperfClient {
  readonly counters = newCounters();
  private readonly spec: ResolvedIperfSpec;
  private readonly streams: SendStream[] = [];
  private readonly info = new FrameInfo();
  private readonly tx: TxBuffer;
  /** The device offers checksum offload: send frames with a blank L4 checksum (Linux CHECKSUM_PARTIAL). */
  private readonly csumPartial: boolean;
  private readonly t0: bigint;
  private readonly mss: number;
  private readonly minRto: number;
  private readonly maxRto: number;
  private readonly initialRto: number;
  private readonly stallTimeout: number;
  private readonly burst: number;
  private readonly budget: Budget;
  private readonly localIp: number;
  private readonly serverIp: number;
  private readonly basePort: number;
  private ipId = 0;
  private originNs = Infinity;
  private measureStartNs = Infinity;
  private testEndNs = Infinity;
  private txBlocked = false;
  private pacingArmed = false;
  private finished = false;
  private error: string | undefined;
  private connected = 0;
  private doneStreams = 0;
  private resolveConnected: (() => void) | undefined;
  private resolveFinished: (() => void) | undefined;
  private readonly intervals: IperfIntervalStream[][] = [];
  private lastIntervalEnd = 0;
  private readonly onWritable = (): void => {
    this.txBlocked = false;
    this.pump();
  };
  private readonly onPacing = (): void => {
    this.pacingArmed = false;
    this.pump();
  };
  private readonly rx = (frame: Uint8Array, rxCsum?: ChecksumState): void => this.receive(frame, rxCsum === CHECKSUM_UNNECESSARY);

  private constructor(
    private readonly opts: IperfClientOptions,
    spec: ResolvedIperfSpec,
    localIp: number,
    serverIp: number,
    serverMac: Uint8Array,
    localMac: Uint8Array,
  ) {
    this.spec = spec;
    this.localIp = localIp;
    this.serverIp = serverIp;
    this.t0 = opts.clock.now();
    this.mss = opts.device.mtu - IPV4_TCP_HEADERS;
    this.minRto = (opts.minRtoMs ?? 20) * 1e6;
    this.maxRto = (opts.maxRtoMs ?? 2000) * 1e6;
    this.initialRto = (opts.initialRtoMs ?? 200) * 1e6;
    this.stallTimeout = (opts.stallTimeoutMs ?? 10_000) * 1e6;
    this.burst = opts.burst ?? 256;
    this.tx = new TxBuffer(ETH.SIZE + opts.device.mtu);
    this.csumPartial = opts.device.csumOffload === true;
    const blocksLimit = spec.blockcount > 0 ? spec.blockcount : Infinity;
    this.budget = new Budget(spec.bytes > 0 ? spec.bytes : Infinity, blocksLimit);
    const basePort = opts.basePort ?? 40000;
    this.basePort = basePort;
    let seed = (opts.seed ?? 1) >>> 0;
    for (let i = 0; i < spec.parallel; i++) {
      const flow: FlowAddr = { srcMac: localMac, dstMac: serverMac, srcIp: localIp, dstIp: serverIp, srcPort: basePort + i, dstPort: spec.port };
      const s = new SendStream(flow, 5 + i, this);
      seed = (Math.imul(seed ^ (seed >>> 16), 0x45d9f3b) + 0x9e3779b9) >>> 0;
      s.isn = seed;
      s.mss = this.mss;
      s.cwnd = 10 * this.mss;
      s.rto = this.initialRto;
      this.streams.push(s);
    }
  }

  /** [create opts] checks the addresses and spec and makes a client (not yet running). */
  static create(opts: IperfClientOptions): Result<IperfClient, IperfSpecError> {
    const spec = resolveIperfSpec(opts.spec, opts.device.mtu);
    if (!spec.ok) return spec;
    const lip = parseIpv4(opts.localIp);
    if (!lip.ok) return err({ kind: 'bad-addr', what: 'localIp', text: opts.localIp });
    const sip = parseIpv4(opts.serverIp);
    if (!sip.ok) return err({ kind: 'bad-addr', what: 'serverIp', text: opts.serverIp });
    const smac = parseMac(opts.serverMac);
    if (!smac.ok) return err({ kind: 'bad-addr', what: 'serverMac', text: opts.serverMac });
    const lmac = parseMac(opts.device.mac);
    if (!lmac.ok) return err({ kind: 'bad-addr', what: 'device.mac', text: opts.device.mac });
    return ok(new IperfClient(opts, spec.value, lip.value, sip.value, smac.value, lmac.value));
  }

  private now(): number {
    return Number(this.opts.clock.now() - this.t0);
  }

  /** [run ()] connects, sends for the configured time/bytes/blocks, closes, and reports. */
  async run(): Promise<IperfClientReport> {
    const dev = this.opts.device;
    const before = dev.counters();
    const cpu0 = this.opts.cpuUsage?.();
    dev.onReceive(this.rx);
    const tcp = this.spec.protocol === 'tcp';
    const connectedP = new Promise<void>((r) => (this.resolveConnected = r));
    const finishedP = new Promise<void>((r) => (this.resolveFinished = r));
    const start = this.now();
    for (const s of this.streams) {
      s.lastProgressNs = start;
      if (tcp) {
        s.state = ST_SYN_SENT;
        s.synDue = true;
        s.rtoAt = start + s.rto;
        this.armRto(s);
      } else {
        s.state = ST_ESTABLISHED;
        this.connected++;
      }
    }
    if (tcp) {
      this.pump();
      await Promise.race([connectedP, finishedP]);
    }
    if (!this.finished) {
      this.originNs = this.now();
      this.measureStartNs = this.originNs + this.spec.omit * 1e9;
      if (this.spec.time > 0) this.testEndNs = this.measureStartNs + this.spec.time * 1e9;
      for (const s of this.streams) {
        s.nextSendAt = this.originNs;
        s.lastProgressNs = this.originNs;
      }
      this.lastIntervalEnd = this.originNs;
      if (this.spec.interval > 0) void this.intervalLoop();
      else if (this.spec.omit > 0) void this.omitSnapshot();
      this.pump();
      await finishedP;
    }
    const endNs = this.now();
    this.recordInterval(Math.min(endNs, this.testEndNs), true);
    dev.onReceive(undefined);
    const cpu1 = this.opts.cpuUsage?.();
    const origin = Number.isFinite(this.measureStartNs) ? this.measureStartNs : endNs;
    const toOrigin = (t: number): bigint => this.t0 + BigInt(Math.round(t));
    return {
      spec: this.spec,
      localIp: formatIpv4(this.localIp),
      serverIp: formatIpv4(this.serverIp),
      mtu: dev.mtu,
      mss: this.mss,
      connectStartNs: toOrigin(start),
      originNs: toOrigin(origin),
      endNs: toOrigin(endNs),
      streams: this.streams.map((s) => ({
        socket: s.socket,
        localPort: s.flow.srcPort,
        remotePort: s.flow.dstPort,
        bytes: s.bytesNew - s.omitBytes,
        packets: s.packets - s.omitPackets,
        retransmits: s.retransmits - s.omitRetransmits,
        maxSndCwnd: s.maxCwnd,
        maxSndWnd: s.maxSndWnd,
        minRttUs: s.rttCount > 0 ? s.rttMin / 1000 : 0,
        maxRttUs: s.rttMax / 1000,
        meanRttUs: s.rttCount > 0 ? s.rttSum / s.rttCount / 1000 : 0,
        endNs: Math.max(0, (s.lastNewDataNs || endNs) - origin),
      })),
      intervals: this.intervals,
      error: this.error,
      endpoint: this.counters,
      deviceCounters: diffCounters(dev.counters(), before),
      cpu:
        cpu0 !== undefined && cpu1 !== undefined
          ? { userUs: cpu1.user - cpu0.user, systemUs: cpu1.system - cpu0.system, wallUs: (endNs - start) / 1000 }
          : { userUs: 0, systemUs: 0, wallUs: (endNs - start) / 1000 },
    };
  }

  private async intervalLoop(): Promise<void> {
    const step = this.spec.interval * 1e9;
    for (let k = 1; !this.finished; k++) {
      const at = this.originNs + k * step;
      await this.opts.clock.sleepUntil(this.t0 + BigInt(Math.ceil(at)));
      if (this.finished) return;
      this.recordInterval(at, false);
    }
  }

  /** Without interval reports, still forget what was sent during the omit period. */
  private async omitSnapshot(): Promise<void> {
    await this.opts.clock.sleepUntil(this.t0 + BigInt(Math.ceil(this.measureStartNs)));
    for (const s of this.streams) {
      s.omitBytes = s.bytesNew;
      s.omitPackets = s.packets;
      s.omitRetransmits = s.retransmits;
    }
  }

  /** Closes the interval ending at t (the last one only if it is not empty). */
  private recordInterval(t: number, last: boolean): void {
    if (!Number.isFinite(this.originNs) || this.spec.interval <= 0) return;
    const start = this.lastIntervalEnd;
    // The last, partial interval only if something was written in it (iperf3 reports
    // nothing after the test's end; a -n/-k test ends when its last byte is written).
    if (last && (t <= start || this.streams.every((s) => s.bytesNew === s.ivBytes))) return;
    const omitted = t <= this.measureStartNs;
    // After the omit period iperf3 restarts its clock: report times from the measurement start.
    const base = omitted ? this.originNs : this.measureStartNs;
    const row: IperfIntervalStream[] = this.streams.map((s) => {
      const r: IperfIntervalStream = {
        socket: s.socket,
        startNs: Math.max(0, start - base),
        endNs: t - base,
        bytes: s.bytesNew - s.ivBytes,
        packets: s.packets - s.ivPackets,
        retransmits: s.retransmits - s.ivRetransmits,
        sndCwnd: Math.round(s.cwnd),
        sndWnd: s.peerWnd,
        rttUs: Math.round(s.srtt / 1000),
        rttvarUs: Math.round(s.rttvar / 1000),
        omitted,
      };
      s.ivBytes = s.bytesNew;
      s.ivPackets = s.packets;
      s.ivRetransmits = s.retransmits;
      if (omitted) {
        s.omitBytes = s.bytesNew;
        s.omitPackets = s.packets;
        s.omitRetransmits = s.retransmits;
      }
      return r;
    });
    this.lastIntervalEnd = t;
    this.intervals.push(row);
  }

  private fail(message: string): void {
    if (this.error === undefined) this.error = message;
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.resolveConnected?.();
    this.resolveFinished?.();
  }

  // ---- sending ----

  /** Sends what every stream may send, round robin, until nothing can go or the device is full. */
  pump(): void {
    if (this.txBlocked || this.finished) return;
    let now = this.now();
    let sent = 0;
    let progress = true;
    while (progress) {
      progress = false;
      for (const s of this.streams) {
        const r = this.spec.protocol === 'tcp' ? this.tcpStep(s, now) : this.udpStep(s, now);
        if (r === STEP_SENT) {
          progress = true;
          if (++sent >= this.burst) {
            // Let receivers and timers run; continue in a later macrotask.
            this.armPacing(now);
            return;
          }
          if ((sent & 63) === 0) now = this.now();
        } else if (r === STEP_BLOCKED) {
          this.txBlocked = true;
          this.counters.sendBusy++;
          void this.opts.device.whenWritable().then(this.onWritable);
          return;
        }
        if (this.finished) return;
      }
    }
    let wait = Infinity;
    for (const s of this.streams) if (s.waitUntil < wait) wait = s.waitUntil;
    if (wait < Infinity) this.armPacing(wait);
  }

  private armPacing(at: number): void {
    if (this.pacingArmed) return;
    this.pacingArmed = true;
    void this.opts.clock.sleepUntil(this.t0 + BigInt(Math.ceil(at))).then(this.onPacing);
  }

  private send(len: number): boolean {
    if (!this.opts.device.send(this.tx.view(len), this.csumPartial ? CHECKSUM_PARTIAL : CHECKSUM_NONE)) return false;
    this.counters.framesSent++;
    return true;
  }

  private sendTcp(s: SendStream, f: TcpSegmentFields, payloadOff: number, payloadLen: number): boolean {
    if (payloadLen > 0) fillPattern(this.tx.buf, TCP_PAYLOAD_OFFSET, s.key, payloadOff, payloadLen);
    const len = writeTcpFrame(this.tx.buf, s.flow, f, payloadLen, this.ipId, this.csumPartial);
    if (!this.send(len)) return false;
    this.ipId = (this.ipId + 1) & 0xffff;
    return true;
  }

  private readonly seg: TcpSegmentFields = { seq: 0, ack: 0, flags: 0, window: 0, synOptions: undefined };

  /** Segment fields for stream s; we ack the server's SYN, and its FIN once seen. */
  private fields(s: SendStream, seq: number, flags: number): TcpSegmentFields {
    const f = this.seg;
    f.seq = seq;
    f.ack = flags & TCP_ACK ? seqAdd(s.irs, 1 + (s.peerFin ? 1 : 0)) : 0;
    f.flags = flags;
    // The client receives no data: it advertises a fixed window.
    f.window = 0xffff;
    f.synOptions = undefined;
    return f;
  }

  private tcpStep(s: SendStream, now: number): number {
    s.waitUntil = Infinity;
    if (s.state === ST_SYN_SENT) {
      if (!s.synDue) return STEP_NOTHING;
      const f = this.fields(s, s.isn, TCP_SYN);
      f.window = this.spec.window > 0xffff ? 0xffff : this.spec.window;
      f.synOptions = { mss: this.mss, wscale: 7 };
      if (!this.sendTcp(s, f, 0, 0)) return STEP_BLOCKED;
      s.synDue = false;
      s.synSentAt = now;
      return STEP_SENT;
    }
    if (s.state !== ST_ESTABLISHED && s.state !== ST_FIN_SENT) return STEP_NOTHING;
    if (s.ackDue) {
      // Our ACK of the server's SYN (or of its repeated SYN|ACK).
      const f = this.fields(s, seqAdd(s.isn, 1 + s.sndNxt + (s.finSent ? 1 : 0)), TCP_ACK);
      if (!this.sendTcp(s, f, 0, 0)) return STEP_BLOCKED;
      s.ackDue = false;
      return STEP_SENT;
    }
    if (s.rexmitDue) {
      const len = Math.min(s.mss, s.sndMax - s.sndUna);
      s.rexmitDue = false;
      if (len > 0) {
        const f = this.fields(s, seqAdd(s.isn, 1 + s.sndUna), TCP_ACK | TCP_PSH);
        if (!this.sendTcp(s, f, s.sndUna, len)) {
          s.rexmitDue = true;
          return STEP_BLOCKED;
        }
        s.retransmits++;
        s.timedOffset = -1; // Karn: no RTT sample across a retransmission
        return STEP_SENT;
      }
    }
    // The application writes one more block when less than one is queued.
    // Like iperf3, a stream's bytes are counted when the application writes them.
    if (!s.appDone && s.appEnd - s.sndNxt < this.spec.length) {
      const got = now >= this.testEndNs ? 0 : this.budget.claim(this.spec.length);
      if (got === 0) s.appDone = true;
      else {
        s.appEnd += got;
        s.bytesNew += got;
        s.lastNewDataNs = now;
      }
    }
    if (s.sndNxt < s.appEnd) {
      const len = Math.min(s.mss, s.appEnd - s.sndNxt);
      const flight = s.sndNxt - s.sndUna;
      // Limited transmit (RFC 3042): each of the first two duplicate ACKs lets one more
      // segment out, so a small window still collects the three for fast retransmit.
      const cwnd = s.cwnd + (!s.inRecovery && s.dupAcks < 3 ? s.dupAcks * s.mss : 0);
      if (Math.min(cwnd, s.peerWnd) - flight < len) return STEP_NOTHING; // window-limited: an ACK will pump
      if (this.spec.bitrate > 0 && now < s.nextSendAt && s.sndNxt >= s.sndMax) {
        s.waitUntil = s.nextSendAt;
        return STEP_WAIT;
      }
      const f = this.fields(s, seqAdd(s.isn, 1 + s.sndNxt), TCP_ACK | TCP_PSH);
      if (!this.sendTcp(s, f, s.sndNxt, len)) return STEP_BLOCKED;
      if (s.sndNxt < s.sndMax) s.retransmits++;
      else {
        s.packets++;
        if (this.spec.bitrate > 0) s.nextSendAt = Math.max(s.nextSendAt, now - PACING_CATCH_UP_NS) + (len * 8 * 1e9) / this.spec.bitrate;
        if (s.timedOffset < 0) {
          s.timedOffset = s.sndNxt + len;
          s.timedAt = now;
        }
      }
      s.sndNxt += len;
      if (s.sndNxt > s.sndMax) s.sndMax = s.sndNxt;
      if (s.rtoAt === Infinity) {
        s.rtoAt = now + s.rto;
        this.armRto(s);
      }
      return STEP_SENT;
    }
    if (s.appDone && s.sndUna === s.appEnd && !s.finSent) {
      const f = this.fields(s, seqAdd(s.isn, 1 + s.appEnd), TCP_ACK | TCP_FIN);
      if (!this.sendTcp(s, f, 0, 0)) return STEP_BLOCKED;
      s.finSent = true;
      s.state = ST_FIN_SENT;
      s.rtoAt = now + s.rto;
      this.armRto(s);
      return STEP_SENT;
    }
    return STEP_NOTHING;
  }

  private udpStep(s: SendStream, now: number): number {
    s.waitUntil = Infinity;
    if (s.state === ST_DONE) return STEP_NOTHING;
    const len = this.spec.length;
    const b = this.tx.buf;
    const p = UDP_PAYLOAD_OFFSET;
    if (!s.appDone) {
      if (this.spec.bitrate > 0 && now < s.nextSendAt) {
        s.waitUntil = s.nextSendAt;
        return STEP_WAIT;
      }
      const got = now >= this.testEndNs ? 0 : this.budget.claim(len);
      if (got === 0) s.appDone = true;
      else {
        const pc = s.pcount + 1;
        this.writeUdpHeader(b, p, now, pc, false);
        fillPattern(b, p + IPERF_UDP_HDR.SIZE, s.key, pc * UDP_PATTERN_STRIDE, got - IPERF_UDP_HDR.SIZE);
        if (!this.send(writeUdpFrame(b, s.flow, Math.max(got, IPERF_UDP_HDR.SIZE), this.ipId, this.csumPartial))) {
          this.budget.bytes += got;
          this.budget.blocks++;
          return STEP_BLOCKED;
        }
        this.ipId = (this.ipId + 1) & 0xffff;
        s.pcount = pc;
        s.bytesNew += got;
        s.packets++;
        s.lastNewDataNs = now;
        if (this.spec.bitrate > 0) s.nextSendAt = Math.max(s.nextSendAt, now - PACING_CATCH_UP_NS) + (got * 8 * 1e9) / this.spec.bitrate;
        return STEP_SENT;
      }
    }
    // Done sending: three end markers (any one reaching the server closes the stream there).
    this.writeUdpHeader(b, p, now, s.pcount, true);
    if (!this.send(writeUdpFrame(b, s.flow, IPERF_UDP_HDR.SIZE, this.ipId, this.csumPartial))) return STEP_BLOCKED;
    this.ipId = (this.ipId + 1) & 0xffff;
    if (++s.endMarkers >= 3) this.streamDone(s);
    return STEP_SENT;
  }

  private writeUdpHeader(b: Uint8Array, p: number, now: number, pcount: number, end: boolean): void {
    const abs = this.t0 + BigInt(Math.round(now));
    const sec = Number(abs / 1_000_000_000n);
    const usec = Number((abs % 1_000_000_000n) / 1000n);
    const put = (o: number, v: number): void => {
      b[o] = (v >>> 24) & 0xff;
      b[o + 1] = (v >>> 16) & 0xff;
      b[o + 2] = (v >>> 8) & 0xff;
      b[o + 3] = v & 0xff;
    };
    put(p + IPERF_UDP_HDR.SEC, sec >>> 0);
    put(p + IPERF_UDP_HDR.USEC, usec);
    put(p + IPERF_UDP_HDR.PCOUNT, ((Math.floor(pcount / 0x1_0000_0000) >>> 0) | (end ? END_MARKER_BIT : 0)) >>> 0);
    put(p + IPERF_UDP_HDR.PCOUNT + 4, pcount >>> 0);
  }

  private streamDone(s: SendStream): void {
    if (s.state === ST_DONE) return;
    s.state = ST_DONE;
    s.rtoAt = Infinity;
    if (++this.doneStreams === this.streams.length) this.finish();
  }

  // ---- timers ----

  private armRto(s: SendStream): void {
    if (s.timerArmed || s.rtoAt === Infinity || this.finished) return;
    s.timerArmed = true;
    void this.opts.clock.sleepUntil(this.t0 + BigInt(Math.ceil(s.rtoAt))).then(s.onTimer);
  }

  /** A stream's retransmission timer fired (it may have moved since it was armed). */
  streamTimer(s: SendStream): void {
    s.timerArmed = false;
    if (this.finished || s.rtoAt === Infinity) return;
    const now = this.now();
    if (now < s.rtoAt) {
      this.armRto(s);
      return;
    }
    if (now - s.lastProgressNs > this.stallTimeout) {
      this.fail(`stream ${s.socket} (port ${s.flow.srcPort}) made no progress for ${this.stallTimeout / 1e6} ms`);
      return;
    }
    s.rto = Math.min(s.rto * 2, this.maxRto);
    if (s.state === ST_SYN_SENT) {
      s.synDue = true;
      s.synRetransmitted = true;
    } else {
      // Timeout: collapse the window and go back to the first unacknowledged byte.
      s.ssthresh = Math.max((s.sndMax - s.sndUna) / 2, 2 * s.mss);
      s.cwnd = s.mss;
      s.sndNxt = s.sndUna;
      s.inRecovery = false;
      s.dupAcks = 0;
      s.timedOffset = -1;
      if (s.finSent) {
        s.finSent = false; // resend the FIN
        s.retransmits++;
      }
    }
    s.rtoAt = now + s.rto;
    this.armRto(s);
    this.pump();
  }

  // ---- receiving ----

  /** validated: the device vouches for the L4 checksum (checksum offload); the payload checks still run. */
  private receive(frame: Uint8Array, validated: boolean): void {
    this.counters.framesReceived++;
    const info = this.info;
    const e = parseFrameInto(frame, info, !validated);
    if (e !== null) {
      this.counters.rxErrors[e] = (this.counters.rxErrors[e] ?? 0) + 1;
      return;
    }
    const s = this.streams[info.dstPort - this.basePort];
    if (info.dstIp !== this.localIp || info.proto !== IPPROTO_TCP || s === undefined || info.srcPort !== s.flow.dstPort) {
      this.counters.rxErrors['not-for-us'] = (this.counters.rxErrors['not-for-us'] ?? 0) + 1;
      return;
    }
    if (this.finished) return;
    this.tcpInput(s, info);
    this.pump();
  }

  private rttSample(s: SendStream, r: number): void {
    if (s.rttCount === 0 && s.srtt === 0) {
      s.srtt = r;
      s.rttvar = r / 2;
    } else {
      s.rttvar = 0.75 * s.rttvar + 0.25 * Math.abs(s.srtt - r);
      s.srtt = 0.875 * s.srtt + 0.125 * r;
    }
    s.rto = Math.min(this.maxRto, Math.max(this.minRto, s.srtt + Math.max(1e6, 4 * s.rttvar)));
    s.rttCount++;
    s.rttSum += r;
    if (r < s.rttMin) s.rttMin = r;
    if (r > s.rttMax) s.rttMax = r;
  }

  private tcpInput(s: SendStream, info: FrameInfo): void {
    const now = this.now();
    if (info.flags & TCP_RST) {
      this.fail(`stream ${s.socket}: connection reset by ${formatIpv4(info.srcIp)}:${info.srcPort}`);
      return;
    }
    if (s.state === ST_SYN_SENT) {
      if ((info.flags & (TCP_SYN | TCP_ACK)) !== (TCP_SYN | TCP_ACK) || info.ack !== seqAdd(s.isn, 1)) return;
      s.irs = info.seq;
      s.peerWscale = info.wscale >= 0 ? info.wscale : 0;
      if (info.mss > 0) s.mss = Math.min(s.mss, info.mss);
      s.peerWnd = info.window;
      s.maxSndWnd = Math.max(s.maxSndWnd, s.peerWnd);
      s.state = ST_ESTABLISHED;
      s.ackDue = true;
      if (!s.synRetransmitted) this.rttSample(s, now - s.synSentAt);
      s.rtoAt = Infinity;
      s.lastProgressNs = now;
      if (++this.connected === this.streams.length) this.resolveConnected?.();
      return;
    }
    if (info.flags & TCP_SYN) {
      s.ackDue = true; // the server did not see our ACK of its SYN
      return;
    }
    if (!(info.flags & TCP_ACK)) return;
    const ackOff = unwrap(s.sndUna, s.isn + 1, info.ack);
    s.peerWnd = info.window << s.peerWscale;
    if (s.peerWnd > s.maxSndWnd) s.maxSndWnd = s.peerWnd;
    if (s.state === ST_FIN_SENT && ackOff === s.appEnd + 1) {
      // Our FIN is acknowledged (the server sends its FIN with that ACK): ack theirs, done.
      s.sndUna = s.appEnd;
      if (info.flags & TCP_FIN) {
        s.peerFin = true;
        // Best effort: the server closed on our FIN already and does not wait for this.
        this.sendTcp(s, this.fields(s, seqAdd(s.isn, 2 + s.appEnd), TCP_ACK), 0, 0);
      }
      this.streamDone(s);
      return;
    }
    if (ackOff > s.sndUna && ackOff <= s.sndMax) {
      const acked = ackOff - s.sndUna;
      s.sndUna = ackOff;
      if (s.sndNxt < s.sndUna) s.sndNxt = s.sndUna;
      s.lastProgressNs = now;
      if (s.timedOffset >= 0 && ackOff >= s.timedOffset) {
        this.rttSample(s, now - s.timedAt);
        s.timedOffset = -1;
      }
      if (s.inRecovery) {
        if (ackOff >= s.recover) {
          s.inRecovery = false;
          s.cwnd = s.ssthresh;
        } else {
          // Partial ACK: the next hole is at sndUna; retransmit it and stay in recovery.
          s.rexmitDue = true;
          s.cwnd = Math.max(s.mss, s.cwnd - acked + s.mss);
        }
      } else if (s.cwnd < s.ssthresh) s.cwnd += Math.min(acked, s.mss);
      else s.cwnd += (s.mss * s.mss) / s.cwnd;
      if (s.cwnd > s.maxCwnd) s.maxCwnd = Math.round(s.cwnd);
      s.dupAcks = 0;
      s.rtoAt = s.sndUna < s.sndMax ? now + s.rto : Infinity;
      this.armRto(s);
      return;
    }
    if (ackOff === s.sndUna && info.payloadLength === 0 && s.sndMax > s.sndUna) {
      s.dupAcks++;
      if (!s.inRecovery && s.dupAcks === 3) {
        s.inRecovery = true;
        s.recover = s.sndMax;
        s.ssthresh = Math.max((s.sndMax - s.sndUna) / 2, 2 * s.mss);
        s.cwnd = s.ssthresh + 3 * s.mss;
        s.rexmitDue = true;
      } else if (s.inRecovery) s.cwnd += s.mss;
    }
  }
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

export interface IperfServerOptions {
  readonly device: NetDevice;
  readonly clock: WorkloadClock;
  readonly localIp: string;
  /** Default 5201. */
  readonly port?: number;
  /** TCP receive window in bytes (default 256 KiB). */
  readonly window?: number;
  readonly seed?: number;
  readonly cpuUsage?: () => { readonly user: number; readonly system: number };
}

/** What the server saw of one stream. Times are absolute clock ns. */
export interface IperfServerStreamReport {
  readonly protocol: 'tcp' | 'udp';
  readonly remoteIp: string;
  readonly remotePort: number;
  readonly localPort: number;
  readonly firstNs: bigint;
  readonly lastNs: bigint;
  /** Whether the sender closed the stream (FIN, or an end marker). */
  readonly closed: boolean;
  /** Payload bytes delivered in order (TCP) or received (UDP). */
  readonly bytes: number;
  /** UDP: highest packet count seen (iperf3's "packets"), loss and reordering as iperf3 counts them. */
  readonly packets: number;
  readonly lostPackets: number;
  readonly outOfOrder: number;
  readonly jitterMs: number;
  /** Delivered bytes that differ from the sender's pattern (0 unless data was corrupted). */
  readonly corruptBytes: number;
  /** TCP: segments that arrived again / ahead of a hole. */
  readonly duplicateSegments: number;
  readonly outOfOrderSegments: number;
}

export interface IperfServerReport {
  readonly localIp: string;
  readonly port: number;
  readonly streams: readonly IperfServerStreamReport[];
  readonly endpoint: EndpointCounters;
  readonly deviceCounters: Readonly<Record<string, number>>;
  readonly cpu: { readonly userUs: number; readonly systemUs: number };
}

class RecvStream {
  readonly protocol: 'tcp' | 'udp';
  readonly flow: FlowAddr;
  firstNs = 0n;
  lastNs = 0n;
  closed = false;
  bytes = 0;
  corruptBytes = 0;
  // TCP
  state = 0;
  irs = 0;
  iss = 0;
  peerWscale = 0;
  rcvNxt = 0;
  finOffset = -1;
  readonly ooo = new Map<number, Uint8Array>();
  oooBytes = 0;
  unacked = 0;
  ackQueued = false;
  finAckDue = false;
  dupSegments = 0;
  oooSegments = 0;
  // UDP (iperf3's accounting)
  packetCount = 0;
  lost = 0;
  outOfOrder = 0;
  jitter = 0;
  prevTransit = NaN;
  constructor(protocol: 'tcp' | 'udp', flow: FlowAddr) {
    this.protocol = protocol;
    this.flow = flow;
  }
}

export class IperfServer {
  readonly counters = newCounters();
  private readonly info = new FrameInfo();
  private readonly tx: TxBuffer;
  /** The device offers checksum offload: send frames with a blank L4 checksum (Linux CHECKSUM_PARTIAL). */
  private readonly csumPartial: boolean;
  private readonly conns = new Map<number, RecvStream>();
  private readonly order: RecvStream[] = [];
  private readonly localIp: number;
  private readonly localMac: Uint8Array;
  private readonly port: number;
  private readonly window: number;
  private seed: number;
  private ipId = 0;
  private before: DeviceCounters = {};
  private cpu0: { user: number; system: number } | undefined;
  /** Streams with an ACK to send at the end of this receive batch. */
  private readonly ackQueue: RecvStream[] = [];
  private ackFlushQueued = false;
  private txBlocked = false;
  private waiters: { n: number; resolve: () => void }[] = [];
  private readonly flushAcks = (): void => {
    this.ackFlushQueued = false;
    this.sendQueuedAcks();
  };
  private readonly onWritable = (): void => {
    this.txBlocked = false;
    this.sendQueuedAcks();
  };
  private readonly rx = (frame: Uint8Array, rxCsum?: ChecksumState): void => this.receive(frame, rxCsum === CHECKSUM_UNNECESSARY);

  private constructor(
    private readonly opts: IperfServerOptions,
    localIp: number,
    localMac: Uint8Array,
  ) {
    this.localIp = localIp;
    this.localMac = localMac;
    this.port = opts.port ?? 5201;
    this.window = opts.window ?? 256 * 1024;
    this.seed = (opts.seed ?? 7) >>> 0;
    this.tx = new TxBuffer(ETH.SIZE + opts.device.mtu);
    this.csumPartial = opts.device.csumOffload === true;
  }

  static create(opts: IperfServerOptions): Result<IperfServer, IperfSpecError> {
    const ip = parseIpv4(opts.localIp);
    if (!ip.ok) return err({ kind: 'bad-addr', what: 'localIp', text: opts.localIp });
    const mac = parseMac(opts.device.mac);
    if (!mac.ok) return err({ kind: 'bad-addr', what: 'device.mac', text: opts.device.mac });
    return ok(new IperfServer(opts, ip.value, mac.value));
  }

  /** [start ()] begins listening (installs the device's receive handler). */
  start(): void {
    this.before = this.opts.device.counters();
    this.cpu0 = this.opts.cpuUsage?.();
    this.opts.device.onReceive(this.rx);
  }

  /** [stop ()] stops listening. */
  stop(): void {
    this.opts.device.onReceive(undefined);
  }

  /** [whenClosed n] resolves once n streams have been closed by their sender. */
  whenClosed(n: number): Promise<void> {
    if (this.closedCount() >= n) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.push({ n, resolve }));
  }

  private closedCount(): number {
    let n = 0;
    for (const c of this.order) if (c.closed) n++;
    return n;
  }

  report(): IperfServerReport {
    const cpu1 = this.opts.cpuUsage?.();
    return {
      localIp: formatIpv4(this.localIp),
      port: this.port,
      streams: this.order.map((c) => ({
        protocol: c.protocol,
        remoteIp: formatIpv4(c.flow.dstIp),
        remotePort: c.flow.dstPort,
        localPort: c.flow.srcPort,
        firstNs: c.firstNs,
        lastNs: c.lastNs,
        closed: c.closed,
        bytes: c.bytes,
        packets: c.packetCount,
        lostPackets: c.lost,
        outOfOrder: c.outOfOrder,
        jitterMs: c.jitter * 1000,
        corruptBytes: c.corruptBytes,
        duplicateSegments: c.dupSegments,
        outOfOrderSegments: c.oooSegments,
      })),
      endpoint: this.counters,
      deviceCounters: diffCounters(this.opts.device.counters(), this.before),
      cpu: this.cpu0 !== undefined && cpu1 !== undefined ? { userUs: cpu1.user - this.cpu0.user, systemUs: cpu1.system - this.cpu0.system } : { userUs: 0, systemUs: 0 },
    };
  }

  private nowAbs(): bigint {
    return this.opts.clock.now();
  }

  /** validated: the device vouches for the L4 checksum (checksum offload); the payload checks still run. */
  private receive(frame: Uint8Array, validated: boolean): void {
    this.counters.framesReceived++;
    const info = this.info;
    const e = parseFrameInto(frame, info, !validated);
    if (e !== null) {
      this.counters.rxErrors[e] = (this.counters.rxErrors[e] ?? 0) + 1;
      return;
    }
    if (info.dstIp !== this.localIp || info.dstPort !== this.port || (info.proto !== IPPROTO_TCP && info.proto !== IPPROTO_UDP)) {
      this.counters.rxErrors['not-for-us'] = (this.counters.rxErrors['not-for-us'] ?? 0) + 1;
      return;
    }
    const key = info.srcIp * 0x1_0000 + info.srcPort;
    let c = this.conns.get(key);
    const now = this.nowAbs();
    if (c === undefined) {
      if (info.proto === IPPROTO_TCP && !(info.flags & TCP_SYN)) return; // not a connection we know
      const flow: FlowAddr = {
        srcMac: this.localMac,
        dstMac: frame.slice(ETH.SRC, ETH.SRC + 6), // learn the peer's MAC from its frame
        srcIp: this.localIp,
        dstIp: info.srcIp,
        srcPort: this.port,
        dstPort: info.srcPort,
      };
      c = new RecvStream(info.proto === IPPROTO_TCP ? 'tcp' : 'udp', flow);
      c.firstNs = now;
      this.conns.set(key, c);
      this.order.push(c);
    }
    c.lastNs = now;
    if (c.protocol === 'udp') this.udpInput(c, frame, info, now);
    else this.tcpInput(c, frame, info);
  }

  private markClosed(c: RecvStream): void {
    if (c.closed) return;
    c.closed = true;
    const n = this.closedCount();
    const ready = this.waiters.filter((w) => w.n <= n);
    this.waiters = this.waiters.filter((w) => w.n > n);
    for (const w of ready) w.resolve();
  }

  private udpInput(c: RecvStream, frame: Uint8Array, info: FrameInfo, now: bigint): void {
    if (info.payloadLength < IPERF_UDP_HDR.SIZE) return;
    const p = info.payloadOffset;
    const g32 = (o: number): number => (((frame[o] as number) << 24) | ((frame[o + 1] as number) << 16) | ((frame[o + 2] as number) << 8) | (frame[o + 3] as number)) >>> 0;
    const hi = g32(p + IPERF_UDP_HDR.PCOUNT);
    const pcount = (hi & ~END_MARKER_BIT & 0x7fff_ffff) * 0x1_0000_0000 + g32(p + IPERF_UDP_HDR.PCOUNT + 4);
    if (hi & END_MARKER_BIT) {
      this.markClosed(c);
      return;
    }
    const len = info.payloadLength;
    c.bytes += len;
    c.corruptBytes += patternMismatches(frame, p + IPERF_UDP_HDR.SIZE, c.flow.dstPort, pcount * UDP_PATTERN_STRIDE, len - IPERF_UDP_HDR.SIZE);
    // iperf3's loss / reordering accounting (iperf_udp.c).
    if (pcount >= c.packetCount + 1) {
      if (pcount > c.packetCount + 1) c.lost += pcount - 1 - c.packetCount;
      c.packetCount = pcount;
    } else {
      c.outOfOrder++;
      if (c.lost > 0) c.lost--;
    }
    // RFC 1889 jitter over transit times (seconds).
    const sent = g32(p + IPERF_UDP_HDR.SEC) + g32(p + IPERF_UDP_HDR.USEC) / 1e6;
    const transit = Number(now) / 1e9 - sent;
    if (!Number.isNaN(c.prevTransit)) {
      const d = Math.abs(transit - c.prevTransit);
      c.jitter += (d - c.jitter) / 16;
    }
    c.prevTransit = transit;
  }

  private tcpInput(c: RecvStream, frame: Uint8Array, info: FrameInfo): void {
    if (info.flags & TCP_SYN) {
      if (c.state === 0) {
        c.irs = info.seq;
        this.seed = (Math.imul(this.seed ^ (this.seed >>> 16), 0x45d9f3b) + 0x9e3779b9) >>> 0;
        c.iss = this.seed;
        c.peerWscale = info.wscale >= 0 ? info.wscale : 0;
        c.state = ST_SYN_RCVD;
      }
      this.sendSegment(c, TCP_SYN | TCP_ACK, true);
      return;
    }
    if (c.state === ST_SYN_RCVD && info.flags & TCP_ACK) c.state = ST_ESTABLISHED;
    const len = info.payloadLength;
    const off = unwrap(c.rcvNxt, c.irs + 1, info.seq);
    if (info.flags & TCP_FIN) c.finOffset = off + len;
    if (len > 0) {
      if (off + len <= c.rcvNxt) {
        c.dupSegments++;
        this.queueAck(c, true);
      } else if (off <= c.rcvNxt) {
        this.deliver(c, frame, info.payloadOffset + (c.rcvNxt - off), c.rcvNxt, off + len - c.rcvNxt);
        this.drainOoo(c);
        this.queueAck(c, false);
      } else {
        c.oooSegments++;
        if (!c.ooo.has(off) && c.oooBytes + len <= this.window) {
          c.ooo.set(off, frame.slice(info.payloadOffset, info.payloadOffset + len));
          c.oooBytes += len;
        }
        this.queueAck(c, true); // a duplicate ACK tells the sender about the hole
      }
    }
    if (c.finOffset >= 0 && c.rcvNxt === c.finOffset) {
      if (!c.closed) this.markClosed(c);
      c.finAckDue = true;
      this.queueAck(c, true);
    } else if (info.flags & TCP_FIN) this.queueAck(c, true);
  }

  private deliver(c: RecvStream, buf: Uint8Array, at: number, off: number, len: number): void {
    c.corruptBytes += patternMismatches(buf, at, c.flow.dstPort, off, len);
    c.bytes += len;
    c.rcvNxt = off + len;
    c.unacked++;
  }

  /** Moves buffered segments that now continue the stream into it. */
  private drainOoo(c: RecvStream): void {
    let moved = true;
    while (moved && c.ooo.size > 0) {
      moved = false;
      for (const [o, data] of c.ooo) {
        if (o > c.rcvNxt) continue;
        c.ooo.delete(o);
        c.oooBytes -= data.length;
        if (o + data.length > c.rcvNxt) this.deliver(c, data, c.rcvNxt - o, c.rcvNxt, o + data.length - c.rcvNxt);
        moved = true;
      }
    }
  }

  /** ACK every second segment, at once when asked, else at the end of the receive batch. */
  private queueAck(c: RecvStream, now: boolean): void {
    if (!c.ackQueued) {
      c.ackQueued = true;
      this.ackQueue.push(c);
    }
    if (now || c.unacked >= 2) this.sendQueuedAcks();
    else if (!this.ackFlushQueued) {
      this.ackFlushQueued = true;
      queueMicrotask(this.flushAcks);
    }
  }

  private sendQueuedAcks(): void {
    while (this.ackQueue.length > 0 && !this.txBlocked) {
      const c = this.ackQueue[0] as RecvStream;
      if (!this.sendSegment(c, c.finAckDue ? TCP_ACK | TCP_FIN : TCP_ACK, false)) {
        this.txBlocked = true;
        this.counters.sendBusy++;
        void this.opts.device.whenWritable().then(this.onWritable);
        return;
      }
      c.ackQueued = false;
      c.unacked = 0;
      this.ackQueue.shift();
    }
  }

  private readonly seg: TcpSegmentFields = { seq: 0, ack: 0, flags: 0, window: 0, synOptions: undefined };

  private sendSegment(c: RecvStream, flags: number, syn: boolean): boolean {
    const f = this.seg;
    const fin = (flags & TCP_FIN) !== 0;
    f.seq = syn ? c.iss : seqAdd(c.iss, 1);
    f.ack = seqAdd(c.irs, 1 + c.rcvNxt + (fin ? 1 : 0));
    f.flags = flags;
    const free = Math.max(0, this.window - c.oooBytes);
    f.window = syn ? Math.min(0xffff, free) : free >>> 7; // we advertise window scale 7
    f.synOptions = syn ? { mss: this.opts.device.mtu - IPV4_TCP_HEADERS, wscale: 7 } : undefined;
    const len = writeTcpFrame(this.tx.buf, c.flow, f, 0, this.ipId, this.csumPartial);
    if (!this.opts.device.send(this.tx.view(len), this.csumPartial ? CHECKSUM_PARTIAL : CHECKSUM_NONE)) return false;
    this.ipId = (this.ipId + 1) & 0xffff;
    this.counters.framesSent++;
    return true;
  }
}

// ---------------------------------------------------------------------------
// Both ends in one call
// ---------------------------------------------------------------------------

export interface IperfPairOptions {
  readonly clock: WorkloadClock;
  readonly spec: IperfSpec;
  readonly client: { readonly device: NetDevice; readonly ip: string };
  readonly server: { readonly device: NetDevice; readonly ip: string };
  /** How long to wait, after the client is done, for the server to see every stream close (default 1000 ms). */
  readonly closeWaitMs?: number;
  readonly seed?: number;
  readonly cpuUsage?: () => { readonly user: number; readonly system: number };
  readonly clientOptions?: Partial<Omit<IperfClientOptions, 'device' | 'clock' | 'spec' | 'localIp' | 'serverIp' | 'serverMac'>>;
}

/** [runIperf opts] starts a server on one device, runs a client on the other, and returns both reports. */
export async function runIperf(opts: IperfPairOptions): Promise<Result<{ client: IperfClientReport; server: IperfServerReport }, IperfSpecError>> {
  const server = IperfServer.create({
    device: opts.server.device,
    clock: opts.clock,
    localIp: opts.server.ip,
    ...(opts.spec.port !== undefined ? { port: opts.spec.port } : {}),
    ...(opts.spec.window !== undefined ? { window: opts.spec.window } : {}),
    ...(opts.cpuUsage !== undefined ? { cpuUsage: opts.cpuUsage } : {}),
  });
  if (!server.ok) return server;
  const client = IperfClient.create({
    ...opts.clientOptions,
    device: opts.client.device,
    clock: opts.clock,
    localIp: opts.client.ip,
    serverIp: opts.server.ip,
    serverMac: opts.server.device.mac,
    spec: opts.spec,
    ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    ...(opts.cpuUsage !== undefined ? { cpuUsage: opts.cpuUsage } : {}),
  });
  if (!client.ok) return client;
  server.value.start();
  const c = await client.value.run();
  const deadline = opts.clock.now() + BigInt((opts.closeWaitMs ?? 1000) * 1e6);
  await Promise.race([server.value.whenClosed(c.spec.parallel), opts.clock.sleepUntil(deadline)]);
  server.value.stop();
  return ok({ client: c, server: server.value.report() });
}
