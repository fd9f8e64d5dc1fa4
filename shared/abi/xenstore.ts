/**
 * The XenStore wire ABI: xen/include/public/io/xs_wire.h, as shipped in
 * libxen-dev 4.17 (/usr/include/xen/io/xs_wire.h), plus docs/misc/xenstore.txt
 * and docs/misc/xenstore-ring.txt. Constants and layouts only, no logic.
 *
 * Two transports carry the same byte stream of messages:
 *  - a Unix socket (dom0 tools: libxenstore, python3-pyxs);
 *  - the `xenstore_domain_interface` page shared between a guest and xenstored,
 *    two 1024-byte circular byte queues with free-running u32 indices.
 * Every message is an `xsd_sockmsg` header followed by `len` payload bytes.
 */
import type { Brand } from '../types.ts';

/**
 * struct xsd_sockmsg (16 bytes, host byte order = little-endian here).
 * Written by the sender of the message: [FE] the client for requests,
 * [BE] xenstored for replies and watch events.
 */
export const XSD_SOCKMSG = {
  /** u32 [FE/BE] enum xsd_sockmsg_type; a reply has the request's type, or XS_ERROR. */
  TYPE: 0,
  /** u32 [FE] opaque request id, echoed by xenstored. libxenstore always sends 0; pyxs increments. */
  REQ_ID: 4,
  /** u32 [FE] transaction id (0 = none), echoed by xenstored. */
  TX_ID: 8,
  /** u32 [FE/BE] payload bytes following the header; at most XENSTORE_PAYLOAD_MAX. */
  LEN: 12,
  SIZE: 16,
} as const;

/** enum xsd_sockmsg_type. */
export const XS = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  /* 20 was XS_RESTRICT, removed. */
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
} as const;
export type XsType = (typeof XS)[keyof typeof XS];
/** XS_DEBUG is the old name of XS_CONTROL. */
export const XS_DEBUG = XS.CONTROL;
/** Number of type values (XS_TYPE_COUNT); anything at or above is not a message type. */
export const XS_TYPE_COUNT = 23;
/** Guaranteed to remain an invalid type. */
export const XS_INVALID = 0xffff;

/** Name of each type, for logs and error messages (index = type). */
export const XS_TYPE_NAMES: readonly string[] = [
  'CONTROL', 'DIRECTORY', 'READ', 'GET_PERMS', 'WATCH', 'UNWATCH', 'TRANSACTION_START',
  'TRANSACTION_END', 'INTRODUCE', 'RELEASE', 'GET_DOMAIN_PATH', 'WRITE', 'MKDIR', 'RM',
  'SET_PERMS', 'WATCH_EVENT', 'ERROR', 'IS_DOMAIN_INTRODUCED', 'RESUME', 'SET_TARGET',
  'RESTRICT(removed)', 'RESET_WATCHES', 'DIRECTORY_PART',
];

/**
 * xsd_errors[]: errors travel as the errno *name* plus a NUL ("ENOENT\0").
 * Order as in xs_wire.h ("New errors should be added at the end of the array");
 * a reader that does not know a name treats it as EINVAL (index 0).
 */
export const XSD_ERRORS = [
  'EINVAL', 'EACCES', 'EEXIST', 'EISDIR', 'ENOENT', 'ENOMEM', 'ENOSPC', 'EIO',
  'ENOTEMPTY', 'ENOSYS', 'EROFS', 'EBUSY', 'EAGAIN', 'EISCONN', 'E2BIG', 'EPERM',
] as const;
export type XsErrno = (typeof XSD_ERRORS)[number];

export function isXsErrno(s: string): s is XsErrno {
  return (XSD_ERRORS as readonly string[]).includes(s);
}

/** Largest payload in either direction; a client exceeding it is disconnected. */
export const XENSTORE_PAYLOAD_MAX = 4096;
/** Longest absolute path (bytes, without the NUL). */
export const XENSTORE_ABS_PATH_MAX = 3072;
/** Longest relative path a client should send (bytes, without the NUL). */
export const XENSTORE_REL_PATH_MAX = 2048;

/** Special watch paths, fired by xenstored itself. */
export const XS_SPECIAL_INTRODUCE_DOMAIN = '@introduceDomain';
export const XS_SPECIAL_RELEASE_DOMAIN = '@releaseDomain';

/** SET_PERMS/GET_PERMS letters: r read, w write, b both, n none; followed by a decimal domid. */
export const XS_PERM_LETTERS = { NONE: 'n', READ: 'r', WRITE: 'w', BOTH: 'b' } as const;

/** TRANSACTION_END payloads. */
export const XS_TRANSACTION_COMMIT = 'T';
export const XS_TRANSACTION_ABORT = 'F';

/** A transaction id as carried in xsd_sockmsg.tx_id (0 = no transaction). */
export type XsTxId = Brand<number, 'XsTxId'>;
export const XS_NO_TX = 0 as XsTxId;

/** Bytes in each of the two circular queues of the ring page. */
export const XENSTORE_RING_SIZE = 1024;

/**
 * struct xenstore_domain_interface (2076 bytes at the start of the guest's
 * xenstore page). Indices are free-running u32; byte x of a stream lives at
 * x mod XENSTORE_RING_SIZE. [FE] = the guest, [BE] = xenstored.
 */
export const XENSTORE_DOMAIN_INTERFACE = {
  /** char[1024] [FE] request bytes (guest → xenstored). */
  REQ: 0,
  /** char[1024] [BE] reply and watch-event bytes (xenstored → guest). */
  RSP: 1024,
  /** u32 [BE] next request byte xenstored will read. */
  REQ_CONS: 2048,
  /** u32 [FE] next request byte the guest will write. */
  REQ_PROD: 2052,
  /** u32 [FE] next reply byte the guest will read. */
  RSP_CONS: 2056,
  /** u32 [BE] next reply byte xenstored will write. */
  RSP_PROD: 2060,
  /** u32 [BE] XENSTORE_SERVER_FEATURE_* bits; only ever set, never cleared. */
  SERVER_FEATURES: 2064,
  /** u32 [FE sets RECONNECT, BE sets CONNECTED] XENSTORE_CONNECTED / XENSTORE_RECONNECT. */
  CONNECTION: 2068,
  /** u32 [BE] XENSTORE_ERROR_*: why xenstored stopped serving this ring. */
  ERROR: 2072,
  SIZE: 2076,
} as const;

export const XENSTORE_SERVER_FEATURE_RECONNECTION = 1;
export const XENSTORE_SERVER_FEATURE_ERROR = 2;

export const XENSTORE_CONNECTED = 0;
export const XENSTORE_RECONNECT = 1;

export const XENSTORE_ERROR_NONE = 0;
/** Communication problem (event channel not functional). */
export const XENSTORE_ERROR_COMM = 1;
/** Inconsistent producer or consumer index. */
export const XENSTORE_ERROR_RINGIDX = 2;
/** Protocol violation (payload too long, unknown message type). */
export const XENSTORE_ERROR_PROTO = 3;
