/**
 * `vstress`: the stress tests' own split device, a small block device over a
 * real blkif ring, so that rings, grant maps and copies, event channels and
 * the XenBus handshake are exercised end to end today, the way blkfront and
 * blkback will exercise them. It is a test fixture, not a driver: one segment
 * per request, whole 4 KiB blocks, an in-memory disk in dom0.
 *
 *  - VstressFront (guest): grants a one-page blkif ring and offers an event
 *    channel through the XenBus handshake; one task writes and reads blocks,
 *    each write a fresh generation of a pattern that names (domid, block,
 *    generation), each read checked against the last generation the backend
 *    ACKNOWLEDGED (an acknowledged write must read back). A hostile frontend
 *    also does what injectors ask: garbage slots, index leaps, requests
 *    rewritten after publish, bad grant refs, revoking or rewriting grants in use.
 *  - VstressBack (dom0): maps the ring, binds the port, and serves it from a
 *    task: RING_COPY_REQUEST once per slot (its region counts slot reads),
 *    validates the private copy, moves data by GNTTABOP_map (host mapping, read
 *    or written through dom0's MMU) or GNTTABOP_copy (through a bounce page),
 *    answers, and cuts a ring off when the frontend publishes an impossible
 *    req_prod. Hostile input never throws out of it.
 *
 * Mutants (stress/mutants.ts) are switches in these classes, named after the
 * bug each one models; with no switch set both ends are correct.
 *
 * Driver plug-in point: when dom0/blkback and domU/blkfront land, a stress
 * plug-in runs them in place of (or beside) this device with the same books
 * (RingFrontBooks/RingBackBooks, durability), so the same checkers apply.
 */
import { BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, BLKIF_SECTOR_SIZE } from '../shared/abi/blkif.ts';
import { GRANT_ENTRY_V1 } from '../shared/abi/grant.ts';
import { SRING } from '../shared/abi/ring.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import { MemoryFault } from '../shared/memory/domain-memory.ts';
import { ok, err } from '../shared/result.ts';
import { BackRing } from '../shared/ring/back-ring.ts';
import { BLKIF_RING, blkifRequestCodec, type BlkifRequest, type BlkifRequestDirect, type BlkifResponse } from '../shared/ring/codec.ts';
import { FrontRing } from '../shared/ring/front-ring.ts';
import { idxAdd, idxSub, type RingIdx } from '../shared/ring/u32.ts';
import { asGref, type DomId, type GrantHandle, type Gref, type GuestAddr, type Pfn, type Port } from '../shared/types.ts';
import type { BackendHooks } from '../shared/xenbus/backend.ts';
import type { FrontendHooks } from '../shared/xenbus/frontend.ts';
import { readUint, describeKeyError } from '../shared/xenbus/keys.ts';
import { shutdown, startup } from './events.ts';
import type { StressHost, MapOracle } from './host.ts';
import { CountingRegion, takeBallooned, type PageBook } from './pages.ts';
import type { StressPlatform } from './platform.ts';
import { newWorkloadBooks, type RingBackBooks, type RingFrontBooks, type WorkloadBooks } from './view.ts';

export const VSTRESS_TYPE = 'vstress';
export const VSTRESS_DEVID = 0;
/** Blocks (4 KiB, 8 sectors each) on each guest's disk. */
export const VSTRESS_BLOCKS = 48;
const SECTORS_PER_BLOCK = 8;
const BLOCK_BYTES = SECTORS_PER_BLOCK * BLKIF_SECTOR_SIZE;

// ---------------------------------------------------------------- data pattern

/** [fillPattern buf domid block gen] writes the content of generation gen of a block (gen 0: zeros). */
export function fillPattern(buf: Uint8Array, domid: number, block: number, gen: number): void {
  if (gen === 0) { buf.fill(0); return; }
  let x = (Math.imul(domid + 1, 0x9e3779b1) ^ Math.imul(block + 1, 0x85ebca6b) ^ Math.imul(gen, 0xc2b2ae35)) >>> 0;
  for (let i = 0; i < buf.length; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    buf[i] = x & 0xff; buf[i + 1] = (x >>> 8) & 0xff; buf[i + 2] = (x >>> 16) & 0xff; buf[i + 3] = x >>> 24;
  }
  // A readable header: who, where, which generation.
  const hdr = [0x5354_5253, domid, block, gen]; // 'SRTS'
  for (let w = 0; w < 4; w++) for (let b = 0; b < 4; b++) buf[w * 4 + b] = ((hdr[w] as number) >>> (8 * b)) & 0xff;
}

