// bench/runners: the process and Docker runners side by side in one run, on the same stand-in
// programs (test/fixtures: the node stand-in for the process runner, the busybox image for Docker):
//  1. POST /jobs → the job program running (status `running`: the runner started it), one job at a
//     time, and POST /jobs → succeeded for a program that exits at once;
//  2. CPU per job spent outside the program: the service (API and worker, this process) and, for
//     Docker, dockerd, containerd and the per-container shim;
//  3. memory per running job outside the program: the shim and init of each container (Docker);
//     nothing for the process runner (its program is the worker's child).
// Needs Redis on 127.0.0.1:6379 and a Docker engine (scripts/ensure-docker.sh). Prints a table.
import { TEST_IMAGE, buildTestImage } from '../../test/docker-image.js';
import { execFileSync } from 'node:child_process';
import { cpuSeconds } from '../proc.js';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startApiInstance, startWorkerInstance } from '../../src/services.js';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 20);
const CONCURRENT = Number(process.env.BENCH_CONCURRENT ?? 5);
const TEST_JOB = fileURLToPath(new URL('../../test/fixtures/test-job.js', import.meta.url));
const KEY = randomBytes(24).toString('hex');
const id26 = () => randomBytes(13).toString('hex');
const control = mkdtempSync(join(tmpdir(), 'bench-runners-'));
process.env.TEST_JOB_CONTROL_DIR = control;

/** CPU seconds (user + system) of the processes whose command name matches. */
function cpuOf(names: RegExp): number {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (names.test(readFileSync(`/proc/${pid}/comm`, 'utf8').trim())) total += cpuSeconds(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** RSS (MiB) of the processes whose command name matches. */
function rssOf(names: RegExp): number {
  let kb = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      if (!names.test(/^Name:\s+(.*)$/m.exec(status)?.[1] ?? '')) continue;
      kb += Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    } catch {
      // gone meanwhile
    }
  }
  return kb / 1024;
}

const selfCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const job = (width: number) => ({
  type: 'recording',
  max_duration_sec: 600,
  runner: 'mattermost/calls-recorder:v0.8.5',
  input_data: {
    call_id: id26(),
    post_id: id26(),
    recording_id: id26(),
    width,
    height: 720,
    video_rate: 1000,
    audio_rate: 64,
    frame_rate: 15,
    video_preset: 'ultrafast',
    output_format: 'mp4',
  },
});

interface Row {
  runner: string;
  toRunning: number[];
  toDone: number[];
  cpuPerJob: number;
  engineCpuPerJob: number;
  rssPerJob: number;
}

