/**
 * dom0/vbd.ts's `ram:` disks: served from dom0's own RAM (Dom0RamStorage,
 * one copy per segment), kept in a dom0-wide registry so that a blkback
 * restarted in the same dom0 serves the same bytes, and given back to dom0
 * when the vbd is removed for good. `dma:NAME` names a DMA controller dom0
 * must have attached (test/integration/blk-dma.test.ts serves one).
 */
import { expect } from 'chai';
import { Dom0RamStorage } from '../../../dom0/blkback/storage.ts';
import { ramMediaOf } from '../../../dom0/vbd.ts';
import { initiateDeviceRemove } from '../../../toolstack/devices.ts';
import { asDomId } from '../../../shared/types.ts';
import { backendPath } from '../../../shared/xenbus/paths.ts';
import { XenbusState } from '../../../shared/xenbus/state.ts';
import { BlkWorld } from '../../helpers/blk-world.ts';
import { must } from '../xenbus/helpers.ts';

const XVDA = 51712;
const ID = { type: 'vbd', frontDom: asDomId(1), backDom: asDomId(0), devid: XVDA } as const;

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) { x = (Math.imul(x, 1664525) + 1013904223) >>> 0; b[i] = x >>> 24; }
  return b;
}

describe('vbd ram: media (dom0/vbd.ts)', function () {
  this.timeout(20000);
  let w: BlkWorld;
  afterEach(async () => { await w?.close(); });

  it('serves ram:SIZE from dom0 RAM and keeps the bytes across a blkback restart in the same dom0', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const dev = await w.addDisk(g, XVDA, { params: 'ram:4M' });
    expect(dev.sectors).to.equal(8192);
    const old = w.backDevice(1)!;
    expect(old.storage).to.be.instanceOf(Dom0RamStorage);
    const data = pattern(64 * 1024, 3);
    expect(await w.within(dev.write(128, data), 'write')).to.equal('ok');
    const medium = (old.storage as Dom0RamStorage).medium;
    expect(medium.allocatedPages).to.equal(16);
    expect(ramMediaOf(w.dom0).get('1/51712')?.medium).to.equal(medium);

    // blkback dies (its state left Closed) and a new instance starts in the same dom0.
    const fe = g.bus.registered.get(String(XVDA))!;
    await w.restartBackend({}, async () => {
      must(await w.xs.dom0.write(`${backendPath(ID)}/state`, String(XenbusState.Closed)), 'state Closed');
      await w.until(() => fe.state === XenbusState.Initialising || undefined, 'frontend to resume');
    });
    await w.within(dev.whenConnected(), 'reconnect');
    const neu = w.backDevice(1)!;
    expect(neu).to.not.equal(old);
    expect((neu.storage as Dom0RamStorage).medium, 'the restarted backend found the same medium').to.equal(medium);
    const back = new Uint8Array(data.length);
    expect(await w.within(dev.read(128, back), 'read back')).to.equal('ok');
    expect(Buffer.compare(back, data)).to.equal(0);
  });

  it('gives the medium back to dom0 when the vbd is removed for good', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const dev = await w.addDisk(g, XVDA, { params: 'ram:2M' });
    expect(await w.within(dev.write(0, pattern(256 * 1024, 5)), 'write')).to.equal('ok');
    const medium = (w.backDevice(1)!.storage as Dom0RamStorage).medium;
    expect(medium.allocatedPages).to.equal(64);
    const freeBefore = w.dom0.ram.available;

    must(await initiateDeviceRemove(w.xs.dom0, ID), 'remove');
    await w.until(() => w.backDevice(1) === undefined || undefined, 'blkback to let the vbd go');
    expect(medium.isReleased).to.equal(true);
    expect(ramMediaOf(w.dom0).has('1/51712')).to.equal(false);
    expect(w.dom0.ram.available - freeBefore, 'the disk pages are dom0 RAM again').to.equal(64);
  });

  it('refuses a ram: size that is not whole sectors, leaving the frontend unconnected', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    await w.createDisk(1, XVDA, { params: 'ram:1000' });
    await w.until(() => w.lines.some((l) => l.includes('ram:SIZE needs a size in whole sectors')) || undefined, 'the refusal in the log');
    expect(g.front.devices.get(XVDA)?.isConnected ?? false).to.equal(false);
  });

  it('refuses params dma:NAME when dom0 drives no DMA disk of that name', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    await w.createDisk(1, XVDA, { params: 'dma:disk9' });
    await w.until(() => w.lines.some((l) => l.includes('dom0 drives no DMA disk named "disk9"')) || undefined, 'the refusal in the log');
    expect(g.front.devices.get(XVDA)?.isConnected ?? false).to.equal(false);
  });
});