function describeBlock(buf: Uint8Array): string {
  const w = (i: number) => ((buf[i * 4] as number) | ((buf[i * 4 + 1] as number) << 8) | ((buf[i * 4 + 2] as number) << 16) | ((buf[i * 4 + 3] as number) << 24)) >>> 0;
  if (w(0) === 0x5354_5253) return `d${w(1)} block ${w(2)} gen ${w(3)}`;
  return buf.every((b) => b === 0) ? 'zeros' : 'unrecognised bytes';
}

// ---------------------------------------------------------------- the disk

/** dom0's in-memory disks, one per (frontend domain, devid); they survive backend restarts. */
export class VstressDisks {
  private readonly disks = new Map<string, Map<number, Uint8Array>>();
  disk(domid: number, devid: number): Map<number, Uint8Array> {
    const key = `${domid}/${devid}`;
    let d = this.disks.get(key);
    if (d === undefined) { d = new Map(); this.disks.set(key, d); }
    return d;
  }
  drop(domid: number): void {
    for (const k of [...this.disks.keys()]) if (k.startsWith(`${domid}/`)) this.disks.delete(k);
  }
}

// ---------------------------------------------------------------- mutants

export type FrontMutant = 'free-early';
export type BackMutant = 'double-fetch' | 'stale-id' | 'ack-before-write' | 'read-after-unmap' | 'refuse-all' | 'no-unmap-on-disconnect';

/** Hostile acts a hostile frontend performs when an injector asks. */
export type HostileRingAct = 'garbage' | 'leap' | 'rewrite' | 'bad-gref' | 'revoke-in-use' | 'reuse-in-use';

// ---------------------------------------------------------------- frontend

interface InFlight {
  readonly id: bigint;
  readonly op: typeof BLKIF_OP_READ | typeof BLKIF_OP_WRITE;
  readonly block: number;
  readonly gen: number;
  readonly pfn: Pfn;
  readonly ref: Gref;
  /** The grant was revoked or its page freed by a hostile act or a mutant: do not touch it again. */
  revoked: boolean;
  freed: boolean;
}

interface Conn {
  readonly backDom: number;
  readonly ringPfn: Pfn;
  readonly ringRef: Gref;
  readonly port: Port;
  readonly ring: FrontRing<BlkifRequest, BlkifResponse>;
  readonly books: RingFrontBooks;
}

export interface VstressFrontOptions {
  readonly hostile: boolean;
  readonly mutant?: FrontMutant;
  /** Requests in flight at most (≤ the ring's 32). */
  readonly depth: number;
  readonly oracle?: MapOracle;
}

export class VstressFront {
  private conn: Conn | undefined;
  private connections = 0;
  private kicked = false;
  private readonly inflight = new Map<bigint, InFlight>();
  private nextId = 1n;
  /** Per block: the generation last acknowledged, and blocks whose content is unknown (aborted writes). */
  private readonly acked = new Map<number, number>();
  private readonly unknown = new Set<number>();
  private readonly busy = new Set<number>();
  private lastAcked = -1;
  private nextGen = 1;
  private readonly acts: HostileRingAct[] = [];
  private taskRunning = false;
  private abortReq = false;
  private abortDone: (() => void) | undefined;
  /** The ring was cut off by the backend (or left broken by our own hostile act): issue nothing more on it. */
  private broken = false;
  readonly work: WorkloadBooks;
  private readonly scratch = new Uint8Array(BLOCK_BYTES);
  private readonly expect = new Uint8Array(BLOCK_BYTES);

  constructor(private readonly host: StressHost, private readonly pages: PageBook, private readonly opts: VstressFrontOptions) {
    this.work = newWorkloadBooks('vstress-io', host.k.domid, opts.hostile);
    host.books.workloads.push(this.work);
  }

  private get k(): DomainKernel { return this.host.k; }

  /** Queues a hostile act for the I/O task (hostile frontends only). */
  requestAct(act: HostileRingAct): boolean {
    if (!this.opts.hostile || this.conn === undefined || this.broken) return false;
    this.acts.push(act);
    return true;
  }
  get connected(): boolean { return this.conn !== undefined; }

