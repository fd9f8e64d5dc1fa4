/**
 * Reading one guest TX packet off the ring: copy each slot ONCE into private
 * memory (RING_COPY_REQUEST), then validate the private copy only, as Linux
 * netback's xenvif_get_extras and xenvif_count_requests do:
 *
 *  - extra-info slots: one must be there (else fatal "Missing extra info"),
 *    its type must be known (else fatal "Invalid extra type"), a GSO extra
 *    needs a non-zero size and a known type (else fatal);
 *  - data slots chained by more_data: a chain that runs past what the
 *    frontend published is fatal ("Asked for N slots but exceeds this
 *    limit"); a chain of `fatalSlots` (20) or more is fatal ("Malicious
 *    frontend"); one of XEN_NETBK_LEGACY_SLOTS_MAX (18) or more is dropped
 *    with errors; a slot larger than what is left of the packet's size is
 *    dropped with errors (buggy frontends overflow the u16 size); offset +
 *    size past the page is fatal ("Cross page boundary");
 *  - the packet must have an Ethernet header (else dropped), and the first
 *    slot's own bytes must fit its page (else fatal).
 *
 * Fatal means the frontend broke the protocol: netback disables the vif.
 * Dropped means the slots are consumed and answered NETIF_RSP_ERROR. Every
 * slot's id is kept (copied once) so errors can be answered without reading
 * the ring again.
 */
import {
  NETTXF_extra_info, NETTXF_more_data, NETIF_TX_REQUEST, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_GSO,
  XEN_NETIF_EXTRA_TYPE_MCAST_ADD, XEN_NETIF_EXTRA_TYPE_MCAST_DEL, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
  XEN_NETIF_NR_SLOTS_MIN,
} from '../../shared/abi/netif.ts';
import { netifExtraInfoCodec, type NetifTxRequest, type NetifTxResponse } from '../../shared/ring/codec.ts';
import type { BackRing } from '../../shared/ring/back-ring.ts';
import { NET_PAGE } from '../net/packet.ts';

/** Slots per packet a backend must accept (Linux XEN_NETBK_LEGACY_SLOTS_MAX = XEN_NETIF_NR_SLOTS_MIN). */
export const XEN_NETBK_LEGACY_SLOTS_MAX = XEN_NETIF_NR_SLOTS_MIN;
/** Linux netback's fatal_skb_slots default: this many slots in one packet is malicious. */
export const FATAL_SKB_SLOTS = 20;
/** Capacity of a descriptor: the most slots a packet may have before it is fatal, whatever the setting. */
export const MAX_TX_SLOTS = 32;
const ETH_HLEN = 14;

export type TxFatalReason =
  | 'missing-extra' | 'bad-extra-type' | 'bad-gso-size' | 'bad-gso-type'
  | 'missing-slot' | 'too-many-slots' | 'cross-page';
export type TxDropReason = 'too-many-slots' | 'slot-bigger-than-frame' | 'runt';

export type TxParseResult =
  | { readonly kind: 'ok' }
  | { readonly kind: 'fatal'; readonly reason: TxFatalReason; readonly detail: string }
  | { readonly kind: 'drop'; readonly reason: TxDropReason; readonly detail: string };

const OK: TxParseResult = { kind: 'ok' };

/** One packet's slots, decoded once (reused from packet to packet). */
export class TxPacketDesc {
  /** Data slots (the first request and its more_data chain). */
  nslots = 0;
  readonly ids = new Uint16Array(MAX_TX_SLOTS);
  readonly grefs = new Uint32Array(MAX_TX_SLOTS);
  readonly offsets = new Uint16Array(MAX_TX_SLOTS);
  /** Each slot's own bytes (the first slot's: the packet size minus the others). */
  readonly sizes = new Uint16Array(MAX_TX_SLOTS);
  /** The packet size the first slot announced. */
  total = 0;
  /** NETTXF_* of the first slot. */
  flags = 0;
  /** Extra-info slots consumed (each answered NETIF_RSP_NULL). */
  extraCount = 0;
  gsoSize = 0;
  gsoType = 0;
  mcastOps = 0;

  reset(): void {
    this.nslots = 0;
    this.total = 0;
    this.flags = 0;
    this.extraCount = 0;
    this.gsoSize = 0;
    this.gsoType = 0;
    this.mcastOps = 0;
  }
}

/**
 * [peekTxSize ring] is the size field of the next request, read without
 * consuming it (for the credit check, as Linux peeks before advancing
 * req_cons). Only call when unconsumedRequests() said one is there; the
 * value is only used to charge this frontend's own credit.
 */
export function peekTxSize(ring: BackRing<NetifTxRequest, NetifTxResponse>): number {
  return ring.shared.region.getU16(ring.shared.slotOffset(ring.reqCons) + NETIF_TX_REQUEST.size);
}

