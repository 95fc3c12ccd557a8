/**
 * The library API: anything the CLI does, an admin script can do with these (see scripts/admin-example.ts).
 */
export * from './campaign/ledger.js';
export * from './campaign/manifest.js';
export * from './campaign/operations.js';
export * from './campaign/producer.js';
export { queueName } from './campaign/queue.js';
export * from './campaign/source.js';
export { type CampaignMeta, type CampaignState, CampaignStore, type RowStatus } from './campaign/store.js';
export * from './campaign/worker.js';
export * from './config.js';
export { AppLimiter } from './limiter.js';
export { createLogger, type Logger } from './log.js';
export { WorkerMetrics, type WorkerMetricsOptions } from './metrics.js';
export {
  checkHealth,
  type Health,
  type MetricsServer,
  type MetricsServerOptions,
  startMetricsServer,
  type WorkerState,
} from './metrics-server.js';
export * from './mock/index.js';
export * from './storage/index.js';
export { WechatClient } from './wechat/client.js';
export * from './wechat/errors.js';
export * from './wechat/params.js';
export { TokenProvider } from './wechat/token.js';
