/** Operations on existing campaigns: status and retry. The CLI is a thin shell over these. */
import type { ConnectionOptions, Queue } from 'bullmq';
import type { Storage } from '../storage/index.js';
import { CampaignLifecycle } from './lifecycle.js';
import { jobId, jobsFor, openQueue } from './queue.js';
import { type StorageTrouble, storageTrouble } from './storage-gate.js';
import {
  type CampaignMeta,
  type CampaignState,
  type CampaignStore,
  DELETE_RESULT,
  producerLease,
  type StopReason,
} from './store.js';

/** What every view of a campaign shows: what it is, its state and its counts. */
export interface CampaignCounts {
  campaign: string;
  appid: string;
  kind: CampaignMeta['kind'];
  state: CampaignState;
  total: number;
  /** Codes stored now or found already stored. */
  done: number;
  failed: number;
  pending: number;
  createdAt: string;
}

export interface CampaignStatus extends CampaignCounts {
  /** Why the campaign stopped, when it did. */
  stopped?: { errcode: number; errmsg: string; at: string };
  /** Why workers stopped working for the campaign's app (credentials refused), when they did. */
  appStopped?: { errcode: number; errmsg: string; at: string };
  /** Where the manifest is stored, once the campaign completed. */
  manifest?: string;
  /** Storage refuses writes: workers make no call until it takes them again (campaign/storage-gate.ts). */
  waitingOnStorage?: { target: string; code: string; error: string; since: string };
}

