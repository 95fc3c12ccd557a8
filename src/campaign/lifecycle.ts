/**
 * The one owner of a campaign's transitions beyond its rows: completing (and storing the manifest that goes with
 * it), stopping, resuming and deleting its records. Workers settle rows through it, producers and `retry` finish enqueues through it,
 * and `run` asks it for a manifest that is still missing, so a completed campaign gets its manifest whichever of
 * them completed it.
 */
import { type Logger, silentLogger } from '../log.js';
import { manifestKey, type Storage } from '../storage/index.js';
import { manifestText, recordSource } from './manifest.js';
import { recordKeys } from './record.js';
import {
  type CampaignMeta,
  type CampaignState,
  type CampaignStore,
  DELETE_RESULT,
  type ProducerLease,
  type RowOutcome,
  type SettleResult,
} from './store.js';

export class CampaignLifecycle {
  readonly #logger: Logger;

  constructor(
    readonly store: CampaignStore,
    /** Where manifests go; without it, completion is recorded and the manifest left for `retry` to store. */
    readonly storage?: Storage,
    logger?: Logger,
  ) {
    this.#logger = logger ?? silentLogger;
  }

  /** Record a queued row's outcome; the caller whose row completes the campaign stores its manifest. */
  async settleRow(campaign: string, slot: string, outcome: RowOutcome): Promise<SettleResult> {
    const result = await this.store.markRow(campaign, slot, outcome);
    if (result !== 'completed') return result;
    this.#logger.info({ campaign }, 'campaign completed');
    try {
      await this.#storeManifest(campaign);
    } catch (err) {
      // The row is settled: failing its job now would not bring the manifest back.
      this.#logger.error(
        { campaign, err: (err as Error).message },
        'could not store the manifest; `wxacode retry` stores it later and `wxacode export` lists every row',
      );
    }
    return result;
  }

  /**
   * Renew a producer's lease every third of its life until the returned function is called, so that the campaign
   * stays open however long the producer takes.
   */
  holdOpen(campaign: string, lease: ProducerLease): () => void {
    const timer = setInterval(() => {
      // A renewal that fails is tried again at the next tick, and each addRows renews the lease as well.
      this.store.holdOpen(campaign, lease).catch(() => undefined);
    }, lease.ms / 3);
    return () => clearInterval(timer);
  }

  /**
   * A producer (an enqueue, a retry) added its last row: once no other producer holds the campaign open, it is
   * active, or completed right away, and then its manifest is stored here (a storage failure is thrown to the
   * producer, whose user can retry). Without a producer, this completes a campaign whose producers are gone.
   */
  async finishEnqueue(
    campaign: string,
    producer?: string,
  ): Promise<{ state: SettleResult; manifestKey?: string }> {
    const state = await this.store.finishEnqueue(campaign, producer);
    if (state !== 'completed') return { state };
    this.#logger.info({ campaign }, 'campaign completed');
    return { state, manifestKey: await this.#storeManifest(campaign) };
  }

  /** Stop a running campaign; false when it was not running. Its pending rows wait for `resume`. */
  async stop(campaign: string, errcode: number, errmsg: string): Promise<boolean> {
    const stopped = await this.store.stop(campaign, errcode, errmsg);
    if (stopped) {
      this.#logger.error(
        { campaign, errcode, errmsg },
        `campaign ${campaign} stopped: ${errcode} (${errmsg}); every remaining row would fail the same way`,
      );
    }
    return stopped;
  }

  /** Clear a stop; the caller, holding `lease`, queues the rows again and then calls `finishEnqueue`. */
  async resume(meta: Pick<CampaignMeta, 'id' | 'appid'>, lease: ProducerLease): Promise<void> {
    await this.store.resume(meta.id, meta.appid, lease);
  }

  /**
   * Delete a campaign's records, in Redis and its record's files in storage, if its state is one of `states`
   * (and, with `completedMsAgo`, it completed that long ago): false when it was kept, with the outcome. Its codes
   * and manifest stay: other campaigns may share the codes. Its queued jobs are the caller's.
   */
  async deleteRecords(
    meta: Pick<CampaignMeta, 'id' | 'appid'>,
    states: CampaignState[],
    completedMsAgo?: number,
  ): Promise<{ deleted: boolean; outcome: string }> {
    const files = await recordKeys(this.store, meta);
    const outcome = await this.store.delete(meta.id, meta.appid, states, completedMsAgo);
    if (outcome !== DELETE_RESULT.deleted) return { deleted: false, outcome };
    if (this.storage) await this.storage.delete(files);
    else if (files.length > 0) {
      this.#logger.warn(
        { campaign: meta.id, files: files.length },
        'no storage given: the record files stay',
      );
    }
    return { deleted: true, outcome };
  }

  /**
   * Store the manifest of a completed campaign that has none yet (storage was down when it completed, or the
   * process that completed it had no storage). Returns the key it stored, if it stored one.
   */
  async ensureManifest(campaign: string): Promise<string | undefined> {
    const meta = await this.store.get(campaign);
    if (meta?.state !== 'completed' || meta.manifestKey) return undefined;
    return this.#storeManifest(campaign);
  }

  /** The CSV manifest, next to the campaign's codes, streamed: a campaign of millions of rows has one too. */
  async #storeManifest(campaign: string): Promise<string | undefined> {
    const storage = this.storage;
    if (!storage) return undefined;
    const meta = await this.store.get(campaign);
    if (!meta) throw new Error(`campaign ${campaign} does not exist`);
    const key = manifestKey(meta.appid, meta.id, 'csv');
    await storage.putStream(
      key,
      manifestText(recordSource(this.store, storage), storage, meta, 'csv'),
      'text/csv; charset=utf-8',
    );
    await this.store.setManifestKey(campaign, key);
    this.#logger.info({ campaign, manifest: storage.url(key) }, 'manifest stored');
    return key;
  }
}
