import { expect } from 'chai';
import fc from 'fast-check';
import {
  ARPOP_REQUEST, ArpHdr, BROADCAST_MAC, ETH_P_ARP, ETH_P_IP, EthHdr, IPPROTO_UDP, Ipv4Hdr, UdpHdr,
  buildArpRequest, buildEthernet, buildIpv4Header, buildUdpFrame, formatIpv4, internetChecksum, isMulticastMac,
  macFromBytes, macToBytes, parseEthernet, parseIpv4, parseIpv4Packet, parseMac, xenMac, type Ipv4Addr, type MacAddr,
} from '../../../shared/net/ethernet.ts';
import { unwrap } from '../../../shared/result.ts';

const ip = (s: string): Ipv4Addr => unwrap(parseIpv4(s));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('MAC addresses', () => {
  it('parses either separator and any case into one canonical lowercase form', () => {
    expect(unwrap(parseMac('00:16:3E:0A:0b:FF'))).to.equal('00:16:3e:0a:0b:ff');
    expect(unwrap(parseMac('00-16-3e-0a-0b-ff'))).to.equal('00:16:3e:0a:0b:ff');
    for (const bad of ['00:16:3e:0a:0b', '00:16:3e:0a:0b:0c:0d', '00:16-3e:0a:0b:0c', '0:16:3e:0a:0b:0c', 'zz:16:3e:0a:0b:0c', '']) {
      expect(parseMac(bad), bad).to.deep.equal({ ok: false, error: { kind: 'bad-mac', text: bad } });
    }
  });

  it('round-trips through bytes and builds Xen-OUI addresses', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (b) => {
      expect(macToBytes(macFromBytes(b))).to.deep.equal(b);
    }));
    expect(xenMac(1)).to.equal('00:16:3e:00:00:01');
    expect(xenMac(0xabcdef)).to.equal('00:16:3e:ab:cd:ef');
    expect(() => xenMac(1 << 24)).to.throw(RangeError);
    expect(isMulticastMac(BROADCAST_MAC)).to.equal(true);
    expect(isMulticastMac(xenMac(7))).to.equal(false);
    expect(isMulticastMac('01:00:5e:00:00:01' as MacAddr)).to.equal(true);
  });
});

describe('IPv4 addresses', () => {
  it('parses strict dotted quads only', () => {
    expect(unwrap(parseIpv4('10.0.0.1'))).to.equal(0x0a000001);
    expect(unwrap(parseIpv4('255.255.255.255'))).to.equal(0xffffffff);
    expect(formatIpv4(ip('192.168.100.7'))).to.equal('192.168.100.7');
    for (const bad of ['10.0.0', '10.0.0.256', '010.0.0.1', '10.0.0.1.2', '1e1.0.0.1', ' 10.0.0.1']) {
      expect(parseIpv4(bad).ok, bad).to.equal(false);
    }
  });
});

describe('Ethernet II', () => {
  it('builds header then payload and parses it back', () => {
    const f = buildEthernet(xenMac(2), xenMac(1), ETH_P_IP, Uint8Array.of(1, 2, 3));
    expect(hex(f)).to.equal('00163e000002' + '00163e000001' + '0800' + '010203');
    const p = unwrap(parseEthernet(f));
    expect(p).to.deep.include({ dst: '00:16:3e:00:00:02', src: '00:16:3e:00:00:01', ethertype: ETH_P_IP });
    expect(p.payload).to.deep.equal(Uint8Array.of(1, 2, 3));
    expect(parseEthernet(new Uint8Array(13))).to.deep.equal({ ok: false, error: { kind: 'short-frame', len: 13, need: EthHdr.SIZE } });
  });
});

