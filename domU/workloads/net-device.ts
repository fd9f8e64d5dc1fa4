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
 */
import type { DeviceCounters } from './block-device.ts';

export type { DeviceCounters, WorkloadClock } from './block-device.ts';

export interface NetDevice {
  /** The interface's MAC address, "00:16:3e:xx:yy:zz". */
  readonly mac: string;
  /** Largest IPv4 packet in bytes (1500 for a standard vif). */
  readonly mtu: number;
  send(frame: Uint8Array): boolean;
  /** Resolves when `send` may accept a frame again (at once if it may now). Never rejects. */
  whenWritable(): Promise<void>;
  /** Installs the receive handler (replacing any previous one); undefined removes it. */
  onReceive(handler: ((frame: Uint8Array) => void) | undefined): void;
  counters(): DeviceCounters;
}
