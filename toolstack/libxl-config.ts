/**
 * A domain's configuration as `xl list -l` prints it: libxl's
 * libxl_domain_config in its JSON form (libxl_types.idl field names), the
 * subset xensim models. The toolstack builds it from what it actually
 * created: the domain, its disks and its vifs.
 *
 *     [ { "domid": 1, "config": { "c_info": {...}, "b_info": {...}, "disks": [...], "nics": [...], "on_crash": "destroy" } } ]
 */
import type { MemoryModel } from '../shared/abi/machine.ts';

export interface LibxlDiskJson {
  readonly pdev_path: string;
  readonly vdev: string;
  /** libxl_disk_backend: phy (a DMA block controller here) or qdisk (emulated in software). */
  readonly backend: 'phy' | 'qdisk';
  readonly format: 'raw';
  readonly removable: 0 | 1;
  readonly readwrite: 0 | 1;
  readonly is_cdrom: 0 | 1;
}

export interface LibxlNicJson {
  readonly backend_domid: number;
  readonly devid: number;
  readonly mtu: number;
  readonly mac: string;
  readonly ip?: string;
  readonly bridge: string;
  /** xensim keeps xl's `rate=` as the backend key "bytes,usecs". */
  readonly rate_bytes_per_interval?: number;
  readonly rate_interval_usecs?: number;
  readonly nictype: 'vif';
}

export interface LibxlDomainConfigJson {
  readonly c_info: { readonly type: 'pv' | 'pvh'; readonly name: string; readonly xensim_memory_model: MemoryModel };
  readonly b_info: { readonly max_vcpus: 1; readonly max_memkb: number; readonly target_memkb: number };
  readonly disks: readonly LibxlDiskJson[];
  readonly nics: readonly LibxlNicJson[];
  readonly on_crash: 'destroy' | 'preserve' | 'restart';
}

export interface ConfigDisk {
  readonly vdev: string;
  readonly target: string;
  readonly access?: 'r' | 'w';
  readonly devtype?: 'disk' | 'cdrom';
  readonly physical: boolean;
}

export interface ConfigNic {
  readonly devid: number;
  readonly backendDomid: number;
  readonly mac: string;
  readonly bridge: string;
  readonly mtu: number;
  readonly ip?: string;
  readonly rateKey?: string;
}

/** [libxlConfigOf d] is the libxl_domain_config JSON of a domain the toolstack made. */
export function libxlConfigOf(d: {
  readonly name: string;
  readonly memoryKiB: number;
  readonly model: MemoryModel;
  readonly onCrash: 'destroy' | 'preserve' | 'restart';
  readonly disks: readonly ConfigDisk[];
  readonly nics: readonly ConfigNic[];
}): LibxlDomainConfigJson {
  return {
    // xensim's memory models: pm and p2m are PV domains (P==M or a guest-kept pfn→mfn list), vp is PVH.
    c_info: { type: d.model === 'vp' ? 'pvh' : 'pv', name: d.name, xensim_memory_model: d.model },
    b_info: { max_vcpus: 1, max_memkb: d.memoryKiB, target_memkb: d.memoryKiB },
    disks: d.disks.map((k) => {
      const cdrom = k.devtype === 'cdrom';
      return {
        pdev_path: k.target, vdev: k.vdev, backend: k.physical ? 'phy' : 'qdisk', format: 'raw',
        removable: cdrom ? 1 : 0, readwrite: (k.access ?? (cdrom ? 'r' : 'w')) === 'w' ? 1 : 0, is_cdrom: cdrom ? 1 : 0,
      };
    }),
    nics: d.nics.map((n) => {
      const rate = n.rateKey === undefined ? undefined : /^([0-9]+),([0-9]+)$/.exec(n.rateKey);
      return {
        backend_domid: n.backendDomid, devid: n.devid, mtu: n.mtu, mac: n.mac, ...(n.ip !== undefined ? { ip: n.ip } : {}), bridge: n.bridge,
        ...(rate ? { rate_bytes_per_interval: Number(rate[1]), rate_interval_usecs: Number(rate[2]) } : {}),
        nictype: 'vif',
      };
    }),
    on_crash: d.onCrash,
  };
}