describe('IPv4 header and checksum', () => {
  it('computes the RFC 1071 example checksum', () => {
    // RFC 1071 §3: words 0001 f203 f4f5 f6f7 sum to 0xddf2 (ones' complement), checksum = ~sum.
    expect(internetChecksum(Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7))).to.equal(~0xddf2 & 0xffff);
    expect(internetChecksum(Uint8Array.of(0xff), 0, 1)).to.equal(0x00ff); // odd byte padded with zero
  });

  it('matches a known-good header byte for byte (Wikipedia IPv4 checksum example)', () => {
    const h = buildIpv4Header({ src: ip('192.168.0.1'), dst: ip('192.168.0.199'), protocol: IPPROTO_UDP, payloadLength: 0x73 - 20, ttl: 64, dontFragment: true });
    expect(hex(h)).to.equal('45000073' + '00004000' + '4011' + 'b861' + 'c0a80001' + 'c0a800c7');
    expect(unwrap(parseIpv4Packet(Uint8Array.of(...h, ...new Uint8Array(0x73 - 20)))).checksumOk).to.equal(true);
  });

  it('makes every header sum to zero, and notices a flipped bit', () => {
    fc.assert(fc.property(fc.nat(0xffffffff), fc.nat(0xffffffff), fc.nat(1480), fc.nat(255), fc.nat(0xffff), (s, d, len, ttl, id) => {
      const h = buildIpv4Header({ src: s as Ipv4Addr, dst: d as Ipv4Addr, protocol: IPPROTO_UDP, payloadLength: len, ttl, id });
      expect(internetChecksum(h)).to.equal(0);
      const bad = h.slice();
      bad[Ipv4Hdr.ttl] = ((bad[Ipv4Hdr.ttl] as number) ^ 0x01);
      expect(internetChecksum(bad)).to.not.equal(0);
    }));
  });

  it('refuses to parse what is not a whole IPv4 packet', () => {
    expect(parseIpv4Packet(new Uint8Array(19))).to.deep.include({ ok: false });
    const h = buildIpv4Header({ src: ip('10.0.0.1'), dst: ip('10.0.0.2'), protocol: 17, payloadLength: 10 });
    expect(parseIpv4Packet(h)).to.deep.equal({ ok: false, error: { kind: 'short-packet', len: 20, need: 30 } });
    const v6 = h.slice();
    v6[0] = 0x65;
    expect(parseIpv4Packet(v6)).to.deep.equal({ ok: false, error: { kind: 'not-ipv4', version: 6 } });
  });
});

describe('UDP frame', () => {
  it('builds Ethernet/IPv4/UDP with the lengths and a UDP checksum that verifies', () => {
    const payload = new TextEncoder().encode('hello from domU 1');
    const f = buildUdpFrame({ srcMac: xenMac(1), dstMac: xenMac(2), srcIp: ip('10.0.0.2'), dstIp: ip('10.0.0.3'), srcPort: 40000, dstPort: 9, payload });
    expect(f.length).to.equal(14 + 20 + 8 + 17);
    const eth = unwrap(parseEthernet(f));
    const pkt = unwrap(parseIpv4Packet(eth.payload));
    expect(pkt).to.deep.include({ protocol: IPPROTO_UDP, totalLength: 45, checksumOk: true });
    const udp = pkt.payload;
    expect((udp[UdpHdr.srcPort] as number) << 8 | (udp[UdpHdr.srcPort + 1] as number)).to.equal(40000);
    expect((udp[UdpHdr.length] as number) << 8 | (udp[UdpHdr.length + 1] as number)).to.equal(25);
    // Verify the UDP checksum the receiver's way: pseudo-header + segment sums to 0xffff (checksum 0).
    const pseudo = (0x0a00 + 0x0002) + (0x0a00 + 0x0003) + IPPROTO_UDP + udp.length;
    expect(internetChecksum(udp, 0, udp.length, pseudo)).to.equal(0);
  });
});

describe('ARP request', () => {
  it('is the 42-byte broadcast "who has" with an all-zero target MAC', () => {
    const f = buildArpRequest(xenMac(1), ip('10.0.0.2'), ip('10.0.0.1'));
    expect(f.length).to.equal(42);
    const eth = unwrap(parseEthernet(f));
    expect(eth).to.deep.include({ dst: BROADCAST_MAC, src: '00:16:3e:00:00:01', ethertype: ETH_P_ARP });
    expect(hex(eth.payload)).to.equal(
      '0001' + '0800' + '06' + '04' + '0001' + '00163e000001' + '0a000002' + '000000000000' + '0a000001',
    );
    expect(eth.payload[ArpHdr.oper + 1]).to.equal(ARPOP_REQUEST);
  });
});
