import { expect } from 'chai';
import { parseDiskSpec, parseRamSize, type DiskSpec } from '../../../cli/config/diskspec.ts';

function parse(spec: string): DiskSpec {
  const r = parseDiskSpec(spec);
  if (!r.ok) throw new Error(`${spec}: ${r.error.message}`);
  return r.value;
}
function error(spec: string): string {
  const r = parseDiskSpec(spec);
  if (r.ok) throw new Error(`${spec} parsed, expected an error`);
  return r.error.message;
}
/** The fields the man page's equivalence examples are about. */
const essence = (d: DiskSpec) => ({ target: d.target, format: d.format, vdev: d.vdev, access: d.access, devtype: d.devtype });

describe('DISKSPEC (xl-disk-configuration(5))', () => {
  it('reads the man page equivalent disk examples identically', () => {
    const want = { target: '/dev/vg/guest-volume', format: 'raw', vdev: 'hda', access: 'rw', devtype: 'disk' };
    for (const s of ['/dev/vg/guest-volume,,hda', '/dev/vg/guest-volume,raw,hda,rw', 'format=raw, vdev=hda, access=rw, target=/dev/vg/guest-volume', 'raw:/dev/vg/guest-volume,hda,w']) {
      expect(essence(parse(s)), s).to.deep.equal(want);
    }
  });

  it('reads the man page equivalent cdrom examples identically, read-only and removable', () => {
    const want = { target: '/root/image.iso', format: 'raw', vdev: 'hdc', access: 'ro', devtype: 'cdrom' };
    for (const s of ['/root/image.iso,,hdc,cdrom', '/root/image.iso,,hdc,,cdrom', '/root/image.iso,raw,hdc,devtype=cdrom', 'format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/image.iso', 'raw:/root/image.iso,hdc:cdrom,ro']) {
      const d = parse(s);
      expect(essence(d), s).to.deep.equal(want);
      expect(d.removable).to.equal(true);
      expect(d.readwrite).to.equal(false);
    }
  });

  it('takes the xend empty-cdrom syntax ,hdc:cdrom,r as an empty drive', () => {
    const d = parse(',hdc:cdrom,r');
    expect(d.target).to.equal('');
    expect(d.format).to.equal('empty');
    expect(d.devtype).to.equal('cdrom');
    expect(d.deprecated).to.include('vdev:devtype');
    expect(parse('vdev=hdc,cdrom').format).to.equal('empty');
  });

  it('assigns positional parameters in order and treats empty ones as defaults', () => {
    const d = parse('/x.img,qcow2,xvdb,ro');
    expect(essence(d)).to.deep.equal({ target: '/x.img', format: 'qcow2', vdev: 'xvdb', access: 'ro', devtype: 'disk' });
    expect(parse('/x.img,,xvdb,').access).to.equal('rw');
    expect(parse('/x.img,,xvdb,r').access).to.equal('ro');
    expect(parse('/x.img,,xvdb,w').access).to.equal('rw');
    for (const f of ['raw', 'qcow', 'qcow2', 'vhd', 'qed']) expect(parse(`/x,${f},xvda`).format).to.equal(f);
  });

  it('lets target= take the rest of the string, commas and colons included', () => {
    const d = parse('vdev=xvda, format=raw, target=/images/a,b:c.img');
    expect(d.target).to.equal('/images/a,b:c.img');
  });

  it('allows target= after an empty positional target, but not after a real one', () => {
    expect(parse(',raw,xvda,rw,target=/late').target).to.equal('/late');
    expect(error('/early,raw,xvda,target=/late')).to.equal("config parsing error in disk specification: target respecified: near `/late' in `/early,raw,xvda,target=/late'");
  });

  it('reads every keyword and flag', () => {
    const d = parse('vdev=xvdc, backend=dd1, backendtype=qdisk, script=block-iscsi, direct-io-safe, no-discard, untrusted, specification=xen, grant_usage=1, target=iqn.x');
    expect(d.backend).to.equal('dd1');
    expect(d.backendtype).to.equal('qdisk');
    expect(d.script).to.equal('block-iscsi');
    expect(d.direct_io_safe).to.equal(true);
    expect(d.discard).to.equal(false);
    expect(d.trusted).to.equal(false);
    expect(d.specification).to.equal('xen');
    expect(d.grant_usage).to.equal(true);
    expect(parse('/x,,xvda,discard,trusted').discard).to.equal(true);
    expect(parse('/x,,xvda,discard,trusted').trusted).to.equal(true);
    for (const t of ['phy', 'qdisk', 'standalone', 'tap']) expect(parse(`/x,,xvda,backendtype=${t}`).backendtype).to.equal(t);
    expect(parse('/x,,xvda').backendtype).to.equal(null);
  });

  it('strips deprecated prefixes (phy: file: tap:aio:) and reads format ones (raw: qcow2: vhd:)', () => {
    expect(parse('phy:/dev/sda1,xvda,w').target).to.equal('/dev/sda1');
    expect(parse('file:/x.img,xvda,w').target).to.equal('/x.img');
    const t = parse('tap:aio:/x.img,xvda,w');
    expect(t.target).to.equal('/x.img');
    expect(t.deprecated).to.deep.equal(['tap:', 'aio:']);
    expect(parse('tap:qcow2:/x.qcow2,xvda,w').format).to.equal('qcow2');
    expect(parse('vhd:/x.vhd,xvda,r').format).to.equal('vhd');
    expect(parse('nbd:host:1234,xvda,r').script).to.equal('block-nbd');
  });

  it('prepends /dev/ only where the block hotplug script does: a relative target on a phy backend', () => {
    const phy = parse('vdev=xvda, backendtype=phy, target=vg/guest');
    expect(phy.target).to.equal('vg/guest'); // xl keeps it verbatim (it becomes xenstore's params)
    expect(phy.physical_path).to.equal('/dev/vg/guest');
    expect(parse('vdev=xvda, backendtype=phy, target=/dev/sdb').physical_path).to.equal('/dev/sdb');
    expect(parse('phy:sda1,xvda,w').physical_path).to.equal('sda1'); // the phy: prefix is ignored, backend is automatic
    expect(parse('disk.img,,xvda').physical_path).to.equal('disk.img');
    expect(parse('vdev=xvda, backendtype=qdisk, target=disk.img').physical_path).to.equal('disk.img');
  });

  it('reads the xensim ram:SIZE target as an in-memory disk', () => {
    expect(parse('ram:64M,,xvda').ram).to.deep.equal({ size: 64 * 1024 * 1024 });
    expect(parse('vdev=xvdb, target=ram:512K').ram).to.deep.equal({ size: 512 * 1024 });
    expect(parse('ram:4096,,xvda').ram).to.deep.equal({ size: 4096 });
    expect(parse('ram:1G,raw,xvda').ram).to.deep.equal({ size: 1024 ** 3 });
    expect(parse('ram:64M,,xvda').physical_path).to.equal(null);
    expect(parse('/dev/ram0,,xvda').ram).to.equal(null);
    expect(error('ram:100,,xvda')).to.contain('multiple of 512 bytes');
    expect(error('ram:lots,,xvda')).to.contain("invalid ram disk size (expected ram:SIZE, e.g. ram:64M): near `ram:lots'");
    expect(error('ram:0,,xvda')).to.contain('invalid ram disk size');
    expect(error('ram:64M,qcow2,xvda')).to.contain('a ram disk is raw');
    expect(parseRamSize('2k')).to.equal(2048);
    expect(parseRamSize('2KiB')).to.equal(2048);
  });

  it('gives the xenstore device number of the vdev', () => {
    expect(parse('ram:1M,,xvda').devid).to.equal(51712);
    expect(parse('ram:1M,,xvdb').devid).to.equal(51728);
    expect(parse('ram:1M,,hdc').devid).to.equal(22 << 8);
  });

  it("reports xl's errors with xl's wording and the offending text", () => {
    const cases: [string, string][] = [
      ['/x,qcow3,xvda', "unknown value for format: near `qcow3'"],
      ['/x,,xvda,rx', "unknown value for access: near `rx'"],
      ['/x,,xvda,access=rx', "unknown value for access: near `rx'"],
      ['/x,,xvda,backendtype=zfs', "unknown value for backendtype: near `zfs'"],
      ['/x,,xvda,devtype=floppy', "unknown value for type: near `devtype=floppy'"],
      ['/x,,xvda,specification=scsi', "unknown value for specification: near `scsi'"],
      ['/x,,xvda,bogus=1', "unknown parameter: near `bogus=1'"],
      ['/x,,xvda,rw,extra', "too many positional parameters: near `extra'"],
      ['zip:/x,xvda', "unknown deprecated disk prefix: near `zip:/x'"],
      ['/x,,xvda,vdev=xvdb', "vdev respecified: near `xvdb'"],
      ['/x,raw,xvda,format=qcow2', "format respecified: near `qcow2'"],
      [',hdc:floppy,r', "unknown deprecated type: near `hdc:floppy'"],
      ['/x,raw', 'no vdev specified'],
      ['vdev=xvda', 'no target specified (and device not removable)'],
      ['/x,,xvdA', 'Invalid or unsupported virtual disk identifier xvdA'],
      ['/x,,xvda,=rw', "bad disk syntax: near `=rw'"],
    ];
    for (const [spec, want] of cases) {
      const m = error(spec);
      expect(m, spec).to.contain(want);
      expect(m, spec).to.match(/^config parsing error in disk specification: /);
      expect(m, spec).to.contain(`in \`${spec}'`);
    }
  });

  it('skips blanks before parameters but keeps them inside (as xl does)', () => {
    expect(parse('  /x ,  , xvda').target).to.equal('/x ');
    expect(error('/x,,xvda ')).to.contain('identifier xvda ');
  });

  it('treats flag-like words that are longer than the flag as positional parameters (flex longest match)', () => {
    expect(parse('cdromx,,xvda').target).to.equal('cdromx');
    expect(parse('ram:64M,,xvda').target).to.equal('ram:64M'); // not a deprecated prefix: a digit follows the colon
  });
});
