/**
 * xensim's own layouts in Xen-owned machine memory: the machine header, the
 * frame table, the per-domain slots (control block + shared_info page), the
 * hypercall mailbox and the event-channel port table. Not a Xen ABI: these are
 * the "hardware" and "hypervisor memory" of the simulated machine, shared by
 * every worker. Each field names its writer: [XEN] the hypervisor worker,
 * [DOM] the domain's own worker, [ANY] any worker (atomics only).
 */

/** Frame 0 of machine memory. */
export const MACHINE_HEADER = {
  magic: 0, // u32 [XEN] 'XSIM'
  pageSize: 4, // u32 [XEN]
  frames: 8, // u32 [XEN]
  frameTableMfn: 12, // u32 [XEN] first frame of the frame table
  frameTableFrames: 16, // u32 [XEN]
  slotsMfn: 20, // u32 [XEN] first frame of the domain slots
  nrSlots: 24, // u32 [XEN]
  arenaStart: 28, // u32 [XEN] Xen heap: P2M tables, port tables, hypercall buffers
  arenaEnd: 32, // u32 [XEN] (exclusive)
  /** i32 [ANY] bumped by a caller after posting a hypercall; the hypervisor sleeps on it. */
  hvDoorbell: 64,
  /** i32 [ANY] non-zero when the orchestrator has posted control messages. */
  hvControl: 68,
  /** i32 [XEN] non-zero once the hypervisor loop has stopped. */
  hvStopped: 72,
  /** i32 [XEN] 1 while the hypervisor is spinning (callers may skip the notify). */
  hvSpinning: 76,
  /** u32[] [ANY set, XEN clears] one bit per slot with a posted hypercall. */
  hvPending: 128,
  MAGIC: 0x4d495358,
  /** hvPending holds up to 1024 slots. */
  MAX_SLOTS: 1024,
} as const;

/** Frame table: one 16-byte entry per machine frame, written only by [XEN]. */
export const FRAME_ENTRY = {
  owner: 0, // i32 domid owning the frame, or DOMID_FREE
  type: 4, // i32 FRAME_TYPE
  mapcount: 8, // i32 foreign grant mappings of this frame still installed
  m2p: 12, // i32 the owner's pfn for this frame (the M2P), or -1
  SIZE: 16,
} as const;

export const FRAME_TYPE = {
  free: 0,
  /** Xen's own memory: header, frame table, slots, arena. */
  xen: 1,
  /** A domain's RAM. */
  ram: 2,
  /** A grant-table frame of its owner. */
  grantTable: 3,
} as const;
export type FrameType = (typeof FRAME_TYPE)[keyof typeof FRAME_TYPE];

/** Each domain slot is 2 frames: the domain control block, then shared_info. */
export const SLOT_FRAMES = 2;

/** Domain control block: frame 0 of a slot. */
export const DCB = {
  domid: 0, // i32 [XEN] -1 when the slot is free
  state: 4, // i32 [XEN] DOMAIN_STATE
  generation: 8, // i32 [XEN] bumped each time the slot is reused
  /** i32 [ANY] senders currently touching this slot's shared_info (fast-path EVTCHNOP_send). */
  inflight: 12,
  /** i32 [ANY] the vCPU kick: bumped (then notified) to wake the domain; the domain sleeps on it. */
  wake: 16,
  faults: 20, // i32 [ANY] memory faults taken by this domain's accessor
  p2mMfn: 24, // u32 [XEN]
  p2mEntries: 28, // u32 [XEN]
  portsMfn: 32, // u32 [XEN]
  nrPorts: 36, // u32 [XEN]
  hcbufMfn: 40, // u32 [XEN] hypercall argument buffer (contiguous frames)
  hcbufPages: 44, // u32 [XEN]
  model: 48, // u32 [XEN] MEMORY_MODEL
  totPages: 52, // u32 [XEN]
  maxPages: 56, // u32 [XEN]
  /** i32 [DOM] set to 1 by the domain's worker when it wants to stop waiting (control message). */
  control: 60,
  // --- hypercall mailbox ---
  /** i32 [DOM: IDLE→POSTED, XEN: POSTED→DONE, DOM: DONE→IDLE] */
  mbState: 64,
  mbOp: 68, // u32 [DOM]
  mbArgs: 72, // u32[6] [DOM]
  mbResult: 96, // i32 [XEN]
  mbResult2: 100, // u32 [XEN] a second result word (e.g. a port, a frame)
  // --- statistics, bumped with atomics by whoever does the work ---
  statHypercalls: 128,
  statEvtchnSent: 132,
  statEvtchnDelivered: 136,
  statGrantMaps: 140,
  statGrantUnmaps: 144,
  statGrantCopies: 148,
  statGrantCopyBytes: 152,
  statWakes: 156,
  MB_IDLE: 0,
  MB_POSTED: 1,
  MB_DONE: 2,
  NR_ARGS: 6,
} as const;

export const DOMAIN_STATE = {
  free: 0,
  running: 1,
  paused: 2,
  shutdown: 3,
  crashed: 4,
  dying: 5,
  /** Destroyed, but some of its frames are still mapped by other domains. */
  zombie: 6,
} as const;
export type DomainStateValue = (typeof DOMAIN_STATE)[keyof typeof DOMAIN_STATE];

export const MEMORY_MODEL = { pm: 0, p2m: 1, vp: 2 } as const;
export type MemoryModel = keyof typeof MEMORY_MODEL;

/**
 * Event-channel port table: one 16-byte entry per port, a seqlock-protected
 * mirror of the hypervisor's bindings, written only by [XEN] and read by the
 * port owner's fast-path send.
 */
export const PORT_ENTRY = {
  /** u32 [XEN] even when stable, odd while being rewritten. */
  seq: 0,
  /** u32 [XEN] ECS state (low 8 bits) | remote domid << 8 */
  stateDom: 4,
  remotePort: 8, // u32 [XEN]
  /** u32 [XEN] slot index of the remote domain */
  remoteSlot: 12,
  SIZE: 16,
} as const;
