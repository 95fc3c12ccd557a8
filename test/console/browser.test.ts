/**
 * The dashboard in headless Chromium, against a real console, worker, Redis, s3rver and the mock WeChat API: a
 * token is entered, a campaign created through the API runs to 100 %, and the numbers on the page must equal the
 * campaign's own counts. Screenshots go to test/artifacts/ (git-ignored). Without /usr/bin/chromium it is skipped
 * locally, never in CI (.ci/run installs Debian's chromium).
 */
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Redis } from 'ioredis';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CampaignStore, slotOf } from '../../src/campaign/store.js';
import { CodeWorker } from '../../src/campaign/worker.js';
import type { Config } from '../../src/config.js';
import { type StartedConsole, startConsole } from '../../src/console/server.js';
import { type MockServer, startMockServer } from '../../src/mock/server.js';
import { startS3, type TestS3 } from '../../test-support/s3.js';
import { waitFor } from '../../test-support/wait.js';
import { connect, deletePrefix, testPrefix, testRedisUrl } from '../helpers/redis.js';
import { ADMIN_TOKEN, APPID, consoleConfig, consoleEnv, READ_TOKEN, SECRET, TOKENS } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = path.resolve(import.meta.dirname, '../artifacts');
const ROWS = 150;
const available = existsSync(CHROMIUM);
if (!available) {
  if (process.env.CI || process.env.WXACODE_REQUIRE_BROWSER) {
    throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium (.ci/run does)`);
  }
  console.warn(`skipping the dashboard browser test: ${CHROMIUM} is missing (apt-get install -y chromium)`);
}

let s3: TestS3;
let mock: MockServer;
let redis: Redis;
let config: Config;
let server: StartedConsole;
let worker: CodeWorker | undefined;
let browser: Browser;
const prefix = testPrefix();

/** A number as the page shows it (1,234), or NaN. */
async function shown(page: Page, card: string, field: string): Promise<number> {
  const text = await page.locator(`${card} [data-testid="${field}"]`).textContent();
  return Number((text ?? '').replace(/[,%]/g, ''));
}

describe.skipIf(!available)('dashboard in Chromium', () => {
  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    s3 = await startS3();
    mock = await startMockServer({ apps: { [APPID]: SECRET }, rateLimit: null });
    redis = connect();
    // 150 rows at up to 100 calls a second: long enough to see them progress (about 10-15 s on two busy cores).
    config = consoleConfig(consoleEnv({ redisUrl: testRedisUrl(), prefix, mock, s3, rate: '100/1s' }));
    server = await startConsole({ config, tokens: TOKENS, sampleIntervalMs: 500 });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await worker?.close();
    await server?.close();
    await mock?.close();
    await s3?.stop();
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it(
    'asks for a token, follows a campaign to 100 % with its real counts, and opens the queues',
    { timeout: 60_000 },
    async () => {
      const page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
      const problems: string[] = [];
      page.on('pageerror', (err) => problems.push(err.message));
      await page.goto(`${server.url}/`);

      // A wrong token is refused and asked for again.
      await page.fill('#token', 'not-the-token-at-all');
      await page.click('#login-form button');
      await page.locator('#error', { hasText: 'refused' }).waitFor();
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-login.png') });

      await page.fill('#token', READ_TOKEN);
      await page.click('#login-form button');
      await page.locator('#who', { hasText: 'dash (read)' }).waitFor();

      worker = await CodeWorker.start({ config, concurrency: 8 });
      const rows = Array.from({ length: ROWS }, (_, i) => `b${i}`);
      const created = await fetch(`${server.url}/v1/campaigns?campaign=browser-run&checkPath=false`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'text/plain' },
        body: `${rows.join('\n')}\n`,
      });
      expect(created.status).toBe(201);

      const card = '[data-campaign="browser-run"]';
      // Mid-way, if the page catches it there: a screenshot with a partial bar (not asserted: timing).
      await page
        .waitForFunction(
          // Runs in the page (a string: this project's TypeScript has no DOM types).
          `(() => {
            const text = document.querySelector('${card} [data-testid="percent"]')?.textContent ?? '';
            const n = Number.parseInt(text, 10);
            return n > 5 && n < 90;
          })()`,
          undefined,
          { timeout: 8000, polling: 100 },
        )
        .then(() => page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-progress.png'), fullPage: true }))
        .catch(() => undefined);

      await page
        .locator(`${card} [data-testid="state"]`, { hasText: 'completed' })
        .waitFor({ timeout: 40_000 });
      const meta = await waitFor('the campaign to complete', async () => {
        const m = await new CampaignStore(redis, prefix).get('browser-run');
        return m?.state === 'completed' && m;
      });
      expect(meta.done + meta.failed).toBe(ROWS);
      // The page's numbers are the campaign's own.
      expect(await shown(page, card, 'done')).toBe(meta.done);
      expect(await shown(page, card, 'failed')).toBe(meta.failed);
      expect(await shown(page, card, 'pending')).toBe(meta.total - meta.done - meta.failed);
      expect(await shown(page, card, 'total')).toBe(meta.total);
      expect(await shown(page, card, 'percent')).toBe(100);
      expect(meta.done).toBe(ROWS);
      // The app's card shows the calls of the window from the Redis call log, within the cap.
      const calls = await shown(page, `[data-appid="${APPID}"]`, 'window-calls');
      expect(calls).toBeGreaterThanOrEqual(0);
      expect(calls).toBeLessThanOrEqual(100);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });
      await page.setViewportSize({ width: 1280, height: 900 });
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-desktop.png'), fullPage: true });

      // bull-board, with the cookie the dashboard got for it.
      await page.click('#queues-link');
      await page.getByText(`codes-${APPID}`).first().waitFor({ timeout: 15_000 });
      await page.screenshot({ path: path.join(ARTIFACTS, 'bull-board.png') });
      // A stopped campaign with failed rows: the reason, who stopped it, and the failures by errcode with advice.
      await worker.close();
      worker = undefined;
      const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'text/plain' };
      const second = await fetch(`${server.url}/v1/campaigns?campaign=browser-stopped`, {
        method: 'POST',
        headers: admin,
        body: 'x1\nx2\nx3\nx4\n',
      });
      expect(second.status).toBe(201);
      const store = new CampaignStore(redis, prefix);
      // Queued as a worker's feeder would (none runs any more), so that two of the rows can fail.
      const fed = ['x1', 'x2', 'x3', 'x4'].map((value, row) => ({ slot: slotOf({ chunk: 0, row }), value }));
      expect(await store.feed('browser-stopped', { chunk: 0, row: 0 }, { chunk: 1, row: 0 }, fed)).toBe(true);
      for (const { slot } of fed.slice(0, 2)) {
        await store.markRow('browser-stopped', slot, {
          status: 'failed',
          errcode: 41030,
          errmsg: 'invalid page hint',
        });
      }
      const stop = await fetch(`${server.url}/v1/campaigns/browser-stopped/stop`, {
        method: 'POST',
        headers: { ...admin, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'page not published' }),
      });
      expect(stop.status).toBe(200);
      await page.goto(`${server.url}/`);
      const stoppedCard = page.locator('[data-campaign="browser-stopped"]');
      await stoppedCard.getByText('stopped by admin-bot: page not published').waitFor();
      await stoppedCard.locator('[data-testid="failures"]', { hasText: 'publish the page' }).waitFor();
      expect(await shown(page, '[data-campaign="browser-stopped"]', 'failed')).toBe(2);
      expect(await shown(page, '[data-campaign="browser-stopped"]', 'pending')).toBe(2);
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-stopped.png'), fullPage: true });

      expect(problems).toEqual([]);
      // What a browser was shown and sent: never a token of the console, the AppSecret or WeChat's access token.
      const cachedEntry = await redis.get(`${prefix}:token:${APPID}`);
      const accessToken = (JSON.parse(cachedEntry!) as { token: string }).token;
      expect(accessToken.length).toBeGreaterThan(8);
      const dashboardJson = await (
        await fetch(`${server.url}/v1/dashboard`, { headers: { authorization: `Bearer ${READ_TOKEN}` } })
      ).text();
      await page.goto(`${server.url}/`);
      await page.locator(card).waitFor();
      const shownText = (await page.content()) + dashboardJson;
      for (const secret of [READ_TOKEN, ADMIN_TOKEN, SECRET, accessToken]) {
        expect(shownText).not.toContain(secret);
      }
    },
  );
});
