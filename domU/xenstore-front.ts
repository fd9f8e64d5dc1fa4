/**
 * A guest's XenStore connection, set up as Xen's domain builder does it: one
 * page of the guest's RAM is the `xenstore_domain_interface`, granted to dom0
 * at the reserved grant reference 1 (GNTTAB_RESERVED_XENSTORE), with an
 * unbound event channel offered to dom0. The toolstack hands both to dom0's
 * xenstored (XS_INTRODUCE), which maps the page and binds the port.
 */
import { XsClient } from './kernel/xs-client.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import { asGref, type DomId, type Pfn, type Port } from '../shared/types.ts';

/** GNTTAB_RESERVED_XENSTORE (grant_table.h). */
export const GNTTAB_RESERVED_XENSTORE = 1;

export interface StoreInfo {
  /** The grant reference of the ring page (always 1). */
  readonly ref: number;
  /** The port dom0 binds to. */
  readonly port: number;
  readonly pfn: number;
}

export class XenstoreFront {
  readonly client: XsClient;
  readonly info: StoreInfo;

  constructor(private readonly k: DomainKernel, backendDom = 0 as DomId) {
    const pfn: Pfn = k.ram.alloc();
    k.mem.fill(k.gpa(pfn), k.pageSize, 0);
    k.gnttab.grantForeignAccessRef(asGref(GNTTAB_RESERVED_XENSTORE), backendDom, pfn, false);
    const port: Port = k.evtchn.allocUnbound(backendDom);
    this.client = new XsClient(k.mem.region([pfn]), () => k.evtchn.notify(port));
    k.evtchn.bind(port, () => this.client.poll());
    this.info = { ref: GNTTAB_RESERVED_XENSTORE, port, pfn };
  }
}
