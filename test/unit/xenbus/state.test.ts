import { expect } from 'chai';
import fc from 'fast-check';
import {
  XENBUS_STATE_NAMES, XenbusState, formatXenbusState, isLegalTransition, parseXenbusState, xenbusStateName,
  xenbusTransitions, type XenbusSide, type XenbusState as State,
} from '../../../shared/xenbus/state.ts';

const S = XenbusState;
const ALL = Object.values(XenbusState) as State[];

/** A walk is legal when every step is. */
function walk(side: XenbusSide, ...states: State[]): boolean {
  for (let i = 1; i < states.length; i++) if (!isLegalTransition(side, states[i - 1] as State, states[i] as State)) return false;
  return true;
}

describe('XenbusState', () => {
  it('has xenbus.h\'s numbers and names', () => {
    expect(S).to.deep.equal({
      Unknown: 0, Initialising: 1, InitWait: 2, Initialised: 3, Connected: 4, Closing: 5, Closed: 6, Reconfiguring: 7, Reconfigured: 8,
    });
    for (const [name, n] of Object.entries(S)) expect(XENBUS_STATE_NAMES[n]).to.equal(name);
    expect(xenbusStateName(4)).to.equal('Connected');
    expect(xenbusStateName(12)).to.equal('INVALID(12)');
  });

  it('parses every state its writers format, from strings and from bytes', () => {
    for (const s of ALL) {
      expect(parseXenbusState(formatXenbusState(s))).to.deep.equal({ ok: true, value: s });
      expect(parseXenbusState(new Uint8Array(Buffer.from(String(s))))).to.deep.equal({ ok: true, value: s });
    }
  });

  it('refuses garbage with a reason and the offending value, never throwing', () => {
    const cases: [string, string][] = [
      ['', 'empty'], ['9', 'out-of-range'], ['42', 'out-of-range'], ['-1', 'not-decimal'], ['+4', 'not-decimal'],
      [' 4', 'not-decimal'], ['4 ', 'not-decimal'], ['4\0', 'not-decimal'], ['4x', 'not-decimal'], ['0x4', 'not-decimal'],
      ['Connected', 'not-decimal'], ['4.0', 'not-decimal'], ['100', 'not-decimal'], ['٤', 'not-decimal'],
    ];
    for (const [raw, reason] of cases) {
      const r = parseXenbusState(raw);
      expect(r, JSON.stringify(raw)).to.deep.equal({ ok: false, error: { kind: 'bad-state', raw, reason } });
    }
    const long = parseXenbusState('7'.repeat(5000));
    expect(long.ok).to.equal(false);
    if (!long.ok) expect(long.error.raw.length).to.be.at.most(65);
  });

  it('accepts a string exactly when it is the decimal spelling of 0..8 (with at most one leading zero)', () => {
    fc.assert(fc.property(fc.string({ maxLength: 6 }), (s) => {
      const r = parseXenbusState(s);
      const expected = /^0?[0-8]$/.test(s);
      return r.ok === expected && (!r.ok || r.value === Number(s));
    }), { numRuns: 2000 });
  });

  it('allows the handshake of blkif.h on each side', () => {
    expect(walk('backend', S.Initialising, S.InitWait, S.Connected, S.Closing, S.Closed)).to.equal(true);
    expect(walk('frontend', S.Initialising, S.Initialised, S.Connected, S.Closing, S.Closed)).to.equal(true);
  });

  it('allows the skips Xen allows: backend without InitWait, frontend without Initialised', () => {
    expect(isLegalTransition('backend', S.Initialising, S.Connected)).to.equal(true);
    expect(isLegalTransition('frontend', S.Initialising, S.Connected)).to.equal(true);
  });

  it('allows the restart paths: Closing → Closed → Initialising, resume, re-advertise, the resize rewrite', () => {
    expect(walk('frontend', S.Connected, S.Closing, S.Closed, S.Initialising, S.Initialised, S.Connected)).to.equal(true);
    expect(walk('frontend', S.Connected, S.Initialising, S.Initialised, S.Connected)).to.equal(true); // resume
    expect(walk('frontend', S.Initialised, S.Initialising)).to.equal(true); // backend vanished before connecting
    expect(walk('backend', S.Connected, S.InitWait, S.Connected)).to.equal(true); // frontend reset
    expect(walk('backend', S.Connected, S.Closing, S.Closed, S.InitWait, S.Connected)).to.equal(true); // reconnect after close
    expect(walk('backend', S.Unknown, S.Initialising)).to.equal(true); // the dir comes back
    expect(walk('backend', S.Unknown, S.InitWait)).to.equal(true);
    expect(isLegalTransition('backend', S.Connected, S.Connected)).to.equal(true); // resize
  });

  it('refuses what neither side may do', () => {
    expect(isLegalTransition('frontend', S.Connected, S.Connected)).to.equal(false); // only the backend re-writes Connected
    expect(isLegalTransition('frontend', S.Closed, S.Connected)).to.equal(false);
    expect(isLegalTransition('frontend', S.Initialising, S.InitWait)).to.equal(false); // InitWait is the backend's
    expect(isLegalTransition('backend', S.InitWait, S.Initialised)).to.equal(false); // Initialised is the frontend's
    expect(isLegalTransition('backend', S.Closing, S.Connected)).to.equal(false);
    expect(isLegalTransition('backend', S.Closed, S.Connected)).to.equal(false);
    for (const side of ['frontend', 'backend'] as const) {
      for (const from of ALL) expect(isLegalTransition(side, from, S.Unknown), `${side} ${from} → Unknown`).to.equal(false);
    }
  });

  it('lets either side close from every live state', () => {
    for (const side of ['frontend', 'backend'] as const) {
      for (const from of [S.Initialising, S.InitWait, S.Initialised, S.Connected, S.Reconfiguring, S.Reconfigured]) {
        if (!xenbusTransitions(side).has(from)) continue;
        if (side === 'frontend' && from === S.InitWait) continue;
        if (side === 'backend' && from === S.Initialised) continue;
        expect(isLegalTransition(side, from, S.Closing), `${side} ${from} → Closing`).to.equal(true);
        expect(isLegalTransition(side, from, S.Closed), `${side} ${from} → Closed`).to.equal(true);
      }
    }
  });
});
