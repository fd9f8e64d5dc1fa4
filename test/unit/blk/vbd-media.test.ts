/**
 * dom0/vbd.ts's `ram:` disks: served from the backend's private memory
 * (PrivateRamStorage, one copy per segment), kept in a dom0-wide registry so that a blkback
 * restarted in the same dom0 serves the same bytes, and given back to dom0
 * when the vbd is removed for good. `dma:NAME` names a DMA controller dom0
 * must have attached (test/integration/blk-dma.test.ts serves one).
 */
import { expect } from 'chai';
import { PrivateRamStorage } from '../../../dom0/blkback/storage.ts';
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

  it('serves ram:SIZE with one copy per segment and keeps the bytes across a blkback restart in the same dom0', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const dev = await w.addDisk(g, XVDA, { params: 'ram:4M' });
    expect(dev.sectors).to.equal(8192);
    const old = w.backDevice(1)!;
    expect(old.storage).to.be.instanceOf(PrivateRamStorage);
    const data = pattern(64 * 1024, 3);
    expect(await w.within(dev.write(128, data), 'write')).to.equal('ok');
    const medium = (old.storage as PrivateRamStorage).medium;
    expect(medium.allocatedBytes, 'one 1 MiB chunk holds the write').to.equal(1 << 20);
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
    expect((neu.storage as PrivateRamStorage).medium, 'the restarted backend found the same medium').to.equal(medium);
    const back = new Uint8Array(data.length);
    expect(await w.within(dev.read(128, back), 'read back')).to.equal('ok');
    expect(Buffer.compare(back, data)).to.equal(0);
  });

  it('drops the medium when the vbd is removed for good', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const dev = await w.addDisk(g, XVDA, { params: 'ram:2M' });
    expect(await w.within(dev.write(0, pattern(256 * 1024, 5)), 'write')).to.equal('ok');
    const medium = (w.backDevice(1)!.storage as PrivateRamStorage).medium;
    expect(medium.allocatedBytes).to.equal(1 << 20);

    must(await initiateDeviceRemove(w.xs.dom0, ID), 'remove');
    await w.until(() => w.backDevice(1) === undefined || undefined, 'blkback to let the vbd go');
    expect(medium.isReleased).to.equal(true);
    expect(ramMediaOf(w.dom0).has('1/51712')).to.equal(false);
    expect(medium.allocatedBytes, 'the chunks are gone').to.equal(0);
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

  it('reads zeros where nothing was written, crosses a 1 MiB chunk inside one segment, and discards to zeros', async () => {
    w = await BlkWorld.create();
    const g = await w.addGuest(1, { maxQueues: 1 });
    const dev = await w.addDisk(g, XVDA, { params: 'ram:4M' });
    const medium = (w.backDevice(1)!.storage as PrivateRamStorage).medium;
    const zeros = new Uint8Array(8192);
    const back = new Uint8Array(8192).fill(0xee);
    expect(await w.within(dev.read(4096, back), 'read unwritten')).to.equal('ok');
    expect(Buffer.compare(back, zeros)).to.equal(0);
    expect(medium.allocatedBytes).to.equal(0);
    // Sector 2045 is 1536 bytes before the 1 MiB boundary: the first 4 KiB segment spans two chunks.
    const data = pattern(8192, 9);
    expect(await w.within(dev.write(2045, data), 'write across')).to.equal('ok');
    expect(medium.allocatedBytes).to.equal(2 << 20);
    expect(await w.within(dev.read(2045, back), 'read across')).to.equal('ok');
    expect(Buffer.compare(back, data)).to.equal(0);
    expect(await w.within(dev.discard(2047, 4), 'discard')).to.equal('ok');
    expect(await w.within(dev.read(2045, back), 'read after discard')).to.equal('ok');
    const want = new Uint8Array(data);
    want.fill(0, 1024, 3072);
    expect(Buffer.compare(back, want)).to.equal(0);
  });
});
