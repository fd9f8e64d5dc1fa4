/**
 * The network-device ring protocol, `xen/include/public/io/netif.h`:
 * the TX ring (guest transmit), the RX ring (guest receive) and the control
 * ring (hash configuration). x86_64 layouts, identical on 32-bit guests.
 *
 * Writers: [FE] the frontend (netfront), [BE] the backend (netback).
 * Constants and layout only; codecs are in shared/ring/codec.ts.
 */
import { XEN_PAGE_SIZE, ringSize } from './ring.ts';

/**
 * The minimum number of slots per packet a backend must accept (derived from
 * old Linux MAX_SKB_FRAGS); frontends may send packets of up to this many.
 */
export const XEN_NETIF_NR_SLOTS_MIN = 18;
/** Largest TX packet (netif_tx_request.size is a u16). */
export const XEN_NETIF_MAX_TX_SIZE = 0xffff;

// ---- TX request flags (netif_tx_request.flags) ----
/** Protocol checksum field is blank in the packet (hardware offload). */
export const NETTXF_csum_blank = 1 << 0;
/** Packet data has been validated against protocol checksum. */
export const NETTXF_data_validated = 1 << 1;
/** Packet continues in the next request descriptor. */
export const NETTXF_more_data = 1 << 2;
/** Packet to be followed by extra descriptor(s). */
export const NETTXF_extra_info = 1 << 3;

// ---- RX response flags (netif_rx_response.flags) ----
export const NETRXF_data_validated = 1 << 0;
export const NETRXF_csum_blank = 1 << 1;
export const NETRXF_more_data = 1 << 2;
export const NETRXF_extra_info = 1 << 3;
/** Deprecated, kept for compatibility. */
export const NETRXF_gso_prefix = 1 << 4;

// ---- Extra info (netif_extra_info) ----
/** Never used: invalid. */
export const XEN_NETIF_EXTRA_TYPE_NONE = 0;
export const XEN_NETIF_EXTRA_TYPE_GSO = 1;
export const XEN_NETIF_EXTRA_TYPE_MCAST_ADD = 2;
export const XEN_NETIF_EXTRA_TYPE_MCAST_DEL = 3;
export const XEN_NETIF_EXTRA_TYPE_HASH = 4;
export const XEN_NETIF_EXTRA_TYPE_MAX = 5;
/** Another extra-info slot follows this one. */
export const XEN_NETIF_EXTRA_FLAG_MORE = 1 << 0;
export const XEN_NETIF_GSO_TYPE_NONE = 0;
export const XEN_NETIF_GSO_TYPE_TCPV4 = 1;
export const XEN_NETIF_GSO_TYPE_TCPV6 = 2;

// ---- Response statuses (int16) ----
export const NETIF_RSP_DROPPED = -2;
export const NETIF_RSP_ERROR = -1;
export const NETIF_RSP_OKAY = 0;
/** No response: used for auxiliary requests (extra-info slots). */
export const NETIF_RSP_NULL = 1;

// ---- Control ring ----
export const XEN_NETIF_CTRL_TYPE_INVALID = 0;
export const XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS = 1;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS = 2;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_KEY = 3;
export const XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE = 4;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE = 5;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING = 6;
export const XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM = 7;
export const XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE = 8;
export const XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING = 9;
export const XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING = 10;
export const XEN_NETIF_CTRL_STATUS_SUCCESS = 0;
export const XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED = 1;
export const XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER = 2;
export const XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW = 3;
export const XEN_NETIF_CTRL_HASH_ALGORITHM_NONE = 0;
export const XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ = 1;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV4 = 1 << 0;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP = 1 << 1;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV6 = 1 << 2;
export const XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP = 1 << 3;

// ---- Layouts ----

/** struct netif_tx_request (12 bytes). */
export const NETIF_TX_REQUEST = {
  /** u32 [FE] grant ref of the page holding the data. */
  gref: 0,
  /** u16 [FE] offset of the data within that page. */
  offset: 4,
  /** u16 [FE] NETTXF_*. */
  flags: 6,
  /** u16 [FE] echoed in the response. */
  id: 8,
  /** u16 [FE] first slot: the whole packet's size; later slots: this fragment's. */
  size: 10,
  /** sizeof(struct netif_tx_request); not to be confused with the `size` field. */
  SIZE: 12,
} as const;

