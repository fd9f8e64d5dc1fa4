/**
 * Branded number types for everything that names something.
 *
 * A Pfn is not an Mfn is not a BusAddr: the compiler keeps the address spaces
 * apart (cf. rust-vmm's GuestAddress). Only the module that owns a translation
 * mints the next kind: the P2M turns a Pfn into an Mfn, the IOMMU a BusAddr into
 * an Mfn. Everyone else receives them; the `as*` constructors below are for codecs
 * and for values that arrive from the wire or the command line, and they check.
 */
declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A domain id (0 = dom0; 0x7FF0.. are Xen's reserved ids). */
export type DomId = Brand<number, 'DomId'>;
/** A machine frame number: index of a frame in machine memory. */
export type Mfn = Brand<number, 'Mfn'>;
/** A pseudo-physical frame number in one domain's guest-physical space. */
export type Pfn = Brand<number, 'Pfn'>;
/** A byte address in one domain's guest-physical space (Pfn << pageShift | offset). */
export type GuestAddr = Brand<number, 'GuestAddr'>;
/** A byte address in machine memory. */
export type MachineAddr = Brand<number, 'MachineAddr'>;
/** A bus (DMA) address as a device sees it, possibly translated by the IOMMU. */
export type BusAddr = Brand<number, 'BusAddr'>;
/** A grant reference: index into the granting domain's grant table. */
export type Gref = Brand<number, 'Gref'>;
/** A grant map handle: index into the mapping domain's maptrack table. */
export type GrantHandle = Brand<number, 'GrantHandle'>;
/** An event channel port, local to one domain. */
export type Port = Brand<number, 'Port'>;

function checkU32(n: number, what: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) {
    throw new RangeError(`${what} must be an integer in 0..0xffffffff, got ${n}`);
  }
}
function checkSafe(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what} must be a non-negative safe integer, got ${n}`);
  }
}

export function asDomId(n: number): DomId {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new RangeError(`domid must be an integer in 0..65535, got ${n}`);
  return n as DomId;
}
export function asMfn(n: number): Mfn { checkU32(n, 'mfn'); return n as Mfn; }
export function asPfn(n: number): Pfn { checkU32(n, 'pfn'); return n as Pfn; }
export function asGref(n: number): Gref { checkU32(n, 'gref'); return n as Gref; }
export function asGrantHandle(n: number): GrantHandle { checkU32(n, 'grant handle'); return n as GrantHandle; }
export function asPort(n: number): Port { checkU32(n, 'port'); return n as Port; }
export function asGuestAddr(n: number): GuestAddr { checkSafe(n, 'guest address'); return n as GuestAddr; }
export function asMachineAddr(n: number): MachineAddr { checkSafe(n, 'machine address'); return n as MachineAddr; }
export function asBusAddr(n: number): BusAddr { checkSafe(n, 'bus address'); return n as BusAddr; }

/** Xen's reserved domain ids (xen.h). */
export const DOMID_FIRST_RESERVED = 0x7ff0 as DomId;
export const DOMID_SELF = 0x7ff0 as DomId;
export const DOMID_IO = 0x7ff1 as DomId;
export const DOMID_XEN = 0x7ff2 as DomId;
export const DOMID_COW = 0x7ff3 as DomId;
export const DOMID_INVALID = 0x7ff4 as DomId;
export const DOMID_IDLE = 0x7fff as DomId;
/** Owner value of a frame nobody owns (free). Not a Xen id: our frame table's "free". */
export const DOMID_FREE = 0xffff as DomId;

export const dom0 = 0 as DomId;
