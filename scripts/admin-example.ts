/**
 * An admin script as your own code would write it, with the library API instead of the CLI: enqueue a campaign
 * straight from a database query, wait while the workers (a `docker compose` fleet, say) generate the codes,
 * then read each row's URL from the manifest and store it back next to the product.
 *
 * In your project, import from 'wxacode-pregen' instead of '../src/index.js'. The settings come from the same
 * environment variables as the CLI (README, "Configuration"); the admin machine needs Redis and storage, and
 * the appid, but not the AppSecret. Against the docker-compose stack, from the host:
 *
 *   REDIS_URL=redis://127.0.0.1:6379 WXACODE_STORAGE=s3://codes/wxacode S3_ENDPOINT=http://127.0.0.1:8333 \
 *   AWS_ACCESS_KEY_ID=wxacode AWS_SECRET_ACCESS_KEY=wxacode-local-secret \
 *   WXACODE_PUBLIC_BASE_URL=http://localhost:8333/codes/wxacode \
 *   npx tsx scripts/admin-example.ts --app wx0123456789abcdef --campaign products-2026-05 --products 500
 *
 * It prints one JSON line per product, `{"id":…,"url":…}`, on stdout (where your code would UPDATE the row),
 * progress on stderr, and exits 0 when every code was made, 1 when some rows failed or the campaign stopped.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import {
  CampaignStore,
  campaignStatus,
  codeOptions,
  createStorage,
  enqueueCampaign,
  loadCampaign,
  loadConfig,
  manifestRows,
  pickApp,
  recordSource,
} from '../src/index.js';

const { values: args } = parseArgs({
  options: {
    campaign: { type: 'string', default: `products-${new Date().toISOString().slice(0, 10)}` },
    app: { type: 'string' },
    page: { type: 'string', default: 'pages/product/detail' },
    products: { type: 'string', default: '50' },
    'poll-ms': { type: 'string', default: '2000' },
  },
});

interface Product {
  id: number;
  name: string;
}

/** The stand-in for your products table. */
const PRODUCTS: Product[] = Array.from({ length: Number(args.products) }, (_, i) => ({
  id: 1001 + i,
  name: `Product ${1001 + i}`,
}));

/** Stands in for `SELECT id, name FROM products WHERE id > $1 ORDER BY id LIMIT $2`. */
async function queryProducts(afterId: number, limit: number): Promise<Product[]> {
  return PRODUCTS.filter((p) => p.id > afterId).slice(0, limit);
}

/**
 * The scenes, a page of the table at a time. Keyset pagination (by id, not OFFSET) yields the same rows on each
 * call: enqueueCampaign reads the source twice, once to validate every row and once to write them to the
 * campaign's record in storage, where the workers read them.
 */
async function* productScenes(): AsyncGenerator<string> {
  let afterId = 0;
  for (;;) {
    const page = await queryProducts(afterId, 100);
    if (page.length === 0) return;
    for (const product of page) yield `id=${product.id}`;
    afterId = page.at(-1)!.id;
  }
}

const config = loadConfig(process.env);
const appid = args.app ?? pickApp(config);
const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
const storage = createStorage(config);
const store = new CampaignStore(redis, config.prefix);

try {
  const enqueued = await enqueueCampaign({
    redis,
    prefix: config.prefix,
    campaign: args.campaign,
    appid,
    options: codeOptions({ kind: 'unlimited', page: args.page }),
    input: () => productScenes(),
    storage,
  });
  console.error(`campaign ${enqueued.campaign}: ${enqueued.enqueued} rows queued, ${enqueued.total} in all`);

  // Workers elsewhere do the work; this only watches the campaign's counters.
  let status = await campaignStatus(store, args.campaign, storage);
  while (status.state !== 'completed' && status.state !== 'stopped') {
    await sleep(Number(args['poll-ms']));
    status = await campaignStatus(store, args.campaign, storage);
    console.error(`${status.done} done, ${status.failed} failed, ${status.pending} pending`);
  }
  if (status.stopped) {
    console.error(`stopped: WeChat answered ${status.stopped.errcode} (${status.stopped.errmsg})`);
  } else {
    // The worker that completed the campaign stores the CSV manifest a moment after; the rows below come from
    // the campaign's record and need not wait for it.
    console.error(`manifest: ${status.manifest ?? 'being stored by the worker that completed the campaign'}`);
  }

  // The manifest's rows, in the order the query gave them; a done row carries its code's URL.
  const meta = await loadCampaign(store, args.campaign);
  for await (const row of manifestRows(recordSource(store, storage), storage, meta)) {
    const id = Number(new URLSearchParams(row.value).get('id'));
    if (row.status === 'done') console.log(JSON.stringify({ id, url: row.url }));
    else console.error(`product ${id}: ${row.status}${row.errmsg ? ` (${row.errcode}: ${row.errmsg})` : ''}`);
  }
  process.exitCode = status.state === 'completed' && status.failed === 0 ? 0 : 1;
} finally {
  await storage.close();
  redis.disconnect();
}
