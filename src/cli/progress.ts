/**
 * How `run`, `demo` and `watch` show a campaign's progress: a bar redrawn four times a second on a terminal,
 * a plain line every few seconds otherwise (logs, CI), and one closing summary that decides the exit code.
 */

import { constants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CampaignStatus } from '../campaign/operations.js';
import { LOCAL_ERRCODE } from '../campaign/policy.js';
import { untilSignal } from './context.js';

/** A completed or stopped campaign: nothing more happens to it without a retry. */
export function isSettled(status: CampaignStatus): boolean {
  return status.state === 'completed' || status.state === 'stopped';
}

/** Rows settled per minute over the last `windowMs`, from samples of the settled count. */
export class RateMeter {
  readonly #windowMs: number;
  #samples: { at: number; settled: number }[] = [];

  constructor(windowMs = 15_000) {
    this.#windowMs = windowMs;
  }

  add(at: number, settled: number): void {
    this.#samples.push({ at, settled });
    // The oldest sample kept is the last one at or before the window's start: the base the rate is measured from.
    while (this.#samples.length > 2 && this.#samples[1]!.at <= at - this.#windowMs) this.#samples.shift();
  }

  /** Undefined until the samples span a second. */
  perMinute(): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (!first || !last || last.at - first.at < 1000) return undefined;
    return ((last.settled - first.settled) * 60_000) / (last.at - first.at);
  }
}

/** `0:42`, `12:05`, `3:07:00`. */
export function formatDuration(ms: number): string {
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** `120 done, 3 failed of 200 (61%) · 1,234/min · ETA 0:05`, with the state when it is not `active`. */
export function progressText(status: CampaignStatus, perMinute: number | undefined): string {
  const { done, failed, total, pending } = status;
  const percent = total === 0 ? 0 : Math.floor(((done + failed) * 100) / total);
  const parts = [`${done} done, ${failed} failed of ${total} (${percent}%)`];
  if (perMinute !== undefined) parts.push(`${Math.round(perMinute).toLocaleString('en-US')}/min`);
  if (pending > 0 && status.state === 'active') {
    parts.push(`ETA ${perMinute ? formatDuration((pending / perMinute) * 60_000) : '--:--'}`);
  }
  if (status.state !== 'active') parts.push(status.state);
  if (status.waitingOnStorage) parts.push(`waiting on storage (${status.waitingOnStorage.code})`);
  return parts.join(' · ');
}

const MAX_BAR = 40;
const MIN_BAR = 10;

/** One terminal line of at most `width` characters: a bar when there is room for one, then the text. */
export function renderProgress(status: CampaignStatus, perMinute: number | undefined, width: number): string {
  const text = progressText(status, perMinute);
  const barWidth = Math.min(MAX_BAR, width - text.length - 3);
  if (barWidth < MIN_BAR) return text.slice(0, Math.max(0, width));
  const ratio = status.total === 0 ? 0 : (status.done + status.failed) / status.total;
  const filled = Math.min(barWidth, Math.floor(ratio * barWidth));
  return `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${text}`;
}

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface FollowOptions {
  /** The campaign's status now (one HGETALL). */
  poll(): Promise<CampaignStatus>;
  /** Default process.stderr: a bar when it is a terminal, plain lines otherwise. */
  stream?: ProgressStream;
  /** Between plain lines. Default 5000 ms. */
  intervalMs?: number;
  /** Stop following before the campaign settles (a signal, a worker that stopped). */
  signal?: AbortSignal;
}

const TTY_REDRAW_MS = 250;

/** Show progress until the campaign settles or `signal` aborts; the last status is drawn and returned. */
export async function followCampaign(o: FollowOptions): Promise<CampaignStatus> {
  const stream = o.stream ?? process.stderr;
  const tty = stream.isTTY === true;
  const intervalMs = o.intervalMs ?? 5000;
  const meter = new RateMeter();
  let printedAt = Number.NEGATIVE_INFINITY;
  for (;;) {
    const status = await o.poll();
    const now = Date.now();
    meter.add(now, status.done + status.failed);
    const last = isSettled(status) || o.signal?.aborted === true;
    if (tty) {
      // One column short of the width: writing the last column makes some terminals wrap.
      const line = renderProgress(status, meter.perMinute(), (stream.columns ?? 80) - 1);
      stream.write(`\r${line}\x1b[K${last ? '\n' : ''}`);
    } else if (last || now - printedAt >= intervalMs) {
      stream.write(`campaign ${status.campaign}: ${progressText(status, meter.perMinute())}\n`);
      printedAt = now;
    }
    if (last) return status;
    await sleep(tty ? TTY_REDRAW_MS : Math.min(intervalMs, 500), undefined, { signal: o.signal }).catch(
      () => undefined,
    );
  }
}

/** Stops following on the first SIGINT or SIGTERM (or on `abort()`), and remembers which signal it was. */
export class Interrupt {
  readonly #controller = new AbortController();
  #received: NodeJS.Signals | undefined;

  constructor() {
    void untilSignal().then((signal) => {
      this.#received = signal;
      this.#controller.abort();
    });
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get received(): NodeJS.Signals | undefined {
    return this.#received;
  }

  abort(): void {
    this.#controller.abort();
  }

  /** The shell's convention for a command ended by a signal: 128 + its number (130 SIGINT, 143 SIGTERM). */
  get exitCode(): number {
    return this.#received ? 128 + constants.signals[this.#received] : 0;
  }
}

export interface SettledReport {
  code: 0 | 1;
  /** For standard output: the manifest, when the campaign completed. */
  out: string[];
  /** For standard error: what went wrong and what to do. */
  err: string[];
}

/**
 * The closing words on a settled campaign, and the exit code: 0 when every row is done, 1 when rows failed or
 * the campaign stopped. `thenWhat` says what follows a `wxacode retry` (run the command again, or the fleet).
 */
export function settledReport(status: CampaignStatus, thenWhat: string): SettledReport {
  const { campaign, done, failed, total } = status;
  const out = status.manifest ? [`manifest: ${status.manifest}`] : [];
  if (status.state === 'stopped') {
    const stop = status.stopped;
    const why =
      stop?.errcode === LOCAL_ERRCODE
        ? stop.errmsg
        : `WeChat answered errcode ${stop?.errcode} (${stop?.errmsg})`;
    return {
      code: 1,
      out,
      err: [
        `campaign ${campaign} stopped: ${why}; ${done} done, ${total - done} not generated.`,
        `Fix the cause, then \`wxacode retry ${campaign}\` and ${thenWhat}.`,
      ],
    };
  }
  if (failed > 0) {
    return {
      code: 1,
      out,
      err: [
        `campaign ${campaign} completed with ${failed} failed row${failed === 1 ? '' : 's'} of ${total}; ` +
          'the manifest gives the errcode and errmsg of each.',
        `\`wxacode retry ${campaign}\` queues them again; then ${thenWhat}.`,
      ],
    };
  }
  return { code: 0, out: [`campaign ${campaign} completed: ${done} codes`, ...out], err: [] };
}

/** Print the closing words on a settled campaign; returns the exit code. */
export function printSettled(status: CampaignStatus, thenWhat: string): 0 | 1 {
  const report = settledReport(status, thenWhat);
  for (const line of report.out) process.stdout.write(`${line}\n`);
  for (const line of report.err) process.stderr.write(`${line}\n`);
  return report.code;
}
