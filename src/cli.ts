// calls-offloader: the one executable. `serve` is the embedded default (API and a worker process,
// and a local Redis when none is configured or running); `api` and `worker` run the halves alone
// for deployments that scale them apart.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { ConfigError, loadConfig, sfuBaseUrl, unknownVariables, variables, type Config } from './config.js';
import { callPageUrl, mintToken, roles, type Role } from './sfu/token.js';
import { createLogger, type Logger } from './log.js';
import { createServices, startApiInstance, startSfuInstance, startWorkerInstance } from './services.js';
import { buildServer } from './api/server.js';
import { buildOpenApi, toYaml } from './api/openapi.js';
import { version } from './version.js';

const HELP = `calls-offloader ${version.buildVersion}: recording, transcription and live-caption jobs for Mattermost Calls

Usage: calls-offloader <command>

Commands:
  serve     API, a worker process and the SFU process together (the embedded default).
            Starts a local redis-server when REDIS_URL is not set and nothing answers on
            127.0.0.1:6379.
  api       the HTTP API alone (any number of instances may share one Redis)
  worker    a worker alone: takes jobs from Redis and runs them with the configured runner
  sfu       the bundled SFU alone: call page and WebSocket signalling on SFU_LISTENADDRESS
  token     print a link to join a call from a browser:
              token --call <call id> --user <user id> --name <display name>
                    [--role participant|bot] [--ttl <seconds>]
  openapi   print the OpenAPI description of the API (openapi.yaml)
  version   print the version
  help      this text

Configuration comes from environment variables; the README lists them all. The main ones:
${Object.values(variables)
  .filter((v) =>
    ['API_HTTP_LISTENADDRESS', 'JOBS_APITYPE', 'JOBS_MAXCONCURRENTJOBS', 'REDIS_URL', 'SFU_LISTENADDRESS'].includes(
      v.name,
    ),
  )
  .map((v) => `  ${v.name.padEnd(26)} default ${v.default}`)
  .join('\n')}
`;

async function main(argv: string[]): Promise<void> {
  const command = argv[0] ?? 'help';
  if (command === 'help' || command === '--help' || command === '-h') return void process.stdout.write(HELP);
  if (command === 'version' || command === '--version') return void process.stdout.write(`${version.buildVersion}\n`);
  if (!['serve', 'api', 'worker', 'sfu', 'token', 'openapi'].includes(command)) {
    process.stderr.write(`unknown command ${JSON.stringify(command)}\n\n${HELP}`);
    process.exitCode = 2;
    return;
  }

  const config = loadConfig();
  const log = createLogger(config, command);
  for (const name of unknownVariables()) log.warn(`${name} is not a setting of this service (a typo?); it is ignored`);

  if (command === 'worker') return runWorker(config, log);
  if (command === 'sfu') return runSfu(config, log);
  if (command === 'token') return printToken(config, log, argv.slice(1));
  if (command === 'openapi') return printOpenApi(config, log);
  const redis = command === 'serve' ? await ensureRedis(config, log) : undefined;
  const children =
    command === 'serve' ? ['worker', 'sfu'].map((c) => supervise(c, redis?.url ?? config.redisUrl, log)) : [];
  let stopApi: () => Promise<void> = async () => undefined;
  const stopAll = async () => {
    await Promise.all(children.map((c) => c.stop()));
    await stopApi();
    redis?.stop();
  };
  // From here a signal, or an API that cannot start (its port taken, a TLS file gone), stops the
  // worker, the SFU and the Redis started above: they ran on without the API, taking jobs.
  onShutdown(log, stopAll);
  try {
    // The API answers (/version first, for the plugin) only once the calls it hands out can be joined.
    if (command === 'serve') await untilAnswers(`${sfuBaseUrl(config)}/healthz`, 30_000, log);
    stopApi = await runApi(config, log);
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function untilAnswers(url: string, timeoutMs: number, log: Logger): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (
      await fetch(url, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 100));
  }
  log.warn({ url }, `the SFU did not answer within ${timeoutMs / 1000} s; starting the API anyway`);
}

async function runSfu(config: Config, log: Logger): Promise<void> {
  const sfu = await startSfuInstance(config, log);
  log.info(
    { url: sfu.url, media: `${config.sfuIceAddress} udp ${config.sfuIcePortRange.join('-')}`, srtp: sfu.srtp },
    'sfu listening',
  );
  onShutdown(log, () => sfu.close());
}

