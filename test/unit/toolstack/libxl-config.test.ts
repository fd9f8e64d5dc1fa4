import { expect } from 'chai';
import { libxlConfigOf } from '../../../toolstack/libxl-config.ts';

describe('libxl_domain_config JSON (xl list -l)', () => {
  it('describes disks as phy or qdisk, read-only media, and vifs with their rate', () => {
    const c = libxlConfigOf({
      name: 'g', memoryKiB: 32768, model: 'p2m', onCrash: 'restart',
      disks: [
        { vdev: 'xvda', target: 'ram:64M', physical: true },
        { vdev: 'xvdb', target: '/img/a.raw', access: 'r', physical: false },
        { vdev: 'hdc', target: 'ram:1M', devtype: 'cdrom', physical: false },
      ],
      nics: [{ devid: 0, backendDomid: 0, mac: '00:16:3e:00:00:01', bridge: 'xenbr0', mtu: 1500, ip: '10.0.0.2', rateKey: '250000,50000' }, { devid: 1, backendDomid: 0, mac: '00:16:3e:00:00:02', bridge: 'xenbr1', mtu: 9000 }],
    });
    expect(c.c_info).to.deep.equal({ type: 'pv', name: 'g', xensim_memory_model: 'p2m' });
    expect(c.b_info).to.deep.equal({ max_vcpus: 1, max_memkb: 32768, target_memkb: 32768 });
    expect(c.disks.map((d) => [d.vdev, d.backend, d.readwrite, d.is_cdrom, d.removable])).to.deep.equal([
      ['xvda', 'phy', 1, 0, 0], ['xvdb', 'qdisk', 0, 0, 0], ['hdc', 'qdisk', 0, 1, 1],
    ]);
    expect(c.nics[0]).to.deep.equal({ backend_domid: 0, devid: 0, mtu: 1500, mac: '00:16:3e:00:00:01', ip: '10.0.0.2', bridge: 'xenbr0', rate_bytes_per_interval: 250000, rate_interval_usecs: 50000, nictype: 'vif' });
    expect(c.nics[1]).to.not.have.property('rate_bytes_per_interval');
    expect(c.on_crash).to.equal('restart');
    expect(libxlConfigOf({ name: 'h', memoryKiB: 4096, model: 'vp', onCrash: 'destroy', disks: [], nics: [] }).c_info.type).to.equal('pvh');
  });
});
