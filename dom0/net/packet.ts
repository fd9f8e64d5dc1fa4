/**
 * NetPacket and PacketPool: dom0's packet buffers (Linux's sk_buff, reduced to
 * what netback, the bridge and a NIC port need).
 *
 * A packet is a list of fragments, each a byte range of one dom0 page:
 *  - FRAG_LOCAL: dom0's own memory (a 128-byte header chunk, or a whole page);
 *  - FRAG_FOREIGN: a frontend's page grant-mapped (read-only) at a ballooned
 *    dom0 pfn by netback TX. It also remembers the granter and its gref, so
 *    an RX grant copy can name the grant as its source (Linux netback does the
 *    same for foreign pages: a mapped page is not dom0's own frame);
 *  - FRAG_GRANT: a frontend's grant left where it is (netback TX 'grant'
 *    mode): no dom0 pfn, only the granter, gref, offset and length. RX copies
 *    it grant to grant; anyone else who wants its bytes (a capture, a
 *    checksum or segmentation fallback, a NIC) gets them by a grant copy into
 *    a dom0 page, and a copy that fails (the granter revoked it) marks the
 *    packet dead.
 *
 * Packets are reference counted: whoever keeps one (a vif's RX queue, a NIC
 * port) holds a reference and releases it when done. When the last reference
 * goes, local storage returns to the pool and the packet's owner (netback TX,
 * for foreign fragments) is told, so it can unmap and answer the frontend.
 * [orphan] copies foreign fragments into local pages and releases the owner
 * early: a packet parked on a stalled receiver never holds another guest's
 * TX slots (Linux's skb_orphan_frags).
 *
 * Nothing here allocates per packet on the steady path: packet objects, pages
 * and header chunks are recycled.
 */
import type { DomainKernel } from '../../shared/kernel/kernel.ts';
import type { DomId, Gref, GuestAddr, MachineAddr, Pfn } from '../../shared/types.ts';
import { GNTST } from '../../shared/abi/grant.ts';
import type { CopyRequest } from '../../shared/kernel/gnttab.ts';
import { XEN_PAGE_SIZE } from '../../shared/abi/ring.ts';

/** Bytes of packet data per fragment page (the netif protocol's 4 KiB, whatever the machine page). */
export const NET_PAGE = XEN_PAGE_SIZE;
/** Bytes netback copies out of a TX packet before mapping the rest (XEN_NETBACK_TX_COPY_LEN). */
export const TX_COPY_LEN = 128;
/** Header chunks per page. */
const CHUNKS_PER_PAGE = NET_PAGE / TX_COPY_LEN;
/** Fragments one packet may have: a header chunk, up to 20 TX slots, and slack for segmentation. */
export const MAX_PACKET_FRAGS = 24;
/** The largest packet (netif_tx_request.size is a u16). */
export const MAX_PACKET_BYTES = 0xffff;

export const FRAG_LOCAL = 0;
export const FRAG_FOREIGN = 1;
export const FRAG_GRANT = 2;

/** Who must hear when a packet with its foreign fragments is done (netback TX). */
export interface PacketOwner {
  /** The packet's foreign fragments are no longer needed (released, or orphaned into local pages). */
  packetReleased(pkt: NetPacket): void;
}

export class NetPacket {
  /** Total bytes. */
  len = 0;
  nfrags = 0;
  readonly fragKind = new Uint8Array(MAX_PACKET_FRAGS);
  /** dom0 pfn holding the bytes (local page, or where the foreign page is mapped). */
  readonly fragPfn = new Int32Array(MAX_PACKET_FRAGS);
  readonly fragOff = new Int32Array(MAX_PACKET_FRAGS);
  readonly fragLen = new Int32Array(MAX_PACKET_FRAGS);
  /** Foreign fragments: the granter's reference and domain. */
  readonly fragGref = new Uint32Array(MAX_PACKET_FRAGS);
  readonly fragDom = new Uint16Array(MAX_PACKET_FRAGS);
  /** GSO: segment payload size (0 = not GSO) and XEN_NETIF_GSO_TYPE_*. */
  gsoSize = 0;
  gsoType = 0;
  /** The L4 checksum is blank (partial): someone must complete it before a device that cannot (NETTXF_csum_blank). */
  csumBlank = false;
  /** The sender vouches for the checksum (NETTXF_data_validated). */
  dataValidated = false;
  /** Storage was lost (orphaning found no pages): consumers drop the packet. */
  dead = false;
  refs = 0;
  owner: PacketOwner | null = null;
  /** The owner's handle for this packet (netback: its in-flight record). */
  ownerTag = 0;
  /** Local storage to free with the packet: pages and header chunks. */
  nPages = 0;
  readonly pages = new Int32Array(MAX_PACKET_FRAGS);
  nChunks = 0;
  readonly chunks = new Int32Array(4);
  /** ns timestamp when queued somewhere (RX drain timeout). */
  queuedAt = 0;

