// bench/api: how fast the service takes jobs, and how soon a job's program runs.
//  1. job creation: autocannon (in this process) against `calls-offloader api` (its own process),
//     POST /jobs as the plugin sends it, Basic auth on every request; then GET /jobs/{id}.
//  2. time from POST /jobs to the job program running: `calls-offloader serve` with the stand-in
//     job program, one job at a time, measured from the request to the program's own start stamp.
// Everything stays on 127.0.0.1 and stops by itself. Prints a markdown table.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { Redis } from 'ioredis';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const TEST_JOB = fileURLToPath(new URL('../../test/fixtures/test-job.js', import.meta.url));
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DURATION_S = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const START_SAMPLES = Number(process.env.BENCH_START_SAMPLES ?? 50);

const id26 = () => randomBytes(13).toString('hex');
const KEY = randomBytes(24).toString('hex');
const CLIENT = id26();
const auth = `Basic ${Buffer.from(`${CLIENT}:${KEY}`).toString('base64')}`;
const controlDir = mkdtempSync(join(tmpdir(), 'bench-api-'));

const recording = () =>
  `${JSON.stringify({
    type: 'recording',
    max_duration_sec: 3600,
    runner: 'mattermost/calls-recorder:v0.8.5',
    input_data: {
      site_url: 'http://127.0.0.1:8065',
      call_id: id26(),
      post_id: id26(),
      recording_id: id26(),
      auth_token: id26(),
      width: 1280,
      height: 720,
      video_rate: 1500,
      audio_rate: 64,
      frame_rate: 20,
      video_preset: 'veryfast',
      output_format: 'mp4',
    },
  })}\n`;

function start(command: string, port: number, prefix: string): ChildProcess {
  return spawn(process.execPath, [CLI, command], {
    stdio: 'ignore',
    env: {
      ...process.env,
      REDIS_URL,
      REDIS_PREFIX: prefix,
      API_HTTP_LISTENADDRESS: `127.0.0.1:${port}`,
      JOBS_MAXCONCURRENTJOBS: '2',
      // one client makes every request here: the per-client limits would measure themselves
      API_LIMITS_CLIENTREQUESTSPERSEC: '100000',
      JOBS_MAXJOBSPERCLIENT: '1000000',
      JOBS_DATADIR: join(controlDir, 'data'),
      JOBS_PROCESSPROGRAMS: `calls-recorder=${TEST_JOB}`,
      LOGGER_CONSOLELEVEL: 'warn',
      TEST_JOB_CONTROL_DIR: controlDir,
    },
  });
}

async function ready(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (
      await fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not start`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

async function dropPrefix(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 5000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await redis.quit();
}

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function load(url: string, method: 'POST' | 'GET', path: string, body?: () => string) {
  const result = await autocannon({
    url: url + path,
    method,
    connections: CONNECTIONS,
    duration: DURATION_S,
    headers: { authorization: auth },
    ...(body
      ? { requests: [{ method, path, setupRequest: (req: autocannon.Request) => ({ ...req, body: body() }) }] }
      : {}),
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    ok: result['2xx'],
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

async function creation() {
  const port = 24545;
  const prefix = `bench-api-${randomBytes(3).toString('hex')}`;
  const api = start('api', port, prefix);
  const url = `http://127.0.0.1:${port}`;
  try {
    await ready(url);
    const first = await fetch(`${url}/jobs`, { method: 'POST', headers: { authorization: auth }, body: recording() });
    const { id } = (await first.json()) as { id: string };
    const create = await load(url, 'POST', '/jobs', recording);
    const read = await load(url, 'GET', `/jobs/${id}`);
    return { create, read };
  } finally {
    await stop(api);
    await dropPrefix(prefix);
  }
}

async function timeToRunning() {
  const port = 24546;
  const prefix = `bench-start-${randomBytes(3).toString('hex')}`;
  const serve = start('serve', port, prefix);
  const url = `http://127.0.0.1:${port}`;
  const runsFile = join(controlDir, 'runs.jsonl');
  const samples: number[] = [];
  try {
    await ready(url);
    for (let i = 0; i < START_SAMPLES; i++) {
      const body = recording();
      writeFileSync(join(controlDir, `${JSON.parse(body).input_data.call_id}.json`), JSON.stringify({ sleepMs: 0 }));
      const sent = Date.now();
      const res = await fetch(`${url}/jobs`, { method: 'POST', headers: { authorization: auth }, body });
      const { id } = (await res.json()) as { id: string };
      for (let tries = 0; ; tries++) {
        const line = (existsSync(runsFile) ? readFileSync(runsFile, 'utf8') : '')
          .split('\n')
          .find((l) => l.includes(`"start","job":"${id}"`));
        if (line) {
          samples.push(JSON.parse(line).t - sent);
          break;
        }
        if (tries > 2000) throw new Error(`job ${id} never started`);
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  } finally {
    await stop(serve);
    await dropPrefix(prefix);
  }
  samples.sort((a, b) => a - b);
  return { p50: pct(samples, 50), p95: pct(samples, 95), n: samples.length };
}

const { create, read } = await creation();
const started = await timeToRunning();
rmSync(controlDir, { recursive: true, force: true });

const f = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 1 });
console.log(
  `\nbench/api (${new Date().toISOString().slice(0, 10)}, node ${process.version}, 2 cores, ${CONNECTIONS} connections for ${DURATION_S} s, server in its own process)\n`,
);
console.log('| measure | result |');
console.log('|---|---|');
console.log(
  `| POST /jobs (recording, Basic auth) | ${f(create.rps)} req/s, p50 ${create.p50} ms, p99 ${create.p99} ms, ${create.ok} created, ${create.errors} errors |`,
);
console.log(
  `| GET /jobs/{id} (Basic auth) | ${f(read.rps)} req/s, p50 ${read.p50} ms, p99 ${read.p99} ms, ${read.errors} errors |`,
);
console.log(
  `| POST /jobs → job program running (process runner, n=${started.n}) | p50 ${started.p50} ms, p95 ${started.p95} ms |`,
);
console.log(
  '\nNo peer runs here: upstream calls-offloader (Go) publishes no API figures and no Go toolchain is available to build it; its docker runner also needs an image pull.',
);
