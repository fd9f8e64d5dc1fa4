import { expect } from 'chai';
import { GNTST, GRANT_ENTRY_V1, GTF } from '../../../shared/abi/grant.ts';
import { DomainMemory } from '../../../shared/memory/domain-memory.ts';
import { GnttabError, GrantTable } from '../../../shared/kernel/gnttab.ts';
import type { Hypercaller } from '../../../shared/hypercall/channel.ts';
import { testMachine } from '../../helpers/machine.ts';
import { asDomId, asGref, type GuestAddr, type MachineAddr, type Mfn, type Pfn } from '../../../shared/types.ts';

/** A DomainMemory that records every write, and what the entry's flags were at that moment. */
class RecordingMemory extends DomainMemory {
  readonly log: { op: string; addr: number; flagsBefore: number }[] = [];
  watch = -1;
  private note(op: string, a: GuestAddr): void {
    const flagsBefore = this.watch >= 0 ? this.atomicLoad32(this.watch as GuestAddr) & 0xffff : -1;
    this.log.push({ op, addr: a, flagsBefore });
  }
  override setU32(a: GuestAddr, v: number): void { this.note('setU32', a); super.setU32(a, v); }
  override setU16(a: GuestAddr, v: number): void { this.note('setU16', a); super.setU16(a, v); }
  override atomicStore32(a: GuestAddr, v: number): void { this.note('atomicStore32', a); super.atomicStore32(a, v); }
  override atomicCmpxchg32(a: GuestAddr, e: number, r: number): number { this.note('atomicCmpxchg32', a); return super.atomicCmpxchg32(a, e, r); }
}

function machine() {
  const m = testMachine(16 << 20);
  const d0 = m.domain({ name: 'Domain-0', domid: 0, memoryKiB: 4096, model: 'pm', privileged: true }, { grantFrames: 1 });
  const u = m.domain({ name: 'u', memoryKiB: 4096, model: 'vp' }, { grantFrames: 2 });
  return { m, d0, u };
}

