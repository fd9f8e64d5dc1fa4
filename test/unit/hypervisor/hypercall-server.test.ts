import { expect } from 'chai';
import { ECS, EVTCHNOP } from '../../../shared/abi/evtchn.ts';
import { GNTTABOP } from '../../../shared/abi/grant.ts';
import { DCB, MACHINE_HEADER } from '../../../shared/abi/machine.ts';
import { HYPERVISOR, XEN_ERRNO } from '../../../shared/abi/xen.ts';
import { MachineMemory } from '../../../shared/memory/machine-memory.ts';
import { Hypervisor, type HypervisorOptions } from '../../../hypervisor/hypervisor.ts';
import { HypercallServer } from '../../../hypervisor/hypercall-server.ts';
import { DOMID_SELF, type MachineAddr } from '../../../shared/types.ts';

const H = (n: number) => n as MachineAddr;

function machine(opts: HypervisorOptions = {}) {
  const mem = MachineMemory.create({ memBytes: 16 << 20, pageSize: 4096 });
  const hv = new Hypervisor(mem, opts);
  const server = new HypercallServer(hv, { spinUs: 0 });
  const create = (name: string, memoryKiB = 512) => {
    const r = hv.createDomain({ name, memoryKiB, model: 'vp' });
    if (!r.ok) throw new Error(JSON.stringify(r.error));
    return r.value;
  };
  return { mem, hv, server, create };
}

/** Posts a call the way shared/hypercall/channel.ts does, without waiting for the answer. */
function post(hv: Hypervisor, slot: number, op: number, args: readonly number[] = []): void {
  const mem = hv.mem;
  const f = (x: number) => hv.layout.dcbField(slot, x);
  mem.setU32(f(DCB.mbOp), op >>> 0);
  for (let i = 0; i < DCB.NR_ARGS; i++) mem.setU32(H(f(DCB.mbArgs) + i * 4), (args[i] ?? 0) >>> 0);
  mem.atomicStore32(f(DCB.mbState), DCB.MB_POSTED);
  ring(hv, slot);
}
function ring(hv: Hypervisor, slot: number): void {
  hv.mem.atomicOr32(H(MACHINE_HEADER.hvPending + (slot >>> 5) * 4), 1 << (slot & 31));
}
/** The answer in slot's mailbox; collects it (DONE → IDLE) as the caller would. */
function collect(hv: Hypervisor, slot: number): { state: number; r: number; r2: number } {
  const mem = hv.mem;
  const f = (x: number) => hv.layout.dcbField(slot, x);
  const state = mem.atomicLoad32(f(DCB.mbState));
  const out = { state, r: mem.getI32(f(DCB.mbResult)), r2: mem.getU32(f(DCB.mbResult2)) };
  if (state === DCB.MB_DONE) mem.atomicStore32(f(DCB.mbState), DCB.MB_IDLE);
  return out;
}
function pendingWords(hv: Hypervisor): number[] {
  return Array.from({ length: 2 }, (_, w) => hv.mem.atomicLoad32(H(MACHINE_HEADER.hvPending + w * 4)));
}

