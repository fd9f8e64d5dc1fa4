/**
 * Statistics of a running Machine in the shape cli/views prints (`xl list`,
 * `xentop`): one DomainStats per domain and the host's NodeStats — what
 * libxl_dominfo and libxenstat give the real tools.
 *
 * Where each field comes from:
 * - name, domid, state: the hypervisor's domain table (hv.domains()).
 *   State letters: paused → p, crashed → shutdown(crash), shutdown →
 *   shutdown(poweroff), dying/zombie → d; a live domain is `r` (running) or
 *   `b` (blocked) by how busy its vCPU thread was since the previous sample
 *   (≥ 50% of one CPU: running), as a real blocked vCPU is one idle in the
 *   scheduler. Without CPU times every live domain reads `r`.
 * - memory: the domain's RAM pages × page size (tot_pages); max = the same
 *   (xensim does not balloon). vcpus: 1 (one worker thread per domain).
 * - cpu time: the CPU time of the domain's worker thread, read inside the
 *   worker from /proc/thread-self/schedstat (ns; falls back to the clock-tick
 *   fields of /proc/thread-self/stat) by the agent's optional `threadCpuNs()`.
 *   Not the worker's event-loop utilization: a vCPU idles in Atomics.wait,
 *   which ELU counts as busy (measured: 1.0 for three idle domains while the
 *   whole process used 6% of one CPU). Agents without `threadCpuNs()` give 0.
 * - VBD and NET counters: from a DeviceStatsSource the drivers provide (an
 *   option of the collector), else the agent's optional `deviceStats()`,
 *   else none. NET counters a source leaves empty come from dom0's netback
 *   (`dom0.vifStats()`, one call per sample), as xentop reads /proc/net/dev
 *   of vifD.N: NETTX is what the guest sent (netback's TX), NETRX what it
 *   received.
 * Agents are asked over comlink with a timeout: a domain busy in a long
 * synchronous stretch keeps its last known values instead of stalling the view.
 */
import type { LibxlDomainConfigJson } from './libxl-config.ts';
import { availableParallelism } from 'node:os';
import { readFileSync } from 'node:fs';
import type { DomainSummary } from '../hypervisor/control.ts';
import type { DomainState, DomainStats, NetStats, NodeStats, VbdStats } from '../cli/views/stats.ts';
import type { XentopSample } from '../cli/views/xentop.ts';
import { hms } from '../cli/views/xentop.ts';

/** What xentop prints after "Xen": the ABI we model, marked as ours. */
export const XENSIM_XEN_VERSION = '4.17-xensim';

/** A domain's virtual devices as xentop counts them (blkback's statistics, /proc/net/dev of vifD.N). */
export interface DeviceStats {
  readonly vbds: readonly VbdStats[];
  readonly nets: readonly NetStats[];
}
export const NO_DEVICES: DeviceStats = { vbds: [], nets: [] };

/** Provides a domain's device counters; null when it has none to report. */
export type DeviceStatsSource = (domid: number, name: string) => Promise<DeviceStats | null> | DeviceStats | null;

/**
 * The agent methods the collector uses when a domain's agent has them. Both
 * are optional: over comlink a missing method fails once, and is not asked again.
 */
export interface StatsAgent {
  threadCpuNs?(): Promise<number | null> | number | null;
  deviceStats?(): Promise<DeviceStats> | DeviceStats;
}

/** The part of a Machine the collector reads (Machine fits it). */
export interface StatsMachine {
  readonly hv: {
    domains(): Promise<DomainSummary[]> | DomainSummary[];
    freeFrames(): Promise<number> | number;
  };
  readonly mem: { readonly frames: number; readonly pageSize: number };
  domain(domid: number): { readonly agent: unknown } | undefined;
  /** dom0's agent, when it serves netback (Machine.dom0 fits). */
  readonly dom0?: Dom0NetSource | undefined;
  /** Every domain's configuration as `xl list -l` prints it (Machine.domainConfigs fits). */
  domainConfigs?(): { domid: number; config: LibxlDomainConfigJson }[];
}

/** The part of dom0's agent that gives every vif's xentop counters. */
export interface Dom0NetSource {
  vifStats(): Promise<readonly { readonly frontDom: number; readonly devid: number; readonly xentop: NetStats }[]>;
}

export interface StatsCollectorOptions {
  /** Device counters from the drivers; tried before the agent's deviceStats(). */
  readonly deviceStats?: DeviceStatsSource;
  /** Longest wait for one agent answer (default 500 ms). */
  readonly timeoutMs?: number;
  readonly xenVersion?: string;
  /** CPU clock for xentop's "CPUs: N @ MHz" (default: /proc/cpuinfo's first "cpu MHz"). */
  readonly cpuHz?: number;
}

