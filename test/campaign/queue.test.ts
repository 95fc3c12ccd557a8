import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import { jobId, jobsFor, retryDelay } from '../../src/campaign/queue.js';
import { connect, deletePrefix, testPrefix } from '../helpers/redis.js';

describe('campaign jobs', () => {
  const redis = connect();
  const prefix = testPrefix();

  afterAll(async () => {
    await deletePrefix(redis, prefix);
    redis.disconnect();
  });

  it('gives each row of a campaign one short, deterministic job id', () => {
    expect(jobId('spring', 'id=1')).toBe(jobId('spring', 'id=1'));
    expect(jobId('spring', 'id=1')).not.toBe(jobId('spring', 'id=2'));
    expect(jobId('spring', 'id=1')).not.toBe(jobId('autumn', 'id=1'));
    expect(jobId('spring', 'id=1')).toMatch(/^j[A-Za-z0-9_-]{11}$/);
  });

  it('stores a job in Redis compact hash encoding, queued once however often it is added', async () => {
    const queue = new Queue('codes-wxq', { connection: redis, prefix });
    const jobs = jobsFor('spring-2026', ['id=12345&src=poster', 'id=12345&src=poster']);
    await queue.addBulk(jobs);
    await queue.addBulk(jobs);
    expect(await queue.getWaitingCount()).toBe(1);
    const key = `${prefix}:codes-wxq:${jobs[0]!.opts.jobId}`;
    expect(await redis.object('ENCODING', key)).toBe('listpack');
    expect(await redis.memory('USAGE', key)).toBeLessThan(400);
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