describe('HypercallServer (one thread, hand-posted mailboxes)', () => {
  it('serves a posted call, answers in the caller\'s mailbox and clears its pending bit', () => {
    const { hv, server, create } = machine();
    const a = create('a');
    post(hv, a.slot, HYPERVISOR.event_channel_op, [EVTCHNOP.alloc_unbound, DOMID_SELF, 0]);
    expect(server.pollOnce()).to.equal(1);
    const ans = collect(hv, a.slot);
    expect(ans.state).to.equal(DCB.MB_DONE);
    expect(ans.r).to.equal(0);
    expect(hv.domain(a.domid)?.ports[ans.r2]?.state).to.equal(ECS.unbound);
    expect(pendingWords(hv)).to.deep.equal([0, 0]);
    expect(hv.mem.atomicLoad32(hv.layout.dcbField(a.slot, DCB.statHypercalls))).to.equal(1);
    expect(server.pollOnce()).to.equal(0);
  });

  it('serves every slot posted before the poll, across pending words, each with its own identity', () => {
    const { hv, server, create } = machine();
    const doms = Array.from({ length: 34 }, (_, i) => create(`d${i}`, 64));
    const chosen = [doms[0]!, doms[5]!, doms[31]!, doms[32]!, doms[33]!];
    for (const d of chosen) post(hv, d.slot, HYPERVISOR.event_channel_op, [EVTCHNOP.alloc_unbound, DOMID_SELF, d.domid]);
    expect(server.pollOnce()).to.equal(5);
    for (const d of chosen) {
      const ans = collect(hv, d.slot);
      expect(ans.r, `slot ${d.slot}`).to.equal(0);
      // The port was made in the caller's own domain, found by slot, for the domid it named.
      expect(hv.domain(d.domid)?.ports[ans.r2]).to.deep.equal({ state: ECS.unbound, remoteDom: d.domid, remotePort: 0 });
    }
    expect(collect(hv, doms[1]!.slot).state).to.equal(DCB.MB_IDLE);
  });

  it('ignores spurious pending bits: idle mailboxes, answered ones, and slots beyond the machine', () => {
    const { hv, server, create } = machine({ nrSlots: 40 });
    const a = create('a');
    const b = create('b');
    ring(hv, a.slot); // nothing posted
    post(hv, b.slot, HYPERVISOR.xensim_nop);
    expect(server.pollOnce()).to.equal(1);
    // b's answer sits uncollected; a second ring must not re-run the call.
    ring(hv, b.slot);
    expect(server.pollOnce()).to.equal(0);
    expect(collect(hv, b.slot)).to.deep.equal({ state: DCB.MB_DONE, r: 0, r2: 0 });
    expect(hv.counters.hypercalls).to.equal(1);
    // Bits for slots 40..63 name no slot at all (the machine has 40).
    // A real call whose bit shares the word with them must still be answered.
    let c = create('c0', 64);
    for (let i = 1; c.slot < 33; i++) c = create(`c${i}`, 64);
    post(hv, c.slot, HYPERVISOR.xensim_nop);
    hv.mem.atomicOr32(H(MACHINE_HEADER.hvPending + 4), (1 << (45 - 32)) | (1 << (63 - 32)));
    expect(() => server.pollOnce()).to.not.throw();
    expect(collect(hv, c.slot)).to.deep.equal({ state: DCB.MB_DONE, r: 0, r2: 0 });
    expect(pendingWords(hv)).to.deep.equal([0, 0]);
    // And the server still serves.
    post(hv, a.slot, HYPERVISOR.xensim_nop);
    expect(server.pollOnce()).to.equal(1);
    expect(collect(hv, a.slot).r).to.equal(0);
  });

  it('answers -EIO when the hypervisor throws, logs it, and serves the next call', () => {
    const { hv, server, create } = machine();
    const a = create('a');
    const real = hv.hypercall.bind(hv);
    let armed = true;
    hv.hypercall = (slot, op, args) => {
      if (armed) { armed = false; throw new Error('simulated hypervisor bug'); }
      return real(slot, op, args);
    };
    const logged: unknown[][] = [];
    const origError = console.error;
    console.error = (...x: unknown[]) => { logged.push(x); };
    try {
      post(hv, a.slot, HYPERVISOR.xensim_nop);
      expect(server.pollOnce()).to.equal(1);
    } finally {
      console.error = origError;
    }
    expect(collect(hv, a.slot)).to.deep.equal({ state: DCB.MB_DONE, r: -XEN_ERRNO.EIO, r2: 0 });
    expect(String(logged[0]?.[0])).to.match(/hypercall 63 from slot 0 threw/);
    post(hv, a.slot, HYPERVISOR.event_channel_op, [EVTCHNOP.alloc_unbound, DOMID_SELF, 0]);
    expect(server.pollOnce()).to.equal(1);
    expect(collect(hv, a.slot).r).to.equal(0);
  });

  it('answers -ESRCH to a slot with no domain, or whose domain was destroyed or crashed', () => {
    const { hv, server, create } = machine();
    const a = create('a');
    const b = create('b');
    post(hv, 7, HYPERVISOR.xensim_nop);
    expect(server.pollOnce()).to.equal(1);
    expect(collect(hv, 7)).to.deep.equal({ state: DCB.MB_DONE, r: -XEN_ERRNO.ESRCH, r2: 0 });
    hv.destroyDomain(a.domid);
    hv.crash(b.domid);
    post(hv, a.slot, HYPERVISOR.xensim_nop);
    post(hv, b.slot, HYPERVISOR.xensim_nop);
    expect(server.pollOnce()).to.equal(2);
    expect(collect(hv, a.slot).r).to.equal(-XEN_ERRNO.ESRCH);
    expect(collect(hv, b.slot).r).to.equal(-XEN_ERRNO.ESRCH);
    expect(hv.counters.hypercalls).to.equal(0);
  });

  it('answers -ENOSYS to unknown hypercalls and unknown sub-ops', () => {
    const { hv, server, create } = machine();
    const a = create('a');
    for (const [op, args] of [[0, []], [999, []], [0xffffffff, []], [HYPERVISOR.memory_op, []], [HYPERVISOR.grant_table_op, [77]], [HYPERVISOR.event_channel_op, [EVTCHNOP.bind_virq]]] as const) {
      post(hv, a.slot, op, args);
      expect(server.pollOnce()).to.equal(1);
      expect(collect(hv, a.slot).r, `op ${op} ${args.join()}`).to.equal(-XEN_ERRNO.ENOSYS);
    }
  });

  it('answers -EFAULT to buffers beyond the hypercall buffer, never crashing, and keeps the books straight', () => {
    const { hv, server, create } = machine();
    const a = create('a');
    const bytes = hv.domain(a.domid)!.hcbufBytes;
    const cases: [number, number[]][] = [
      [HYPERVISOR.grant_table_op, [GNTTABOP.map_grant_ref, bytes - 16, 1]],
      [HYPERVISOR.grant_table_op, [GNTTABOP.map_grant_ref, 0, 0xffffffff]],
      [HYPERVISOR.grant_table_op, [GNTTABOP.unmap_grant_ref, 0xffffffff, 1]],
      [HYPERVISOR.grant_table_op, [GNTTABOP.copy, bytes, 1]],
      [HYPERVISOR.grant_table_op, [GNTTABOP.copy, 40, 0x7fffffff]],
      [HYPERVISOR.grant_table_op, [GNTTABOP.query_size, bytes - 4, 1]],
      [HYPERVISOR.grant_table_op, [GNTTABOP.setup_table, bytes - 4, 1]],
      [HYPERVISOR.multicall, [bytes - 63, 1]],
      [HYPERVISOR.multicall, [0, 0xffffffff]],
    ];
    for (const [op, args] of cases) {
      post(hv, a.slot, op, args);
      expect(server.pollOnce()).to.equal(1);
      expect(collect(hv, a.slot).r, `op ${op} ${args.join()}`).to.equal(-XEN_ERRNO.EFAULT);
    }
    // A setup_table count far past max_grant_frames is refused before the buffer is read.
    post(hv, a.slot, HYPERVISOR.grant_table_op, [GNTTABOP.setup_table, 0, 0xffffffff]);
    server.pollOnce();
    expect(collect(hv, a.slot).r).to.equal(-1);
    const rec = hv.reconcile();
    expect(rec.ok, JSON.stringify(rec)).to.equal(true);
    post(hv, a.slot, HYPERVISOR.xensim_nop);
    expect(server.pollOnce()).to.equal(1);
    expect(collect(hv, a.slot).r).to.equal(0);
  });

  it('stops: flags the machine stopped and wakes sleepers, after serving what was posted', async () => {
    const { mem, hv, create } = machine();
    const a = create('a');
    const server = new HypercallServer(hv, { spinUs: 0, idleMs: 5 });
    post(hv, a.slot, HYPERVISOR.xensim_nop);
    const done = server.run();
    await new Promise((r) => setTimeout(r, 20));
    expect(collect(hv, a.slot).r).to.equal(0);
    server.stop();
    await done;
    expect(mem.atomicLoad32(H(MACHINE_HEADER.hvStopped))).to.equal(1);
    expect(mem.atomicLoad32(H(MACHINE_HEADER.hvSpinning))).to.equal(0);
  });
});
