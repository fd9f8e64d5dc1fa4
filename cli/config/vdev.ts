/**
 * Virtual block device names (what a user writes as `vdev=` in a diskspec)
 * to the xenstore device number ("devid", the `<devid>` in
 * /local/domain/<domU>/device/vbd/<devid>) and back, as xen-vbd-interface(7)
 * specifies and libxl's libxl__device_disk_dev_number() implements:
 *
 *      1 << 28 | disk << 8 | partition      xvd, disks or partitions 16 onwards
 *     202 << 8 | disk << 4 | partition      xvd, disks and partitions up to 15
 *       8 << 8 | disk << 4 | partition      sd, disks and partitions up to 15
 *       3 << 8 | disk << 6 | partition      hd, disks 0..1, partitions 0..63
 *      22 << 8 | (disk-2) << 6 | partition  hd, disks 2..3, partitions 0..63
 *
 * So xvda = 51712, xvdb = 51728, xvda1 = 51713, xvdq = 1<<28 | 16<<8 = 268439552.
 *
 * Accepted spellings, in libxl's order of trial:
 *  1. `d<disk>p<partition>` (e.g. d536p37) and `xvd<letters>[<partition>]`;
 *  2. a bare number (decimal, 0x-hex or 0-octal, ≤ INT_MAX), written to
 *     xenstore as is ("to cope with guests which predate this specification");
 *  3. `hd<letters>[<partition>]`, `sd<letters>[<partition>]`.
 * Disk letters are bijective base 26: a..z = 0..25, aa = 26, ..., xvdtq = 536.
 * A partition number has no leading zero; 0 (the whole disk) is written as
 * no number at all.
 */
import { err, ok, type Result } from '../../shared/result.ts';

/** Majors and flags of the encodings above (Linux device numbers, xen-vbd-interface(7)). */
export const VBD_ENCODING = {
  XVD_MAJOR: 202,
  SCSI_DISK0_MAJOR: 8,
  IDE0_MAJOR: 3,
  IDE1_MAJOR: 22,
  /** Bit 28 marks the extended xvd encoding (disk << 8 | partition). */
  EXTENDED: 1 << 28,
  /** 2 << 28 onwards is reserved for future use. */
  RESERVED_FROM: 2 << 28,
} as const;

/** Limits per kind (inclusive), from libxl's device_virtdisk_matches() calls. */
export const VDEV_LIMITS = {
  xvd: { maxDisk: (1 << 20) - 1, maxPartition: 255 },
  hd: { maxDisk: 3, maxPartition: 63 },
  sd: { maxDisk: 15, maxPartition: 15 },
} as const;

const INT_MAX = 0x7fff_ffff;

export type VdevKind = 'xvd' | 'hd' | 'sd';

/** A decoded virtual device. `kind: 'number'` is a bare number given by the user. */
export type VdevInfo =
  | { readonly kind: VdevKind; readonly name: string; readonly devid: number; readonly disk: number; readonly partition: number }
  | { readonly kind: 'number'; readonly name: string; readonly devid: number };

export type VdevError =
  | { readonly kind: 'bad-vdev'; readonly vdev: string; readonly message: string }
  | { readonly kind: 'bad-devid'; readonly devid: number; readonly message: string };

/** [encodeDiskLetters n] is the bijective base-26 letters of disk n: 0 → a, 25 → z, 26 → aa, 536 → tq. */
export function encodeDiskLetters(disk: number): string {
  if (!Number.isSafeInteger(disk) || disk < 0) throw new RangeError(`disk index must be a non-negative integer, got ${disk}`);
  let s = '';
  let n = disk + 1;
  while (n > 0) {
    const r = (n - 1) % 26;
    s = String.fromCharCode(97 + r) + s;
    n = Math.floor((n - 1) / 26);
  }
  return s;
}

/**
 * Matches `<prefix><letters>[<partition>]` the way libxl's
 * device_virtdisk_matches() does, but refusing an empty letter run (libxl would
 * yield disk -1 for a bare "xvd").
 */
function matchLettered(vdev: string, prefix: VdevKind): { disk: number; partition: number } | 'no-match' | 'out-of-range' {
  if (!vdev.startsWith(prefix)) return 'no-match';
  const { maxDisk, maxPartition } = VDEV_LIMITS[prefix];
  let i = prefix.length;
  let disk = -1;
  while (i < vdev.length) {
    const c = vdev.charCodeAt(i);
    if (c < 97 || c > 122) break;
    disk = (disk + 1) * 26 + (c - 97);
    if (disk > maxDisk) return 'out-of-range';
    i++;
  }
  if (disk < 0) return 'no-match';
  const rest = vdev.slice(i);
  if (rest === '') return { disk, partition: 0 };
  if (!/^[1-9][0-9]*$/.test(rest)) return 'no-match'; // leading zeroes not permitted
  const partition = Number(rest);
  if (partition > maxPartition) return 'out-of-range';
  return { disk, partition };
}