describe('guest grant table (shared/kernel/gnttab.ts)', () => {
  it('writes an entry domid and frame first and the flags last, with a release store, so Xen never sees a half-made grant', () => {
    const { u } = machine();
    const spy = new RecordingMemory(u.machine, u.mem.layout);
    const gt = new GrantTable(spy, u.hc, u.boot.grantPfnBase, 2, (p) => u.frameOf(p));
    const ref = asGref(300);
    const entry = u.boot.grantPfnBase * 4096 + ref * GRANT_ENTRY_V1.SIZE;
    spy.watch = entry;
    const pfn = u.ram.alloc();
    gt.grantForeignAccessRef(ref, asDomId(0), pfn, true);
    const writes = spy.log.filter((w) => w.addr >= entry && w.addr < entry + GRANT_ENTRY_V1.SIZE);
    expect(writes.length).to.be.at.least(2);
    const last = writes[writes.length - 1]!;
    expect(last).to.deep.include({ op: 'atomicStore32', addr: entry + GRANT_ENTRY_V1.flags });
    // Every earlier write happened while the entry was still invalid.
    for (const w of writes.slice(0, -1)) {
      expect(w.addr).to.not.equal(entry + GRANT_ENTRY_V1.flags);
      expect(w.flagsBefore & GTF.type_mask).to.equal(GTF.invalid);
    }
    expect(writes.some((w) => w.addr === entry + GRANT_ENTRY_V1.frame)).to.equal(true);
    // The bytes are Xen's v1 layout: flags u16 @0, domid u16 @2, frame u32 @4.
    expect(u.mem.getU16((entry + GRANT_ENTRY_V1.flags) as GuestAddr)).to.equal(GTF.permit_access | GTF.readonly);
    expect(u.mem.getU16((entry + GRANT_ENTRY_V1.domid) as GuestAddr)).to.equal(0);
    expect(u.mem.getU32((entry + GRANT_ENTRY_V1.frame) as GuestAddr)).to.equal(pfn);
    // Revocation is one compare-exchange on the flags word, which keeps domid and frame.
    spy.log.length = 0;
    expect(gt.endForeignAccessRef(ref)).to.equal(true);
    expect(spy.log.map((w) => w.op)).to.deep.equal(['atomicCmpxchg32']);
    expect(gt.flags(ref)).to.equal(0);
    expect(u.mem.getU32((entry + GRANT_ENTRY_V1.frame) as GuestAddr)).to.equal(pfn);
  });

  it('names the domid in the upper half-word and writes grants for a high domid correctly', () => {
    const { u } = machine();
    const pfn = u.ram.alloc();
    const ref = u.gnttab.grantForeignAccess(asDomId(0x7fef), pfn, false)!;
    const entry = (u.boot.grantPfnBase * 4096 + ref * 8) as GuestAddr;
    expect(u.mem.getU16((entry + 2) as GuestAddr)).to.equal(0x7fef);
    expect(u.gnttab.flags(ref)).to.equal(GTF.permit_access);
  });

  it('refuses to end access while Xen has GTF_reading or GTF_writing set, and defers then frees it', () => {
    const { m, u } = machine();
    const pfn = u.ram.alloc();
    const ref = u.gnttab.grantForeignAccess(asDomId(0), pfn, false)!;
    // Play Xen: set the in-use bit in the entry's machine frame.
    const d = m.hv.domain(u.domid)!;
    const per = 4096 / 8;
    const addr = (m.mem.frameAddr(d.grantFrames[Math.floor(ref / per)] as Mfn) + (ref % per) * 8) as MachineAddr;
    for (const bit of [GTF.reading, GTF.writing, GTF.reading | GTF.writing]) {
      m.mem.atomicOr32(addr, bit);
      expect(u.gnttab.endForeignAccessRef(ref), `bits ${bit}`).to.equal(false);
      expect(u.gnttab.flags(ref) & GTF.type_mask).to.equal(GTF.permit_access);
      m.mem.atomicAnd32(addr, ~(GTF.reading | GTF.writing));
    }
    m.mem.atomicOr32(addr, GTF.reading);
    const free = u.gnttab.freeCount;
    expect(u.gnttab.endForeignAccess(ref)).to.equal(false);
    expect(u.gnttab.freeCount).to.equal(free);
    expect(u.gnttab.retryDeferred()).to.equal(1);
    m.mem.atomicAnd32(addr, ~GTF.reading);
    expect(u.gnttab.retryDeferred()).to.equal(0);
    expect(u.gnttab.freeCount).to.equal(free + 1);
    expect(u.gnttab.flags(ref)).to.equal(0);
  });

  it('hands out each ref once, never a reserved one, and undefined when the table is full', () => {
    const { u } = machine();
    const pfn = u.ram.alloc();
    const seen = new Set<number>();
    for (let r = u.gnttab.grantForeignAccess(asDomId(0), pfn, true); r !== undefined; r = u.gnttab.grantForeignAccess(asDomId(0), pfn, true)) {
      expect(seen.has(r)).to.equal(false);
      seen.add(r);
    }
    expect(seen.size).to.equal(2 * 512 - 8);
    for (let r = 0; r < 8; r++) expect(seen.has(r)).to.equal(false);
    expect(u.gnttab.freeCount).to.equal(0);
    u.gnttab.endForeignAccessRef(asGref(9));
    u.gnttab.freeRef(asGref(9));
    expect(u.gnttab.allocRef()).to.equal(9);
  });

  it('splits map, unmap and copy batches larger than the hypercall buffer, and keeps each status in order', () => {
    const { d0, u } = machine();
    const n = 600; // > 512 map elements (32 B) or 682 unmap elements (24 B) per 16 KiB buffer
    const pages = Array.from({ length: n }, (_, i) => {
      const pfn = u.ram.alloc();
      u.mem.setU32(u.gpa(pfn), i);
      return pfn;
    });
    const refs = pages.map((p) => u.gnttab.grantForeignAccess(asDomId(0), p, true)!);
    const hosts = refs.map(() => d0.ballooned.alloc());
    const calls = d0.hc.calls;
    const res = d0.gnttab.mapGrantRefs(refs.map((ref, i) => ({ domid: asDomId(u.domid), ref, readonly: true, hostPfn: hosts[i]! })));
    expect(d0.hc.calls - calls).to.equal(2);
    expect(res.every((r) => r.status === GNTST.okay)).to.equal(true);
    hosts.forEach((h, i) => expect(d0.mem.getU32(d0.gpa(h))).to.equal(i));
    // A bad element in the middle of the second chunk fails alone.
    const copies = d0.gnttab.copy(refs.slice(0, 450).map((ref, i) => ({
      source: { gref: ref, domid: asDomId(u.domid), offset: 0 }, dest: { frame: d0.ram.alloc(), offset: 0 }, len: i === 430 ? 4097 : 4,
    })));
    expect(copies.length).to.equal(450);
    expect(copies.filter((s) => s !== GNTST.okay)).to.deep.equal([GNTST.bad_copy_arg]);
    expect(copies[430]).to.equal(GNTST.bad_copy_arg);
    const st = d0.gnttab.unmapGrantRefs(res.map((r, i) => ({ handle: r.handle, hostPfn: hosts[i]! })));
    expect(st.length).to.equal(n);
    expect(st.every((s) => s === GNTST.okay)).to.equal(true);
    for (const ref of refs) expect(u.gnttab.endForeignAccessRef(ref)).to.equal(true);
  });

  it('reports a failed hypercall (not a per-element status) as a GnttabError naming the op and errno', () => {
    const { u } = machine();
    const failing: Hypercaller = { buf: u.hc.buf, bufBytes: u.hc.bufBytes, calls: 0, call: () => [-14, 0] };
    const gt = new GrantTable(u.mem, failing, u.boot.grantPfnBase, 1, (p: Pfn) => p);
    expect(() => gt.mapGrantRefs([{ domid: asDomId(0), ref: asGref(8), readonly: true, hostPfn: 5 as Pfn }])).to.throw(GnttabError, /GNTTABOP_map_grant_ref: EFAULT \(-14\)/);
    expect(() => gt.unmapGrantRefs([{ handle: 0 as never, hostPfn: 5 as Pfn }])).to.throw(GnttabError, /GNTTABOP_unmap_grant_ref/);
    expect(() => gt.copy([{ source: { frame: 1, offset: 0 }, dest: { frame: 2, offset: 0 }, len: 1 }])).to.throw(GnttabError, /GNTTABOP_copy/);
    expect(() => gt.setup()).to.throw(GnttabError, /GNTTABOP_setup_table/);
    // An empty batch makes no hypercall at all.
    expect(gt.mapGrantRefs([])).to.deep.equal([]);
    expect(failing.calls).to.equal(0);
  });
});