  /** The XenBus hooks: setup grants the ring and offers a port; teardown lets go of them. */
  hooks(): FrontendHooks<number> {
    return {
      readBackend: async (ctx) => {
        const r = await readUint(ctx.xs, ctx.backPath, 'feature-vstress', 1);
        return r.ok ? ok(r.value) : err({ kind: 'bad-feature', message: describeKeyError(r.error) });
      },
      setup: (ctx) => {
        const backDom = ctx.id.backDom;
        const pfn = this.pages.alloc();
        if (pfn === undefined) return err({ kind: 'no-memory', message: 'no page for the ring' });
        const ring = FrontRing.init(this.k.mem.region([pfn]), BLKIF_RING);
        const ref = this.pages.grant(backDom, pfn, false, 'vstress ring');
        if (ref === undefined) { this.pages.free(pfn); return err({ kind: 'no-grant', message: 'grant table full' }); }
        let port: Port;
        try { port = this.k.evtchn.allocUnbound(backDom); } catch (e) {
          this.pages.endAccess(ref, true);
          return err({ kind: 'no-port', message: (e as Error).message });
        }
        this.connections++;
        const books: RingFrontBooks = {
          id: `d${this.k.domid}/${VSTRESS_DEVID}#${this.connections}`, domid: this.k.domid, hostile: this.opts.hostile, size: ring.size,
          issued: 0, completed: 0, unknownIds: 0, duplicates: 0, errors: 0, maxRspOutstanding: 0, hostileActs: 0, badResponses: 0,
        };
        this.host.books.ringFronts.push(books);
        this.k.evtchn.bind(port, () => { this.kicked = true; });
        startup(this.host, port);
        this.conn = { backDom, ringPfn: pfn, ringRef: ref, port, ring, books };
        this.broken = false;
        this.host.note(`vstress front connect ${books.id} ref ${ref} port ${port}`);
        return ok({ 'ring-ref': String(ref), 'event-channel': String(port), protocol: 'x86_64-abi' });
      },
      connected: () => {
        if (!this.taskRunning) this.startTask();
        return ok(undefined);
      },
      teardown: async () => {
        if (this.taskRunning) {
          this.abortReq = true;
          await new Promise<void>((r) => { this.abortDone = r; });
        } else {
          this.abortAll();
        }
        const c = this.conn;
        this.conn = undefined;
        if (c === undefined) return;
        shutdown(this.host, c.port);
        this.pages.endAccess(c.ringRef, true); // deferred while the backend still maps it
        this.host.note(`vstress front teardown ${c.books.id}`);
      },
    };
  }

  /** Every in-flight request ends unanswered: its write's effect is unknown until the block is rewritten. */
  private abortAll(): void {
    for (const f of this.inflight.values()) {
      if (f.op === BLKIF_OP_WRITE) this.unknown.add(f.block);
      this.busy.delete(f.block);
      this.release(f);
    }
    this.inflight.clear();
  }

  private release(f: InFlight): void {
    if (!f.revoked) this.pages.endAccess(f.ref, !f.freed);
    else if (!f.freed) this.pages.free(f.pfn);
  }

  private startTask(): void {
    this.taskRunning = true;
    this.host.spawn('vstress-front', async (p) => {
      try {
        await this.loop(p);
        this.work.done = true;
      } catch (e) {
        this.work.failure = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
        throw e;
      } finally {
        this.taskRunning = false;
        if (this.abortReq) { this.abortAll(); this.abortReq = false; this.abortDone?.(); }
      }
    });
  }

  private canIssue(): boolean {
    const c = this.conn;
    return c !== undefined && !this.broken && this.inflight.size < this.opts.depth && c.ring.freeRequests() > 0;
  }

  private async loop(p: StressPlatform): Promise<void> {
    let draining = false;
    for (;;) {
      // Once the run stops, wait for what is in flight with a bounded patience (woken once to arm it).
      const drainNow = p.stopping && !draining;
      const ok1 = await p.until(() => this.abortReq || this.kicked || (p.stopping ? !draining || this.inflight.size === 0 || this.conn === undefined : this.canIssue() || this.acts.length > 0),
        'vsf:idle', p.stopping && draining ? 4000 : undefined);
      if (drainNow || (p.stopping && !draining)) { draining = true; if (!this.kicked && !this.abortReq && this.inflight.size > 0 && this.conn !== undefined) continue; }
      if (this.abortReq) {
        this.abortAll();
        this.abortReq = false;
        this.abortDone?.();
        continue;
      }
      if (p.stopping && (this.inflight.size === 0 || this.conn === undefined || !ok1)) {
        if (this.inflight.size > 0 && this.conn !== undefined && !this.broken) {
          const oldest = [...this.inflight.values()][0] as InFlight;
          this.work.stuck = `${this.inflight.size} requests on ${this.conn.books.id} still unanswered after the drain (oldest: id ${oldest.id}, ${oldest.op === BLKIF_OP_WRITE ? 'write' : 'read'} of block ${oldest.block})`;
        }
        break;
      }
      if (this.kicked) { this.kicked = false; await this.consume(p); continue; }
      this.pages.retryDeferred();
      const act = this.acts.shift();
      if (act !== undefined) { await this.hostileAct(p, act); continue; }
      if (!p.stopping && this.canIssue()) await this.issue(p);
    }
    if (this.inflight.size > 0) this.work.aborted = true;
  }