/** One reading of the whole machine. */
export interface MachineSample {
  readonly node: NodeStats;
  readonly domains: readonly DomainStats[];
  /** Wall clock, ms since the epoch. */
  readonly wallMs: number;
  /** Monotonic clock, ns (for rates between samples). */
  readonly monoNs: number;
  /** Domains whose CPU time came from their thread; the rest read 0. */
  readonly cpuMeasured: readonly number[];
}

export { readThreadCpuNs } from '../shared/kernel/cpu-time.ts';

/** [cpuHzFromCpuinfo] is the first "cpu MHz" of /proc/cpuinfo in Hz, or 0. */
export function cpuHzFromCpuinfo(): number {
  try {
    const m = /^cpu MHz\s*:\s*([0-9.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m === null ? 0 : Math.round(Number(m[1]) * 1e6);
  } catch {
    return 0;
  }
}

/** [domainStateOf hvState running] maps the hypervisor's state word to libxl's flags. */
export function domainStateOf(hvState: string, busy: boolean): DomainState {
  const base: DomainState = { running: false, blocked: false, paused: false, dying: false, shutdown: null };
  switch (hvState) {
    case 'running': return { ...base, running: busy, blocked: !busy };
    case 'paused': return { ...base, paused: true };
    case 'shutdown': return { ...base, shutdown: 'poweroff' };
    case 'crashed': return { ...base, shutdown: 'crash' };
    case 'dying': case 'zombie': return { ...base, dying: true };
    default: return { ...base, shutdown: 'unknown' };
  }
}

const TIMED_OUT = Symbol('timed out');

function withTimeout<T>(p: Promise<T> | T, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
    timer.unref();
  });
  return Promise.race([Promise.resolve(p), t]).finally(() => clearTimeout(timer));
}

function isDeviceStats(v: unknown): v is DeviceStats {
  return typeof v === 'object' && v !== null && Array.isArray((v as DeviceStats).vbds) && Array.isArray((v as DeviceStats).nets);
}

interface Known {
  cpuNs: number;
  devices: DeviceStats;
  /** null = not asked yet; false = the agent lacks the method. */
  hasCpu: boolean | null;
  hasDevices: boolean | null;
}

export class StatsCollector {
  private readonly known = new Map<number, Known>();
  private last: MachineSample | null = null;
  private readonly timeoutMs: number;
  private readonly cpuHz: number;

  constructor(private readonly machine: StatsMachine, private readonly opts: StatsCollectorOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 500;
    this.cpuHz = opts.cpuHz ?? cpuHzFromCpuinfo();
  }

  private knownOf(domid: number): Known {
    let k = this.known.get(domid);
    if (k === undefined) {
      k = { cpuNs: 0, devices: NO_DEVICES, hasCpu: null, hasDevices: null };
      this.known.set(domid, k);
    }
    return k;
  }

  /** Asks an optional agent method; remembers when the agent does not have it. */
  private async ask<T>(agent: unknown, method: keyof StatsAgent): Promise<T | undefined> {
    const fn = (agent as Record<string, unknown> | null)?.[method];
    if (typeof fn !== 'function') return undefined;
    try {
      const r = await withTimeout((fn as () => Promise<T> | T).call(agent), this.timeoutMs);
      return r === TIMED_OUT ? undefined : r;
    } catch {
      throw new MissingMethod();
    }
  }

  private async cpuOf(domid: number, agent: unknown, k: Known): Promise<boolean> {
    if (k.hasCpu === false) return false;
    try {
      const ns = await this.ask<number | null>(agent, 'threadCpuNs');
      if (typeof ns === 'number' && Number.isFinite(ns) && ns >= 0) {
        k.cpuNs = Math.max(k.cpuNs, Math.round(ns));
        k.hasCpu = true;
      } else if (ns === null) k.hasCpu = false;
    } catch (e) {
      if (e instanceof MissingMethod) k.hasCpu = false;
    }
    return k.hasCpu === true;
  }

  private async devicesOf(domid: number, name: string, agent: unknown, k: Known): Promise<void> {
    const src = this.opts.deviceStats;
    if (src !== undefined) {
      try {
        const r = await withTimeout(src(domid, name), this.timeoutMs);
        if (r !== TIMED_OUT) {
          if (r !== null) {
            k.devices = r;
            return;
          }
        } else return; // keep the last known counters
      } catch {
        // a failing source is treated as having nothing for this domain
      }
    }
    if (k.hasDevices === false) return;
    try {
      const r = await this.ask<DeviceStats>(agent, 'deviceStats');
      if (isDeviceStats(r)) {
        k.devices = r;
        k.hasDevices = true;
      }
    } catch (e) {
      if (e instanceof MissingMethod) k.hasDevices = false;
    }
  }

