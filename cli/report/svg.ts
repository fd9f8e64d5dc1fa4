/**
 * Charts as inline SVG text, drawn when the report is built: a line chart
 * (values over time, or over a numeric sweep setting) and a grouped bar chart
 * (values per category). No script and no fonts to fetch: the page that holds
 * them opens offline. Every mark carries a <title>, which browsers show as a
 * tooltip, and a class naming what it is (`line`, `bar`), so tests can find them.
 *
 * Units pick one scale per axis from its largest value (bytes/s in KiB/MiB/GiB
 * per s, bits/s in kbit/Mbit/Gbit per s, ns in ns/µs/ms/s), so every tick of an
 * axis reads in the same unit.
 */

/** Tableau 10: distinct, readable on white, kind to colour-blind readers. */
export const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'] as const;

export function colorOf(i: number): string {
  return PALETTE[i % PALETTE.length] as string;
}

export type Unit = 'bytes/s' | 'bits/s' | 'ns' | 'iops' | 'count' | 's';

/** [escapeXml s] is s safe inside XML/HTML text and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

interface Scale {
  readonly div: number;
  readonly suffix: string;
}

/** [scaleFor unit max] is the unit step that shows `max` with 1–3 integer digits. */
export function scaleFor(unit: Unit, max: number): Scale {
  const m = Math.abs(max);
  const pick = (steps: readonly Scale[]): Scale => {
    let best = steps[0] as Scale;
    for (const s of steps) if (m >= s.div) best = s;
    return best;
  };
  switch (unit) {
    case 'bytes/s':
      return pick([{ div: 1, suffix: 'B/s' }, { div: 1024, suffix: 'KiB/s' }, { div: 1024 ** 2, suffix: 'MiB/s' }, { div: 1024 ** 3, suffix: 'GiB/s' }]);
    case 'bits/s':
      return pick([{ div: 1, suffix: 'bit/s' }, { div: 1e3, suffix: 'kbit/s' }, { div: 1e6, suffix: 'Mbit/s' }, { div: 1e9, suffix: 'Gbit/s' }]);
    case 'ns':
      return pick([{ div: 1, suffix: 'ns' }, { div: 1e3, suffix: 'µs' }, { div: 1e6, suffix: 'ms' }, { div: 1e9, suffix: 's' }]);
    case 'iops':
      return pick([{ div: 1, suffix: 'IOPS' }, { div: 1e3, suffix: 'k IOPS' }, { div: 1e6, suffix: 'M IOPS' }]);
    case 's':
      return { div: 1, suffix: 's' };
    case 'count':
      return { div: 1, suffix: '' };
  }
}

/** [fmtNum v] is v with about 3 significant digits, no exponent for everyday sizes. */
export function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e15 || a < 1e-4) return v.toExponential(2);
  if (a >= 100) return Math.round(v).toString();
  if (a >= 10) return v.toFixed(1).replace(/\.0$/, '');
  if (a >= 1) return v.toFixed(2).replace(/\.?0+$/, '');
  return v.toPrecision(3).replace(/\.?0+$/, '');
}

/** [fmtUnit v unit] is v in its own best scale, e.g. 12.3 MiB/s. */
export function fmtUnit(v: number, unit: Unit): string {
  const s = scaleFor(unit, v);
  return `${fmtNum(v / s.div)}${s.suffix === '' ? '' : ` ${s.suffix}`}`;
}

