import { expect } from 'chai';
import fc from 'fast-check';
import { cFloat, sprintf, type PrintfArg } from '../../../cli/views/printf.ts';
import { cDouble, cString, gccMissing, runC } from './c-oracle.ts';

/** One argument with its C type, so the oracle passes exactly what C would receive. */
type CArg =
  | { readonly t: 'int' | 'unsigned' | 'long' | 'unsigned long' | 'long long' | 'unsigned long long'; readonly v: bigint }
  | { readonly t: 'double'; readonly v: number }
  | { readonly t: 'string'; readonly v: string };

interface Case { readonly fmt: string; readonly args: readonly CArg[] }

function cExpr(a: CArg): string {
  if (a.t === 'double') return cDouble(a.v);
  if (a.t === 'string') return cString(a.v);
  // Pass the two's-complement bit pattern and let C's conversion wrap it, as a cast in the real tool would.
  return `(${a.t})0x${BigInt.asUintN(64, a.v).toString(16)}ULL`;
}
function jsArg(a: CArg): PrintfArg {
  return a.v;
}
const I = (v: number | bigint): CArg => ({ t: 'int', v: BigInt(v) });
const U = (v: number | bigint): CArg => ({ t: 'unsigned', v: BigInt(v) });
const UL = (v: number | bigint): CArg => ({ t: 'unsigned long', v: BigInt(v) });
const ULL = (v: number | bigint): CArg => ({ t: 'unsigned long long', v: BigInt(v) });
const D = (v: number): CArg => ({ t: 'double', v });
const S = (v: string): CArg => ({ t: 'string', v });
const C = (ch: string): CArg => ({ t: 'int', v: BigInt(ch.charCodeAt(0)) });

/** Runs every case through glibc's printf in one program; outputs are NUL-separated. */
function glibc(cases: readonly Case[]): string[] {
  const body = cases.map((c) => `printf(${[cString(c.fmt), ...c.args.map(cExpr)].join(', ')}); putchar(0);`).join('\n');
  const out = runC(body).toString('utf8').split('\0');
  out.pop();
  return out;
}

/** The format strings of xl_info.c, xl_block.c, xl_nic.c and xentop.c, with typical and edge values. */
const TOOL_CASES: Case[] = [
  { fmt: '%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f', args: [S('Domain-0'), I(0), UL(750), I(4), C('r'), C('-'), C('-'), C('-'), C('-'), C('-'), D(11794.3)] },
  { fmt: '%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f', args: [S('a-name-that-is-longer-than-forty-characters-x'), I(32767), UL(123456), I(128), C('-'), C('b'), C('p'), C('s'), C('c'), C('d'), D(123456789.25)] },
  { fmt: '%-5s %-3s %-6s %-5s %-6s %-8s %-30s\n', args: ['Vdev', 'BE', 'handle', 'state', 'evt-ch', 'ring-ref', 'BE-path'].map(S) },
  { fmt: '%-5d %-3d %-6d %-5d %-6d %-8d %-30s\n', args: [I(51712), I(0), I(3), I(4), I(17), I(8), S('/local/domain/0/backend/vbd/3/51712')] },
  { fmt: '%-3s %-2s %-17s %-6s %-5s %-6s %5s/%-5s %-30s\n', args: ['Idx', 'BE', 'Mac Addr.', 'handle', 'state', 'evt-ch', 'tx-', 'rx-ring-ref', 'BE-path'].map(S) },
  { fmt: '%02hhx:%02hhx:%02hhx:%02hhx:%02hhx:%02hhx', args: [0x00, 0x16, 0x3e, 0x0a, 0xbc, 0xff].map(I) },
  { fmt: '%6d %5d %6d %5d/%-11d %-30s\n', args: [I(0), I(4), I(-1), I(768), I(769), S('/local/domain/0/backend/vif/3/0')] },
  { fmt: '%10.10s', args: [S('Domain-0-with-long-name')] },
  { fmt: '%*s', args: [I(10), S('NAME')] },
  { fmt: '%*s', args: [I(-10), S('NAME')] },
  { fmt: '%10llu|%6.1f|%9.1f|%5u|%4u|%*llu|%8c|%*c', args: [ULL(123), D(99.95), D(0.05), U(2), U(1), I(9), ULL(10n ** 12n), C('-'), I(10), C('-')] },
  { fmt: '%10s|%9s', args: [S('no limit'), S('n/a')] },
  { fmt: 'VBD %s %4d %s OO: %8llu   RD: %8llu   WR: %8llu   RSECT: %10llu   WSECT: %10llu\n', args: [S('BlkBack'), I(51712), S('[ca: 0] '), ULL(0), ULL(12), ULL(34), ULL(1n << 40n), ULL(2n ** 64n - 1n)] },
  { fmt: '[%2x:%2x] ', args: [U(202), U(0)] },
  { fmt: '%u domains: %u running, %u blocked, %u paused, %u crashed, %u dying, %u shutdown \n', args: [2, 1, 1, 0, 0, 0, 0].map(U) },
  { fmt: 'Mem: %lluk total, %lluk used, %lluk free    CPUs: %u @ %lluMHz\n', args: [ULL(16776740), ULL(9000000), ULL(7776740), U(8), ULL(2394)] },
  { fmt: ' %2u: %10llus', args: [U(3), ULL(42)] },
  { fmt: 'Net%d RX: %8llubytes %8llupkts %8lluerr %8lludrop  ', args: [I(0), ULL(1234567), ULL(89), ULL(0), ULL(1)] },
];