  private dom0HasNets: boolean | null = null;

  /** Every guest's vifs as netback counts them, by domid (empty when dom0 serves none). */
  private async dom0Nets(): Promise<Map<number, NetStats[]>> {
    const out = new Map<number, NetStats[]>();
    const d0 = this.machine.dom0;
    if (d0 === undefined || this.dom0HasNets === false) return out;
    try {
      const rows = await withTimeout(d0.vifStats(), this.timeoutMs);
      if (rows === TIMED_OUT) return out;
      this.dom0HasNets = true;
      for (const r of [...rows].sort((a, b) => a.devid - b.devid)) {
        const list = out.get(r.frontDom) ?? [];
        list.push(r.xentop);
        out.set(r.frontDom, list);
      }
    } catch {
      this.dom0HasNets = false; // a dom0 without netback
    }
    return out;
  }

  /** [sample] reads every domain once. */
  async sample(): Promise<MachineSample> {
    const m = this.machine;
    const [doms, free] = await Promise.all([m.hv.domains(), m.hv.freeFrames()]);
    const monoNs = Number(process.hrtime.bigint());
    const wallMs = Date.now();
    const prev = this.last;
    const elapsedNs = prev === null ? 0 : monoNs - prev.monoNs;
    const cpuMeasured: number[] = [];
    const netsOf = await this.dom0Nets();
    const domains = await Promise.all(
      [...doms].sort((a, b) => a.domid - b.domid).map(async (d): Promise<DomainStats> => {
        const k = this.knownOf(d.domid);
        const agent = m.domain(d.domid)?.agent;
        const before = k.cpuNs;
        const measured = agent !== undefined && (await this.cpuOf(d.domid, agent, k));
        if (measured) cpuMeasured.push(d.domid);
        if (agent !== undefined) await this.devicesOf(d.domid, d.name, agent, k);
        const prevHad = prev?.domains.some((p) => p.domid === d.domid) === true;
        const busy = !measured || !prevHad || elapsedNs <= 0 ? true : (k.cpuNs - before) / elapsedNs >= 0.5;
        const memKiB = (d.pages * m.mem.pageSize) / 1024;
        return {
          name: d.name,
          domid: d.domid,
          state: domainStateOf(d.state, busy),
          cpuNs: k.cpuNs,
          memKiB,
          maxMemKiB: memKiB,
          vcpus: 1,
          vcpusOnline: 1,
          nets: k.devices.nets.length > 0 ? k.devices.nets : (netsOf.get(d.domid) ?? []),
          vbds: k.devices.vbds,
        };
      }),
    );
    for (const id of [...this.known.keys()]) if (!doms.some((d) => d.domid === id)) this.known.delete(id);
    const totKiB = (m.mem.frames * m.mem.pageSize) / 1024;
    const node: NodeStats = {
      xenVersion: this.opts.xenVersion ?? XENSIM_XEN_VERSION,
      totMemKiB: totKiB,
      freeMemKiB: Math.min(totKiB, (free * m.mem.pageSize) / 1024),
      numCpus: availableParallelism(),
      cpuHz: this.cpuHz,
    };
    const s: MachineSample = { node, domains, wallMs, monoNs, cpuMeasured: cpuMeasured.sort((a, b) => a - b) };
    this.last = s;
    return s;
  }

  /**
   * [xentop] samples and returns what xentopBatch() prints, with CPU(%) over
   * the time since the previous sample (none on the first call, as xentop).
   */
  async xentop(): Promise<XentopSample> {
    const prev = this.last;
    const s = await this.sample();
    return xentopSampleOf(s, prev);
  }
}

class MissingMethod extends Error {}

/** [xentopSampleOf cur prev] is cur as xentop's input, with CPU(%) against prev when given. */
export function xentopSampleOf(cur: MachineSample, prev: MachineSample | null): XentopSample {
  const d = new Date(cur.wallMs);
  const time = hms(d.getHours() * 3600 + d.getMinutes() * 60 + d.getSeconds());
  const elapsedUs = prev === null ? 0 : (cur.monoNs - prev.monoNs) / 1000;
  return {
    node: cur.node,
    time,
    domains: cur.domains,
    ...(prev !== null && elapsedUs > 0 ? { prev: { domains: prev.domains.map((p) => ({ domid: p.domid, cpuNs: p.cpuNs })), elapsedUs } } : {}),
  };
}