/** [niceStep range n] is a round step (1, 2, 2.5 or 5 × 10^k) that cuts range into about n parts. */
export function niceStep(range: number, n = 5): number {
  if (!(range > 0) || !Number.isFinite(range)) return 1;
  const raw = range / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return ([1, 2, 2.5, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
}

/** [niceTicks max n] is about n+1 round tick values from 0 to at least max. */
export function niceTicks(max: number, n = 5): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const step = niceStep(max, n);
  const out: number[] = [];
  for (let i = 0; i * step < max + step * 0.999; i++) out.push(Number((i * step).toPrecision(12)));
  return out;
}

const r1 = (x: number): string => (Math.round(x * 10) / 10).toString();

interface Frame {
  readonly width: number;
  readonly height: number;
  readonly left: number;
  readonly right: number;
  readonly top: number;
  readonly bottom: number;
}

function frameFor(width: number, height: number, legendRows: number): Frame {
  return { width, height, left: 64, right: 16, top: 44, bottom: 44 + legendRows * 18 };
}

function header(f: Frame, title: string, cls: string): string {
  // About 7 px per character of the 13 px title font; the full title stays in <title>.
  const room = Math.floor((f.width - 16) / 7);
  const shown = title.length > room ? `${title.slice(0, room - 1)}…` : title;
  return `<svg class="chart ${cls}" viewBox="0 0 ${f.width} ${f.height}" width="${f.width}" height="${f.height}" role="img" aria-label="${escapeXml(title)}">` +
    `<title>${escapeXml(title)}</title>` +
    `<text class="chart-title" x="8" y="18">${escapeXml(shown)}</text>`;
}

/** Y axis: grid lines and tick labels in one scale. Returns the svg and the value→y map. */
function yAxis(f: Frame, max: number, unit: Unit): { svg: string; y: (v: number) => number; top: number } {
  // Round ticks in the unit the axis reads in (0, 10, 20 MiB/s, not 0, 9.54, 19.1).
  const sc = scaleFor(unit, max);
  const ticks = niceTicks(max / sc.div).map((t) => t * sc.div);
  const top = ticks[ticks.length - 1] as number;
  const plotH = f.height - f.top - f.bottom;
  const y = (v: number): number => f.top + plotH - (v / top) * plotH;
  let svg = '';
  for (const t of ticks) {
    const yy = r1(y(t));
    svg += `<line class="grid" x1="${f.left}" x2="${f.width - f.right}" y1="${yy}" y2="${yy}"/>`;
    svg += `<text class="tick" x="${f.left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${escapeXml(fmtNum(t / sc.div))}</text>`;
  }
  if (sc.suffix !== '') svg += `<text class="axis-unit" x="${f.left - 6}" y="${f.top - 8}" text-anchor="end">${escapeXml(sc.suffix)}</text>`;
  return { svg, y, top };
}

function legend(f: Frame, names: readonly string[], dashed: readonly boolean[] = []): string {
  let svg = '';
  let x = f.left;
  let row = 0;
  const y0 = f.height - f.bottom + 50;
  for (const [i, name] of names.entries()) {
    const w = 26 + Math.min(name.length, 48) * 6.6;
    if (x + w > f.width - f.right && x > f.left) {
      x = f.left;
      row++;
    }
    const y = y0 + row * 18;
    const dash = dashed[i] === true ? ' stroke-dasharray="4 3"' : '';
    svg += `<g class="legend-item"><line x1="${r1(x)}" x2="${r1(x + 16)}" y1="${y - 4}" y2="${y - 4}" stroke="${colorOf(i)}" stroke-width="3"${dash}/>` +
      `<text x="${r1(x + 20)}" y="${y}">${escapeXml(name.length > 48 ? `${name.slice(0, 47)}…` : name)}</text></g>`;
    x += w;
  }
  return svg;
}

function legendRows(names: readonly string[], width: number): number {
  let x = 64;
  let rows = names.length > 0 ? 1 : 0;
  for (const name of names) {
    const w = 26 + Math.min(name.length, 48) * 6.6;
    if (x + w > width - 16 && x > 64) {
      x = 64;
      rows++;
    }
    x += w;
  }
  return rows;
}

export interface LineSeries {
  readonly name: string;
  /** [x, y]; a null y breaks the line. */
  readonly points: readonly (readonly [number, number | null])[];
  readonly dashed?: boolean;
}

export interface LineChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly xUnit: Unit;
  readonly yUnit: Unit;
  readonly series: readonly LineSeries[];
  /** Categorical x: tick labels for x = 0, 1, 2 … instead of numbers. */
  readonly xCategories?: readonly string[];
  readonly width?: number;
  readonly height?: number;
}