  /** Chooses a block and an operation, fills and grants the page, and publishes the request. */
  private async issue(p: StressPlatform): Promise<void> {
    await p.point('vsf:issue');
    const c = this.conn;
    if (c === undefined || !this.canIssue()) return;
    const rng = p.rng;
    const write = rng.chance(0.55);
    let block: number;
    if (!write && this.lastAcked >= 0 && !this.busy.has(this.lastAcked) && rng.chance(0.5)) block = this.lastAcked; // read back what was just acknowledged
    else block = rng.int(VSTRESS_BLOCKS);
    if (this.busy.has(block)) return;
    const pfn = this.pages.alloc();
    if (pfn === undefined) { this.work.errors++; await p.sleep(50, 'vsf:no-page'); return; }
    const gen = write ? this.nextGen++ : 0;
    if (write) fillPattern(this.scratch, this.k.domid, block, gen);
    else this.scratch.fill(0xee);
    this.k.mem.copyIn(this.k.gpa(pfn), this.scratch);
    await p.point('vsf:grant');
    if (this.conn !== c) { this.pages.free(pfn); return; }
    const ref = this.pages.grant(c.backDom, pfn, write, write ? `write block ${block}` : `read block ${block}`);
    if (ref === undefined) { this.pages.free(pfn); this.work.errors++; await p.sleep(50, 'vsf:no-grant'); return; }
    const id = this.nextId++;
    const f: InFlight = { id, op: write ? BLKIF_OP_WRITE : BLKIF_OP_READ, block, gen, pfn, ref, revoked: false, freed: false };
    this.inflight.set(id, f);
    this.busy.add(block);
    await p.point('vsf:put');
    if (this.conn !== c) return; // torn down meanwhile: abortAll released it
    c.ring.putRequest({ operation: f.op, handle: VSTRESS_DEVID, id, sectorNumber: block * SECTORS_PER_BLOCK, seg: [{ gref: ref, firstSect: 0, lastSect: 7 }] });
    c.books.issued++;
    this.work.ops++;
    if (this.opts.mutant === 'free-early') {
      // MUTANT: frees the data page as soon as the request is on the ring, while the grant is still valid.
      this.pages.free(pfn);
      f.freed = true;
    }
    await this.push(p, c);
  }

  private async push(p: StressPlatform, c: Conn): Promise<void> {
    await p.point('vsf:push');
    if (this.conn !== c) return;
    if (c.ring.pushRequestsAndCheckNotify()) {
      await p.point('vsf:notify');
      if (this.conn === c) this.k.evtchn.notify(c.port);
    }
  }

  /** Takes every response the backend published, then re-arms rsp_event (RING_FINAL_CHECK_FOR_RESPONSES). */
  private async consume(p: StressPlatform): Promise<void> {
    const c = this.conn;
    if (c === undefined) return;
    for (;;) {
      await p.point('vsf:rsp');
      if (this.conn !== c) return;
      const n = c.ring.hasUnconsumedResponses();
      if (!n.ok) { c.books.badResponses++; this.broken = true; return; }
      const out = idxSub(c.ring.shared.loadRspProd(), c.ring.rspCons);
      if (out > c.books.maxRspOutstanding) c.books.maxRspOutstanding = out;
      if (n.value === 0) {
        const fin = c.ring.finalCheckForResponses();
        if (!fin.ok) { c.books.badResponses++; this.broken = true; return; }
        if (!fin.value) return;
        continue;
      }
      for (let i = 0; i < n.value; i++) {
        const r = c.ring.copyResponse();
        if (!r.ok) { c.books.badResponses++; continue; }
        this.complete(c, r.value);
      }
    }
  }

  private complete(c: Conn, rsp: BlkifResponse): void {
    const f = this.inflight.get(rsp.id);
    if (f === undefined) {
      // An id we never issued, or one already completed.
      if (rsp.id > 0n && rsp.id < this.nextId) c.books.duplicates++;
      else c.books.unknownIds++;
      this.host.note(`vstress front ${c.books.id}: response for id ${rsp.id} not in flight`);
      return;
    }
    this.inflight.delete(rsp.id);
    this.busy.delete(f.block);
    c.books.completed++;
    if (rsp.status !== BLKIF_RSP_OKAY) {
      c.books.errors++;
      this.work.errors++;
      if (f.op === BLKIF_OP_WRITE) this.unknown.add(f.block);
      this.release(f);
      return;
    }
    this.work.okOps++;
    if (f.op === BLKIF_OP_WRITE) {
      this.acked.set(f.block, f.gen);
      this.unknown.delete(f.block);
      this.lastAcked = f.block;
    } else if (!this.opts.hostile && !f.freed && !this.unknown.has(f.block)) {
      this.k.mem.copyOut(this.k.gpa(f.pfn), this.scratch);
      const gen = this.acked.get(f.block) ?? 0;
      fillPattern(this.expect, this.k.domid, f.block, gen);
      if (Buffer.compare(this.scratch, this.expect) !== 0) {
        const msg = `d${this.k.domid} block ${f.block}: read back ${describeBlock(this.scratch)} after the backend acknowledged gen ${gen}`;
        this.work.verifyFailures.push(msg);
        this.host.books.durability.push(msg);
      }
    }
    this.release(f);
  }

