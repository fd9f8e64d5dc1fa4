/**
 * Two real worker threads, a frontend and a backend, over one blkif ring in
 * one MachineMemory: a million requests and responses with sequence numbers,
 * Xen-style event suppression, and a wake word per direction for sleeping.
 */
import { expect } from 'chai';
import type { Worker } from 'node:worker_threads';
import { MachineMemory } from '../../shared/memory/machine-memory.ts';
import { sharedRingInit } from '../../shared/ring/sring.ts';
import type { RingIdx } from '../../shared/ring/u32.ts';
import { spawnTsWorker } from '../../shared/worker/spawn.ts';
import { bellRegion, ringRegion, type RingRunConfig, type RingRunReport } from '../helpers/ring-common.ts';

function outcome(w: Worker, role: string, deadlineMs: number): Promise<RingRunReport> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${role} worker did not finish within ${deadlineMs} ms (lost wake-up or lost entry?)`)), deadlineMs);
    w.once('message', (m: RingRunReport) => {
      clearTimeout(timer);
      resolve(m);
    });
    w.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    w.once('exit', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`${role} worker exited with ${code}`));
    });
  });
}

async function run(cfg: RingRunConfig, deadlineMs: number): Promise<[RingRunReport, RingRunReport]> {
  const mem = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
  // The frontend's job in real life: SHARED_RING_INIT before granting the pages.
  sharedRingInit(ringRegion(mem, cfg), cfg.start as RingIdx);
  bellRegion(mem, cfg).fill(0, 4096, 0);
  const data = { sab: mem.sab, pageSize: mem.pageSize, cfg };
  // Both ends wait at a start barrier in the bell page (see ring-workers-entry.ts),
  // so a sleep that times out can only be a lost wake-up, never a slow start.
  // Listeners are attached right after spawning, before anything is awaited.
  const entry = new URL('./ring-workers-entry.ts', import.meta.url);
  const back = spawnTsWorker(entry, { ...data, role: 'back' });
  const backDone = outcome(back, 'back', deadlineMs);
  const front = spawnTsWorker(entry, { ...data, role: 'front' });
  const frontDone = outcome(front, 'front', deadlineMs);
  try {
    return await Promise.all([frontDone, backDone]);
  } finally {
    await Promise.all([front.terminate(), back.terminate()]);
  }
}

describe('a blkif ring between two worker threads', function () {
  this.timeout(30000);

  it('moves 1,000,000 requests and responses across 2^32 with none lost, duplicated or reordered', async () => {
    const total = 1_000_000;
    const cfg: RingRunConfig = { ringFrame: 16, ringPages: 1, bellFrame: 8, start: 0xffff_f000, total, spin: 200 };
    const [front, back] = await run(cfg, 20000);
    // The sequence checks run inside the workers (they throw on the first
    // lost, duplicated or reordered entry); here we check the totals.
    expect(front.processed).to.equal(total);
    expect(back.processed).to.equal(total);
    // Event suppression: far fewer kicks than messages, but at least one each way.
    expect(front.kicks).to.be.greaterThan(0).and.lessThan(total / 4);
    expect(back.kicks).to.be.greaterThan(0).and.lessThan(total / 4);
    // Every sleep was ended by a kick: no lost wake-ups saved by the timeout.
    expect(front.timeouts, 'front sleeps that timed out').to.equal(0);
    expect(back.timeouts, 'back sleeps that timed out').to.equal(0);
    const rate = Math.round(total / (Math.max(front.ms, back.ms) / 1000));
    console.log(
      `      ${total} round trips in ${Math.max(front.ms, back.ms).toFixed(0)} ms (${rate}/s); ` +
        `kicks front→back ${front.kicks}, back→front ${back.kicks}; sleeps front ${front.sleeps}, back ${back.sleeps}`,
    );
  });

  it('also works over a 16-page ring (512 slots) without spinning, sleeping every time it is idle', async () => {
    const total = 200_000;
    const cfg: RingRunConfig = { ringFrame: 32, ringPages: 16, bellFrame: 9, start: 0xffff_ff00, total, spin: 0 };
    const [front, back] = await run(cfg, 20000);
    expect(front.processed).to.equal(total);
    expect(back.processed).to.equal(total);
    expect(front.timeouts + back.timeouts).to.equal(0);
    expect(front.sleeps + back.sleeps).to.be.greaterThan(0);
  });
});
