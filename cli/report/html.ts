/**
 * `--html FILE`: one self-contained page of a results document — the summary
 * table, the sweep compared setting by setting, and for each cell its
 * throughput and latency over time, its per-I/O device counters and its
 * domains at the end (as `xentop -b` prints them).
 *
 * Self-contained: CSS inline, charts inline SVG drawn here (cli/report/svg.ts),
 * no fonts, images or scripts from anywhere; a Content-Security-Policy of
 * default-src 'none' makes the browser refuse any load we might have missed,
 * so the page opens offline exactly as it does online. One small inline script
 * only counts the marks the browser drew (data-lines-drawn / data-bars-drawn
 * on <html>), so a headless browser can tell the charts rendered.
 */
import { barChart, escapeXml, fmtNum, fmtUnit, lineChart, type BarSeries, type LineSeries, type Unit } from './svg.ts';
import { pointLabel, summarizeCell, xentopFromJson, type Cell, type CellSummary, type IoCounters, type TimeSeries, type XensimResults } from './results.ts';
import { describeRun } from './table.ts';
import { xentopBatch } from '../views/xentop.ts';

const esc = escapeXml;

/** Cells shown open in the page (the rest are collapsed, one click away). */
const OPEN_CELLS = 4;
/** Most lines or bar series in one chart; more would be unreadable. */
const MAX_SERIES = 10;

const CSS = `
:root { color-scheme: light; --fg: #1d2330; --muted: #5b6473; --line: #d9dde5; --bg: #ffffff; --head: #f3f5f8; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 16px 24px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 15px; margin: 16px 0 6px; } .meta { color: var(--muted); margin: 0 0 8px; }
nav a { margin-right: 14px; color: #2a5db0; text-decoration: none; } nav a:hover { text-decoration: underline; }
table { border-collapse: collapse; margin: 6px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: var(--head); font-weight: 600; } td.l, th.l { text-align: left; }
tr.failed td { background: #fdecec; } .status-ok { color: #2f7d32; } .status-bad { color: #b3261e; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 24px; align-items: flex-start; }
svg.chart { background: #fff; border: 1px solid var(--line); border-radius: 4px; max-width: 100%; height: auto; }
svg.chart .chart-title { font-size: 13px; font-weight: 600; fill: var(--fg); }
svg.chart .tick, svg.chart .axis-unit, svg.chart .legend-item text { font-size: 11px; fill: var(--muted); }
svg.chart .axis-label { font-size: 11px; fill: var(--fg); } svg.chart .empty { font-size: 12px; fill: var(--muted); }
svg.chart .grid { stroke: #eceef2; stroke-width: 1; } svg.chart .axis { stroke: #9aa2af; stroke-width: 1; }
details.cell { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; margin: 10px 0; }
details.cell > summary { cursor: pointer; font-weight: 600; padding: 4px 0; }
pre { background: var(--head); padding: 8px; overflow-x: auto; font-size: 12px; }
.note { color: var(--muted); font-size: 12px; }
`;

/** Counts what the browser drew; see the file comment. */
const VERIFY_SCRIPT = `(function () {
  var lines = 0, length = 0, bars = 0;
  document.querySelectorAll('svg.chart path.line').forEach(function (p) { var l = p.getTotalLength(); if (l > 0) { lines++; length += l; } });
  document.querySelectorAll('svg.chart rect.bar').forEach(function (r) { var b = r.getBBox(); if (b.width > 0 && b.height > 0) bars++; });
  var h = document.documentElement;
  h.setAttribute('data-lines-drawn', String(lines));
  h.setAttribute('data-line-length', String(Math.round(length)));
  h.setAttribute('data-bars-drawn', String(bars));
})();`;

const CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'";

function valueText(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v) ?? 'null';
}

function cellsInOrder(doc: XensimResults): Cell[] {
  return [...doc.cells].sort((a, b) => a.index - b.index);
}

// ---- summary ----------------------------------------------------------------------

