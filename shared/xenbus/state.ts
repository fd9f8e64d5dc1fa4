/**
 * XenbusState: the state each end of a split device publishes in its own
 * XenStore directory (`…/state`), as xen/include/public/io/xenbus.h defines
 * it, plus which changes of its own state each side may make.
 *
 * The handshake (io/blkif.h, Linux xenbus_probe*.c, xen-blkback/xenbus.c):
 *
 *     toolstack  both dirs created in Initialising
 *     backend    Initialising → InitWait        (features published)
 *     frontend   Initialising → Initialised     (rings granted, keys written)
 *     backend    InitWait     → Connected       (rings mapped)
 *     frontend   Initialised  → Connected
 *
 * Either side may skip its middle state (a backend that needs nothing from
 * the frontend before connecting stays in Initialising; netfront writes
 * Connected without Initialised). Teardown runs through Closing to Closed;
 * a device whose toolstack cleared `online` is unregistered once Closed.
 *
 * Restart paths that are legal here:
 *  - Closing → Closed → Initialising: a frontend reconnecting after a reset
 *    (Linux xenbus_reset_frontend walks a stale backend the same way), or a
 *    backend re-advertising (Closed → InitWait when the frontend returns to
 *    Initialising, as Linux blkback does);
 *  - a frontend going back to Initialising from Initialised or Connected:
 *    the resume path (blkfront_resume → talk_to_blkback) when its backend
 *    vanished or restarted;
 *  - a backend going back to InitWait from Connected: its frontend reset;
 *  - Connected → Connected on the backend: re-writing Connected while
 *    connected signals a change the frontend must re-read (a resize in Linux
 *    blkback and QEMU's xen_block_resize_cb).
 * `Unknown` stands for "no state node": a directory that does not exist yet
 * or was removed. A side never writes Unknown; it appears when the toolstack
 * creates a directory (Unknown → Initialising) or a backend directory comes
 * back (Unknown → Initialising/InitWait).
 *
 * The peer's state string is hostile input: parseXenbusState accepts exactly
 * the decimal spellings of 0..8 and returns an error for anything else.
 */
import { err, ok, type Result } from '../result.ts';

/** enum xenbus_state (io/xenbus.h). */
export const XenbusState = {
  Unknown: 0,
  Initialising: 1,
  /** Finished early initialisation, waiting for information from the peer or hotplug scripts. */
  InitWait: 2,
  /** Waiting for a connection from the peer. */
  Initialised: 3,
  Connected: 4,
  /** The device is being closed due to an error or an unplug event. */
  Closing: 5,
  Closed: 6,
  /** Reconfiguring: the device is being reconfigured (pciback/pcifront). */
  Reconfiguring: 7,
  Reconfigured: 8,
} as const;
export type XenbusState = (typeof XenbusState)[keyof typeof XenbusState];

/** Names as xenbus_strstate() prints them, index = state. */
export const XENBUS_STATE_NAMES: readonly string[] = [
  'Unknown', 'Initialising', 'InitWait', 'Initialised', 'Connected', 'Closing', 'Closed', 'Reconfiguring', 'Reconfigured',
];

/** [xenbusStateName s] is s's name ("Connected"), or "INVALID(<n>)" for a number outside 0..8. */
export function xenbusStateName(s: number): string {
  return XENBUS_STATE_NAMES[s] ?? `INVALID(${s})`;
}

export function isXenbusState(n: number): n is XenbusState {
  return Number.isInteger(n) && n >= XenbusState.Unknown && n <= XenbusState.Reconfigured;
}

export type XenbusStateParseError = {
  readonly kind: 'bad-state';
  /** The offending value as read (latin1, cut to 64 characters for logs). */
  readonly raw: string;
  readonly reason: 'empty' | 'not-decimal' | 'out-of-range';
};

/**
 * [parseXenbusState raw] is the state a XenStore `state` value names. Only a
 * plain decimal number 0..8 is accepted (one or two digits, no sign, space or
 * NUL); Linux's `%d` scanf would also take "+4x", which we refuse.
 */
