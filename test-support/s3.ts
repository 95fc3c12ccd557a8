/** An in-process S3 server (s3rver) on a free port, with one bucket, for tests that need real S3 HTTP. */
import { mkdtempSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { removeDir } from './redis-server.js';

export interface TestS3 {
  endpoint: string;
  bucket: string;
  dir: string;
  /** Settings for loadConfig(): endpoint, path style and s3rver's fixed credentials. */
  env: Record<string, string>;
  /** An SDK client of this server (the caller destroys it). */
  client(): S3Client;
  stop(): Promise<void>;
  /** Stop answering (connections refused) until start() is called again on the same port. */
  pause(): Promise<void>;
  resume(): Promise<void>;
}

export async function startS3(bucket = 'codes'): Promise<TestS3> {
  const dir = mkdtempSync(path.join(tmpdir(), 'wxacode-s3-'));
  let port = 0;
  let server = new S3rver({
    port,
    address: '127.0.0.1',
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const address = (await server.run()) as AddressInfo;
  port = address.port;
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    bucket,
    dir,
    env: {
      S3_ENDPOINT: endpoint,
      S3_FORCE_PATH_STYLE: 'true',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
    },
    client() {
      return new S3Client({
        endpoint,
        forcePathStyle: true,
        region: 'us-east-1',
        credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      });
    },
    async stop() {
      await server.close().catch(() => undefined);
      removeDir(dir);
    },
    async pause() {
      // close() alone stops new connections only: the SDK's kept-alive sockets would go on being served.
      const http = (server as unknown as { httpServer: Server }).httpServer;
      const closed = server.close();
      http.closeAllConnections();
      await closed;
    },
    async resume() {
      server = new S3rver({ port, address: '127.0.0.1', silent: true, directory: dir });
      await server.run();
    },
  };
}
