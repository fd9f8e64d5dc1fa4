import { expect } from 'chai';
import { DCB, FRAME_TYPE, MACHINE_HEADER, SLOT_FRAMES } from '../../../shared/abi/machine.ts';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { MachineLayout } from '../../../shared/machine-layout.ts';
import { formatMachine } from '../../../hypervisor/machine-format.ts';
import { Hypervisor } from '../../../hypervisor/hypervisor.ts';
import { DOMID_FREE, DOMID_XEN, type MachineAddr, type Mfn } from '../../../shared/types.ts';

const A = (n: number) => n as MachineAddr;

describe('machine format and frame table', () => {
  it('writes a header every worker can read, and gives Xen its own frames and nothing more', () => {
    const mem = MachineMemory.create({ memBytes: 8 << 20, pageSize: 4096 });
    const f = formatMachine(mem, { nrSlots: 8, arenaBytes: 1 << 20 });
    const layout = new MachineLayout(mem);
    expect(mem.getU32(A(MACHINE_HEADER.magic))).to.equal(MACHINE_HEADER.MAGIC);
    expect(mem.getU32(A(MACHINE_HEADER.frames))).to.equal(2048);
    expect(layout.nrSlots).to.equal(8);
    expect(layout.frameTableFrames).to.equal(Math.ceil(2048 * 16 / 4096));
    // Frame 0 header, frame table, 8 slots of 2 frames, then a 256-frame arena.
    expect(f.slotsMfn).to.equal(1 + layout.frameTableFrames);
    expect(f.arenaStart).to.equal(f.slotsMfn + 8 * SLOT_FRAMES);
    expect(f.arenaEnd).to.equal(f.arenaStart + 256);
    expect(f.firstFree).to.equal(f.arenaEnd);
    for (let m = 0; m < mem.frames; m++) {
      const i = f.frameTable.info(m as Mfn);
      if (m < f.arenaEnd) expect(i, `mfn ${m}`).to.deep.equal({ owner: DOMID_XEN, type: FRAME_TYPE.xen, mapcount: 0, m2p: -1 });
      else expect(i, `mfn ${m}`).to.deep.equal({ owner: DOMID_FREE, type: FRAME_TYPE.free, mapcount: 0, m2p: -1 });
    }
    // Every slot starts empty.
    for (let s = 0; s < 8; s++) expect(layout.slotDomid(s)).to.equal(-1);
    expect(() => layout.dcb(8)).to.throw(RangeError);
  });

  it('hands the allocator exactly the frames after Xen\'s, and reconciles a fresh machine', () => {
    const mem = MachineMemory.create({ memBytes: 8 << 20, pageSize: 4096 });
    const hv = new Hypervisor(mem, { nrSlots: 4 });
    const first = hv.layout.arenaEnd;
    expect(hv.allocator.freeCount).to.equal(mem.frames - first);
    expect(hv.allocator.isFree((first - 1) as Mfn)).to.equal(false);
    expect(hv.allocator.isFree(first as Mfn)).to.equal(true);
    const r = hv.reconcile();
    expect(r.ok, JSON.stringify(r)).to.equal(true);
    expect(r.freeFrames).to.equal(mem.frames - first);
  });

  it('refuses a slot count it cannot hold and a machine too small for its own tables', () => {
    const mem = MachineMemory.create({ memBytes: 8 << 20, pageSize: 4096 });
    expect(() => formatMachine(mem, { nrSlots: 1 })).to.throw(RangeError, /nrSlots/);
    expect(() => formatMachine(mem, { nrSlots: MACHINE_HEADER.MAX_SLOTS + 1 })).to.throw(RangeError, /nrSlots/);
    expect(() => formatMachine(mem, { arenaBytes: 8 << 20 })).to.throw(RangeError, /too small/);
    // Nothing was published: a worker attaching now is told the machine is unformatted.
    expect(() => new MachineLayout(mem)).to.throw(/not been formatted/);
  });

  it('formats and runs a domain with 16 KiB pages', () => {
    const mem = MachineMemory.create({ memBytes: 16 << 20, pageSize: 16384 });
    const hv = new Hypervisor(mem, { nrSlots: 4 });
    expect(mem.getU32(A(MACHINE_HEADER.pageSize))).to.equal(16384);
    expect(hv.layout.frameTableFrames).to.equal(Math.ceil(1024 * 16 / 16384));
    const r = hv.createDomain({ name: 'big-pages', memoryKiB: 1024, model: 'vp' });
    if (!r.ok) throw new Error(JSON.stringify(r.error));
    expect(r.value.ramPages).to.equal(64);
    expect(r.value.pageSize).to.equal(16384);
    // The shared_info page is the slot's second 16 KiB frame.
    expect(hv.layout.sharedInfo(r.value.slot) - hv.layout.dcb(r.value.slot)).to.equal(16384);
    expect(mem.atomicLoad32(hv.layout.dcbField(r.value.slot, DCB.totPages))).to.equal(64);
    const rec = hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
  });

  it('formats a 4 GiB machine in well under 10 s (measured: ~0.2 s here)', function () {
    this.timeout(30_000);
    const t0 = performance.now();
    const mem = MachineMemory.create({ memBytes: 4 * 1024 ** 3, pageSize: 4096 });
    const hv = new Hypervisor(mem);
    const formatMs = performance.now() - t0;
    expect(hv.frameTable.frames).to.equal(1 << 20);
    expect(hv.frameTable.owner(((1 << 20) - 1) as Mfn)).to.equal(DOMID_FREE);
    expect(hv.frameTable.owner(0 as Mfn)).to.equal(DOMID_XEN);
    const r = hv.createDomain({ name: 'roomy', memoryKiB: 64 * 1024, model: 'vp' });
    expect(r.ok).to.equal(true);
    const totalMs = performance.now() - t0;
    console.log(`      (4 GiB: format ${formatMs.toFixed(0)} ms, + 64 MiB domain ${totalMs.toFixed(0)} ms)`);
    expect(formatMs).to.be.below(10_000);
  });
});