  // ---- hostile acts ----------------------------------------------------------

  private async hostileAct(p: StressPlatform, act: HostileRingAct): Promise<void> {
    const c = this.conn;
    if (c === undefined || this.broken) return;
    const rng = p.rng;
    c.books.hostileActs++;
    this.host.note(`vstress front ${c.books.id}: hostile ${act}`);
    const region = c.ring.shared.region;
    switch (act) {
      case 'garbage': {
        if (c.ring.freeRequests() === 0) return;
        await p.point('vsf:garbage');
        if (this.conn !== c) return;
        const idx = c.ring.putRequest({ operation: BLKIF_OP_READ, handle: 0, id: 0n, sectorNumber: 0, seg: [] });
        region.copyIn(c.ring.requestSlot(idx), rng.bytes(blkifRequestCodec.SIZE));
        await this.push(p, c);
        return;
      }
      case 'leap': {
        await p.point('vsf:leap');
        if (this.conn !== c) return;
        // req_prod runs far past anything the backend answered: it must stop serving this ring.
        c.ring.shared.storeReqProd(idxAdd(c.ring.reqProdPvt, c.ring.size + 1 + rng.int(1000)));
        this.broken = true;
        this.k.evtchn.notify(c.port);
        return;
      }
      case 'rewrite': {
        // Publish a good request, then rewrite its slot while the backend may be copying it.
        if (!this.canIssue()) return;
        const before = c.ring.reqProdPvt;
        await this.issue(p);
        if (this.conn !== c || c.ring.reqProdPvt === before) return;
        await p.point('vsf:rewrite');
        if (this.conn !== c) return;
        const off = c.ring.requestSlot(before);
        region.setU64(off + 16, BigInt(rng.int(1 << 20))); // sector_number
        region.setU32(off + 24, rng.next()); // seg[0].gref
        region.setU8(off, rng.int(8)); // operation
        return;
      }
      case 'bad-gref': {
        if (!this.canIssue()) return;
        await p.point('vsf:bad-gref');
        if (this.conn !== c) return;
        const id = this.nextId++;
        const gref = rng.chance(0.5) ? rng.next() : 8 + rng.int(500);
        c.ring.putRequest({ operation: BLKIF_OP_READ, handle: 0, id, sectorNumber: 0, seg: [{ gref: gref as Gref, firstSect: 0, lastSect: 7 }] });
        await this.push(p, c);
        return;
      }
      case 'revoke-in-use':
      case 'reuse-in-use': {
        const victims = [...this.inflight.values()].filter((f) => !f.revoked && !f.freed);
        if (victims.length === 0) return;
        const f = rng.pick(victims);
        await p.point(`vsf:${act}`);
        if (this.conn !== c || !this.inflight.has(f.id)) return;
        const mapped = this.opts.oracle?.(this.k.domid, f.ref);
        if (act === 'revoke-in-use') {
          this.host.books.grants.revokeAttempts++;
          if (this.pages.tryRevoke(f.ref)) {
            if (mapped === true) this.host.books.grants.revokedWhileMapped++;
            f.revoked = true;
          }
        } else {
          this.host.books.grants.reuseAttempts++;
          // Point the in-use entry at another of our pages (frame only; a stomp of the whole entry would drop the in-use bits too).
          const other = this.pages.alloc();
          if (other === undefined) return;
          const entry = (this.k.boot.grantPfnBase * this.k.pageSize + f.ref * GRANT_ENTRY_V1.SIZE + GRANT_ENTRY_V1.frame) as GuestAddr;
          this.k.mem.setU32(entry, this.k.frameOf(other));
          this.pages.free(other);
        }
        return;
      }
    }
  }
}

// ---------------------------------------------------------------- backend

export interface VstressBackOptions {
  readonly mutant?: BackMutant;
  readonly disks: VstressDisks;
}

interface FrontKeys { readonly ringRef: number; readonly port: number }

interface BackSession {
  readonly frontDom: number;
  readonly ringPfn: Pfn;
  readonly ringHandle: GrantHandle;
  readonly port: Port;
  readonly region: CountingRegion;
  readonly ring: BackRing<BlkifRequest, BlkifResponse>;
  readonly bounce: Pfn;
  readonly books: RingBackBooks;
  readonly disk: Map<number, Uint8Array>;
  kicked: boolean;
  stop: boolean;
  exited: Promise<void>;
  /** MUTANT ack-before-write: acknowledged writes not yet stored, with the number of requests still to serve first. */
  pendingWrites: { sector: number; data: Uint8Array; after: number }[];
  lastId: bigint;
}