/**
 * [parseTxPacket ring work d fatalSlots] consumes one packet's slots (at most
 * `work`, the requests the frontend published) into d and validates them.
 */
export function parseTxPacket(
  ring: BackRing<NetifTxRequest, NetifTxResponse>, work: number, d: TxPacketDesc, fatalSlots = FATAL_SKB_SLOTS,
): TxParseResult {
  d.reset();
  const limit = Math.min(fatalSlots, MAX_TX_SLOTS - 1);
  // The codec never fails on a netif_tx_request: every bit pattern decodes.
  const f = ring.copyRequest();
  if (!f.ok) return { kind: 'fatal', reason: 'bad-extra-type', detail: 'undecodable TX request' };
  let todo = work - 1;
  const first = f.value;
  d.ids[0] = first.id;
  d.grefs[0] = first.gref;
  d.offsets[0] = first.offset;
  d.total = first.size;
  d.flags = first.flags;
  d.nslots = 1;

  if ((first.flags & NETTXF_extra_info) !== 0) {
    let more = true;
    while (more) {
      if (todo-- <= 0) return { kind: 'fatal', reason: 'missing-extra', detail: 'Missing extra info' };
      const e = ring.copyRequestWith(netifExtraInfoCodec);
      d.extraCount++;
      if (!e.ok) {
        const t = e.error.kind === 'unknown-extra-type' ? e.error.type : -1;
        return { kind: 'fatal', reason: 'bad-extra-type', detail: `Invalid extra type: ${t}` };
      }
      const x = e.value;
      more = (x.flags & XEN_NETIF_EXTRA_FLAG_MORE) !== 0;
      if (x.type === XEN_NETIF_EXTRA_TYPE_GSO) {
        if (x.gso.size === 0) return { kind: 'fatal', reason: 'bad-gso-size', detail: 'GSO size must not be zero' };
        if (x.gso.type !== XEN_NETIF_GSO_TYPE_TCPV4 && x.gso.type !== XEN_NETIF_GSO_TYPE_TCPV6) {
          return { kind: 'fatal', reason: 'bad-gso-type', detail: `Bad GSO type ${x.gso.type}` };
        }
        d.gsoSize = x.gso.size;
        d.gsoType = x.gso.type;
      } else if (x.type === XEN_NETIF_EXTRA_TYPE_MCAST_ADD || x.type === XEN_NETIF_EXTRA_TYPE_MCAST_DEL) {
        d.mcastOps++;
      }
    }
  }

  // xenvif_count_requests: walk the more_data chain.
  let remaining = first.size;
  let drop: TxParseResult | undefined;
  let slots = 0;
  if ((first.flags & NETTXF_more_data) !== 0) {
    let more = true;
    while (more) {
      if (slots >= todo) return { kind: 'fatal', reason: 'missing-slot', detail: `Asked for ${slots + 1} slots but exceeds this limit (${todo})` };
      if (slots + 1 >= limit) return { kind: 'fatal', reason: 'too-many-slots', detail: `Malicious frontend using ${slots + 2} slots, threshold ${fatalSlots}` };
      if (drop === undefined && slots + 1 >= XEN_NETBK_LEGACY_SLOTS_MAX) {
        drop = { kind: 'drop', reason: 'too-many-slots', detail: `Too many slots (${slots + 2}) exceeding limit (${XEN_NETBK_LEGACY_SLOTS_MAX}), dropping packet` };
      }
      const r = ring.copyRequest();
      if (!r.ok) return { kind: 'fatal', reason: 'missing-slot', detail: 'undecodable TX request' };
      const t = r.value;
      const i = d.nslots++;
      d.ids[i] = t.id;
      d.grefs[i] = t.gref;
      d.offsets[i] = t.offset;
      d.sizes[i] = t.size;
      if (drop === undefined && t.size > remaining) {
        drop = { kind: 'drop', reason: 'slot-bigger-than-frame', detail: `Invalid tx request, slot size ${t.size} > remaining size ${remaining}` };
      }
      if (drop === undefined) remaining -= t.size;
      slots++;
      if (t.offset + t.size > NET_PAGE) return { kind: 'fatal', reason: 'cross-page', detail: `Cross page boundary, txp->offset: ${t.offset}, size: ${t.size}` };
      more = (t.flags & NETTXF_more_data) !== 0;
    }
  }
  if (drop !== undefined) return drop;
  d.sizes[0] = remaining;
  if (first.size < ETH_HLEN) return { kind: 'drop', reason: 'runt', detail: `Bad packet size: ${first.size}` };
  if (first.offset + remaining > NET_PAGE) {
    return { kind: 'fatal', reason: 'cross-page', detail: `Cross page boundary, txreq.offset: ${first.offset}, size: ${remaining}` };
  }
  return OK;
}
