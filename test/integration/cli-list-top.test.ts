/**
 * `xensim list` and `xensim top` against a real booted machine, through the
 * status channel: this process boots the machine and publishes its status as
 * `xensim boot` does; the commands run as separate processes (as a user
 * would run them in another terminal) and read it.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootMachine } from '../../cli/commands/boot.ts';
import { findStatus, readStatus, startStatusWriter, statusPathFor, type StatusWriter } from '../../cli/status.ts';
import { startTopView, type ViewStream } from '../../cli/report/live.ts';
import { StatsCollector, type DeviceStats } from '../../toolstack/stats.ts';
import type { Machine } from '../../toolstack/machine.ts';

const ROOT = join(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/xensim.mjs');

interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}
function xensim(env: NodeJS.ProcessEnv, ...args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const XL_HEADER = 'Name                                        ID   Mem VCPUs\tState\tTime(s)\n';
const XENTOP_HEADER = '      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID\n';

/** Counters a block driver would report for guest1's xvda (drivers are not attached in this test). */
const GUEST1_DEVICES: DeviceStats = {
  vbds: [{ dev: 51712, backendType: 'blkback', ooReqs: 3, rdReqs: 1200, wrReqs: 800, rdSects: 9600, wrSects: 6400 }],
  nets: [{ txBytes: 2_048_000, txPackets: 1500, txErrs: 0, txDrop: 0, rxBytes: 1_024_000, rxPackets: 900, rxErrs: 0, rxDrop: 0 }],
};