/** Edge values for integer and float conversion. */
const EDGE_CASES: Case[] = [
  { fmt: '%d|%i|%u|%x|%X|%o', args: [I(-2147483648n), I(2147483648n), U(-1), U(0xdeadbeef), U(0xdeadbeef), U(8)] },
  { fmt: '%hhd|%hd|%hhu|%hu|%ld|%lld', args: [I(300), I(70000), U(-1), U(-1), { t: 'long', v: -(2n ** 63n) }, { t: 'long long', v: 2n ** 63n - 1n }] },
  { fmt: '%+d|% d|%+u|%05d|%-5d|%5.3d|%.0d|%#o|%#x|%#X|%#.0o|%#x', args: [I(5), I(5), U(7), I(-42), I(42), I(7), I(0), U(8), U(255), U(255), U(0), U(0)] },
  { fmt: '%.0f|%.0f|%.0f|%.0f|%.1f|%.1f|%.2f|%.3f', args: [D(0.5), D(1.5), D(2.5), D(-0.5), D(0.25), D(0.35), D(1.005), D(2.0005)] },
  { fmt: '%f|%F|%.1f|%8.1f|%-8.1f|%+08.2f|% f|%#.0f|%010.3f', args: [D(0), D(-0), D(-0.04), D(-0.04), D(1e-7), D(3.14159), D(1), D(3), D(-2.5)] },
  { fmt: '%f|%.0f|%.20f|%.17f', args: [D(1e21), D(1.7976931348623157e308), D(5e-324), D(0.1)] },
  { fmt: '%f|%F|%5f|%-6f|%05f|%+f', args: [D(Infinity), D(Infinity), D(-Infinity), D(NaN), D(Infinity), D(Infinity)] },
  { fmt: '%s|%.3s|%-6s|%6s|%.0s|%%|100%%', args: [S(''), S('abcdef'), S('ab'), S('ab'), S('zzz')] },
  { fmt: '%05s|%05c|%-05d', args: [S('ab'), C('x'), I(42)] },
  { fmt: '%-6s|%6s|%.2s', args: [S('née'), S('née'), S('naïve')] },
];

