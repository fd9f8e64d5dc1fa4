/**
 * The HTML report in a real browser: Debian's chromium, headless, offline
 * (network to anywhere refused), must draw every chart. Two independent
 * checks: the DOM after load (the page's own script records how many line
 * paths have a non-zero length and how many bars have a box), and a
 * screenshot whose pixels must show the chart colours.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { inflateSync } from 'node:zlib';
import { renderHtml } from '../../cli/report/html.ts';
import { PALETTE } from '../../cli/report/svg.ts';
import { fixtureDoc } from '../unit/report/fixture.ts';

const run = promisify(execFile);
const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

function chromiumArgs(profile: string): string[] {
  return [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--no-first-run', `--user-data-dir=${profile}`,
    // Offline: every host name fails to resolve, so any fetch the page tried would fail visibly.
    '--host-resolver-rules=MAP * ~NOTFOUND',
  ];
}

interface Png {
  readonly width: number;
  readonly height: number;
  /** RGBA, 4 bytes per pixel. */
  readonly rgba: Uint8Array;
}

/** A small PNG decoder for what Chromium writes: 8-bit RGB or RGBA, not interlaced. */
function decodePng(buf: Buffer): Png {
  if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
  let off = 8;
  let width = 0, height = 0, colorType = 0;
  const idat: Buffer[] = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8 || data[12] !== 0) throw new Error('only 8-bit, non-interlaced PNGs');
      colorType = data[9] as number;
    } else if (type === 'IDAT') idat.push(data);
    off += 12 + len;
  }
  const bpp = colorType === 6 ? 4 : colorType === 2 ? 3 : 0;
  if (bpp === 0) throw new Error(`PNG colour type ${colorType} not handled`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * bpp;
  const out = new Uint8Array(width * height * 4);
  let prev = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)] as number;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? (cur[i - bpp] as number) : 0;
      const b = prev[i] as number;
      const c = i >= bpp ? (prev[i - bpp] as number) : 0;
      const x = line[i] as number;
      let v: number;
      switch (filter) {
        case 0: v = x; break;
        case 1: v = x + a; break;
        case 2: v = x + b; break;
        case 3: v = x + ((a + b) >> 1); break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default: throw new Error(`bad PNG filter ${filter}`);
      }
      cur[i] = v & 0xff;
    }
    for (let px = 0; px < width; px++) {
      const o = (y * width + px) * 4;
      out[o] = cur[px * bpp] as number;
      out[o + 1] = cur[px * bpp + 1] as number;
      out[o + 2] = cur[px * bpp + 2] as number;
      out[o + 3] = bpp === 4 ? (cur[px * bpp + 3] as number) : 255;
    }
    prev = cur;
  }
  return { width, height, rgba: out };
}

function hex(c: string): [number, number, number] {
  return [parseInt(c.slice(1, 3), 16), parseInt(c.slice(3, 5), 16), parseInt(c.slice(5, 7), 16)];
}

describe('the HTML report in headless Chromium', function () {
  this.timeout(120_000);
  let dir = '';
  let page = '';
  before(async function () {
    if (CHROMIUM === undefined) {
      console.warn('SKIPPED: the HTML report render test, because chromium is not installed (apt-get install chromium)');
      this.skip();
    }
    dir = mkdtempSync(join(tmpdir(), 'xensim-html-'));
    page = join(dir, 'report.html');
    writeFileSync(page, renderHtml(await fixtureDoc()));
  });
  after(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('draws every line and bar of the page, offline', async () => {
    const { stdout } = await run(CHROMIUM as string, [...chromiumArgs(join(dir, 'profile-dom')), '--dump-dom', `file://${page}`], { maxBuffer: 64 << 20 });
    const html = /<html[^>]*>/.exec(stdout)?.[0] ?? '';
    const attr = (name: string): number => Number(new RegExp(`${name}="(\\d+)"`).exec(html)?.[1] ?? NaN);
    const written = readFileSync(page, 'utf8');
    // Marks with a size to draw: lines through two points or more, bars of a value above 0.
    const lines = [...written.matchAll(/<path class="line"[^>]* d="([^"]+)"/g)].filter((m) => /L/.test(m[1] as string)).length;
    const bars = [...written.matchAll(/<rect class="bar"[^>]* height="([0-9.]+)"/g)].filter((m) => Number(m[1]) > 0).length;
    expect(lines).to.be.greaterThan(20);
    expect(bars).to.be.greaterThan(20);
    // The script ran (so the page loaded under its CSP) and found every mark drawn with real size.
    expect(attr('data-lines-drawn'), html).to.equal(lines);
    expect(attr('data-bars-drawn'), html).to.equal(bars);
    expect(attr('data-line-length')).to.be.greaterThan(lines * 100);
  });

  it('shows the charts in a screenshot: chart colours on the page, not just white', async () => {
    const shot = join(dir, 'shot.png');
    await run(CHROMIUM as string, [...chromiumArgs(join(dir, 'profile-shot')), '--hide-scrollbars', '--window-size=1400,2200', `--screenshot=${shot}`, `file://${page}`]);
    const png = decodePng(readFileSync(shot));
    expect(png.width).to.equal(1400);
    const [br, bg, bb] = hex(PALETTE[0]);
    const [or, og, ob] = hex(PALETTE[1]);
    let blue = 0, orange = 0, white = 0;
    for (let i = 0; i < png.rgba.length; i += 4) {
      const r = png.rgba[i] as number, g = png.rgba[i + 1] as number, b = png.rgba[i + 2] as number;
      if (r === 255 && g === 255 && b === 255) white++;
      if (Math.abs(r - br) < 8 && Math.abs(g - bg) < 8 && Math.abs(b - bb) < 8) blue++;
      if (Math.abs(r - or) < 8 && Math.abs(g - og) < 8 && Math.abs(b - ob) < 8) orange++;
    }
    const total = png.width * png.height;
    // Bars and lines of the first two series colours cover thousands of pixels; the page is mostly white.
    expect(blue, 'pixels in the first series colour').to.be.greaterThan(5000);
    expect(orange, 'pixels in the second series colour').to.be.greaterThan(5000);
    expect(white / total).to.be.within(0.5, 0.98);
  });
});