/** One backend per device: connect maps the ring and starts a task that serves it. */
export class VstressBack {
  private session: BackSession | undefined;
  private connections = 0;

  constructor(private readonly host: StressHost, private readonly opts: VstressBackOptions) {}

  private get k(): DomainKernel { return this.host.k; }

  hooks(): BackendHooks<FrontKeys> {
    return {
      probe: () => ok({ 'feature-vstress': '1', sectors: String(VSTRESS_BLOCKS * SECTORS_PER_BLOCK) }),
      readFrontend: async (ctx) => {
        const ringRef = await readUint(ctx.xs, ctx.frontPath, 'ring-ref');
        if (!ringRef.ok) return err({ kind: 'bad-ring-ref', message: describeKeyError(ringRef.error) });
        const port = await readUint(ctx.xs, ctx.frontPath, 'event-channel', 4095);
        if (!port.ok) return err({ kind: 'bad-event-channel', message: describeKeyError(port.error) });
        return ok({ ringRef: ringRef.value, port: port.value });
      },
      connect: (ctx, f) => {
        const r = this.connect(ctx.id.frontDom, f);
        return r === undefined ? ok({ 'sector-size': '512' }) : err({ kind: 'connect-failed', message: r });
      },
      disconnect: () => this.disconnect(),
    };
  }

  /** Maps the ring and binds the port; returns an error message, or undefined on success. */
  private connect(frontDom: number, f: FrontKeys): string | undefined {
    const k = this.k;
    const pfn = takeBallooned(k, this.host.books);
    if (pfn === undefined) return 'dom0 is out of ballooned pages';
    const [m] = k.gnttab.mapGrantRefs([{ domid: frontDom as DomId, ref: asGref(f.ringRef), readonly: false, hostPfn: pfn }]);
    if (m === undefined || m.status !== 0) { k.ballooned.release(pfn); return `cannot map ring-ref ${f.ringRef}: status ${m?.status}`; }
    this.host.books.expectedMaptrack++;
    let port: Port;
    try { port = k.evtchn.bindInterdomain(frontDom, f.port); } catch (e) {
      k.gnttab.unmapGrantRefs([{ handle: m.handle, hostPfn: pfn }]);
      this.host.books.expectedMaptrack--;
      k.ballooned.release(pfn);
      return `cannot bind event-channel ${f.port}: ${(e as Error).message}`;
    }
    const bounce = k.ram.tryAlloc();
    if (bounce === undefined) {
      k.evtchn.close(port);
      k.gnttab.unmapGrantRefs([{ handle: m.handle, hostPfn: pfn }]);
      this.host.books.expectedMaptrack--;
      k.ballooned.release(pfn);
      return 'dom0 is out of RAM pages';
    }
    this.connections++;
    const region = new CountingRegion(k.mem.region([pfn]), 1);
    // BACK_RING_ATTACH at rsp_prod (Linux blkback since it can be rebound): a
    // backend that comes back may find a ring the frontend used with the old
    // one, with requests still unanswered. More than a ring of them is bogus.
    const rspProd = region.atomicLoadU32(SRING.rsp_prod) as RingIdx;
    const reqProd = region.atomicLoadU32(SRING.req_prod) as RingIdx;
    const ring = BackRing.attach(region, BLKIF_RING, rspProd);
    if (idxSub(reqProd, rspProd) > ring.size) {
      k.ram.release(bounce);
      k.evtchn.close(port);
      k.gnttab.unmapGrantRefs([{ handle: m.handle, hostPfn: pfn }]);
      this.host.books.expectedMaptrack--;
      k.ballooned.release(pfn);
      return `ring-ref ${f.ringRef}: req_prod ${reqProd} is more than a ring past rsp_prod ${rspProd}`;
    }
    const books: RingBackBooks = {
      id: `d${frontDom}/${VSTRESS_DEVID}#${this.connections}`, domid: frontDom, size: ring.size, consumed: 0, slotBytesRead: 0, requestBytes: blkifRequestCodec.SIZE, responses: 0,
      errorsSent: 0, maxReqOutstanding: 0, cutOff: undefined, consumedAfterCutOff: 0,
    };
    this.host.books.ringBacks.push(books);
    let exited!: () => void;
    const s: BackSession = {
      frontDom, ringPfn: pfn, ringHandle: m.handle, port, region, ring, bounce, books, disk: this.opts.disks.disk(frontDom, VSTRESS_DEVID),
      kicked: true, stop: false, exited: new Promise<void>((r) => { exited = r; }), pendingWrites: [], lastId: 0n,
    };
    this.session = s;
    k.evtchn.bind(port, () => { s.kicked = true; });
    startup(this.host, port);
    this.host.note(`vstress back connect ${books.id} port ${port}`);
    this.host.spawn(`vstress-back-d${frontDom}`, async (p) => {
      try { await this.serve(p, s); } finally { exited(); }
    }, { daemon: true });
    return undefined;
  }

