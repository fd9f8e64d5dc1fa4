import { expect } from 'chai';
import { barChart, escapeXml, fmtUnit, lineChart, niceTicks, scaleFor } from '../../../cli/report/svg.ts';
import { renderHtml } from '../../../cli/report/html.ts';
import type { XensimResults } from '../../../cli/report/results.ts';
import { fixtureDoc } from './fixture.ts';

/** Numbers of an SVG path's d attribute, as [x, y] pairs. */
function pathPoints(d: string): [number, number][] {
  const nums = d.replace(/[ML]/g, ' ').trim().split(/\s+/).map(Number);
  const out: [number, number][] = [];
  for (let i = 0; i + 1 < nums.length; i += 2) out.push([nums[i] as number, nums[i + 1] as number]);
  return out;
}

describe('report charts (SVG)', () => {
  it('picks round ticks and one unit per axis', () => {
    expect(niceTicks(38)).to.deep.equal([0, 10, 20, 30, 40]);
    expect(niceTicks(0.9)).to.deep.equal([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(12.3)).to.deep.equal([0, 2.5, 5, 7.5, 10, 12.5]);
    expect(scaleFor('bytes/s', 40 * 1024 * 1024).suffix).to.equal('MiB/s');
    expect(scaleFor('ns', 1_500).suffix).to.equal('µs');
    expect(fmtUnit(2.5e9, 'bits/s')).to.equal('2.5 Gbit/s');
    expect(fmtUnit(512 * 1024, 'bytes/s')).to.equal('512 KiB/s');
    expect(fmtUnit(1_250_000, 'ns')).to.equal('1.25 ms');
  });

  it('draws a line through every sample, higher values higher up, and breaks it at a gap', () => {
    const svg = lineChart({
      title: 't', xLabel: 's', xUnit: 's', yUnit: 'bytes/s',
      series: [{ name: 'a', points: [[0, 0], [1, 1024], [2, 2048], [3, null], [4, 512]] }],
    });
    const d = /<path class="line"[^>]* d="([^"]+)"/.exec(svg)?.[1] ?? '';
    expect(d.match(/M/g)).to.have.length(2); // the null starts a new stroke
    const pts = pathPoints(d);
    expect(pts).to.have.length(4);
    const ys = pts.map((p) => p[1]);
    expect(ys[1]).to.be.lessThan(ys[0] as number); // SVG y grows downwards
    expect(ys[2]).to.be.lessThan(ys[1] as number);
    const xs = pts.map((p) => p[0]);
    expect(xs).to.deep.equal([...xs].sort((a, b) => a - b));
    expect(svg.match(/<circle class="dot"/g)).to.have.length(4);
    expect(svg).to.include('<title>a: 2 KiB/s at 2 s</title>');
  });

  it('draws bars whose heights are proportional to their values', () => {
    const svg = barChart({ title: 't', xLabel: 'x', categories: ['a', 'b'], yUnit: 'count', series: [{ name: 's', values: [10, 40] }, { name: 'u', values: [null, 20] }] });
    const h = [...svg.matchAll(/<rect class="bar"[^>]* height="([0-9.]+)"/g)].map((m) => Number(m[1]));
    expect(h).to.have.length(3);
    expect((h[1] as number) / (h[0] as number)).to.be.closeTo(4, 0.05);
    expect((h[1] as number) / (h[2] as number)).to.be.closeTo(2, 0.05);
  });

  it('escapes names, so a hostile label cannot inject markup', () => {
    expect(escapeXml(`<script>"&'`)).to.equal('&lt;script&gt;&quot;&amp;&#39;');
    const svg = barChart({ title: '<b>', xLabel: 'x', categories: ['<i>'], yUnit: 'count', series: [{ name: '</svg><script>alert(1)</script>', values: [1] }] });
    expect(svg).not.to.include('<script>');
    expect(svg).not.to.include('<b>');
  });

  it('says so instead of drawing an empty chart', () => {
    expect(lineChart({ title: 't', xLabel: 's', xUnit: 's', yUnit: 'ns', series: [] })).to.include('no samples');
  });
});

describe('the HTML report', function () {
  this.timeout(30_000);
  let doc: XensimResults;
  let html: string;
  before(async () => {
    doc = await fixtureDoc();
    html = renderHtml(doc);
  });

  it('is one self-contained page: no URL to fetch, and a policy that forbids fetching', () => {
    expect(html.startsWith('<!DOCTYPE html>')).to.equal(true);
    expect(html).to.include(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">`);
    expect(html).not.to.match(/\b(src|href)="(?!#)/); // only in-page anchors
    expect(html).not.to.match(/https?:\/\//);
    expect(html).not.to.match(/@import|url\(/);
  });

  it('has the summary table, the sweep charts, each cell with its time charts, and the counters', () => {
    expect(html.match(/<table class="summary">/g)).to.have.length(1);
    expect(html.match(/<tr class="[^"]*"><td><a href="#cell-\d">/g)).to.have.length(4);
    // Sweep: a bar chart per metric of the string axis, a line chart per metric of the numeric one.
    expect(html).to.include('block throughput (read + write) by machine.dom0.dma');
    expect(html).to.include('mean completion latency by block.0.fio.iodepth');
    for (let i = 0; i < 4; i++) expect(html).to.include(`id="cell-${i}"`);
    expect(html.match(/<text class="chart-title"[^>]*>block throughput over time</g)).to.have.length(4);
    expect(html.match(/<text class="chart-title"[^>]*>network round-trip time over time</g)).to.have.length(4);
    expect(html).to.include('domu1 xvda: counters per I/O');
    expect(html).to.include('domu1 vif1.0: counters per packet');
    // Domains at the end, as xentop -b prints them.
    expect(html).to.match(/<pre>\s+NAME {2}STATE {3}CPU\(sec\)/);
  });

  it('escapes what the scenario says about itself', () => {
    const evil = { ...doc, scenario: { ...doc.scenario, name: '<img src=x onerror=alert(1)>', description: '</p><script>x()</script>' } };
    const page = renderHtml(evil);
    expect(page).not.to.include('<img');
    expect(page.match(/<script>/g)).to.have.length(1); // only our own counting script
    expect(page).to.include('&lt;img src=x onerror=alert(1)&gt;');
  });

  it('collapses all but the first four cells of a large sweep', () => {
    const many = { ...doc, cells: [...doc.cells, ...doc.cells.map((c) => ({ ...c, index: c.index }))] };
    const page = renderHtml(many);
    expect(page.match(/<details class="cell" id="cell-\d+" open>/g)).to.have.length(4);
  });
});
