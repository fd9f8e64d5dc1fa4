/**
 * XsLocalClient: an XsHandle for code running beside xenstored — dom0's
 * kernel, its backends and the toolstack's tools — speaking to the daemon
 * in-process through its own connection (XenStored.connect), the way a dom0
 * process would through the Unix socket, minus the bytes.
 *
 * Requests are handed to the daemon at once, so they are processed in call
 * order like a socket's. Replies and watch events are queued on the
 * connection's outbox and taken by a drain that runs from `schedule`
 * (default: a microtask), never from inside the daemon's own call: a watch
 * callback that issues requests cannot re-enter xenstored while it is firing
 * events for someone else. The same code therefore runs under a seeded
 * single-thread scheduler (pass its `schedule`).
 *
 * The connection speaks for `domid`: 0 is privileged (no permission checks),
 * any other id is checked like that domain's ring — which is how tests play
 * a third domain.
 */
import { asDomId, type DomId } from '../../shared/types.ts';
import { XsRequester, type XsRequestMsg, type XsRequesterOptions } from '../../shared/xenbus/xs-handle.ts';
import type { XenStored, XsConnection } from './xenstored.ts';

export interface XsLocalClientOptions extends XsRequesterOptions {
  /** Runs a drain of the outbox later (default queueMicrotask). */
  readonly schedule?: (fn: () => void) => void;
  /** For xenstored's logs (default "local d<domid>"). */
  readonly label?: string;
}

export class XsLocalClient extends XsRequester {
  readonly domid: DomId;
  private readonly conn: XsConnection;
  private readonly schedule: (fn: () => void) => void;
  private drainScheduled = false;

  constructor(
    private readonly daemon: XenStored,
    domid: DomId | number,
    opts: XsLocalClientOptions = {},
  ) {
    super(opts);
    this.domid = asDomId(domid);
    this.schedule = opts.schedule ?? queueMicrotask;
    this.conn = daemon.connect(this.domid, {
      label: opts.label ?? `local d${this.domid}`,
      onOutput: () => this.scheduleDrain(),
      onClose: (reason) => this.breakWith({ kind: 'disconnected', reason }),
    });
  }

  /** The daemon connection this client speaks through (for tests and stats). */
  get connection(): XsConnection { return this.conn; }

  /** [close] drops the connection: its watches and transactions go; requests in flight fail. */
  close(): void {
    this.daemon.disconnect(this.conn, 'closed by client');
  }

  protected send(msg: XsRequestMsg): void {
    this.daemon.process(this.conn, msg);
    this.scheduleDrain();
  }

  private scheduleDrain(): void {
    if (this.drainScheduled) return;
    this.drainScheduled = true;
    this.stats.kicks++;
    this.schedule(() => this.drain());
  }

  /** [drain] delivers every queued reply and event, in the order xenstored queued them. */
  drain(): void {
    this.drainScheduled = false;
    for (let m = this.conn.take(); m !== undefined; m = this.conn.take()) {
      this.deliver(m.type, m.reqId, m.payload);
    }
  }
}