  /** Stops the serving task, then unmaps the ring and closes the port (unless the mutant forgets). */
  async disconnect(): Promise<void> {
    const s = this.session;
    if (s === undefined) return;
    this.session = undefined;
    s.stop = true;
    await s.exited;
    const k = this.k;
    shutdown(this.host, s.port);
    k.ram.release(s.bounce);
    if (this.opts.mutant === 'no-unmap-on-disconnect') {
      // MUTANT: forgets the ring mapping (but drops it from its books as if unmapped).
      this.host.books.expectedMaptrack--;
    } else {
      const [st] = k.gnttab.unmapGrantRefs([{ handle: s.ringHandle, hostPfn: s.ringPfn }]);
      if (st === 0) { this.host.books.expectedMaptrack--; k.ballooned.release(s.ringPfn); }
    }
    this.host.note(`vstress back disconnect ${s.books.id}`);
  }

  private async serve(p: StressPlatform, s: BackSession): Promise<void> {
    while (!s.stop) {
      await p.until(() => s.kicked || s.stop, 'vsb:idle');
      if (s.stop) break;
      s.kicked = false;
      if (s.books.cutOff !== undefined) continue; // a cut-off ring is not read again
      for (;;) {
        const n = s.ring.unconsumedRequests();
        if (!n.ok) { this.cutOff(s, n.error.kind, n.error.reqProd); break; }
        const out = idxSub(s.ring.shared.loadReqProd(), s.ring.reqCons);
        if (out <= s.ring.size && out > s.books.maxReqOutstanding) s.books.maxReqOutstanding = out;
        if (n.value === 0) {
          const fin = s.ring.finalCheckForRequests();
          if (!fin.ok) { this.cutOff(s, fin.error.kind, fin.error.reqProd); break; }
          if (!fin.value) break;
          continue;
        }
        await p.point('vsb:copy');
        if (s.stop) break;
        await this.serveOne(p, s);
        s.books.slotBytesRead = s.region.slotBytesRead;
      }
    }
    // Whatever the mutant still holds back is lost with the session.
    s.pendingWrites.length = 0;
  }

  private cutOff(s: BackSession, kind: string, reqProd: RingIdx): void {
    // Linux blkback: "Frontend provided bogus ring requests"; stop serving the ring.
    s.books.cutOff = `${kind}: req_prod ${reqProd}, req_cons ${s.ring.reqCons}`;
    this.host.note(`vstress back ${s.books.id} cut off: ${s.books.cutOff}`);
  }

  private async serveOne(p: StressPlatform, s: BackSession): Promise<void> {
    const k = this.k;
    const idx = s.ring.reqCons;
    const copied = s.ring.copyRequest(); // RING_COPY_REQUEST: the only read of the slot
    s.books.consumed++;
    if (s.books.cutOff !== undefined) s.books.consumedAfterCutOff++;
    let req: BlkifRequest | undefined;
    let id = 0n;
    let op = 0;
    if (copied.ok) { req = copied.value; id = req.id; op = req.operation; }
    else if ('id' in copied.error) { id = copied.error.id; op = copied.error.operation; }
    if (req !== undefined && this.opts.mutant === 'double-fetch') {
      // MUTANT: fetches the request again from the shared slot after validating the first copy (XSA-155).
      const again = new Uint8Array(blkifRequestCodec.SIZE);
      s.region.copyOut(s.ring.shared.slotOffset(idx), again);
      const d = blkifRequestCodec.decode(again, 0);
      if (d.ok) req = d.value;
    }
    let status: number = BLKIF_RSP_ERROR;
    if (req !== undefined && this.opts.mutant !== 'refuse-all') status = await this.execute(p, s, req);
    if (this.opts.mutant === 'stale-id' && s.books.consumed % 5 === 0 && s.lastId !== 0n) {
      id = s.lastId; // MUTANT: answers with the previous request's id (a pending_req reused without its new id)
    }
    s.lastId = req?.id ?? id;
    await p.point('vsb:respond');
    if (s.stop && this.session !== s) { /* disconnecting: still answer, the frontend may be alive */ }
    s.ring.putResponse({ id, operation: op & 0xff, status });
    s.books.responses++;
    if (status !== BLKIF_RSP_OKAY) s.books.errorsSent++;
    // Deferred stores of the ack-before-write mutant land once enough later requests were served.
    for (let i = 0; i < s.pendingWrites.length;) {
      const w = s.pendingWrites[i] as { sector: number; data: Uint8Array; after: number };
      if (--w.after <= 0) { this.store(s, w.sector, w.data); s.pendingWrites.splice(i, 1); } else i++;
    }
    await p.point('vsb:push');
    if (s.ring.pushResponsesAndCheckNotify()) k.evtchn.notify(s.port);
  }

