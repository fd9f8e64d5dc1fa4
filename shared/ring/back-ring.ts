/**
 * BackRing: the backend's end of a shared ring (ring.h's `__name##_back_ring`
 * and the back-side macros). The backend consumes requests and produces
 * responses; it privately keeps `req_cons` and `rsp_prod_pvt`.
 *
 * As in ring.h, these methods do NO INTERLOCKS: one thread drives one end,
 * and `pushResponsesAndCheckNotify` only says whether to kick the frontend.
 *
 * The frontend is hostile until proven otherwise:
 *  - req_prod is read once per check and bounded: a frontend cannot claim more
 *    than one ring of work (RING_HAS_UNCONSUMED_REQUESTS' min), and an
 *    impossible req_prod is reported as `req-prod-overflow`
 *    (RING_REQUEST_PROD_OVERFLOW) so the driver can stop serving the ring;
 *  - each request slot is copied out ONCE into a private buffer and decoded
 *    from there (RING_COPY_REQUEST, XSA-155): rewriting the slot afterwards
 *    cannot change what the backend validates and acts on.
 *
 * Data path (no allocation per entry): copyRequestInto(codec, struct) and
 * putResponseFrom(codec, struct) with a FlatCodec (BLKIF_RING_FLAT, ...).
 * copyRequest / putResponse and the *With variants take RingCodec objects.
 */
import { InvariantError, invariant } from '../invariant.ts';
import type { MemRegion } from '../memory/region.ts';
import { err, type Result } from '../result.ts';
import type { CodecError, EntryEncoder, FlatCodec, RingCodec, RingTypes } from './codec.ts';
import { OK_FALSE, OK_TRUE, PrivateSlots, SharedRing, okCount, type PrivateSlot, type RingError } from './sring.ts';
import { idxAdd, idxSub, notifyNeeded, type RingIdx } from './u32.ts';

// On the data path, invariants are checked with a plain `if` so that their
// messages are built only when they fail (a template per call costs more than
// the ring operation itself).
export class BackRing<Req, Rsp> {
  private readonly sring: SharedRing;
  /** sring.size and the slot size, kept here for the data path. */
  private readonly ringSize: number;
  private readonly entryBytes: number;
  private reqConsIdx: RingIdx;
  private rspProdPvtIdx: RingIdx;
  /** The last req_prod read and found plausible: requests before it may be copied. */
  private reqProdSeen: RingIdx;
  /** The last rsp_prod we published (the "old" of the next push's notify check). */
  private rspProdPushed: RingIdx;
  /** Private slot buffers by size: every entry is decoded and encoded here, never in shared memory. */
  private readonly slots: PrivateSlots;

  private constructor(
    region: MemRegion,
    readonly types: RingTypes<Req, Rsp>,
    start: RingIdx,
  ) {
    invariant(
      types.request.SIZE <= types.entryBytes && types.response.SIZE <= types.entryBytes,
      `${types.name}: entries of ${types.entryBytes} bytes cannot hold the request/response`,
    );
    this.sring = new SharedRing(region, types.entryBytes);
    this.ringSize = this.sring.size;
    this.entryBytes = types.entryBytes;
    this.slots = new PrivateSlots(types.entryBytes, types.request.SIZE, types.response.SIZE);
    this.reqConsIdx = start;
    this.rspProdPvtIdx = start;
    this.reqProdSeen = start;
    this.rspProdPushed = start;
  }

  /**
   * [init region types] is BACK_RING_INIT: attach at index 0 to a ring the
   * frontend initialised. The shared page is not touched.
   */
  static init<Req, Rsp>(region: MemRegion, types: RingTypes<Req, Rsp>): BackRing<Req, Rsp> {
    return new BackRing(region, types, 0 as RingIdx);
  }