  /** [addFrag kind pfn off len gref dom] appends a fragment; false when the list is full. */
  addFrag(kind: number, pfn: number, off: number, len: number, gref = 0, dom = 0): boolean {
    if (len === 0) return true;
    const i = this.nfrags;
    if (i >= MAX_PACKET_FRAGS) return false;
    this.fragKind[i] = kind;
    this.fragPfn[i] = pfn;
    this.fragOff[i] = off;
    this.fragLen[i] = len;
    this.fragGref[i] = gref;
    this.fragDom[i] = dom;
    this.nfrags = i + 1;
    this.len += len;
    return true;
  }

  /** True if any fragment is another domain's memory (a grant, mapped or not). */
  hasForeign(): boolean {
    for (let i = 0; i < this.nfrags; i++) if (this.fragKind[i] !== FRAG_LOCAL) return true;
    return false;
  }
}

export interface PacketPoolOptions {
  /** Most dom0 pages the pool may take from the kernel's RAM (default 4096 = 16 MiB). */
  readonly maxPages?: number;
}

export interface PacketPoolStats {
  /** Pages taken from dom0's RAM (in use or on the free list). */
  pages: number;
  pagesInUse: number;
  chunksInUse: number;
  packetsInUse: number;
  /** Allocations refused because maxPages was reached. */
  exhausted: number;
  orphaned: number;
}

export class PacketPool {
  private readonly freePages: number[] = [];
  private readonly freeChunks: number[] = [];
  /** Chunk index → the page it lives in. */
  private readonly chunkPage: number[] = [];
  private readonly freePackets: NetPacket[] = [];
  private readonly maxPages: number;
  private readonly ps: number;
  readonly stats: PacketPoolStats = { pages: 0, pagesInUse: 0, chunksInUse: 0, packetsInUse: 0, exhausted: 0, orphaned: 0 };
  private readonly scratch = new Uint8Array(MAX_PACKET_BYTES);

  constructor(readonly k: DomainKernel, opts: PacketPoolOptions = {}) {
    this.maxPages = opts.maxPages ?? 4096;
    this.ps = k.pageSize;
  }

  // ---- pages and chunks ----

  private takePage(): number {
    const p = this.freePages.pop();
    if (p !== undefined) return p;
    if (this.stats.pages >= this.maxPages) {
      this.stats.exhausted++;
      return -1;
    }
    const q = this.k.ram.tryAlloc();
    if (q === undefined) {
      this.stats.exhausted++;
      return -1;
    }
    this.stats.pages++;
    return q;
  }

  /** [allocPage] is a dom0 page for packet data, or -1 when the pool is exhausted. */
  allocPage(): number {
    const p = this.takePage();
    if (p >= 0) this.stats.pagesInUse++;
    return p;
  }

  freePage(pfn: number): void {
    this.stats.pagesInUse--;
    this.freePages.push(pfn);
  }

  /** [allocChunk] is a TX_COPY_LEN-byte header chunk index, or -1. */
  allocChunk(): number {
    let c = this.freeChunks.pop();
    if (c === undefined) {
      const p = this.takePage();
      if (p < 0) return -1;
      const base = this.chunkPage.length;
      for (let i = CHUNKS_PER_PAGE - 1; i >= 0; i--) {
        this.chunkPage.push(p);
        this.freeChunks.push(base + CHUNKS_PER_PAGE - 1 - i);
      }
      c = this.freeChunks.pop() as number;
    }
    this.stats.chunksInUse++;
    return c;
  }
  chunkPfn(c: number): number { return this.chunkPage[c] as number; }
  chunkOff(c: number): number { return (c % CHUNKS_PER_PAGE) * TX_COPY_LEN; }
  freeChunk(c: number): void {
    this.stats.chunksInUse--;
    this.freeChunks.push(c);
  }

