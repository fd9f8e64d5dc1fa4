import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../../cli/main.ts';

const ROOT = join(import.meta.dirname, '../../..');
const BIN = join(ROOT, 'bin/xensim.mjs');

interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}
/** Runs the real entry point (`node bin/xensim.mjs ...`) as a child process. */
function xensim(...args: string[]): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('xensim config show (as a child process)', function () {
  this.timeout(30_000);
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'xensim-cli-'));
    writeFileSync(join(dir, 'bad.cfg'), 'name = "x"\nmemory = lots\n');
    writeFileSync(join(dir, 'warn.cfg'), 'name = "x"\nmemroy = 5\n');
    writeFileSync(join(dir, 'bad.fio'), '[j]\nbogus=1\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('prints a good domain config as JSON and exits 0', async () => {
    const r = await xensim('config', 'show', 'examples/domu.cfg');
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.equal('');
    const cfg = JSON.parse(r.stdout) as { name: string; memory: number; disk: { vdev: string; devid: number }[]; vif: { mac: string }[] };
    expect(cfg.name).to.equal('domu1');
    expect(cfg.memory).to.equal(128);
    expect(cfg.disk.map((d) => [d.vdev, d.devid])).to.deep.equal([['xvda', 51712], ['xvdb', 51728]]);
    expect(cfg.vif[0]?.mac).to.equal('00:16:3e:00:00:01');
  });

  it('exits 1 with the xl-style message on stderr for a bad file, printing nothing on stdout', async () => {
    const r = await xensim('config', 'show', join(dir, 'bad.cfg'));
    expect(r.code).to.equal(1);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.equal(`${join(dir, 'bad.cfg')}:2:10: config parsing error near \`lots': syntax error, unexpected IDENT, expecting STRING or NUMBER or '['\n`);
  });

  it('prints warnings on stderr but still succeeds', async () => {
    const r = await xensim('config', 'show', join(dir, 'warn.cfg'));
    expect(r.code).to.equal(0);
    expect(r.stderr).to.contain("warning: unknown key `memroy'").and.contain("did you mean `memory'?");
    expect((JSON.parse(r.stdout) as { other: Record<string, unknown> }).other).to.deep.equal({ memroy: '5' });
  });

  it('exits 1 for a missing file', async () => {
    const r = await xensim('config', 'show', 'no/such.cfg');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('no/such.cfg: unable to open configuration file: No such file or directory');
  });

  it('exits non-zero with a clear message for an unknown option or command', async () => {
    const [opt, cmd, missing] = await Promise.all([xensim('config', 'show', '--frobnicate', 'examples/domu.cfg'), xensim('confg'), xensim('config', 'show')]);
    expect(opt.code).to.not.equal(0);
    expect(opt.stderr).to.contain("error: unknown option '--frobnicate'");
    expect(cmd.code).to.not.equal(0);
    expect(cmd.stderr).to.contain("error: unknown command 'confg'").and.contain('(Did you mean config?)');
    expect(missing.code).to.not.equal(0);
    expect(missing.stderr).to.contain("error: missing required argument 'file'");
  });

  it('prints the version and the help, exiting 0', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const [v, h] = await Promise.all([xensim('--version'), xensim('--help')]);
    expect(v.code).to.equal(0);
    expect(v.stdout.trim()).to.equal(pkg.version);
    expect(h.code).to.equal(0);
    expect(h.stdout).to.contain('Usage: xensim').and.contain('config');
  });

  it('shows fio job files and scenarios too, and reports their errors', async () => {
    const [fio, bad, yaml] = await Promise.all([
      xensim('config', 'show', 'examples/mixed.fio'),
      xensim('config', 'show', join(dir, 'bad.fio')),
      xensim('config', 'show', '--sweep', 'examples/scenario.yaml'),
    ]);
    expect(fio.code, fio.stderr).to.equal(0);
    expect((JSON.parse(fio.stdout) as { name: string }[]).map((j) => j.name)).to.deep.equal(['seqwrite', 'mix']);
    expect(bad.code).to.equal(1);
    expect(bad.stderr).to.contain('Bad option <bogus=1>\nDid you mean bs?');
    expect(yaml.code, yaml.stderr).to.equal(0);
    expect(JSON.parse(yaml.stdout)).to.have.length(4);
  });

  it('shows a scenario as `run` reads it: dom0 blkback settings and their sweep axes included', async () => {
    writeFileSync(join(dir, 'bad-blkback.yaml'), 'machine:\n  dom0:\n    blkback: { mode: mapp }\n');
    const [one, sweep, bad] = await Promise.all([
      xensim('config', 'show', 'examples/grant-sweep.yaml'),
      xensim('config', 'show', '--sweep', 'examples/grant-sweep.yaml'),
      xensim('config', 'show', join(dir, 'bad-blkback.yaml')),
    ]);
    expect(one.code, one.stderr).to.equal(0);
    type Shown = { machine: { dom0: { blkback: { mode: string } } } };
    expect((JSON.parse(one.stdout) as Shown).machine.dom0.blkback.mode).to.equal('persistent');
    expect(sweep.code, sweep.stderr).to.equal(0);
    const points = JSON.parse(sweep.stdout) as { point: Record<string, unknown>; scenario: Shown }[];
    expect(points.map((p) => [p.point['machine.dom0.blkback.mode'], p.scenario.machine.dom0.blkback.mode, p.point['block.0.fio_options.iodepth']])).to.deep.equal([
      ['persistent', 'persistent', 1], ['persistent', 'persistent', 32],
      ['map', 'map', 1], ['map', 'map', 32],
      ['copy', 'copy', 1], ['copy', 'copy', 32],
    ]);
    expect(bad.code).to.equal(1);
    expect(bad.stdout).to.equal('');
    expect(bad.stderr).to.contain('bad-blkback.yaml:3:').and.contain('mapp');
  });
});

describe('xensim run() in-process', () => {
  const capture = async (...args: string[]) => {
    let out = '';
    let err = '';
    const code = await run(['node', 'xensim', ...args], { out: (s) => (out += s), err: (s) => (err += s) });
    return { code, out, err };
  };

  it('makes generated MACs reproducible with --seed', async () => {
    const a = await capture('config', 'show', '--seed', '5', join(ROOT, 'examples/domu-dd.cfg'));
    const b = await capture('config', 'show', '--seed', '5', join(ROOT, 'examples/domu-dd.cfg'));
    expect(a.code).to.equal(0);
    expect(a.out).to.equal(b.out);
    expect(await capture('config', 'show', '--seed', 'x', join(ROOT, 'examples/domu-dd.cfg'))).to.deep.include({ code: 1, err: 'error: --seed must be an integer in 0..4294967295, got x\n' });
  });

  it('asks for --type when the file name does not say what it is', async () => {
    const r = await capture('config', 'show', 'README.md');
    expect(r).to.deep.include({ code: 1, err: 'error: cannot tell what README.md is from its name; use --type cfg|fio|scenario\n' });
  });
});
