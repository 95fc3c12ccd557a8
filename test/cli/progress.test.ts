import { describe, expect, it } from 'vitest';
import type { CampaignStatus } from '../../src/campaign/operations.js';
import {
  followCampaign,
  formatDuration,
  type ProgressStream,
  progressText,
  RateMeter,
  renderProgress,
  settledReport,
} from '../../src/cli/progress.js';

function status(patch: Partial<CampaignStatus> = {}): CampaignStatus {
  const base = { done: 120, failed: 3, total: 200, state: 'active' as const, ...patch };
  return {
    campaign: 'spring',
    appid: 'wxprogress0000001',
    kind: 'unlimited',
    createdAt: new Date(0).toISOString(),
    pending: base.total - base.done - base.failed,
    ...base,
  };
}

function recorder(tty: boolean, columns = 100): ProgressStream & { text: string } {
  return {
    text: '',
    isTTY: tty,
    columns,
    write(chunk: string) {
      this.text += chunk;
    },
  };
}

describe('renderProgress', () => {
  it('shows done, failed, total, percent, rate and ETA beside a bar as wide as the line allows', () => {
    const text = '120 done, 3 failed of 200 (61%) · 1,234/min · ETA 0:04';
    const line = renderProgress(status(), 1234, 80);
    // 80 columns: the brackets and a space, 23 of bar (61.5% of it filled), then the text.
    expect(text.length).toBe(54);
    expect(line).toBe(`[${'#'.repeat(14)}${'-'.repeat(9)}] ${text}`);
  });

  it('caps the bar at 40 columns on a wide terminal', () => {
    expect(renderProgress(status(), 1234, 300)).toMatch(/^\[[#-]{40}\] /);
  });

  it('drops the bar, then cuts the text, on a narrow terminal', () => {
    const text = progressText(status(), 1234);
    expect(renderProgress(status(), 1234, text.length + 5)).toBe(text);
    expect(renderProgress(status(), 1234, 20)).toBe(text.slice(0, 20));
  });

  it('has no ETA before a rate is known, nor once the campaign has settled', () => {
    expect(progressText(status(), undefined)).toBe('120 done, 3 failed of 200 (61%) · ETA --:--');
    expect(progressText(status({ done: 200, failed: 0, state: 'completed' }), 600)).toBe(
      '200 done, 0 failed of 200 (100%) · 600/min · completed',
    );
    expect(progressText(status({ done: 0, failed: 0, total: 0, state: 'enqueuing' }), undefined)).toBe(
      '0 done, 0 failed of 0 (0%) · enqueuing',
    );
  });

  it('never shows 100% before every row is settled', () => {
    expect(progressText(status({ done: 1999, failed: 0, total: 2000 }), undefined)).toContain('(99%)');
  });
});

describe('RateMeter', () => {
  it('measures rows per minute over the recent window only', () => {
    const meter = new RateMeter(15_000);
    meter.add(0, 0);
    expect(meter.perMinute()).toBeUndefined();
    meter.add(500, 5);
    expect(meter.perMinute()).toBeUndefined();
    meter.add(5000, 50);
    meter.add(10_000, 100);
    expect(meter.perMinute()).toBe(600);
    // Stalled for longer than the window: the rate falls to zero instead of averaging the old pace in.
    meter.add(20_000, 100);
    meter.add(30_000, 100);
    expect(meter.perMinute()).toBe(0);
  });
});

describe('formatDuration', () => {
  it('writes minutes and seconds, and hours when needed', () => {
    expect(formatDuration(42_000)).toBe('0:42');
    expect(formatDuration(725_000)).toBe('12:05');
    expect(formatDuration(3_725_000)).toBe('1:02:05');
  });
});

describe('followCampaign', () => {
  it('redraws one line on a terminal and ends it when the campaign settles', async () => {
    const statuses = [status({ done: 10, failed: 0 }), status({ done: 150, failed: 0 })];
    const last = status({ done: 200, failed: 0, state: 'completed' });
    const stream = recorder(true);
    const final = await followCampaign({ poll: async () => statuses.shift() ?? last, stream });
    expect(final).toEqual(last);
    const draws = stream.text.split('\r').slice(1);
    expect(draws).toHaveLength(3);
    expect(draws.slice(0, 2).every((d) => d.endsWith('\x1b[K'))).toBe(true);
    expect(draws[2]).toMatch(/200 done, 0 failed of 200 \(100%\).*completed\x1b\[K\n$/);
  });

  it('writes plain lines at the interval elsewhere, and always the last one', async () => {
    let polls = 0;
    const stream = recorder(false);
    await followCampaign({
      poll: async () => (++polls < 4 ? status({ done: polls }) : status({ state: 'stopped' })),
      stream,
      intervalMs: 60_000,
    });
    const lines = stream.text.split('\n').filter(Boolean);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe('campaign spring: 1 done, 3 failed of 200 (2%) · ETA --:--');
    expect(lines[1]).toMatch(/^campaign spring: 120 done, 3 failed of 200 \(61%\) · [\d,]+\/min · stopped$/);
  });

  it('stops at once when aborted, drawing the status it has', async () => {
    const controller = new AbortController();
    let polls = 0;
    const stream = recorder(false);
    const pending = followCampaign({
      poll: async () => {
        polls++;
        return status();
      },
      stream,
      signal: controller.signal,
    });
    controller.abort();
    expect((await pending).state).toBe('active');
    expect(polls).toBeLessThanOrEqual(2);
    expect(stream.text).toContain('120 done, 3 failed of 200');
  });
});

describe('settledReport', () => {
  const manifest = 'file:///out/wx/manifests/spring.csv';

  it('exits 0 with the manifest when every row is done', () => {
    expect(settledReport(status({ done: 200, failed: 0, state: 'completed', manifest }), 'again')).toEqual({
      code: 0,
      out: ['campaign spring completed: 200 codes', `manifest: ${manifest}`],
      err: [],
    });
  });

  it('exits 1 when rows failed, pointing at retry', () => {
    const report = settledReport(status({ done: 197, state: 'completed', manifest }), 'run it again');
    expect(report.code).toBe(1);
    expect(report.out).toEqual([`manifest: ${manifest}`]);
    expect(report.err.join('\n')).toMatch(/3 failed rows of 200[\s\S]*`wxacode retry spring`.*run it again/);
  });

  it('exits 1 with the errcode that stopped the campaign', () => {
    const stopped = { errcode: 41030, errmsg: 'invalid page', at: new Date(0).toISOString() };
    const report = settledReport(status({ state: 'stopped', stopped }), 'run it again');
    expect(report.code).toBe(1);
    expect(report.err[0]).toBe(
      'campaign spring stopped: WeChat answered errcode 41030 (invalid page); 120 done, 80 not generated.',
    );
    expect(report.err[1]).toContain('`wxacode retry spring`');
  });
});