  /** [attach region types start] is BACK_RING_ATTACH: req_cons = rsp_prod_pvt = start (rsp_prod already stands at start). */
  static attach<Req, Rsp>(region: MemRegion, types: RingTypes<Req, Rsp>, start: RingIdx): BackRing<Req, Rsp> {
    return new BackRing(region, types, start);
  }

  /** [size] is RING_SIZE: slots in the ring, a power of two. */
  get size(): number { return this.sring.size; }
  /** [reqCons] is the index of the next request to consume. */
  get reqCons(): RingIdx { return this.reqConsIdx; }
  /** [rspProdPvt] is the index of the next response slot to fill (not yet visible to the frontend). */
  get rspProdPvt(): RingIdx { return this.rspProdPvtIdx; }
  /** [shared] is the shared page, for diagnostics and tests. */
  get shared(): SharedRing { return this.sring; }

  /**
   * [requestProdOverflow prod] is RING_REQUEST_PROD_OVERFLOW, made stricter:
   * true if a well-behaved frontend cannot have published prod, i.e. prod is
   * more than a ring ahead of our responses, or behind what we consumed.
   */
  requestProdOverflow(prod: RingIdx): boolean {
    const outstanding = idxSub(prod, this.rspProdPvtIdx);
    return outstanding > this.sring.size || outstanding < idxSub(this.reqConsIdx, this.rspProdPvtIdx);
  }

  /**
   * [requestConsOverflow cons] is RING_REQUEST_CONS_OVERFLOW: consuming at
   * cons would reuse a slot whose response we have not produced yet.
   */
  requestConsOverflow(cons: RingIdx): boolean {
    return idxSub(cons, this.rspProdPvtIdx) >= this.sring.size;
  }

  /**
   * [unconsumedRequests] is RING_HAS_UNCONSUMED_REQUESTS: how many requests
   * may be consumed now, min(req_prod − req_cons, size − (req_cons −
   * rsp_prod_pvt)). It reads req_prod once (acquire: the request slots are
   * visible after it). An impossible req_prod is `req-prod-overflow`: the
   * frontend is hostile; stop serving this ring.
   */
  unconsumedRequests(): Result<number, RingError> {
    const reqProd = this.sring.loadReqProd();
    if (this.requestProdOverflow(reqProd)) {
      return err({ kind: 'req-prod-overflow', reqProd, reqCons: this.reqConsIdx, rspProdPvt: this.rspProdPvtIdx, size: this.sring.size });
    }
    this.reqProdSeen = reqProd;
    const req = idxSub(reqProd, this.reqConsIdx);
    const rsp = this.sring.size - idxSub(this.reqConsIdx, this.rspProdPvtIdx);
    return okCount(req < rsp ? req : rsp);
  }

  /**
   * [finalCheckForRequests ahead] is RING_FINAL_CHECK_FOR_REQUESTS: true if
   * requests are ready; otherwise re-arm req_event and check again, closing
   * the race with a frontend that pushes as we go idle.
   *
   * ahead = 1 is Xen's macro: notify me on the next request. A larger ahead is
   * the batching variant ring.h suggests ("a custom FINAL_CHECK"): the event
   * index is set further ahead, so the frontend notifies only once `ahead`
   * requests are waiting. The caller must then bound its sleep (a timeout),
   * because a frontend that stops short of the batch never notifies.
   */
  finalCheckForRequests(ahead = 1): Result<boolean, RingError> {
    if (!Number.isInteger(ahead) || ahead < 1 || ahead > this.sring.size) {
      throw new InvariantError(`ahead must be in 1..${this.sring.size}, got ${ahead}`);
    }
    const first = this.unconsumedRequests();
    if (!first.ok) return first;
    if (first.value > 0) return OK_TRUE;
    // Store (seq-cst, our xen_mb()): front sees the new req_event /before/ we
    // re-read req_prod below, so a request pushed after this store notifies us.
    this.sring.storeReqEvent(idxAdd(this.reqConsIdx, ahead));
    const again = this.unconsumedRequests();
    if (!again.ok) return again;
    return again.value > 0 ? OK_TRUE : OK_FALSE;
  }

