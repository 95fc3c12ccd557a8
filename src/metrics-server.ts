/**
 * The worker's HTTP endpoints on plain node:http: `GET /metrics` for Prometheus and `GET /healthz` for
 * orchestrators (Docker, Kubernetes). It listens on 127.0.0.1 unless told otherwise: metrics name campaigns and
 * apps, which are nobody else's business.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Redis } from 'ioredis';
import { type Logger, silentLogger } from './log.js';
import { type WorkerMetrics, within } from './metrics.js';

/** Where the worker is in its life; only `running` is healthy. */
export type WorkerState = 'starting' | 'running' | 'stopping' | 'stopped';

export interface Health {
  status: 'ok' | 'unavailable';
  /** `ok`, or why Redis did not answer a PING. */
  redis: string;
  worker: WorkerState;
}

export interface MetricsServerOptions {
  metrics: WorkerMetrics;
  /** Pinged by `/healthz`. The caller owns (and closes) it. */
  redis: Redis;
  /** The worker's state, read on each `/healthz`. */
  state: () => WorkerState;
  /** Default 0: a free port (read it from `MetricsServer.port`). */
  port?: number;
  /** Default 127.0.0.1; `0.0.0.0` or `::` to be scraped from other machines or containers. */
  host?: string;
  /** Longest `/healthz` waits for the PING. Default 2000 ms. */
  pingTimeoutMs?: number;
  logger?: Logger;
}

export interface MetricsServer {
  /** `http://host:port`, from the bound socket. */
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

/** Healthy when Redis answers a PING in time and the worker is running. */
export async function checkHealth(redis: Redis, state: WorkerState, pingTimeoutMs = 2000): Promise<Health> {
  let answer = 'ok';
  try {
    await within(redis.ping(), pingTimeoutMs, 'PING');
  } catch (err) {
    answer = `no answer to PING: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  const status = answer === 'ok' && state === 'running' ? 'ok' : 'unavailable';
  return { status, redis: answer, worker: state };
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
  res.end(body);
}

export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const logger = options.logger ?? silentLogger;
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain; charset=utf-8', 'only GET\n');
    } else if (path === '/metrics') {
      options.metrics.metrics().then(
        (text) => send(res, 200, options.metrics.contentType, text),
        (err: Error) => {
          logger.error({ err: err.message }, 'metrics: scrape failed');
          send(res, 500, 'text/plain; charset=utf-8', `scrape failed: ${err.message}\n`);
        },
      );
    } else if (path === '/healthz') {
      void checkHealth(options.redis, options.state(), options.pingTimeoutMs).then((health) =>
        send(res, health.status === 'ok' ? 200 : 503, 'application/json', `${JSON.stringify(health)}\n`),
      );
    } else {
      send(res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics or /healthz\n');
    }
  });
  const host = options.host ?? '127.0.0.1';
  server.listen(options.port ?? 0, host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shown}:${address.port}`,
    host: address.address,
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Prometheus keeps its connection alive between scrapes; closing must not wait for it to hang up.
        server.closeAllConnections();
      }),
  };
}
