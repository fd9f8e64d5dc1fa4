/**
 * dom0's services on top of the guest kernel: xenstored (with its Unix socket
 * for Debian's xenstore tools) and the per-guest xenstore rings it serves.
 *
 * Introducing a guest (what XS_INTRODUCE asks of xenstored): map the guest's
 * ring page through its reserved grant (ref 1), bind to the event channel the
 * guest offered, and serve the ring from dom0's vCPU whenever it fires.
 */
import { XenStored } from './xenstore/xenstored.ts';
import { XsRingBackend } from './xenstore/ring-transport.ts';
import { XsSocketServer } from './xenstore/socket-server.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import { asDomId, asGref, type DomId, type GrantHandle, type Pfn, type Port } from '../shared/types.ts';
import { type Result, err, ok } from '../shared/result.ts';
import { GNTST_MESSAGE } from '../shared/abi/grant.ts';

interface Introduced {
  readonly ring: XsRingBackend;
  readonly pfn: Pfn;
  readonly handle: GrantHandle;
  readonly port: Port;
}

export class Dom0Services {
  readonly xenstored: XenStored;
  private socket: XsSocketServer | undefined;
  private readonly guests = new Map<number, Introduced>();

  constructor(readonly k: DomainKernel) {
    this.xenstored = new XenStored({
      onIntroduce: (domid, _mfn, port) => {
        // XS_INTRODUCE from a tool: the page is found through the reserved grant, not the mfn.
        const r = this.introduce(domid, 1, port);
        return r.ok ? undefined : 'EINVAL';
      },
      onRelease: (domid) => this.unmapGuest(domid),
    });
  }

  /** Starts listening on a Unix socket for xenstore-* tools (XENSTORED_PATH). */
  async listen(path: string): Promise<Result<string, string>> {
    const r = await XsSocketServer.listen(this.xenstored, path);
    if (!r.ok) return err(`cannot listen on ${path}: ${JSON.stringify(r.error)}`);
    this.socket = r.value;
    return ok(path);
  }
  get socketPath(): string | undefined { return this.socket?.path; }
  async close(): Promise<void> { await this.socket?.close(); }

  /** [introduce domid ref port] connects a guest's xenstore ring and marks it introduced. */
  introduce(domid: number, ref: number, remotePort: number): Result<void, string> {
    if (this.guests.has(domid)) return err(`domain ${domid} is already introduced`);
    const k = this.k;
    const pfn = k.ballooned.tryAlloc();
    if (pfn === undefined) return err('dom0 is out of ballooned pages');
    const [m] = k.gnttab.mapGrantRefs([{ domid: domid as DomId, ref: asGref(ref), readonly: false, hostPfn: pfn }]);
    if (m === undefined || m.status !== 0) {
      k.ballooned.release(pfn);
      return err(`cannot map d${domid}'s xenstore page: ${GNTST_MESSAGE[m?.status ?? -1]}`);
    }
    let port: Port;
    try {
      port = k.evtchn.bindInterdomain(domid, remotePort);
    } catch (e) {
      k.gnttab.unmapGrantRefs([{ handle: m.handle, hostPfn: pfn }]);
      k.ballooned.release(pfn);
      return err(`cannot bind d${domid}'s xenstore event channel: ${(e as Error).message}`);
    }
    const ring = new XsRingBackend(this.xenstored, asDomId(domid), k.mem.region([pfn]), () => k.evtchn.notify(port));
    k.evtchn.bind(port, () => ring.poll());
    this.guests.set(domid, { ring, pfn, handle: m.handle, port });
    const r = this.xenstored.introduceDomain(asDomId(domid));
    if (!r.ok) return err(`xenstored refused to introduce d${domid}: ${r.error}`);
    ring.poll();
    return ok(undefined);
  }

  /** [release domid] stops serving the guest (fires @releaseDomain) and unmaps its page. */
  release(domid: number): void {
    this.xenstored.releaseDomain(asDomId(domid));
    this.unmapGuest(domid);
  }

  private unmapGuest(domid: number): void {
    const g = this.guests.get(domid);
    if (g === undefined) return;
    this.guests.delete(domid);
    g.ring.close();
    this.k.evtchn.unbind(g.port);
    try { this.k.evtchn.close(g.port); } catch { /* the peer may be gone already */ }
    const [s] = this.k.gnttab.unmapGrantRefs([{ handle: g.handle, hostPfn: g.pfn }]);
    if (s === 0) this.k.ballooned.release(g.pfn);
  }

  introducedDomains(): number[] { return [...this.guests.keys()]; }
}
