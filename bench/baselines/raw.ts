/**
 * Raw baselines measured in the same run as xensim's figures: a shared-memory
 * mailbox round trip, an Atomics ping-pong between two workers, and memcpy
 * within a SharedArrayBuffer. No xensim code is involved.
 */
import { Worker } from 'node:worker_threads';

const ENTRY = new URL('./mailbox-worker.ts', import.meta.url);
const BOOT = new URL('../../shared/worker/boot.mjs', import.meta.url);

function run(sab: SharedArrayBuffer, role: string, n: number, spinUs: number): { worker: Worker; done: Promise<number> } {
  const worker = new Worker(BOOT, { workerData: { sab, role, n, spinNs: spinUs * 1000, entry: ENTRY.href } });
  const done = new Promise<number>((resolve, reject) => {
    worker.once('message', (m: { ns: number }) => resolve(m.ns));
    worker.once('error', reject);
  });
  return { worker, done };
}

/** Mean ns per round trip through a raw mailbox served by another worker. */
export async function rawMailboxNs(n: number, spinUs: number): Promise<number> {
  const sab = new SharedArrayBuffer(64);
  const server = run(sab, 'server', 0, spinUs);
  const client = run(sab, 'client', n, spinUs);
  const ns = await client.done;
  Atomics.store(new Int32Array(sab), 2, 1);
  Atomics.notify(new Int32Array(sab), 0);
  await server.done;
  await Promise.all([server.worker.terminate(), client.worker.terminate()]);
  return ns / n;
}

/** Mean ns per round trip of an Atomics ping-pong between two workers. */
export async function rawPingPongNs(n: number, spinUs: number): Promise<number> {
  const sab = new SharedArrayBuffer(64);
  const pong = run(sab, 'pong', n, spinUs);
  const ping = run(sab, 'ping', n, spinUs);
  const ns = await ping.done;
  await pong.done;
  await Promise.all([ping.worker.terminate(), pong.worker.terminate()]);
  return ns / n;
}

/** memcpy bandwidth within a SharedArrayBuffer (copyWithin), bytes per second. */
export function rawMemcpyBps(chunk: number, totalBytes: number): number {
  const sab = new SharedArrayBuffer(Math.max(chunk * 64, 8 << 20));
  const u8 = new Uint8Array(sab);
  const half = sab.byteLength / 2;
  const iters = Math.max(1, Math.floor(totalBytes / chunk));
  const t0 = process.hrtime.bigint();
  let off = 0;
  for (let i = 0; i < iters; i++) {
    u8.copyWithin(half + off, off, off + chunk);
    off += chunk;
    if (off + chunk > half) off = 0;
  }
  const ns = Number(process.hrtime.bigint() - t0);
  return (iters * chunk) / (ns / 1e9);
}
