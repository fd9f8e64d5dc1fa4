import { expect } from 'chai';
import { defaultVifName, parseMac, parseVifRate, parseVifSpec, randomXenMac, seededRng, type VifSpec } from '../../../cli/config/vifspec.ts';
import { unwrap } from '../../../shared/result.ts';

function vif(spec: string, index = 0, domainType: 'pv' | 'pvh' | 'hvm' = 'pv'): VifSpec {
  return unwrap(parseVifSpec(spec, { index, domainType, rng: seededRng(1) }), spec).vif;
}
function error(spec: string): string {
  const r = parseVifSpec(spec, { index: 0 });
  if (r.ok) throw new Error(`${spec} parsed, expected an error`);
  return r.error.message;
}

describe('VIFSPEC (xl-network-configuration(5))', () => {
  it("takes '' as a device with every default, its devid being its index", () => {
    const v = vif('', 3);
    expect(v.devid).to.equal(3);
    expect(v.bridge).to.equal('xenbr0');
    expect(v.mtu).to.equal(1500);
    expect(v.script).to.equal('/etc/xen/scripts/vif-bridge');
    expect(v.type).to.equal('vif');
    expect(v.vifname).to.equal(null);
    expect(v.rate).to.equal(null);
    expect(v.mac_generated).to.equal(true);
    expect(defaultVifName(5, v.devid)).to.equal('vif5.3');
  });

  it('reads the man page examples', () => {
    const a = vif('mac=00:16:3E:74:3d:76,model=rtl8139,bridge=xenbr0', 0, 'hvm');
    expect(a.mac).to.equal('00:16:3e:74:3d:76');
    expect(a.model).to.equal('rtl8139');
    expect(a.type).to.equal('ioemu');
    expect(vif('mac=00:16:3e:5f:48:e4,bridge=xenbr1').bridge).to.equal('xenbr1');
  });

  it('reads every key and flag', () => {
    const v = vif('mac=00:16:3e:00:00:0a, bridge=br-lan, gatewaydev=eth0, type=vif, vifname=web0, script=vif-route, ip=10.0.0.2 10.0.0.3, backend=netdd, devid=7, mtu=9000, untrusted');
    expect(v).to.include({ mac: '00:16:3e:00:00:0a', bridge: 'br-lan', gatewaydev: 'eth0', type: 'vif', vifname: 'web0', script: 'vif-route', ip: '10.0.0.2 10.0.0.3', backend: 'netdd', devid: 7, mtu: 9000, trusted: false });
    expect(vif('trusted').trusted).to.equal(true);
    expect(vif('devid=0x10').devid).to.equal(16);
  });

  it('generates MACs in the Xen OUI with the fourth byte below 0x80, reproducibly from a seed', () => {
    const a = randomXenMac(seededRng(9));
    expect(a).to.match(/^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/);
    expect(randomXenMac(seededRng(9))).to.equal(a);
    expect(randomXenMac(seededRng(10))).to.not.equal(a);
    for (let i = 0; i < 200; i++) expect(parseInt(randomXenMac().split(':')[3] ?? 'ff', 16)).to.be.below(0x80);
    const allZero = vif('mac=00:00:00:00:00:00');
    expect(allZero.mac_generated).to.equal(true);
    expect(allZero.mac.startsWith('00:16:3e:')).to.equal(true);
  });

  it('validates MACs', () => {
    expect(parseMac('0:16:3e:1:2:3')).to.deep.equal([0, 0x16, 0x3e, 1, 2, 3]);
    for (const bad of ['00:16:3e:00:00', '00:16:3e:00:00:00:00', '00-16-3e-00-00-01', '00:16:3e:00:00:zz', '000:16:3e:00:00:01', '']) {
      expect(error(`mac=${bad}`), bad).to.contain("Invalid parameter `mac'.");
    }
    expect(error('mac=01:00:5e:00:00:01')).to.contain('multicast');
  });

  it("rejects unknown keys and bad values in xl's words", () => {
    expect(error('bridge=xenbr0,colour=blue')).to.contain("unrecognized argument `colour=blue'");
    expect(error('mac')).to.contain("unrecognized argument `mac'");
    expect(error('type=e1000')).to.contain("Invalid parameter `type'.");
    expect(error('mtu=12')).to.contain("Invalid parameter `mtu'");
    expect(error('mtu=big')).to.contain("`big' is not a valid number");
    expect(error('devid=-1')).to.contain("Invalid parameter `devid'");
  });

  it('splits like strtok: empty pieces are skipped and only leading spaces trimmed', () => {
    expect(vif(',,bridge=br1,,').bridge).to.equal('br1');
    expect(vif('bridge=br1 ').bridge).to.equal('br1 ');
  });

  it('records keys it does not simulate, and warns about deprecated ones as xl does', () => {
    const r = unwrap(parseVifSpec('netdev=eth1,accel=x,vlan=10,colo_sock_mirror_id=1', { index: 0 }));
    expect(r.vif.gatewaydev).to.equal('eth1');
    expect(r.vif.ignored).to.deep.equal({ vlan: '10', colo_sock_mirror_id: '1' });
    expect(r.warnings).to.deep.equal(['the netdev parameter is deprecated, please use gatewaydev instead', 'the accel parameter for vifs is currently not supported']);
  });

  describe('rate', () => {
    const rate = (s: string) => unwrap(parseVifRate(s), s);
    it('converts to bytes per second and a credit interval (default 50ms)', () => {
      expect(rate('10Mb/s')).to.deep.include({ bytesPerSecond: 1_250_000, intervalUsecs: 50_000, bytesPerInterval: 62_500 });
      expect(rate('250KB/s')).to.deep.include({ bytesPerSecond: 250_000, intervalUsecs: 50_000 });
      expect(rate('1GB/s').bytesPerSecond).to.equal(1e9);
      expect(rate('8b/s').bytesPerSecond).to.equal(1);
    });
    it('gives 20000 bytes every 20000 us for 1MB/s@20ms (the man page example)', () => {
      expect(rate('1MB/s@20ms')).to.deep.include({ bytesPerSecond: 1_000_000, intervalUsecs: 20_000, bytesPerInterval: 20_000 });
    });
    it("reads intervals in ms, us and s, a bare number as seconds (xl's code)", () => {
      expect(rate('1MB/s@500us').intervalUsecs).to.equal(500);
      expect(rate('1MB/s@2s').intervalUsecs).to.equal(2_000_000);
      expect(rate('1MB/s@2').intervalUsecs).to.equal(2_000_000);
      expect(rate('1MB/s@20m').intervalUsecs).to.equal(20_000);
    });
    it("rejects bad rates with libxlu's messages", () => {
      expect(parseVifRate('10Mbit/s')).to.deep.equal({ ok: false, error: "config parsing error in vif: invalid rate in `10Mbit/s'" });
      expect(parseVifRate('@20ms')).to.deep.equal({ ok: false, error: "config parsing error in vif: no rate specified in `@20ms'" });
      expect(parseVifRate('0MB/s')).to.deep.equal({ ok: false, error: "config parsing error in vif: rate overflow in `0MB/s'" });
      expect(parseVifRate('1MB/s@20h')).to.deep.equal({ ok: false, error: "config parsing error in vif: invalid replenishment interval in `20h'" });
      expect(parseVifRate('1MB/s@5000s')).to.deep.equal({ ok: false, error: "config parsing error in vif: replenishment interval overflow in `5000s'" });
      expect(error('rate=fast')).to.contain('invalid rate');
    });
  });
});
