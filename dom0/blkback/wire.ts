/**
 * blkback's private byte helpers. Ring entries themselves go through the
 * shared allocation-free codecs (shared/ring/codec.ts BLKIF_RING_FLAT with
 * BackRing.copyRequestInto / putResponseFrom): each slot is copied out once
 * into the ring's private buffer (XSA-155) and decoded from there, and each
 * response is written from a private struct with every byte defined
 * (XSA-216). What remains here is reading the private copy of an indirect
 * page's segment descriptors (blkif_request_segment: gref u32 at 0,
 * first_sect u8 at 4, last_sect u8 at 5, 2 bytes of padding).
 */

/** [readU32LE b o] reads a little-endian u32 from a private buffer (indirect descriptors). */
export function readU32LE(b: Uint8Array, o: number): number {
  return ((b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16) | ((b[o + 3] as number) << 24)) >>> 0;
}
