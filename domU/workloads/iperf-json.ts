/**
 * iperf3's `-J` output (iperf 3.12 shape, ECOSYSTEM.md §4.2) from an iperf client
 * report and, when available, the server's report (which iperf3 gets over its
 * control connection and we get from whoever ran the server).
 *
 * TCP and UDP differ as in iperf3: TCP intervals carry retransmits/snd_cwnd/snd_wnd/
 * rtt/rttvar/pmtu and `end.streams[]` has {sender, receiver}; UDP intervals carry
 * packets and `end.streams[]` has {udp} with jitter and loss, plus `end.sum`.
 * Units: bytes, bits_per_second, seconds (floats), rtt in µs, jitter in ms.
 * A top-level `xensim` object carries the device and endpoint counters; a failed
 * test also has iperf3's top-level `error` string.
 */
import type { IperfClientReport, IperfServerReport, IperfServerStreamReport } from './iperf-engine.ts';

export const XENSIM_IPERF_VERSION = 'xensim-0.1.0';

export interface Iperf3JsonOptions {
  /** Wall-clock ms since the epoch of the test start (default Date.now()). */
  readonly timestampMs?: number;
  /** iperf3 prints `uname -a`; default "xensim". */
  readonly systemInfo?: string;
  readonly version?: string;
  /** iperf3's 36-character test cookie (default derived from the ports). */
  readonly cookie?: string;
  /**
   * The backend's counters over the test (netback's, per vif: deltas), when
   * whoever ran the test read them; they go to `xensim.backend` and into
   * `xensim.per_packet`.
   */
  readonly backend?: { readonly client?: Readonly<Record<string, number>>; readonly server?: Readonly<Record<string, number>> };
}

/**
 * [perPacketCosts client server backend] is what one packet cost, where a
 * packet is one frame a guest handed its netfront (data and ACKs, both
 * directions; a GSO send is one packet): packets = the two guests' tx_frames,
 * or, with the backend's counters, the packets netback took from both guests.
 * Guest figures add both guests; backend figures both vifs.
 */
export function perPacketCosts(
  client: Readonly<Record<string, number>>, server: Readonly<Record<string, number>> | undefined,
  backend?: Iperf3JsonOptions['backend'],
): Record<string, number> {
  const g = (k: string): number => (client[k] ?? 0) + (server?.[k] ?? 0);
  const b = (k: string): number => (backend?.client?.[k] ?? 0) + (backend?.server?.[k] ?? 0);
  const hasBackend = backend?.client !== undefined || backend?.server !== undefined;
  const packets = hasBackend ? b('txPackets') : g('tx_frames');
  const per = (n: number): number => (packets > 0 ? n / packets : 0);
  const out: Record<string, number> = {
    packets,
    guest_hypercalls: per(g('hypercalls')),
    guest_notifications: per(g('notifications_sent') + g('notifications_received')),
    guest_tx_slots: per(g('tx_slots')),
    guest_rx_slots: per(g('rx_slots')),
    // Event-channel sends (EVTCHNOP_send, a hypercall in Xen; a shared-memory op in xensim's guests).
    event_sends: per(g('notifications_sent') + b('notificationsSent')),
  };
  if (hasBackend) {
    out.backend_hypercalls = per(b('hypercalls'));
    out.backend_grant_copies = per(b('grantCopies'));
    out.backend_grant_copy_bytes = per(b('grantCopyBytes'));
    out.backend_grant_maps = per(b('grantMaps'));
    out.backend_grant_unmaps = per(b('grantUnmaps'));
    out.backend_notifications = per(b('notificationsSent') + b('notificationsReceived'));
    out.hypercalls = per(g('hypercalls') + b('hypercalls'));
  }
  return out;
}

type Obj = Record<string, unknown>;

function seconds(ns: number): number {
  return ns / 1e9;
}
function bps(bytes: number, secs: number): number {
  return secs > 0 ? (bytes * 8) / secs : 0;
}

function cookieFrom(seed: string): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let h = 0x811c9dc5;
  let out = '';
  for (let i = 0; i < 36; i++) {
    h ^= seed.charCodeAt(i % seed.length) + i;
    h = Math.imul(h, 0x01000193) >>> 0;
    out += alphabet[h & 31];
  }
  return out;
}

