/**
 * The checkers' view of xenstored, taken from the daemon itself (it lives
 * beside dom0's code: in the deterministic world, or in dom0's worker):
 * every guest's node, watch and transaction counts against the nominal
 * quotas, the tree's own consistency check, and probes that read each
 * guest's private node as every other guest (through a connection of the
 * reading domain, so its permissions apply).
 */
import { XS } from '../shared/abi/xenstore.ts';
import { asDomId } from '../shared/types.ts';
import type { XenStored, XsConnection } from '../dom0/xenstore/xenstored.ts';
import type { QuotaSpec } from './config.ts';
import type { XenstoreView } from './view.ts';
import { SECRET_KEY } from './xs-work.ts';

const latin1 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));

/** Probe connections, one per guest, reused between views and remade when the daemon closed them. */
export class XsProber {
  private readonly conns = new Map<number, XsConnection>();

  constructor(private readonly d: XenStored) {}

  private conn(domid: number): XsConnection {
    let c = this.conns.get(domid);
    if (c === undefined || c.closed) {
      c = this.d.connect(asDomId(domid), { label: `stress probe d${domid}` });
      this.conns.set(domid, c);
    }
    return c;
  }

  /** Forgets a guest that went away (its connections were closed by the release). */
  forget(domid: number): void {
    const c = this.conns.get(domid);
    this.conns.delete(domid);
    if (c !== undefined && !c.closed) this.d.disconnect(c, 'probe done');
  }

  /** [view guests nominal] is the XenStore view for the live, introduced guests. */
  view(guests: readonly number[], nominal: Pick<QuotaSpec, 'nodes' | 'watches' | 'transactions'>): XenstoreView {
    const d = this.d;
    const probeConns = new Set(this.conns.values());
    const perDomain = guests.map((domid) => {
      let watches = 0;
      let transactions = 0;
      for (const c of d.connections) if (c.caller.domid === domid && !probeConns.has(c)) { watches += c.watches.size; transactions += c.transactions.size; }
      return { domid, nodes: d.store.ownedNodes(asDomId(domid)), watches, transactions };
    });
    const probeLeaks: string[] = [];
    let probes = 0;
    for (const a of guests) {
      const conn = this.conn(a);
      for (const b of guests) {
        if (a === b) continue;
        for (const [type, path] of [[XS.READ, `/local/domain/${b}/${SECRET_KEY}`], [XS.DIRECTORY, `/local/domain/${b}/data`]] as const) {
          probes++;
          const h = d.handle(conn, { type, reqId: 1, txId: 0, payload: latin1(`${path}\0`) });
          if (h.reply.type !== XS.ERROR) probeLeaks.push(`d${a} ${type === XS.READ ? 'read' : 'listed'} ${path}`);
        }
      }
    }
    return { nominal: { nodes: nominal.nodes, watches: nominal.watches, transactions: nominal.transactions }, perDomain, integrity: d.store.check(), probeLeaks, probes };
  }
}
