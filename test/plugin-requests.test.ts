// What the current Calls plugin sends (server/job_service.go RunJob, with calls-recorder's and
// calls-transcriber's ToMap and applyEnvOverrides), replayed through the real API; the plugin's
// own version check against /version; inputs that must never reach a job's environment; HTTPS to
// a site with a private CA; and an Azure transcription job, whose key goes nowhere.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import semver from 'semver';
import {
  type Api,
  type InProcessWorker,
  basic,
  call,
  cleanup,
  ids,
  recordingJob,
  startApi,
  startWorker,
  suiteApi,
  testConfig,
  waitFor,
} from './helpers.js';
import { MattermostStandIn } from './mattermost-standin.js';
import { JobProgramHarness } from './job-program.js';
import { ServiceStack } from './service-stack.js';

/** calls-transcriber's ToMap as the plugin fills it (plugin defaults), then the admin's overrides. */
function transcribingJob(options: Record<string, string> | null, overrides: Record<string, string> = {}) {
  return {
    type: 'transcribing',
    max_duration_sec: 7200,
    runner: 'mattermost/calls-transcriber:v0.7.2',
    input_data: {
      site_url: 'http://127.0.0.1:8065',
      call_id: ids(),
      post_id: ids(),
      auth_token: ids(),
      transcription_id: ids(),
      transcribe_api: options ? 'azure' : 'whisper.cpp',
      // json.Marshal of the options map: "null" when unused
      transcribe_api_options: JSON.stringify(options),
      model_size: 'base',
      output_format: 'vtt',
      num_threads: 2,
      live_captions_on: false,
      live_captions_model_size: 'tiny',
      live_captions_num_transcribers: 1,
      live_captions_language: 'en',
      live_captions_num_threads_per_transcriber: 2,
      webvtt_omit_speaker: false,
      text_compact_silence_threshold_ms: 2000,
      text_compact_max_segment_duration_ms: 10000,
      ...overrides,
    },
  };
}

/** The plugin's jobServiceVersionCheck: dev builds skip it, else semver ≥ min_offloader_version. */
function pluginAccepts(buildVersion: string, minVersion = 'v0.9.0'): 'skipped' | 'accepted' | string {
  if (buildVersion === '' || buildVersion === 'master' || buildVersion.startsWith('dev')) return 'skipped';
  // Masterminds/semver NewVersion takes an optional leading v, as semver.parse does.
  const current = semver.parse(buildVersion);
  if (!current) return `failed to parse currVersion ${buildVersion}`;
  return semver.compare(current, semver.parse(minVersion)!) < 0
    ? `${buildVersion} is lower than ${minVersion}`
    : 'accepted';
}

