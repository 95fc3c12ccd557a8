/** The environment of a `wxacode` process run by a test or the bench against its own Redis, mock and storage. */
export interface WxacodeSettings {
  redisUrl: string;
  prefix: string;
  /** appid → AppSecret. */
  apps: Record<string, string>;
  /** The mock WeChat API's URL. */
  wechatUrl: string;
  /** `<count>/<duration>`, as WXACODE_RATE_LIMIT takes it. */
  rate: string;
  storage: string;
}

export function wxacodeEnv(s: WxacodeSettings): Record<string, string> {
  const [[appid, secret], ...others] = Object.entries(s.apps) as [[string, string], ...[string, string][]];
  return {
    REDIS_URL: s.redisUrl,
    WXACODE_PREFIX: s.prefix,
    // The first app apart, so that a test can give it a wrong WECHAT_SECRET alone.
    WECHAT_APPID: appid,
    WECHAT_SECRET: secret,
    ...(others.length > 0 && { WECHAT_APPS: others.map(([id, key]) => `${id}:${key}`).join(',') }),
    WECHAT_API_BASE_URL: s.wechatUrl,
    WXACODE_RATE_LIMIT: s.rate,
    WXACODE_STORAGE: s.storage,
  };
}
