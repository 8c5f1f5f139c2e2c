// Both auth schemes, self-registration on and off, the admin secret, and per-client scoping.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type Api, KEY, basic, call, cleanup, ids, recordingJob, startApi, testConfig } from './helpers.js';
import { verifyToken } from '../src/sfu/token.js';

const ADMIN = 'admin-secret-'.padEnd(40, 's');

describe('auth with self-registration on', () => {
  let api: Api;
  before(async () => {
    api = await startApi(testConfig({ API_SECURITY_ENABLEADMIN: 'true', API_SECURITY_ADMINSECRETKEY: ADMIN }));
  });
  after(async () => {
    await api.close();
    await cleanup(api.config);
  });

  it('an unknown client with a long enough key registers on its first Basic request', async () => {
    const id = ids();
    const r = await call(api.url, 'GET', '/jobs', basic(id));
    assert.equal(r.status, 200);
    assert.equal((await call(api.url, 'GET', '/jobs', basic(id, 'q'.repeat(40)))).status, 401, 'the key is now fixed');
    assert.equal((await call(api.url, 'GET', '/jobs', basic(ids(), 'short'))).status, 401, 'short keys never register');
  });

  it('keys are stored only as a slow hash', async () => {
    const id = ids();
    await call(api.url, 'GET', '/jobs', basic(id));
    const stored = await api.services.redis.hget(`${api.config.redisPrefix}:clients`, id);
    assert.match(stored!, /^scrypt\$16384\$8\$1\$/);
    assert.ok(!stored!.includes(KEY));
  });

  it('bearer tokens from /login work and expire with their session', async () => {
    const id = ids();
    await call(api.url, 'POST', '/register', null, { clientID: id, authKey: KEY });
    const { json } = await call(api.url, 'POST', '/login', null, { clientID: id, authKey: KEY });
    const r = await call(api.url, 'POST', '/jobs', { bearer: json.bearerToken }, recordingJob(ids()));
    assert.equal(r.status, 200);
    assert.equal((await call(api.url, 'GET', '/jobs', { bearer: 'not-a-token' })).status, 401);
    // Expire the session in Redis: the token stops working.
    const sessions = await api.services.redis.keys(`${api.config.redisPrefix}:session:*`);
    await api.services.redis.del(...sessions);
    assert.equal((await call(api.url, 'GET', '/jobs', { bearer: json.bearerToken })).status, 401);
  });

  it('a client sees and controls only its own jobs', async () => {
    const alice = basic(ids());
    const bob = basic(ids());
    const { json: job } = await call(api.url, 'POST', '/jobs', alice, recordingJob(ids()));
    assert.equal((await call(api.url, 'GET', `/jobs/${job.id}`, alice)).status, 200);
    for (const [method, path] of [
      ['GET', `/jobs/${job.id}`],
      ['GET', `/jobs/${job.id}/logs`],
      ['POST', `/jobs/${job.id}/stop`],
      ['DELETE', `/jobs/${job.id}`],
    ]) {
      const r = await call(api.url, method!, path!, bob);
      assert.equal(r.status, 404, `${method} ${path}`);
    }
    const list = await call(api.url, 'GET', '/jobs', bob);
    assert.equal(list.json.total, 0);
    assert.equal((await call(api.url, 'GET', '/jobs', alice)).json.total, 1);
    const other = await call(api.url, 'POST', '/unregister', bob, {
      clientID: (alice as { basic: string[] }).basic[0],
    });
    assert.equal(other.status, 403);
  });

  it('the admin secret (any user name) sees every job; a near miss is refused', async () => {
    const r = await call(api.url, 'GET', '/jobs?per_page=200', { basic: ['', ADMIN] });
    assert.equal(r.status, 200);
    assert.ok(r.json.total >= 2);
    assert.equal((await call(api.url, 'GET', '/jobs', { basic: ['', `${ADMIN.slice(0, -1)}x`] })).status, 401);
    // Under a client name, a near miss is just another client (self-registration is on): no admin view.
    const near = await call(api.url, 'GET', '/jobs', { basic: [ids(), `${ADMIN.slice(0, -1)}x`] });
    assert.equal(near.json.total, 0);
  });

  it('unregistering ends the client: whoever registers the id next inherits neither its jobs nor its bearer tokens nor its calls', async () => {
    const id = ids();
    const first = basic(id);
    const { json: job } = await call(api.url, 'POST', '/jobs', first, recordingJob(ids()));
    const callId = ids();
    const alice = { user_id: 'alice', display_name: 'Alice' };
    assert.equal((await call(api.url, 'POST', `/calls/${callId}/tokens`, first, alice)).status, 200);
    const { json: login } = await call(api.url, 'POST', '/login', null, { clientID: id, authKey: KEY });
    assert.equal((await call(api.url, 'POST', '/unregister', first, { clientID: id })).status, 200);
    const next = basic(id, 'n'.repeat(40)); // someone else, same id, registering itself
    assert.equal((await call(api.url, 'GET', '/jobs', next)).json.total, 0);
    assert.equal((await call(api.url, 'GET', `/jobs/${job.id}`, next)).status, 404);
    assert.equal((await call(api.url, 'GET', '/jobs', { bearer: login.bearerToken })).status, 401);
    assert.equal((await call(api.url, 'POST', `/calls/${callId}/tokens`, basic(ids()), alice)).status, 200);
    // the job is kept for the admin
    assert.equal((await call(api.url, 'GET', `/jobs/${job.id}`, { basic: ['', ADMIN] })).status, 200);
  });

  it("site_url: a client's jobs of a type go to the site it first used; another is refused before anything runs", async () => {
    const client = basic(ids());
    const at = (site: string, type = 'recording') =>
      call(
        api.url,
        'POST',
        '/jobs',
        client,
        type === 'recording'
          ? recordingJob(ids(), { site_url: site })
          : {
              type,
              max_duration_sec: 60,
              runner: 'mattermost/calls-transcriber:v0.7.2',
              input_data: {
                site_url: site,
                call_id: ids(),
                post_id: ids(),
                auth_token: ids(),
                transcription_id: ids(),
              },
            },
      );
    assert.equal((await at('https://mm.example.com')).status, 200);
    assert.equal((await at('https://mm.example.com/')).status, 200, 'the same origin');
    const other = await at('http://10.0.0.5:8065');
    assert.equal(other.status, 400);
    assert.equal(
      other.json.error,
      "input_data.site_url http://10.0.0.5:8065 is not the site this client's recording jobs go to (https://mm.example.com, its first); an admin lists the sites with JOBS_SITEURLS",
    );
    // the plugin's transcriber may have its own override (MM_CALLS_TRANSCRIBER_SITE_URL)
    assert.equal((await at('https://mm-internal.example.com', 'transcribing')).status, 200);
    assert.equal((await at('https://mm.example.com', 'transcribing')).status, 400);
    const list = await call(api.url, 'GET', '/jobs', client);
    assert.equal(list.json.total, 3, 'refused jobs were not stored');
  });

  it('wrong keys are throttled per client: past 10 a minute, 429 without running the slow hash', async () => {
    const id = ids();
    await call(api.url, 'GET', '/jobs', basic(id)); // registers
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++)
      statuses.push((await call(api.url, 'GET', '/jobs', basic(id, `wrong-${i}`.padEnd(40, 'x')))).status);
    assert.deepEqual(statuses, [...Array(10).fill(401), 429, 429]);
    const throttled = await call(api.url, 'POST', '/login', null, { clientID: id, authKey: 'y'.repeat(40) });
    assert.deepEqual([throttled.status, throttled.json.code], [429, '429']);
    assert.match(throttled.json.error, /too many wrong keys for client .* in the last minute/);
    // the right key still works (its hash is remembered), and other clients are not affected
    assert.equal((await call(api.url, 'GET', '/jobs', basic(id))).status, 200);
    assert.equal((await call(api.url, 'GET', '/jobs', basic(ids()))).status, 200);
  });

  it('a client named "admin" sees none of the jobs the admin created', async () => {
    const { json: job } = await call(api.url, 'POST', '/jobs', { basic: ['admin', ADMIN] }, recordingJob(ids()));
    assert.match(job.id, /^[a-z0-9]{26}$/);
    const named = basic('admin', 'a'.repeat(40));
    assert.equal((await call(api.url, 'GET', `/jobs/${job.id}`, named)).status, 404);
    assert.equal((await call(api.url, 'GET', '/jobs', named)).json.total, 0);
  });

  it('mints SFU join tokens for a call to authenticated clients only', async () => {
    const callId = ids();
    const body = { user_id: 'alice', display_name: 'Alice', ttl_sec: 600 };
    assert.equal((await call(api.url, 'POST', `/calls/${callId}/tokens`, null, body)).status, 401);
    const owner = basic(ids());
    const r = await call(api.url, 'POST', `/calls/${callId}/tokens`, owner, body);
    assert.equal(r.status, 200);
    assert.equal(r.json.url, `http://127.0.0.1:4546/call/${callId}#token=${encodeURIComponent(r.json.token)}`);
    const claims = verifyToken(await api.services.tokenSecret(), r.json.token, callId);
    assert.deepEqual([claims.user, claims.name, claims.role], ['alice', 'Alice', 'participant']);
    assert.ok(claims.exp * 1000 - Date.now() <= 600_000);
    // bots are the service's own: no client mints a bot token
    const bot = await call(api.url, 'POST', `/calls/${callId}/tokens`, owner, { ...body, role: 'bot' });
    assert.equal(bot.json.error, 'role is not a known field');
  });

  it("a call of the bundled SFU is its first client's, for 30 days from its last use: no other client mints tokens for it or starts a job on it", async () => {
    const callId = ids();
    const owner = basic(ids());
    const stranger = basic(ids());
    const body = { user_id: 'alice', display_name: 'Alice' };
    /** a job on the bundled SFU: no Mattermost site */
    const sfuJob = (id: string) => {
      const { site_url: _s, auth_token: _a, ...input } = recordingJob(id).input_data;
      return { ...recordingJob(id), input_data: input };
    };
    assert.equal((await call(api.url, 'POST', `/calls/${callId}/tokens`, owner, body)).status, 200);
    const token = await call(api.url, 'POST', `/calls/${callId}/tokens`, stranger, body);
    assert.deepEqual([token.status, token.json.error], [403, `call ${callId} belongs to another client`]);
    const job = await call(api.url, 'POST', '/jobs', stranger, sfuJob(callId));
    assert.deepEqual([job.status, job.json.error], [403, `call ${callId} belongs to another client`]);
    assert.equal((await call(api.url, 'POST', '/jobs', owner, sfuJob(callId))).status, 200);
    // a job claims its call too
    const other = ids();
    assert.equal((await call(api.url, 'POST', '/jobs', owner, sfuJob(other))).status, 200);
    assert.equal((await call(api.url, 'POST', `/calls/${other}/tokens`, stranger, body)).status, 403);
    const ttl = await api.services.redis.pttl(`${api.config.redisPrefix}:call:${other}:owner`);
    assert.ok(ttl > 29 * 24 * 3600 * 1000 && ttl <= 30 * 24 * 3600 * 1000, `claim expires in ${ttl} ms`);
    // A call on a Mattermost site is Mattermost's to guard (the job brings the plugin's bot token):
    // a stranger who claimed its channel id first keeps no job of the plugin off it
    const channel = ids();
    assert.equal((await call(api.url, 'POST', `/calls/${channel}/tokens`, stranger, body)).status, 200);
    assert.equal((await call(api.url, 'POST', '/jobs', owner, recordingJob(channel))).status, 200);
  });

  it('the dashboard needs the admin secret', async () => {
    assert.equal((await call(api.url, 'GET', '/admin/queues', null)).status, 401);
    const client = ids();
    assert.equal(
      (await call(api.url, 'GET', '/admin/queues', basic(client))).status,
      401,
      'a mistyped admin secret registers no client',
    );
    assert.equal((await call(api.url, 'GET', '/jobs', basic(client))).status, 200);
    assert.equal((await call(api.url, 'GET', '/admin/queues', basic(client))).status, 403);
    const page = await call(api.url, 'GET', '/admin/queues', { basic: ['admin', ADMIN] });
    assert.equal(page.status, 200);
    assert.match(page.text, /<html/i);
    const apiRoute = await call(api.url, 'GET', '/admin/queues/api/queues', basic(client));
    assert.equal(apiRoute.status, 403, 'the dashboard API is behind the same check');
    const queues = await call(api.url, 'GET', '/admin/queues/api/queues', { basic: ['admin', ADMIN] });
    assert.deepEqual(queues.json.queues.map((q: { name: string }) => q.name).sort(), [
      'captioning',
      'recording',
      'transcribing',
    ]);
  });
});

