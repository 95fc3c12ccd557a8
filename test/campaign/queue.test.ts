import { afterAll, describe, expect, it } from 'vitest';
import {
  ATTEMPTS,
  JOB_NAME,
  jobId,
  jobsFor,
  openQueue,
  queueName,
  retryDelay,
} from '../../src/campaign/queue.js';
import { PRIORITIES } from '../../src/campaign/store.js';
import { connect, deletePrefix, testPrefix } from '../helpers/redis.js';

describe('campaign jobs', () => {
  const redis = connect();
  const prefix = testPrefix();

  afterAll(async () => {
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it('gives each slot of a campaign one short, deterministic job id', () => {
    expect(jobId('spring', '0:1')).toBe(jobId('spring', '0:1'));
    expect(jobId('spring', '0:1')).not.toBe(jobId('spring', '0:2'));
    expect(jobId('spring', '0:1')).not.toBe(jobId('spring', '1:0'));
    expect(jobId('spring', '0:1')).not.toBe(jobId('autumn', '0:1'));
    expect(jobId('spring', '0:1')).toMatch(/^j[A-Za-z0-9_-]{11}$/);
    expect(jobId('a-campaign-id-of-the-longest-kind-0123456789-0123456789-01234567', '999:9999')).toMatch(
      /^j[A-Za-z0-9_-]{11}$/,
    );
  });

  it('carries the campaign, slot and value, with the priority and the job id of the slot', () => {
    const [job] = jobsFor('spring', PRIORITIES.low, [{ slot: '3:14', value: 'id=1' }]);
    expect(job).toMatchObject({
      name: JOB_NAME,
      data: { c: 'spring', s: '3:14', v: 'id=1' },
      opts: { jobId: jobId('spring', '3:14'), priority: PRIORITIES.low, attempts: ATTEMPTS },
    });
  });

  it('stores a job in one small hash, queued once however often it is added', async () => {
    const queue = openQueue(redis, prefix, 'wxq');
    const row = { slot: '12:9999', value: 'id=12345&src=poster' };
    const jobs = jobsFor('spring-2026', PRIORITIES.normal, [row, row]);
    await queue.addBulk(jobs);
    await queue.addBulk(jobs);
    expect(await queue.getPrioritizedCount()).toBe(1);
    const key = `${prefix}:${queueName('wxq')}:${jobs[0]!.opts.jobId}`;
    // The priority every job carries takes its options past Redis's compact hash encoding (64 bytes a field):
    // about 630 bytes a job, bounded in number by the window.
    expect(JSON.parse((await redis.hget(key, 'opts'))!)).toMatchObject({ priority: PRIORITIES.normal });
    expect(await redis.memory('USAGE', key)).toBeLessThan(700);
    await queue.close();
  });

  it('takes jobs by priority, and in the order added within one', async () => {
    const queue = openQueue(redis, prefix, 'wxorder');
    const rows = (tag: string) => [0, 1, 2].map((row) => ({ slot: `0:${row}`, value: `${tag}${row}` }));
    await queue.addBulk(jobsFor('low', PRIORITIES.low, rows('l')));
    await queue.addBulk(jobsFor('normal', PRIORITIES.normal, rows('n')));
    await queue.addBulk(jobsFor('high', PRIORITIES.high, rows('h')));
    await queue.addBulk(jobsFor('normal2', PRIORITIES.normal, rows('m')));
    const order = (await queue.getPrioritized(0, -1)).map((job) => (job.data as { v: string }).v);
    expect(order).toEqual(['h0', 'h1', 'h2', 'n0', 'n1', 'n2', 'm0', 'm1', 'm2', 'l0', 'l1', 'l2']);
    await queue.close();
  });

  it('backs off exponentially with jitter', () => {
    for (let i = 0; i < 50; i++) {
      const first = retryDelay(1);
      const fourth = retryDelay(4);
      expect(first).toBeGreaterThanOrEqual(500);
      expect(first).toBeLessThanOrEqual(1000);
      expect(fourth).toBeGreaterThanOrEqual(4000);
      expect(fourth).toBeLessThanOrEqual(8000);
    }
  });
});