  /** [copyRequest] is RING_COPY_REQUEST at reqCons, then reqCons++: the decoded private copy. */
  copyRequest(): Result<Req, CodecError> {
    return this.copyRequestWith(this.types.request);
  }

  /**
   * [copyRequestWith codec] copies the slot at reqCons out ONCE (one copyOut
   * into a private buffer), advances reqCons and decodes only the private
   * copy (XSA-155). The slot is consumed even when decoding fails, so the
   * caller answers it with an error status (blkif errors carry the id). Only
   * requests counted by the last unconsumedRequests/finalCheckForRequests may
   * be copied; anything else is a bug in the caller and throws.
   */
  copyRequestWith<T>(codec: RingCodec<T>): Result<T, CodecError> {
    return codec.decode(this.copyRequestOut(codec).bytes, 0);
  }

  /**
   * [copyRequestInto codec out] is copyRequestWith without allocation: the
   * slot at reqCons is copied out ONCE into the private buffer (XSA-155),
   * reqCons advances, and only the private copy is decoded, into `out` (a
   * struct made by codec.create() and reused; it holds the request until the
   * next call). This is the data-path method for backends, with
   * BLKIF_RING_FLAT / NETIF_*_RING_FLAT codecs. The slot is consumed even when
   * decoding fails; answer it with an error status.
   */
  copyRequestInto<T>(codec: FlatCodec<T>, out: T): Result<void, CodecError> {
    // Flat for the JIT; the checks are those of nextRequestToCopy, whose
    // messages are built only on failure.
    const i = this.reqConsIdx;
    if (codec.SIZE > this.entryBytes || this.reqProdSeen === i || ((i - this.rspProdPvtIdx) >>> 0) >= this.ringSize) this.nextRequestToCopy(codec);
    const slot = this.slots.get(codec.SIZE);
    this.sring.copyEntryOut(i, slot, codec);
    this.reqConsIdx = ((i + 1) >>> 0) as RingIdx;
    return codec.decodeWords(slot.words, out);
  }

  /** RING_COPY_REQUEST: the slot at reqCons, codec.SIZE bytes, copied ONCE into a private buffer; reqCons++. */
  private copyRequestOut(codec: { readonly name: string; readonly SIZE: number }): PrivateSlot {
    const slot = this.nextRequestToCopy(codec);
    const i = this.reqConsIdx;
    this.sring.copySlotOut(i, slot);
    this.reqConsIdx = idxAdd(i, 1);
    return slot;
  }

  /** The private buffer for the entry at the consumer index, after the checks (nothing copied yet). */
  private nextRequestToCopy(codec: { readonly name: string; readonly SIZE: number }): PrivateSlot {
    const size = codec.SIZE;
    if (size > this.sring.entryBytes) {
      throw new InvariantError(`${codec.name} (${size} B) does not fit a ${this.sring.entryBytes}-byte slot`);
    }
    const i = this.reqConsIdx;
    if (idxSub(this.reqProdSeen, i) === 0) {
      throw new InvariantError(`${this.types.name}: no request seen at ${i} (req_prod seen ${this.reqProdSeen})`);
    }
    if (this.requestConsOverflow(i)) {
      throw new InvariantError(`${this.types.name}: consuming request ${i} would overrun unanswered slots (rsp_prod_pvt ${this.rspProdPvtIdx})`);
    }
    return this.slots.get(size);
  }

  /** [responseSlot i] is the region offset of response i's slot (RING_GET_RESPONSE); i defaults to rspProdPvt. */
  responseSlot(i: RingIdx = this.rspProdPvtIdx): number {
    return this.sring.slotOffset(i);
  }

  /** [putResponse v] writes v into the slot at rspProdPvt and advances it; returns the index used. */
  putResponse(v: Rsp): RingIdx {
    return this.putResponseWith(this.types.response, v);
  }

