/**
 * How netback's interfaces appear in dom0's network: their names (vifD.N, as
 * xl's default vifname and Linux netback's register_netdev), the dummy MAC
 * every vif carries (FE:FF:FF:FF:FF:FF: the bridge then never adopts a
 * vif's address as its own, as Linux netback and MirageOS netback do), and
 * the set of bridges the vif-bridge hotplug script plugs vifs into by name.
 */
import { Bridge, type BridgeOptions } from './bridge.ts';
import type { PacketPool } from './packet.ts';

/** The MAC of every netback vif (Linux netback's dummy address). */
export const VIF_DUMMY_MAC = 'fe:ff:ff:ff:ff:ff';

/** [vifName domid devid] is vif<domid>.<devid>. */
export function vifName(domid: number, devid: number): string {
  return `vif${domid}.${devid}`;
}

/** [parseVifName name] is the (domid, devid) of a vifD.N name, or undefined. */
export function parseVifName(name: string): { domid: number; devid: number } | undefined {
  const m = /^vif([0-9]{1,5})\.([0-9]{1,10})$/.exec(name);
  if (m === null) return undefined;
  return { domid: Number(m[1]), devid: Number(m[2]) };
}

/** dom0's bridges by name (xenbr0, …): what `brctl addbr` made. */
export class BridgeSet {
  private readonly bridges = new Map<string, Bridge>();
  constructor(private readonly pool: PacketPool, private readonly opts: BridgeOptions = {}) {}

  /** [get name] is the bridge called name, if it exists. */
  get(name: string): Bridge | undefined { return this.bridges.get(name); }

  /** [ensure name] is the bridge called name, made if needed. */
  ensure(name: string): Bridge {
    let b = this.bridges.get(name);
    if (b === undefined) {
      b = new Bridge(name, this.pool, this.opts);
      this.bridges.set(name, b);
    }
    return b;
  }

  get names(): string[] { return [...this.bridges.keys()]; }
}
