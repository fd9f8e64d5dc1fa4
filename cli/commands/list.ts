/**
 * `xensim list [DOMAIN]`: the `xl list` table of a running machine (one
 * started by `xensim boot` in another process), read from the status file it
 * publishes (cli/status.ts). Boots nothing.
 *
 * `-l` / `--long` prints what `xl list -l` prints instead: a JSON array of
 * { domid, config } with each domain's libxl_domain_config (the toolstack's
 * record of what it created: toolstack/libxl-config.ts).
 *
 * As xl: with a domain (name or domid) only that domain's row; an unknown name
 * is "NAME is an invalid domain identifier (rc=-6)", an unknown domid
 * "Error: Domain 'N' does not exist." (xl_utils.c find_domain, xl_info.c main_list).
 */
import type { Command } from 'commander';
import { findStatus, readStatus } from '../status.ts';
import { domainStatsFromJson } from '../report/results.ts';
import { xlList } from '../views/xl.ts';
import type { CliContext } from '../main.ts';

/** libxl's ERROR_INVAL, which libxl_name_to_domid returns for an unknown name. */
const ERROR_INVAL = -6;

export interface StatusLocation {
  readonly status?: string;
  readonly xenstoreSocket?: string;
}

/** Adds the options that say which running machine to read. */
export function statusOptions(cmd: Command): Command {
  return cmd
    .option('--status <FILE>', 'the status file of the machine (default: from XENSTORED_PATH, else the only running machine)')
    .option('--xenstore-socket <PATH>', 'the xenstored socket of the machine (as XENSTORED_PATH)');
}

export function locate(o: StatusLocation): ReturnType<typeof findStatus> {
  return findStatus({ ...(o.status === undefined ? {} : { statusFile: o.status }), ...(o.xenstoreSocket === undefined ? {} : { socket: o.xenstoreSocket }) });
}

interface ListOptions extends StatusLocation {
  readonly long?: boolean;
}

function list(ctx: CliContext, domain: string | undefined, o: ListOptions): void {
  const where = locate(o);
  if (!where.ok) {
    ctx.err(`${where.error.message}\n`);
    ctx.exitCode = 1;
    return;
  }
  const st = readStatus(where.value);
  if (!st.ok) {
    ctx.err(`${st.error.message}\n`);
    ctx.exitCode = 1;
    return;
  }
  let domains = [...st.value.sample.domains].sort((a, b) => a.domid - b.domid).map(domainStatsFromJson);
  if (domain !== undefined) {
    if (/^[0-9]+$/.test(domain)) {
      domains = domains.filter((d) => d.domid === Number(domain));
      if (domains.length === 0) {
        ctx.err(`Error: Domain '${domain}' does not exist.\n`);
        ctx.exitCode = 1;
        return;
      }
    } else {
      domains = domains.filter((d) => d.name === domain);
      if (domains.length === 0) {
        ctx.err(`${domain} is an invalid domain identifier (rc=${ERROR_INVAL})\n`);
        ctx.exitCode = 1;
        return;
      }
    }
  }
  if (o.long === true) {
    const configs = st.value.configs;
    if (configs === undefined) {
      ctx.err(`${where.value}: this machine's status carries no domain configurations (written by an older xensim); xl list -l needs them\n`);
      ctx.exitCode = 1;
      return;
    }
    const want = new Set(domains.map((d) => d.domid));
    ctx.out(`${JSON.stringify(configs.filter((c) => want.has(c.domid)), null, 4)}\n`);
    return;
  }
  ctx.out(xlList(domains));
}

/** Registers `xensim list`. */
export function registerList(program: Command, ctx: CliContext): void {
  statusOptions(
    program
      .command('list')
      .description('print the `xl list` table of a running machine (started with `xensim boot`)')
      .argument('[domain]', 'only this domain (name or domid)')
      .option('-l, --long', 'print each domain\'s configuration as JSON, as xl list -l does'),
  ).action((domain: string | undefined, o: ListOptions) => list(ctx, domain, o));
}
