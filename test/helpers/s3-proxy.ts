/**
 * Storage faults injected in front of s3rver, since permissions cannot be used (CI runs as root, which writes
 * anywhere): an HTTP proxy that forwards every request, except those of a method it is told to refuse, which
 * get S3's 403 answer.
 */
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RefusingProxy {
  url: string;
  /** Methods answered 403 now, e.g. PUT for a role without PutObject, HEAD for one without ListBucket. */
  refuse: Set<string>;
  /** Requests refused so far. */
  refused: number;
  /** Every request seen, as `METHOD /path?query`, to tell which S3 operations a client used. */
  seen: string[];
  close(): Promise<void>;
}

export async function refusingProxy(target: string): Promise<RefusingProxy> {
  const upstream = new URL(target);
  const server = createServer((req, res) => {
    proxy.seen.push(`${req.method} ${req.url}`);
    if (proxy.refuse.has(req.method ?? '')) {
      proxy.refused++;
      req.resume().on('end', () => {
        // A HEAD answer has no body: the SDK names it by its status alone.
        res.writeHead(403, { 'Content-Type': 'application/xml' });
        res.end(
          req.method === 'HEAD'
            ? undefined
            : '<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>',
        );
      });
      return;
    }
    const forward = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy: RefusingProxy = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    refuse: new Set(),
    refused: 0,
    seen: [],
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return proxy;
}
