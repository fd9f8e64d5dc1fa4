/**
 * Starting a worker thread on a TypeScript entry file (through boot.mjs).
 * Listeners must be attached by the caller before awaiting anything, since a
 * message a worker posts before its parent listens can be lost.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

const BOOT = new URL('./boot.mjs', import.meta.url);

export function spawnTsWorker(entry: URL, data: Record<string, unknown>, opts: Omit<WorkerOptions, 'workerData'> = {}): Worker {
  return new Worker(BOOT, { ...opts, workerData: { ...data, entry: entry.href } });
}
