/**
 * The Lua scripts in src/lua, in the manner of BullMQ's `src/commands/*.lua`. Each file opens with a comment
 * saying what its KEYS and ARGV hold; a line `-- @include <name>` stands for src/lua/includes/<name>.lua, so a
 * function several scripts share is written once. tsc does not copy .lua files: the package's `build` script
 * copies src/lua to dist/lua, next to this module's build, so the same relative URL serves both.
 */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

const DIRECTORY = new URL('./lua/', import.meta.url);
const INCLUDE = /^-- @include (\S+)[ \t]*$/gm;
const CONSTANT_NAME = /^[A-Z][A-Z0-9_]*$/;

export interface Script {
  numberOfKeys: number;
  lua: string;
}

/** A client with scripts defined as commands; each resolves to what its script returns. */
export type ScriptedRedis<Name extends string> = Redis &
  Record<Name, (...args: (string | number)[]) => Promise<unknown>>;

/** Values a script reads under these names, so that TypeScript and Lua share one definition. */
export type LuaConstants = Readonly<Record<string, string | number>>;

function constantLine(name: string, value: string | number): string {
  if (!CONSTANT_NAME.test(name)) throw new Error(`Lua constant name ${name} is not UPPER_CASE`);
  // A JSON string of plain characters is also a valid Lua string literal.
  if (typeof value === 'string' && !/^[\w -]*$/.test(value)) {
    throw new Error(`Lua constant ${name} must be plain characters, got ${JSON.stringify(value)}`);
  }
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new Error(`Lua constant ${name} must be a whole number, got ${value}`);
  }
  return `local ${name} = ${JSON.stringify(value)}`;
}

/**
 * The script `src/lua/<name>.lua` with its includes expanded and `constants` declared as locals ahead of it.
 * Call it once, at module load: the files are read here, and ioredis then runs the script by its SHA.
 */
export function luaScript(name: string, numberOfKeys: number, constants: LuaConstants = {}): Script {
  const body = readFileSync(new URL(`${name}.lua`, DIRECTORY), 'utf8').replace(
    INCLUDE,
    (_, include: string) => readFileSync(new URL(`includes/${include}.lua`, DIRECTORY), 'utf8').trimEnd(),
  );
  const prelude = Object.entries(constants).map(([key, value]) => constantLine(key, value));
  return { numberOfKeys, lua: [...prelude, body].join('\n') };
}

/**
 * Define `scripts` as commands on `redis` (once per client: several stores may share one) and return the client
 * typed with them. ioredis sends each body once and then calls it by SHA, loading it again only after NOSCRIPT.
 */
export function defineScripts<Name extends string>(
  redis: Redis,
  scripts: Readonly<Record<Name, Script>>,
): ScriptedRedis<Name> {
  for (const [name, script] of Object.entries<Script>(scripts)) {
    if (!(name in redis)) redis.defineCommand(name, script);
  }
  return redis as ScriptedRedis<Name>;
}
