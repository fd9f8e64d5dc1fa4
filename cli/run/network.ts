/**
 * Network streams in `xensim run` and `xensim bench`: from a scenario's
 * domains and `network:` entries to the vifs a cell attaches and the
 * iperf3-like streams it runs (toolstack/machine.ts attachVif and iperf), and
 * from a stream's iperf3 document to what the results say about it.
 *
 * Addressing: a vif speaks the first IPv4 address of its vifspec's `ip=`
 * (libxl writes it for vif-route; here the guest's stack uses it); a vif with
 * none gets the next free address of 10.0.0.0/24, in domain order. Peers'
 * MACs come from the toolstack (the engine does no ARP).
 *
 * A stream runs between the first vif (lowest devid) of each end. Both vifs
 * must sit on the same dom0 bridge: dom0 bridges, it does not route, so vifs
 * on different bridges cannot reach each other and the plan says so. A vif
 * takes part in one stream at a time: the guest's iperf engine owns its vif's
 * receive path (domU/workloads/iperf-engine.ts), so a second stream through
 * the same vif is refused rather than left to stall.
 *
 * Not in this build (reported as unavailable, never faked): streams to or
 * from dom0 itself (dom0 has no iperf endpoint), vifs served by a driver
 * domain (`backend=`: only dom0 runs netback here).
 */
import type { IperfSpec } from '../../domU/workloads/iperf-engine.ts';
import type { VifAttach } from '../../toolstack/machine.ts';
import { DOM0_NAMES, type ScenarioDomain, type ScenarioNetwork } from '../config/scenario.ts';
import { countersFromIperf, seriesFromIperf, type IoCounters, type Iperf3Json, type NetworkResult, type TimeSeries } from '../report/results.ts';

export interface PlannedVif {
  readonly devid: number;
  /** What Machine.attachVif takes (the scenario's seeded MAC included, so runs repeat). */
  readonly attach: VifAttach;
  /** The address the guest's stack speaks on this vif. */
  readonly ip: string;
  readonly bridge: string;
}

export interface PlannedStream {
  /** "from -> to (tcp)", for messages. */
  readonly label: string;
  readonly from: string;
  readonly to: string;
  readonly fromDevid: number;
  readonly toDevid: number;
  readonly fromIp: string;
  readonly toIp: string;
  readonly protocol: 'tcp' | 'udp';
  /** iperf3's client options. */
  readonly spec: IperfSpec;
  readonly seed: number;
  /** Rough seconds the stream takes (for progress and the cell's time limit). */
  readonly estimateSec: number;
}

export interface NetworkPlan {
  /** The vifs to attach, by domain name. */
  readonly vifs: ReadonlyMap<string, readonly PlannedVif[]>;
  readonly streams: readonly PlannedStream[];
  /** The configuration cannot work. */
  readonly errors: readonly string[];
  /** Fine, but this build cannot run it. */
  readonly unavailable: readonly string[];
}

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;

/** [firstIpv4 ip] is the first address of an xl `ip=` list ("10.0.0.5 10.0.0.6"), or null when it has no IPv4 address first. */
function firstIpv4(ip: string): string | null {
  const first = ip.trim().split(/\s+/)[0] ?? '';
  return IPV4.test(first) ? first : null;
}

/** Bytes a time-less stream is assumed to move per second, for the time estimate only. */
const ESTIMATE_BYTES_PER_SEC = 50 * 1024 * 1024;

