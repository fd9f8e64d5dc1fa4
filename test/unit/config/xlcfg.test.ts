import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { seededRng } from '../../../cli/config/vifspec.ts';
import { parseXlCfg, parseXlCfgSettings, readXlCfgFile, type CfgError, type ParsedDomainConfig } from '../../../cli/config/xlcfg.ts';

const EXAMPLES = join(import.meta.dirname, '../../../examples');

function parse(text: string): ParsedDomainConfig {
  const r = parseXlCfg(text, { source: 't.cfg', rng: seededRng(3) });
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}
function failure(text: string): CfgError {
  const r = parseXlCfg(text, { source: 't.cfg' });
  if (r.ok) throw new Error(`parsed, expected an error:\n${text}`);
  return r.error;
}
const N = 'name = "g"\n';

describe('xl.cfg files (xl.cfg(5))', () => {
  describe('the grammar', () => {
    it('reads KEY=VALUE lines and ;-separated pairs alike', () => {
      const a = parse('name="h0"\ntype="hvm"\n').config;
      const b = parse('name="h0"; type="hvm"').config;
      expect(a.name).to.equal('h0');
      expect(a.type).to.equal('hvm');
      expect(b).to.deep.equal(a);
    });

    it('needs no terminator after the last setting, and ignores blank lines, ; runs and comments', () => {
      const c = parse('\n\n# a comment\n;;\nname = "x"  # trailing comment\n\nmemory = 64 ; vcpus = 2\n# last comment without newline').config;
      expect(c).to.include({ name: 'x', memory: 64, vcpus: 2 });
    });

    it('reads single- and double-quoted strings with escapes', () => {
      const s = parseXlCfgSettings(`a = 'it\\'s'\nb = "q\\"\\\\\\t\\n"\nc = "\\x41\\101"\nd = ''`, 't');
      expect(s.ok).to.equal(true);
      if (!s.ok) return;
      const v = Object.fromEntries(s.value.map((x) => [x.name, x.value.kind === 'atom' ? x.value.text : null]));
      expect(v).to.deep.equal({ a: "it's", b: 'q"\\\t\n', c: 'AA', d: '' });
    });

    it('reads NUMBER as decimal, 0-octal or 0x-hex, and numeric strings as numbers', () => {
      expect(parse(`${N}memory = 512`).config.memory).to.equal(512);
      expect(parse(`${N}memory = 0x200`).config.memory).to.equal(512);
      expect(parse(`${N}memory = 01000`).config.memory).to.equal(512);
      expect(parse(`${N}memory = "512"`).config.memory).to.equal(512);
      expect(parse('name = 42').config.name).to.equal('42'); // an atom is an atom
    });

    it('reads BOOLEANs as numbers: 0 false, anything else true', () => {
      expect(parse(`${N}driver_domain = 0`).config.driver_domain).to.equal(false);
      expect(parse(`${N}driver_domain = 1`).config.driver_domain).to.equal(true);
      expect(parse(`${N}driver_domain = 7`).config.driver_domain).to.equal(true);
      expect(parse(N).config.driver_domain).to.equal(false);
    });

    it('reads lists across lines, with a trailing comma, empty, and nested', () => {
      const s = parseXlCfgSettings("l = [\n  'a',\n  [1, [2]],\n  \"c\",\n]\ne = []\n", 't');
      if (!s.ok) throw new Error(s.error.message);
      const [l, e] = s.value;
      expect(l?.value.kind).to.equal('list');
      if (l?.value.kind !== 'list' || e?.value.kind !== 'list') return;
      expect(l.value.items.map((i) => i.kind)).to.deep.equal(['atom', 'list', 'atom']);
      expect(e.value.items).to.have.length(0);
      expect(parse(`${N}vnuma = [ ["pnode=0","size=512"], ["pnode=1","size=512"] ]`).config.other['vnuma']).to.deep.equal([['pnode=0', 'size=512'], ['pnode=1', 'size=512']]);
    });

    it('lets a later setting override an earlier one, and += append to strings and lists', () => {
      const c = parse(`${N}memory = 64\nmemory = 96\nextra = "a"\nextra += " b"\ndisk = ['ram:1M,,xvda']\ndisk += ['ram:1M,,xvdb']`).config;
      expect(c.memory).to.equal(96);
      expect(c.other['extra']).to.equal('a b');
      expect(c.disk.map((d) => d.vdev)).to.deep.equal(['xvda', 'xvdb']);
    });

    it('records line and column of every value', () => {
      const s = parseXlCfgSettings('\n  memory = 5\nvif = [ "",\n   "bridge=x" ]', 't');
      if (!s.ok) throw new Error(s.error.message);
      expect(s.value[0]).to.deep.include({ name: 'memory', line: 2, column: 3 });
      expect(s.value[0]?.value).to.deep.include({ line: 2, column: 12 });
      const vif = s.value[1]?.value;
      if (vif?.kind !== 'list') throw new Error('list expected');
      expect(vif.items[1]).to.deep.include({ line: 4, column: 4 });
    });
  });

  describe('syntax errors: file:line:column, xl wording, the offending text', () => {
    const cases: [string, string][] = [
      ['name = "x"\nmemory 64\n', "t.cfg:2:8: config parsing error near `64': syntax error, unexpected NUMBER, expecting '=' or \"+=\""],
      ['name = "x" memory = 1', "t.cfg:1:12: config parsing error near `memory': syntax error, unexpected IDENT, expecting NEWLINE or ';'"],
      ['name =\n', 't.cfg:1:7: config parsing error near <newline>: syntax error, unexpected NEWLINE, expecting STRING or NUMBER or \'[\''],
      ['disk = [ "a" "b" ]', "t.cfg:1:14: config parsing error near `\"b\"': syntax error, unexpected STRING, expecting ',' or ']'"],
      ['disk = [ "a",', "t.cfg:1:14: config parsing error near <end of file>: syntax error, unexpected end of file, expecting STRING or NUMBER or '[' or ']'"],
      ['= 5', "t.cfg:1:1: config parsing error near `=': syntax error, unexpected '=', expecting IDENT or NEWLINE or ';'"],
      ['Name = "x"', 't.cfg:1:1: config parsing error near `Name\': lexical error (keys are lower case)'],
      ['name = "x', 't.cfg:1:8: config parsing error near `"x\': lexical error (unterminated string'],
      ['name = "x"\r\n', 't.cfg:1:11: config parsing error near `\\r\': lexical error (carriage return'],
      ['name = "\\q"', 'invalid character after backlash in quoted string'],
    ];
    for (const [text, want] of cases) {
      it(`reports ${JSON.stringify(text)}`, () => {
        expect(failure(text).message).to.contain(want);
      });
    }

    it('adds the Python hint when the file looks like Python', () => {
      const e = failure('memory = int(64)');
      expect(e.message).to.contain("near `(64)': lexical error");
      expect(e.message).to.contain('warning: Config file looks like it contains Python code.');
    });

    it("refuses += between a list and a string (xl's message)", () => {
      expect(failure(`${N}extra = "a"\nextra += ["b"]`).message).to.contain('can\'t add [list] to "string" or vice versa');
    });
  });

  describe('reading the settings into a DomainConfig', () => {
    it("applies xl's defaults", () => {
      const c = parse(N).config;
      expect(c).to.deep.include({
        type: 'pv', memory: 32, maxmem: 32, vcpus: 1, maxvcpus: 1, on_poweroff: 'destroy', on_reboot: 'restart', on_crash: 'destroy',
        on_watchdog: 'destroy', on_soft_reset: 'soft-reset', uuid: null, memory_model: 'p2m', driver_domain: false,
        max_grant_frames: null, max_maptrack_frames: null,
      });
      expect(c.disk).to.deep.equal([]);
      expect(c.vif).to.deep.equal([]);
    });

    it('defaults maxmem to memory, memory to maxmem, and maxvcpus to vcpus', () => {
      expect(parse(`${N}memory = 100`).config.maxmem).to.equal(100);
      expect(parse(`${N}maxmem = 100`).config.memory).to.equal(100);
      expect(parse(`${N}memory = 100\nmaxmem = 200`).config).to.include({ memory: 100, maxmem: 200 });
      expect(parse(`${N}vcpus = 3`).config.maxvcpus).to.equal(3);
    });

    it('defaults memory_model to p2m for pv and vp for pvh and hvm, and reads it when given', () => {
      expect(parse(`${N}type = "pv"`).config.memory_model).to.equal('p2m');
      expect(parse(`${N}type = "pvh"`).config.memory_model).to.equal('vp');
      expect(parse(`${N}type = "hvm"`).config.memory_model).to.equal('vp');
      for (const m of ['pm', 'p2m', 'vp']) expect(parse(`${N}memory_model = "${m}"`).config.memory_model).to.equal(m);
    });

    it('reads every shutdown action', () => {
      for (const a of ['destroy', 'restart', 'rename-restart', 'preserve', 'coredump-destroy', 'coredump-restart', 'soft-reset']) {
        expect(parse(`${N}on_crash = "${a}"`).config.on_crash).to.equal(a);
      }
    });

    it('reads uuid, the deprecated builder, and the grant table sizes', () => {
      expect(parse(`${N}uuid = "5F2A3C1E-7B44-4D0E-9C8B-1A2B3C4D5E6F"`).config.uuid).to.equal('5f2a3c1e-7b44-4d0e-9c8b-1a2b3c4d5e6f');
      const b = parse(`${N}builder = "hvm"`);
      expect(b.config.type).to.equal('hvm');
      expect(b.warnings[0]?.message).to.contain('builder option is deprecated');
      expect(parse(`${N}max_grant_frames = 64\nmax_maptrack_frames = 1024`).config).to.include({ max_grant_frames: 64, max_maptrack_frames: 1024 });
    });

    it('parses disk and vif lists into specs (vif devids are list indices)', () => {
      const c = parse(`${N}disk = [ 'ram:8M,,xvda', 'vdev=xvdb, target=ram:1M' ]\nvif = [ '', 'bridge=br1' ]`).config;
      expect(c.disk.map((d) => [d.vdev, d.devid])).to.deep.equal([['xvda', 51712], ['xvdb', 51728]]);
      expect(c.vif.map((v) => [v.devid, v.bridge])).to.deep.equal([[0, 'xenbr0'], [1, 'br1']]);
    });

    it('keeps xl keys it does not model silently, and unknown keys with a warning and a guess', () => {
      const r = parse(`${N}kernel = "/boot/vmlinuz"\nmemroy = 64`);
      expect(r.config.other).to.deep.equal({ kernel: '/boot/vmlinuz', memroy: '64' });
      expect(r.warnings).to.have.length(1);
      expect(r.warnings[0]).to.deep.include({ line: 3, column: 1, severity: 'warning' });
      expect(r.warnings[0]?.message).to.equal("unknown key `memroy' (kept, ignored by xensim); did you mean `memory'?");
    });

    it('warns about deprecated disk syntax and HVM-only vif keys', () => {
      const r = parse(`${N}disk = [ 'phy:/dev/sdb,xvda,w' ]\nvif = [ 'model=e1000' ]`);
      expect(r.warnings.map((w) => w.message).join('\n')).to.contain("deprecated disk syntax `phy:'").and.contain('HVM guests only');
    });
  });

  describe('semantic errors: position, xl wording, offending text', () => {
    const cases: [string, string][] = [
      ['memory = 64', 't.cfg: Domain name must be specified.'],
      ['name = ""', 't.cfg:1:8: Domain name must not be empty.'],
      [`${N}type = "xen"`, 't.cfg:2:8: Invalid domain type xen.'],
      [`${N}type = "pv"\nbuilder = "hvm"`, 't.cfg:3:11: Contradicting "builder" and "type" options specified.'],
      [`${N}memory = [64]`, "t.cfg:2:10: parameter `memory' is a list but should be a single value"],
      [`${N}memory = 64m`, "config parsing error near `m': syntax error, unexpected IDENT"],
      [`${N}memory = 0x40g`, "config parsing error near `g': syntax error"],
      [`${N}memory = "lots"`, "t.cfg:2:10: parameter `memory' is not a valid number: `lots'"],
      [`${N}memory = 09`, "parameter `memory' is not a valid number: `09'"],
      [`${N}memory = 0`, "t.cfg:2:10: value `0' is smaller than minimum bound '1' for parameter `memory'"],
      [`${N}memory = 64\nmemory += 1`, "t.cfg:3:1: can't use += with numbers for parameter `memory'"],
      [`${N}memory = 128\nmaxmem = 64`, 't.cfg:3:10: maxmem=64 is less than memory=128'],
      [`${N}vcpus = 4\nmaxvcpus = 2`, 't.cfg:3:12: xl: maxvcpus < vcpus'],
      [`${N}on_crash = "explode"`, 't.cfg:2:12: Unknown on_crash action "explode" specified'],
      [`${N}uuid = "not-a-uuid"`, 't.cfg:2:8: Failed to parse UUID: not-a-uuid'],
      [`${N}memory_model = "flat"`, 't.cfg:2:16: Invalid memory_model "flat" (expected pm, p2m or vp)'],
      [`${N}disk = 'ram:1M,,xvda'`, "t.cfg:2:8: parameter `disk' is a single value but should be a list"],
      [`${N}disk = [ ['ram:1M,,xvda'] ]`, 't.cfg:2:10: value is not a string'],
      [`${N}disk = [ 'ram:1M,,xvda',\n  '/x,qcow3,xvdb' ]`, "t.cfg:3:3: config parsing error in disk specification: unknown value for format: near `qcow3' in `/x,qcow3,xvdb'"],
      [`${N}disk = [ 'ram:1M,,xvda', 'ram:1M,,51712' ]`, "duplicate virtual device: `51712' (device number 51712) is already used by disk `ram:1M,,xvda'"],
      [`${N}vif = [ 'mac=00:16:3e:00:00:01', 'mac=00:16:3e:00:00:01' ]`, 'duplicate MAC address 00:16:3e:00:00:01'],
      [`${N}vif = [ 'devid=1', '' ]`, 'duplicate vif devid 1'],
      [`${N}vif = [ 'brdge=x' ]`, "t.cfg:2:9: unrecognized argument `brdge=x'"],
    ];
    for (const [text, want] of cases) {
      it(`reports ${JSON.stringify(text)}`, () => {
        expect(failure(text).message).to.contain(want);
      });
    }

    it('reports every semantic error at once, in file order', () => {
      const e = failure('memory = "x"\nvcpus = 0\n');
      expect(e.diagnostics.map((d) => d.line)).to.deep.equal([0, 1, 2]);
      expect(e.message.split('\n')).to.have.length(3);
    });

    it('says why a file cannot be read', () => {
      const r = readXlCfgFile('/nonexistent/dir/x.cfg');
      expect(r.ok).to.equal(false);
      if (!r.ok) expect(r.error.message).to.equal('/nonexistent/dir/x.cfg: unable to open configuration file: No such file or directory');
    });
  });

  it('parses every example domain config without warnings', () => {
    const cfgs = readdirSync(EXAMPLES).filter((f) => f.endsWith('.cfg'));
    expect(cfgs.length).to.be.at.least(3);
    for (const f of cfgs) {
      const r = readXlCfgFile(join(EXAMPLES, f));
      if (!r.ok) throw new Error(r.error.message);
      expect(r.value.warnings, f).to.deep.equal([]);
    }
    const dd = readXlCfgFile(join(EXAMPLES, 'driver-domain.cfg'));
    expect(dd.ok && dd.value.config.driver_domain).to.equal(true);
  });
});
