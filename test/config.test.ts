import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULTS, loadConfig, parseRateLimit, SETTINGS, Secret } from '../src/config.js';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env, {}, '/srv');
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => p.setting);
    throw err;
  }
  return [];
}

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig({}, {}, '/srv');
    expect(config.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(config.redisUrlGiven).toBe(false);
    expect(config.prefix).toBe('wxacode');
    expect(config.wechatBaseUrl).toBe('https://api.weixin.qq.com');
    expect(config.tokenMode).toBe('stable');
    expect(config.rateLimit).toEqual({ count: 5000, durationMs: 60_000 });
    expect(config.storage).toEqual({ type: 'local', dir: '/srv/wxacode-out' });
    expect(config.apps.size).toBe(0);
  });

  it('parses rate limits in every documented form', () => {
    expect(parseRateLimit('5000/60s')).toEqual({ count: 5000, durationMs: 60_000 });
    expect(parseRateLimit('5000/1m')).toEqual({ count: 5000, durationMs: 60_000 });
    expect(parseRateLimit('250/2500ms')).toEqual({ count: 250, durationMs: 2500 });
    expect(parseRateLimit('0/1s')).toBeUndefined();
    expect(parseRateLimit('5000 per minute')).toBeUndefined();
  });

  it('keeps campaigns forever unless WXACODE_RETENTION says how long', () => {
    expect(loadConfig({}).retentionMs).toBeUndefined();
    expect(loadConfig({ WXACODE_RETENTION: 'forever' }).retentionMs).toBeUndefined();
    expect(loadConfig({ WXACODE_RETENTION: '90d' }).retentionMs).toBe(90 * 86_400_000);
    expect(loadConfig({ WXACODE_RETENTION: '12h' }).retentionMs).toBe(12 * 3_600_000);
    expect(loadConfig({ WXACODE_RETENTION: ' 30m ' }).retentionMs).toBe(30 * 60_000);
    expect(loadConfig({ WXACODE_RETENTION: '500ms' }).retentionMs).toBe(500);
    for (const bad of ['0d', '1.5d', '90', 'd', '-1h', '1w']) {
      expect(() => loadConfig({ WXACODE_RETENTION: bad }), bad).toThrow(/^WXACODE_RETENTION: /);
    }
  });

  it('queues a minute of the rate limit per campaign, from 100 to 1000000 rows, unless WXACODE_WINDOW says', () => {
    expect(loadConfig({}).window).toBe(5000);
    expect(loadConfig({ WXACODE_RATE_LIMIT: '100/1s' }).window).toBe(6000);
    expect(loadConfig({ WXACODE_RATE_LIMIT: '1/1s' }).window).toBe(100);
    expect(loadConfig({ WXACODE_RATE_LIMIT: '100000/1s' }).window).toBe(1_000_000);
    expect(loadConfig({ WXACODE_WINDOW: '' }).window).toBe(5000);
    expect(loadConfig({ WXACODE_WINDOW: '100' }).window).toBe(100);
    expect(loadConfig({ WXACODE_WINDOW: '250000', WXACODE_RATE_LIMIT: '1/1s' }).window).toBe(250_000);
    expect(loadConfig({ WXACODE_WINDOW: '1000000' }).window).toBe(1_000_000);
    for (const bad of ['99', '0', '1000001', '-500', '1.5', '1e3', '500 ', 'a minute']) {
      expect(messageOf({ WXACODE_WINDOW: bad }), bad).toBe(
        `WXACODE_WINDOW: "${bad}" is not a whole number of rows from 100 to 1000000`,
      );
    }
  });

  it('parses storage targets', () => {
    expect(loadConfig({ WXACODE_STORAGE: 's3://codes/campaigns/2026/' }).storage).toEqual({
      type: 's3',
      bucket: 'codes',
      prefix: 'campaigns/2026',
    });
    expect(loadConfig({ WXACODE_STORAGE: 'file:///var/codes' }).storage).toEqual({
      type: 'local',
      dir: '/var/codes',
    });
    expect(loadConfig({ WXACODE_STORAGE: 'out' }, {}, '/srv').storage).toEqual({
      type: 'local',
      dir: '/srv/out',
    });
  });

  it('names every bad setting at once', () => {
    expect(
      problemsOf({
        REDIS_URL: 'localhost:6379',
        WXACODE_RATE_LIMIT: 'fast',
        WECHAT_TOKEN_MODE: 'shared',
        WXACODE_STORAGE: 'ftp://x/y',
        S3_FORCE_PATH_STYLE: 'maybe',
        WXACODE_PREFIX: 'a:b',
        AWS_REGION: 'eu west',
      }),
    ).toEqual([
      'REDIS_URL',
      'WXACODE_PREFIX',
      'WECHAT_TOKEN_MODE',
      'WXACODE_RATE_LIMIT',
      'WXACODE_STORAGE',
      'S3_FORCE_PATH_STYLE',
      'AWS_REGION',
    ]);
  });

  it('lets overrides win over the environment', () => {
    const config = loadConfig({ WXACODE_RATE_LIMIT: '5000/60s' }, { WXACODE_RATE_LIMIT: '100/1s' });
    expect(config.rateLimit).toEqual({ count: 100, durationMs: 1000 });
  });

  it('collects apps from WECHAT_APPID and WECHAT_APPS without ever printing a secret', () => {
    const config = loadConfig({
      WECHAT_APPID: 'wx1',
      WECHAT_SECRET: 'sekrit-one',
      WECHAT_APPS: 'wx2:sekrit-two, wx3:sekrit-three',
    });
    expect([...config.apps.keys()]).toEqual(['wx1', 'wx2', 'wx3']);
    expect(config.apps.get('wx2')?.reveal()).toBe('sekrit-two');
    const printed = `${JSON.stringify(config)} ${String(config.apps.get('wx1'))}`;
    expect(printed).not.toContain('sekrit');
    expect(new Secret('x').toJSON()).toBe('[secret]');
  });

  it('rejects malformed WECHAT_APPS without echoing it', () => {
    try {
      loadConfig({ WECHAT_APPS: '{"wx1": "sekrit"' });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toMatch(/^WECHAT_APPS: is not valid JSON/);
      expect((err as Error).message).not.toContain('sekrit');
    }
  });

  /** The message of the ConfigError that `env` raises. */
  function messageOf(env: Record<string, string>): string {
    try {
      loadConfig(env, {}, '/srv');
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    return expect.unreachable();
  }

  it('names a WECHAT_APPS entry without ":" by its position, never echoing it', () => {
    // `=` for `:`, and a bare 32-hex AppSecret that also looks like an appid.
    const message = messageOf({
      WECHAT_APPS: 'wx1:ok-one, wx2=sekrit-two, 0123456789abcdef0123456789abcdef',
    });
    expect(message).toContain('WECHAT_APPS: entry 2 is not appid:secret');
    expect(message).toContain('WECHAT_APPS: entry 3 is not appid:secret');
    expect(message).not.toContain('sekrit');
    expect(message).not.toContain('0123456789abcdef');
    expect(messageOf({ WECHAT_APPS: 'wx1:' })).toBe('WECHAT_APPS: appid wx1 has no secret');
    expect(messageOf({ WECHAT_APPS: '{"wx1": "ok", "bad appid sekrit": "x"}' })).toBe(
      'WECHAT_APPS: entry 2 does not start with an appid (letters, digits, _ and -)',
    );
  });

  it('never echoes a password or key from a URL-like setting, even one that does not parse', () => {
    const env = {
      REDIS_URL: 'default:sekrit1@redis.example.com:6379',
      WXACODE_STORAGE: 's3://AKIA:sekrit2@codes/x',
      S3_ENDPOINT: 'ftp://u:sekrit3@minio',
      WECHAT_API_BASE_URL: 'ftp://u:sekrit4@proxy',
      WXACODE_PUBLIC_BASE_URL: 'cdn:sekrit5@x',
    };
    const message = messageOf(env);
    expect(message.split('\n')).toHaveLength(Object.keys(env).length);
    expect(message).not.toMatch(/sekrit/);
    for (const url of [
      'redis://:pa/sekrit@host:6379',
      'redis://u:sekrit?x@host',
      'redis://:sekrit@host:port',
    ]) {
      expect(messageOf({ REDIS_URL: url })).toMatch(/^REDIS_URL: "redis:\/\/\*\*\*@host[^"]*" is not/);
    }
    expect(messageOf({ WXACODE_STORAGE: 'https://u:sekrit@x/y' })).not.toContain('sekrit');
  });
});

