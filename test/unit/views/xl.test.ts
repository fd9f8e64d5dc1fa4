import { expect } from 'chai';
import type { DomainState, DomainStats } from '../../../cli/views/stats.ts';
import { XL_LIST_HEADER, xlBlockList, xlList, xlNetworkList, xlStateFlags } from '../../../cli/views/xl.ts';
import { xentopStateFlags } from '../../../cli/views/xentop.ts';
import { cString, gccMissing, runC } from './c-oracle.ts';

const idle: DomainState = { running: false, blocked: false, paused: false, dying: false, shutdown: null };

function dom(over: Partial<DomainStats> & Pick<DomainStats, 'name' | 'domid'>): DomainStats {
  return {
    state: idle, cpuNs: 0, memKiB: 0, maxMemKiB: null, vcpus: 1, vcpusOnline: 1, nets: [], vbds: [], ...over,
  };
}

describe('xl list', () => {
  it('prints the header with literal tabs and the xl(1) example row for Domain-0', () => {
    expect(XL_LIST_HEADER).to.equal('Name                                        ID   Mem VCPUs\tState\tTime(s)');
    const out = xlList([dom({ name: 'Domain-0', domid: 0, state: { ...idle, running: true }, memKiB: 750 * 1024, vcpusOnline: 4, cpuNs: 11_794_300_000_000n })]);
    expect(out).to.equal(
      'Name                                        ID   Mem VCPUs\tState\tTime(s)\n' +
      'Domain-0                                     0   750     4     r-----   11794.3\n',
    );
  });

  it('adds outstanding (claimed) memory to Mem, in whole MiB rounded down', () => {
    const row = xlList([dom({ name: 'g', domid: 7, memKiB: 1023 * 1024 + 1000, outstandingKiB: 1000 })]).split('\n')[1];
    expect(row).to.equal('g                                            7  1024     1     ------       0.0');
  });

  it('uses xl\'s flag order r b p s c d, with the shutdown reason as the fifth letter', () => {
    const cases: [DomainState, string, string][] = [
      // state, xl list, xentop (d s b c p r)
      [idle, '------', '------'],
      [{ ...idle, running: true }, 'r-----', '-----r'],
      [{ ...idle, blocked: true }, '-b----', '--b---'],
      [{ ...idle, paused: true, blocked: true }, '-bp---', '--b-p-'],
      [{ ...idle, shutdown: 'poweroff' }, '---s--', '-s----'],
      [{ ...idle, shutdown: 'reboot' }, '---sr-', '-s----'],
      [{ ...idle, shutdown: 'suspend' }, '---ss-', '-s----'],
      [{ ...idle, shutdown: 'crash' }, '---sc-', '---c--'],
      [{ ...idle, shutdown: 'watchdog' }, '---sw-', '-s----'],
      [{ ...idle, shutdown: 'soft_reset' }, '---sS-', '-s----'],
      [{ ...idle, shutdown: 'unknown' }, '---s?-', '-s----'],
      [{ ...idle, shutdown: 'crash', dying: true }, '---scd', 'd--c--'],
      [{ running: true, blocked: true, paused: true, dying: true, shutdown: 'poweroff' }, 'rbps-d', 'dsb-pr'],
    ];
    for (const [s, xl, xentop] of cases) {
      expect(xlStateFlags(s), JSON.stringify(s)).to.equal(xl);
      expect(xentopStateFlags(s), JSON.stringify(s)).to.equal(xentop);
    }
  });

  it('matches glibc printf of xl_info.c\'s row, float cast of cpu_time included', function () {
    const why = gccMissing();
    if (why !== null) {
      console.warn(`SKIPPED: xl list golden test because ${why}`);
      this.skip();
    }
    this.timeout(30000);
    // name, domid, memKiB, outstandingKiB, vcpusOnline, cpuNs, state, its xl letters (written out, not computed)
    const rows: [string, number, bigint, bigint, number, bigint, DomainState, string][] = [
      ['Domain-0', 0, 768000n, 0n, 4, 11_794_300_000_000n, { ...idle, running: true }, 'r-----'],
      ['guest-web', 3, 524288n, 2048n, 2, 42_749_999_999n, { ...idle, blocked: true }, '-b----'],
      ['a-domain-name-that-is-longer-than-forty-bytes', 32767, 1n << 40n, 0n, 128, (1n << 60n) + (1n << 36n) + 1n, { ...idle, shutdown: 'crash', dying: true }, '---scd'],
      ['tiny', 12, 1023n, 0n, 1, 49_999_999n, { ...idle, paused: true, shutdown: 'watchdog' }, '--psw-'],
      ['max', 65535, 0n, 0n, 0, 2n ** 64n - 1n, idle, '------'],
    ];
    const doms = rows.map(([name, domid, memKiB, outstandingKiB, vcpusOnline, cpuNs, state]) =>
      dom({ name, domid, memKiB, outstandingKiB, vcpusOnline, cpuNs, state }));
    const body = [
      'printf("Name                                        ID   Mem VCPUs\\tState\\tTime(s)\\n");',
      ...rows.map(([name, domid, mem, out, vcpus, cpu, , letters]) =>
        `{ uint64_t cur = ${mem}ULL, outst = ${out}ULL, cpu_time = ${cpu}ULL;
           printf("%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f", ${cString(name)}, ${domid}, (unsigned long)((cur + outst) / 1024), ${vcpus},
             ${[...letters].map((c) => `'${c}'`).join(', ')}, ((float)cpu_time / 1e9));
           putchar('\\n'); }`),
    ].join('\n');
    expect(xlList(doms)).to.equal(runC(body).toString('utf8'));
  });
});

