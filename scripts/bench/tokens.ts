/**
 * 4. Tokens: a fleet of worker processes starts at once and every process needs the access token in the same
 * instant. Two apps in the same fleet: one whose cached token expired out of Redis (nothing cached), one whose
 * cached token WeChat has expired behind the cache's back (every first call answers 42001). The mock counts
 * the token endpoint calls of each.
 *
 * The baseline is measured the same way without the sharing: as many processes, each with a TokenProvider of
 * its own and its own cache prefix, ask for a token of each app at the same instant. Beside them, the same
 * processes with one prefix (shared cache and lock), so the difference is the sharing alone, not the harness.
 * A third app runs in classic mode with the mock's overlap at 0: each classic fetch knocks out the token before
 * it, so the processes whose token no longer works once all have fetched are counted.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { Secret } from '../../src/config.js';
import { MOCK_DEFAULTS } from '../../src/mock/options.js';
import { TokenProvider } from '../../src/wechat/token.js';
import {
  BENCH_SECRET,
  type Bench,
  enqueueScenes,
  runFleet,
  settled,
  startWorkers,
  workerEnv,
} from './services.js';
import { codeCallErrcode, type TokenTaskResult } from './tasks.js';

export interface TokensPlan {
  processes: number;
  concurrency: number;
  /** Codes per app. */
  codes: number;
}

/** One fleet of token processes (tasks.ts, `token`), each with a TokenProvider of its own. */
export interface TokenFleetResult {
  /** Token endpoint calls per app: nothing cached; cached token expired at WeChat; classic mode, nothing cached. */
  calls: { empty: number; expired: number; classic: number };
  /** Code calls answered 42001: each process used its cached token of the expired app once. */
  expired42001: number;
  /** Processes whose classic token WeChat refuses (40001) once every process has its token (overlap 0). */
  classicKnockedOut: number;
}

export interface TokensResult extends TokensPlan {
  /** Token endpoint calls for the app with nothing cached. */
  emptyCache: number;
  /** Token endpoint calls for the app whose cached token WeChat had expired, and the 42001s it answered. */
  rejectedToken: number;
  rejected42001: number;
  /** Measured baseline: each process has its own cache prefix, nothing shared. */
  unshared: TokenFleetResult;
  /** The same processes with one cache prefix, as the workers have. */
  shared: TokenFleetResult;
}

export async function tokenStampede(
  b: Bench,
  plan: TokensPlan,
  log: (line: string) => void,
): Promise<TokensResult> {
  const empty = 'wxbench-token-empty';
  const rejected = 'wxbench-token-expired';
  const prefix = 'bench-tokens';
  await b.mock.admin.configure({
    apps: { [empty]: BENCH_SECRET, [rejected]: BENCH_SECRET },
    rateLimit: null,
  });
  // Cache a token as a worker would, then have WeChat expire it: the cache still believes it for 2 hours.
  const provider = new TokenProvider({
    redis: b.redis,
    prefix,
    apps: new Map([[rejected, new Secret(BENCH_SECRET)]]),
    mode: 'stable',
    baseUrl: b.mock.url,
  });
  await provider.get(rejected);
  await provider.close();
  await b.mock.admin.expireTokens(rejected);
  const before = {
    empty: (await b.mock.admin.stats(empty)).tokenCalls,
    rejected: (await b.mock.admin.stats(rejected)).tokenCalls,
  };

  log(
    `${plan.processes} workers × ${plan.concurrency} start at once, ${plan.codes} codes for each of 2 apps`,
  );
  const storage = await mkdtemp(path.join(b.tmp, 'tokens-'));
  const env = workerEnv(b, { prefix, apps: [empty, rejected], rate: '1000000/1s', storage });
  const fleet = await startWorkers(plan.processes, env, plan.concurrency);
  try {
    await Promise.all([
      enqueueScenes(b, env, empty, 'empty', plan.codes),
      enqueueScenes(b, env, rejected, 'rejected', plan.codes),
    ]);
    await Promise.all([settled(b, prefix, 'empty', 120_000), settled(b, prefix, 'rejected', 120_000)]);
  } finally {
    await fleet.stop();
    await rm(storage, { recursive: true, force: true });
  }
  const after = { empty: await b.mock.admin.stats(empty), rejected: await b.mock.admin.stats(rejected) };
  const stampede = {
    emptyCache: after.empty.tokenCalls - before.empty,
    rejectedToken: after.rejected.tokenCalls - before.rejected,
    rejected42001: after.rejected.errors['42001'] ?? 0,
  };
  const unshared = await tokenFleet(b, 'unshared', plan.processes, log);
  const shared = await tokenFleet(b, 'shared', plan.processes, log);
  return { ...plan, ...stampede, unshared, shared };
}

