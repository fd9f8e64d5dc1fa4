/**
 * Network streams in run and bench. netfront and netback exist as drivers,
 * but the toolstack cannot attach a vif to a guest yet (no Machine.attachVif)
 * and no guest agent runs iperf over one, so this build runs no stream: a
 * cell that asks for one runs its block work and is reported failed with
 * this message. Nothing is ever made up in their place.
 *
 * When the toolstack can attach vifs, the stream runner goes here.
 */

/** [networkUnavailable] says why streams do not run in this build. */
export function networkUnavailable(): string {
  return 'network streams are not available in this build: netfront/netback are not yet wired into the toolstack (no Machine.attachVif, no guest iperf)';
}

/** [networkAvailable] is whether this build can run network streams. */
export function networkAvailable(): boolean {
  return false;
}
