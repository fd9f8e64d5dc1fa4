/**
 * Event channels, 2-level ABI (event_channel.h, xen.h shared_info/vcpu_info).
 * Offsets measured with gcc against libxen-dev 4.17 (x86_64).
 */
export const EVTCHNOP = {
  bind_interdomain: 0,
  bind_virq: 1,
  bind_pirq: 2,
  close: 3,
  send: 4,
  status: 5,
  alloc_unbound: 6,
  bind_ipi: 7,
  bind_vcpu: 8,
  unmask: 9,
  reset: 10,
  init_control: 11,
  expand_array: 12,
  set_priority: 13,
} as const;

/** struct shared_info (3136 bytes); vcpu_info[0] is at offset 0. */
export const SHARED_INFO = {
  vcpu_info: 0,
  /** xen_ulong_t[64] [XEN sets, GUEST clears] one bit per port. */
  evtchn_pending: 2048,
  /** xen_ulong_t[64] [GUEST] one bit per port. */
  evtchn_mask: 2560,
  wc_version: 3072,
  SIZE: 3136,
} as const;

/** struct vcpu_info (64 bytes). */
export const VCPU_INFO = {
  /** u8 [XEN sets, GUEST clears] an upcall is pending. */
  evtchn_upcall_pending: 0,
  /** u8 [GUEST] upcalls masked. */
  evtchn_upcall_mask: 1,
  /** xen_ulong_t [XEN sets, GUEST exchanges to 0] which pending words have bits. */
  evtchn_pending_sel: 8,
  SIZE: 64,
} as const;

/** 2-level: 64 words of 64 bits for 64-bit guests. */
export const EVTCHN_2L_NR_CHANNELS = 64 * 64;

/** Port states (evtchn_status). */
export const ECS = {
  closed: 0,
  unbound: 1,
  interdomain: 2,
  pirq: 3,
  virq: 4,
  ipi: 5,
} as const;
