/** The quota ledger against a real Redis: what it counts once, what it adds, what it refuses. */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AC_LIFETIME_LIMIT,
  acQuotaPrecheck,
  beijingDate,
  OverQuotaError,
  planAcCampaign,
  QuotaDeclarationError,
  QuotaLedger,
} from '../../src/campaign/ledger.js';
import { objectKey } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { connect, deletePrefix, testPrefix } from '../helpers/redis.js';

const prefix = testPrefix();
let a: Redis;
let b: Redis;

beforeAll(() => {
  a = connect();
  b = connect();
});

afterAll(async () => {
  await deletePrefix(a, prefix);
  a.disconnect();
  b.disconnect();
});

const A = codeOptions({ kind: 'code' });
const keyOf = (appid: string, value: string) => objectKey({ appid, options: A, value });

describe('QuotaLedger', () => {
  it('counts an A/C code once however many processes report it at once', async () => {
    const appid = 'wxledgerrace000001';
    // Two connections, as two worker processes would have, each reporting every code three times.
    const ledgers = [new QuotaLedger(a, prefix), new QuotaLedger(b, prefix)];
    const keys = Array.from({ length: 50 }, (_, i) => keyOf(appid, `pages/p?id=${i}`));
    const reports = await Promise.all(
      [0, 1, 2].flatMap(() =>
        ledgers.flatMap((ledger) => keys.map((key) => ledger.count(appid, 'code', key))),
      ),
    );
    // Exactly one report per code was the one that counted it.
    expect(reports.filter(Boolean)).toHaveLength(50);
    const usage = await ledgers[0]!.usage(appid);
    expect(usage.ac).toMatchObject({ counted: 50, declared: 0, used: 50, left: AC_LIFETIME_LIMIT - 50 });
  });

  it('counts the same path as another code under other options, as WeChat does', async () => {
    const appid = 'wxledgeroptions001';
    const ledger = new QuotaLedger(a, prefix);
    const path = 'pages/p?id=1';
    await ledger.count(appid, 'code', objectKey({ appid, options: A, value: path }));
    await ledger.count(
      appid,
      'code',
      objectKey({ appid, options: codeOptions({ kind: 'code', width: 600 }), value: path }),
    );
    await ledger.count(
      appid,
      'qrcode',
      objectKey({ appid, options: codeOptions({ kind: 'qrcode' }), value: path }),
    );
    expect((await ledger.usage(appid)).ac.counted).toBe(3);
  });

  it('counts B calls per Beijing day and over the last 60 minutes, each call once', async () => {
    const appid = 'wxledgerbcalls0001';
    const ledger = new QuotaLedger(a, prefix);
    const now = Date.UTC(2026, 4, 2, 10, 30); // 18:30 in Beijing
    const minutesAgo = (m: number) => now - m * 60_000;
    for (const at of [now, now, minutesAgo(59), minutesAgo(61), minutesAgo(9 * 60)]) {
      await ledger.count(appid, 'unlimited', 'same-key-every-time', at);
    }
    // 16:00 UTC is midnight in Beijing: the next Beijing day starts empty.
    await ledger.count(appid, 'unlimited', 'k', Date.UTC(2026, 4, 2, 16, 0));
    expect(await ledger.usage(appid, now)).toMatchObject({
      b: { day: '2026-05-02', today: 5, lastHour: 3 },
      ac: { counted: 0 },
    });
    expect((await ledger.usage(appid, Date.UTC(2026, 4, 2, 16, 0))).b).toMatchObject({
      day: '2026-05-03',
      today: 1,
    });
    expect(beijingDate(Date.UTC(2026, 4, 2, 15, 59))).toBe('2026-05-02');
    // Bounded: every B key expires.
    const keys = await a.keys(`${prefix}:ledger:${appid}:b*`);
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) expect(await a.ttl(key)).toBeGreaterThan(0);
  });

  it('adds the codes it counts to a declared figure, and refuses a figure below its own count', async () => {
    const appid = 'wxledgerdeclare001';
    const ledger = new QuotaLedger(a, prefix);
    for (let i = 0; i < 3; i++) await ledger.count(appid, 'code', keyOf(appid, `before-${i}`));
    // The app's total as WeChat reports it now: 8 800, the 3 counted here among them.
    const set = await ledger.declareAcUsed(appid, 8800);
    expect(set.ac).toMatchObject({ counted: 3, declared: 8797, used: 8800, left: AC_LIFETIME_LIMIT - 8800 });
    for (let i = 0; i < 4; i++) await ledger.count(appid, 'code', keyOf(appid, `after-${i}`));
    expect((await ledger.usage(appid)).ac).toMatchObject({ counted: 7, declared: 8797, used: 8804 });
    await expect(ledger.declareAcUsed(appid, 6)).rejects.toThrow(QuotaDeclarationError);
    await expect(ledger.declareAcUsed(appid, 6)).rejects.toThrow('below the 7 A + C codes');
  });

  it('says nothing is left once WeChat answered 45029, until a figure is declared', async () => {
    const appid = 'wxledger450290001';
    const ledger = new QuotaLedger(a, prefix);
    await ledger.count(appid, 'code', keyOf(appid, 'x'));
    await ledger.saw45029(appid, 'reached max limit');
    const seen = await ledger.usage(appid);
    expect(seen.ac).toMatchObject({ counted: 1, left: 0, seen45029: { errmsg: 'reached max limit' } });
    const fixed = await ledger.declareAcUsed(appid, 99_000);
    expect(fixed.ac).toMatchObject({ left: 1000, seen45029: undefined });
  });
});