describe('sprintf', () => {
  it('prints the tools\' own format strings as the xl and xentop examples show', () => {
    expect(sprintf('%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f', 'Domain-0', 0, 750, 4, 'r', '-', '-', '-', '-', '-', 11794.3))
      .to.equal('Domain-0                                     0   750     4     r-----   11794.3');
    expect(sprintf('%-5d %-3d %-6d %-5d %-6d %-8d %-30s|', 51712, 0, 3, 4, 17, 8, 'be'))
      .to.equal('51712 0   3      4     17     8        be                            |');
    expect(sprintf('%10.10s|%*s|%*llu|%8c', 'Domain-0-long', 4, 'ab', 6, 42n, '-')).to.equal('Domain-0-l|  ab|    42|       -');
  });

  it('rounds %f half-to-even on the exact binary value, unlike toFixed', () => {
    expect(sprintf('%.0f %.0f %.0f %.1f %.1f', 0.5, 1.5, 2.5, 0.25, 0.35)).to.equal('0 2 2 0.2 0.3');
    expect((0.25).toFixed(1)).to.equal('0.3'); // why we do not use toFixed
    expect(sprintf('%.2f', 1.005)).to.equal('1.00'); // 1.005 is really 1.00499999999999989...
    expect(sprintf('%f', 1e21)).to.equal('1000000000000000000000.000000');
    expect(sprintf('%.1f %8.1f', -0.04, -0)).to.equal('-0.0     -0.0');
  });

  it('wraps integers to the length modifier like a C conversion', () => {
    expect(sprintf('%d %u %hhd %hu %lu', 2 ** 31, -1, 300, -1, -1)).to.equal('-2147483648 4294967295 44 65535 18446744073709551615');
    expect(sprintf('%llu', 2n ** 64n - 1n)).to.equal('18446744073709551615');
  });

  it('throws on conversions we do not support and on argument mistakes (our bugs, not input)', () => {
    expect(() => sprintf('%e', 1)).to.throw(/not supported/);
    expect(() => sprintf('%d')).to.throw(/too few arguments/);
    expect(() => sprintf('%d', 1, 2)).to.throw(/unused/);
    expect(() => sprintf('%d', 1.5)).to.throw(/wants an integer/);
    expect(() => sprintf('%s', 1)).to.throw(/wants a string/);
    expect(() => sprintf('%f', 1n)).to.throw(/wants a number/);
  });

  describe('against glibc (gcc oracle)', function () {
    before(function () {
      const why = gccMissing();
      if (why !== null) {
        console.warn(`SKIPPED: printf golden tests because ${why}`);
        this.skip();
      }
    });

    it('matches glibc byte for byte on the xl/xentop formats and on edge values', function () {
      this.timeout(30000);
      const cases = [...TOOL_CASES, ...EDGE_CASES];
      const golden = glibc(cases);
      expect(golden.length).to.equal(cases.length);
      cases.forEach((c, i) => {
        expect(sprintf(c.fmt, ...c.args.map(jsArg)), `${c.fmt} ${JSON.stringify(c.args, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))}`).to.equal(golden[i]);
      });
    });

    it('matches glibc on 600 random formats and values (seeded)', function () {
      this.timeout(30000);
      const flagSet = (allowed: string): fc.Arbitrary<string> => fc.subarray([...allowed]).map((a) => a.join(''));
      const widthArb = fc.oneof(fc.constant(''), fc.integer({ min: 1, max: 25 }).map(String));
      const precArb = fc.oneof(fc.constant(''), fc.integer({ min: 0, max: 12 }).map((p) => `.${p}`), fc.constant('.'));
      const tie = fc.tuple(fc.integer({ min: -99999, max: 99999 }), fc.integer({ min: 0, max: 6 })).map(([k, p]) => (k + 0.5) / 10 ** p);
      const double = fc.oneof(
        fc.double({ noNaN: true }),
        fc.double({ min: -1e6, max: 1e6, noNaN: true }),
        tie,
        fc.integer({ min: -1000000, max: 1000000 }).map((k) => k / 1024),
      );
      const floatCase: fc.Arbitrary<Case> = fc.tuple(flagSet('-+ #0'), widthArb, precArb, fc.constantFrom('f', 'F'), double)
        .map(([fl, w, p, conv, v]) => ({ fmt: `[%${fl}${w}${p}${conv}]`, args: [D(v)] }));
      const intTypes = [
        { len: '', t: 'int', bits: 32 }, { len: 'l', t: 'long', bits: 64 }, { len: 'll', t: 'long long', bits: 64 },
        { len: 'h', t: 'int', bits: 32 }, { len: 'hh', t: 'int', bits: 32 },
      ] as const;
      const intCase: fc.Arbitrary<Case> = fc.tuple(
        flagSet('-+ #0'), widthArb, precArb, fc.constantFrom(...intTypes), fc.constantFrom('d', 'i', 'u', 'x', 'X', 'o'), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
      ).map(([fl, w, p, ty, conv, v]) => {
        const unsigned = conv !== 'd' && conv !== 'i';
        const t = (unsigned ? (ty.t === 'int' ? 'unsigned' : `unsigned ${ty.t}`) : ty.t) as Exclude<CArg['t'], 'double' | 'string'>;
        const val = unsigned ? BigInt.asUintN(ty.bits, v) : BigInt.asIntN(ty.bits, v);
        return { fmt: `[%${fl}${w}${p}${ty.len}${conv}]`, args: [{ t, v: val }] };
      });
      const strCase: fc.Arbitrary<Case> = fc.tuple(flagSet('-'), widthArb, precArb, fc.string({ maxLength: 30 }))
        .map(([fl, w, p, v]) => ({ fmt: `[%${fl}${w}${p}s]`, args: [S(v.replaceAll('\0', ''))] }));
      const cases = fc.sample(fc.oneof(floatCase, intCase, strCase), { numRuns: 600, seed: 20240611 });
      const golden = glibc(cases);
      cases.forEach((c, i) => {
        expect(sprintf(c.fmt, ...c.args.map(jsArg)), `${c.fmt} ${String(c.args[0]?.v)}`).to.equal(golden[i]);
      });
    });

    it('rounds u64 to float exactly as C\'s (float) cast, including above 2^53', function () {
      this.timeout(30000);
      const vals = [
        0n, 1n, 11794_300_000_000n, (1n << 24n) + 1n, (1n << 53n) - 1n, (1n << 53n) + 1n,
        (1n << 60n) + (1n << 36n), (1n << 60n) + (1n << 36n) + 1n, (1n << 60n) + (3n << 36n), 2n ** 64n - 1n,
        ...fc.sample(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { numRuns: 200, seed: 7 }),
      ];
      const body = vals.map((v) => `{ float f = (float)0x${v.toString(16)}ULL; uint32_t b; memcpy(&b, &f, 4); printf("%08x %8.1f\\n", b, f / 1e9); }`).join('\n');
      const golden = runC(body).toString('utf8').trimEnd().split('\n');
      const f32 = Buffer.alloc(4);
      vals.forEach((v, i) => {
        const f = cFloat(v);
        f32.writeFloatLE(f, 0);
        expect(`${f32.readUInt32LE(0).toString(16).padStart(8, '0')} ${sprintf('%8.1f', f / 1e9)}`, String(v)).to.equal(golden[i]);
      });
    });
  });
});