describe("the README's configuration table", () => {
  const readme = readFileSync(path.resolve(import.meta.dirname, '../README.md'), 'utf8');
  const section = readme.split(/^## /m).find((part) => part.startsWith('Configuration\n'))!;
  /** variable → default cell, for each variable named in the table's first column. */
  const rows = new Map<string, string>();
  for (const line of section.split('\n').filter((l) => l.startsWith('| `'))) {
    const [names, defaults] = line.split(' | ');
    for (const [, name] of names!.matchAll(/`([A-Z][A-Z0-9_]*)`/g)) rows.set(name!, defaults!);
  }
  /** Read (and checked) outside src/config.ts: by the logger, and by src/local-redis.ts for `run`/`demo`/`watch`. */
  const READ_ELSEWHERE = ['LOG_LEVEL', 'WXACODE_DEFAULT_REDIS_URL'];

  it('lists every setting, and only settings', () => {
    expect([...rows.keys()].sort()).toEqual([...SETTINGS, ...READ_ELSEWHERE].sort());
  });

  it('gives the defaults the code applies', () => {
    for (const [name, value] of Object.entries(DEFAULTS)) {
      expect(rows.get(name), name).toBe(`\`${value}\``);
    }
  });

  it('accepts region names the SDK accepts and names one it would refuse', () => {
    expect(loadConfig({ AWS_REGION: 'cn-northwest-1' }).s3.region).toBe('cn-northwest-1');
    expect(loadConfig({ AWS_REGION: 'auto' }).s3.region).toBe('auto');
    expect(() => loadConfig({ AWS_REGION: 'us-east-1 ' })).toThrow(
      'AWS_REGION: "us-east-1 " is not a region name like us-east-1 or auto',
    );
  });
});