/**
 * `processes` children, each with its own TokenProvider (own Redis connection and HTTP pool) and, `unshared`,
 * its own cache prefix, get a token of three apps at the same instant: one with nothing cached, one whose cached
 * token WeChat expired (used once, refused, fetched again), one in classic mode with nothing cached.
 */
export async function tokenFleet(
  b: Bench,
  sharing: 'unshared' | 'shared',
  processes: number,
  log: (line: string) => void,
): Promise<TokenFleetResult> {
  const apps = {
    empty: `wxbench-${sharing}-empty`,
    expired: `wxbench-${sharing}-expired`,
    classic: `wxbench-${sharing}-classic`,
  };
  const prefixes = Array.from({ length: processes }, (_, i) =>
    sharing === 'shared' ? 'bench-token-shared' : `bench-token-unshared-${i}`,
  );
  await b.mock.admin.configure({
    apps: Object.fromEntries(Object.values(apps).map((appid) => [appid, BENCH_SECRET])),
    rateLimit: null,
    classicOverlapSec: 0,
  });
  try {
    // Each cache gets a token of the expired app, then WeChat expires it behind the caches' backs.
    for (const prefix of new Set(prefixes)) {
      const provider = new TokenProvider({
        redis: b.redis,
        prefix,
        apps: new Map([[apps.expired, new Secret(BENCH_SECRET)]]),
        mode: 'stable',
        baseUrl: b.mock.url,
      });
      await provider.get(apps.expired);
      await provider.close();
    }
    await b.mock.admin.expireTokens(apps.expired);
    const stats = () => Promise.all(Object.values(apps).map((appid) => b.mock.admin.stats(appid)));
    const before = await stats();

    log(`${processes} processes, a token provider each, ${sharing} cache: a token of 3 apps at once`);
    const results = await runFleet<TokenTaskResult>(
      prefixes.map((prefix) => ({
        name: 'token',
        redisUrl: b.redisUrl,
        prefix,
        wechatUrl: b.mock.url,
        secret: BENCH_SECRET,
        apps: [
          { appid: apps.empty, mode: 'stable', check: false },
          { appid: apps.expired, mode: 'stable', check: true },
          { appid: apps.classic, mode: 'classic', check: false },
        ],
      })),
    );
    const errcodes = await Promise.all(
      results.map((r) => codeCallErrcode(b.mock.url, r.tokens[apps.classic]!)),
    );
    const [empty, expired, classic] = await stats();
    const calls = (i: number, now: { tokenCalls: number }) => now.tokenCalls - before[i]!.tokenCalls;
    return {
      calls: { empty: calls(0, empty!), expired: calls(1, expired!), classic: calls(2, classic!) },
      expired42001: (expired!.errors['42001'] ?? 0) - (before[1]!.errors['42001'] ?? 0),
      classicKnockedOut: errcodes.filter((errcode) => errcode === 40001).length,
    };
  } finally {
    await b.mock.admin.configure({ classicOverlapSec: MOCK_DEFAULTS.classicOverlapSec });
  }
}