  // ---- packets ----

  /** [get] is an empty packet with one reference. */
  get(): NetPacket {
    const p = this.freePackets.pop() ?? new NetPacket();
    p.len = 0;
    p.nfrags = 0;
    p.gsoSize = 0;
    p.gsoType = 0;
    p.csumBlank = false;
    p.dataValidated = false;
    p.dead = false;
    p.refs = 1;
    p.owner = null;
    p.ownerTag = 0;
    p.nPages = 0;
    p.nChunks = 0;
    p.queuedAt = 0;
    this.stats.packetsInUse++;
    return p;
  }

  ref(p: NetPacket): void { p.refs++; }

  /** [release p] drops one reference; the last one frees local storage and tells the owner. */
  release(p: NetPacket): void {
    if (p.refs <= 0) throw new Error('NetPacket released more often than referenced');
    if (--p.refs > 0) return;
    const owner = p.owner;
    p.owner = null;
    owner?.packetReleased(p);
    for (let i = 0; i < p.nPages; i++) this.freePage(p.pages[i] as number);
    for (let i = 0; i < p.nChunks; i++) this.freeChunk(p.chunks[i] as number);
    p.nPages = 0;
    p.nChunks = 0;
    p.nfrags = 0;
    this.stats.packetsInUse--;
    this.freePackets.push(p);
  }

  /** [ownPage p pfn] makes pfn part of p's local storage (freed with it). */
  ownPage(p: NetPacket, pfn: number): void { p.pages[p.nPages++] = pfn; }
  ownChunk(p: NetPacket, c: number): void { p.chunks[p.nChunks++] = c; }

  private gpa(pfn: number, off: number): GuestAddr { return (pfn * this.ps + off) as GuestAddr; }

  /**
   * [fromBytes bytes off len] is a packet holding a copy of bytes[off, off+len)
   * in local pages (a NIC's received frame, a software segment), or undefined
   * when the pool is exhausted.
   */
  fromBytes(bytes: Uint8Array, off: number, len: number): NetPacket | undefined {
    if (len > MAX_PACKET_BYTES || len > MAX_PACKET_FRAGS * NET_PAGE) return undefined;
    const p = this.get();
    for (let done = 0; done < len; ) {
      const pg = this.allocPage();
      if (pg < 0) {
        this.release(p);
        return undefined;
      }
      this.ownPage(p, pg);
      const n = Math.min(NET_PAGE, len - done);
      this.k.mem.copyIn(this.gpa(pg, 0), bytes, off + done, n);
      p.addFrag(FRAG_LOCAL, pg, 0, n);
      done += n;
    }
    return p;
  }

  /** [copyOut p into intoOff from len] copies packet bytes [from, from+len) into a private buffer. */
  copyOut(p: NetPacket, into: Uint8Array, intoOff = 0, from = 0, len = p.len - from): void {
    let pos = 0;
    let done = 0;
    for (let i = 0; i < p.nfrags && done < len; i++) {
      const fl = p.fragLen[i] as number;
      if (pos + fl <= from) {
        pos += fl;
        continue;
      }
      const skip = from > pos ? from - pos : 0;
      const n = Math.min(fl - skip, len - done);
      if (p.fragKind[i] === FRAG_GRANT) this.copyOutGrant(p, i, skip, into, intoOff + done, n);
      else this.k.mem.copyOut(this.gpa(p.fragPfn[i] as number, (p.fragOff[i] as number) + skip), into, intoOff + done, n);
      done += n;
      pos += fl;
    }
  }

  /**
   * Bytes of an unmapped grant fragment, by a grant copy through a dom0 page
   * taken for the call; a copy Xen refuses (the granter revoked or never made
   * the grant) leaves zeros and marks the packet dead.
   */
  private copyOutGrant(p: NetPacket, i: number, skip: number, into: Uint8Array, intoOff: number, n: number): void {
    const pg = this.allocPage();
    const ok = pg >= 0 && this.grantCopy(p.fragGref[i] as number, p.fragDom[i] as number, (p.fragOff[i] as number) + skip, pg, n);
    if (ok) this.k.mem.copyOut(this.gpa(pg, 0), into, intoOff, n);
    else {
      into.fill(0, intoOff, intoOff + n);
      p.dead = true;
    }
    if (pg >= 0) this.freePage(pg);
  }

