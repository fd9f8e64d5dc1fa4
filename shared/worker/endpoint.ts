/**
 * comlink endpoints over worker_threads, with a doorbell: our workers spend
 * their idle time blocked in Atomics.wait on a wake word, where they cannot
 * see a posted message. So the parent's endpoint, after posting, raises the
 * worker's control flag and bumps its wake word; the worker's loop sees the
 * flag and returns to the event loop, where comlink runs the call.
 */
import type { Endpoint } from 'comlink';
import type { MessagePort, Worker } from 'node:worker_threads';

type Listener = (ev: { data: unknown }) => void;

function adapt(port: Worker | MessagePort, afterPost?: () => void): Endpoint {
  const wrapped = new WeakMap<object, (data: unknown) => void>();
  return {
    postMessage(message: unknown, transfer?: readonly unknown[]) {
      (port as MessagePort).postMessage(message, transfer as never);
      afterPost?.();
    },
    addEventListener(_type: string, listener: unknown) {
      const fn = (data: unknown) => {
        if (typeof listener === 'function') (listener as Listener)({ data });
        else (listener as { handleEvent: Listener }).handleEvent({ data });
      };
      wrapped.set(listener as object, fn);
      port.on('message', fn);
    },
    removeEventListener(_type: string, listener: unknown) {
      const fn = wrapped.get(listener as object);
      if (fn !== undefined) { port.off('message', fn); wrapped.delete(listener as object); }
    },
  } as Endpoint;
}

/** The parent's endpoint to a worker; `kick` wakes the worker's loop after each post. */
export function parentEndpoint(worker: Worker, kick: () => void): Endpoint {
  return adapt(worker, kick);
}

/** The worker's endpoint to its parent. */
export function childEndpoint(port: MessagePort): Endpoint {
  return adapt(port);
}
