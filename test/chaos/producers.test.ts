/**
 * Two producers of one campaign at once, one held halfway while the other (a `wxacode enqueue` process) finishes
 * and a fleet of workers settles every row added so far: the campaign stays open until the last producer is done,
 * and its manifest lists every row of both.
 */
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { campaignStatus } from '../../src/campaign/operations.js';
import { enqueueCampaign } from '../../src/campaign/producer.js';
import { createStorage } from '../../src/storage/index.js';
import { codeOptions } from '../../src/wechat/params.js';
import { runCli } from '../../test-support/cli.js';
import { waitFor } from '../../test-support/wait.js';
import { byScale, CHAOS_APPID, ChaosRig, report, settled, WorkerFleet } from '../helpers/chaos.js';

const ROWS = byScale(100, 1000);

let rig: ChaosRig;

beforeAll(async () => {
  rig = await ChaosRig.start({ rate: { count: 40, durationMs: 1000 } });
});

afterAll(async () => {
  await rig?.close();
});

it('completes a campaign only after its last producer finished, with every row in the manifest', async () => {
  const prefix = rig.prefix();
  const store = rig.store(prefix);
  const options = codeOptions({ kind: 'unlimited', width: 280 });
  const held = Array.from({ length: ROWS / 2 }, (_, i) => `held-${i}`);
  const other = Array.from({ length: ROWS / 2 }, (_, i) => `other-${i}`);
  const file = path.join(tmpdir(), `wxacode-producers-${process.pid}.txt`);
  await writeFile(file, `${other.join('\n')}\n`);

  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let passes = 0;
  // Stops halfway through its second pass, the one that enqueues, until released.
  async function* heldSource() {
    const enqueuing = ++passes === 2;
    for (const [i, value] of held.entries()) {
      if (enqueuing && i === held.length / 2) await released;
      yield value;
    }
  }

  const fleet = new WorkerFleet(rig.env(prefix), ['worker', '--concurrency', '8']);
  await fleet.start(2);
  let doneWhileHeld = 0;
  const storage = createStorage(rig.config(prefix));
  try {
    const openWhileHeld = await fleet.during(async () => {
      const first = enqueueCampaign({
        redis: rig.redis,
        prefix,
        storage,
        campaign: 'shared',
        appid: CHAOS_APPID,
        options,
        input: heldSource,
        chunkRows: 10,
      });
      await waitFor(
        'the held producer to add its first rows',
        async () => (await store.get('shared'))?.total,
      );
      const second = await runCli(
        ['enqueue', file, '--campaign', 'shared', '--kind', 'unlimited', '--width', '280'],
        { env: rig.env(prefix) },
      );
      expect(second.code, second.stderr).toBe(0);
      const recorded = await waitFor('every row added so far to be done', async () => {
        const s = await campaignStatus(store, 'shared');
        return s.total > other.length && s.done === s.total && s;
      });
      const stateWhileHeld = (await store.get('shared'))!.state;
      release();
      await first;
      await settled(store, 'shared');
      return { stateWhileHeld, doneWhileHeld: recorded.done };
    });
    expect(openWhileHeld.stateWhileHeld, 'the state while a producer still adds rows').toBe('enqueuing');
    doneWhileHeld = openWhileHeld.doneWhileHeld;

    const meta = await waitFor('the manifest', async () => {
      const m = await store.get('shared');
      return m?.manifestKey !== undefined && m;
    });
    const lines = (await storage.get(meta.manifestKey!))!.toString('utf8').trim().split('\n').slice(1);
    const values = lines.map((line) => line.split(',')[0]!);
    expect([...values].sort()).toEqual([...held, ...other].sort());
    // The producers' chunks interleave in the record, each producer's rows in its own input order.
    expect(values.filter((v) => v.startsWith('held-'))).toEqual(held);
    expect(values.filter((v) => v.startsWith('other-'))).toEqual(other);
  } finally {
    await storage.close();
  }
  const account = await rig.audit(prefix, 'shared', options, [...held, ...other]);
  expect(account).toMatchObject({ rows: ROWS, done: ROWS, failed: 0, lost: 0 });
  report('producers', { ...account, doneWhileHeld });
});
