/**
 * [NetDevice] is a network interface as a guest workload sees it: it sends whole
 * Ethernet frames (no FCS) and hands received ones to one handler. netfront
 * implements it for a simulated vif; test/helpers/loopback-net.ts implements a
 * pair in memory. iperf-engine.ts drives it.
 *
 * Contract:
 *  - `send(frame)` either takes the frame (copies it, or finishes with it, before
 *    returning: the caller reuses its buffer at once) and returns true, or has no
 *    room (a full TX ring) and returns false having done nothing. After false, call
 *    `whenWritable()` and retry when it resolves. Taking a frame does not promise
 *    delivery: links lose frames.
 *  - The receive handler is called with each received frame, at most one call at a
 *    time, never from inside `send`. The frame is valid only during the call (the
 *    device may reuse the memory); a handler that needs it later copies it.
 *  - `mtu` is the largest IPv4 packet (frame minus the 14-byte Ethernet header).
 *  - Checksum offload (Linux NETIF_F_IP_CSUM and NETIF_F_RXCSUM), optional:
 *    a device with `csumOffload` true takes `send(frame, CHECKSUM_PARTIAL)` for
 *    an IPv4 TCP/UDP frame whose L4 checksum field holds only the folded
 *    pseudo-header sum, and sees the checksum completed (or vouched for) on the
 *    way. On receive, `rxCsum` CHECKSUM_UNNECESSARY means the device (here: a
 *    backend that got the frame over memory, NETRXF_data_validated) vouches
 *    for the L4 checksum, which may then be blank; CHECKSUM_NONE (or absent)
 *    means check it in software. Corruption the checksum would have caught is
 *    for the payload's own checks to catch.
 */
import type { DeviceCounters } from './block-device.ts';

export type { DeviceCounters, WorkloadClock } from './block-device.ts';

/** How a frame's L4 checksum stands (Linux skb->ip_summed). */
export const CHECKSUM_NONE = 0;
/** Receive: the device vouches for the L4 checksum; do not check it. */
export const CHECKSUM_UNNECESSARY = 1;
/** Send: the L4 checksum field holds the pseudo-header sum; the device completes it. */
export const CHECKSUM_PARTIAL = 3;
export type ChecksumState = typeof CHECKSUM_NONE | typeof CHECKSUM_UNNECESSARY | typeof CHECKSUM_PARTIAL;

export interface NetDevice {
  /** The interface's MAC address, "00:16:3e:xx:yy:zz". */
  readonly mac: string;
  /** Largest IPv4 packet in bytes (1500 for a standard vif). */
  readonly mtu: number;
  /** Checksum offload is on: send takes CHECKSUM_PARTIAL frames, receive may say CHECKSUM_UNNECESSARY. Absent = false. */
  readonly csumOffload?: boolean;
  /** csum is CHECKSUM_PARTIAL only when `csumOffload`; default CHECKSUM_NONE (the frame carries its full checksum). */
  send(frame: Uint8Array, csum?: ChecksumState): boolean;
  /** Resolves when `send` may accept a frame again (at once if it may now). Never rejects. */
  whenWritable(): Promise<void>;
  /** Installs the receive handler (replacing any previous one); undefined removes it. */
  onReceive(handler: ((frame: Uint8Array, rxCsum?: ChecksumState) => void) | undefined): void;
  counters(): DeviceCounters;
}