/** strtoul(s, &ep, 0) with *ep == 0: decimal, 0x-hex or 0-octal, nothing else. */
function parseCNumber(s: string): number | null {
  if (/^0[xX][0-9a-fA-F]+$/.test(s)) return parseInt(s.slice(2), 16);
  if (/^0[0-7]*$/.test(s)) return s.length === 1 ? 0 : parseInt(s.slice(1), 8);
  if (/^[1-9][0-9]*$/.test(s)) return Number(s);
  return null;
}

function xvdDevid(disk: number, partition: number): number {
  if (disk <= 15 && partition <= 15) return (VBD_ENCODING.XVD_MAJOR << 8) | (disk << 4) | partition;
  return VBD_ENCODING.EXTENDED | (disk << 8) | partition;
}

/**
 * [vdevToDevid vdev] is the xenstore device number of a vdev name, or a
 * `bad-vdev` error whose message reads like libxl's ("Invalid or unsupported
 * virtual disk identifier xvdA").
 */
export function vdevToDevid(vdev: string): Result<VdevInfo, VdevError> {
  const bad = (why: string): Result<VdevInfo, VdevError> =>
    err({ kind: 'bad-vdev', vdev, message: `Invalid or unsupported virtual disk identifier ${vdev} (${why})` });

  const dp = /^d([0-9]+)p([0-9]+)$/.exec(vdev);
  if (dp) {
    const disk = Number(dp[1]);
    const partition = Number(dp[2]);
    if (disk >= 1 << 20 || partition >= 256) return bad('d<disk>p<partition> allows disks below 1048576 and partitions below 256');
    return ok({ kind: 'xvd', name: vdevName('xvd', disk, partition), devid: xvdDevid(disk, partition), disk, partition });
  }
  const xvd = matchLettered(vdev, 'xvd');
  if (xvd === 'out-of-range') return bad(`xvd disks go up to ${encodeDiskLetters(VDEV_LIMITS.xvd.maxDisk)} and partitions up to 255`);
  if (xvd !== 'no-match') return ok({ kind: 'xvd', name: vdev, devid: xvdDevid(xvd.disk, xvd.partition), ...xvd });

  const n = parseCNumber(vdev);
  if (n !== null) {
    if (n > INT_MAX) return bad('a numeric vdev must be at most 2147483647');
    return ok({ kind: 'number', name: vdev, devid: n });
  }

  const hd = matchLettered(vdev, 'hd');
  if (hd === 'out-of-range') return bad('hd disks are hda..hdd with partitions up to 63');
  if (hd !== 'no-match') {
    const major = hd.disk < 2 ? VBD_ENCODING.IDE0_MAJOR : VBD_ENCODING.IDE1_MAJOR;
    return ok({ kind: 'hd', name: vdev, devid: (major << 8) | ((hd.disk & 1) << 6) | hd.partition, ...hd });
  }
  const sd = matchLettered(vdev, 'sd');
  if (sd === 'out-of-range') return bad('sd disks are sda..sdp with partitions up to 15');
  if (sd !== 'no-match') {
    return ok({ kind: 'sd', name: vdev, devid: (VBD_ENCODING.SCSI_DISK0_MAJOR << 8) | (sd.disk << 4) | sd.partition, ...sd });
  }
  return bad('expected xvdX, hdX, sdX, dNpM or a device number');
}

function vdevName(kind: VdevKind, disk: number, partition: number): string {
  return `${kind}${encodeDiskLetters(disk)}${partition === 0 ? '' : String(partition)}`;
}

/**
 * [devidToVdev devid] is the canonical name of a xenstore device number:
 * the inverse of vdevToDevid for every name it accepts (bare numbers decode to
 * the name their encoding denotes). Numbers in the deprecated/reserved ranges
 * are a `bad-devid` error.
 */
export function devidToVdev(devid: number): Result<Extract<VdevInfo, { kind: VdevKind }>, VdevError> {
  const bad = (why: string): Result<Extract<VdevInfo, { kind: VdevKind }>, VdevError> =>
    err({ kind: 'bad-devid', devid, message: `device number ${devid} is not a valid vbd encoding (${why})` });
  if (!Number.isInteger(devid) || devid < 0 || devid > INT_MAX) return bad('must be an integer in 0..2147483647');
  if (devid >= VBD_ENCODING.RESERVED_FROM) return bad('2<<28 onwards is reserved');
  const mk = (kind: VdevKind, disk: number, partition: number) =>
    ok({ kind, name: vdevName(kind, disk, partition), devid, disk, partition });
  if (devid & VBD_ENCODING.EXTENDED) {
    return mk('xvd', (devid >>> 8) & 0xfffff, devid & 0xff);
  }
  const major = devid >>> 8;
  switch (major) {
    case VBD_ENCODING.XVD_MAJOR:
      return mk('xvd', (devid >>> 4) & 0xf, devid & 0xf);
    case VBD_ENCODING.SCSI_DISK0_MAJOR:
      return mk('sd', (devid >>> 4) & 0xf, devid & 0xf);
    case VBD_ENCODING.IDE0_MAJOR:
      return mk('hd', (devid >>> 6) & 1, devid & 0x3f);
    case VBD_ENCODING.IDE1_MAJOR:
      return mk('hd', 2 + ((devid >>> 6) & 1), devid & 0x3f);
    default:
      return bad('other values below 1<<28 are deprecated or reserved');
  }
}