function summaryTable(doc: XensimResults, sums: ReadonlyMap<number, CellSummary>): string {
  const axes = doc.scenario.sweep.map((a) => a.path);
  const head = ['cell', ...axes, 'status', 'read', 'write', 'read IOPS', 'write IOPS', 'clat mean', 'clat p99', 'network', 'time'];
  let html = `<table class="summary"><thead><tr>${head.map((h, i) => `<th class="${i > 0 && i <= axes.length + 1 ? 'l' : ''}">${esc(h)}</th>`).join('')}</tr></thead><tbody>`;
  for (const c of cellsInOrder(doc)) {
    const s = sums.get(c.index) as CellSummary;
    const ok = c.status === 'ok' && s.block_errors + s.net_errors === 0;
    const status = c.status === 'failed' ? 'failed' : ok ? 'ok' : 'errors';
    const blk = c.block.length > 0;
    const td = (v: string): string => `<td>${esc(v)}</td>`;
    html += `<tr class="${c.status === 'failed' ? 'failed' : ''}"><td><a href="#cell-${c.index}">${c.index}</a></td>` +
      axes.map((p) => `<td class="l">${esc(valueText(c.point[p]))}</td>`).join('') +
      `<td class="l ${ok ? 'status-ok' : 'status-bad'}"${c.error === null ? '' : ` title="${esc(c.error)}"`}>${status}</td>` +
      td(blk ? fmtUnit(s.read_bw, 'bytes/s') : '-') + td(blk ? fmtUnit(s.write_bw, 'bytes/s') : '-') +
      td(blk ? fmtNum(s.read_iops) : '-') + td(blk ? fmtNum(s.write_iops) : '-') +
      td(s.clat_mean_ns === null ? '-' : fmtUnit(s.clat_mean_ns, 'ns')) + td(s.clat_p99_ns === null ? '-' : fmtUnit(s.clat_p99_ns, 'ns')) +
      td(s.net_bps === null ? '-' : fmtUnit(s.net_bps, 'bits/s')) + td(fmtUnit(c.duration_ms / 1000, 's')) + '</tr>';
  }
  return `${html}</tbody></table>`;
}

// ---- sweep comparison ---------------------------------------------------------------

interface Metric {
  readonly title: string;
  readonly unit: Unit;
  readonly pick: (s: CellSummary, c: Cell) => number | null;
}
const METRICS: readonly Metric[] = [
  { title: 'block throughput (read + write)', unit: 'bytes/s', pick: (s, c) => (c.block.length > 0 ? s.read_bw + s.write_bw : null) },
  { title: 'block IOPS (read + write)', unit: 'iops', pick: (s, c) => (c.block.length > 0 ? s.read_iops + s.write_iops : null) },
  { title: 'mean completion latency', unit: 'ns', pick: (s) => s.clat_mean_ns },
  { title: 'p99 completion latency', unit: 'ns', pick: (s) => s.clat_p99_ns },
  { title: 'network throughput', unit: 'bits/s', pick: (s) => s.net_bps },
];

function sweepSection(doc: XensimResults, sums: ReadonlyMap<number, CellSummary>): string {
  const axes = doc.scenario.sweep;
  const cells = cellsInOrder(doc).filter((c) => c.status === 'ok');
  if (axes.length === 0 || cells.length < 2) return '<p class="note">No sweep: one cell, nothing to compare.</p>';
  let html = '';
  for (const axis of axes) {
    const others = axes.filter((a) => a !== axis);
    const cats = axis.values.map(valueText);
    const numeric = axis.values.every((v) => typeof v === 'number');
    // One series per combination of the other axes' values, as they occur in the cells.
    const combos = new Map<string, Cell[]>();
    for (const c of cells) {
      const key = others.map((o) => `${o.path}=${valueText(c.point[o.path])}`).join(', ') || 'all cells';
      const list = combos.get(key) ?? [];
      list.push(c);
      combos.set(key, list);
    }
    const keys = [...combos.keys()].slice(0, MAX_SERIES);
    html += `<h3>${esc(axis.path)}</h3><div class="charts">`;
    for (const m of METRICS) {
      const series = keys.map((k) => ({
        name: k,
        values: axis.values.map((v) => {
          const c = combos.get(k)?.find((x) => valueText(x.point[axis.path]) === valueText(v));
          return c === undefined ? null : m.pick(sums.get(c.index) as CellSummary, c);
        }),
      }));
      if (!series.some((s) => s.values.some((v) => v !== null))) continue;
      const title = `${m.title} by ${axis.path}`;
      html += numeric
        ? lineChart({
            title, xLabel: axis.path, xUnit: 'count', yUnit: m.unit, xCategories: cats, width: 560,
            series: series.map((s): LineSeries => ({ name: s.name, points: s.values.map((v, i) => [i, v] as const) })),
          })
        : barChart({ title, xLabel: axis.path, categories: cats, yUnit: m.unit, series: series as BarSeries[] });
    }
    html += '</div>';
    if (combos.size > MAX_SERIES) html += `<p class="note">Showing ${MAX_SERIES} of ${combos.size} combinations of the other settings.</p>`;
  }
  return html;
}