describe('what an A/C campaign needs', () => {
  it('leaves out codes counted already and rows repeated in the input', async () => {
    const appid = 'wxledgerplan000001';
    const ledger = new QuotaLedger(a, prefix);
    for (let i = 0; i < 1500; i++) await ledger.count(appid, 'code', keyOf(appid, `p${i}`));
    // 2500 distinct rows, 1500 of them counted (one batch boundary crossed), each row given twice.
    const rows = Array.from({ length: 2500 }, (_, i) => `p${i}`);
    const plan = await planAcCampaign(ledger, appid, A, [...rows, ...rows]);
    expect(plan).toMatchObject({
      needs: 1000,
      over: false,
      usage: { counted: 1500, left: AC_LIFETIME_LIMIT - 1500 },
    });
    // The same paths as C codes are other codes.
    const asC = await planAcCampaign(ledger, appid, codeOptions({ kind: 'qrcode' }), rows);
    expect(asC.needs).toBe(2500);
  });

  it('refuses over the quota with the numbers, and lets it through when allowed', async () => {
    const appid = 'wxledgerover000001';
    const ledger = new QuotaLedger(a, prefix);
    await ledger.count(appid, 'code', keyOf(appid, 'counted-here'));
    await ledger.declareAcUsed(appid, AC_LIFETIME_LIMIT - 3);
    const run = async (allowOver: boolean, rows: string[]) => {
      const check = acQuotaPrecheck(ledger, 'c1', appid, A, { allowOver, onPlan: (p) => plans.push(p) })!;
      for (const row of rows) await check.row(row);
      await check.done();
    };
    const plans: { needs: number; over: boolean }[] = [];
    // 3 left: 3 new rows fit (the counted one costs nothing), 4 do not.
    await run(false, ['counted-here', 'n1', 'n2', 'n3']);
    expect(plans.pop()).toMatchObject({ needs: 3, over: false });
    const refused = run(false, ['counted-here', 'n1', 'n2', 'n3', 'n4']);
    await expect(refused).rejects.toThrow(OverQuotaError);
    await expect(run(false, ['n1', 'n2', 'n3', 'n4'])).rejects.toThrow(
      'needs 4, 3 left of 100 000 (1 counted here + 99 996 declared)',
    );
    await run(true, ['n1', 'n2', 'n3', 'n4']);
    expect(plans.pop()).toMatchObject({ needs: 4, over: true });
    expect(acQuotaPrecheck(ledger, 'c2', appid, codeOptions({ kind: 'unlimited' }))).toBeUndefined();
  });
});
