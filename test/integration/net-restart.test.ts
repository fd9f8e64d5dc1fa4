/**
 * netback dies in the middle of a TCP stream between two domUs and a new
 * instance takes over, across real workers: dom0 kills every backend device,
 * its interfaces and its bridge (nothing queued is delivered), starts a new
 * netback, and the toolstack re-creates the backend directories
 * (Machine.recreateVifBackends). Both netfronts see their backend come back
 * and reconnect; the stream retransmits what was lost and completes with
 * every byte delivered once, in order, uncorrupted.
 */
import { expect } from 'chai';
import type * as Comlink from 'comlink';
import { Machine } from '../../toolstack/machine.ts';
import type { NetRestartDom0Agent } from '../helpers/net-restart-dom0-main.ts';
import { unwrap } from '../../shared/result.ts';

async function until(what: string, cond: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('netback restarted mid-stream, across real workers', function () {
  this.timeout(60_000);
  let m: Machine;
  let d0: Comlink.Remote<NetRestartDom0Agent>;

  before(async () => {
    m = await Machine.boot({ memBytes: 256 << 20 });
    const h0 = await m.createDomain({
      name: 'Domain-0', domid: 0, memoryKiB: 64 * 1024, model: 'p2m', privileged: true, kind: 'dom0',
      entry: new URL('../helpers/net-restart-dom0-main.ts', import.meta.url),
    });
    d0 = h0.agent as unknown as Comlink.Remote<NetRestartDom0Agent>;
  });
  after(async () => { await m?.shutdown(); });

  it('reconnects both guests and the TCP stream delivers every byte', async () => {
    const a = (await m.createDomain({ name: 'client', memoryKiB: 24 * 1024, model: 'vp' })).domid;
    const b = (await m.createDomain({ name: 'server', memoryKiB: 24 * 1024, model: 'vp' })).domid;
    await m.attachVif(a, { mac: '00:16:3e:00:02:01' });
    await m.attachVif(b, { mac: '00:16:3e:00:02:02' });
    const BYTES = 24 << 20;
    const stream = m.iperf({
      client: { domid: a, ip: '10.0.0.1' }, server: { domid: b, ip: '10.0.0.2' },
      spec: { protocol: 'tcp', bytes: BYTES, interval: 0 }, tuning: { minRtoMs: 20, stallTimeoutMs: 15_000 }, closeWaitMs: 5000,
    });
    await until('the stream to get going', async () => ((await m.domU(b).netCounters(0))?.rx_bytes ?? 0) > 2 << 20);
    const before = (await m.domU(b).netCounters(0))?.rx_bytes ?? 0;
    expect(await d0.killNetback()).to.equal(2);
    expect(unwrap(await d0.restartNetback())).to.equal(2);
    expect(await m.recreateVifBackends(0)).to.equal(2);
    await until('both guests to reconnect', async () => {
      const v = [...(await m.domU(a).vifs()), ...(await m.domU(b).vifs())];
      return v.length === 2 && v.every((x) => x.connects === 2 && x.connected);
    });
    const r = await stream;
    expect(r.client.error).to.equal(undefined);
    expect(r.server.streams[0]?.bytes).to.equal(BYTES);
    expect(r.server.streams[0]?.corruptBytes).to.equal(0);
    expect(r.server.streams[0]?.closed).to.equal(true);
    // The stream was cut: the restart came before the end, and the new netback carried the rest.
    expect(before).to.be.lessThan(BYTES);
    const rows = await d0.vifStats();
    expect(rows.map((x) => x.frontDom).sort()).to.deep.equal([a, b]);
    const server = rows.find((x) => x.frontDom === b)!;
    expect(server.counters.rxBytes).to.be.greaterThan(0);
    expect(server.connected).to.equal(true);
    expect(r.client.streams[0]?.retransmits).to.be.greaterThan(0);
    const rec = await m.hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });
});