describe('xensim list and top against a booted machine', function () {
  this.timeout(120_000);
  let machine: Machine;
  let cleanup: () => void = () => {};
  let base = '';
  let socket = '';
  let writer: StatusWriter;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    base = mkdtempSync(join(tmpdir(), 'xensim-listtop-'));
    mkdirSync(join(base, 'xensim-a'));
    socket = join(base, 'xensim-a', 'xenstored.sock');
    const b = await bootMachine({ domains: 2, xenstoreSocket: socket, memory: 64, pageSize: 4096, dom0Model: 'p2m', domuModel: 'vp', domuMemory: 4 }, () => {});
    machine = b.machine;
    cleanup = b.cleanup;
    const logged: string[] = [];
    writer = startStatusWriter(machine, socket, (l) => logged.push(l), { intervalMs: 200, deviceStats: (domid) => (domid === 1 ? GUEST1_DEVICES : null) });
    await writer.writeNow();
    expect(logged).to.deep.equal([`xensim: status for \`xensim list\` and \`xensim top\` in ${socket}.status.json`]);
    env = { XENSTORED_PATH: socket, CI: 'true' };
  });
  after(async () => {
    writer?.stop();
    await machine?.shutdown();
    cleanup();
    if (base !== '') rmSync(base, { recursive: true, force: true });
  });

  it('publishes the status next to the xenstored socket', () => {
    expect(writer.path).to.equal(statusPathFor(socket));
    const st = readStatus(writer.path);
    expect(st.ok, st.ok ? '' : st.error.message).to.equal(true);
    if (!st.ok) return;
    expect(st.value.pid).to.equal(process.pid);
    expect(st.value.sample.domains.map((d) => [d.name, d.domid, d.mem_kib])).to.deep.equal([['Domain-0', 0, 16384], ['guest1', 1, 4096], ['guest2', 2, 4096]]);
    expect(st.value.sample.node.tot_mem_kib).to.equal(65536);
  });

  it('reads the machine directly: every domain, with the counters its devices report', async () => {
    const s = await new StatsCollector(machine, { deviceStats: (id) => (id === 1 ? GUEST1_DEVICES : null) }).sample();
    expect(s.domains.map((d) => d.name)).to.deep.equal(['Domain-0', 'guest1', 'guest2']);
    expect(s.domains[1]?.vbds).to.deep.equal(GUEST1_DEVICES.vbds);
    expect(s.domains.every((d) => d.state.running || d.state.blocked)).to.equal(true);
    expect(Number(s.node.freeMemKiB)).to.be.greaterThan(0).and.lessThan(65536);
  });

  it('`xensim list` prints the xl list table of that machine', async () => {
    const r = await xensim(env, 'list');
    expect(r.stderr).to.equal('');
    expect(r.code).to.equal(0);
    // Each vCPU's thread CPU time and run state are live values: check their shape.
    const lines = r.stdout.split('\n');
    expect(lines[0] + '\n').to.equal(XL_HEADER);
    expect(lines[1]).to.match(/^Domain-0 {37}0 {4}16 {5}1 {5}[r-][b-]---- +\d+\.\d$/);
    expect(lines[2]).to.match(/^guest1 {39}1 {5}4 {5}1 {5}[r-][b-]---- +\d+\.\d$/);
    expect(lines[3]).to.match(/^guest2 {39}2 {5}4 {5}1 {5}[r-][b-]---- +\d+\.\d$/);
    expect(lines.slice(4)).to.deep.equal(['']);
    // Each row is running or blocked, never both.
    for (const l of lines.slice(1, 4)) expect(/ (r-|-b)---- /.test(l), l).to.equal(true);
  });

  it('`xensim list DOMAIN` prints one row, and refuses unknown domains in xl\'s words', async () => {
    const one = await xensim(env, 'list', 'guest2');
    expect(one.stdout).to.match(new RegExp(`^${XL_HEADER.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}guest2 {39}2 {5}4 {5}1 {5}(r-|-b)---- +\\d+\\.\\d\\n$`));
    const byId = await xensim(env, 'list', '1');
    expect(byId.stdout.split('\n')[1]).to.match(/^guest1 {39}1 /);
    const name = await xensim(env, 'list', 'nosuch');
    expect([name.code, name.stdout, name.stderr]).to.deep.equal([1, '', 'nosuch is an invalid domain identifier (rc=-6)\n']);
    const id = await xensim(env, 'list', '7');
    expect([id.code, id.stderr]).to.deep.equal([1, "Error: Domain '7' does not exist.\n"]);
  });

  it('`xensim list -l` prints each domain\'s configuration as xl list -l does', async () => {
    const r = await xensim(env, 'list', '-l');
    expect([r.code, r.stderr]).to.deep.equal([0, '']);
    type Entry = { domid: number; config: { c_info: { name: string; type: string }; b_info: { max_memkb: number }; disks: unknown[]; nics: unknown[]; on_crash: string } };
    const all = JSON.parse(r.stdout) as Entry[];
    expect(all.map((e) => [e.domid, e.config.c_info.name, e.config.c_info.type, e.config.b_info.max_memkb])).to.deep.equal([
      [0, 'Domain-0', 'pv', 16384], [1, 'guest1', 'pvh', 4096], [2, 'guest2', 'pvh', 4096],
    ]);
    expect(all[1]!.config.on_crash).to.equal('destroy');
    const one = await xensim(env, 'list', '--long', 'guest2');
    expect((JSON.parse(one.stdout) as Entry[]).map((e) => e.domid)).to.deep.equal([2]);
  });

  it('`xensim top -b -i 2` prints two xentop -b iterations, with the device counters', async () => {
    const r = await xensim(env, 'top', '-b', '-i', '2', '-d', '0.3', '-x');
    expect(r.code, r.stderr).to.equal(0);
    const iterations = r.stdout.split(XENTOP_HEADER);
    expect(iterations).to.have.length(3); // '' before the first header
    for (const it of iterations.slice(1)) {
      const rows = it.split('\n').filter((l) => l !== '');
      // STATE (d s b c p r) and CPU(sec)/CPU(%) are live values; the rest is exact.
      // The live columns are replaced by placeholders; everything else is compared byte for byte.
      const live = (row: string | undefined) => (row ?? '').replace(/^( *\S+) --([b-])--([r-]) +(\d+) +(\d+\.\d)/, (_m, name: string) => `${name} STATE CPU`);
      expect(live(rows[0])).to.equal('  Domain-0 STATE CPU      16384   25.0      16384      25.0     1    0        0        0    0        0        0        0          0          0    0');
      // 4096/65536 = 6.25%: glibc rounds the exact binary value half-to-even, 6.2.
      expect(live(rows[1])).to.equal('    guest1 STATE CPU       4096    6.2       4096       6.2     1    1     2000     1000    1        3     1200      800       9600       6400    0');
      expect(rows[2]).to.equal('VBD BlkBack 51712 [ca: 0]  OO:        3   RD:     1200   WR:      800   RSECT:       9600   WSECT:       6400');
      expect(rows[3]).to.match(/^ {4}guest2 /);
    }
  });

  it('`xensim top` without a terminal prints as -b does, and rejects bad values', async () => {
    const r = await xensim(env, 'top', '-i', '1');
    expect(r.code).to.equal(0);
    expect(r.stdout.startsWith(XENTOP_HEADER)).to.equal(true);
    expect(r.stdout).not.to.include('\x1b[');
    const bad = await xensim(env, 'top', '-d', '0');
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.include("option '-d, --delay <SEC>' argument '0' is invalid. expected seconds above 0");
  });

  it('finds the machine without XENSTORED_PATH when it is the only one running', () => {
    const found = findStatus({ env: {}, tmp: base });
    expect(found).to.deep.equal({ ok: true, value: writer.path });
    const none = findStatus({ env: {}, tmp: join(base, 'xensim-a') });
    expect(none.ok).to.equal(false);
    if (!none.ok) expect(none.error.message).to.match(/^xensim: no running machine found: start one with `xensim boot`/);
  });

  it('draws the live view on a terminal and gives the screen back, or prints batch iterations elsewhere', async () => {
    const tty = new (class implements ViewStream { text = ''; isTTY = true; write(s: string): boolean { this.text += s; return true; } })();
    const v = startTopView(machine, { stream: tty, delaySec: 0.1, env: {} });
    await new Promise((r) => setTimeout(r, 600));
    await v.stop();
    expect(tty.text.startsWith('\x1b[?1049h')).to.equal(true);
    expect(tty.text.endsWith('\x1b[?25h\x1b[?1049l')).to.equal(true);
    expect(tty.text).to.match(/xentop - \d\d:\d\d:\d\d {3}Xen 4\.17-xensim\n3 domains: \d running, \d blocked, 0 paused, 0 crashed, 0 dying, 0 shutdown \n/);
    expect(tty.text.split('\x1b[H\x1b[2J').length - 1).to.be.at.least(2);

    const log = new (class implements ViewStream { text = ''; isTTY = false; write(s: string): boolean { this.text += s; return true; } })();
    const b = startTopView(machine, { stream: log, delaySec: 0.1 });
    await new Promise((r) => setTimeout(r, 250));
    await b.stop();
    expect(log.text).not.to.include('\x1b[');
    expect(log.text.split(XENTOP_HEADER).length - 1).to.be.at.least(2);

    const quiet = new (class implements ViewStream { text = ''; isTTY = true; write(s: string): boolean { this.text += s; return true; } })();
    await startTopView(machine, { stream: quiet, json: true }).stop();
    expect(quiet.text).to.equal('');
  });

  it('says the machine is gone once its status is stale or removed', async () => {
    // A status left by a process that died.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid as number;
    const stalePath = join(base, 'stale.status.json');
    const doc = JSON.parse(readFileSync(writer.path, 'utf8')) as Record<string, unknown>;
    writeFileSync(stalePath, JSON.stringify({ ...doc, pid: dead }));
    const r = await xensim({ CI: 'true' }, 'list', '--status', stalePath);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal(`xensim: the machine at ${socket} is not running: its process (pid ${dead}) has exited; ${stalePath} is left over\n`);
    // A writer that stopped writing long ago.
    const old = readStatus(writer.path, Date.now() + 60_000);
    expect(old.ok).to.equal(false);
    if (!old.ok) expect(old.error.message).to.match(/has not updated its status for 60 s/);
    // Stopping removes the file.
    writer.stop();
    expect(existsSync(writer.path)).to.equal(false);
    const gone = await xensim(env, 'list');
    expect(gone.code).to.equal(1);
    expect(gone.stderr).to.equal(`xensim: no status at ${writer.path}: is \`xensim boot\` running there? (it publishes ${writer.path} while it runs)\n`);
  });
});

