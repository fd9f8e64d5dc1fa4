/**
 * `xentop -b` (batch mode), byte for byte, from one statistics sample.
 *
 * Everything here follows tools/xentop/xentop.c (Xen 4.17):
 * - the `fields[]` table: column headers and default widths;
 * - reset_field_widths()/adjust_field_widths(): NETTX/NETRX/VBD_RD/VBD_WR/
 *   VBD_RSECT/VBD_WSECT widen to the largest value's INT_FIELD_WIDTH(v+1);
 * - print_*(): each column's printf format (e.g. "%10llu", "%6.1f");
 * - state_funcs[]: STATE letters in the order d s b c p r;
 * - do_summary(), do_header(), do_domain(), do_vcpu(), do_network(), do_vbd().
 * The domain table is sorted by name, case-insensitively: xentop's default
 * sort field is FIELD_DOMID (0), which indexes fields[0], the NAME column.
 *
 * Note: in batch mode xentop.c does *not* print the summary lines
 * (`if (!batch) do_summary();`), so xentopBatch() leaves them out;
 * xentopSummary() renders them for a caller that wants the interactive
 * screen's top lines.
 */
import { InvariantError } from '../../shared/invariant.ts';
import { sprintf } from './printf.ts';
import { u64, type DomainState, type DomainStats, type NodeStats, type U64, type VbdBackendType } from './stats.ts';

export interface XentopSample {
  readonly node: NodeStats;
  /** Time of day as xentop shows it ("%H:%M:%S"); see hms(). */
  readonly time: string;
  readonly domains: readonly DomainStats[];
  /**
   * The previous sample, for CPU(%): (cpu ns now − then) / 10 / µs elapsed.
   * Without it (xentop's first iteration) CPU(%) is 0.0.
   */
  readonly prev?: { readonly domains: readonly { readonly domid: number; readonly cpuNs: U64 }[]; readonly elapsedUs: number };
}

/** xentop's command-line switches that change the text. */
export interface XentopOptions {
  /** -n: per-vif lines. */
  readonly networks?: boolean;
  /** -x: per-VBD lines. */
  readonly vbds?: boolean;
  /** -v: per-vcpu times. */
  readonly vcpus?: boolean;
  /** -r: repeat the header before each domain. */
  readonly repeatHeader?: boolean;
  /** -f: full domain names (the NAME column widens) instead of the first 10 bytes. */
  readonly fullName?: boolean;
  /** -z: Domain-0 first, the others sorted after it. */
  readonly dom0First?: boolean;
}

type FieldId = 'name' | 'state' | 'cpu' | 'cpuPct' | 'mem' | 'memPct' | 'maxmem' | 'maxPct' | 'vcpus' | 'nets'
  | 'netTx' | 'netRx' | 'vbds' | 'vbdOo' | 'vbdRd' | 'vbdWr' | 'vbdRsect' | 'vbdWsect' | 'ssid';

/** xentop.c fields[]: header and default width, in column order. */
const FIELDS: readonly { readonly id: FieldId; readonly header: string; readonly width: number }[] = [
  { id: 'name', header: 'NAME', width: 10 },
  { id: 'state', header: 'STATE', width: 6 },
  { id: 'cpu', header: 'CPU(sec)', width: 10 },
  { id: 'cpuPct', header: 'CPU(%)', width: 6 },
  { id: 'mem', header: 'MEM(k)', width: 10 },
  { id: 'memPct', header: 'MEM(%)', width: 6 },
  { id: 'maxmem', header: 'MAXMEM(k)', width: 10 },
  { id: 'maxPct', header: 'MAXMEM(%)', width: 9 },
  { id: 'vcpus', header: 'VCPUS', width: 5 },
  { id: 'nets', header: 'NETS', width: 4 },
  { id: 'netTx', header: 'NETTX(k)', width: 8 },
  { id: 'netRx', header: 'NETRX(k)', width: 8 },
  { id: 'vbds', header: 'VBDS', width: 4 },
  { id: 'vbdOo', header: 'VBD_OO', width: 8 },
  { id: 'vbdRd', header: 'VBD_RD', width: 8 },
  { id: 'vbdWr', header: 'VBD_WR', width: 8 },
  { id: 'vbdRsect', header: 'VBD_RSECT', width: 10 },
  { id: 'vbdWsect', header: 'VBD_WSECT', width: 10 },
  { id: 'ssid', header: 'SSID', width: 4 },
];

