/**
 * The human tables `xensim run` and `xensim bench` print on stdout: one row
 * per cell (its swept settings, block throughput, IOPS and latency, network
 * throughput), then the device counters per I/O, then the cells that failed.
 * Plain text, no colour and no cursor movement, so it reads the same in a
 * terminal, a log and a CI transcript.
 */
import { fmtNum, fmtUnit } from './svg.ts';
import { summarizeCell, type Cell, type IoCounters, type XensimResults } from './results.ts';

export type Align = 'l' | 'r';

/** [textTable head rows align] lays rows out in columns two spaces apart; no trailing spaces. */
export function textTable(head: readonly string[], rows: readonly (readonly string[])[], align: readonly Align[] = []): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    r.map((c, i) => (align[i] === 'r' ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].map((l) => `${l}\n`).join('');
}

function valueText(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v) ?? 'null';
}

/** [describeRun doc] is the one-line heading: command, scenario, cells, date, version, host. */
export function describeRun(doc: XensimResults): string {
  const shard = doc.shard === undefined ? '' : `, shard ${doc.shard.k}/${doc.shard.n}`;
  const merged = doc.merged_from === undefined ? '' : `, merged from ${doc.merged_from.length} file(s)`;
  const m = doc.machine;
  return `xensim ${doc.command}: scenario ${doc.scenario.name}, ${doc.cells.length} of ${doc.scenario.cell_count} cell(s)${shard}${merged} — ` +
    `${doc.date} — xensim ${doc.version}, ${m.cpus} cpus, node ${m.node}; machine ${fmtNum(m.memory / 1024 ** 2)} MiB, ` +
    `${m.page_size} B pages, dom0 ${m.dom0.memory_model}/${m.dom0.dma}, iommu ${m.dom0.iommu}\n`;
}

const dash = '-';

/** [formatSummaryTable doc] is one row per cell. */
export function formatSummaryTable(doc: XensimResults): string {
  const axes = doc.scenario.sweep.map((a) => a.path);
  const head = ['cell', ...axes, 'status', 'read', 'write', 'r IOPS', 'w IOPS', 'clat mean', 'clat p99', 'network', 'time'];
  const align: Align[] = ['r', ...axes.map((): Align => 'l'), 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'];
  const rows = [...doc.cells].sort((a, b) => a.index - b.index).map((c) => {
    const s = summarizeCell(c);
    const anyBlock = c.block.length > 0;
    return [
      String(c.index),
      ...axes.map((p) => valueText(c.point[p])),
      c.status === 'ok' && s.block_errors + s.net_errors === 0 ? 'ok' : c.status === 'ok' ? 'errors' : 'FAILED',
      anyBlock ? fmtUnit(s.read_bw, 'bytes/s') : dash,
      anyBlock ? fmtUnit(s.write_bw, 'bytes/s') : dash,
      anyBlock ? fmtNum(s.read_iops) : dash,
      anyBlock ? fmtNum(s.write_iops) : dash,
      s.clat_mean_ns === null ? dash : fmtUnit(s.clat_mean_ns, 'ns'),
      s.clat_p99_ns === null ? dash : fmtUnit(s.clat_p99_ns, 'ns'),
      s.net_bps === null ? dash : fmtUnit(s.net_bps, 'bits/s'),
      fmtUnit(c.duration_ms / 1000, 's'),
    ];
  });
  return textTable(head, rows, align);
}

/** Counter names of one kind, in a stable order (most common first, then by name). */
function counterNames(counters: readonly IoCounters[]): string[] {
  const freq = new Map<string, number>();
  for (const c of counters) for (const k of Object.keys(c.per_io)) freq.set(k, (freq.get(k) ?? 0) + 1);
  return [...freq.keys()].sort((a, b) => (freq.get(b) ?? 0) - (freq.get(a) ?? 0) || a.localeCompare(b));
}

/**
 * [formatCountersTable doc] is the device counters per I/O (block) and per
 * packet (network), one table per kind. A counter that is zero or absent in
 * every row says nothing and is left out (the table says how many); the JSON
 * document keeps them all.
 */
export function formatCountersTable(doc: XensimResults): string {
  let out = '';
  for (const kind of ['block', 'network'] as const) {
    const rows: { cell: Cell; c: IoCounters }[] = [];
    for (const cell of [...doc.cells].sort((a, b) => a.index - b.index)) for (const c of cell.counters) if (c.kind === kind) rows.push({ cell, c });
    if (rows.length === 0) continue;
    const all = counterNames(rows.map((r) => r.c));
    const names = all.filter((n) => rows.some(({ c }) => (c.per_io[n] ?? 0) !== 0));
    const quiet = all.length - names.length;
    const title = kind === 'block' ? 'block device counters per completed I/O' : 'network device counters per packet';
    out += `${out === '' ? '' : '\n'}${title}${quiet > 0 ? ` (${quiet} counters that are 0 in every row left out; --json has them)` : ''}\n`;
    out += textTable(
      ['cell', 'domain', 'device', kind === 'block' ? 'I/Os' : 'packets', ...names],
      rows.map(({ cell, c }) => [String(cell.index), c.domain, c.device, fmtNum(c.ios), ...names.map((n) => (c.per_io[n] === undefined ? dash : fmtNum(c.per_io[n] ?? 0)))]),
      ['r', 'l', 'l', 'r', ...names.map((): Align => 'r')],
    );
  }
  return out;
}

/** [formatFailures doc] lists failed cells and job/stream errors; '' when there are none. */
export function formatFailures(doc: XensimResults): string {
  const lines: string[] = [];
  for (const c of [...doc.cells].sort((a, b) => a.index - b.index)) {
    if (c.status === 'failed') lines.push(`cell ${c.index}: FAILED: ${c.error ?? 'no reason given'}`);
    for (const b of c.block) {
      for (const j of b.fio.jobs) {
        if (j.error !== 0) lines.push(`cell ${c.index}: ${b.domain}/${b.vdev} job ${j.jobname}: error ${j.error}${j.xensim.error_message === null ? '' : `: ${j.xensim.error_message}`}`);
      }
    }
    for (const n of c.network) if (n.iperf3.error !== undefined) lines.push(`cell ${c.index}: ${n.from} -> ${n.to}: ${n.iperf3.error}`);
  }
  return lines.length === 0 ? '' : `problems\n${lines.map((l) => `  ${l}\n`).join('')}`;
}

export interface FormatResultsOptions {
  /** Include the per-I/O counters tables (default true). */
  readonly counters?: boolean;
}

/** [formatResults doc opts] is everything a run prints on stdout at the end. */
export function formatResults(doc: XensimResults, o: FormatResultsOptions = {}): string {
  let out = describeRun(doc) + '\n' + formatSummaryTable(doc);
  if (o.counters !== false) {
    const c = formatCountersTable(doc);
    if (c !== '') out += `\n${c}`;
  }
  const f = formatFailures(doc);
  if (f !== '') out += `\n${f}`;
  return out;
}
