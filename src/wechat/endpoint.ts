import { type Dispatcher, Pool } from 'undici';

/** Where requests to a WeChat API base URL go, for the code client and the token provider alike. */
export interface WechatEndpoint {
  origin: string;
  /** The base URL's path without trailing slashes, to put before each API path. */
  basePath: string;
  dispatcher: Dispatcher;
  /** Close the dispatcher if the endpoint made it; one the caller passed in stays the caller's. */
  close(): Promise<void>;
}

/** The endpoint of `baseUrl`, through `dispatcher` when given, else through a new Pool of its origin. */
export function wechatEndpoint(
  baseUrl: string,
  dispatcher: Dispatcher | undefined,
  pool: Pool.Options,
): WechatEndpoint {
  const base = new URL(baseUrl);
  const own = dispatcher === undefined ? new Pool(base.origin, pool) : undefined;
  return {
    origin: base.origin,
    basePath: base.pathname.replace(/\/+$/, ''),
    dispatcher: dispatcher ?? own!,
    close: async () => {
      await own?.close();
    },
  };
}
