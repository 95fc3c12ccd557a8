/** `wxacode serve`: the console (HTTP API, dashboard, read-only queue pages) beside the workers. */
import type { Command } from 'commander';
import { loadConsoleSettings } from '../console/auth.js';
import { isLoopback, startConsole } from '../console/server.js';
import {
  cliConfig,
  cliLogger,
  connectRedis,
  type GlobalFlags,
  parseInteger,
  UsageError,
  untilSignal,
} from './context.js';

interface ServeFlags {
  port: string;
  host: string;
  auth: boolean;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .summary('the console: HTTP API, dashboard and read-only queue pages, with token authentication')
    .option('--port <port>', 'port to listen on', '8080')
    .option('--host <host>', 'address to listen on (0.0.0.0 for every interface)', '127.0.0.1')
    .option('--no-auth', 'no tokens: everyone is admin (a loopback --host only)')
    .addHelpText(
      'after',
      `
Tokens come from WXACODE_API_TOKENS ("name:scope:token,..." with scope read or admin) or the file named by
WXACODE_API_TOKENS_FILE (one name:scope:token a line). Uploads are limited to WXACODE_API_UPLOAD_MAX_MB (256).
Without any token the console refuses to start, unless --no-auth is given with a loopback --host.

Examples:
  WXACODE_API_TOKENS=ops:admin:$(openssl rand -hex 24) wxacode serve --port 8080
  wxacode serve --no-auth            # on 127.0.0.1 only
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/v1/campaigns`,
    )
    .action(async (flags: ServeFlags, command: Command) => {
      const config = cliConfig();
      const settings = loadConsoleSettings(process.env);
      const port = parseInteger('--port', flags.port, 0, 65535);
      const noAuth = !flags.auth;
      if (noAuth && !isLoopback(flags.host)) {
        throw new UsageError(
          `--no-auth is allowed with a loopback --host only (127.0.0.1, ::1), not ${flags.host}`,
        );
      }
      if (!noAuth && settings.tokens.length === 0) {
        throw new UsageError(
          'no API token is configured: set WXACODE_API_TOKENS (name:scope:token,...) or WXACODE_API_TOKENS_FILE, or pass --no-auth on a loopback host',
        );
      }
      const logger = cliLogger(command.optsWithGlobals<GlobalFlags>());
      // Checked first so that a wrong REDIS_URL is one sentence, not a console answering 500s.
      (await connectRedis(config.redisUrl)).disconnect();
      const console = await startConsole({
        config,
        tokens: settings.tokens,
        noAuth,
        uploadLimitBytes: settings.uploadLimitBytes,
        host: flags.host,
        port,
        logger,
      });
      logger.info(
        { url: console.url, holders: settings.tokens.map((t) => `${t.name} (${t.scope})`), auth: !noAuth },
        'console listening',
      );
      process.stderr.write(
        `wxacode console on ${console.url}/ (API ${console.url}/v1, queues ${console.url}/queues)\n`,
      );
      await untilSignal();
      await console.close();
    });
}
