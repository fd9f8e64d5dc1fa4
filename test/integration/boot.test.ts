import { expect } from 'chai';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { bootMachine } from '../../cli/commands/boot.ts';
import type { Machine } from '../../toolstack/machine.ts';

const run = promisify(execFile);
const haveTools = ['/usr/bin/xenstore-ls', '/usr/bin/xenstore-read'].every((p) => existsSync(p));

describe('a booted machine seen through XenStore', function () {
  this.timeout(120_000);
  let machine: Machine;
  let socket: string;
  let cleanup: () => void;

  before(async () => {
    const b = await bootMachine({ domains: 2, memory: 128, pageSize: 4096, dom0Model: 'p2m', domuModel: 'vp', domuMemory: 8 }, () => {});
    ({ machine, socket, cleanup } = b);
  });
  after(async () => { await machine?.shutdown(); cleanup?.(); });

  it('names dom0 and the guests under /local/domain, laid out as libxl does', async () => {
    const d0 = machine.dom0!;
    expect(await d0.xsRead('/local/domain/0/name')).to.deep.equal({ ok: true, value: 'Domain-0' });
    expect(await d0.xsRead('/local/domain/1/name')).to.deep.equal({ ok: true, value: 'guest1' });
    expect(await d0.xsRead('/local/domain/2/domid')).to.deep.equal({ ok: true, value: '2' });
    // libxl: the home is dom0's and readable by the guest; data/ is the guest's own.
    expect(await d0.xsGetPerms('/local/domain/1')).to.deep.equal({ ok: true, value: ['n0', 'r1'] });
    expect(await d0.xsGetPerms('/local/domain/1/data')).to.deep.equal({ ok: true, value: ['n1'] });
    expect((await d0.introduced()).sort()).to.deep.equal([1, 2]);
  });

  it('lets a guest read and write its own subtree over its ring, and not another guest\'s', async () => {
    const g1 = machine.domU(1);
    expect(await g1.xsRead('/local/domain/1/name')).to.deep.equal({ ok: true, value: 'guest1' });
    expect(await g1.xsRead('name')).to.deep.equal({ ok: true, value: 'guest1' });
    expect((await g1.xsWrite('data/hello', 'world')).ok).to.equal(true);
    expect(await machine.dom0!.xsRead('/local/domain/1/data/hello')).to.deep.equal({ ok: true, value: 'world' });
    const other = await g1.xsRead('/local/domain/2/name');
    expect(other.ok).to.equal(false);
    if (!other.ok) expect(other.error).to.match(/EACCES/);
    expect((await g1.xsWrite('/local/domain/2/data/x', 'y')).ok).to.equal(false);
  });

  it('serves Debian\'s xenstore-ls on the socket it prints', async function () {
    if (!haveTools) {
      console.warn('SKIPPED: xenstore-ls is not installed (apt-get install xenstore-utils)');
      this.skip();
    }
    const { stdout } = await run('xenstore-ls', ['-f', '/local/domain'], { env: { ...process.env, XENSTORED_PATH: socket } });
    expect(stdout).to.include('/local/domain/0/name = "Domain-0"');
    expect(stdout).to.include('/local/domain/1/name = "guest1"');
    expect(stdout).to.include('/local/domain/2/name = "guest2"');
    expect(stdout).to.include('/local/domain/1/data/hello = "world"');
  });

  it('forgets a destroyed guest and unmaps its ring page, leaking nothing', async () => {
    await machine.destroyDomain(2);
    expect((await machine.dom0!.xsRead('/local/domain/2/name')).ok).to.equal(false);
    expect(await machine.dom0!.introduced()).to.deep.equal([1]);
    expect((await machine.hv.domains()).map((d) => d.domid).sort()).to.deep.equal([0, 1]);
    const rec = await machine.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });
});

describe('xensim boot (the command)', function () {
  this.timeout(120_000);
  it('prints export XENSTORED_PATH, serves xenstore-ls there, and stops cleanly on SIGINT', async function () {
    const child = spawn(process.execPath, ['bin/xensim.mjs', 'boot', '--domains', '1', '--memory', '64M', '--domu-memory', '4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let errText = '';
    child.stderr.on('data', (b: Buffer) => { errText += b.toString(); });
    const line = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no export line; stderr: ${errText}`)), 60_000);
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /^export XENSTORED_PATH=(.+)$/m.exec(out);
        if (m) { clearTimeout(t); resolve(m[1] as string); }
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${errText}`)));
    });
    if (haveTools) {
      const { stdout } = await run('xenstore-read', ['/local/domain/1/name'], { env: { ...process.env, XENSTORED_PATH: line } });
      expect(stdout.trim()).to.equal('guest1');
    } else {
      console.warn('SKIPPED (part): xenstore-read is not installed; only the export line was checked');
    }
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).to.equal(0);
    expect(errText).to.include('shutting down');
  });
});
