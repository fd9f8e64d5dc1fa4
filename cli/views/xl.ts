/**
 * `xl list`, `xl block-list` and `xl network-list`, byte for byte.
 *
 * Format strings are those of the xl sources (Xen 4.17, tools/xl/):
 * - xl_info.c, list_domains(): the list header and row.
 * - xl_block.c, main_blocklist(): the block-list header and row.
 * - xl_nic.c, main_networklist(): the network-list header, row, and
 *   libxl.h's LIBXL_MAC_FMT for the MAC.
 * Each line ends with "\n" as the tool's printf/putchar does.
 */
import { InvariantError } from '../../shared/invariant.ts';
import { macToBytes, parseMac } from '../../shared/net/ethernet.ts';
import { cFloat, sprintf } from './printf.ts';
import { SHUTDOWN_REASON, u64, type DiskInfo, type DomainState, type DomainStats, type NicInfo } from './stats.ts';

/** xl_info.c list_domains(): the header, with literal tabs before State and Time(s). */
export const XL_LIST_HEADER = 'Name                                        ID   Mem VCPUs\tState\tTime(s)';
/** xl_info.c list_domains(): the row format. */
export const XL_LIST_ROW = '%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f';
/** xl_info.c: the 5th state letter is indexed by the shutdown reason (poweroff prints '-'). */
const SHUTDOWN_REASON_LETTERS = '-rscwS';

/**
 * [xlStateFlags s] is xl list's State column: r b p s <reason> d, '-' for
 * each flag not set. The 5th letter is the shutdown reason's ('c' for a
 * crash, 'w' watchdog, 'r' reboot, 's' suspend, 'S' soft reset, '-'
 * poweroff or not shut down, '?' unknown).
 */
export function xlStateFlags(s: DomainState): string {
  let reasonLetter = '-';
  if (s.shutdown !== null) {
    reasonLetter = s.shutdown === 'unknown' ? '?' : (SHUTDOWN_REASON_LETTERS[SHUTDOWN_REASON[s.shutdown]] ?? '?');
  }
  return (s.running ? 'r' : '-') + (s.blocked ? 'b' : '-') + (s.paused ? 'p' : '-') +
    (s.shutdown !== null ? 's' : '-') + reasonLetter + (s.dying ? 'd' : '-');
}

/** [xlListRow d] is one row of `xl list`, without the newline. */
export function xlListRow(d: DomainStats): string {
  const memMiB = (u64(d.memKiB) + u64(d.outstandingKiB ?? 0)) / 1024n; // (unsigned long)((current + outstanding) / 1024)
  const seconds = cFloat(u64(d.cpuNs)) / 1e9; // ((float)cpu_time / 1e9): float first, then a double division
  const f = xlStateFlags(d.state);
  return sprintf(XL_LIST_ROW, d.name, d.domid, memMiB, d.vcpusOnline, ...f.split(''), seconds);
}

/** [xlList domains] is `xl list` for these domains, in the order given (libxl lists by domid). */
export function xlList(domains: readonly DomainStats[]): string {
  return [XL_LIST_HEADER, ...domains.map(xlListRow)].map((l) => l + '\n').join('');
}

/** xl_block.c main_blocklist(). */
const BLOCK_LIST_HEADER_FMT = '%-5s %-3s %-6s %-5s %-6s %-8s %-30s\n';
const BLOCK_LIST_ROW_FMT = '%-5d %-3d %-6d %-5d %-6d %-8d %-30s\n';

/** [xlBlockList disks] is `xl block-list` over the disks of the domains asked for (one header for all). */
export function xlBlockList(disks: readonly DiskInfo[]): string {
  let out = sprintf(BLOCK_LIST_HEADER_FMT, 'Vdev', 'BE', 'handle', 'state', 'evt-ch', 'ring-ref', 'BE-path');
  for (const d of disks) {
    out += sprintf(BLOCK_LIST_ROW_FMT, d.devid, d.backendId, d.frontendId, d.state, d.evtch, d.rref, d.backend);
  }
  return out;
}

/** xl_nic.c main_networklist(); LIBXL_MAC_FMT from libxl.h. */
const NETWORK_LIST_HEADER_FMT = '%-3s %-2s %-17s %-6s %-5s %-6s %5s/%-5s %-30s\n';
const LIBXL_MAC_FMT = '%02hhx:%02hhx:%02hhx:%02hhx:%02hhx:%02hhx';

/** [xlNetworkList nics] is `xl network-list` (the handle column repeats the devid, as xl does). */
export function xlNetworkList(nics: readonly NicInfo[]): string {
  let out = sprintf(NETWORK_LIST_HEADER_FMT, 'Idx', 'BE', 'Mac Addr.', 'handle', 'state', 'evt-ch', 'tx-', 'rx-ring-ref', 'BE-path');
  for (const n of nics) {
    const mac = parseMac(n.mac);
    if (!mac.ok) throw new InvariantError(`network-list: nic ${n.devid} has no valid MAC: ${n.mac}`);
    out += sprintf('%-3d %-2d ', n.devid, n.backendId);
    out += sprintf(LIBXL_MAC_FMT, ...macToBytes(mac.value));
    out += sprintf('%6d %5d %6d %5d/%-11d %-30s\n', n.devid, n.state, n.evtch, n.rrefTx, n.rrefRx, n.backend);
  }
  return out;
}