describe('CPU time of domains, measured in their threads', function () {
  this.timeout(120_000);
  let machine: Machine;
  let cleanup: () => void = () => {};

  before(async () => {
    const b = await bootMachine({ domains: 0, memory: 64, pageSize: 4096, dom0Model: 'p2m', domuModel: 'vp', domuMemory: 4 }, () => {});
    machine = b.machine;
    cleanup = b.cleanup;
    for (const name of ['busy', 'idle']) {
      await machine.createDomain({ name, memoryKiB: 4096, model: 'vp', entry: new URL('../unit/report/cpu-agent-main.ts', import.meta.url), kind: 'domU' });
    }
  });
  after(async () => {
    await machine?.shutdown();
    cleanup();
  });

  it('reads each domain\'s own CPU time over comlink, and tells a busy vCPU from a blocked one', async () => {
    const c = new StatsCollector(machine);
    const first = await c.sample();
    expect(first.cpuMeasured).to.deep.equal([0, 1, 2]); // every domain's agent reads its thread's CPU time
    const busyAgent = machine.domU(1) as unknown as { burnCpu(ms: number): Promise<number> };
    const burnt = await busyAgent.burnCpu(300);
    const second = await c.sample();
    const elapsedNs = second.monoNs - first.monoNs;
    const delta = (id: number): number =>
      Number(second.domains.find((d) => d.domid === id)?.cpuNs) - Number(first.domains.find((d) => d.domid === id)?.cpuNs);
    // What the guest measured in itself is what the toolstack sees; the idle guest slept in Atomics.wait.
    expect(burnt).to.be.at.least(300e6);
    expect(delta(1)).to.be.at.least(burnt).and.at.most(elapsedNs);
    expect(delta(2)).to.be.lessThan(delta(1) / 5);
    const busy = second.domains.find((d) => d.domid === 1)!;
    const idle = second.domains.find((d) => d.domid === 2)!;
    expect(busy.state.running).to.equal(delta(1) / elapsedNs >= 0.5);
    expect(idle.state.blocked).to.equal(true);
  });
});
