import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { runCli, spawnCli } from '../../test-support/cli.js';
import { classicToken, code, errorOf } from './calls.js';

describe('wxacode mock-server', () => {
  it('prints its URL as one JSON line, serves the apps and cap it was given, and exits 0 on SIGTERM', async () => {
    const child = spawnCli(['mock-server', '--apps', 'wxclia:secret-a,wxclib:secret-b', '--rate', '2/60s']);
    try {
      const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
      const { url } = JSON.parse(line) as { url: string };
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

      const token = await classicToken(url, { appid: 'wxclib', secret: 'secret-b' });
      const answers = [];
      for (const scene of ['a', 'b', 'c']) answers.push(await code(url, 'unlimited', token, { scene }));
      expect(answers.map((a) => a.type)).toEqual([
        'image/jpeg',
        'image/jpeg',
        'application/json; encoding=utf-8',
      ]);
      expect(errorOf(answers[2]!).errcode).toBe(45009);

      const stats = await (await fetch(`${url}/__mock/stats?appid=wxclib`)).json();
      expect(stats).toMatchObject({ codeCalls: 3, images: 2, rateLimited: 1, tokenCalls: 1 });
    } finally {
      child.kill('SIGTERM');
    }
    const [exitCode] = await once(child, 'close');
    expect(exitCode).toBe(0);
  });

  it('documents its flags with an example', async () => {
    const result = await runCli(['mock-server', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('--rate <rate>');
    expect(result.stdout).toContain('--truncated <fraction>');
    expect(result.stdout).toContain('Examples:');
  });

  it('refuses a bad flag with exit code 2, naming it and never echoing a secret', async () => {
    const busy = await runCli(['mock-server', '--busy', '2']);
    expect(busy.code).toBe(2);
    expect(busy.stderr).toContain('--busy must be a fraction from 0 to 1, got "2"');
    const apps = await runCli(['mock-server', '--apps', 'wxok:fine,wxbad:']);
    expect(apps.code).toBe(2);
    expect(apps.stderr).toContain('--apps entry "wxbad" is not appid:secret');
    expect(apps.stderr).not.toContain('fine');
    // `=` typed for `:`: the whole entry may be the secret, so only its position is named.
    const equals = await runCli(['mock-server', '--apps', 'wxok:fine,wxbad=sekrit']);
    expect(equals.code).toBe(2);
    expect(equals.stderr).toContain('--apps entry 2 is not appid:secret');
    expect(equals.stderr).not.toContain('sekrit');
  });
});
