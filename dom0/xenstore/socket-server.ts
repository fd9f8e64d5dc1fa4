/**
 * xenstored's Unix socket, speaking the real xsd_sockmsg wire protocol, so that
 * Debian's xenstore-utils (libxenstore) and python3-pyxs work against the
 * simulation: `XENSTORED_PATH=<path> xenstore-ls /`.
 *
 * Every socket client is dom0 (privileged), as with the real daemon's socket.
 * A client that breaks the framing (len > 4096, a type >= XS_TYPE_COUNT) has
 * its socket destroyed; every other connection keeps being served. Replies are
 * written in order; when the kernel buffer is full we stop reading that socket
 * until it drains.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { lstatSync, unlinkSync } from 'node:fs';
import { asDomId } from '../../shared/types.ts';
import { err, ok, type Result } from '../../shared/result.ts';
import { encodeXsMsg, XsWireDecoder } from './wire.ts';
import type { XenStored } from './xenstored.ts';

/** sizeof(sun_path): a socket path must be shorter (libxenstore gets EINVAL otherwise). */
export const SUN_PATH_MAX = 108;

/** Replies left in the outbox (the socket being full) before we stop reading requests. */
const MAX_QUEUED_REPLIES = 64;

export type XsListenError =
  | { readonly kind: 'path-too-long'; readonly path: string; readonly bytes: number }
  | { readonly kind: 'path-in-use'; readonly path: string; readonly reason: string }
  | { readonly kind: 'listen-failed'; readonly path: string; readonly reason: string };

export interface XsSocketServerStats {
  accepted: number;
  protocolErrors: number;
}

export class XsSocketServer {
  readonly stats: XsSocketServerStats = { accepted: 0, protocolErrors: 0 };
  private readonly sockets = new Set<Socket>();

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly daemon: XenStored,
  ) {
    server.on('connection', (s) => this.accept(s));
  }

  /**
   * [listen daemon path] listens on a Unix socket at path (< 108 bytes). A stale
   * socket file at path is replaced, as xenstored does; any other file is not.
   */
  static async listen(daemon: XenStored, path: string): Promise<Result<XsSocketServer, XsListenError>> {
    const bytes = Buffer.byteLength(path);
    if (bytes >= SUN_PATH_MAX) return err({ kind: 'path-too-long', path, bytes });
    try {
      if (lstatSync(path).isSocket()) unlinkSync(path);
      else return err({ kind: 'path-in-use', path, reason: 'exists and is not a socket' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return err({ kind: 'path-in-use', path, reason: String(e) });
    }
    const server = createServer({ allowHalfOpen: false });
    const listening = await new Promise<Result<void, string>>((resolve) => {
      server.once('error', (e) => resolve(err(String(e))));
      server.listen(path, () => resolve(ok(undefined)));
    });
    if (!listening.ok) return err({ kind: 'listen-failed', path, reason: listening.error });
    return ok(new XsSocketServer(path, server, daemon));
  }

  /** Connected clients right now. */
  get clients(): number { return this.sockets.size; }

  private accept(sock: Socket): void {
    this.stats.accepted++;
    this.sockets.add(sock);
    const decoder = new XsWireDecoder();
    const conn = this.daemon.connect(asDomId(0), {
      label: 'socket',
      onOutput: () => drain(),
      onClose: () => sock.destroy(),
    });
    // Move queued messages into the socket while the kernel takes them. What the
    // socket cannot take stays in the daemon's outbox, where the watch-event
    // limit applies, and we stop reading requests until the replies are out.
    const drain = (): void => {
      if (sock.destroyed) return;
      while (!sock.writableNeedDrain) {
        const m = conn.take();
        if (m === undefined) break;
        sock.write(encodeXsMsg(m));
      }
      if (conn.pending - conn.queuedEvents > MAX_QUEUED_REPLIES) sock.pause();
      else if (sock.isPaused()) sock.resume();
    };
    sock.on('drain', drain);
    sock.on('data', (chunk: Buffer) => {
      const r = decoder.push(chunk);
      if (!r.ok) {
        // A client that breaks the framing is cut off; nobody else notices.
        this.stats.protocolErrors++;
        this.daemon.disconnect(conn, `socket protocol error: ${r.error.kind}`);
        sock.destroy();
        return;
      }
      for (const m of r.value) {
        if (conn.closed) break;
        this.daemon.process(conn, m);
      }
      drain();
    });
    sock.on('error', () => { /* the close handler cleans up */ });
    sock.on('close', () => {
      this.sockets.delete(sock);
      this.daemon.disconnect(conn, 'socket closed');
    });
  }

  /** [close] stops listening, drops every client and removes the socket file. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch {
      // Already gone (node removes it on close on some platforms).
    }
  }
}
