// A worker killed with SIGKILL mid-job: the job is failed with a reason within the lease time,
// its program is told to stop, its log is kept, and nothing ever runs it a second time.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { spawn } from 'node:child_process';
import {
  type Api,
  basic,
  behave,
  call,
  cleanup,
  ids,
  recordingJob,
  runs,
  spawnWorker,
  stopChild,
  startApi,
  testConfig,
  testEnv,
  waitFor,
} from './helpers.js';
import { fileURLToPath } from 'node:url';
import { enqueue } from '../src/queue/queues.js';

describe('worker crash', () => {
  const env = testEnv({ JOBS_WORKERLEASESEC: '3' });
  const config = testConfig(env);
  let api: Api;
  before(async () => {
    api = await startApi(config);
  });
  after(async () => {
    await api.close();
    await cleanup(config);
  });

  it('SIGKILL of the worker fails the job with a reason and never leads to a second run', async () => {
    const auth = basic(ids());
    const callId = ids();
    behave(callId, { sleepMs: 120_000 });
    const first = spawnWorker(env);
    const id = (await call(api.url, 'POST', '/jobs', auth, recordingJob(callId))).json.id;
    await waitFor('program started', () => runs(id).some((r) => r.event === 'start'));
    const programPid = runs(id)[0]!.pid;
    // the program's own first line, not only the worker's: under load it reaches Redis a flush later
    await waitFor('log flushed to Redis', async () =>
      /test job .* starting/.test((await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text),
    );

    await stopChild(first, 'SIGKILL');
    const job = await waitFor(
      'job failed',
      async () => {
        const j = (await call(api.url, 'GET', `/jobs/${id}`, auth)).json;
        return j.status === 'failed' ? j : undefined;
      },
      20_000,
    );
    // Failed by the lease's sweeper (its words), not by BullMQ's stalled check: the test asserts
    // the mechanism, not a wall-clock time (20 s above is only the wait's margin).
    assert.match(
      job.error,
      new RegExp(
        `^the worker running this job \\(${hostname()}:\\d+:[0-9a-f]{6}\\) stopped responding \\(no lease renewal for 3 s\\); the job was abandoned: its log is kept, and what it wrote stays in JOBS_DATADIR/jobs/${id} on ${hostname()}$`,
      ),
    );
    const log = (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text;
    assert.match(log, /test job .* starting/, 'the log is kept');
    assert.match(log, /stopped responding/, 'and says what happened');

    // The kernel told the orphaned program to stop (parent-death signal): it finished and is gone.
    await waitFor('program ended', () => runs(id).some((r) => r.event === 'end'), 5000);
    assert.throws(() => process.kill(programPid, 0), /ESRCH/);

    // A new worker, and the job handed out again (as a stalled-job recovery would): it does not run.
    const second = spawnWorker(env);
    try {
      await enqueue(api.services.queues, 'recording', id).catch(() => undefined);
      await api.services.queues.recording.add('recording', { id }, { jobId: `${id}-redelivered` });
      await waitFor(
        'redelivery consumed',
        async () => (await api.services.queues.recording.getJobCounts('wait', 'active', 'delayed')).wait === 0,
        10_000,
      );
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(runs(id).filter((r) => r.event === 'start').length, 1, 'ran exactly once');
      assert.equal((await call(api.url, 'GET', `/jobs/${id}`, auth)).json.status, 'failed');
    } finally {
      await stopChild(second);
    }
  });

  it("a worker whose clock is a minute behind runs a job to the end: leases are on Redis' clock", async () => {
    const auth = basic(ids());
    const callId = ids();
    behave(callId, { sleepMs: 4 * 3000 }); // longer than the lease
    const skewed = spawnWorker({
      ...env,
      NODE_OPTIONS: `--import=${fileURLToPath(new URL('./fixtures/clock-behind.js', import.meta.url))}`,
    });
    try {
      const id = (await call(api.url, 'POST', '/jobs', auth, recordingJob(callId))).json.id;
      const job = await waitFor(
        'job finished',
        async () => {
          const j = (await call(api.url, 'GET', `/jobs/${id}`, auth)).json;
          return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
        },
        40_000,
      );
      assert.equal(job.status, 'succeeded', job.error);
    } finally {
      await stopChild(skewed);
    }
  });
});

describe('readiness', () => {
  it('/readyz fails while Redis is unreachable; /healthz still answers', async () => {
    const port = 6391;
    const redis = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    const config = testConfig({ REDIS_URL: `redis://127.0.0.1:${port}` });
    await waitFor('private redis', async () => {
      const { Redis } = await import('ioredis');
      const probe = new Redis(config.redisUrl, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        return (await probe.ping()) === 'PONG';
      } finally {
        probe.disconnect();
      }
    });
    const api = await startApi(config);
    try {
      assert.equal((await call(api.url, 'GET', '/readyz', null)).status, 200);
      await stopChild(redis);
      const r = await call(api.url, 'GET', '/readyz', null);
      assert.equal(r.status, 503);
      assert.match(r.json.error, /^redis is unreachable/);
      assert.equal((await call(api.url, 'GET', '/healthz', null)).status, 200);
    } finally {
      redis.kill('SIGKILL');
      await api.close().catch(() => undefined);
    }
  });
});
