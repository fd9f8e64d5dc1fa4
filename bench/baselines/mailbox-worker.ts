// Raw baselines in a worker, with no xensim code: a shared-memory mailbox
// server, a mailbox client, and one side of an Atomics ping-pong. The lint
// rule allows raw SharedArrayBuffer/Atomics here (bench/baselines/**).
import { parentPort, workerData } from 'node:worker_threads';

const d = workerData as { sab: SharedArrayBuffer; role: 'server' | 'client' | 'ping' | 'pong'; n: number; spinNs: number };
const a = new Int32Array(d.sab);
// Words: 0 doorbell, 1 mailbox state (0 idle, 1 posted, 2 done), 2 stop, 3 server spinning, 8 ping, 9 pong
const now = () => Number(process.hrtime.bigint());

function serve(): void {
  for (;;) {
    if (Atomics.load(a, 2) !== 0) return;
    if (Atomics.load(a, 1) === 1) {
      Atomics.store(a, 1, 2);
      Atomics.notify(a, 1, 1);
      continue;
    }
    if (d.spinNs > 0) {
      Atomics.store(a, 3, 1);
      const until = now() + d.spinNs;
      let got = false;
      while (now() < until) if (Atomics.load(a, 1) === 1 || Atomics.load(a, 2) !== 0) { got = true; break; }
      if (got) continue;
    }
    const seq = Atomics.load(a, 0);
    Atomics.store(a, 3, 0);
    if (Atomics.load(a, 1) === 1) continue;
    Atomics.wait(a, 0, seq, 100);
  }
}

function client(): number {
  const t0 = now();
  for (let i = 0; i < d.n; i++) {
    Atomics.store(a, 1, 1);
    if (Atomics.load(a, 3) === 0) { Atomics.add(a, 0, 1); Atomics.notify(a, 0, 1); }
    const until = now() + d.spinNs;
    while (Atomics.load(a, 1) !== 2 && now() < until) { /* spin */ }
    while (Atomics.load(a, 1) !== 2) Atomics.wait(a, 1, 1, 100);
    Atomics.store(a, 1, 0);
  }
  return now() - t0;
}

// Ping-pong: ping bumps word 8 and waits for word 9 to follow; pong mirrors.
function pingpong(mine: number, theirs: number, first: boolean): number {
  const t0 = now();
  let expect = 0;
  for (let i = 0; i < d.n; i++) {
    if (first) { Atomics.add(a, mine, 1); Atomics.notify(a, mine, 1); }
    expect++;
    const until = now() + d.spinNs;
    while (Atomics.load(a, theirs) < expect && now() < until) { /* spin */ }
    while (Atomics.load(a, theirs) < expect) Atomics.wait(a, theirs, expect - 1, 100);
    if (!first) { Atomics.add(a, mine, 1); Atomics.notify(a, mine, 1); }
  }
  return now() - t0;
}

let ns = 0;
if (d.role === 'server') serve();
else if (d.role === 'client') ns = client();
else if (d.role === 'ping') ns = pingpong(8, 9, true);
else ns = pingpong(9, 8, false);
parentPort!.postMessage({ ns });