  private store(s: BackSession, sector: number, data: Uint8Array): void {
    for (let i = 0; i * BLKIF_SECTOR_SIZE < data.length; i++) s.disk.set(sector + i, data.slice(i * BLKIF_SECTOR_SIZE, (i + 1) * BLKIF_SECTOR_SIZE));
  }

  /** Validates the private copy and moves the data; returns the BLKIF_RSP status. */
  private async execute(p: StressPlatform, s: BackSession, req: BlkifRequest): Promise<number> {
    if (req.operation !== BLKIF_OP_READ && req.operation !== BLKIF_OP_WRITE) return BLKIF_RSP_ERROR;
    const r = req as BlkifRequestDirect;
    if (r.seg.length < 1 || r.seg.length > 11) return BLKIF_RSP_ERROR;
    const total = VSTRESS_BLOCKS * SECTORS_PER_BLOCK;
    let sector = r.sectorNumber;
    for (const seg of r.seg) {
      if (seg.firstSect > seg.lastSect || seg.lastSect >= SECTORS_PER_BLOCK) return BLKIF_RSP_ERROR;
      const n = seg.lastSect - seg.firstSect + 1;
      if (sector + n > total) return BLKIF_RSP_ERROR;
      sector += n;
    }
    sector = r.sectorNumber;
    const write = r.operation === BLKIF_OP_WRITE;
    for (const seg of r.seg) {
      const n = seg.lastSect - seg.firstSect + 1;
      const st = await this.segment(p, s, write, seg.gref, seg.firstSect, n, sector);
      if (st !== BLKIF_RSP_OKAY) return st;
      sector += n;
    }
    return BLKIF_RSP_OKAY;
  }

  /** One segment: map it (and touch it through our MMU) or grant-copy it through the bounce page. */
  private async segment(p: StressPlatform, s: BackSession, write: boolean, gref: Gref, first: number, n: number, sector: number): Promise<number> {
    const k = this.k;
    const bytes = n * BLKIF_SECTOR_SIZE;
    const off = first * BLKIF_SECTOR_SIZE;
    const data = new Uint8Array(bytes);
    if (!write) {
      for (let i = 0; i < n; i++) {
        const sec = s.disk.get(sector + i);
        if (sec !== undefined) data.set(sec, i * BLKIF_SECTOR_SIZE);
      }
    }
    const useMap = this.opts.mutant === 'read-after-unmap' || p.rng.chance(0.5);
    await p.point(useMap ? 'vsb:map' : 'vsb:gntcopy');
    if (useMap) {
      const pfn = takeBallooned(k, this.host.books);
      if (pfn === undefined) return BLKIF_RSP_ERROR;
      const [m] = k.gnttab.mapGrantRefs([{ domid: s.frontDom as DomId, ref: gref, readonly: write, hostPfn: pfn }]);
      if (m === undefined || m.status !== 0) { k.ballooned.release(pfn); return BLKIF_RSP_ERROR; }
      this.host.books.expectedMaptrack++;
      const unmap = () => {
        const [st] = k.gnttab.unmapGrantRefs([{ handle: m.handle, hostPfn: pfn }]);
        if (st === 0) { this.host.books.expectedMaptrack--; k.ballooned.release(pfn); }
      };
      if (this.opts.mutant === 'read-after-unmap') unmap(); // MUTANT: unmaps before it is done with the page
      await p.point('vsb:access');
      let st: number = BLKIF_RSP_OKAY;
      try {
        if (write) k.mem.copyOut(k.gpa(pfn, off), data);
        else k.mem.copyIn(k.gpa(pfn, off), data);
      } catch (e) {
        if (!(e instanceof MemoryFault)) throw e;
        st = BLKIF_RSP_ERROR;
      }
      if (this.opts.mutant !== 'read-after-unmap') {
        await p.point('vsb:unmap');
        unmap();
      }
      if (st !== BLKIF_RSP_OKAY) return st;
    } else {
      const guest = { gref, domid: s.frontDom as DomId, offset: off };
      const mine = { frame: s.bounce, offset: off };
      if (!write) k.mem.copyIn(k.gpa(s.bounce, off), data);
      const [st] = k.gnttab.copy([write ? { source: guest, dest: mine, len: bytes } : { source: mine, dest: guest, len: bytes }]);
      if (st !== 0) return BLKIF_RSP_ERROR;
      if (write) k.mem.copyOut(k.gpa(s.bounce, off), data);
    }
    if (write) {
      if (this.opts.mutant === 'ack-before-write') s.pendingWrites.push({ sector, data, after: 4 }); // MUTANT: stored after the ack
      else this.store(s, sector, data);
    }
    return BLKIF_RSP_OKAY;
  }
}

