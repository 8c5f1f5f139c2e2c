// What a stranger or a runaway client can make the API allocate: clients, requests, jobs, and
// how long a job may wait in the queue. Each limit answers with its reason and its setting.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { basic, call, ids, recordingJob, suiteApi } from './helpers.js';
import { Sweeper } from '../src/queue/sweeper.js';
import { createLogger } from '../src/log.js';
import { MAX_CALLS_PER_CLIENT } from '../src/store/clients.js';
import { keysFor } from '../src/store/redis.js';

const fileJob = {
  type: 'transcribing',
  max_duration_sec: 60,
  runner: 'mattermost/calls-transcriber:v0.7.1',
  input_data: { media_url: 'file:///recordings/call.mp4' },
};

describe('API limits', () => {
  const suite = suiteApi({
    API_SECURITY_MAXCLIENTS: '4',
    API_LIMITS_REGISTRATIONSPERMINUTE: '3',
    API_LIMITS_CLIENTREQUESTSPERSEC: '2',
    JOBS_MAXJOBSPERCLIENT: '2',
    JOBS_MAXFINISHEDJOBSPERCLIENT: '3',
    JOBS_QUEUETIMEOUTSEC: '3600',
    JOBS_MEDIAURLALLOW: 'file:///recordings/',
  });

  /** A client of its own, registered after the earlier tests' clients are forgotten (the cap on clients). */
  const freshClient = async () => {
    const { clients, redis, store } = suite.api.services;
    await redis.del(`${suite.api.config.redisPrefix}:clients`);
    const client = ids();
    await clients.register(client, 'k'.repeat(40), 10);
    return { store, auth: basic(client, 'k'.repeat(40)) };
  };
  const sweeper = () =>
    new Sweeper(
      suite.api.services.store,
      { maxConcurrentJobs: 2, startTimeoutMs: 60_000, queueTimeoutMs: 3_600_000, leaseMs: 15_000, maxLogBytes: 10_000 },
      createLogger(suite.api.config, 'test'),
    );

  it('new clients per address, then clients in all: 429 with the setting that stops them', async () => {
    const url = suite.api.url;
    for (let i = 0; i < 3; i++) assert.equal((await call(url, 'GET', '/jobs', basic(ids()))).status, 200);
    const fourth = await call(url, 'POST', '/register', null, { clientID: ids(), authKey: 'a'.repeat(40) });
    assert.equal(fourth.status, 429);
    assert.match(fourth.json.error, /at most 3 a minute \(API_LIMITS_REGISTRATIONSPERMINUTE\)/);
  });

  it('requests per client: past the burst, 429 with Retry-After; other clients are not slowed', async () => {
    const url = suite.api.url;
    const redis = suite.api.services.redis;
    await redis.del(`${suite.api.config.redisPrefix}:clients`);
    const [a, b] = [ids(), ids()];
    for (const c of [a, b]) await suite.api.services.clients.register(c, 'k'.repeat(40), 10);
    let passed = 0;
    let r = await call(url, 'GET', '/jobs', basic(a, 'k'.repeat(40)));
    for (; r.status === 200 && passed < 200; passed++) r = await call(url, 'GET', '/jobs', basic(a, 'k'.repeat(40)));
    assert.ok(passed >= 10, `a burst of 5 s of requests passes (${passed} did)`);
    assert.equal(r.status, 429);
    assert.match(r.json.error, /more than 2 requests a second \(API_LIMITS_CLIENTREQUESTSPERSEC\)/);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    assert.equal((await call(url, 'GET', '/jobs', basic(b, 'k'.repeat(40)))).status, 200);
  });

  it("logins: counted against the client's rate, and at most 32 live bearer tokens a client, the oldest revoked", async () => {
    const url = suite.api.url;
    const { redis, clients } = suite.api.services;
    const prefix = suite.api.config.redisPrefix;
    await redis.del(`${prefix}:clients`);
    const id = ids();
    await clients.register(id, 'k'.repeat(40), 10);
    const login = () => call(url, 'POST', '/login', null, { clientID: id, authKey: 'k'.repeat(40) });
    const tokens: string[] = [];
    let r = await login();
    for (; r.status === 200 && tokens.length < 200; r = await login()) tokens.push(r.json.bearerToken);
    assert.equal(r.status, 429, `${tokens.length} logins passed`);
    assert.match(r.json.error, /more than 2 requests a second \(API_LIMITS_CLIENTREQUESTSPERSEC\)/);
    // the burst (10) fits under the cap: fill the rest of the way directly, as logins spread over time would
    const sessions = suite.api.services.sessions;
    const registration = (await clients.registration(id))!;
    for (let i = tokens.length; i < 40; i++) tokens.push(await sessions.create(id, registration));
    const live = await Promise.all(tokens.map((t) => sessions.clientFor(t)));
    assert.deepEqual(
      live.map((s) => s !== null),
      tokens.map((_, k) => k >= tokens.length - 32),
      'the newest 32 tokens live, the older ones are revoked',
    );
    assert.equal(await redis.llen(`${prefix}:client-sessions:${id}`), 32);
  });

  it('calls per client: past 10,000 claimed, 429; a call whose claim ran out frees its place', async () => {
    const { clients, redis } = suite.api.services;
    const prefix = suite.api.config.redisPrefix;
    const client = ids();
    await redis.del(`${prefix}:clients`);
    await clients.register(client, 'k'.repeat(40), 10);
    const calls = Array.from({ length: MAX_CALLS_PER_CLIENT }, () => ids());
    for (let i = 0; i < calls.length; i += 500)
      await Promise.all(calls.slice(i, i + 500).map((c) => clients.claimCall(client, c)));
    const gets = async () => Number(/cmdstat_get:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0);
    const before = await gets();
    assert.equal(await clients.claimCall(client, ids()), '', 'the next is refused');
    // The refusal reads the new call's owner, not each of the 10,000 (the rest of the suite may
    // read a few keys meanwhile).
    assert.ok((await gets()) - before < 100, `${(await gets()) - before} GETs for one refused claim`);
    assert.equal(await clients.claimCall(client, calls[0]!), client, 'one it holds is renewed');
    // As its 30 days running out would: the owner key goes, and its time in the client's set passes.
    const keys = keysFor(prefix);
    await redis.del(keys.callOwner(calls[1]!));
    await redis.zadd(keys.clientCalls(client), Date.now() - 1000, calls[1]!);
    assert.equal(await clients.claimCall(client, ids()), client);
    const r = await call(suite.api.url, 'POST', `/calls/${ids()}/tokens`, basic(client, 'k'.repeat(40)), {
      user_id: 'alice',
      display_name: 'Alice',
    });
    assert.deepEqual([r.status, r.json.error], [429, `client ${client} holds 10000 calls, the most one client may`]);
  });

  it('clients in all: registering past API_SECURITY_MAXCLIENTS is refused', async () => {
    const { clients, redis } = suite.api.services;
    const key = `${suite.api.config.redisPrefix}:clients`;
    await redis.del(key);
    for (let i = 0; i < 4; i++) assert.equal(await clients.register(ids(), 'k'.repeat(40), 4), 'added');
    assert.equal(await clients.register(ids(), 'k'.repeat(40), 4), 'full');
    assert.equal(await redis.hlen(key), 4, 'nothing stored past the cap');
  });

  it('unfinished jobs per client: the third is 429 and stored nowhere; a finished one frees its place', async () => {
    const url = suite.api.url;
    const { store, auth } = await freshClient();
    const first = await call(url, 'POST', '/jobs', auth, recordingJob(ids()));
    await call(url, 'POST', '/jobs', auth, fileJob);
    const third = await call(url, 'POST', '/jobs', auth, recordingJob(ids()));
    assert.equal(third.status, 429);
    assert.match(third.json.error, /has 2 unfinished jobs already \(JOBS_MAXJOBSPERCLIENT\)/);
    await new Promise((r) => setTimeout(r, 1000)); // the request allowance refills
    assert.equal((await call(url, 'GET', '/jobs', auth)).json.total, 2, 'the refused job was not stored');
    await call(url, 'POST', `/jobs/${first.json.id}/stop`, auth); // queued: canceled
    assert.equal((await store.get(first.json.id))!.status, 'canceled');
    assert.equal((await call(url, 'POST', '/jobs', auth, recordingJob(ids()))).status, 200);
  });

  it('unfinished jobs per client outlive an unregister: the id registered again has no fresh quota until they end', async () => {
    const url = suite.api.url;
    const { clients, store } = suite.api.services;
    const client = ids();
    await clients.register(client, 'k'.repeat(40), 10);
    const auth = basic(client, 'k'.repeat(40));
    const first = await call(url, 'POST', '/jobs', auth, recordingJob(ids()));
    assert.equal((await call(url, 'POST', '/jobs', auth, fileJob)).status, 200);
    // the first as a record made before records named whom they are charged to
    await suite.api.services.redis.hdel(keysFor(suite.api.config.redisPrefix).job(first.json.id), 'charged');
    assert.ok(await clients.unregister(client));
    assert.equal(await clients.register(client, 'r'.repeat(40), 10), 'added');
    const again = basic(client, 'r'.repeat(40));
    const refused = await call(url, 'POST', '/jobs', again, recordingJob(ids()));
    assert.equal(refused.status, 429, 'the disowned jobs still count');
    assert.match(refused.json.error, /has 2 unfinished jobs already \(JOBS_MAXJOBSPERCLIENT\)/);
    assert.equal((await call(url, 'GET', '/jobs', again)).json.total, 0, 'yet they are not its jobs');
    assert.equal((await store.get(first.json.id))!.client, '!unregistered');
    await store.transition(first.json.id, ['queued'], 'canceled'); // as the admin would
    assert.equal((await call(url, 'POST', '/jobs', again, recordingJob(ids()))).status, 200, 'its place is freed');
  });

  it('finished jobs per client: past JOBS_MAXFINISHEDJOBSPERCLIENT, creating a job deletes the oldest before their retention ends', async () => {
    const url = suite.api.url;
    const { store, auth } = await freshClient();
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { json } = await call(url, 'POST', '/jobs', auth, recordingJob(ids()));
      made.push(json.id);
      await call(url, 'POST', `/jobs/${json.id}/stop`, auth); // queued: canceled, kept 30 days
      await new Promise((r) => setTimeout(r, 1000)); // the request allowance refills
    }
    await sweeper().sweep(await store.clock());
    const { json } = await call(url, 'GET', '/jobs', auth);
    assert.deepEqual(
      json.jobs.map((j: { id: string }) => j.id),
      made.slice(2).reverse(),
      'the three newest, newest first',
    );
    assert.equal(await store.get(made[0]!), null, 'the oldest record is gone');
  });

  it('a transcription of a file still queued after JOBS_QUEUETIMEOUTSEC fails with the reason; a younger one waits', async () => {
    const { store, auth } = await freshClient();
    const job = await call(suite.api.url, 'POST', '/jobs', auth, fileJob);
    const sweep = sweeper();
    const created = (await store.get(job.json.id))!.created_at;
    await sweep.sweep(created + 120_000);
    assert.equal((await store.get(job.json.id))!.status, 'queued', 'a file job outlives the live start timeout');
    await sweep.sweep(created + 3_600_001);
    const failed = (await store.get(job.json.id))!;
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error, 'no worker took the job within 60 min: is a worker running against this Redis?');
  });
});