/** [lineChart o] is an SVG line chart; empty series draw an empty frame saying so. */
export function lineChart(o: LineChartOptions): string {
  const width = o.width ?? 640;
  const rows = legendRows(o.series.map((s) => s.name), width);
  const f = frameFor(width, (o.height ?? 260) + rows * 18, rows);
  const pts = o.series.flatMap((s) => s.points.filter((p): p is readonly [number, number] => p[1] !== null && Number.isFinite(p[1]) && Number.isFinite(p[0])));
  let svg = header(f, o.title, 'line-chart');
  if (pts.length === 0) {
    return `${svg}<text class="empty" x="${f.width / 2}" y="${f.height / 2}" text-anchor="middle">no samples</text></svg>`;
  }
  const cats = o.xCategories;
  const xmin = cats !== undefined ? 0 : Math.min(...pts.map((p) => p[0]));
  const xmax = cats !== undefined ? Math.max(1, cats.length - 1) : Math.max(...pts.map((p) => p[0]));
  const span = xmax - xmin || 1;
  const plotW = f.width - f.left - f.right;
  const pad = cats !== undefined ? plotW / (2 * Math.max(1, cats.length)) : 0;
  const x = (v: number): number => f.left + pad + ((v - xmin) / span) * (plotW - 2 * pad);
  const ya = yAxis(f, Math.max(...pts.map((p) => p[1])), o.yUnit);
  svg += ya.svg;
  // X ticks.
  const xBase = f.height - f.bottom;
  svg += `<line class="axis" x1="${f.left}" x2="${f.width - f.right}" y1="${xBase}" y2="${xBase}"/>`;
  if (cats !== undefined) {
    cats.forEach((c, i) => {
      svg += `<text class="tick" x="${r1(x(i))}" y="${xBase + 14}" text-anchor="middle">${escapeXml(c)}</text>`;
    });
  } else {
    const sc = scaleFor(o.xUnit, xmax);
    const step = niceStep(span / sc.div, Math.max(2, Math.floor(plotW / 90))) * sc.div;
    for (let i = Math.ceil(xmin / step - 1e-9); i * step <= xmax + span * 1e-9; i++) {
      const t = i * step;
      svg += `<text class="tick" x="${r1(x(t))}" y="${xBase + 14}" text-anchor="middle">${escapeXml(fmtNum(Number((t / sc.div).toPrecision(12))))}</text>`;
    }
  }
  svg += `<text class="axis-label" x="${r1(f.left + plotW / 2)}" y="${xBase + 30}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`;
  // Lines and points.
  o.series.forEach((s, i) => {
    let d = '';
    let pen = false;
    let dots = '';
    for (const [px, py] of s.points) {
      if (py === null || !Number.isFinite(py) || !Number.isFinite(px)) {
        pen = false;
        continue;
      }
      const X = r1(x(px));
      const Y = r1(ya.y(py));
      d += `${pen ? 'L' : 'M'}${X} ${Y} `;
      pen = true;
      const xText = cats !== undefined ? (cats[px] ?? String(px)) : fmtUnit(px, o.xUnit);
      dots += `<circle class="dot" cx="${X}" cy="${Y}" r="2.5" fill="${colorOf(i)}"><title>${escapeXml(`${s.name}: ${fmtUnit(py, o.yUnit)} at ${xText}`)}</title></circle>`;
    }
    const dash = s.dashed === true ? ' stroke-dasharray="5 4"' : '';
    if (d !== '') svg += `<path class="line" data-series="${escapeXml(s.name)}" d="${d.trim()}" fill="none" stroke="${colorOf(i)}" stroke-width="2"${dash}/>`;
    svg += dots;
  });
  svg += legend(f, o.series.map((s) => s.name), o.series.map((s) => s.dashed === true));
  return `${svg}</svg>`;
}

export interface BarSeries {
  readonly name: string;
  /** One per category; null = no value (no bar). */
  readonly values: readonly (number | null)[];
}

export interface BarChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly categories: readonly string[];
  readonly series: readonly BarSeries[];
  readonly yUnit: Unit;
  readonly width?: number;
  readonly height?: number;
}

/** [barChart o] is an SVG grouped bar chart: one group per category, one bar per series. */
export function barChart(o: BarChartOptions): string {
  const width = o.width ?? Math.max(420, Math.min(960, 120 + o.categories.length * (24 + o.series.length * 22)));
  const rows = legendRows(o.series.map((s) => s.name), width);
  const f = frameFor(width, (o.height ?? 260) + rows * 18, rows);
  const vals = o.series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  let svg = header(f, o.title, 'bar-chart');
  if (vals.length === 0 || o.categories.length === 0) {
    return `${svg}<text class="empty" x="${f.width / 2}" y="${f.height / 2}" text-anchor="middle">no values</text></svg>`;
  }
  const ya = yAxis(f, Math.max(...vals), o.yUnit);
  svg += ya.svg;
  const plotW = f.width - f.left - f.right;
  const groupW = plotW / o.categories.length;
  const barW = Math.max(2, Math.min(40, (groupW * 0.8) / Math.max(1, o.series.length)));
  const xBase = f.height - f.bottom;
  svg += `<line class="axis" x1="${f.left}" x2="${f.width - f.right}" y1="${xBase}" y2="${xBase}"/>`;
  o.categories.forEach((c, ci) => {
    const gx = f.left + ci * groupW + (groupW - barW * o.series.length) / 2;
    o.series.forEach((s, si) => {
      const v = s.values[ci];
      if (v === null || v === undefined || !Number.isFinite(v)) return;
      const y = ya.y(v);
      svg += `<rect class="bar" x="${r1(gx + si * barW)}" y="${r1(y)}" width="${r1(barW - 1)}" height="${r1(Math.max(0, xBase - y))}" fill="${colorOf(si)}">` +
        `<title>${escapeXml(`${o.xLabel} ${c}, ${s.name}: ${fmtUnit(v, o.yUnit)}`)}</title></rect>`;
    });
    svg += `<text class="tick" x="${r1(f.left + ci * groupW + groupW / 2)}" y="${xBase + 14}" text-anchor="middle">${escapeXml(c)}</text>`;
  });
  svg += `<text class="axis-label" x="${r1(f.left + plotW / 2)}" y="${xBase + 30}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`;
  svg += legend(f, o.series.map((s) => s.name));
  return `${svg}</svg>`;
}
