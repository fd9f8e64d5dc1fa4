/**
 * dom0's agent: the generic guest agent plus dom0's services — xenstored,
 * its socket, and introducing/releasing guests — for the toolstack.
 */
import { GuestAgent, type AgentResult } from '../shared/kernel/agent.ts';
import type { DomainKernel } from '../shared/kernel/kernel.ts';
import type { Dom0Services } from './dom0.ts';
import { XsLocalClient } from './xenstore/local-client.ts';
import { domainDirs, createDeviceDirs, initiateDeviceRemove, removeDeviceDirs, type DeviceDirsSpec } from '../toolstack/devices.ts';
import type { XenbusDeviceId } from '../shared/xenbus/paths.ts';
import { asDomId } from '../shared/types.ts';
import type { BlkbackDriver } from './blkback/xenbus.ts';
import type { BlkbackCounters } from './blkback/blkback.ts';
import type { Dom0Network } from './netback/start.ts';

function xs<T>(r: { ok: true; value: T } | { ok: false; error: unknown }): AgentResult<T> {
  return r.ok ? { ok: true, value: r.value } : { ok: false, error: typeof r.error === 'object' ? JSON.stringify(r.error) : String(r.error) };
}

export class Dom0Agent extends GuestAgent {
  private readonly xs: XsLocalClient;

  constructor(k: DomainKernel, private readonly svc: Dom0Services, private readonly vbd?: BlkbackDriver, protected readonly net?: Dom0Network) {
    super(k);
    this.xs = new XsLocalClient(svc.xenstored, 0);
  }

  listen(path: string): Promise<AgentResult<string>> { return this.svc.listen(path).then(xs); }
  socketPath(): string | undefined { return this.svc.socketPath; }
  introduce(domid: number, ref: number, port: number): AgentResult<void> { return xs(this.svc.introduce(domid, ref, port)); }
  release(domid: number): void { this.svc.release(domid); }
  introduced(): number[] { return this.svc.introducedDomains(); }

  /** The toolstack's domain home (/local/domain/<id>), laid out as libxl does. */
  async domainDirs(domid: number, name: string): Promise<AgentResult<void>> { return xs(await domainDirs(this.xs, asDomId(domid), name)); }
  async createDeviceDirs(spec: DeviceDirsSpec): Promise<AgentResult<void>> { return xs(await createDeviceDirs(this.xs, spec)); }
  async initiateDeviceRemove(id: XenbusDeviceId): Promise<AgentResult<void>> { return xs(await initiateDeviceRemove(this.xs, id)); }
  async removeDeviceDirs(id: XenbusDeviceId): Promise<AgentResult<void>> { return xs(await removeDeviceDirs(this.xs, id)); }

  /** Block backends served here: xentop's VBD counters per device ("<frontDom>/<devid>"). */
  vbdStats(): { key: string; frontDom: number; devid: number; counters: BlkbackCounters }[] {
    return [...(this.vbd?.devices ?? new Map()).entries()].map(([key, dev]) => {
      const [f, d] = key.split('/').map(Number) as [number, number];
      return { key, frontDom: f, devid: d, counters: dev.snapshot() };
    });
  }

  async xsRead(path: string): Promise<AgentResult<string>> { return xs(await this.xs.readString(path)); }
  async xsWrite(path: string, value: string): Promise<AgentResult<void>> { return xs(await this.xs.write(path, value)); }
  async xsDirectory(path: string): Promise<AgentResult<string[]>> { return xs(await this.xs.directory(path)); }
  async xsRm(path: string): Promise<AgentResult<void>> { return xs(await this.xs.rm(path)); }
  async xsSetPerms(path: string, perms: string[]): Promise<AgentResult<void>> { return xs(await this.xs.setPerms(path, perms)); }
  async xsGetPerms(path: string): Promise<AgentResult<string[]>> { return xs(await this.xs.getPerms(path)); }
}
