/** `wxacode serve` refuses to run without authentication, except with --no-auth on a loopback host. */
import { expect, it } from 'vitest';
import { runCli, startCli } from '../../test-support/cli.js';
import { waitFor } from '../../test-support/wait.js';
import { testPrefix, testRedisUrl } from '../helpers/redis.js';

const env = {
  REDIS_URL: testRedisUrl(),
  WXACODE_PREFIX: testPrefix(),
  WXACODE_API_TOKENS: '',
  WXACODE_API_TOKENS_FILE: '',
};

it('refuses to start without a token, and --no-auth on a host other than loopback', async () => {
  const none = await runCli(['serve', '--port', '0'], { env });
  expect(none.code).toBe(2);
  expect(none.stderr).toMatch(/no API token is configured: set WXACODE_API_TOKENS/);
  const open = await runCli(['serve', '--no-auth', '--host', '0.0.0.0', '--port', '0'], { env });
  expect(open.code).toBe(2);
  expect(open.stderr).toMatch(/--no-auth is allowed with a loopback --host only/);
  const bad = await runCli(['serve', '--port', '0'], {
    env: { ...env, WXACODE_API_TOKENS: 'ops:admin:short,ok:root:0123456789abcdef0123' },
  });
  expect(bad.code).toBe(2);
  // Named by position and holder, never by the token's text.
  expect(bad.stderr).toMatch(/entry 1 \(ops\): the token must be at least 16 characters/);
  expect(bad.stderr).toMatch(/entry 2 \(ok\): the scope must be read or admin/);
  expect(bad.stderr).not.toContain('0123456789abcdef0123');
});

it('serves without tokens on loopback when told --no-auth, and stops on SIGTERM', async () => {
  const serve = startCli(['serve', '--no-auth', '--port', '0'], { env });
  const url = await waitFor(
    'the console to listen',
    () => /console on (http:\/\/\S+?)\/ /.exec(serve.output.stderr)?.[1],
    {
      timeoutMs: 20_000,
    },
  );
  const res = await fetch(`${url}/v1/campaigns`);
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ campaigns: [] });
  serve.child.kill('SIGTERM');
  expect((await serve.done).code).toBe(0);
});
