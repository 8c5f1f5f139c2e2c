// Structured logs (pino) configured from upstream's LOGGER_* variables.
import { pino, type Logger } from 'pino';
import type { Config } from './config.js';

export type { Logger };

/**
 * An error as pino logs it, without the Redis command that failed: ioredis hangs the command and
 * its arguments on the error, and those hold what was being stored (a job's input, its bot token).
 */
function withoutCommand(err: unknown): unknown {
  const serialized = pino.stdSerializers.err(err as Error) as unknown;
  if (typeof serialized !== 'object' || serialized === null) return serialized; // a message given as a string
  const { command: _command, ...rest } = serialized as Record<string, unknown>;
  return rest;
}

export function createLogger(config: Pick<Config, 'logConsole' | 'logJson' | 'logLevel'>, name: string): Logger {
  if (!config.logConsole) return pino({ enabled: false });
  const options = { name, level: config.logLevel, serializers: { err: withoutCommand } };
  if (config.logJson) return pino(options);
  // Plain text without extra dependencies: one line per record, level and message first.
  return pino(options, {
    write(line: string) {
      const { level, time, msg, name: n, ...rest } = JSON.parse(line);
      const label = pino.levels.labels[level] ?? level;
      const extra = Object.keys(rest).filter((k) => k !== 'pid' && k !== 'hostname');
      const tail = extra.length ? ` ${JSON.stringify(Object.fromEntries(extra.map((k) => [k, rest[k]])))}` : '';
      process.stdout.write(`${new Date(time).toISOString()} ${label.toUpperCase()} [${n}] ${msg}${tail}\n`);
    },
  });
}
