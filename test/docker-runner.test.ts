// The Docker runner against the real engine (scripts/ensure-docker.sh starts one), with a busybox
// image built here from local files: create, logs, exit codes, graceful stop, SIGKILL, limits and
// isolation applied (inspected), removal after success and after failure, reconcile of
// containers no live worker supervises; then through the service: a job run in a container, its
// max_duration_sec, and a worker SIGKILLed mid-job whose container is ended by the next worker.
import { TEST_IMAGE, buildTestImage } from './docker-image.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Docker from 'dockerode';
import { DockerRunner, LABELS } from '../src/runners/docker.js';
import type { JobExit, RunningJob, StartSpec } from '../src/runners/runner.js';
import type { JobRecord } from '../src/store/jobs.js';
import {
  type Api,
  basic,
  jobWhen,
  call,
  cleanup,
  ids,
  recordingJob,
  spawnWorker,
  stopChild,
  startApi,
  startWorker,
  testConfig,
  testEnv,
  waitFor,
} from './helpers.js';

const docker = new Docker({ socketPath: '/var/run/docker.sock' });
const service = `test-${ids().slice(0, 8)}`;

const limits = {
  recording: { cpus: 0.5, memoryMb: 128 },
  transcribing: { cpus: 1, memoryMb: 256 },
  captioning: { cpus: 1, memoryMb: 256 },
};

function runnerFor(dataDir: string): DockerRunner {
  return new DockerRunner({
    images: { 'calls-recorder': TEST_IMAGE },
    network: 'none',
    limits,
    user: '10001:10001',
    service,
    artifactsDir: join(dataDir, 'artifacts'),
  });
}