/** struct netif_tx_response (4 bytes; it sits in a 12-byte slot). */
export const NETIF_TX_RESPONSE = {
  /** u16 [BE] copied from the request. */
  id: 0,
  /** i16 [BE] NETIF_RSP_*. */
  status: 2,
  SIZE: 4,
} as const;

/** struct netif_rx_request (8 bytes). */
export const NETIF_RX_REQUEST = {
  /** u16 [FE] echoed in the response. */
  id: 0,
  /** u16 padding. */
  pad: 2,
  /** u32 [FE] grant ref of the page the backend may fill. */
  gref: 4,
  SIZE: 8,
} as const;

/** struct netif_rx_response (8 bytes; in its request's slot, as netfront relies on). */
export const NETIF_RX_RESPONSE = {
  /** u16 [BE] copied from the request. */
  id: 0,
  /** u16 [BE] offset of the data in the page. */
  offset: 2,
  /** u16 [BE] NETRXF_*. */
  flags: 4,
  /** i16 [BE] bytes received (> 0) or NETIF_RSP_* (< 0). */
  status: 6,
  SIZE: 8,
} as const;

/**
 * struct netif_extra_info (8 bytes). It fits both a TX request slot ([FE]
 * writes it after a request with NETTXF_extra_info) and an RX response slot
 * ([BE] writes it after a response with NETRXF_extra_info).
 */
export const NETIF_EXTRA_INFO = {
  /** u8 XEN_NETIF_EXTRA_TYPE_*. */
  type: 0,
  /** u8 XEN_NETIF_EXTRA_FLAG_*. */
  flags: 1,
  /** 6-byte union u. */
  u: 2,
  /** u.gso.size: u16 maximum payload size of each segment. */
  gso_size: 2,
  /** u.gso.type: u8 XEN_NETIF_GSO_TYPE_*. */
  gso_type: 4,
  /** u.gso.pad: u8. */
  gso_pad: 5,
  /** u.gso.features: u16 (none defined). */
  gso_features: 6,
  /** u.mcast.addr: u8[6] multicast MAC. */
  mcast_addr: 2,
  /** u.hash.type: u8 _XEN_NETIF_CTRL_HASH_TYPE_* bit number. */
  hash_type: 2,
  /** u.hash.algorithm: u8 XEN_NETIF_CTRL_HASH_ALGORITHM_*. */
  hash_algorithm: 3,
  /** u.hash.value: u8[4]. */
  hash_value: 4,
  SIZE: 8,
} as const;

/** struct xen_netif_ctrl_request (16 bytes). */
export const XEN_NETIF_CTRL_REQUEST = {
  /** u16 [FE] echoed in the response. */
  id: 0,
  /** u16 [FE] XEN_NETIF_CTRL_TYPE_*. */
  type: 2,
  /** u32[3] [FE] type-specific data. */
  data: 4,
  SIZE: 16,
} as const;

/** struct xen_netif_ctrl_response (12 bytes; 16-byte slot). */
export const XEN_NETIF_CTRL_RESPONSE = {
  /** u16 [BE] copied from the request. */
  id: 0,
  /** u16 [BE] copied from the request. */
  type: 2,
  /** u32 [BE] XEN_NETIF_CTRL_STATUS_*. */
  status: 4,
  /** u32 [BE] type-specific data. */
  data: 8,
  SIZE: 12,
} as const;

export const NETIF_TX_RING_ENTRY_SIZE = Math.max(NETIF_TX_REQUEST.SIZE, NETIF_TX_RESPONSE.SIZE);
export const NETIF_RX_RING_ENTRY_SIZE = Math.max(NETIF_RX_REQUEST.SIZE, NETIF_RX_RESPONSE.SIZE);
export const XEN_NETIF_CTRL_RING_ENTRY_SIZE = Math.max(XEN_NETIF_CTRL_REQUEST.SIZE, XEN_NETIF_CTRL_RESPONSE.SIZE);
/** One 4 KiB page: 336 fit → 256. */
export const NET_TX_RING_SIZE_1PAGE = ringSize(XEN_PAGE_SIZE, NETIF_TX_RING_ENTRY_SIZE);
/** One 4 KiB page: 504 fit → 256. */
export const NET_RX_RING_SIZE_1PAGE = ringSize(XEN_PAGE_SIZE, NETIF_RX_RING_ENTRY_SIZE);
/** One 4 KiB page: 252 fit → 128. */
export const XEN_NETIF_CTRL_RING_SIZE_1PAGE = ringSize(XEN_PAGE_SIZE, XEN_NETIF_CTRL_RING_ENTRY_SIZE);