  /**
   * [putResponseWith codec v] is putResponse with another layout for this slot
   * (a netif_extra_info after an RX response with NETRXF_extra_info). Encoded
   * privately with every byte defined (XSA-216), copied in one piece. A
   * response needs a consumed request's slot; anything else throws.
   */
  putResponseWith<T>(codec: EntryEncoder<T>, v: T): RingIdx {
    const slot = this.nextResponseSlot(codec);
    codec.encode(slot.bytes, 0, v);
    return this.publishResponseSlot(slot);
  }

  /**
   * [putResponseFrom codec v] is putResponseWith for a flat codec: v (a
   * struct made by codec.create() and refilled per response) is encoded as
   * words into the private slot, every byte of the entry defined (XSA-216),
   * and copied into the ring slot in one piece, allocating nothing. This is the
   * data-path method for backends, with BLKIF_RING_FLAT / NETIF_*_RING_FLAT.
   */
  putResponseFrom<T>(codec: FlatCodec<T>, v: T): RingIdx {
    // Flat for the JIT; the checks are those of nextResponseSlot.
    const i = this.rspProdPvtIdx;
    if (codec.SIZE > this.entryBytes || this.reqConsIdx === i) this.nextResponseSlot(codec);
    const slot = this.slots.get(codec.SIZE);
    const n = codec.encodeWords(slot.words, v);
    this.sring.copyWordsIn(i, slot, n);
    this.rspProdPvtIdx = ((i + 1) >>> 0) as RingIdx;
    return i;
  }

  /** The private buffer for a response of codec.SIZE bytes at rspProdPvt, after the checks. */
  private nextResponseSlot(codec: { readonly name: string; readonly SIZE: number }): PrivateSlot {
    const size = codec.SIZE;
    if (size > this.sring.entryBytes) {
      throw new InvariantError(`${codec.name} (${size} B) does not fit a ${this.sring.entryBytes}-byte slot`);
    }
    const i = this.rspProdPvtIdx;
    if (idxSub(this.reqConsIdx, i) === 0) {
      throw new InvariantError(`${this.types.name}: no consumed request to answer at ${i} (req_cons ${this.reqConsIdx})`);
    }
    return this.slots.get(size);
  }

  /** Copies the encoded private slot into the ring at rspProdPvt (still unpublished), then ++. */
  private publishResponseSlot(slot: PrivateSlot): RingIdx {
    const i = this.rspProdPvtIdx;
    this.sring.copySlotIn(i, slot);
    this.rspProdPvtIdx = idxAdd(i, 1);
    return i;
  }

  /** [pushResponses] is RING_PUSH_RESPONSES: publish every response put so far. */
  pushResponses(): void {
    // Release store: front sees resps /before/ updated producer index.
    this.sring.storeRspProd(this.rspProdPvtIdx);
    this.rspProdPushed = this.rspProdPvtIdx;
  }

  /**
   * [pushResponsesAndCheckNotify] is RING_PUSH_RESPONSES_AND_CHECK_NOTIFY:
   * publish, then tell whether the frontend asked to be notified for one of
   * the newly published responses (rsp_event in (old, new]).
   */
  pushResponsesAndCheckNotify(): boolean {
    // ring.h reads the old rsp_prod back from the shared page; we are its only
    // writer, so our record of the last push is the same value, without an
    // atomic load (and a frontend scribbling on rsp_prod cannot skew it).
    const oldProd = this.rspProdPushed;
    const newProd = this.rspProdPvtIdx;
    // Release store: front sees resps /before/ updated producer index.
    this.sring.storeRspProd(newProd);
    this.rspProdPushed = newProd;
    // Sequentially consistent atomics act as xen_mb(): front sees new resps
    // /before/ we check rsp_event.
    const event = this.sring.loadRspEvent();
    return notifyNeeded(newProd, oldProd, event);
  }
}
