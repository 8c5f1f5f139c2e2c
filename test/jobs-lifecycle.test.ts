// A job's whole life through the real API, Redis, BullMQ worker and process runner, with the
// stand-in job program: success with output, failure with a reason, graceful stop, SIGKILL
// escalation, max duration, cancel while queued, logs, two API instances, retention.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import {
  type Api,
  type InProcessWorker,
  basic,
  behave,
  call,
  cleanup,
  ids,
  jobWhen,
  recordingJob,
  runs,
  startApi,
  startWorker,
  testConfig,
  waitFor,
} from './helpers.js';
import { verifyToken } from '../src/sfu/token.js';
import { Sweeper } from '../src/queue/sweeper.js';
import { workerOptions } from '../src/services.js';
import { createLogger } from '../src/log.js';
import type { JobStore } from '../src/store/jobs.js';

describe('job lifecycle', () => {
  const config = testConfig({
    JOBS_MAXCONCURRENTJOBS: '4',
    JOBS_DELIVERYTIMEOUTSEC: '3',
    JOBS_MAXLOGFILEBYTES: String(1024 * 1024),
  });
  let api: Api;
  let api2: Api;
  let worker: InProcessWorker;
  const auth = basic(ids());

  before(async () => {
    api = await startApi(config);
    api2 = await startApi(config); // a second instance on the same Redis and prefix
    worker = await startWorker(config);
  });
  after(async () => {
    await worker.close();
    await api.close();
    await api2.close();
    await cleanup(config);
  });

  const create = async (callId: string, extra: Record<string, unknown> = {}, base = recordingJob(callId)) => {
    const r = await call(api.url, 'POST', '/jobs', auth, { ...base, ...extra });
    assert.equal(r.status, 200, r.text);
    return r.json.id as string;
  };
  const get = async (id: string, on = api) => (await call(on.url, 'GET', `/jobs/${id}`, auth)).json;
  const until = (id: string, status: string, on = api) =>
    waitFor(`job ${id} ${status}`, async () => {
      const job = await get(id, on);
      return job.status === status ? job : undefined;
    });

  it('runs a job to success: input as environment, output_data from output.json, both streams in the log', async () => {
    const callId = ids();
    behave(callId, { sleepMs: 100, output: { file: 'Call_town-square.mp4' }, stderr: 'a line on stderr' });
    // without site_url the call is on the bundled SFU
    const id = await create(callId, {}, recordingJob(callId, { site_url: undefined }));
    const job = await until(id, 'succeeded');
    assert.equal(job.exit_code, 0);
    assert.deepEqual(job.output_data, { file: 'Call_town-square.mp4' });
    assert.ok(job.stop_at >= job.start_at && job.start_at >= job.created_at);
    assert.equal(job.error, undefined);
    const log = (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text;
    assert.match(log, new RegExp(`test job ${id} \\(recording\\) starting`));
    assert.match(
      log,
      new RegExp(`env CALL_ID=${callId} WIDTH=1280 REDIS_URL=\\n`),
      'inputs arrive upper-cased; service settings do not',
    );
    assert.match(log, /a line on stderr/);
    assert.match(log, /\[offloader .*\] job program exited with code 0/);
    // A job on a call gets the SFU's address and a bot token for that call only.
    const [, sfuUrl, token] = /env SFU_URL=(\S+) SFU_TOKEN=(\S+)/.exec(log)!;
    assert.equal(sfuUrl, 'http://127.0.0.1:4546');
    const claims = verifyToken(await api.services.tokenSecret(), token!, callId);
    assert.deepEqual([claims.role, claims.session, claims.name], ['bot', id, 'Recording']);
    assert.equal(runs(id).filter((r) => r.event === 'start').length, 1);
    // The full log is kept in the job directory as well.
    assert.match(readFileSync(join(config.dataDir, 'jobs', id, 'job.log'), 'utf8'), /a line on stderr/);
    // and no other user of the host reads what the jobs keep
    for (const dir of ['jobs', 'artifacts']) assert.equal(statSync(join(config.dataDir, dir)).mode & 0o777, 0o700, dir);
  });

  it('a program that floods its output does not fill the disk: job.log keeps the head and says what it left out, Redis the tail', async () => {
    const callId = ids();
    behave(callId, { floodBytes: 3 * 1024 * 1024 });
    const id = await create(callId);
    await until(id, 'succeeded');
    const file = readFileSync(join(config.dataDir, 'jobs', id, 'job.log'), 'utf8');
    assert.ok(file.length <= 1024 * 1024 + 4096, `job.log holds ${file.length} bytes`);
    assert.match(file, /test job .* starting/);
    assert.match(file, /job\.log is full: the rest of the output is in Redis only/);
    const left = Number(/(\d+) bytes of the program's output past JOBS_MAXLOGFILEBYTES \(1048576\)/.exec(file)?.[1]);
    assert.ok(left >= 2 * 1024 * 1024, `${left} bytes left out`);
    assert.match(file, /job program exited with code 0\n/, 'our own notes are always kept');
    const tail = (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text;
    assert.match(tail, /flood flood/);
    assert.match(tail, /test job exiting with 0\n/);
  });

  it('a failing job keeps its log and says why, with the last line it printed on stderr', async () => {
    const callId = ids();
    behave(callId, { exitCode: 3, stderr: 'could not reach https://mm.example: connection refused', halfKept: true });
    const id = await create(callId);
    const job = await until(id, 'failed');
    assert.equal(job.exit_code, 3);
    assert.equal(
      job.error,
      'the job program exited with code 3: could not reach https://mm.example: connection refused',
    );
    const log = (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text;
    assert.match(log, /connection refused/);
    // After a failed run the program gets one --recover run to salvage what it left.
    assert.match(log, /running the job program with --recover/);
    assert.deepEqual(
      runs(id).map((r) => r.event),
      ['start', 'end', 'recover'],
    );
    // what the recovery kept stays; what it was killed keeping (beside its name) goes with its end
    const artifacts = readdirSync(join(config.dataDir, 'artifacts')).filter((f) => f.includes(id));
    assert.deepEqual(artifacts, [`partial-recording-${id}.mp4`]);
  });

  it("a job program's errors it did not expect exit 70 (a crash), wherever they are thrown", () => {
    const job = new URL('../workers/shared/job.js', import.meta.url).href;
    for (const [where, body] of [
      ['main', "throw new Error('boom')"],
      ['a timer', "setTimeout(() => { throw new Error('boom'); }, 10); await new Promise((r) => setTimeout(r, 1000));"],
      [
        'a promise nobody awaited',
        "void Promise.reject(new Error('boom')); await new Promise((r) => setTimeout(r, 1000));",
      ],
    ]) {
      const script = `import { runMain } from '${job}'; runMain('test', async () => { ${body} });`;
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
      assert.equal(r.status, 70, `${where}: ${r.stderr}`);
      assert.match(r.stderr, /^test failed: Error: boom/, where);
    }
  });

  it('a failure the program handled (exit 1) or an input it refused (exit 2) is not run again with --recover', async () => {
    for (const exitCode of [1, 2]) {
      const callId = ids();
      behave(callId, { exitCode, stderr: `handled ${exitCode}` });
      const id = await create(callId);
      const job = await until(id, 'failed');
      assert.equal(job.error, `the job program exited with code ${exitCode}: handled ${exitCode}`);
      assert.doesNotMatch((await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text, /--recover/);
      assert.deepEqual(
        runs(id).map((r) => r.event),
        ['start', 'end'],
      );
    }
  });

  it('the lease is held through a recovery run longer than the lease: the job fails with its own reason', async () => {
    const callId = ids();
    behave(callId, { exitCode: 70, stderr: 'crashed', recoverSleepMs: 2 * config.leaseSec * 1000 });
    const id = await create(callId);
    const job = await waitFor(
      'job failed',
      async () => {
        const j = await get(id);
        return j.status === 'failed' ? j : undefined;
      },
      30_000,
    );
    assert.equal(job.error, 'the job program exited with code 70: crashed');
    assert.deepEqual(
      runs(id).map((r) => r.event),
      ['start', 'end', 'recover'],
    );
  });

  it('a job on a Mattermost site gets no SFU address or token: it joins the site', async () => {
    const callId = ids();
    behave(callId, {});
    const id = await create(callId);
    await until(id, 'succeeded');
    const log = (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text;
    assert.match(log, /env SFU_URL= SFU_TOKEN=\n/);
  });

  it('stops gracefully through the other API instance: SIGTERM, the program finishes, the job succeeds', async () => {
    const callId = ids();
    behave(callId, { sleepMs: 60_000, output: { file: 'partial.mp4' } });
    const id = await create(callId);
    await until(id, 'running', api2);
    await waitFor('program started', () => runs(id).length > 0); // its SIGTERM handler is installed
    const r = await call(api2.url, 'POST', `/jobs/${id}/stop`, auth);
    assert.equal(r.status, 200);
    assert.ok(['stopping', 'succeeded'].includes(r.json.status));
    const job = await until(id, 'succeeded');
    assert.deepEqual(job.output_data, { file: 'partial.mp4' });
    const log = (await call(api2.url, 'GET', `/jobs/${id}/logs`, auth)).text;
    assert.match(log, /stop requested through the API: sending SIGTERM/);
    assert.match(log, /got SIGTERM/);
    const again = await call(api.url, 'POST', `/jobs/${id}/stop`, auth);
    assert.equal(again.status, 409);
    assert.equal(again.json.error, 'job has already finished (succeeded)');
  });

  it('kills a job that ignores SIGTERM after the grace period, and says so', async () => {
    const callId = ids();
    behave(callId, { sleepMs: 60_000, ignoreTerm: true });
    const id = await create(callId);
    await until(id, 'running');
    await waitFor('program started', () => runs(id).length > 0);
    await call(api.url, 'POST', `/jobs/${id}/stop`, auth);
    const job = await waitFor(
      'killed job',
      async () => {
        const j = await get(id);
        return j.status === 'failed' ? j : undefined;
      },
      10_000,
    );
    assert.equal(
      job.error,
      'the job program did not stop within 2 s of SIGTERM (stop requested through the API) and was killed',
    );
    assert.match((await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text, /sending SIGKILL/);
  });

  it('the stop grace bounds finishing the file, not delivering it: a delivery longer than the grace completes', async () => {
    const callId = ids();
    behave(callId, { sleepMs: 60_000, deliverMs: 2 * Number(config.stopGraceSec) * 1000 });
    const id = await create(callId);
    await until(id, 'running');
    await waitFor('program started', () => runs(id).some((r) => r.event === 'start'));
    await call(api.url, 'POST', `/jobs/${id}/stop`, auth);
    const job = await until(id, 'succeeded');
    assert.equal(job.exit_code, 0);
    const log = (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text;
    assert.match(log, /the file is finished and being delivered \(.*recording\.mp4\): waiting up to \d+ s more/);
  });

  it('a delivery that cannot finish in its own time is killed, and the job says where the file is', async () => {
    const callId = ids();
    behave(callId, { sleepMs: 60_000, deliverMs: 600_000 });
    const id = await create(callId);
    await until(id, 'running');
    await waitFor('program started', () => runs(id).some((r) => r.event === 'start'));
    await call(api.url, 'POST', `/jobs/${id}/stop`, auth);
    const job = await until(id, 'failed');
    assert.match(
      job.error,
      /^the delivery did not finish within 3 s after the file was finished \(stop requested through the API\); the file is kept at .*recording\.mp4$/,
    );
  });

  it('enforces max_duration_sec with the same graceful stop', async () => {
    const callId = ids();
    behave(callId, { sleepMs: 60_000 });
    const id = await create(callId, { max_duration_sec: 2 });
    const job = await until(id, 'succeeded');
    assert.ok(job.stop_at - job.start_at < 10_000);
    assert.match(
      (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text,
      /max_duration_sec \(2 s\) reached: sending SIGTERM/,
    );
  });

  it('a job whose runner has no program fails with a reason naming it', async () => {
    const id = await create(ids(), {}, {
      ...recordingJob(ids()),
      type: 'captioning',
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { call_id: ids() },
    } as ReturnType<typeof recordingJob>);
    // captioning uses calls-transcriber, which the test maps to the stand-in: it succeeds...
    await until(id, 'succeeded');
    // ...while an unmapped program path fails clearly.
    const cfg = testConfig({ JOBS_PROCESSPROGRAMS: 'calls-recorder=/nonexistent/recorder.js' });
    const w = await startWorker(cfg);
    const a = await startApi(cfg);
    try {
      const r = await call(a.url, 'POST', '/jobs', auth, recordingJob(ids()));
      const job = await waitFor('failed job', async () => {
        const j = (await call(a.url, 'GET', `/jobs/${r.json.id}`, auth)).json;
        return j.status === 'failed' ? j : undefined;
      });
      assert.equal(
        job.error,
        'the process runner has no job program for calls-recorder yet (/nonexistent/recorder.js does not exist); set JOBS_PROCESSPROGRAMS to point calls-recorder at one',
      );
    } finally {
      await w.close();
      await a.close();
      await cleanup(cfg);
    }
  });

  it("lists the caller's jobs newest first, filtered and paginated", async () => {
    const all = await call(api.url, 'GET', '/jobs?per_page=200', auth);
    assert.ok(all.json.total >= 6);
    const created = all.json.jobs.map((j: { created_at: number }) => j.created_at);
    assert.deepEqual(
      created,
      [...created].sort((a, b) => b - a),
    );
    const failed = await call(api.url, 'GET', '/jobs?status=failed', auth);
    assert.ok(failed.json.jobs.length >= 2);
    assert.ok(failed.json.jobs.every((j: { status: string }) => j.status === 'failed'));
    const captions = await call(api.url, 'GET', '/jobs?type=captioning', auth);
    assert.equal(captions.json.total, 1);
    const page1 = await call(api.url, 'GET', '/jobs?per_page=2&page=1', auth);
    assert.deepEqual(
      page1.json.jobs.map((j: { id: string }) => j.id),
      all.json.jobs.slice(2, 4).map((j: { id: string }) => j.id),
    );
  });

  it('deletes a finished job with its log', async () => {
    const callId = ids();
    const id = await create(callId);
    await until(id, 'succeeded');
    const r = await call(api.url, 'DELETE', `/jobs/${id}`, auth);
    assert.equal(r.status, 200);
    assert.equal((await call(api.url, 'GET', `/jobs/${id}`, auth)).status, 404);
    assert.equal(await api.services.redis.exists(`${config.redisPrefix}:job:${id}:log`), 0);
  });
});

describe('queued jobs', () => {
  it('cancels a queued job; a live job that cannot start in time fails with the reason', async () => {
    const config = testConfig({
      JOBS_MAXCONCURRENTJOBS: '1',
      JOBS_STARTTIMEOUTSEC: '2',
      JOBS_MEDIAURLALLOW: 'file:///recordings/',
    });
    const api = await startApi(config);
    const worker = await startWorker(config);
    const auth = basic(ids());
    try {
      const busy = ids();
      behave(busy, { sleepMs: 60_000 });
      const first = (await call(api.url, 'POST', '/jobs', auth, recordingJob(busy))).json.id;
      await waitFor(
        'first running',
        async () => (await call(api.url, 'GET', `/jobs/${first}`, auth)).json.status === 'running',
      );

      const toCancel = (await call(api.url, 'POST', '/jobs', auth, recordingJob(ids()))).json.id;
      const late = (await call(api.url, 'POST', '/jobs', auth, recordingJob(ids()))).json.id;
      const fileJob = (
        await call(api.url, 'POST', '/jobs', auth, {
          type: 'transcribing',
          max_duration_sec: 60,
          runner: 'mattermost/calls-transcriber:v0.7.1',
          input_data: { media_url: 'file:///recordings/call.mp4' },
        })
      ).json.id;

      const canceled = await call(api.url, 'POST', `/jobs/${toCancel}/stop`, auth);
      assert.equal(canceled.json.status, 'canceled');
      assert.ok(canceled.json.stop_at);

      const failed = await waitFor(
        'start timeout',
        async () => {
          const j = (await call(api.url, 'GET', `/jobs/${late}`, auth)).json;
          return j.status === 'failed' ? j : undefined;
        },
        10_000,
      );
      assert.equal(failed.error, 'could not start within 2 s: all 1 job slots (JOBS_MAXCONCURRENTJOBS) stayed busy');

      // A transcription of a finished file is not live: it waits for a slot instead.
      assert.equal((await call(api.url, 'GET', `/jobs/${fileJob}`, auth)).json.status, 'queued');
      await call(api.url, 'POST', `/jobs/${first}/stop`, auth);
      await waitFor(
        'file job ran',
        async () => (await call(api.url, 'GET', `/jobs/${fileJob}`, auth)).json.status === 'succeeded',
      );
      assert.equal(runs(toCancel).length, 0, 'a canceled job never runs');
      assert.equal(runs(late).length, 0);
    } finally {
      await worker.close();
      await api.close();
      await cleanup(config);
    }
  });

  it('fails a live job when no worker takes it within the start timeout', async () => {
    const config = testConfig({ JOBS_STARTTIMEOUTSEC: '1' });
    const api = await startApi(config); // its sweeper notices; there is no worker
    const auth = basic(ids());
    try {
      const id = (await call(api.url, 'POST', '/jobs', auth, recordingJob(ids()))).json.id;
      const job = await waitFor('failed', async () => {
        const j = (await call(api.url, 'GET', `/jobs/${id}`, auth)).json;
        return j.status === 'failed' ? j : undefined;
      });
      assert.equal(job.error, 'no worker took the job within 1 s: is a worker running against this Redis?');
    } finally {
      await api.close();
      await cleanup(config);
    }
  });
});

describe('retention', () => {
  it('removes finished records, logs and job directories after the retention time, and keeps a directory younger than it whose record was lost', async () => {
    const config = testConfig({ JOBS_SUCCEEDEDJOBSRETENTIONTIME: '1m' });
    const api = await startApi(config);
    const worker = await startWorker(config);
    const auth = basic(ids());
    try {
      const id = (await call(api.url, 'POST', '/jobs', auth, recordingJob(ids()))).json.id;
      await waitFor('done', async () => (await call(api.url, 'GET', `/jobs/${id}`, auth)).json.status === 'succeeded');
      const dir = join(config.dataDir, 'jobs', id);
      assert.ok(existsSync(dir));
      await worker.sweeper.sweep(Date.now() + 30_000);
      assert.equal((await call(api.url, 'GET', `/jobs/${id}`, auth)).status, 200, 'kept within the retention');
      // A sweep one minute and a bit from now is past the retention.
      await worker.sweeper.sweep(Date.now() + 61_000);
      assert.equal((await call(api.url, 'GET', `/jobs/${id}`, auth)).status, 404);
      assert.equal(await api.services.redis.exists(`${config.redisPrefix}:job:${id}:log`), 0);
      await worker.sweeper.sweep(Date.now() + 300_000); // directories are looked at once a minute
      assert.ok(!existsSync(dir));
      // A directory whose record Redis lost (not purged at its end) is kept until unchanged for the
      // shortest retention (1 min here), not removed at the next sweep.
      const lost = (await call(api.url, 'POST', '/jobs', auth, recordingJob(ids()))).json.id;
      await waitFor(
        'done',
        async () => (await call(api.url, 'GET', `/jobs/${lost}`, auth)).json.status === 'succeeded',
      );
      await api.services.redis.del(`${config.redisPrefix}:job:${lost}`);
      const fresh = new Sweeper(
        api.services.store,
        { ...workerOptions(config), jobsDir: join(config.dataDir, 'jobs'), dirRetentionMs: 60_000 },
        createLogger(config, 'sweeper'),
      );
      await fresh.sweep(Date.now());
      assert.ok(existsSync(join(config.dataDir, 'jobs', lost)), 'changed less than a minute ago: kept');
      await fresh.sweep(Date.now() + 120_000);
      assert.ok(!existsSync(join(config.dataDir, 'jobs', lost)));
    } finally {
      await worker.close();
      await api.close();
      await cleanup(config);
    }
  });
});

describe('a worker closing as a slot is given to it', () => {
  const config = testConfig();
  let api: Api;
  before(async () => (api = await startApi(config)));
  after(async () => {
    await api.close();
    await cleanup(config);
  });

  it('gives the job back unstarted, and the next worker runs it once', async () => {
    const auth = basic(ids());
    const first = await startWorker(config);
    // close() at the very moment the real store admits the job (a shutdown mid-acquire)
    const store = (first.worker as unknown as { store: JobStore }).store;
    const acquire = store.acquire.bind(store);
    let closed: Promise<void> | undefined;
    store.acquire = async (...args) => {
      const admission = await acquire(...args);
      if (admission === 'admitted') closed ??= first.close();
      return admission;
    };
    const callId = ids();
    behave(callId, { output: { file: 'x.mp4' } });
    const id = (await call(api.url, 'POST', '/jobs', auth, recordingJob(callId))).json.id as string;
    await waitFor('the first worker to close', () => closed !== undefined, 30_000);
    await closed;
    // before, the job started and was stopped at once (or ran on, the shutdown waiting for it)
    assert.equal((await call(api.url, 'GET', `/jobs/${id}`, auth)).json.status, 'queued');
    assert.deepEqual(runs(id), []);
    // its slot given back, and nothing of the start left on its record
    assert.equal(await api.services.store.runningCount(), 0);
    const { redis, store: jobs } = api.services;
    assert.deepEqual(await redis.hmget(jobs.keys.job(id), 'worker', 'start_at'), [null, null]);
    const second = await startWorker(config);
    try {
      const job = await jobWhen(api.url, auth, id, 'succeeded');
      assert.deepEqual(job.output_data, { file: 'x.mp4' });
      assert.equal(runs(id).filter((r) => r.event === 'start').length, 1);
    } finally {
      await second.close();
    }
  });
});
