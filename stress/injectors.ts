/**
 * Fault injectors: what a stress run does to the machine on purpose. Each
 * one asks a world (deterministic or threads) to do something nasty — kill a
 * domain mid-I/O, restart the backends, or make a hostile guest abuse rings,
 * grants, event channels or XenStore — and records that it fired. The
 * checkers then say whether the machine survived it.
 *
 * A world implements InjectionTarget; an injector never reaches into a world
 * otherwise, so the same injectors drive both modes.
 */
import type { GuestAct } from './guest-stress.ts';
import type { Prng } from './prng.ts';

export const INJECTOR_NAMES = [
  'domain-destroy',
  'backend-restart',
  'grant-revoke-in-use',
  'grant-reuse-in-use',
  'ring-garbage',
  'ring-index-leap',
  'ring-rewrite',
  'ring-bad-gref',
  'bad-grant-batch',
  'event-storm',
  'xs-quota',
  'xs-bad-paths',
  'xs-tx-storm',
  'xs-snoop',
  'grant-exhaustion',
  'wild-access',
] as const;
export type InjectorName = (typeof INJECTOR_NAMES)[number];

export interface GuestInfo {
  readonly domid: number;
  readonly hostile: boolean;
  /** Its vstress device is connected (ring acts need one). */
  readonly connected: boolean;
}

/** What an injector may ask of a world. */
export interface InjectionTarget {
  /** Live guests, in creation order. */
  guests(): GuestInfo[];
  /** Starts a hostile act in guest domid; false when it cannot now. */
  act(domid: number, a: GuestAct): Promise<boolean>;
  /** Destroys a guest now, whatever it is doing (the toolstack replaces it later if the run allows). */
  destroyGuest(domid: number): Promise<boolean>;
  /** Restarts dom0's vstress backends. */
  restartBackends(): Promise<boolean>;
}

export interface Injector {
  readonly name: InjectorName;
  readonly description: string;
  /** Fires once against t; the detail when it fired, undefined when it could not now. */
  fire(t: InjectionTarget, rng: Prng, opts: { readonly stormEvents: number }): Promise<string | undefined>;
}

function hostileGuest(t: InjectionTarget, rng: Prng, needConnected: boolean): GuestInfo | undefined {
  const hs = t.guests().filter((g) => g.hostile && (!needConnected || g.connected));
  return hs.length === 0 ? undefined : rng.pick(hs);
}

function others(t: InjectionTarget, domid: number): number[] {
  return t.guests().map((g) => g.domid).filter((d) => d !== domid);
}

function guestAct(name: InjectorName, description: string, ring: boolean, make: (g: GuestInfo, t: InjectionTarget, o: { stormEvents: number }) => GuestAct): Injector {
  return {
    name, description,
    async fire(t, rng, o) {
      const g = hostileGuest(t, rng, ring);
      if (g === undefined) return undefined;
      return (await t.act(g.domid, make(g, t, o))) ? `d${g.domid}` : undefined;
    },
  };
}

export const INJECTORS: readonly Injector[] = [
  {
    name: 'domain-destroy',
    description: 'destroys a guest mid-I/O, with its grants mapped by dom0 and its ports bound',
    async fire(t, rng) {
      const gs = t.guests();
      if (gs.length < 2) return undefined;
      const g = rng.pick(gs);
      return (await t.destroyGuest(g.domid)) ? `d${g.domid}${g.hostile ? ' (hostile)' : ''}` : undefined;
    },
  },
  {
    name: 'backend-restart',
    description: "restarts dom0's backends mid-I/O (every frontend resumes with new keys); not again until the devices it disconnected are back",
    async fire(t) { return (await t.restartBackends()) ? 'all backends' : undefined; },
  },
  guestAct('grant-revoke-in-use', 'a guest revokes a grant its request still uses (must fail while mapped)', true, () => ({ kind: 'ring', act: 'revoke-in-use' })),
  guestAct('grant-reuse-in-use', 'a guest points an in-use grant at another page (the mapper keeps the pinned frame)', true, () => ({ kind: 'ring', act: 'reuse-in-use' })),
  guestAct('ring-garbage', 'a frontend publishes a slot of random bytes', true, () => ({ kind: 'ring', act: 'garbage' })),
  guestAct('ring-index-leap', 'a frontend moves req_prod more than a ring ahead', true, () => ({ kind: 'ring', act: 'leap' })),
  guestAct('ring-rewrite', 'a frontend rewrites a request after publishing it (XSA-155)', true, () => ({ kind: 'ring', act: 'rewrite' })),
  guestAct('ring-bad-gref', 'a frontend names grant refs it never granted', true, () => ({ kind: 'ring', act: 'bad-gref' })),
  guestAct('bad-grant-batch', 'map and copy batches mixing good and bad grant refs (XSA-361)', false, () => ({ kind: 'bad-batch' })),
  guestAct('event-storm', 'a guest sends events to dom0 as fast as it can (XSA-332)', false, (_g, _t, o) => ({ kind: 'storm', events: o.stormEvents })),
  guestAct('xs-quota', 'a guest creates XenStore nodes until refused', false, () => ({ kind: 'xs', act: 'quota', victims: [] })),
  guestAct('xs-bad-paths', 'a guest writes malformed, oversized and foreign XenStore paths', false, () => ({ kind: 'xs', act: 'bad-paths', victims: [] })),
  guestAct('xs-tx-storm', 'a guest opens transactions past its quota and commits conflicting ones', false, () => ({ kind: 'xs', act: 'tx-storm', victims: [] })),
  guestAct('xs-snoop', "a guest reads other guests' private XenStore nodes", false, (g, t) => ({ kind: 'xs', act: 'snoop', victims: others(t, g.domid) })),
  guestAct('grant-exhaustion', 'a guest fills its grant table (max_grant_frames = 1)', false, () => ({ kind: 'grant-exhaustion' })),
  guestAct('wild-access', "a guest touches memory it was never given and maps others' grants", false, (g, t) => ({ kind: 'wild-access', victims: others(t, g.domid) })),
];

export function injector(name: InjectorName): Injector {
  const i = INJECTORS.find((x) => x.name === name);
  if (i === undefined) throw new Error(`no injector named ${name}`);
  return i;
}

export function isInjectorName(s: string): s is InjectorName {
  return (INJECTOR_NAMES as readonly string[]).includes(s);
}
