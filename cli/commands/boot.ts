/**
 * `xensim boot`: boots a machine to look at — the hypervisor, dom0 (with
 * xenstored listening on a Unix socket) and N domUs — prints the
 * `export XENSTORED_PATH=...` line for Debian's xenstore tools, and runs until
 * interrupted, then shuts down cleanly.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine } from '../../toolstack/machine.ts';
import type { MemoryModel } from '../../shared/abi/machine.ts';
import { startStatusWriter } from '../status.ts';

export interface BootOptions {
  readonly domains: number;
  readonly xenstoreSocket?: string;
  readonly memory: number;
  readonly pageSize: 4096 | 16384;
  readonly dom0Model: MemoryModel;
  readonly domuModel: MemoryModel;
  readonly domuMemory: number;
}

function intIn(lo: number, hi: number, what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new InvalidArgumentError(`${what} must be an integer from ${lo} to ${hi}.`);
    return n;
  };
}
function sizeMiB(v: string): number {
  const m = /^(\d+)([mMgG]?)$/.exec(v);
  if (m === null) throw new InvalidArgumentError('expected a size such as 256M or 1G.');
  return Number(m[1]) * (m[2]?.toLowerCase() === 'g' ? 1024 : 1);
}
function model(v: string): MemoryModel {
  if (v !== 'pm' && v !== 'p2m' && v !== 'vp') throw new InvalidArgumentError('expected pm, p2m or vp.');
  return v;
}

/** Boots the machine; returns it with the socket path. The caller decides how long it lives. */
export async function bootMachine(o: BootOptions, log: (line: string) => void): Promise<{ machine: Machine; socket: string; cleanup: () => void }> {
  let cleanup = () => {};
  let socket = o.xenstoreSocket;
  if (socket === undefined) {
    const dir = mkdtempSync(join(tmpdir(), 'xensim-'));
    socket = join(dir, 'xenstored.sock');
    cleanup = () => rmSync(dir, { recursive: true, force: true });
  }
  const machine = await Machine.boot({ memBytes: o.memory * 1024 * 1024, pageSize: o.pageSize });
  try {
    await machine.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: Math.min(256, Math.floor(o.memory / 4)) * 1024, model: o.dom0Model, privileged: true });
    const l = await machine.dom0!.listen(socket);
    if (!l.ok) throw new Error(l.error);
    log(`xensim: Domain-0 (d0, ${o.dom0Model}) with xenstored on ${socket}`);
    for (let i = 1; i <= o.domains; i++) {
      const h = await machine.createDomain({ name: `guest${i}`, memoryKiB: o.domuMemory * 1024, model: o.domuModel });
      log(`xensim: guest${i} (d${h.domid}, ${o.domuModel}) introduced`);
    }
  } catch (e) {
    await machine.shutdown();
    cleanup();
    throw e;
  }
  return { machine, socket, cleanup };
}

export function registerBoot(program: Command): void {
  program
    .command('boot')
    .description('boot the hypervisor, dom0 and N domUs, print XENSTORED_PATH, and run until interrupted')
    .option('-n, --domains <N>', 'number of domUs', intIn(0, 60, '--domains'), 2)
    .option('--xenstore-socket <PATH>', 'Unix socket for xenstored (default: a fresh temporary directory)')
    .option('--memory <SIZE>', 'machine memory, e.g. 256M or 1G', sizeMiB, 256)
    .option('--page-size <BYTES>', 'frame size: 4096 or 16384', (v: string) => {
      if (v !== '4096' && v !== '16384') throw new InvalidArgumentError('page size must be 4096 or 16384.');
      return Number(v);
    }, 4096)
    .option('--dom0-model <MODEL>', 'dom0 memory model: pm, p2m or vp', model, 'p2m' as MemoryModel)
    .option('--domu-model <MODEL>', 'domU memory model: pm, p2m or vp', model, 'vp' as MemoryModel)
    .option('--domu-memory <MiB>', 'memory of each domU in MiB', intIn(1, 4096, '--domu-memory'), 16)
    .action(async (opts: BootOptions) => {
      const { machine, socket, cleanup } = await bootMachine(opts, (l) => console.error(l));
      startStatusWriter(machine, socket, (l) => console.error(l));
      console.log(`export XENSTORED_PATH=${socket}`);
      console.error('xensim: running; try `xenstore-ls -f /local/domain` with XENSTORED_PATH set. Ctrl-C stops.');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      console.error('xensim: shutting down');
      await machine.shutdown();
      cleanup();
      process.exit(0);
    });
}
