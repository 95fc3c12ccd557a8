/**
 * Drive a mock server running in another process (a CLI `wxacode mock-server`, a benchmark's, a chaos test's)
 * through its `/__mock/` endpoints: the same operations as `MockServer`, over HTTP.
 */
import type { MockPatch } from './options.js';
import type { MockStats } from './stats.js';

export interface MockAdmin {
  stats(appid?: string): Promise<MockStats>;
  configure(patch: MockPatch): Promise<void>;
  revokeTokens(appid?: string): Promise<void>;
  expireTokens(appid?: string): Promise<void>;
  reset(): Promise<void>;
}

/** `url` is the mock's base URL, e.g. the `{"url": ...}` line `wxacode mock-server` prints. */
export function mockAdmin(url: string): MockAdmin {
  const call = async (method: 'GET' | 'POST', action: string, appid?: string, body?: unknown) => {
    const target = new URL(`/__mock/${action}`, url);
    if (appid !== undefined) target.searchParams.set('appid', appid);
    const res = await fetch(target, {
      method,
      headers: body === undefined ? undefined : { 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = (await res.json()) as { error?: string };
    if (!res.ok) throw new Error(`mock server at ${url} refused ${action}: ${answer.error ?? res.status}`);
    return answer;
  };
  return {
    stats: async (appid) => (await call('GET', 'stats', appid)) as MockStats,
    configure: async (patch) => void (await call('POST', 'configure', undefined, patch)),
    revokeTokens: async (appid) => void (await call('POST', 'revoke', appid)),
    expireTokens: async (appid) => void (await call('POST', 'expire', appid)),
    reset: async () => void (await call('POST', 'reset')),
  };
}