/** xentop.c do_vbd(): vbd_type[] names. */
const VBD_TYPE_NAME: Record<VbdBackendType, string> = { unidentified: 'Unidentified', blkback: 'BlkBack', blktap: 'BlkTap' };

/** libxenstat's view of a domain's state (xenstat_domain_shutdown excludes crashes; _crashed is only crashes). */
function xenstatState(s: DomainState): { d: boolean; s: boolean; b: boolean; c: boolean; p: boolean; r: boolean } {
  return {
    d: s.dying,
    s: s.shutdown !== null && s.shutdown !== 'crash',
    b: s.blocked,
    c: s.shutdown === 'crash',
    p: s.paused,
    r: s.running,
  };
}

/** [xentopStateFlags s] is xentop's STATE column: d s b c p r, '-' for each not set. */
export function xentopStateFlags(s: DomainState): string {
  const x = xenstatState(s);
  return (x.d ? 'd' : '-') + (x.s ? 's' : '-') + (x.b ? 'b' : '-') + (x.c ? 'c' : '-') + (x.p ? 'p' : '-') + (x.r ? 'r' : '-');
}

/** [hms secondsOfDay] is "HH:MM:SS" (xentop's strftime "%H:%M:%S"). */
export function hms(secondsOfDay: number): string {
  const s = ((Math.floor(secondsOfDay) % 86400) + 86400) % 86400;
  return sprintf('%02d:%02d:%02d', Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60);
}

/** [xentopSummary sample] is do_summary()'s three lines (printed by interactive xentop only). */
export function xentopSummary(sample: XentopSample): string {
  let run = 0, block = 0, pause = 0, crash = 0, dying = 0, shutdown = 0;
  for (const d of sample.domains) {
    // One bucket per domain, first match wins, in do_summary()'s order.
    const x = xenstatState(d.state);
    if (x.r) run++;
    else if (x.b) block++;
    else if (x.p) pause++;
    else if (x.s) shutdown++;
    else if (x.c) crash++;
    else if (x.d) dying++;
  }
  const tot = u64(sample.node.totMemKiB);
  const free = u64(sample.node.freeMemKiB);
  return sprintf('xentop - %s   Xen %s\n', sample.time, sample.node.xenVersion) +
    sprintf('%u domains: %u running, %u blocked, %u paused, %u crashed, %u dying, %u shutdown \n',
      sample.domains.length, run, block, pause, crash, dying, shutdown) +
    sprintf('Mem: %lluk total, %lluk used, %lluk free    ', tot, tot - free, free) +
    sprintf('CPUs: %u @ %lluMHz\n', sample.node.numCpus, u64(sample.node.cpuHz) / 1_000_000n);
}

interface VbdTotals { readonly shown: boolean; readonly oo: bigint; readonly rd: bigint; readonly wr: bigint; readonly rsect: bigint; readonly wsect: bigint }

/** tot_vbd_reqs(): sums over VBDs whose statistics were read; shown = no VBDs, or at least one readable. */
function vbdTotals(d: DomainStats): VbdTotals {
  let shown = d.vbds.length === 0;
  let oo = 0n, rd = 0n, wr = 0n, rsect = 0n, wsect = 0n;
  for (const v of d.vbds) {
    if (v.error === true) continue;
    shown = true;
    oo += u64(v.ooReqs); rd += u64(v.rdReqs); wr += u64(v.wrReqs); rsect += u64(v.rdSects); wsect += u64(v.wrSects);
  }
  return { shown, oo, rd, wr, rsect, wsect };
}

