/**
 * Misbehaving guests against dom0's netback across real workers, while a
 * good pair of domUs streams through the same bridge:
 *  - a hostile netfront (its own worker entry) makes req_prod leap, or
 *    chains more slots than fatal_skb_slots, or writes garbage: its vif is
 *    disabled, its device goes Closing with an error node, and the good
 *    stream finishes untouched;
 *  - a guest that stops draining its receive ring (rx-buffer starvation):
 *    netback queues, then drops and counts, never stalling the sender, and
 *    delivers again once the guest drains.
 */
import { expect } from 'chai';
import type * as Comlink from 'comlink';
import { Machine, type NetStreamResult } from '../../toolstack/machine.ts';
import type { HostileDomUAgent } from '../helpers/net-hostile-domu-main.ts';
import { unwrap } from '../../shared/result.ts';

async function until(what: string, cond: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const HOSTILE_ENTRY = new URL('../helpers/net-hostile-domu-main.ts', import.meta.url);

describe('misbehaving netfronts against netback, across real workers', function () {
  this.timeout(60_000);
  let m: Machine;
  let a = 0;
  let b = 0;

  before(async () => {
    m = await Machine.boot({ memBytes: 256 << 20 });
    await m.createDomain({ name: 'Domain-0', domid: 0, memoryKiB: 64 * 1024, model: 'p2m', privileged: true, drivers: { netback: { netback: { rxQueuePackets: 128 } } } });
    a = (await m.createDomain({ name: 'client', memoryKiB: 24 * 1024, model: 'vp' })).domid;
    b = (await m.createDomain({ name: 'server', memoryKiB: 24 * 1024, model: 'vp', drivers: { netfront: { rxBuffers: 64 } } })).domid;
    await m.attachVif(a, { mac: '00:16:3e:00:03:01' });
    await m.attachVif(b, { mac: '00:16:3e:00:03:02' });
  });
  after(async () => { await m?.shutdown(); });

  const goodStream = (bytes: number): Promise<NetStreamResult> => m.iperf({
    client: { domid: a, ip: '10.0.0.1' }, server: { domid: b, ip: '10.0.0.2' }, spec: { protocol: 'tcp', bytes, interval: 0 }, closeWaitMs: 3000,
  });
  const expectDelivered = (r: NetStreamResult, bytes: number): void => {
    expect(r.client.error).to.equal(undefined);
    expect(r.server.streams[0]?.bytes).to.equal(bytes);
    expect(r.server.streams[0]?.corruptBytes).to.equal(0);
    expect(r.server.streams[0]?.closed).to.equal(true);
  };

  for (const [what, act, reason] of [
    ['makes req_prod leap a whole ring ahead', (h: Comlink.Remote<HostileDomUAgent>) => h.leap(0x10000), /req_prod|impossible|requests/i],
    ['chains 40 slots into one packet', (h: Comlink.Remote<HostileDomUAgent>) => h.tooManySlots(40), /slots/i],
  ] as const) {
    it(`disconnects a netfront that ${what}, while the good pair keeps its stream`, async () => {
      const hd = await m.createDomain({ name: `evil-${what.length}`, memoryKiB: 8 * 1024, model: 'vp', entry: HOSTILE_ENTRY, kind: 'domU' });
      const h = hd.agent as unknown as Comlink.Remote<HostileDomUAgent>;
      unwrap(await h.hostileStart());
      await m.attachVif(hd.domid, { mac: `00:16:3e:00:03:${(0x10 + what.length).toString(16)}` });
      const d0 = m.dom0!;
      await until('the hostile vif to connect', async () => (await h.hostileState()).connected && (await d0.vifStats(hd.domid))[0]?.connected === true);
      const stream = goodStream(8 << 20);
      await until('the good stream to get going', async () => ((await m.domU(b).netCounters(0))?.rx_bytes ?? 0) > 1 << 20);
      unwrap(await act(h));
      await until('the hostile vif to be disabled', async () => (await d0.vifStats(hd.domid))[0]?.disabled === true);
      const row = (await d0.vifStats(hd.domid))[0]!;
      expect(row.fatalReason).to.match(reason);
      expect(row.counters.fatal).to.equal(1);
      await until('the hostile frontend to see Closing', async () => (await h.hostileState()).tornDown > 0);
      const err = await d0.xsRead(`/local/domain/0/error/backend/vif/${hd.domid}/0/error`);
      expect(err.ok && err.value).to.match(reason);
      expectDelivered(await stream, 8 << 20);
      for (const v of await d0.vifStats()) if (v.frontDom !== hd.domid) expect(v.disabled).to.equal(false);
      await m.destroyDomain(hd.domid);
      const rec = await m.hv.reconcile();
      expect(rec.ok, JSON.stringify(rec)).to.equal(true);
    });
  }

  it('survives a netfront that writes garbage into its TX ring, and the good stream finishes', async () => {
    const hd = await m.createDomain({ name: 'evil-garbage', memoryKiB: 8 * 1024, model: 'vp', entry: HOSTILE_ENTRY, kind: 'domU' });
    const h = hd.agent as unknown as Comlink.Remote<HostileDomUAgent>;
    unwrap(await h.hostileStart());
    await m.attachVif(hd.domid, { mac: '00:16:3e:00:03:7e' });
    const d0 = m.dom0!;
    await until('the hostile vif to connect', async () => (await h.hostileState()).connected && (await d0.vifStats(hd.domid))[0]?.connected === true);
    const stream = goodStream(4 << 20);
    for (let i = 0; i < 8; i++) unwrap(await h.garbage(32));
    // Garbage is answered NETIF_RSP_ERROR or cuts the vif off; either way netback keeps serving the others.
    await until('netback to judge the garbage', async () => {
      const row = (await d0.vifStats(hd.domid))[0];
      return row !== undefined && (row.disabled || row.counters.txErrors > 0);
    });
    expectDelivered(await stream, 4 << 20);
    await m.destroyDomain(hd.domid);
    expect((await m.hv.reconcile()).ok).to.equal(true);
  });

  it('counts the drops of a guest that stops draining its RX ring, without stalling its sender, and recovers', async () => {
    const d0 = m.dom0!;
    const rowB = async () => (await d0.vifStats(b))[0]!;
    const drop0 = (await rowB()).counters.rxDropped;
    const stream = m.iperf({
      client: { domid: a, ip: '10.0.0.1' }, server: { domid: b, ip: '10.0.0.2' }, spec: { protocol: 'udp', time: 1.5, bitrate: 40e6, interval: 0 }, closeWaitMs: 3000,
    });
    await until('datagrams to arrive', async () => ((await m.domU(b).netCounters(0))?.rx_frames ?? 0) > 200);
    unwrap(await m.domU(b).holdRx(0, true));
    // 64 buffers fill, 128 packets queue in dom0, then netback drops and counts.
    await until('netback to drop for the starved guest', async () => (await rowB()).counters.rxDropped > drop0 + 50);
    const held = (await m.domU(b).netCounters(0))?.rx_frames ?? 0;
    expect((await rowB()).rxQueued).to.equal(128);
    unwrap(await m.domU(b).holdRx(0, false));
    await until('delivery to resume', async () => ((await m.domU(b).netCounters(0))?.rx_frames ?? 0) > held + 300);
    const r = await stream;
    const dropped = (await rowB()).counters.rxDropped - drop0;
    const s = r.server.streams[0]!;
    // The sender was never held up: it sent for its whole time at its pace.
    expect(r.client.error).to.equal(undefined);
    expect(r.client.streams[0]!.packets).to.be.greaterThan(0.8 * (40e6 * 1.5) / 8 / 1472);
    // Every loss iperf saw is a drop netback counted, and nothing arrived corrupted or twice.
    expect(s.lostPackets).to.be.greaterThan(0);
    expect(s.lostPackets).to.equal(dropped);
    expect(s.corruptBytes).to.equal(0);
    expect(s.closed).to.equal(true);
    expect((await rowB()).rxQueued).to.equal(0);
  });
});