describe('sites the admin lists', () => {
  let api: Api;
  before(async () => {
    api = await startApi(testConfig({ JOBS_SITEURLS: 'https://mm.example.com, http://mm.internal:8065' }));
  });
  after(async () => {
    await api.close();
    await cleanup(api.config);
  });

  it('JOBS_SITEURLS: only the listed sites, for every client', async () => {
    for (const [site, status] of [
      ['https://mm.example.com', 200],
      ['http://mm.internal:8065/', 200],
      ['http://169.254.169.254', 400],
    ] as const) {
      const r = await call(api.url, 'POST', '/jobs', basic(ids()), recordingJob(ids(), { site_url: site }));
      assert.equal(r.status, status, `${site}: ${r.text}`);
      if (status === 400)
        assert.equal(
          r.json.error,
          `input_data.site_url ${site} is not a Mattermost site this service serves (JOBS_SITEURLS)`,
        );
    }
  });
});

describe('auth with self-registration off', () => {
  let api: Api;
  before(async () => {
    api = await startApi(
      testConfig({
        API_SECURITY_ALLOWSELFREGISTRATION: 'false',
        API_SECURITY_ENABLEADMIN: 'true',
        API_SECURITY_ADMINSECRETKEY: ADMIN,
      }),
    );
  });
  after(async () => {
    await api.close();
    await cleanup(api.config);
  });

  it('unknown clients are refused and only the admin registers clients', async () => {
    const id = ids();
    assert.equal((await call(api.url, 'GET', '/jobs', basic(id))).status, 401);
    const self = await call(api.url, 'POST', '/register', basic(id), { clientID: id, authKey: KEY });
    assert.equal(self.status, 401);
    const byAdmin = await call(api.url, 'POST', '/register', { basic: ['', ADMIN] }, { clientID: id, authKey: KEY });
    assert.equal(byAdmin.status, 201);
    assert.equal((await call(api.url, 'GET', '/jobs', basic(id))).status, 200);
    const unreg = await call(api.url, 'POST', '/unregister', { basic: ['', ADMIN] }, { clientID: id });
    assert.equal(unreg.status, 200);
    assert.equal(
      (await call(api.url, 'GET', '/jobs', basic(id))).status,
      401,
      'the cached verification is dropped too',
    );
  });
});