export function parseXenbusState(raw: string | Uint8Array): Result<XenbusState, XenbusStateParseError> {
  const s = typeof raw === 'string' ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('latin1');
  const shown = s.length > 64 ? `${s.slice(0, 64)}…` : s;
  if (s.length === 0) return err({ kind: 'bad-state', raw: shown, reason: 'empty' });
  if (!/^[0-9]{1,2}$/.test(s)) return err({ kind: 'bad-state', raw: shown, reason: 'not-decimal' });
  const n = Number(s);
  if (!isXenbusState(n)) return err({ kind: 'bad-state', raw: shown, reason: 'out-of-range' });
  return ok(n);
}

/** [formatXenbusState s] is the string a side writes into its `state` node. */
export function formatXenbusState(s: XenbusState): string {
  return String(s);
}

export type XenbusSide = 'frontend' | 'backend';

const S = XenbusState;

/**
 * Changes each side may make to its own state (from → allowed to). Moving to
 * Closing or Closed is allowed from every live state (an error or an unplug
 * can come at any time); the tables list the rest.
 */
const FRONTEND_TRANSITIONS: ReadonlyMap<XenbusState, readonly XenbusState[]> = new Map<XenbusState, readonly XenbusState[]>([
  [S.Unknown, [S.Initialising]],
  // Initialised after writing the keys; Connected directly is netfront's skip.
  [S.Initialising, [S.Initialised, S.Connected, S.Closing, S.Closed]],
  // Initialising again: the resume path (the backend vanished before connecting).
  [S.Initialised, [S.Connected, S.Initialising, S.Closing, S.Closed]],
  // Initialising: resume after the backend went away; Initialised: resume written in one go.
  [S.Connected, [S.Initialising, S.Initialised, S.Reconfiguring, S.Closing, S.Closed]],
  [S.Closing, [S.Closed, S.Initialising]],
  [S.Closed, [S.Initialising]],
  [S.Reconfiguring, [S.Reconfigured, S.Connected, S.Closing, S.Closed]],
  [S.Reconfigured, [S.Connected, S.Closing, S.Closed]],
]);

const BACKEND_TRANSITIONS: ReadonlyMap<XenbusState, readonly XenbusState[]> = new Map<XenbusState, readonly XenbusState[]>([
  // A backend directory that comes back: created in Initialising, or re-probed straight to InitWait.
  [S.Unknown, [S.Initialising, S.InitWait]],
  // Connected directly: the backend skipped InitWait.
  [S.Initialising, [S.InitWait, S.Connected, S.Closing, S.Closed]],
  [S.InitWait, [S.Connected, S.Closing, S.Closed]],
  // Connected again: the resize signal. InitWait: the frontend reset, features re-advertised.
  [S.Connected, [S.Connected, S.InitWait, S.Reconfiguring, S.Closing, S.Closed]],
  [S.Closing, [S.Closed]],
  // InitWait: the frontend came back to Initialising (Linux blkback "prepare for reconnect").
  [S.Closed, [S.InitWait, S.Initialising]],
  [S.Reconfiguring, [S.Reconfigured, S.Connected, S.Closing, S.Closed]],
  [S.Reconfigured, [S.Connected, S.Closing, S.Closed]],
]);

/** [xenbusTransitions side] is the transition table of one side (from → allowed targets). */
export function xenbusTransitions(side: XenbusSide): ReadonlyMap<XenbusState, readonly XenbusState[]> {
  return side === 'frontend' ? FRONTEND_TRANSITIONS : BACKEND_TRANSITIONS;
}

/**
 * [isLegalTransition side from to] holds when `side` may change its own state
 * from `from` to `to`. Writing the same state again is legal only for the
 * backend's Connected (the resize signal); Unknown is never a target.
 */
export function isLegalTransition(side: XenbusSide, from: XenbusState, to: XenbusState): boolean {
  return xenbusTransitions(side).get(from)?.includes(to) ?? false;
}
