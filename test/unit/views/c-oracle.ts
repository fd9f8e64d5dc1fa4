/**
 * A C oracle for the text views: compile a tiny program with the system gcc
 * and glibc, run it, and compare its bytes with ours. Tests call gccMissing()
 * first and skip loudly when it returns a reason.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const C_PRELUDE = `#include <stdio.h>
#include <stdint.h>
#include <string.h>
/* A double given by its IEEE-754 bits, so no decimal literal is rounded on the way in. */
static double dbl(uint64_t b) { double x; memcpy(&x, &b, sizeof x); return x; }
`;

/** [gccMissing ()] is why the oracle cannot run, or null when gcc works. */
export function gccMissing(): string | null {
  const r = spawnSync('gcc', ['--version'], { encoding: 'utf8' });
  return r.error === undefined && r.status === 0 ? null : 'gcc is not installed (apt-get install gcc)';
}

/** [runC body] compiles C_PRELUDE + `int main(void) { body return 0; }` and returns its stdout. */
export function runC(body: string, extraTop = ''): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'xensim-c-oracle-'));
  try {
    const src = join(dir, 'oracle.c');
    const exe = join(dir, 'oracle');
    writeFileSync(src, `${C_PRELUDE}${extraTop}\nint main(void) {\n${body}\nreturn 0;\n}\n`);
    const cc = spawnSync('gcc', ['-std=gnu11', '-O0', '-w', '-o', exe, src, '-lm'], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc failed:\n${cc.stderr}`);
    const run = spawnSync(exe, [], { maxBuffer: 64 << 20 });
    if (run.status !== 0) throw new Error(`oracle exited ${run.status}: ${run.stderr.toString()}`);
    return run.stdout;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const bits = Buffer.alloc(8);
/** [cDouble x] is a C expression for exactly x. */
export function cDouble(x: number): string {
  bits.writeDoubleLE(x, 0);
  return `dbl(0x${bits.readBigUInt64LE(0).toString(16)}ULL)`;
}

/** [cString s] is a C string literal holding s's UTF-8 bytes (octal escapes for anything but plain ASCII). */
export function cString(s: string): string {
  let out = '"';
  for (const b of Buffer.from(s, 'utf8')) {
    if (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c && b !== 0x3f) out += String.fromCharCode(b);
    else out += '\\' + b.toString(8).padStart(3, '0');
  }
  return out + '"';
}
