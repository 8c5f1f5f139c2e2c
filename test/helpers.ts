// Shared test set-up: a private key prefix per test on the real Redis, real API instances on
// loopback, real workers (in-process or as child processes), and the stand-in job program.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, existsSync, writeFileSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { startApiInstance, startWorkerInstance } from '../src/services.js';

export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
export const TEST_JOB = fileURLToPath(new URL('./fixtures/test-job.js', import.meta.url));
export const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
export const KEY = 'k'.repeat(8) + randomBytes(24).toString('hex'); // 56 characters
/** A small seeded generator (mulberry32), numbers in [0, 1): a failure names the seed that reproduces it. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random integers and bytes from a seed. */
export function seededRandom(seed: number) {
  const next = seeded(seed);
  const int = (n: number) => Math.floor(next() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  return { int, bytes };
}

/** A DTLS 1.2 ClientHello in the clear, as a peer starting a new session sends it. */
export function dtlsClientHello(): Buffer {
  const body = Buffer.concat([
    Buffer.from([0xfe, 0xfd]),
    randomBytes(32),
    Buffer.from([0, 0]), // no session id, no cookie
    Buffer.from([0, 2, 0xc0, 0x2b, 1, 0, 0, 0]), // one suite, no compression, no extensions
  ]);
  const handshake = Buffer.concat([Buffer.from([1, 0, 0, body.length, 0, 0, 0, 0, 0, 0, 0, body.length]), body]);
  return Buffer.concat([
    Buffer.from([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, handshake.length >> 8, handshake.length & 0xff]),
    handshake,
  ]);
}

export const ids = () =>
  randomBytes(13)
    .toString('hex')
    .replace(/[^a-z0-9]/g, '0')
    .slice(0, 26);

/** The stand-in job program reads its behaviour from here; worker processes inherit it. */
export const controlDir = mkdtempSync(join(tmpdir(), 'co-test-'));
process.env.TEST_JOB_CONTROL_DIR = controlDir;
process.on('exit', () => rmSync(controlDir, { recursive: true, force: true }));

export function testEnv(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL,
    REDIS_PREFIX: `test-${randomBytes(4).toString('hex')}`,
    API_HTTP_LISTENADDRESS: '127.0.0.1:0',
    JOBS_DATADIR: join(controlDir, `data-${randomBytes(4).toString('hex')}`),
    JOBS_PROCESSPROGRAMS: `calls-recorder=${TEST_JOB},calls-transcriber=${TEST_JOB}`,
    JOBS_STOPGRACESEC: '2',
    JOBS_WORKERLEASESEC: '3',
    LOGGER_ENABLECONSOLE: process.env.TEST_LOGS ? 'true' : 'false',
    LOGGER_CONSOLEJSON: 'false',
    ...overrides,
  };
}

export const testConfig = (overrides: Record<string, string> = {}): Config => loadConfig(testEnv(overrides));

/**
 * A TCP port free on 127.0.0.1 now, for a child process that must be told its port before it
 * starts. The kernel picks it, so it is not one another socket holds, as a random guess may be.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** Behaviour of the stand-in job program for jobs on this call id. */
export function behave(callId: string, b: Record<string, unknown>): void {
  writeFileSync(join(controlDir, `${callId}.json`), JSON.stringify(b));
}

export interface Run {
  event: 'start' | 'end' | 'recover';
  job: string;
  pid: number;
  t: number;
}

export function runs(jobId?: string): Run[] {
  const file = join(controlDir, 'runs.jsonl');
  if (!existsSync(file)) return [];
  const all = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Run);
  return jobId ? all.filter((r) => r.job === jobId) : all;
}

/** The processes `pid` started (that are still running). */
export { childProcesses as children } from '../workers/shared/priority.js';

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 15_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export type Api = Awaited<ReturnType<typeof startApiInstance>> & { config: Config };
export type InProcessWorker = Awaited<ReturnType<typeof startWorkerInstance>>;

export async function startApi(config: Config): Promise<Api> {
  return { ...(await startApiInstance(config, createLogger(config, 'api'))), config };
}

/** An API instance for the suite it is called in, started before its tests and cleaned up after. */
export function suiteApi(overrides: Record<string, string> = {}): { readonly api: Api } {
  const suite = {} as { api: Api };
  before(async () => {
    suite.api = await startApi(testConfig(overrides));
  });
  after(async () => {
    await suite.api.close();
    await cleanup(suite.api.config);
  });
  return suite;
}

export const startWorker = (config: Config): Promise<InProcessWorker> =>
  startWorkerInstance(config, createLogger(config, 'worker'));

/**
 * Stops `child` if it still runs and resolves once it has exited. `once(child, 'exit')` alone
 * waits for good on a child that already exited, and the test is then cancelled without its error.
 */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill(signal);
  await exited;
}

/** `calls-offloader worker` as a child process, for tests that kill it. */
export function spawnWorker(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [CLI, 'worker'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Deletes every key under a test prefix and its data directory. */
export async function cleanup(config: Config): Promise<void> {
  const redis = new Redis(config.redisUrl);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${config.redisPrefix}:*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await redis.quit();
  rmSync(config.dataDir, { recursive: true, force: true });
}

type Auth = { basic: [string, string] } | { bearer: string } | null;

/** A request shaped like the plugin's Go client: no Content-Type, JSON with a trailing newline. */
export async function call(
  url: string,
  method: string,
  path: string,
  auth: Auth,
  body?: unknown,
): Promise<{ status: number; text: string; json: any; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (auth && 'basic' in auth) headers.authorization = `Basic ${Buffer.from(auth.basic.join(':')).toString('base64')}`;
  if (auth && 'bearer' in auth) headers.authorization = `Bearer ${auth.bearer}`;
  const res = await fetch(url + path, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : `${JSON.stringify(body)}\n`,
  });
  const text = await res.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, headers: res.headers };
}

export const basic = (clientId: string, key = KEY): Auth => ({ basic: [clientId, key] });

/** Job `id` through the API at `url`, once its status is `status`. */
/** The job once its status is `status` (or one of them). */
export const jobWhen = (url: string, auth: Auth, id: string, status: string | string[], timeoutMs = 60_000) =>
  waitFor(
    `job ${id} ${status}`,
    async () => {
      const job = (await call(url, 'GET', `/jobs/${id}`, auth)).json;
      return [status].flat().includes(job.status) ? job : undefined;
    },
    timeoutMs,
  );

export const recordingJob = (callId: string, extra: Record<string, unknown> = {}) => ({
  type: 'recording',
  max_duration_sec: 3600,
  runner: 'mattermost/calls-recorder:v0.8.5',
  input_data: {
    site_url: 'http://127.0.0.1:8065',
    call_id: callId,
    post_id: ids(),
    recording_id: ids(),
    auth_token: ids(),
    width: 1280,
    height: 720,
    video_rate: 1000,
    audio_rate: 64,
    frame_rate: 15,
    video_preset: 'ultrafast',
    output_format: 'mp4',
    ...extra,
  },
});

/** A self-signed certificate for 127.0.0.1 (one day, P-256), written as cert.pem and key.pem in `dir`. */
export function loopbackCertificate(dir: string): { certFile: string; keyFile: string } {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1'];
  args.push('-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile);
  execFileSync('openssl', args, { stdio: 'ignore' });
  return { certFile, keyFile };
}