/** [toIperf3Json client server opts] is the test as `iperf3 -c … -J` prints it. */
export function toIperf3Json(client: IperfClientReport, server: IperfServerReport | undefined, opts: Iperf3JsonOptions = {}): Obj {
  const spec = client.spec;
  const tcp = spec.protocol === 'tcp';
  const ms = opts.timestampMs ?? Date.now();
  const origin = client.originNs;
  const rel = (t: bigint): number => Number(t - origin) / 1e9;
  const recvFor = (port: number): IperfServerStreamReport | undefined => server?.streams.find((s) => s.remotePort === port && s.remoteIp === client.localIp);
  const testSecs = rel(client.endNs);

  const start: Obj = {
    connected: client.streams.map((s) => ({ socket: s.socket, local_host: client.localIp, local_port: s.localPort, remote_host: client.serverIp, remote_port: s.remotePort })),
    version: opts.version ?? XENSIM_IPERF_VERSION,
    system_info: opts.systemInfo ?? 'xensim',
    timestamp: { time: new Date(ms).toUTCString(), timesecs: Math.floor(ms / 1000) },
    connecting_to: { host: client.serverIp, port: spec.port },
    cookie: opts.cookie ?? cookieFrom(`${client.localIp}:${client.streams.map((s) => s.localPort).join(',')}`),
    ...(tcp ? { tcp_mss_default: client.mss } : {}),
    target_bitrate: spec.bitrate,
    sock_bufsize: 0,
    sndbuf_actual: spec.window,
    rcvbuf_actual: spec.window,
    test_start: {
      protocol: tcp ? 'TCP' : 'UDP',
      num_streams: spec.parallel,
      blksize: spec.length,
      omit: spec.omit,
      duration: spec.time,
      bytes: spec.bytes,
      blocks: spec.blockcount,
      reverse: 0,
      tos: 0,
      target_bitrate: spec.bitrate,
    },
  };

  const intervals = client.intervals.map((row) => {
    const streams = row.map((s) => {
      const secs = seconds(s.endNs - s.startNs);
      const base = { socket: s.socket, start: seconds(s.startNs), end: seconds(s.endNs), seconds: secs, bytes: s.bytes, bits_per_second: bps(s.bytes, secs) };
      return tcp
        ? { ...base, retransmits: s.retransmits, snd_cwnd: s.sndCwnd, snd_wnd: s.sndWnd, rtt: s.rttUs, rttvar: s.rttvarUs, pmtu: client.mtu, omitted: s.omitted, sender: true }
        : { ...base, packets: s.packets, omitted: s.omitted, sender: true };
    });
    const first = row[0];
    const startS = first === undefined ? 0 : seconds(first.startNs);
    const endS = first === undefined ? 0 : seconds(first.endNs);
    const bytes = row.reduce((n, s) => n + s.bytes, 0);
    const sumBase = { start: startS, end: endS, seconds: endS - startS, bytes, bits_per_second: bps(bytes, endS - startS) };
    const sum = tcp
      ? { ...sumBase, retransmits: row.reduce((n, s) => n + s.retransmits, 0), omitted: first?.omitted ?? false, sender: true }
      : { ...sumBase, packets: row.reduce((n, s) => n + s.packets, 0), omitted: first?.omitted ?? false, sender: true };
    return { streams, sum };
  });

  const senderEnd = Math.max(0, ...client.streams.map((s) => seconds(s.endNs)));
  const receiverEnd = (r: IperfServerStreamReport | undefined): number => (r === undefined ? testSecs : Math.max(0, rel(r.lastNs)));
  const cpuPct = (us: number): number => (client.cpu.wallUs > 0 ? (us / client.cpu.wallUs) * 100 : 0);
  const cpu = {
    host_total: cpuPct(client.cpu.userUs + client.cpu.systemUs),
    host_user: cpuPct(client.cpu.userUs),
    host_system: cpuPct(client.cpu.systemUs),
    remote_total: server === undefined ? 0 : cpuPct(server.cpu.userUs + server.cpu.systemUs),
    remote_user: server === undefined ? 0 : cpuPct(server.cpu.userUs),
    remote_system: server === undefined ? 0 : cpuPct(server.cpu.systemUs),
  };
  const sentBytes = client.streams.reduce((n, s) => n + s.bytes, 0);
  const recvs = client.streams.map((s) => recvFor(s.localPort));
  const recvBytes = recvs.reduce((n, r) => n + (r?.bytes ?? 0), 0);
  const recvEnd = Math.max(0, ...recvs.map(receiverEnd));

  let end: Obj;
  if (tcp) {
    end = {
      streams: client.streams.map((s, i) => {
        const r = recvs[i];
        const se = seconds(s.endNs);
        const re = receiverEnd(r);
        return {
          sender: {
            socket: s.socket,
            start: 0,
            end: se,
            seconds: se,
            bytes: s.bytes,
            bits_per_second: bps(s.bytes, se),
            retransmits: s.retransmits,
            max_snd_cwnd: s.maxSndCwnd,
            max_snd_wnd: s.maxSndWnd,
            max_rtt: Math.round(s.maxRttUs),
            min_rtt: Math.round(s.minRttUs),
            mean_rtt: Math.round(s.meanRttUs),
            sender: true,
          },
          receiver: { socket: s.socket, start: 0, end: re, seconds: se, bytes: r?.bytes ?? 0, bits_per_second: bps(r?.bytes ?? 0, re), sender: true },
        };
      }),
      sum_sent: { start: 0, end: senderEnd, seconds: senderEnd, bytes: sentBytes, bits_per_second: bps(sentBytes, senderEnd), retransmits: client.streams.reduce((n, s) => n + s.retransmits, 0), sender: true },
      sum_received: { start: 0, end: recvEnd, seconds: recvEnd, bytes: recvBytes, bits_per_second: bps(recvBytes, recvEnd), sender: true },
      cpu_utilization_percent: cpu,
      sender_tcp_congestion: 'newreno',
      receiver_tcp_congestion: 'newreno',
    };
  } else {
    const udpStreams = client.streams.map((s, i) => {
      const r = recvs[i];
      const se = seconds(s.endNs);
      const packets = r?.packets ?? s.packets;
      const lost = r?.lostPackets ?? 0;
      return {
        udp: {
          socket: s.socket,
          start: 0,
          end: se,
          seconds: se,
          bytes: s.bytes,
          bits_per_second: bps(s.bytes, se),
          jitter_ms: r?.jitterMs ?? 0,
          lost_packets: lost,
          packets,
          lost_percent: packets > 0 ? (lost * 100) / packets : 0,
          out_of_order: r?.outOfOrder ?? 0,
          sender: true,
        },
      };
    });
    const n = udpStreams.length;
    const jitter = n > 0 ? udpStreams.reduce((a, s) => a + s.udp.jitter_ms, 0) / n : 0;
    const lost = udpStreams.reduce((a, s) => a + s.udp.lost_packets, 0);
    const packets = udpStreams.reduce((a, s) => a + s.udp.packets, 0);
    const sentPackets = client.streams.reduce((a, s) => a + s.packets, 0);
    const lostPct = packets > 0 ? (lost * 100) / packets : 0;
    end = {
      streams: udpStreams,
      sum: { start: 0, end: recvEnd, seconds: recvEnd, bytes: sentBytes, bits_per_second: bps(sentBytes, recvEnd), jitter_ms: jitter, lost_packets: lost, packets, lost_percent: lostPct, sender: true },
      sum_sent: { start: 0, end: senderEnd, seconds: senderEnd, bytes: sentBytes, bits_per_second: bps(sentBytes, senderEnd), jitter_ms: 0, lost_packets: 0, packets: sentPackets, lost_percent: 0, sender: true },
      sum_received: { start: 0, end: recvEnd, seconds: recvEnd, bytes: recvBytes, bits_per_second: bps(recvBytes, recvEnd), jitter_ms: jitter, lost_packets: lost, packets, lost_percent: lostPct, sender: false },
      cpu_utilization_percent: cpu,
    };
  }

  const out: Obj = {
    start,
    intervals,
    end,
    xensim: {
      client: { device_counters: client.deviceCounters, endpoint: client.endpoint },
      server: server === undefined ? null : { device_counters: server.deviceCounters, endpoint: server.endpoint },
      ...(opts.backend !== undefined ? { backend: { client: opts.backend.client ?? null, server: opts.backend.server ?? null } } : {}),
      per_packet: perPacketCosts(client.deviceCounters, server?.deviceCounters, opts.backend),
      receiver_streams: recvs.map((r) =>
        r === undefined
          ? null
          : { closed: r.closed, bytes: r.bytes, corrupt_bytes: r.corruptBytes, duplicate_segments: r.duplicateSegments, out_of_order_segments: r.outOfOrderSegments },
      ),
    },
  };
  if (client.error !== undefined) out.error = client.error;
  return out;
}
