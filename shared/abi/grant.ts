/**
 * Grant tables, v1 (xen/include/public/grant_table.h). Sizes and offsets
 * measured with gcc against Debian libxen-dev 4.17 (test/abi pins them).
 */

/** grant_entry_v1_t: 8 bytes; 512 per 4 KiB frame. */
export const GRANT_ENTRY_V1 = {
  /** u16 [GUEST writes type/readonly, XEN sets reading/writing] */
  flags: 0,
  /** u16 [GUEST] the domain allowed to use this grant */
  domid: 2,
  /** u32 [GUEST] the frame (a GFN for auto-translated guests, an MFN for PV) */
  frame: 4,
  SIZE: 8,
} as const;

export const GTF = {
  invalid: 0,
  permit_access: 1,
  accept_transfer: 2,
  transitive: 3,
  type_mask: 3,
  /** [GUEST] the grantee may only read. */
  readonly: 1 << 2,
  /** [XEN] set while the grant is mapped or copied for reading or writing. */
  reading: 1 << 3,
  /** [XEN] set while the grant is mapped or copied writable. */
  writing: 1 << 4,
  PWT: 1 << 5,
  PCD: 1 << 6,
  PAT: 1 << 7,
  sub_page: 1 << 8,
} as const;

export const GNTMAP = {
  device_map: 1 << 0,
  host_map: 1 << 1,
  readonly: 1 << 2,
  application_map: 1 << 3,
  contains_pte: 1 << 4,
} as const;

export const GNTTABOP = {
  map_grant_ref: 0,
  unmap_grant_ref: 1,
  setup_table: 2,
  dump_table: 3,
  transfer: 4,
  copy: 5,
  query_size: 6,
  unmap_and_replace: 7,
  set_version: 8,
  get_status_frames: 9,
  get_version: 10,
  swap_grant_ref: 11,
  cache_flush: 12,
} as const;

export const GNTST = {
  okay: 0,
  general_error: -1,
  bad_domain: -2,
  bad_gntref: -3,
  bad_handle: -4,
  bad_virt_addr: -5,
  bad_dev_addr: -6,
  no_device_space: -7,
  permission_denied: -8,
  bad_page: -9,
  bad_copy_arg: -10,
  address_too_big: -11,
  eagain: -12,
  no_space: -13,
} as const;
export type GntSt = (typeof GNTST)[keyof typeof GNTST];

/** GNTTABOP_error_msgs, in Xen's wording. */
export const GNTST_MESSAGE: Readonly<Record<number, string>> = {
  0: 'okay',
  [-1]: 'undefined error',
  [-2]: 'unrecognised domain id',
  [-3]: 'invalid grant reference',
  [-4]: 'invalid mapping handle',
  [-5]: 'invalid virtual address',
  [-6]: 'invalid device address',
  [-7]: 'no spare translation slot in the I/O MMU',
  [-8]: 'permission denied',
  [-9]: 'bad page',
  [-10]: 'copy arguments cross page boundary',
  [-11]: 'page address size too large',
  [-12]: 'operation not done; try again',
  [-13]: 'out of space',
};

/** struct gnttab_map_grant_ref: 32 bytes. */
export const GNTTAB_MAP = {
  host_addr: 0, // u64 IN: guest address where the frame is to appear
  flags: 8, // u32 IN: GNTMAP_*
  ref: 12, // u32 IN
  dom: 16, // u16 IN: the granting domain
  status: 18, // i16 OUT: GNTST_*
  handle: 20, // u32 OUT: maptrack handle
  dev_bus_addr: 24, // u64 OUT: bus address when GNTMAP_device_map
  SIZE: 32,
} as const;

/** struct gnttab_unmap_grant_ref: 24 bytes. */
export const GNTTAB_UNMAP = {
  host_addr: 0, // u64 IN
  dev_bus_addr: 8, // u64 IN
  handle: 16, // u32 IN
  status: 20, // i16 OUT
  SIZE: 24,
} as const;

/** struct gnttab_copy: 40 bytes; source at 0 and dest at 16 are gnttab_copy_ptr. */
export const GNTTAB_COPY = {
  source: 0,
  dest: 16,
  len: 32, // u16 IN
  flags: 34, // u16 IN: GNTCOPY_*
  status: 36, // i16 OUT
  SIZE: 40,
} as const;
/** struct gnttab_copy_ptr: u (ref u32 or gmfn u64) 0, domid u16 8, offset u16 10. */
export const GNTTAB_COPY_PTR = { u: 0, domid: 8, offset: 10, SIZE: 16 } as const;
export const GNTCOPY = { source_gref: 1 << 0, dest_gref: 1 << 1 } as const;

/** struct gnttab_query_size: 16 bytes. */
export const GNTTAB_QUERY_SIZE = { dom: 0, nr_frames: 4, max_nr_frames: 8, status: 12, SIZE: 16 } as const;

/** Grant references Xen's toolstack reserves (0 console, 1 xenstore; 0..7 in all). */
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
