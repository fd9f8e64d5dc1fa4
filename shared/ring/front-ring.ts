/**
 * FrontRing: the frontend's end of a shared ring (ring.h's `__name##_front_ring`
 * and the front-side macros). The frontend produces requests and consumes
 * responses; it privately keeps `req_prod_pvt` and `rsp_cons`.
 *
 * As in ring.h, these methods do NO INTERLOCKS: one thread drives one end.
 * They do not notify either: `pushRequestsAndCheckNotify` says whether the
 * caller must kick the backend's event channel.
 *
 * The backend is not trusted (XSA-155 for frontends, RING_COPY_RESPONSE): a
 * response is copied out of its slot once into a private buffer and decoded
 * from there, and an impossible rsp_prod is reported, never followed.
 *
 * Data path (no allocation per entry): putRequestFrom(codec, struct) and
 * copyResponseInto(codec, struct) with a FlatCodec (BLKIF_RING_FLAT, ...).
 * putRequest / copyResponse and the *With variants take RingCodec objects.
 */
import { InvariantError, invariant } from '../invariant.ts';
import type { MemRegion } from '../memory/region.ts';
import { err, type Result } from '../result.ts';
import type { CodecError, EntryEncoder, FlatCodec, RingCodec, RingTypes } from './codec.ts';
import { OK_FALSE, OK_TRUE, PrivateSlots, SharedRing, okCount, sharedRingInit, type PrivateSlot, type RingError } from './sring.ts';
import { idxAdd, idxSub, notifyNeeded, type RingIdx } from './u32.ts';

