/**
 * Preloaded (NODE_OPTIONS=--import) into the `wxacode worker` processes of a WorkerFleet built with
 * `{ named: true }`: each BullMQ Worker of the process is named after it (fleetWorkerName in chaos.ts), and BullMQ
 * records that name on every job the worker takes (`job.processedBy`), so a test can tell which process holds
 * which job. Nothing else about the workers changes. Plain JavaScript: it loads before tsx.
 */
import { Worker } from 'bullmq';

const createBackend = Worker.prototype.createBackend;
Worker.prototype.createBackend = function (...args) {
  this.opts.name ??= `fleet-worker-${process.pid}`;
  return createBackend.apply(this, args);
};