describe('requests exactly as the Calls plugin sends them', () => {
  const suite = suiteApi();
  const auth = basic(ids());

  it("GET /version passes the plugin's own check against min_offloader_version v0.9.0, without the dev-build skip", async () => {
    const r = await call(suite.api.url, 'GET', '/version', null);
    assert.equal(r.status, 200);
    assert.equal(pluginAccepts(r.json.buildVersion), 'accepted', r.json.buildVersion);
    // the check itself: an older service is refused, a dev build skipped
    assert.match(pluginAccepts('v0.1.0'), /lower than/);
    assert.equal(pluginAccepts('dev-abc'), 'skipped');
  });

  it('accepts a recording job with the admin overrides the plugin merges in as strings', async () => {
    const body = recordingJob(ids(), {
      site_url: 'https://mm-internal.example:8443',
      tls_ca_cert_file: '/etc/ssl/certs/mm-ca.pem',
      extra_chromium_args: '--disable-gpu --lang=de',
      width: '1920', // MM_CALLS_RECORDER_WIDTH=1920 overwrites the profile's number with a string
    });
    const r = await call(suite.api.url, 'POST', '/jobs', auth, body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.input_data.width, 1920, 'read as the input it is');
    assert.equal(r.json.input_data.extra_chromium_args, '--disable-gpu --lang=de', 'stored as sent');
    assert.equal(r.json.input_data.tls_ca_cert_file, '/etc/ssl/certs/mm-ca.pem');
  });

  it('accepts transcription jobs with "null" options, with Azure options, and with overrides', async () => {
    const plain = await call(suite.api.url, 'POST', '/jobs', auth, transcribingJob(null));
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.json.input_data.transcribe_api_options, 'null');

    const key = `azure-key-${randomBytes(8).toString('hex')}`;
    const azure = await call(
      suite.api.url,
      'POST',
      '/jobs',
      auth,
      transcribingJob(
        { AZURE_SPEECH_KEY: key, AZURE_SPEECH_REGION: 'westeurope' },
        {
          num_threads: '4',
          live_captions_on: 'true',
          tls_ca_cert_file: '/etc/ssl/mm-ca.pem',
          some_future_setting: 'x',
        },
      ),
    );
    assert.equal(azure.status, 200, azure.text);
    assert.equal(azure.json.input_data.transcribe_api, 'azure');
    assert.equal(azure.json.input_data.num_threads, 4);
    assert.equal(azure.json.input_data.live_captions_on, true);
    assert.deepEqual(JSON.parse(azure.json.input_data.transcribe_api_options), {
      AZURE_SPEECH_KEY: '********',
      AZURE_SPEECH_REGION: '********',
    });
    assert.ok(!azure.text.includes(key), 'the key is not in the answer');
    const stored = await suite.api.services.redis.hgetall(suite.api.services.store.keys.job(azure.json.id));
    assert.ok(!JSON.stringify(stored).includes(key), 'the key is not in the job record');
    const listed = await call(suite.api.url, 'GET', '/jobs', auth);
    assert.ok(!listed.text.includes(key));
  });

  for (const [name, input, message] of [
    [
      'options that are not JSON',
      { transcribe_api_options: '{AZURE_SPEECH_KEY: k' },
      /^input_data\.transcribe_api_options must be a JSON string of an object or null$/,
    ],
    [
      'options that are a JSON list',
      { transcribe_api_options: '[1]' },
      /^input_data\.transcribe_api_options must be a JSON string of an object or null$/,
    ],
    ['an override that is not a number', { num_threads: 'four' }, /^input_data\.num_threads must be an integer$/],
    [
      'an override that is not a boolean',
      { live_captions_on: 'yes' },
      /^input_data\.live_captions_on must be a boolean$/,
    ],
    ['an extra key with an upper-case name', { LD_PRELOAD: '/x.so' }, /^input_data key "LD_PRELOAD" is not valid/],
    ['an extra key of 65 characters', { ['k'.repeat(65)]: 'x' }, /^input_data key "k{64}" is not valid/],
    ['an extra value that is an object', { extra: { a: 1 } }, /^input_data\.extra must be a string$/],
    [
      'an extra value over 4096 characters',
      { extra: 'x'.repeat(4097) },
      /^input_data\.extra must be at most 4096 characters$/,
    ],
    [
      'more than 64 keys',
      Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`extra_${i}`, 'x'])),
      /^input_data must have at most 64 keys$/,
    ],
    [
      'a CA file that is not an absolute path',
      { tls_ca_cert_file: 'ca.pem' },
      /^input_data\.tls_ca_cert_file must match/,
    ],
  ] as const) {
    it(`refuses ${name}, naming the field and not echoing a secret`, async () => {
      const r = await call(
        suite.api.url,
        'POST',
        '/jobs',
        auth,
        transcribingJob(null, input as Record<string, string>),
      );
      assert.equal(r.status, 400, r.text);
      assert.match(r.json.error, message);
      assert.ok(!r.text.includes('AZURE_SPEECH_KEY'));
    });
  }
});

