/**
 * The xsd_sockmsg byte stream, in both directions: an incremental decoder for
 * bytes as they arrive (a socket read, a slice of the ring) and an encoder.
 *
 * The decoder copies each message into a private buffer before anyone looks at
 * it (the RING_COPY_REQUEST rule: the guest cannot change a request after we
 * validated it). A header with len > XENSTORE_PAYLOAD_MAX or a type that is not
 * a message type (>= XS_TYPE_COUNT) is a protocol error: the decoder stops for
 * good and the transport closes that one connection. (cxenstored closes on an
 * oversized len too, but answers ENOSYS to an unknown type; we close instead,
 * because a type that large means the stream has lost its framing.)
 */
import { err, ok, type Result } from '../../shared/result.ts';
import { XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG, XS_TYPE_COUNT } from '../../shared/abi/xenstore.ts';

/** One decoded message: header fields plus a private copy of the payload. */
export interface XsMsg {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly payload: Uint8Array;
}

export type XsWireError =
  | { readonly kind: 'payload-too-long'; readonly len: number; readonly type: number }
  | { readonly kind: 'unknown-type'; readonly type: number };

export interface DecoderOptions {
  /** Types accepted (default: every request type < XS_TYPE_COUNT). */
  readonly acceptType?: (type: number) => boolean;
  /** Largest payload (default XENSTORE_PAYLOAD_MAX). */
  readonly maxPayload?: number;
}

function getU32(b: Uint8Array, off: number): number {
  return ((b[off] as number) | ((b[off + 1] as number) << 8) | ((b[off + 2] as number) << 16) | ((b[off + 3] as number) << 24)) >>> 0;
}
function putU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}

export class XsWireDecoder {
  private readonly hdr = new Uint8Array(XSD_SOCKMSG.SIZE);
  private hdrUsed = 0;
  private payload: Uint8Array | null = null;
  private payloadUsed = 0;
  private type = 0;
  private reqId = 0;
  private txId = 0;
  private broken: XsWireError | null = null;
  private readonly acceptType: (type: number) => boolean;
  private readonly maxPayload: number;

  constructor(opts: DecoderOptions = {}) {
    this.acceptType = opts.acceptType ?? ((t) => t < XS_TYPE_COUNT);
    this.maxPayload = opts.maxPayload ?? XENSTORE_PAYLOAD_MAX;
  }

  /** The error that stopped this decoder, if any. */
  get error(): XsWireError | null { return this.broken; }
  /** Bytes of a message received so far but not yet complete. */
  get partial(): number { return this.hdrUsed + this.payloadUsed; }

  /**
   * [push bytes off len] feeds bytes; returns the messages they complete, or
   * the protocol error (sticky: every later push returns it too).
   */
  push(bytes: Uint8Array, off = 0, len = bytes.length - off): Result<XsMsg[], XsWireError> {
    if (this.broken) return err(this.broken);
    const out: XsMsg[] = [];
    let i = off;
    const end = off + len;
    while (i < end) {
      if (this.payload === null) {
        const n = Math.min(XSD_SOCKMSG.SIZE - this.hdrUsed, end - i);
        this.hdr.set(bytes.subarray(i, i + n), this.hdrUsed);
        this.hdrUsed += n;
        i += n;
        if (this.hdrUsed < XSD_SOCKMSG.SIZE) break;
        // Decode the private copy of the header once.
        this.type = getU32(this.hdr, XSD_SOCKMSG.TYPE);
        this.reqId = getU32(this.hdr, XSD_SOCKMSG.REQ_ID);
        this.txId = getU32(this.hdr, XSD_SOCKMSG.TX_ID);
        const plen = getU32(this.hdr, XSD_SOCKMSG.LEN);
        if (plen > this.maxPayload) {
          this.broken = { kind: 'payload-too-long', len: plen, type: this.type };
          return err(this.broken);
        }
        if (!this.acceptType(this.type)) {
          this.broken = { kind: 'unknown-type', type: this.type };
          return err(this.broken);
        }
        this.payload = new Uint8Array(plen);
        this.payloadUsed = 0;
      } else {
        const n = Math.min(this.payload.length - this.payloadUsed, end - i);
        this.payload.set(bytes.subarray(i, i + n), this.payloadUsed);
        this.payloadUsed += n;
        i += n;
      }
      if (this.payload !== null && this.payloadUsed === this.payload.length) {
        out.push({ type: this.type, reqId: this.reqId, txId: this.txId, payload: this.payload });
        this.payload = null;
        this.hdrUsed = 0;
        this.payloadUsed = 0;
      }
    }
    return ok(out);
  }

  /** Forget any partial message and any error (ring reconnection). */
  reset(): void {
    this.hdrUsed = 0;
    this.payload = null;
    this.payloadUsed = 0;
    this.broken = null;
  }
}

/** [encodeXsMsg msg] is the header and payload as one byte string. */
export function encodeXsMsg(msg: XsMsg): Uint8Array {
  const out = new Uint8Array(XSD_SOCKMSG.SIZE + msg.payload.length);
  putU32(out, XSD_SOCKMSG.TYPE, msg.type);
  putU32(out, XSD_SOCKMSG.REQ_ID, msg.reqId);
  putU32(out, XSD_SOCKMSG.TX_ID, msg.txId);
  putU32(out, XSD_SOCKMSG.LEN, msg.payload.length);
  out.set(msg.payload, XSD_SOCKMSG.SIZE);
  return out;
}

/** [latin1 bytes] is bytes as a string of char codes 0..255 (paths, tokens: byte-exact round trip). */
export function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

/** [latin1Bytes s] is the inverse of latin1. */
export function latin1Bytes(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'latin1'));
}

/**
 * [payloadOf ...strings] is the strings each followed by a NUL: the usual
 * shape of a request or reply payload ("path\0token\0").
 */
export function payloadOf(...strings: string[]): Uint8Array {
  let len = 0;
  for (const s of strings) len += s.length + 1;
  const out = new Uint8Array(len);
  let o = 0;
  for (const s of strings) {
    out.set(Buffer.from(s, 'latin1'), o);
    o += s.length + 1;
  }
  return out;
}

/**
 * [splitStrings payload] is cxenstored's get_strings: the NUL-terminated
 * strings in payload (bytes after the last NUL are not a string).
 */
export function splitStrings(payload: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(latin1(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  return out;
}