// On the data path, invariants are checked with a plain `if` so that their
// messages are built only when they fail (a template per call costs more than
// the ring operation itself).
export class FrontRing<Req, Rsp> {
  private readonly sring: SharedRing;
  /** sring.size and the slot size, kept here for the data path. */
  private readonly ringSize: number;
  private readonly entryBytes: number;
  private reqProdPvtIdx: RingIdx;
  private rspConsIdx: RingIdx;
  /** The last req_prod we published: no backend can answer beyond it. */
  private reqProdPushed: RingIdx;
  /** The last rsp_prod read and found plausible: responses before it may be copied. */
  private rspProdSeen: RingIdx;
  /** Private slot buffers by size: every entry is encoded and decoded here, never in shared memory. */
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
    this.reqProdPvtIdx = start;
    this.rspConsIdx = start;
    this.reqProdPushed = start;
    this.rspProdSeen = start;
  }

  /**
   * [init region types] is XEN_FRONT_RING_INIT: initialise the shared page
   * (SHARED_RING_INIT) and attach the front end at index 0. The frontend does
   * this before granting the ring pages to the backend.
   */
  static init<Req, Rsp>(region: MemRegion, types: RingTypes<Req, Rsp>): FrontRing<Req, Rsp> {
    const start = 0 as RingIdx;
    sharedRingInit(region, start);
    return new FrontRing(region, types, start);
  }

  /**
   * [attach region types start] is FRONT_RING_ATTACH: take over a shared page
   * whose indices already stand at start (req_prod_pvt = rsp_cons = start),
   * without touching it.
   */
  static attach<Req, Rsp>(region: MemRegion, types: RingTypes<Req, Rsp>, start: RingIdx): FrontRing<Req, Rsp> {
    return new FrontRing(region, types, start);
  }

  /** [size] is RING_SIZE: slots in the ring, a power of two. */
  get size(): number { return this.sring.size; }
  /** [reqProdPvt] is the index of the next request slot to fill (not yet visible to the backend). */
  get reqProdPvt(): RingIdx { return this.reqProdPvtIdx; }
  /** [rspCons] is the index of the next response to consume. */
  get rspCons(): RingIdx { return this.rspConsIdx; }
  /** [shared] is the shared page, for diagnostics and tests. */
  get shared(): SharedRing { return this.sring; }

  /** [freeRequests] is RING_FREE_REQUESTS: slots the frontend may still fill. */
  freeRequests(): number {
    return this.sring.size - idxSub(this.reqProdPvtIdx, this.rspConsIdx);
  }

  /** [full] is RING_FULL. */
  full(): boolean {
    return this.freeRequests() === 0;
  }

  /** [requestSlot i] is the region offset of request i's slot (RING_GET_REQUEST); i defaults to reqProdPvt. */
  requestSlot(i: RingIdx = this.reqProdPvtIdx): number {
    return this.sring.slotOffset(i);
  }

  /** [putRequest v] writes v into the slot at reqProdPvt and advances it; returns the index used. */
  putRequest(v: Req): RingIdx {
    return this.putRequestWith(this.types.request, v);
  }

  /**
   * [putRequestWith codec v] is putRequest with another layout for this slot
   * (a netif_extra_info after a TX request with NETTXF_extra_info). The entry
   * is encoded privately and copied into the slot in one piece. Filling a full
   * ring is a bug in the caller (it must check freeRequests) and throws.
   */
  putRequestWith<T>(codec: EntryEncoder<T>, v: T): RingIdx {
    const slot = this.nextRequestSlot(codec);
    codec.encode(slot.bytes, 0, v);
    return this.publishRequestSlot(slot);
  }

  /**
   * [putRequestFrom codec v] is putRequestWith for a flat codec: v (a struct
   * made by codec.create() and refilled per request) is encoded as words into
   * the private slot and copied into the ring slot in one piece, allocating
   * nothing. Only the words that make up this entry are copied (a blkif
   * request's header and used segments; the slot's tail keeps what it held,
   * ring data already shared, never private memory: see
   * FlatCodec.encodeWords). This is the data-path method for frontends, with
   * BLKIF_RING_FLAT / NETIF_*_RING_FLAT codecs.
   */
  putRequestFrom<T>(codec: FlatCodec<T>, v: T): RingIdx {
    // Written flat (no helper calls) for the JIT; the checks are those of
    // nextRequestSlot, their messages built only on failure.
    const i = this.reqProdPvtIdx;
    if (codec.SIZE > this.entryBytes || ((i - this.rspConsIdx) >>> 0) >= this.ringSize) this.nextRequestSlot(codec);
    const slot = this.slots.get(codec.SIZE);
    const n = codec.encodeWords(slot.words, v);
    this.sring.copyWordsIn(i, slot, n);
    this.reqProdPvtIdx = ((i + 1) >>> 0) as RingIdx;
    return i;
  }

  /** The private buffer for a request of codec.SIZE bytes at reqProdPvt, after the checks. */
  private nextRequestSlot(codec: { readonly name: string; readonly SIZE: number }): PrivateSlot {
    const size = codec.SIZE;
    if (size > this.sring.entryBytes) {
      throw new InvariantError(`${codec.name} (${size} B) does not fit a ${this.sring.entryBytes}-byte slot`);
    }
    if (this.freeRequests() <= 0) {
      throw new InvariantError(`${this.types.name}: request ring is full (req_prod_pvt ${this.reqProdPvtIdx}, rsp_cons ${this.rspConsIdx})`);
    }
    return this.slots.get(size);
  }

  /** Copies the encoded private slot into the ring at reqProdPvt (still unpublished), then ++. */
  private publishRequestSlot(slot: PrivateSlot): RingIdx {
    const i = this.reqProdPvtIdx;
    this.sring.copySlotIn(i, slot);
    this.reqProdPvtIdx = idxAdd(i, 1);
    return i;
  }

  /** [pushRequests] is RING_PUSH_REQUESTS: publish every request put so far. */
  pushRequests(): void {
    // Release store: back sees requests /before/ updated producer index.
    this.sring.storeReqProd(this.reqProdPvtIdx);
    this.reqProdPushed = this.reqProdPvtIdx;
  }

  /**
   * [pushRequestsAndCheckNotify] is RING_PUSH_REQUESTS_AND_CHECK_NOTIFY:
   * publish, then tell whether the backend asked to be notified for one of the
   * newly published requests (req_event in (old, new]).
   */
  pushRequestsAndCheckNotify(): boolean {
    // ring.h reads the old req_prod back from the shared page; we are its only
    // writer, so our record of the last push is the same value, without an
    // atomic load (and a backend scribbling on req_prod cannot skew it).
    const oldProd = this.reqProdPushed;
    const newProd = this.reqProdPvtIdx;
    // Release store: back sees requests /before/ updated producer index.
    this.sring.storeReqProd(newProd);
    this.reqProdPushed = newProd;
    // Sequentially consistent atomics act as xen_mb(): back sees new requests
    // /before/ we check req_event, so a backend that re-armed req_event and
    // re-checked either saw our requests or is notified now.
    const event = this.sring.loadReqEvent();
    return notifyNeeded(newProd, oldProd, event);
  }

  /**
   * [hasUnconsumedResponses] is RING_HAS_UNCONSUMED_RESPONSES: how many
   * responses are ready (0 for none). It reads rsp_prod once (acquire: the
   * response slots are visible after it). A backend claiming more responses
   * than requests we published is hostile: `rsp-prod-overflow` (stricter than
   * RING_RESPONSE_PROD_OVERFLOW's "more than a ring"); stop using the ring.
   */
  hasUnconsumedResponses(): Result<number, RingError> {
    const rspProd = this.sring.loadRspProd();
    const ready = idxSub(rspProd, this.rspConsIdx);
    if (ready > idxSub(this.reqProdPushed, this.rspConsIdx)) {
      return err({ kind: 'rsp-prod-overflow', rspProd, rspCons: this.rspConsIdx, reqProd: this.reqProdPushed, size: this.sring.size });
    }
    this.rspProdSeen = rspProd;
    return okCount(ready);
  }

  /**
   * [responseProdOverflow prod] is RING_RESPONSE_PROD_OVERFLOW: could a
   * well-behaved backend have produced up to prod?
   */
  responseProdOverflow(prod: RingIdx): boolean {
    return idxSub(prod, this.rspConsIdx) > this.sring.size;
  }

  /**
   * [finalCheckForResponses ahead] is RING_FINAL_CHECK_FOR_RESPONSES: true if
   * responses are ready; otherwise re-arm rsp_event and check again, closing
   * the race with a backend that pushes as we go idle. With ahead = 1 (Xen's
   * macro) the backend notifies on the next response; a larger ahead is the
   * custom FINAL_CHECK ring.h suggests for batching: wake me only once `ahead`
   * responses are ready. Then the caller must bound its sleep, since a backend
   * that stops short never notifies.
   */
  finalCheckForResponses(ahead = 1): Result<boolean, RingError> {
    if (!Number.isInteger(ahead) || ahead < 1 || ahead > this.sring.size) {
      throw new InvariantError(`ahead must be in 1..${this.sring.size}, got ${ahead}`);
    }
    const first = this.hasUnconsumedResponses();
    if (!first.ok) return first;
    if (first.value > 0) return OK_TRUE;
    // Store (seq-cst, our xen_mb()): back sees the new rsp_event /before/ we
    // re-read rsp_prod below, so a response pushed after this store notifies us.
    this.sring.storeRspEvent(idxAdd(this.rspConsIdx, ahead));
    const again = this.hasUnconsumedResponses();
    if (!again.ok) return again;
    return again.value > 0 ? OK_TRUE : OK_FALSE;
  }

  /** [copyResponse] is RING_COPY_RESPONSE at rspCons, then rspCons++: the decoded private copy. */
  copyResponse(): Result<Rsp, CodecError> {
    return this.copyResponseWith(this.types.response);
  }

  /**
   * [copyResponseWith codec] copies the slot at rspCons out once (one copyOut
   * into a private buffer), advances rspCons and decodes the private copy.
   * The slot is consumed even when decoding fails. Only responses counted by
   * the last hasUnconsumedResponses/finalCheckForResponses may be copied.
   */
  copyResponseWith<T>(codec: RingCodec<T>): Result<T, CodecError> {
    return codec.decode(this.copyResponseOut(codec).bytes, 0);
  }

  /**
   * [copyResponseInto codec out] is copyResponseWith without allocation: the
   * slot at rspCons is copied out once into the private buffer, rspCons
   * advances, and the private copy is decoded into `out` (a struct made by
   * codec.create() and reused; it holds the response until the next call).
   * This is the data-path method for frontends, with BLKIF_RING_FLAT /
   * NETIF_*_RING_FLAT codecs. The slot is consumed even when decoding fails.
   */
  copyResponseInto<T>(codec: FlatCodec<T>, out: T): Result<void, CodecError> {
    // Flat for the JIT; the checks are those of nextResponseToCopy.
    const i = this.rspConsIdx;
    if (codec.SIZE > this.entryBytes || this.rspProdSeen === i) this.nextResponseToCopy(codec);
    const slot = this.slots.get(codec.SIZE);
    this.sring.copyEntryOut(i, slot, codec);
    this.rspConsIdx = ((i + 1) >>> 0) as RingIdx;
    return codec.decodeWords(slot.words, out);
  }

  /** RING_COPY_RESPONSE: the slot at rspCons, codec.SIZE bytes, copied once into a private buffer; rspCons++. */
  private copyResponseOut(codec: { readonly name: string; readonly SIZE: number }): PrivateSlot {
    const slot = this.nextResponseToCopy(codec);
    const i = this.rspConsIdx;
    this.sring.copySlotOut(i, slot);
    this.rspConsIdx = idxAdd(i, 1);
    return slot;
  }

  /** The private buffer for the entry at the consumer index, after the checks (nothing copied yet). */
  private nextResponseToCopy(codec: { readonly name: string; readonly SIZE: number }): PrivateSlot {
    const size = codec.SIZE;
    if (size > this.sring.entryBytes) {
      throw new InvariantError(`${codec.name} (${size} B) does not fit a ${this.sring.entryBytes}-byte slot`);
    }
    const i = this.rspConsIdx;
    if (idxSub(this.rspProdSeen, i) === 0) {
      throw new InvariantError(`${this.types.name}: no response seen at ${i} (rsp_prod seen ${this.rspProdSeen})`);
    }
    return this.slots.get(size);
  }
}