/** [planNetwork domains network seedOf] is the vifs and streams of one cell, or why not. */
export function planNetwork(domains: readonly ScenarioDomain[], network: readonly ScenarioNetwork[], seedOf: (i: number) => number): NetworkPlan {
  const errors: string[] = [];
  const unavailable: string[] = [];
  const vifs = new Map<string, PlannedVif[]>();
  const used = new Set<string>();
  // Addresses written in the configs first, so generated ones never collide with them.
  for (const d of domains) {
    for (const v of d.config.vif) {
      if (v.ip === null) continue;
      const ip = firstIpv4(v.ip);
      if (ip === null) errors.push(`${d.config.name}: vif ${v.devid} (\`${v.spec}'): ip=${v.ip}: expected an IPv4 address such as 10.0.0.5`);
      else if (used.has(ip)) errors.push(`${d.config.name}: vif ${v.devid}: ip=${ip} is already another vif's address`);
      else used.add(ip);
    }
  }
  let next = 1;
  const freeIp = (): string | null => {
    while (next < 255 && used.has(`10.0.0.${next}`)) next++;
    if (next >= 255) return null;
    const ip = `10.0.0.${next++}`;
    used.add(ip);
    return ip;
  };
  const served = new Set<string>();
  for (const d of domains) {
    const c = d.config;
    const list: PlannedVif[] = [];
    for (const v of [...c.vif].sort((a, b) => a.devid - b.devid)) {
      if (v.backend !== null && !DOM0_NAMES.includes(v.backend)) {
        unavailable.push(`${c.name}: vif ${v.devid} (\`${v.spec}'): backend=${v.backend}: vifs served by a driver domain are not available in this build (only dom0 runs netback)`);
        continue;
      }
      const ip = v.ip === null ? freeIp() : firstIpv4(v.ip);
      if (ip === null) {
        if (v.ip === null) errors.push(`${c.name}: vif ${v.devid}: no free address left in 10.0.0.0/24; give it ip=`);
        continue;
      }
      list.push({
        devid: v.devid,
        ip,
        bridge: v.bridge,
        attach: { devid: v.devid, mac: v.mac, bridge: v.bridge, rate: v.rate, ip: v.ip ?? ip, mtu: v.mtu, trusted: v.trusted, script: v.script },
      });
      served.add(`${c.name}/${v.devid}`);
    }
    vifs.set(c.name, list);
  }

  const streams: PlannedStream[] = [];
  /** "domain/devid" -> the stream that uses it. */
  const busy = new Map<string, number>();
  for (const [i, n] of network.entries()) {
    const label = `${n.from} -> ${n.to} (${n.protocol})`;
    if (DOM0_NAMES.includes(n.from) || DOM0_NAMES.includes(n.to)) {
      unavailable.push(`network[${i}] ${label}: streams to or from dom0 are not available in this build (dom0 has no iperf endpoint); run them between two guests`);
      continue;
    }
    const a = vifs.get(n.from)?.[0];
    const b = vifs.get(n.to)?.[0];
    if (a === undefined || b === undefined) {
      // scenario.ts checked both have a vif: theirs is served elsewhere (listed above) or invalid (an error above).
      if (!errors.some((e) => e.startsWith(`${n.from}: vif`) || e.startsWith(`${n.to}: vif`))) {
        unavailable.push(`network[${i}] ${label}: not run: ${a === undefined ? n.from : n.to} has no vif dom0 serves in this build`);
      }
      continue;
    }
    if (a.bridge !== b.bridge) {
      errors.push(`network[${i}] ${label}: ${n.from}'s vif is on bridge ${a.bridge} and ${n.to}'s on ${b.bridge}; dom0 bridges, it does not route: put both on one bridge`);
      continue;
    }
    const clash = [`${n.from}/${a.devid}`, `${n.to}/${b.devid}`].find((k) => busy.has(k));
    if (clash !== undefined) {
      const [dom, devid] = clash.split('/');
      errors.push(`network[${i}] ${label}: ${dom}'s vif ${devid} already carries network[${busy.get(clash)}]; a vif takes part in one stream at a time here: give ${dom} another vif or run the streams in separate scenarios`);
      continue;
    }
    busy.set(`${n.from}/${a.devid}`, i);
    busy.set(`${n.to}/${b.devid}`, i);
    const spec: IperfSpec = {
      protocol: n.protocol,
      length: n.size,
      parallel: n.parallel,
      ...(n.bytes !== null ? { bytes: n.bytes } : { time: (n.time_us ?? 0) / 1e6 }),
      ...(n.bitrate !== null ? { bitrate: n.bitrate } : {}),
    };
    const estimateSec = n.time_us !== null ? n.time_us / 1e6 : Math.max(1, (n.bytes ?? 0) / ESTIMATE_BYTES_PER_SEC);
    streams.push({ label, from: n.from, to: n.to, fromDevid: a.devid, toDevid: b.devid, fromIp: a.ip, toIp: b.ip, protocol: n.protocol, spec, seed: seedOf(i), estimateSec });
  }
  return { vifs, streams, errors, unavailable };
}

/** What a finished stream adds to a cell's results. */
export interface StreamOutcome {
  readonly result: NetworkResult;
  readonly counters: readonly IoCounters[];
  readonly series: readonly TimeSeries[];
  /** Why the stream counts as failed (verification or the engine's error); empty when it did not. */
  readonly problems: readonly string[];
}

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

/**
 * [streamOutcome s json] reads one stream's iperf3 document: the result, its
 * per-packet counters on each side, its time series, and whether it failed.
 * A TCP-like stream fails when the receiver saw corrupt bytes or a stream did
 * not close (the payload is checked byte by byte, so a silently wrong total is
 * impossible); UDP loss is a measurement, not a failure, as in iperf3.
 */
export function streamOutcome(s: PlannedStream, json: Iperf3Json, fromDomid: number, toDomid: number): StreamOutcome {
  const problems: string[] = [];
  if (typeof json.error === 'string') problems.push(`${s.label}: ${json.error}`);
  const x = json.xensim as { receiver_streams?: unknown } | undefined;
  const recv = Array.isArray(x?.receiver_streams) ? (x.receiver_streams as unknown[]) : [];
  if (s.protocol === 'tcp') {
    const corrupt = recv.reduce<number>((a, r) => a + num((r as { corrupt_bytes?: unknown } | null)?.corrupt_bytes), 0);
    const open = recv.filter((r) => r === null || (r as { closed?: unknown }).closed !== true).length;
    if (corrupt > 0) problems.push(`${s.label}: the receiver found ${corrupt} corrupt bytes`);
    if (open > 0) problems.push(`${s.label}: ${open} of ${recv.length} streams did not close`);
  }
  const fromDev = `vif${fromDomid}.${s.fromDevid}`;
  const toDev = `vif${toDomid}.${s.toDevid}`;
  return {
    result: { from: s.from, to: s.to, protocol: s.protocol, parallel: s.spec.parallel ?? 1, iperf3: json },
    counters: [countersFromIperf(s.from, fromDev, json, 'client'), countersFromIperf(s.to, toDev, json, 'server')],
    series: [seriesFromIperf(s.from, fromDev, json)],
    problems,
  };
}
