/**
 * The `xensim` command line: a commander@14 program whose subcommands live in
 * cli/commands/, one file each, each exporting `registerX(program, ctx)`.
 *
 * To add a command, create cli/commands/NAME.ts exporting
 *   export function registerName(program: Command, ctx: CliContext): void
 * that calls `program.command(...)`, writes through ctx.out / ctx.err and, on
 * failure, sets ctx.exitCode (prefer that to process.exit: run() returns the
 * code so tests can drive the program in-process). Nothing else to edit:
 * buildProgram() loads every cli/commands/*.ts (in file-name order) and calls
 * each exported function whose name starts with `register`.
 *
 * Exit codes: 0 success; 1 a bad input file, bad arguments, an unknown option
 * or command (commander's own errors keep their code, 1).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';

/** What a command needs from the outside world. */
export interface CliContext {
  /** Writes to stdout. */
  out(text: string): void;
  /** Writes to stderr. */
  err(text: string): void;
  /** The process exit code run() will return; a command sets it on failure. */
  exitCode: number;
}

type Register = (program: Command, ctx: CliContext) => void;

/** Every `register*` function exported by cli/commands/*.ts, in file-name order. */
async function commandRegistrars(): Promise<Register[]> {
  const dir = new URL('./commands/', import.meta.url);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && !f.endsWith('.test.ts'))
    .sort();
  const out: Register[] = [];
  for (const f of files) {
    let mod: Record<string, unknown>;
    try {
      mod = (await import(new URL(f, dir).href)) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`xensim: cannot load the command module cli/commands/${f}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    for (const [name, fn] of Object.entries(mod)) {
      if (/^register[A-Z]/.test(name) && typeof fn === 'function') out.push(fn as Register);
    }
  }
  return out;
}

function packageVersion(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  return typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

/** [buildProgram ctx] is the configured program with every subcommand registered. */
export async function buildProgram(ctx: CliContext): Promise<Command> {
  const program = new Command('xensim');
  program
    .description("A simulator of Xen's paravirtual split-driver I/O model")
    .version(packageVersion(), '-V, --version', 'print the version and exit')
    .configureOutput({ writeOut: (s) => ctx.out(s), writeErr: (s) => ctx.err(s) })
    .exitOverride()
    .showHelpAfterError('(run xensim --help for usage)')
    .showSuggestionAfterError(true);
  for (const register of await commandRegistrars()) register(program, ctx);
  return program;
}

/** [run argv] runs the program on process-style argv (node, script, args...) and returns the exit code. */
export async function run(argv: readonly string[], io?: Pick<CliContext, 'out' | 'err'>): Promise<number> {
  const ctx: CliContext = {
    out: io?.out ?? ((s) => void process.stdout.write(s)),
    err: io?.err ?? ((s) => void process.stderr.write(s)),
    exitCode: 0,
  };
  const program = await buildProgram(ctx);
  try {
    await program.parseAsync([...argv]);
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode; // help/version: 0; usage errors: 1
    throw e;
  }
  return ctx.exitCode;
}