// ---- per cell ------------------------------------------------------------------------

function seriesName(t: TimeSeries): string {
  return `${t.domain} ${t.device} ${t.direction}`;
}

function timeCharts(c: Cell): string {
  if (c.series.length === 0) return '<p class="note">No time series recorded for this cell.</p>';
  let html = '<div class="charts">';
  let more = '';
  // Block and network apart: their rates and latencies differ by orders of magnitude.
  for (const kind of ['block', 'network'] as const) {
    const all = c.series.filter((t) => t.kind === kind);
    if (all.length === 0) continue;
    const ts = all.slice(0, MAX_SERIES);
    if (all.length > ts.length) more += `<p class="note">Showing ${ts.length} of ${all.length} ${kind} series.</p>`;
    html += lineChart({
      title: `${kind} throughput over time`, xLabel: 'seconds since the cell started', xUnit: 's', yUnit: 'bytes/s',
      series: ts.map((t) => ({ name: seriesName(t), points: t.samples.map((s) => [s.t, s.bytes_per_s] as const) })),
    });
    const latSeries: LineSeries[] = [];
    for (const t of ts) {
      if (t.samples.some((s) => s.lat_mean_ns !== null)) latSeries.push({ name: `${seriesName(t)} mean`, points: t.samples.map((s) => [s.t, s.lat_mean_ns] as const) });
      if (t.samples.some((s) => s.lat_p99_ns !== null)) latSeries.push({ name: `${seriesName(t)} p99`, points: t.samples.map((s) => [s.t, s.lat_p99_ns] as const), dashed: true });
    }
    if (latSeries.length > 0) {
      html += lineChart({
        title: kind === 'block' ? 'block completion latency over time' : 'network round-trip time over time',
        xLabel: 'seconds since the cell started', xUnit: 's', yUnit: 'ns', series: latSeries.slice(0, MAX_SERIES),
      });
    }
  }
  return `${html}</div>${more}`;
}

function counterKeys(list: readonly IoCounters[]): string[] {
  const keys: string[] = [];
  for (const c of list) for (const k of Object.keys(c.per_io)) if (!keys.includes(k)) keys.push(k);
  return keys;
}

function countersTable(list: readonly IoCounters[]): string {
  if (list.length === 0) return '<p class="note">No device counters for this cell.</p>';
  let html = '';
  for (const kind of ['block', 'network'] as const) {
    const rows = list.filter((c) => c.kind === kind);
    if (rows.length === 0) continue;
    const keys = counterKeys(rows);
    html += `<table class="counters"><thead><tr><th class="l">domain</th><th class="l">device</th><th>${kind === 'block' ? 'I/Os' : 'packets'}</th>` +
      keys.map((k) => `<th>${esc(k)}</th>`).join('') + '</tr></thead><tbody>';
    for (const c of rows) {
      html += `<tr><td class="l">${esc(c.domain)}</td><td class="l">${esc(c.device)}</td><td>${esc(fmtNum(c.ios))}</td>` +
        keys.map((k) => `<td title="total ${esc(fmtNum(c.totals[k] ?? 0))}">${c.per_io[k] === undefined ? '-' : esc(fmtNum(c.per_io[k] ?? 0))}</td>`).join('') + '</tr>';
    }
    html += `</tbody></table><p class="note">${kind === 'block' ? 'Per completed I/O' : 'Per packet'}; hover a value for the total.</p>`;
  }
  return html;
}

function cellSection(c: Cell, open: boolean): string {
  const status = c.status === 'ok' ? '' : ` — <span class="status-bad">FAILED</span>`;
  let html = `<details class="cell" id="cell-${c.index}"${open ? ' open' : ''}><summary>cell ${c.index}: ${esc(pointLabel(c.point))}${status}</summary>`;
  html += `<p class="meta">started ${esc(c.started)}, ${esc(fmtUnit(c.duration_ms / 1000, 's'))}; machine ${esc(fmtNum(c.machine.memory / 1024 ** 2))} MiB, ${c.machine.page_size} B pages, ` +
    `dom0 ${esc(c.machine.dom0.memory_model)} with DMA ${esc(c.machine.dom0.dma)}, IOMMU ${esc(c.machine.dom0.iommu)}</p>`;
  if (c.error !== null) html += `<p class="status-bad">${esc(c.error)}</p>`;
  html += timeCharts(c);
  html += `<h3>per-I/O device counters</h3>${countersTable(c.counters)}`;
  if (c.xentop !== null) html += `<h3>domains at the end (xentop -b)</h3><pre>${esc(xentopBatch(xentopFromJson(c.xentop), { vbds: true, networks: true }))}</pre>`;
  return `${html}</details>`;
}

