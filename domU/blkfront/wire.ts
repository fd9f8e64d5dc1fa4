/**
 * blkfront's private byte helpers. Ring entries themselves go through the
 * shared allocation-free codecs (shared/ring/codec.ts BLKIF_RING_FLAT with
 * FrontRing.putRequestFrom / copyResponseInto): a request is encoded from
 * one reused struct per queue into the ring's private slot and copied into
 * the slot in one piece; a response is copied out of its slot once
 * (RING_COPY_RESPONSE: the backend is not trusted either) and decoded from
 * that private copy. What remains here is building the image of an indirect
 * page: blkif_request_segment descriptors, 8 bytes each.
 *
 * The request id is our own: the shadow slot in the low word, the slot's
 * generation in the high word (shadow.ts), so a response naming a slot that
 * is free, or a slot's earlier use, is recognised and ignored.
 */
import { BLKIF_REQUEST_SEGMENT } from '../../shared/abi/blkif.ts';

/** Writes one blkif_request_segment (8 bytes, padding zeroed) into a private indirect-page image. */
export function putIndirectSegment(b: Uint8Array, i: number, gref: number, first: number, last: number): void {
  const o = i * BLKIF_REQUEST_SEGMENT.SIZE;
  b[o + BLKIF_REQUEST_SEGMENT.gref] = gref & 0xff;
  b[o + BLKIF_REQUEST_SEGMENT.gref + 1] = (gref >>> 8) & 0xff;
  b[o + BLKIF_REQUEST_SEGMENT.gref + 2] = (gref >>> 16) & 0xff;
  b[o + BLKIF_REQUEST_SEGMENT.gref + 3] = (gref >>> 24) & 0xff;
  b[o + BLKIF_REQUEST_SEGMENT.first_sect] = first;
  b[o + BLKIF_REQUEST_SEGMENT.last_sect] = last;
  b[o + 6] = 0;
  b[o + 7] = 0;
}