async function serviceContainers(): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.service}=${service}`] } });
}

describe('docker runner', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'co-docker-'));
  let runner: DockerRunner;
  before(() => {
    buildTestImage();
    runner = runnerFor(dataDir);
  });
  after(async () => {
    for (const c of await serviceContainers()) await docker.getContainer(c.Id).remove({ force: true });
    rmSync(dataDir, { recursive: true, force: true });
  });

  const start = async (width: number, args?: string[]) => {
    const job = { id: ids(), type: 'recording', runner: 'mattermost/calls-recorder:v0.8.5' } as JobRecord;
    const dir = join(dataDir, 'jobs', job.id);
    const output: string[] = [];
    // Each stream's text: a chunk can hold several lines (on a loaded host, more often than not).
    const said = { stdout: '', stderr: '' };
    const spec: StartSpec = {
      job,
      env: { JOB_ID: job.id, JOB_TYPE: 'recording', JOB_DIR: dir, WIDTH: String(width) },
      dir,
      args,
      onOutput: (chunk, stream) => {
        output.push(chunk.toString());
        said[stream] += chunk;
      },
    };
    const run: RunningJob = await runner.start(spec);
    return { job, dir, run, output, said };
  };
  const container = (id: string, recover = false) =>
    docker.getContainer(`calls-offloader-${id}${recover ? '-recover' : ''}`);

  it('runs a job in a container: both log streams, its environment only, output.json in its directory, removed after success', async () => {
    const { job, dir, run, said } = await start(1280, ['--recover']);
    const exit: JobExit = await run.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(
      said.stdout,
      new RegExp(`^test job ${job.id} \\(recording\\) in /job as 10001:10001, args: --recover$`, 'm'),
    );
    assert.match(said.stderr, /^to standard error$/m);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'output.json'), 'utf8')), {
      file: join(dataDir, 'artifacts', 'out.txt'), // the program's /artifacts/out.txt, where it is on this host
      width: 1280,
    });
    const env = readFileSync(join(dir, 'env.txt'), 'utf8');
    assert.match(env, /^JOB_DIR=\/job$/m);
    assert.match(env, /^ARTIFACTS_DIR=\/artifacts$/m);
    assert.doesNotMatch(env, /REDIS|API_|SFU_TOKENSECRET|TEST_JOB_CONTROL_DIR/, "nothing of the worker's environment");
    await assert.rejects(container(job.id, true).inspect(), /no such container/i, 'removed after success');
  });

  it('applies the limits and the isolation; SIGTERM stops it gracefully', async () => {
    const { job, dir, run, output } = await start(1920);
    await waitFor('started', () => output.join('').includes('test job'));
    const info = await container(job.id).inspect();
    assert.equal(info.HostConfig.NanoCpus, 0.5e9);
    assert.equal(info.HostConfig.Memory, 128 * 1024 * 1024);
    assert.equal(info.HostConfig.PidsLimit, 512);
    assert.deepEqual(info.HostConfig.CapDrop, ['ALL']);
    assert.ok(info.HostConfig.SecurityOpt?.includes('no-new-privileges'));
    assert.equal(info.HostConfig.ReadonlyRootfs, true);
    assert.deepEqual(info.HostConfig.LogConfig, { Type: 'json-file', Config: { 'max-size': '8m', 'max-file': '1' } });
    assert.equal(info.HostConfig.NetworkMode, 'none');
    assert.equal(info.Config.User, '10001:10001');
    assert.equal(info.Config.Labels[LABELS.job], job.id);
    run.signal('SIGTERM');
    assert.deepEqual(await run.exited, { code: 0, signal: null });
    assert.match(output.join(''), /got SIGTERM/);
    assert.ok(existsSync(join(dir, 'output.json')), 'finished its file on the way out');
  });

  it("a failure reports the exit code and its output, and removes the container, which holds the job's tokens; SIGKILL ends what ignores SIGTERM", async () => {
    const failing = await start(2560);
    assert.deepEqual(await failing.run.exited, { code: 3, signal: null });
    assert.match(failing.said.stderr, /^failing on purpose; what it did is kept at \/job\/partial\.txt$/m);
    await assert.rejects(container(failing.job.id).inspect(), /no such container/i, 'removed after a failure too');

    const stubborn = await start(3840);
    await waitFor('started', () => stubborn.output.join('').includes('test job'));
    stubborn.run.signal('SIGTERM');
    await waitFor('ignored', () => stubborn.output.join('').includes('SIGTERM ignored'));
    stubborn.run.signal('SIGKILL');
    assert.deepEqual(await stubborn.run.exited, { code: null, signal: 'SIGKILL' });
  });

  it('reconcile ends the containers no live worker supervises, removes those of them that ended, and keeps the others', async () => {
    const kept = await start(1920);
    const orphan = await start(1920);
    await waitFor('both started', () => [kept, orphan].every((r) => r.output.join('').includes('test job')));
    // a container that ended after its worker died, before the worker could remove it
    const leftover = ids();
    const exitedOrphan = await docker.createContainer({
      name: `calls-offloader-${leftover}`,
      Image: TEST_IMAGE,
      Env: ['WIDTH=2560', 'JOB_DIR=/tmp'],
      Labels: { [LABELS.service]: service, [LABELS.job]: leftover, [LABELS.type]: 'recording' },
      HostConfig: { NetworkMode: 'none' },
    });
    await exitedOrphan.start();
    await exitedOrphan.wait();
    const ended = await runnerFor(dataDir).reconcile(async (jobId) => (jobId === kept.job.id ? 'keep' : 'end'));
    assert.deepEqual(ended, [orphan.job.id]);
    await assert.rejects(exitedOrphan.inspect(), /no such container/i, 'the ended one is removed');
    assert.deepEqual(await orphan.run.exited, { code: 0, signal: null }, 'stopped gracefully (SIGTERM first)');
    assert.equal((await container(kept.job.id).inspect()).State.Running, true);
    kept.run.signal('SIGKILL');
    await kept.run.exited;
  });

  it('refuses an image it has no mapping for, and says which image is missing at init', async () => {
    assert.match(runner.check('calls-transcriber')!, /no image for calls-transcriber \(JOBS_JOBIMAGES\)/);
    const missing = new DockerRunner({
      images: { 'calls-recorder': 'calls-offloader-absent:1' },
      network: 'none',
      limits,
      user: '0',
      service,
      artifactsDir: dataDir,
    });
    assert.match(
      (await missing.prepare(['calls-recorder']))!,
      /^image calls-offloader-absent:1 is not on the Docker engine and could not be pulled \(.+\); build it with docker\/build-job-image\.sh or load it$/,
    );
    assert.equal(await runner.prepare(['calls-recorder']), null);
  });
});

describe('docker runner through the service', () => {
  const env = testEnv({
    JOBS_APITYPE: 'docker',
    JOBS_JOBIMAGES: `calls-recorder=${TEST_IMAGE}`,
    DOCKER_NETWORK: 'none',
    JOBS_DOCKERLIMITS: 'recording=0.5/128,transcribing=1/256,captioning=1/256',
    JOBS_WORKERLEASESEC: '3',
  });
  const config = testConfig(env);
  let api: Api;
  before(async () => {
    buildTestImage();
    api = await startApi(config);
  });
  after(async () => {
    await api.close();
    for (const c of await docker.listContainers({
      all: true,
      filters: { label: [`${LABELS.service}=${config.redisPrefix}`] },
    })) {
      await docker.getContainer(c.Id).remove({ force: true });
    }
    await cleanup(config);
  });

  it("POST /jobs/init checks the image; a job runs in its container and its output is the job's; max_duration_sec stops it", async () => {
    const auth = basic(ids());
    assert.equal(
      (await call(api.url, 'POST', '/jobs/init', auth, { Runners: ['mattermost/calls-recorder:v0.8.5'] })).status,
      200,
    );
    const worker = await startWorker(config);
    try {
      const done = (await call(api.url, 'POST', '/jobs', auth, recordingJob(ids(), { width: 1280 }))).json.id;
      const job = await jobWhen(api.url, auth, done, 'succeeded');
      assert.deepEqual(job.output_data, { file: join(resolve(config.dataDir), 'artifacts', 'out.txt'), width: 1280 });
      assert.match(
        (await call(api.url, 'GET', `/jobs/${done}/logs`, auth)).text,
        /with the docker runner[\s\S]*test job/,
      );

      // a failure's reason names its files where they are on this host, not in the container
      const failing = (await call(api.url, 'POST', '/jobs', auth, recordingJob(ids(), { width: 2560 }))).json.id;
      const failed = await jobWhen(api.url, auth, failing, 'failed');
      assert.equal(
        failed.error,
        `the job program exited with code 3: failing on purpose; what it did is kept at ${join(resolve(config.dataDir), 'jobs', failing, 'partial.txt')}`,
      );

      const long = (
        await call(api.url, 'POST', '/jobs', auth, { ...recordingJob(ids(), { width: 1920 }), max_duration_sec: 2 })
      ).json.id;
      await waitFor(
        'stopped at max duration',
        async () => (await call(api.url, 'GET', `/jobs/${long}`, auth)).json.status === 'succeeded',
        60_000,
      );
      assert.match(
        (await call(api.url, 'GET', `/jobs/${long}/logs`, auth)).text,
        /max_duration_sec \(2 s\) reached: sending SIGTERM[\s\S]*got SIGTERM/,
      );
    } finally {
      await worker.close();
    }
  });

  it('a worker SIGKILLed mid-job: its container is ended by the next worker, the job fails with the reason, nothing runs twice', async () => {
    const auth = basic(ids());
    const first = spawnWorker(env);
    const id = (await call(api.url, 'POST', '/jobs', auth, recordingJob(ids(), { width: 1920 }))).json.id;
    await waitFor(
      'running',
      async () => (await call(api.url, 'GET', `/jobs/${id}`, auth)).json.status === 'running',
      60_000,
    );
    const containerName = `calls-offloader-${id}`;
    await waitFor(
      'container up',
      async () => (await docker.getContainer(containerName).inspect()).State.Running,
      30_000,
    );
    await stopChild(first, 'SIGKILL');
    const second = spawnWorker(env);
    try {
      await waitFor(
        'container ended',
        async () => !(await docker.getContainer(containerName).inspect()).State.Running,
        60_000,
      );
      const job = await waitFor(
        'failed',
        async () => {
          const j = (await call(api.url, 'GET', `/jobs/${id}`, auth)).json;
          return j.status === 'failed' ? j : undefined;
        },
        30_000,
      );
      assert.match(job.error, /stopped responding/);
      // The worker writes the line once Docker's stop has returned, which comes after the
      // container shows as ended: a loaded machine read the log in between.
      await waitFor(
        "the log says the next worker ended the job's container",
        async () =>
          /ended this job's docker program: no live worker supervised it/.test(
            (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text,
          ),
        30_000,
      );
      const runs = (await docker.listContainers({ all: true, filters: { label: [`${LABELS.job}=${id}`] } })).length;
      assert.equal(runs, 1, 'one container ever: never run twice');
    } finally {
      await stopChild(second);
    }
  });
});