// ---- counters across cells ---------------------------------------------------------------

function countersAcrossCells(doc: XensimResults): string {
  const cells = cellsInOrder(doc);
  const devices = new Map<string, { label: string; per: IoCounters['per'] }>();
  for (const c of cells) for (const k of c.counters) devices.set(`${k.kind}|${k.domain}|${k.device}`, { label: `${k.domain} ${k.device}`, per: k.per });
  if (devices.size === 0) return '<p class="note">No device counters recorded.</p>';
  let html = '<div class="charts">';
  for (const [key, d] of devices) {
    const [kind, domain, device] = key.split('|') as [string, string, string];
    const per = cells.map((c) => c.counters.find((k) => k.kind === kind && k.domain === domain && k.device === device));
    // The counters that vary or matter: the largest per-I/O values first, at most eight.
    const keys = counterKeys(per.filter((x): x is IoCounters => x !== undefined))
      .map((k) => ({ k, max: Math.max(0, ...per.map((p) => p?.per_io[k] ?? 0)) }))
      .filter((x) => x.max > 0 && !/bytes$/.test(x.k))
      .sort((a, b) => b.max - a.max)
      .slice(0, 8)
      .map((x) => x.k);
    if (keys.length === 0) continue;
    const shown = cells.slice(0, MAX_SERIES);
    html += barChart({
      title: `${d.label}: counters per ${d.per === 'io' ? 'I/O' : 'packet'}`,
      xLabel: 'counter',
      categories: keys,
      yUnit: 'count',
      series: shown.map((c, i) => ({ name: `cell ${c.index}: ${pointLabel(c.point)}`, values: keys.map((k) => per[i]?.per_io[k] ?? null) })),
    });
  }
  html += '</div>';
  if (cells.length > MAX_SERIES) html += `<p class="note">Charts show the first ${MAX_SERIES} cells; each cell's section has its own table.</p>`;
  return html;
}

// ---- page -------------------------------------------------------------------------------

export interface HtmlOptions {
  /** Page title (default from the scenario). */
  readonly title?: string;
}

/** [renderHtml doc opts] is the report page, complete and self-contained. */
export function renderHtml(doc: XensimResults, o: HtmlOptions = {}): string {
  const title = o.title ?? `xensim ${doc.command}: ${doc.scenario.name}`;
  const sums = new Map(doc.cells.map((c) => [c.index, summarizeCell(c)]));
  const cells = cellsInOrder(doc);
  const merged = doc.merged_from === undefined ? '' : `<p class="meta">Merged from ${doc.merged_from.map((m) => `${esc(m.file)} (${m.shard === null ? 'whole sweep' : `shard ${m.shard.k}/${m.shard.n}`}, ${m.machine.cpus} cpus, node ${esc(m.machine.node)})`).join('; ')}.</p>`;
  const desc = doc.scenario.description === null ? '' : `<p>${esc(doc.scenario.description)}</p>`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>${esc(title)}</h1>
<p class="meta">${esc(describeRun(doc).trim())}</p>
${desc}${merged}
<nav><a href="#summary">Summary</a><a href="#sweep">Sweep comparison</a><a href="#cells">Cells</a><a href="#counters">Per-I/O counters</a></nav>
</header>
<section id="summary"><h2>Summary</h2>
${summaryTable(doc, sums)}
</section>
<section id="sweep"><h2>Sweep comparison</h2>
${sweepSection(doc, sums)}
</section>
<section id="cells"><h2>Cells</h2>
${cells.map((c, i) => cellSection(c, i < OPEN_CELLS)).join('\n')}
</section>
<section id="counters"><h2>Per-I/O counters across cells</h2>
${countersAcrossCells(doc)}
</section>
<footer class="note"><p>Written by xensim ${esc(doc.version)}. Block results follow fio's JSON, network results iperf3's -J; the whole document validates against schemas/xensim-results.schema.json.</p></footer>
<script>${VERIFY_SCRIPT}</script>
</body>
</html>
`;
}