async function printToken(config: Config, log: Logger, args: string[]): Promise<void> {
  const flag = (name: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const call = flag('call') ?? '';
  const user = flag('user') ?? '';
  const name = flag('name') ?? user;
  const role = (flag('role') ?? 'participant') as Role;
  const ttl = Number(flag('ttl') ?? 3600);
  if (!/^[a-z0-9]{26}$/.test(call)) throw new UsageError('--call must be 26 characters of a-z and 0-9');
  if (!user) throw new UsageError('--user is required');
  if (!roles.includes(role)) throw new UsageError('--role must be participant or bot');
  if (!Number.isInteger(ttl) || ttl < 10) throw new UsageError('--ttl must be a whole number of seconds, at least 10');
  const services = createServices(config, log);
  try {
    const token = mintToken(await services.tokenSecret(), { call, user, name, role, ttlSec: ttl });
    process.stdout.write(`${callPageUrl(sfuBaseUrl(config), call, token)}\n`);
  } finally {
    await services.close();
  }
}

class UsageError extends Error {}

async function runApi(config: Config, log: Logger): Promise<() => Promise<void>> {
  const api = await startApiInstance(config, log);
  const loopback = /^(127\.|::1$|localhost$)/.test(config.listen.host);
  if (config.allowSelfRegistration && !loopback) {
    log.warn(
      'self-registration is on and the API is reachable from the network: any host that reaches it can register; consider API_SECURITY_ALLOWSELFREGISTRATION=false',
    );
  }
  return () => api.close();
}

async function printOpenApi(config: Config, log: Logger): Promise<void> {
  const services = createServices(config, log);
  const { app, routes } = await buildServer({ config, log, ...services });
  process.stdout.write(toYaml(buildOpenApi(routes, version.buildVersion)));
  await app.close();
  await services.close();
}

async function runWorker(config: Config, log: Logger): Promise<void> {
  const worker = await startWorkerInstance(config, log);
  onShutdown(log, () => worker.close());
}

/**
 * What the worker and SFU processes get: no API settings. Neither uses them, and they hold the
 * admin secret and the TLS key: no process gets a secret it does not use.
 */
export function childEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('API_')));
}

/** A worker or the SFU as a child process: a crash costs its jobs or calls, not the API. Restarted after a pause. */
function supervise(command: string, redisUrl: string, log: Logger) {
  const cli = fileURLToPath(import.meta.url);
  let child: ChildProcess | undefined;
  let stopping = false;
  const start = () => {
    child = spawn(process.execPath, [cli, command], {
      stdio: 'inherit',
      env: { ...childEnv(process.env), REDIS_URL: redisUrl },
    });
    child.on('exit', (code, signal) => {
      if (stopping) return;
      log.error({ code, signal }, `${command} process ended; starting a new one in 1 s`);
      setTimeout(start, 1000).unref();
    });
  };
  start();
  return {
    stop: () =>
      new Promise<void>((resolve) => {
        stopping = true;
        if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * With REDIS_URL unset and no Redis on 127.0.0.1:6379, start a private redis-server there and stop
 * it on exit: the embedded default needs no setup. It keeps its data in JOBS_DATADIR/redis (an
 * append-only file): jobs, their logs and clients outlive a restart, and their directories with them.
 */
async function ensureRedis(config: Config, log: Logger): Promise<{ url: string; stop(): void } | undefined> {
  if (process.env.REDIS_URL) return undefined;
  if (await answers(config.redisUrl)) return undefined;
  const binary = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find(existsSync);
  if (!binary) {
    log.warn(
      'no Redis answers on 127.0.0.1:6379 and redis-server is not installed (scripts/install-system-deps.sh installs it)',
    );
    return undefined;
  }
  const dir = join(config.dataDir, 'redis');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const child = spawn(
    binary,
    ['--bind', '127.0.0.1', '--port', '6379', '--dir', dir, '--save', '', '--appendonly', 'yes'],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 50 && !(await answers(config.redisUrl)); i++) await new Promise((r) => setTimeout(r, 100));
  log.info({ pid: child.pid }, 'started a local redis-server on 127.0.0.1:6379');
  return { url: config.redisUrl, stop: () => void child.kill('SIGTERM') };
}

async function answers(url: string): Promise<boolean> {
  const probe = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 500,
  });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
    return true;
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

function onShutdown(log: Logger, stop: () => Promise<void>): void {
  let done = false;
  const handler = (signal: string) => {
    if (done) return;
    done = true;
    log.info({ signal }, 'shutting down');
    stop()
      .catch((err) => log.error({ err }, 'shutdown failed'))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

main(process.argv.slice(2)).catch((err) => {
  if (err instanceof UsageError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`invalid configuration:\n${err.message}\n`);
    process.exit(78); // EX_CONFIG
  }
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