/** The campaign does not exist: a mistyped id, or another WXACODE_PREFIX. */
export class UnknownCampaignError extends Error {
  override readonly name = 'UnknownCampaignError';
  constructor(
    readonly campaign: string,
    prefix: string,
  ) {
    super(
      `campaign ${campaign} does not exist (under prefix ${prefix}); \`wxacode status\` lists the campaigns`,
    );
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function stopOf(stop: StopReason | undefined): CampaignStatus['stopped'] {
  return stop && { errcode: stop.errcode, errmsg: stop.errmsg, at: iso(stop.at) };
}

export async function loadCampaign(store: CampaignStore, campaign: string): Promise<CampaignMeta> {
  const meta = await store.get(campaign);
  if (!meta) throw new UnknownCampaignError(campaign, store.prefix);
  return meta;
}

function countsOf(meta: CampaignMeta): CampaignCounts {
  return {
    campaign: meta.id,
    appid: meta.appid,
    kind: meta.kind,
    state: meta.state,
    total: meta.total,
    done: meta.done,
    failed: meta.failed,
    pending: meta.total - meta.done - meta.failed,
    createdAt: iso(meta.createdAt),
  };
}

export function statusOf(
  meta: CampaignMeta,
  storage?: Storage,
  appStop?: StopReason,
  trouble?: StorageTrouble,
): CampaignStatus {
  const running = meta.state === 'active' || meta.state === 'enqueuing';
  return {
    ...countsOf(meta),
    stopped: stopOf(meta.stop),
    appStopped: stopOf(appStop),
    manifest: meta.manifestKey && storage ? storage.url(meta.manifestKey) : meta.manifestKey,
    waitingOnStorage: running && trouble ? { ...trouble, since: iso(trouble.since) } : undefined,
  };
}

export async function campaignStatus(
  store: CampaignStore,
  campaign: string,
  storage?: Storage,
): Promise<CampaignStatus> {
  const meta = await loadCampaign(store, campaign);
  return statusOf(
    meta,
    storage,
    await store.appStop(meta.appid, 'credentials'),
    await storageTrouble(store.redis, store.prefix),
  );
}

export async function allCampaignStatuses(
  store: CampaignStore,
  storage?: Storage,
): Promise<CampaignStatus[]> {
  const statuses: CampaignStatus[] = [];
  const trouble = await storageTrouble(store.redis, store.prefix);
  for (const id of await store.list()) {
    const meta = await store.get(id);
    if (meta) statuses.push(statusOf(meta, storage, await store.appStop(meta.appid, 'credentials'), trouble));
  }
  return statuses;
}

export interface RetryResult {
  campaign: string;
  /** Rows queued now (failed ones put back, and the window of a stopped or interrupted campaign). */
  requeued: number;
  /** The stop that was cleared, if the campaign was stopped. */
  resumedFrom?: CampaignStatus['stopped'];
  /** The manifest key, when this retry stored a completed campaign's missing manifest. */
  manifestStored?: string;
}

export interface ResumeOptions {
  /** Queue the failed rows again too (`retry`); without it they stay failed (the console's resume). */
  failed?: boolean;
  /** Where a completed campaign's manifest goes, if it is still missing (storage was down when it completed). */
  storage?: Storage;
  /** How long the campaign stays open for this producer if it dies before finishing. Default 30 s. */
  producerLeaseMs?: number;
}

/**
 * Resume a campaign: clear its stop (and the app stops a retry is meant to clear), queue again the rows in its
 * window, whose jobs workers dropped while it was stopped (deterministic job ids make that a no-op for rows still
 * queued), and with `failed`, put its failed rows back in the window first. The feeders go on with the rest.
 */
export async function resumeCampaign(
  store: CampaignStore,
  connection: ConnectionOptions,
  campaign: string,
  { failed = false, storage, producerLeaseMs }: ResumeOptions = {},
): Promise<RetryResult> {
  const meta = await loadCampaign(store, campaign);
  const lifecycle = new CampaignLifecycle(store, storage);
  if (meta.stop?.errcode === 45029) await store.clearAppStop(meta.appid, 'acQuota');
  await store.clearAppStop(meta.appid, 'credentials');
  // A resume is a producer: the rows it turns back to pending must not let the campaign complete without them.
  const lease = producerLease(producerLeaseMs);
  await lifecycle.resume(meta, lease);
  const release = lifecycle.holdOpen(campaign, lease);
  const queue = openQueue(connection, store.prefix, meta.appid);
  try {
    if (failed) {
      for await (const batch of store.failedRows(campaign)) {
        await store.requeueFailed(
          campaign,
          batch.map(({ slot }) => slot),
        );
      }
    }
    for await (const batch of store.windowRows(campaign)) {
      await queue.addBulk(jobsFor(campaign, meta.priority, batch));
    }
  } finally {
    release();
    await queue.close();
  }
  const requeued = (await store.get(campaign))?.queued ?? 0;
  const finished = await lifecycle.finishEnqueue(campaign, lease.id);
  const manifestStored = finished.manifestKey ?? (await lifecycle.ensureManifest(campaign));
  return { campaign, requeued, resumedFrom: stopOf(meta.stop), manifestStored };
}

/** `wxacode retry`: queue a campaign's failed rows again and resume it if it was stopped. */
export function retryCampaign(
  store: CampaignStore,
  connection: ConnectionOptions,
  campaign: string,
  storage?: Storage,
  producerLeaseMs?: number,
): Promise<RetryResult> {
  return resumeCampaign(store, connection, campaign, { failed: true, storage, producerLeaseMs });
}

/** What `wxacode campaigns` lists: a line per campaign. */
export interface CampaignSummary extends CampaignCounts {
  completedAt?: string;
  /** Seconds since it was created. */
  ageSeconds: number;
}

export async function listCampaigns(store: CampaignStore, now = Date.now()): Promise<CampaignSummary[]> {
  const summaries: CampaignSummary[] = [];
  for (const id of await store.list()) {
    const meta = await store.get(id);
    if (!meta) continue;
    summaries.push({
      ...countsOf(meta),
      completedAt: meta.state === 'completed' && meta.completedAt ? iso(meta.completedAt) : undefined,
      ageSeconds: Math.max(0, Math.floor((now - meta.createdAt) / 1000)),
    });
  }
  return summaries;
}

/** The campaign is enqueuing or active: deleting it would pull its records from under its producers and workers. */
export class CampaignBusyError extends Error {
  override readonly name = 'CampaignBusyError';
  constructor(
    readonly campaign: string,
    readonly state: CampaignState,
  ) {
    super(
      `campaign ${campaign} is ${state}: wait until it completes or stops (\`wxacode status ${campaign}\`), or pass --force`,
    );
  }
}

export interface DeleteResult {
  campaign: string;
  /** The state it had. */
  state: CampaignState;
  /** Rows whose records were dropped. */
  rows: number;
  /** Jobs of its rows still queued, removed. */
  jobsRemoved: number;
}

/** The states a campaign may be deleted in unless forced: no producer or worker is counting on its records. */
const SETTLED_STATES: CampaignState[] = ['completed', 'stopped'];
const ALL_STATES: CampaignState[] = ['enqueuing', 'active', 'stopped', 'completed'];

/**
 * Remove the jobs of a campaign's queued rows from its app's queue, by their deterministic ids (one left locked by
 * a worker finishes, and finds no row to record). Settled rows have no job left to remove.
 */
export async function removeCampaignJobs(
  queue: Queue,
  store: CampaignStore,
  campaign: string,
): Promise<number> {
  let removed = 0;
  for await (const batch of store.windowRows(campaign)) {
    const results = await Promise.all(batch.map(({ slot }) => queue.remove(jobId(campaign, slot))));
    removed += results.filter((n) => n === 1).length;
  }
  return removed;
}

/**
 * Delete a campaign's records: in Redis its hash, chunk list, window, failed rows, producers, queued jobs and
 * entries in the indexes, and its record's files in storage. Its codes and manifest stay: other campaigns may
 * share the codes. A campaign that is enqueuing or active is refused unless `force`.
 */
export async function deleteCampaign(
  store: CampaignStore,
  connection: ConnectionOptions,
  campaign: string,
  { force = false, storage }: { force?: boolean; storage?: Storage } = {},
): Promise<DeleteResult> {
  const meta = await loadCampaign(store, campaign);
  const states = force ? ALL_STATES : SETTLED_STATES;
  if (!states.includes(meta.state)) throw new CampaignBusyError(campaign, meta.state);
  const queue = openQueue(connection, store.prefix, meta.appid);
  let jobsRemoved: number;
  try {
    jobsRemoved = await removeCampaignJobs(queue, store, campaign);
  } finally {
    await queue.close();
  }
  const { outcome } = await new CampaignLifecycle(store, storage).deleteRecords(meta, states);
  if (outcome === DELETE_RESULT.unknown) throw new UnknownCampaignError(campaign, store.prefix);
  // A retry or an enqueue reopened it meanwhile: its rows are pending again, and the reconcile queues them.
  if (outcome !== DELETE_RESULT.deleted) throw new CampaignBusyError(campaign, outcome as CampaignState);
  return { campaign, state: meta.state, rows: meta.total, jobsRemoved };
}