describe('no input reaches a job program as a variable that changes how it runs', () => {
  let api: Api;
  let worker: InProcessWorker;
  const auth = basic(ids());
  before(async () => {
    const config = testConfig();
    api = await startApi(config);
    worker = await startWorker(config);
  });
  after(async () => {
    await worker.close();
    await api.close();
    await cleanup(api.config);
  });

  it('node_options, ld_preload, path and names the service sets are stored, ignored, logged once and not in the environment', async () => {
    const hostile = {
      // had NODE_OPTIONS reached the program, node would fail to start it
      node_options: '--require=/nonexistent/hook.js',
      ld_preload: '/nonexistent/evil.so',
      path: '/nonexistent/bin',
      job_id: 'aaaaaaaaaaaaaaaaaaaaaaaaaa',
      redis_url: 'redis://evil.example:6379',
    };
    const r = await call(api.url, 'POST', '/jobs', auth, recordingJob(ids(), hostile));
    assert.equal(r.status, 200, r.text);
    const id = r.json.id;
    const job = await waitFor(
      'job finished',
      async () => {
        const j = (await call(api.url, 'GET', `/jobs/${id}`, auth)).json;
        return ['succeeded', 'failed'].includes(j.status) ? j : undefined;
      },
      30_000,
    );
    assert.equal(job.status, 'succeeded', job.error);
    const env = JSON.parse(readFileSync(join(worker.worker.jobsDir, id, 'env.json'), 'utf8')) as Record<string, string>;
    assert.equal(env.NODE_OPTIONS, process.env.NODE_OPTIONS);
    assert.equal(env.LD_PRELOAD, process.env.LD_PRELOAD);
    assert.equal(env.PATH, process.env.PATH);
    assert.equal(env.JOB_ID, id, 'the service sets JOB_ID');
    assert.equal(env.REDIS_URL, undefined, 'no service setting reaches a job');
    for (const value of Object.values(hostile)) assert.ok(!Object.values(env).includes(value), value);
    assert.equal(env.WIDTH, '1280', "the job type's own inputs do reach it");
    const log = (await call(api.url, 'GET', `/jobs/${id}/logs`, auth)).text;
    const notes = log.split('\n').filter((l) => l.includes('ignored'));
    assert.equal(notes.length, 1, log);
    assert.match(
      notes[0]!,
      /input_data keys this service does not use, ignored: node_options, ld_preload, path, job_id, redis_url/,
    );
  });
});

