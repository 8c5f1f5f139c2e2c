// A replay of exactly what the Calls plugin's Go client (calls-offloader/public/client.go)
// sends: Basic auth on every call, JSON bodies without Content-Type, Go field names for
// /jobs/init, and the status codes and shapes it parses.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type Api, KEY, basic, call, cleanup, ids, recordingJob, startApi, testConfig } from './helpers.js';

describe('plugin contract (Go client replay)', () => {
  let api: Api;
  const clientId = ids();
  const auth = basic(clientId);
  before(async () => {
    api = await startApi(testConfig());
  });
  after(async () => {
    await api.close();
    await cleanup(api.config);
  });

  it('GET /version answers without auth', async () => {
    const r = await call(api.url, 'GET', '/version', null);
    assert.equal(r.status, 200);
    assert.match(r.json.buildVersion, /^v\d+\.\d+\.\d+/);
    assert.equal(typeof r.json.buildHash, 'string');
  });

  it('POST /register answers 201 with clientID and code', async () => {
    const r = await call(api.url, 'POST', '/register', auth, { clientID: clientId, authKey: KEY });
    assert.equal(r.status, 201);
    assert.deepEqual(r.json, { clientID: clientId, code: '201' });
    // Registering again with the same key (a restarted plugin) is accepted; another key is not.
    assert.equal((await call(api.url, 'POST', '/register', auth, { clientID: clientId, authKey: KEY })).status, 201);
    const other = await call(api.url, 'POST', '/register', null, { clientID: clientId, authKey: 'x'.repeat(40) });
    assert.equal(other.status, 409);
    assert.deepEqual(other.json, { error: `client ${clientId} is already registered`, code: '409' });
  });

  it('POST /login answers bearerToken; bad credentials 401', async () => {
    const r = await call(api.url, 'POST', '/login', null, { clientID: clientId, authKey: KEY });
    assert.equal(r.status, 200);
    assert.equal(r.json.code, '200');
    assert.ok(r.json.bearerToken.length >= 32);
    const bad = await call(api.url, 'POST', '/login', null, { clientID: clientId, authKey: 'y'.repeat(40) });
    assert.equal(bad.status, 401);
  });

  it('POST /jobs/init accepts {"Runners":[...]} and the older {"Runner":"..."} with an empty 200', async () => {
    const a = await call(api.url, 'POST', '/jobs/init', auth, {
      Runners: ['mattermost/calls-recorder:v0.8.5', 'mattermost/calls-transcriber:v0.7.1'],
    });
    assert.equal(a.status, 200);
    assert.equal(a.text, '');
    const b = await call(api.url, 'POST', '/jobs/init', auth, { Runner: 'mattermost/calls-recorder:v0.6.0' });
    assert.equal(b.status, 200);
    const bad = await call(api.url, 'POST', '/jobs/init', auth, { Runners: ['evil/calls-recorder:v0.8.5'] });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /^invalid job service config: runner must be mattermost\/calls-recorder:vX\.Y\.Z/);
    const old = await call(api.url, 'POST', '/jobs/init', auth, { Runner: 'mattermost/calls-recorder:v0.5.9' });
    assert.equal(old.status, 400);
    assert.match(old.json.error, /older than the minimum supported calls-recorder v0\.6\.0/);
  });

  let recordingId = '';
  it('POST /jobs (recording, as the plugin sends it) answers 200 with the Job the Go client decodes', async () => {
    const body = recordingJob(ids());
    const r = await call(api.url, 'POST', '/jobs', auth, body);
    assert.equal(r.status, 200, r.text);
    const job = r.json;
    assert.match(job.id, /^[a-z0-9]{26}$/);
    assert.equal(job.type, 'recording');
    assert.equal(job.runner, body.runner);
    assert.equal(job.max_duration_sec, 3600);
    assert.equal(typeof job.start_at, 'number');
    assert.equal(job.stop_at, undefined, 'stop_at is omitted while the job has not ended');
    assert.equal(job.status, 'queued');
    assert.equal(job.input_data.call_id, body.input_data.call_id);
    assert.equal(job.input_data.auth_token, '********', 'the bot token is not echoed back');
    recordingId = job.id;
  });

  it('POST /jobs (transcribing with live captions, as the plugin sends it) answers 200', async () => {
    const r = await call(api.url, 'POST', '/jobs', auth, {
      type: 'transcribing',
      max_duration_sec: 7200,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: {
        site_url: 'https://mm.example.internal',
        call_id: ids(),
        post_id: ids(),
        transcription_id: ids(),
        auth_token: ids(),
        transcribe_api: 'whisper.cpp',
        model_size: 'base',
        output_format: 'vtt',
        num_threads: 2,
        live_captions_on: true,
        live_captions_model_size: 'tiny',
        live_captions_num_transcribers: 1,
        live_captions_num_threads_per_transcriber: 2,
        live_captions_language: 'en',
        webvtt_omit_speaker: false,
        text_compact_silence_threshold_ms: 2000,
        text_compact_max_segment_duration_ms: 10000,
      },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.type, 'transcribing');
  });

  it('GET /jobs/{id} and /jobs/{id}/logs answer 200; an unknown job 404', async () => {
    const r = await call(api.url, 'GET', `/jobs/${recordingId}`, auth);
    assert.equal(r.status, 200);
    assert.equal(r.json.id, recordingId);
    const logs = await call(api.url, 'GET', `/jobs/${recordingId}/logs`, auth);
    assert.equal(logs.status, 200);
    assert.match(logs.headers.get('content-type')!, /^text\/plain/);
    const missing = await call(api.url, 'GET', `/jobs/${ids()}`, auth);
    assert.equal(missing.status, 404);
    assert.equal(missing.json.code, '404');
    assert.match(missing.json.error, /not found/);
  });

  it('DELETE /jobs/{id} of a job that has not ended answers 400 "job is running", as upstream', async () => {
    const r = await call(api.url, 'DELETE', `/jobs/${recordingId}`, auth);
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'job is running', code: '400' });
  });

  it('answers 401 to bad credentials on every authenticated route', async () => {
    const wrong = basic(clientId, 'z'.repeat(40));
    for (const [method, path, body] of [
      ['POST', '/jobs', recordingJob(ids())],
      ['GET', `/jobs/${recordingId}`],
      ['GET', `/jobs/${recordingId}/logs`],
      ['DELETE', `/jobs/${recordingId}`],
      ['POST', '/jobs/init', { Runners: ['mattermost/calls-recorder:v0.8.5'] }],
      ['POST', '/unregister', { clientID: clientId }],
    ] as const) {
      const r = await call(api.url, method, path, wrong, body);
      assert.equal(r.status, 401, `${method} ${path}`);
      assert.deepEqual(r.json, { error: 'authentication failed', code: '401' });
    }
  });

  it('POST /unregister answers an empty 200, after which the client is unknown', async () => {
    const other = ids();
    await call(api.url, 'POST', '/register', null, { clientID: other, authKey: KEY });
    const r = await call(api.url, 'POST', '/unregister', basic(other), { clientID: other });
    assert.equal(r.status, 200);
    assert.equal(r.text, '');
    const login = await call(api.url, 'POST', '/login', null, { clientID: other, authKey: KEY });
    assert.equal(login.status, 401);
  });
});