  /** One GNTTABOP_copy from a grant into our page pg at offset 0; false if Xen refused it. */
  private grantCopy(gref: number, dom: number, off: number, pg: number, len: number): boolean {
    return this.grantCopies([{ source: { gref: gref as Gref, domid: dom as DomId, offset: off }, dest: { frame: pg, offset: 0 }, len }]);
  }

  /** GNTTABOP_copy of a batch; false unless Xen did every op. */
  private grantCopies(reqs: readonly CopyRequest[]): boolean {
    try {
      return this.k.gnttab.copy(reqs).every((st) => st === GNTST.okay);
    } catch {
      return false; // the hypercall itself failed: treat as a refused copy
    }
  }

  /**
   * [writeLocal p at bytes] overwrites packet bytes [at, at+bytes.length),
   * which must lie in local fragments (a completed checksum in the header).
   * False if they do not.
   */
  writeLocal(p: NetPacket, at: number, bytes: Uint8Array): boolean {
    let pos = 0;
    let done = 0;
    for (let i = 0; i < p.nfrags && done < bytes.length; i++) {
      const fl = p.fragLen[i] as number;
      if (pos + fl <= at + done) {
        pos += fl;
        continue;
      }
      if (p.fragKind[i] !== FRAG_LOCAL) return false;
      const skip = at + done - pos;
      const n = Math.min(fl - skip, bytes.length - done);
      this.k.mem.copyIn(this.gpa(p.fragPfn[i] as number, (p.fragOff[i] as number) + skip), bytes, done, n);
      done += n;
      pos += fl;
    }
    return done === bytes.length;
  }

  /**
   * [orphan p] replaces p's foreign fragments by local copies (one memcpy per
   * mapped fragment, through dom0's MMU; one grant copy per unmapped one) and
   * releases the owner. When the pool has no
   * pages, the packet is marked dead (its data is lost) and the owner is still
   * released: a guest's grants are never held hostage by dom0's memory.
   */
  orphan(p: NetPacket): boolean {
    const m = this.k.mem;
    let ok = true;
    const copies: CopyRequest[] = [];
    for (let i = 0; i < p.nfrags; i++) {
      const kind = p.fragKind[i];
      if (kind === FRAG_LOCAL) continue;
      const pg = this.allocPage();
      if (pg < 0) {
        ok = false;
        break;
      }
      this.ownPage(p, pg);
      const len = p.fragLen[i] as number;
      if (kind === FRAG_GRANT) {
        // Gathered, and copied in one hypercall below.
        copies.push({ source: { gref: p.fragGref[i] as Gref, domid: p.fragDom[i] as DomId, offset: p.fragOff[i] as number }, dest: { frame: pg, offset: 0 }, len });
      } else {
        const src = (m.translatePfn(p.fragPfn[i] as Pfn, false) + (p.fragOff[i] as number)) as MachineAddr;
        const dst = m.translatePfn(pg as Pfn, true);
        this.k.machine.copy(dst, src, len);
      }
      p.fragKind[i] = FRAG_LOCAL;
      p.fragPfn[i] = pg;
      p.fragOff[i] = 0;
      p.fragGref[i] = 0;
      p.fragDom[i] = 0;
    }
    if (ok && copies.length > 0) ok = this.grantCopies(copies);
    if (!ok) p.dead = true;
    else if (p.owner !== null) this.stats.orphaned++;
    const owner = p.owner;
    p.owner = null;
    owner?.packetReleased(p);
    return ok;
  }

  /** [bytes p] is a fresh copy of the whole packet (captures, tests; not for the data path). */
  bytes(p: NetPacket): Uint8Array {
    const out = new Uint8Array(p.len);
    this.copyOut(p, out);
    return out;
  }

  /** A shared scratch buffer of MAX_PACKET_BYTES for one synchronous use at a time. */
  get scratchBuffer(): Uint8Array { return this.scratch; }

  /** [trim] gives every free page back to the kernel (shutdown, leak checks). */
  trim(): void {
    // Chunk pages stay while any chunk of them is used; free chunk pages are kept (cheap, bounded).
    for (const p of this.freePages.splice(0)) {
      this.k.ram.release(p as Pfn);
      this.stats.pages--;
    }
  }
}