describe('HTTPS to a site whose certificate comes from a private CA', () => {
  const dir = mkdtempSync(join(tmpdir(), 'co-tls-'));
  const token = ids();
  let mm: MattermostStandIn;
  const h = new JobProgramHarness(
    fileURLToPath(new URL('../workers/transcriber/main.js', import.meta.url)),
    [47600, 47620],
  );
  let media = '';

  before(async () => {
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    ssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=Test Private CA',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
    );
    ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      '/CN=mattermost',
      '-keyout',
      'site.key',
      '-out',
      'site.csr',
    );
    writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    ssl(
      'x509',
      '-req',
      '-in',
      'site.csr',
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '1',
      '-extfile',
      'san.ext',
      '-out',
      'site.pem',
    );
    mm = new MattermostStandIn({
      authToken: token,
      tls: { key: readFileSync(join(dir, 'site.key'), 'utf8'), cert: readFileSync(join(dir, 'site.pem'), 'utf8') },
    });
    await mm.start();
    await h.start();
    media = join(dir, 'speech.wav');
    execFileSync('espeak-ng', ['-w', media, 'the quick brown fox jumps over the lazy dog']);
  });
  after(async () => {
    await mm.close();
    await h.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const transcribe = (name: string, extra: Record<string, string>) =>
    h.run({
      JOB_ID: ids(),
      JOB_DIR: join(dir, name),
      ARTIFACTS_DIR: join(dir, `${name}-artifacts`),
      TRANSCRIBE_API: 'pocketsphinx',
      MEDIA_URL: pathToFileURL(media).href,
      MEDIA_URL_ALLOW: `${pathToFileURL(dir).href}/`,
      SITE_URL: mm.url,
      CALL_ID: ids(),
      POST_ID: ids(),
      TRANSCRIPTION_ID: ids(),
      AUTH_TOKEN: token,
      ...extra,
    });

  it('delivers with TLS_CA_CERT_FILE naming the CA', async () => {
    const job = transcribe('with-ca', { TLS_CA_CERT_FILE: join(dir, 'ca.pem') });
    const [code] = await job.exited;
    assert.equal(code, 0, job.output());
    assert.equal(mm.transcriptions.length, 1);
    assert.ok(
      mm.log.some((l) => l.startsWith('POST /plugins/com.mattermost.calls/bot/uploads/')),
      mm.log.join('\n'),
    );
  });

  it('fails at once without it, saying the certificate is not trusted and how to fix it', async () => {
    const job = transcribe('without-ca', {});
    const [code] = await job.exited;
    assert.equal(code, 1, job.output());
    assert.match(job.output(), /TLS certificate is not trusted: .*tls_ca_cert_file/);
    assert.doesNotMatch(job.output(), /attempt 2 of/, 'not retried: asking again cannot help');
    assert.equal(mm.transcriptions.length, 1, 'nothing more delivered');
  });

  it('an unreadable CA file stops the job at start, naming the file, with one reason whatever is wrong', async () => {
    // The path is the client's input and the job's log is the client's to read: the reason must
    // not say whether a file is there, readable or how large. /dev/zero and a directory are also
    // refused before reading (/dev/zero filled the memory).
    const reasons: string[] = [];
    for (const [name, path] of [
      ['bad-ca', join(dir, 'missing.pem')],
      ['not-pem', join(dir, 'san.ext')],
      ['zero-ca', '/dev/zero'],
      ['dir-ca', dir],
    ] as const) {
      const bad = transcribe(name, { TLS_CA_CERT_FILE: path });
      assert.equal((await bad.exited)[0], 2, bad.output());
      const reason = /invalid input: (.*)/.exec(bad.output())?.[1] ?? bad.output();
      assert.doesNotMatch(bad.output(), /subjectAltName/, 'the file is not echoed');
      reasons.push(reason.replace(path, '<path>'));
    }
    assert.deepEqual(
      new Set(reasons),
      new Set(['TLS_CA_CERT_FILE <path> is not a readable regular file of at most 1 MiB holding a PEM certificate']),
    );
  });
});

describe('an Azure transcription job', () => {
  const stack = new ServiceStack({ icePorts: '47640-47660', stopGraceSec: 10, standIn: {} });
  before(() => stack.start());
  after(() => stack.stop());

  it('fails at start saying which engines there are, tells the plugin, and its key goes nowhere', async () => {
    const key = `azure-key-${randomBytes(8).toString('hex')}`;
    const body = transcribingJob(
      { AZURE_SPEECH_KEY: key, AZURE_SPEECH_REGION: 'westeurope' },
      { site_url: stack.mm.url, auth_token: stack.authToken },
    );
    const created = await stack.request('POST', '/jobs', body);
    assert.equal(created.status, 200, created.text);
    const { job, log } = await stack.finished(created.json.id, 60_000);
    assert.equal(job.status, 'failed');
    assert.match(job.error, /no Azure speech engine: it transcribes with whisper\.cpp .* or pocketsphinx/);
    const told = stack.mm.statuses.find((s) => s.jobId === body.input_data.transcription_id);
    assert.equal(told?.body.Status, 'failed');
    assert.match(String(told?.body.omitempty), /no Azure speech engine/);
    const everything = [
      JSON.stringify(job),
      log,
      JSON.stringify(await stack.api.services.redis.hgetall(stack.api.services.store.keys.job(job.id))),
      ...readdirSync(join(stack.config.dataDir, 'jobs', job.id)).map((f) =>
        readFileSync(join(stack.config.dataDir, 'jobs', job.id, f), 'utf8'),
      ),
    ];
    for (const text of everything) assert.ok(!text.includes(key), text.slice(0, 200));
  });
});
