/**
 * Debian's real xenstore tools (xenstore-utils, i.e. libxenstore 4.17) and
 * python3-pyxs against our xenstored, through XENSTORED_PATH=<our socket>.
 * Expected outputs, exit codes and error wording: shared/ECOSYSTEM.md §1.3.
 */
import { expect } from 'chai';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asDomId } from '../../shared/types.ts';
import { XS } from '../../shared/abi/xenstore.ts';
import { XenStored, type XsConnection } from '../../dom0/xenstore/xenstored.ts';
import { XsSocketServer } from '../../dom0/xenstore/socket-server.ts';
import { latin1, payloadOf, type XsMsg } from '../../dom0/xenstore/wire.ts';

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A daemon that records every request it sees, and can be told to interfere. */
class RecordingXenStored extends XenStored {
  readonly seen: { type: number; reqId: number; txId: number; payload: string }[] = [];
  beforeProcess: ((conn: XsConnection, msg: XsMsg) => void) | undefined;
  override process(conn: XsConnection, msg: XsMsg): void {
    this.seen.push({ type: msg.type, reqId: msg.reqId, txId: msg.txId, payload: latin1(msg.payload) });
    this.beforeProcess?.(conn, msg);
    super.process(conn, msg);
  }
}

function have(cmd: string, args: string[] = ['--help']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 5000 });
  return r.error === undefined && r.status !== 127;
}

/**
 * A binary of xen-utils-<version>. Debian's /usr/bin/xenstore-control is
 * xen-utils-wrapper, which picks /usr/lib/xen-<major.minor>/bin from
 * /sys/hypervisor/version and fails without a hypervisor ("Can't find
 * hypervisor information in sysfs!"), so we run the real binary directly.
 */
function xenUtil(name: string): string | undefined {
  let dirs: string[];
  try { dirs = readdirSync('/usr/lib').filter((e) => /^xen-[0-9]+\.[0-9]+$/.test(e)).sort().reverse(); } catch { return undefined; }
  return dirs.map((e) => `/usr/lib/${e}/bin/${name}`).find((p) => existsSync(p));
}

const PYTHON = ['/usr/bin/python3', 'python3'].find((py) => spawnSync(py, ['-c', 'import pyxs'], { stdio: 'ignore' }).status === 0);

