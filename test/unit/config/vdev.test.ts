import { expect } from 'chai';
import fc from 'fast-check';
import { devidToVdev, encodeDiskLetters, vdevToDevid } from '../../../cli/config/vdev.ts';
import { unwrap } from '../../../shared/result.ts';

const devid = (v: string): number => unwrap(vdevToDevid(v), v).devid;
const name = (d: number): string => unwrap(devidToVdev(d), String(d)).name;

describe('vdev names and xenstore device numbers (xen-vbd-interface(7))', () => {
  it('encodes xvd disks 0..15 as 202<<8 | disk<<4 | partition', () => {
    expect(devid('xvda')).to.equal(51712);
    expect(devid('xvdb')).to.equal(51728);
    expect(devid('xvda1')).to.equal(51713);
    expect(devid('xvdb15')).to.equal((202 << 8) | (1 << 4) | 15);
    expect(devid('xvdp')).to.equal((202 << 8) | (15 << 4));
  });

  it('switches to 1<<28 | disk<<8 | partition for disk 16 on, and for partitions above 15', () => {
    expect(devid('xvdq')).to.equal((1 << 28) | (16 << 8));
    expect(devid('xvdz')).to.equal((1 << 28) | (25 << 8));
    expect(devid('xvda16')).to.equal((1 << 28) | 16);
    expect(devid('xvdb255')).to.equal((1 << 28) | (1 << 8) | 255);
  });

  it('reads multi-letter disk names as bijective base 26 (xvdaa = 26, xvdtq = 536)', () => {
    expect(devid('xvdaa')).to.equal((1 << 28) | (26 << 8));
    expect(devid('xvdaz')).to.equal((1 << 28) | (51 << 8));
    expect(devid('xvdba')).to.equal((1 << 28) | (52 << 8));
    expect(devid('xvdtq37')).to.equal((1 << 28) | (536 << 8) | 37);
    expect(encodeDiskLetters(0)).to.equal('a');
    expect(encodeDiskLetters(25)).to.equal('z');
    expect(encodeDiskLetters(26)).to.equal('aa');
    expect(encodeDiskLetters(702)).to.equal('aaa');
  });

  it('accepts the dNpM spelling and agrees with the lettered one', () => {
    expect(devid('d0p0')).to.equal(devid('xvda'));
    expect(devid('d1p2')).to.equal(devid('xvdb2'));
    expect(devid('d536p37')).to.equal(devid('xvdtq37'));
  });

  it('encodes sd as 8<<8 | disk<<4 | partition and hd as 3<<8 / 22<<8 with disk<<6', () => {
    expect(devid('sda')).to.equal(8 << 8);
    expect(devid('sdb3')).to.equal((8 << 8) | (1 << 4) | 3);
    expect(devid('hda')).to.equal(3 << 8);
    expect(devid('hdb')).to.equal((3 << 8) | (1 << 6));
    expect(devid('hdc')).to.equal(22 << 8);
    expect(devid('hdc2')).to.equal((22 << 8) | 2);
    expect(devid('hdd63')).to.equal((22 << 8) | (1 << 6) | 63);
  });

  it('takes a bare decimal, hex or octal number as the device number itself', () => {
    expect(devid('51712')).to.equal(51712);
    expect(devid('0xca00')).to.equal(51712);
    expect(devid('0145000')).to.equal(51712);
  });

  it('rejects names outside each encoding, with the offending name in the message', () => {
    for (const bad of ['xvd', 'xvdA', 'xvda0', 'xvda01', 'xvda256', 'hde', 'hda64', 'sdq', 'sda16', 'vda', '', '/dev/xvda', 'd0p256', '2147483648']) {
      const r = vdevToDevid(bad);
      expect(r.ok, bad).to.equal(false);
      if (!r.ok) expect(r.error.message).to.contain(`identifier ${bad}`);
    }
  });

  it('names device numbers back, including the extended and IDE encodings', () => {
    expect(name(51712)).to.equal('xvda');
    expect(name(51713)).to.equal('xvda1');
    expect(name((1 << 28) | (536 << 8) | 37)).to.equal('xvdtq37');
    expect(name((22 << 8) | (1 << 6) | 5)).to.equal('hdd5');
    expect(name((8 << 8) | (2 << 4))).to.equal('sdc');
    expect(devidToVdev(4 << 8).ok).to.equal(false); // deprecated / reserved range
    expect(devidToVdev(2 << 28).ok).to.equal(false);
    expect(devidToVdev(-1).ok).to.equal(false);
  });

  it('round-trips every xvd disk and partition through name → number → name', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: (1 << 20) - 1 }), fc.integer({ min: 0, max: 255 }), (disk, part) => {
        const n = `xvd${encodeDiskLetters(disk)}${part === 0 ? '' : part}`;
        const d = devid(n);
        expect(name(d)).to.equal(n);
        const info = unwrap(devidToVdev(d));
        expect(info.disk).to.equal(disk);
        expect(info.partition).to.equal(part);
      }),
      { seed: 42, numRuns: 500 },
    );
  });

  it('round-trips every hd and sd name', () => {
    for (let disk = 0; disk < 4; disk++) for (let p = 0; p < 64; p++) {
      const n = `hd${encodeDiskLetters(disk)}${p === 0 ? '' : p}`;
      expect(name(devid(n))).to.equal(n);
    }
    for (let disk = 0; disk < 16; disk++) for (let p = 0; p < 16; p++) {
      const n = `sd${encodeDiskLetters(disk)}${p === 0 ? '' : p}`;
      expect(name(devid(n))).to.equal(n);
    }
  });
});