async function measure(kind: 'process' | 'docker'): Promise<Row> {
  const prefix = `bench-runners-${randomBytes(3).toString('hex')}`;
  const config = loadConfig({
    REDIS_URL: 'redis://127.0.0.1:6379',
    REDIS_PREFIX: prefix,
    API_HTTP_LISTENADDRESS: '127.0.0.1:0',
    JOBS_DATADIR: join(control, prefix),
    JOBS_APITYPE: kind,
    JOBS_MAXCONCURRENTJOBS: String(CONCURRENT + 1),
    JOBS_PROCESSPROGRAMS: `calls-recorder=${TEST_JOB}`,
    JOBS_JOBIMAGES: `calls-recorder=${TEST_IMAGE}`,
    DOCKER_NETWORK: 'none',
    API_LIMITS_CLIENTREQUESTSPERSEC: '100000',
    LOGGER_CONSOLELEVEL: 'warn',
    JOBS_STOPGRACESEC: '5',
  });
  const log = createLogger(config, 'bench');
  const api = await startApiInstance(config, log);
  const worker = await startWorkerInstance(config, log);
  const auth = `Basic ${Buffer.from(`bench:${KEY}`).toString('base64')}`;
  const post = async (width: number, callId?: string) => {
    const body = job(width);
    if (callId) body.input_data.call_id = callId;
    const r = await fetch(`${api.url}/jobs`, {
      method: 'POST',
      headers: { authorization: auth },
      body: JSON.stringify(body),
    });
    return ((await r.json()) as { id: string }).id;
  };
  const status = async (id: string) =>
    ((await (await fetch(`${api.url}/jobs/${id}`, { headers: { authorization: auth } })).json()) as { status: string })
      .status;
  const until = async (id: string, want: string[]) => {
    for (;;) {
      const s = await status(id);
      if (want.includes(s)) return s;
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const engine = /^(dockerd|containerd|containerd-shim|containerd-shim-runc-v2|runc|docker-init)$/;
  try {
    await post(1280).then((id) => until(id, ['succeeded', 'failed'])); // warm: image cache, first spawn
    const toRunning: number[] = [];
    const toDone: number[] = [];
    const [cpu0, engine0] = [selfCpu(), cpuOf(engine)];
    for (let i = 0; i < SAMPLES; i++) {
      const t0 = performance.now();
      const id = await post(1280);
      await until(id, ['running', 'succeeded', 'failed']);
      toRunning.push(performance.now() - t0);
      await until(id, ['succeeded', 'failed']);
      toDone.push(performance.now() - t0);
    }
    const cpuPerJob = (selfCpu() - cpu0) / SAMPLES;
    const engineCpuPerJob = (cpuOf(engine) - engine0) / SAMPLES;
    // Memory per running job outside the program: CONCURRENT programs that run until stopped.
    const shims = /^(containerd-shim|containerd-shim-runc-v2|docker-init)$/;
    const before = rssOf(shims);
    const sleeper = id26();
    if (kind === 'process') writeFileSync(join(control, `${sleeper}.json`), JSON.stringify({ sleepMs: 60_000 }));
    const running = await Promise.all(
      Array.from({ length: CONCURRENT }, () => post(1920, kind === 'process' ? sleeper : undefined)),
    );
    await Promise.all(running.map((id) => until(id, ['running'])));
    await new Promise((r) => setTimeout(r, 1000));
    const rssPerJob = (rssOf(shims) - before) / CONCURRENT;
    for (const id of running)
      await fetch(`${api.url}/jobs/${id}/stop`, { method: 'POST', headers: { authorization: auth } });
    await Promise.all(running.map((id) => until(id, ['succeeded', 'failed', 'canceled'])));
    return { runner: kind, toRunning, toDone, cpuPerJob, engineCpuPerJob, rssPerJob };
  } finally {
    await worker.close();
    const redis = api.services.redis;
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 5000);
      if (keys.length) await redis.del(...keys);
      cursor = next;
    } while (cursor !== '0');
    await api.close();
  }
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const p = (xs: number[], q: number) => sorted(xs)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;
const ms = (x: number) => `${Math.round(x)} ms`;

buildTestImage();
const rows = [await measure('process'), await measure('docker')];
console.log(
  [
    `\nbench/runners (${new Date().toISOString().slice(0, 10)}, node ${process.version}, 2 cores, Docker ${execFileSync('docker', ['version', '--format', '{{.Server.Version}}']).toString().trim()}; ${SAMPLES} jobs one at a time, ${CONCURRENT} running at once for memory)\n`,
    '| runner | POST /jobs → program running p50 / p95 | POST /jobs → succeeded p50 / p95 | service CPU per job | engine CPU per job (dockerd, containerd, shim) | memory per running job besides the program |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.runner} | ${ms(p(r.toRunning, 0.5))} / ${ms(p(r.toRunning, 0.95))} | ${ms(p(r.toDone, 0.5))} / ${ms(p(r.toDone, 0.95))} | ${(r.cpuPerJob * 1000).toFixed(0)} ms | ${r.runner === 'docker' ? `${(r.engineCpuPerJob * 1000).toFixed(0)} ms` : '–'} | ${r.runner === 'docker' ? `${r.rssPerJob.toFixed(1)} MiB (shim and init)` : "0 (the program is the worker's child)"} |`,
    ),
  ].join('\n'),
);
rmSync(control, { recursive: true, force: true });
process.exit(0);