describe('xl block-list and network-list', () => {
  const disks = [
    { devid: 51712, backendId: 0, frontendId: 3, state: 4, evtch: 17, rref: 8, backend: '/local/domain/0/backend/vbd/3/51712' },
    { devid: 51728, backendId: 0, frontendId: 3, state: 1, evtch: -1, rref: -1, backend: '/local/domain/0/backend/vbd/3/51728' },
    { devid: 268439552, backendId: 12, frontendId: 3, state: 6, evtch: 2000, rref: 123456789, backend: 'short' },
  ];
  const nics = [
    { devid: 0, backendId: 0, mac: '00:16:3e:5c:0a:01', state: 4, evtch: 18, rrefTx: 768, rrefRx: 769, backend: '/local/domain/0/backend/vif/3/0' },
    { devid: 1, backendId: 2, mac: '00:16:3E:FF:00:7F', state: 2, evtch: -1, rrefTx: -1, rrefRx: -1, backend: '/local/domain/2/backend/vif/3/1' },
  ];

  it('prints block-list columns left-aligned, BE-path padded to 30', () => {
    expect(xlBlockList(disks.slice(0, 1))).to.equal(
      'Vdev  BE  handle state evt-ch ring-ref BE-path                       \n' +
      '51712 0   3      4     17     8        /local/domain/0/backend/vbd/3/51712\n',
    );
  });

  it('prints network-list with the MAC in lower-case hex and the devid repeated as handle', () => {
    expect(xlNetworkList(nics.slice(0, 1))).to.equal(
      'Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path                       \n' +
      '0   0  00:16:3e:5c:0a:01     0     4     18   768/769         /local/domain/0/backend/vif/3/0\n',
    );
    expect(() => xlNetworkList([{ ...nics[0] as (typeof nics)[0], mac: 'nope' }])).to.throw(/no valid MAC/);
  });

  it('matches glibc printf of xl_block.c and xl_nic.c', function () {
    const why = gccMissing();
    if (why !== null) {
      console.warn(`SKIPPED: xl block-list/network-list golden test because ${why}`);
      this.skip();
    }
    this.timeout(30000);
    const body = [
      'printf("%-5s %-3s %-6s %-5s %-6s %-8s %-30s\\n", "Vdev", "BE", "handle", "state", "evt-ch", "ring-ref", "BE-path");',
      ...disks.map((d) => `printf("%-5d %-3d %-6d %-5d %-6d %-8d %-30s\\n", ${d.devid}, ${d.backendId}, ${d.frontendId}, ${d.state}, ${d.evtch}, ${d.rref}, ${cString(d.backend)});`),
      'printf("%-3s %-2s %-17s %-6s %-5s %-6s %5s/%-5s %-30s\\n", "Idx", "BE", "Mac Addr.", "handle", "state", "evt-ch", "tx-", "rx-ring-ref", "BE-path");',
      ...nics.map((n) => {
        const bytes = n.mac.split(':').map((h) => `0x${h}`).join(', ');
        return `{ unsigned char m[6] = { ${bytes} }; printf("%-3d %-2d ", ${n.devid}, ${n.backendId});
          printf("%02hhx:%02hhx:%02hhx:%02hhx:%02hhx:%02hhx", m[0], m[1], m[2], m[3], m[4], m[5]);
          printf("%6d %5d %6d %5d/%-11d %-30s\\n", ${n.devid}, ${n.state}, ${n.evtch}, ${n.rrefTx}, ${n.rrefRx}, ${cString(n.backend)}); }`;
      }),
    ].join('\n');
    expect(xlBlockList(disks) + xlNetworkList(nics)).to.equal(runC(body).toString('utf8'));
  });
});
