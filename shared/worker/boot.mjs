// Worker entry bootstrap. Node 20 cannot start a worker from a .ts file, so
// every worker starts here, registers tsx's loader, then imports the real
// entry named in workerData.entry (a file: URL). Keep this file tiny.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