describe('real xenstore tools against our xenstored socket', function () {
  this.timeout(30000);
  let dir: string;
  let d: RecordingXenStored;
  let server: XsSocketServer;
  let sock: string;

  before(function () {
    if (!have('xenstore-read')) {
      console.warn('SKIPPED: xenstore tools tests because xenstore-utils is not installed');
      this.skip();
    }
  });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'xst-'));
    sock = join(dir, 'xenstored.sock');
    d = new RecordingXenStored();
    const r = await XsSocketServer.listen(d, sock);
    if (!r.ok) throw new Error(`listen: ${JSON.stringify(r.error)}`);
    server = r.value;
  });

  afterEach(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a tool with XENSTORED_PATH pointing at our socket (asynchronously: the daemon lives in this process). */
  function run(cmd: string, args: string[]): Promise<Run> {
    return new Promise((resolve) => {
      execFile(cmd, args, { env: { ...process.env, XENSTORED_PATH: sock }, timeout: 15000 }, (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      });
    });
  }

  const types = () => d.seen.map((m) => m.type);

  it('xenstore-write and xenstore-read: one request without a transaction, several inside one', async () => {
    expect(await run('xenstore-write', ['/a/x', '1'])).to.deep.equal({ code: 0, stdout: '', stderr: '' });
    expect(types()).to.deep.equal([XS.WRITE]);
    expect(d.seen[0]?.txId).to.equal(0);
    expect(d.seen[0]?.payload).to.equal('/a/x\x001'); // value not NUL-terminated
    d.seen.length = 0;
    expect((await run('xenstore-write', ['/a/y', '2', '/a/z', '3'])).code).to.equal(0);
    expect(types()).to.deep.equal([XS.TRANSACTION_START, XS.WRITE, XS.WRITE, XS.TRANSACTION_END]);
    expect(d.seen[3]?.payload).to.equal('T\0');
    expect(await run('xenstore-read', ['/a/x'])).to.deep.equal({ code: 0, stdout: '1\n', stderr: '' });
    expect((await run('xenstore-read', ['/a/x', '/a/y'])).stdout).to.equal('1\n2\n');
  });

  it('xenstore-read of a missing or malformed path fails with the tool\'s wording and exit 1', async () => {
    expect(await run('xenstore-read', ['/nope'])).to.deep.equal({ code: 1, stdout: '', stderr: 'xenstore-read: couldn\'t read path /nope\n' });
    expect(await run('xenstore-read', ['a/../b'])).to.deep.equal({ code: 1, stdout: '', stderr: 'xenstore-read: couldn\'t read path a/../b\n' });
  });

  it('xenstore-exists prints nothing and answers with its exit code', async () => {
    await run('xenstore-write', ['/e/x', '1']);
    expect(await run('xenstore-exists', ['/e/x'])).to.deep.equal({ code: 0, stdout: '', stderr: '' });
    const missing = await run('xenstore-exists', ['/e/nope']);
    expect([missing.code, missing.stdout]).to.deep.equal([1, '']);
  });

  it('xenstore-list prints one child per line in creation order', async () => {
    await run('xenstore-write', ['/l/zeta', '1', '/l/alpha', '2', '/l/mid', '3']);
    expect(await run('xenstore-list', ['/l'])).to.deep.equal({ code: 0, stdout: 'zeta\nalpha\nmid\n', stderr: '' });
  });

  it('xenstore-ls prints the tree with one space per level, -f full paths, -p permissions', async () => {
    await run('xenstore-write', ['/vm/abc/name', 'g1', '/vm/abc/dev/vbd', '51712']);
    await run('xenstore-chmod', ['/vm/abc/name', 'b1', 'r2']);
    d.seen.length = 0;
    expect((await run('xenstore-ls', ['/vm'])).stdout).to.equal('abc = ""\n name = "g1"\n dev = ""\n  vbd = "51712"\n');
    expect(types().filter((t) => t === XS.TRANSACTION_START)).to.deep.equal([]); // no transaction
    expect((await run('xenstore-ls', ['-f', '/vm'])).stdout).to.equal(
      '/vm/abc = ""\n/vm/abc/name = "g1"\n/vm/abc/dev = ""\n/vm/abc/dev/vbd = "51712"\n');
    const p = (await run('xenstore-ls', ['-p', '/vm'])).stdout.split('\n');
    expect(p[0]).to.match(/^abc = "" .*\(n0\)$/);
    expect(p[1]).to.match(/^ name = "g1" .*\(b1,r2\)$/);
    d.seen.length = 0;
    await run('xenstore-ls', ['-p', '/vm/abc/dev']);
    expect(types()).to.include(XS.GET_PERMS);
  });

  it('xenstore-rm removes (with -t also empty parents) and reports what it cannot remove', async () => {
    await run('xenstore-write', ['/r/a/x', '1', '/r/b', '2']);
    expect((await run('xenstore-rm', ['/r/b'])).code).to.equal(0);
    expect((await run('xenstore-exists', ['/r/b'])).code).to.equal(1);
    expect((await run('xenstore-rm', ['-t', '/r/a/x'])).code).to.equal(0);
    expect((await run('xenstore-exists', ['/r/a'])).code).to.equal(1);
    expect(await run('xenstore-rm', ['/nothere/x'])).to.deep.equal({ code: 1, stdout: '', stderr: 'xenstore-rm: could not remove path /nothere/x\n' });
  });

  it('xenstore-chmod sets permissions, recursively with -r', async () => {
    await run('xenstore-write', ['/c/z', '1', '/c/z/sub', '2']);
    expect((await run('xenstore-chmod', ['/c/z', 'b0', 'r1'])).code).to.equal(0);
    const perms = d.handle(d.connect(asDomId(0)), { type: XS.GET_PERMS, reqId: 0, txId: 0, payload: payloadOf('/c/z') });
    expect(latin1(perms.reply.payload)).to.equal('b0\0r1\0');
    expect((await run('xenstore-chmod', ['-r', '/c', 'n0', 'r7'])).code).to.equal(0);
    const sub = d.handle(d.connect(asDomId(0)), { type: XS.GET_PERMS, reqId: 0, txId: 0, payload: payloadOf('/c/z/sub') });
    expect(latin1(sub.reply.payload)).to.equal('n0\0r7\0');
  });

  it('xenstore-watch -n 2 prints the initial event and one change, then exits', async () => {
    const child = spawn('xenstore-watch', ['-n', '2', '/w'], { env: { ...process.env, XENSTORED_PATH: sock } });
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    const exited = new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? -1)));
    for (let i = 0; i < 200 && !out.includes('/w\n'); i++) await new Promise((r) => setTimeout(r, 10));
    expect(out).to.equal('/w\n');
    const watch = d.seen.find((m) => m.type === XS.WATCH);
    expect(watch?.payload).to.equal('/w\0/w\0'); // the token is the path
    await run('xenstore-write', ['/w/x', '1']);
    expect(await exited).to.equal(0);
    expect(out).to.equal('/w\n/w/x\n');
  });

  it('keeps binary values intact: xenstore-write parses \\x escapes, xenstore-read escapes, -R is raw', async () => {
    await run('xenstore-write', ['/bin', '\\x01\\x02']);
    expect((await run('xenstore-read', ['/bin'])).stdout).to.equal('\\001\\002\n');
    expect((await run('xenstore-read', ['-R', '/bin'])).stdout).to.equal('\x01\x02');
  });

  it('resolves a socket client\'s relative paths under /local/domain/0', async () => {
    await run('xenstore-write', ['name', 'Domain-0']);
    expect((await run('xenstore-read', ['/local/domain/0/name'])).stdout).to.equal('Domain-0\n');
  });

  it('redoes the whole transaction when TRANSACTION_END answers EAGAIN, and exits 0', async () => {
    const other = d.connect(asDomId(0));
    let interfered = false;
    d.beforeProcess = (_conn, msg) => {
      if (msg.type === XS.TRANSACTION_END && !interfered) {
        interfered = true;
        d.handle(other, { type: XS.WRITE, reqId: 0, txId: 0, payload: new Uint8Array(Buffer.from('/t/y\0theirs')) });
      }
    };
    const r = await run('xenstore-write', ['/t/y', '2', '/t/z', '3']);
    expect(r.code).to.equal(0);
    expect(types()).to.deep.equal([
      XS.TRANSACTION_START, XS.WRITE, XS.WRITE, XS.TRANSACTION_END,
      XS.TRANSACTION_START, XS.WRITE, XS.WRITE, XS.TRANSACTION_END,
    ]);
    expect(d.stats.conflicts).to.equal(1);
    expect((await run('xenstore-read', ['/t/y', '/t/z'])).stdout).to.equal('2\n3\n');
  });

  it('a tool sees "Bad file descriptor" when the daemon drops its connection', async () => {
    d.beforeProcess = (conn, msg) => {
      if (msg.type === XS.DIRECTORY) d.disconnect(conn, 'test');
    };
    const r = await run('xenstore-ls', ['/']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.equal('xenstore-ls: xs_directory (/): Bad file descriptor\n');
  });

  it('sends req_id 0 from libxenstore, and python3-pyxs sends increasing req_ids that we echo', async function () {
    await run('xenstore-read', ['/tool']);
    expect(d.seen.every((m) => m.reqId === 0)).to.equal(true);
    if (PYTHON === undefined) {
      console.warn('SKIPPED: python3-pyxs part because python3-pyxs is not installed');
      this.skip();
    }
    d.seen.length = 0;
    const script = `
from pyxs import Client
with Client() as c:
    c.write(b"/py/a", b"hello")
    print(c.read(b"/py/a").decode())
    print(",".join(x.decode() for x in c.list(b"/py")))
    c.set_perms(b"/py/a", [b"b0", b"r5"])
    print(",".join(x.decode() for x in c.get_perms(b"/py/a")))
    print(c.exists(b"/py/nope"))
    c.transaction()
    c.write(b"/py/b", b"2")
    c.commit()
    print(c.read(b"/py/b").decode())
    m = c.monitor()
    m.watch(b"/py", b"tok")
    c.write(b"/py/c", b"3")
    it = m.wait()
    e1 = next(it); e2 = next(it)
    print(e1.path.decode(), e2.path.decode(), e2.token.decode())
    print(c.get_domain_path(3).decode())
    try:
        c.read(b"/nope")
    except Exception as e:
        print(type(e).__name__, e.args[0])
`;
    const r = await run(PYTHON as string, ['-c', script]);
    expect(r.stderr).to.equal('');
    expect(r.stdout.split('\n')).to.deep.equal([
      'hello', 'a', 'b0,r5', 'False', '2', '/py /py/c tok', '/local/domain/3', 'PyXSError 2', '',
    ]);
    const ids = d.seen.map((m) => m.reqId);
    expect(ids.length).to.be.above(8);
    for (let i = 1; i < ids.length; i++) expect(ids[i] as number).to.be.above(ids[i - 1] as number);
  });

  it('xenstore-control (xen-utils-4.17) runs help, quota, check and print, and reports an unknown command', async function () {
    const ctl = xenUtil('xenstore-control');
    if (ctl === undefined) {
      console.warn('SKIPPED: xenstore-control because xen-utils-4.17 is not installed');
      this.skip();
    }
    const help = await run(ctl as string, ['help']);
    expect(help.code).to.equal(0);
    expect(help.stdout.split('\n')).to.include.members(['check', 'help', 'quota [<domid>]']);
    expect(d.seen.find((m) => m.type === XS.CONTROL)?.payload).to.equal('help\0');
    const quota = await run(ctl as string, ['quota']);
    expect(quota.stdout).to.match(/^nodes: 1000$/m);
    expect((await run(ctl as string, ['check'])).stdout).to.equal('OK\n');
    const printed: string[] = [];
    d.beforeProcess = (_conn, msg) => { if (msg.type === XS.CONTROL) printed.push(latin1(msg.payload)); };
    expect((await run(ctl as string, ['print', 'hello', 'xensim'])).code).to.equal(0);
    expect(printed).to.deep.equal(['print\0hello\0xensim\0']);
    // Unknown command: the daemon answers EINVAL, the tool prints the help to stderr and exits 3.
    const bad = await run(ctl as string, ['bogus']);
    expect(bad.code).to.equal(3);
    expect(bad.stderr).to.match(/^Command not supported. Valid commands are:\ncheck\n/);
  });

  it('passes Xen\'s own xenstore test suite (test-xenstore from xen-utils-4.17), transactions included', async function () {
    const t = xenUtil('test-xenstore');
    if (t === undefined) {
      console.warn('SKIPPED: test-xenstore because xen-utils-4.17 is not installed');
      this.skip();
    }
    const r = await run(t as string, ['-i', '3']);
    expect(r.stderr).to.equal('');
    expect(r.code).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(':')[0]?.trim())).to.deep.equal([
      'read 1', 'read 2000', 'write 1', 'write 2000', 'dir', 'rm node', 'rm dir',
      'ta empty', 'ta empty x', 'ta rmw', 'ta rmw x', 'ta err',
    ]);
    expect(lines.filter((l) => l.includes('failed'))).to.deep.equal([]);
  });
});