function netTotal(d: DomainStats, rx: boolean): bigint {
  let t = 0n;
  for (const n of d.nets) t += u64(rx ? n.rxBytes : n.txBytes);
  return t;
}

/** [intFieldWidth n] is xentop.c's INT_FIELD_WIDTH(n): (unsigned)(log10(n) + 1), n converted to double. */
export function intFieldWidth(n: bigint): number {
  return Math.trunc(Math.log10(Number(n)) + 1);
}

/** strcasecmp in the C locale: UTF-8 bytes compared after ASCII lower-casing. */
function strcasecmp(a: string, b: string): number {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  const lower = (c: number): number => (c >= 0x41 && c <= 0x5a ? c + 32 : c);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = lower(x[i] as number) - lower(y[i] as number);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** [xentopBatch sample opts] is one iteration of `xentop -b` with the given switches. */
export function xentopBatch(sample: XentopSample, opts: XentopOptions = {}): string {
  // top(): order the domains.
  let domains = [...sample.domains];
  let sortFrom = 0;
  if (opts.dom0First === true) {
    const i = domains.findIndex((d) => d.name === 'Domain-0');
    if (i > 0) [domains[0], domains[i]] = [domains[i] as DomainStats, domains[0] as DomainStats];
    if (i >= 0) sortFrom = 1;
  }
  domains = [...domains.slice(0, sortFrom), ...domains.slice(sortFrom).sort((a, b) => strcasecmp(a.name, b.name))];

  // reset_field_widths() + adjust_field_widths() over every domain shown.
  const width = new Map<FieldId, number>(FIELDS.map((f) => [f.id, f.width]));
  const widen = (id: FieldId, w: number): void => { if (w > (width.get(id) ?? 0)) width.set(id, w); };
  const totals = new Map<DomainStats, VbdTotals>();
  for (const d of domains) {
    if (opts.fullName === true) widen('name', Buffer.byteLength(d.name, 'utf8'));
    widen('netTx', intFieldWidth(netTotal(d, false) / 1024n + 1n));
    widen('netRx', intFieldWidth(netTotal(d, true) / 1024n + 1n));
    const t = vbdTotals(d);
    totals.set(d, t);
    widen('vbdRd', intFieldWidth(t.rd + 1n));
    widen('vbdWr', intFieldWidth(t.wr + 1n));
    widen('vbdRsect', intFieldWidth(t.rsect + 1n));
    widen('vbdWsect', intFieldWidth(t.wsect + 1n));
  }
  const w = (id: FieldId): number => width.get(id) ?? 0;

  const header = FIELDS.map((f) => sprintf('%*s', w(f.id), f.header)).join(' ') + '\n';
  const totMemBytes = Number(u64(sample.node.totMemKiB) * 1024n);
  const prevCpu = new Map((sample.prev?.domains ?? []).map((p) => [p.domid, u64(p.cpuNs)]));
  if (sample.prev !== undefined && !(sample.prev.elapsedUs > 0)) {
    throw new InvariantError(`xentop: elapsed time between samples must be positive, got ${sample.prev.elapsedUs} µs`);
  }

  let out = '';
  domains.forEach((d, i) => {
    if (i === 0 || opts.repeatHeader === true) out += header;
    const t = totals.get(d) as VbdTotals;
    const memBytes = u64(d.memKiB) * 1024n;
    const maxBytes = d.maxMemKiB === null ? null : u64(d.maxMemKiB) * 1024n;
    const old = prevCpu.get(d.domid);
    const cpuPct = sample.prev === undefined || old === undefined
      ? 0
      : Number(BigInt.asUintN(64, u64(d.cpuNs) - old)) / 10.0 / sample.prev.elapsedUs;
    const cells: Record<FieldId, string> = {
      name: opts.fullName === true ? sprintf('%*s', w('name'), d.name) : sprintf('%10.10s', d.name),
      state: xentopStateFlags(d.state),
      cpu: sprintf('%10llu', u64(d.cpuNs) / 1_000_000_000n),
      cpuPct: sprintf('%6.1f', cpuPct),
      mem: sprintf('%10llu', memBytes / 1024n),
      memPct: sprintf('%6.1f', Number(memBytes) / totMemBytes * 100),
      maxmem: maxBytes === null ? sprintf('%10s', 'no limit') : sprintf('%10llu', maxBytes / 1024n),
      maxPct: maxBytes === null ? sprintf('%9s', 'n/a') : sprintf('%9.1f', Number(maxBytes) / totMemBytes * 100),
      vcpus: sprintf('%5u', d.vcpus),
      nets: sprintf('%4u', d.nets.length),
      netTx: sprintf('%*llu', w('netTx'), netTotal(d, false) / 1024n),
      netRx: sprintf('%*llu', w('netRx'), netTotal(d, true) / 1024n),
      vbds: sprintf('%4u', d.vbds.length),
      vbdOo: t.shown ? sprintf('%8llu', t.oo) : sprintf('%8c', '-'),
      vbdRd: t.shown ? sprintf('%*llu', w('vbdRd'), t.rd) : sprintf('%*c', w('vbdRd'), '-'),
      vbdWr: t.shown ? sprintf('%*llu', w('vbdWr'), t.wr) : sprintf('%*c', w('vbdWr'), '-'),
      vbdRsect: t.shown ? sprintf('%*llu', w('vbdRsect'), t.rsect) : sprintf('%*c', w('vbdRsect'), '-'),
      vbdWsect: t.shown ? sprintf('%*llu', w('vbdWsect'), t.wsect) : sprintf('%*c', w('vbdWsect'), '-'),
      ssid: sprintf('%4u', d.ssid ?? 0),
    };
    out += FIELDS.map((f) => cells[f.id]).join(' ') + '\n';
    if (opts.vcpus === true) out += vcpuLines(d);
    if (opts.networks === true) out += networkLines(d);
    if (opts.vbds === true) out += vbdLines(d);
  });
  return out;
}

/** do_vcpu(): online vcpus' whole seconds, five to a line. */
function vcpuLines(d: DomainStats): string {
  let out = 'VCPUs(sec): ';
  for (let i = 0; i < d.vcpus; i++) {
    const v = d.vcpuStats?.[i];
    if (v === undefined || !v.online) continue;
    if (i !== 0 && i % 5 === 0) out += '\n        ';
    out += sprintf(' %2u: %10llus', i, u64(v.cpuNs) / 1_000_000_000n);
  }
  return out + '\n';
}

/** do_network(): one line per vif. */
function networkLines(d: DomainStats): string {
  return d.nets.map((n, i) =>
    sprintf('Net%d RX: %8llubytes %8llupkts %8lluerr %8lludrop  ', i, u64(n.rxBytes), u64(n.rxPackets), u64(n.rxErrs), u64(n.rxDrop)) +
    sprintf('TX: %8llubytes %8llupkts %8lluerr %8lludrop\n', u64(n.txBytes), u64(n.txPackets), u64(n.txErrs), u64(n.txDrop)),
  ).join('');
}

/** do_vbd(): one line per VBD; the "[major:minor] " detail uses linux/kdev_t.h's MAJOR/MINOR (dev >> 8, dev & 0xff). */
function vbdLines(d: DomainStats): string {
  return d.vbds.map((v) => {
    const details = sprintf('[%2x:%2x] ', v.dev >>> 8, v.dev & 0xff);
    const type = VBD_TYPE_NAME[v.backendType];
    if (v.error === true) {
      return sprintf('VBD %s %4d %s OO: %8c   RD: %8c   WR: %8c   RSECT: %10c   WSECT: %10c\n', type, v.dev, details, '-', '-', '-', '-', '-');
    }
    return sprintf('VBD %s %4d %s OO: %8llu   RD: %8llu   WR: %8llu   RSECT: %10llu   WSECT: %10llu\n',
      type, v.dev, details, u64(v.ooReqs), u64(v.rdReqs), u64(v.wrReqs), u64(v.rdSects), u64(v.wrSects));
  }).join('');
}
