import { setTimeout as sleep } from 'node:timers/promises';

type Maybe<T> = T | undefined | null | false;

/**
 * Poll `check` until it returns a value (anything but undefined, null or false) and return it. The default
 * timeout is vitest's test timeout, so a wait that never ends fails here, naming what it waited for.
 */
export async function waitFor<T>(
  what: string,
  check: () => Maybe<T> | Promise<Maybe<T>>,
  { timeoutMs = 30_000, everyMs = 100 }: { timeoutMs?: number; everyMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
