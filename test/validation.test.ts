// Every bad input gets a 400 whose message names the field, and nothing is stored or queued.
import { describe, it } from 'node:test';
import { connect } from 'node:net';
import assert from 'node:assert/strict';
import { basic, call, ids, recordingJob, suiteApi } from './helpers.js';

const good = recordingJob('a'.repeat(26));
const withInput = (input: Record<string, unknown>) => ({ ...good, input_data: { ...good.input_data, ...input } });
const without = (key: string) => {
  const input: Record<string, unknown> = { ...good.input_data };
  delete input[key];
  return { ...good, input_data: input };
};

const cases: [string, unknown, RegExp][] = [
  ['malformed JSON', '{"type": "recording",', /^request body is not valid JSON/],
  ['a JSON array', '[]', /^request body must be a JSON object$/],
  ['no body', undefined, /^request body must be a JSON object$/],
  [
    'body over 1 MB',
    JSON.stringify({ ...good, pad: 'x'.repeat(1_100_000) }),
    /^request body is larger than 1048576 bytes$/,
  ],
  ['unknown type', { ...good, type: 'streaming' }, /^type must be one of recording, transcribing, captioning$/],
  ['type of the wrong JSON type', { ...good, type: 7 }, /^type must be a string$/],
  ['missing type', (({ type: _t, ...rest }) => rest)(good), /^type is required$/],
  ['max_duration_sec as a string', { ...good, max_duration_sec: '3600' }, /^max_duration_sec must be an integer$/],
  ['max_duration_sec 0', { ...good, max_duration_sec: 0 }, /^max_duration_sec must be at least 1$/],
  ['max_duration_sec negative', { ...good, max_duration_sec: -5 }, /^max_duration_sec must be at least 1$/],
  ['max_duration_sec over the cap', { ...good, max_duration_sec: 90_000 }, /^max_duration_sec must be at most 86400$/],
  ['max_duration_sec fractional', { ...good, max_duration_sec: 1.5 }, /^max_duration_sec must be an integer$/],
  ['unknown top-level field', { ...good, priority: 1 }, /^priority is not a known field$/],
  [
    'runner from another registry',
    { ...good, runner: 'evil/calls-recorder:v0.8.5' },
    /^runner must be mattermost\/calls-recorder:vX\.Y\.Z/,
  ],
  [
    'runner of the wrong image for the type',
    { ...good, runner: 'mattermost/calls-transcriber:v0.7.1' },
    /^runner must be mattermost\/calls-recorder/,
  ],
  [
    'runner below the minimum version',
    { ...good, runner: 'mattermost/calls-recorder:v0.5.0' },
    /older than the minimum supported calls-recorder v0\.6\.0/,
  ],
  ['input_data not an object', { ...good, input_data: 'call' }, /^input_data must be an object$/],
  [
    'an extra input_data key that is not a valid name',
    withInput({ 'Volume!': 11 }),
    /^input_data key "Volume!" is not valid/,
  ],
  ['call_id not an id', withInput({ call_id: 'ABC' }), /^input_data\.call_id must be 26 characters of a-z and 0-9$/],
  [
    'post_id too long',
    withInput({ post_id: 'a'.repeat(27) }),
    /^input_data\.post_id must be 26 characters of a-z and 0-9$/,
  ],
  ['missing call_id', without('call_id'), /^input_data\.call_id is required$/],
  ['site_url without auth_token', without('auth_token'), /^input_data\.auth_token is required$/],
  ['site_url with a path', withInput({ site_url: 'http://mm/x' }), /^input_data\.site_url must match/],
  // the pattern lets these through and the URL parser refuses them: they were a 500
  [
    'site_url with a port past 65535',
    withInput({ site_url: 'http://a:99999' }),
    /^input_data\.site_url is not a valid URL$/,
  ],
  [
    'site_url with a broken IPv6 host',
    withInput({ site_url: 'http://[' }),
    /^input_data\.site_url is not a valid URL$/,
  ],
  [
    'site_url with a %-escape in the host',
    withInput({ site_url: 'http://%zz' }),
    /^input_data\.site_url is not a valid URL$/,
  ],
  [
    'input_data of more than 16 KiB in all, each key within its own bound',
    withInput(Object.fromEntries(Array.from({ length: 10 }, (_, k) => [`extra_${k}`, 'x'.repeat(2000)]))),
    /^input_data is larger than 16 KiB in all/,
  ],
  ['no input_data at all', (({ input_data: _i, ...rest }) => rest)(good), /^input_data is required$/],
  [
    'site_url of 100 KB',
    withInput({ site_url: `http://${'a'.repeat(100_000)}` }),
    /^input_data\.site_url must be at most 2048 characters$/,
  ],
  [
    'site_url with a control character',
    withInput({ site_url: 'http://mm\u0007x' }),
    /^input_data\.site_url must match/,
  ],
  [
    'transcriber: media_url of 900 KB',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { media_url: `https://mm/${'a'.repeat(900_000)}` },
    },
    /^input_data\.media_url must be at most 4096 characters$/,
  ],
  [
    'transcriber: media_url of a local file nobody allowed',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { media_url: 'file:///etc/passwd' },
    },
    /^input_data\.media_url is not allowed: file:\/\/ is not allowed there; the service reads media only from the job's site_url and what JOBS_MEDIAURLALLOW lists$/,
  ],
  [
    'transcriber: media_url on a host nobody allowed (loopback written as a number)',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { media_url: 'http://0x7f000001:6379/x' },
    },
    /^input_data\.media_url is not allowed: http:\/\/127\.0\.0\.1:6379 is not an allowed source/,
  ],
  [
    'transcriber: media_url with a user and password',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { media_url: 'https://user:pass@mm.example/x.mp4' },
    },
    /^input_data\.media_url is not allowed: it carries a user name or password/,
  ],
  [
    'transcriber: media_url of a file whose %-encoding is broken',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { media_url: 'file:///srv/%E0%A4%A' },
    },
    /^input_data\.media_url is not allowed: its path is not valid %-encoding/,
  ],
  [
    'transcriber: media_url with a NUL',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { media_url: 'file:///srv/a\u0000.mp4' },
    },
    /^input_data\.media_url must match/,
  ],
  ['width below 1280', withInput({ width: 1279 }), /^input_data\.width must be at least 1280$/],
  ['width above 3840', withInput({ width: 3841 }), /^input_data\.width must be at most 3840$/],
  ['height below 720', withInput({ height: 480 }), /^input_data\.height must be at least 720$/],
  ['height above 2160', withInput({ height: 4320 }), /^input_data\.height must be at most 2160$/],
  ['odd width', withInput({ width: 1281 }), /^input_data\.width must be a multiple of 2$/],
  ['odd height', withInput({ height: 721 }), /^input_data\.height must be a multiple of 2$/],
  ['video_rate below 500', withInput({ video_rate: 499 }), /^input_data\.video_rate must be at least 500$/],
  ['video_rate above 10000', withInput({ video_rate: 10001 }), /^input_data\.video_rate must be at most 10000$/],
  ['audio_rate below 32', withInput({ audio_rate: 31 }), /^input_data\.audio_rate must be at least 32$/],
  ['audio_rate above 320', withInput({ audio_rate: 321 }), /^input_data\.audio_rate must be at most 320$/],
  ['frame_rate below 10', withInput({ frame_rate: 9 }), /^input_data\.frame_rate must be at least 10$/],
  ['frame_rate above 60', withInput({ frame_rate: 61 }), /^input_data\.frame_rate must be at most 60$/],
  [
    'frame_rate as a string that is no number',
    withInput({ frame_rate: 'thirty' }),
    /^input_data\.frame_rate must be an integer$/,
  ],
  [
    'unknown video_preset',
    withInput({ video_preset: 'placebo' }),
    /^input_data\.video_preset must be one of medium, fast, faster, veryfast, superfast, ultrafast$/,
  ],
  ['unknown output_format', withInput({ output_format: 'mkv' }), /^input_data\.output_format must be one of mp4$/],
  [
    'transcriber: unknown model_size',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { call_id: 'a'.repeat(26), model_size: 'huge' },
    },
    /^input_data\.model_size must be one of tiny, base, small, medium, large$/,
  ],
  [
    'transcriber: live_captions_on as a string',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { call_id: 'a'.repeat(26), live_captions_on: 'yes' },
    },
    /^input_data\.live_captions_on must be a boolean$/,
  ],
  [
    'transcriber: language of three letters',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { call_id: 'a'.repeat(26), live_captions_language: 'eng' },
    },
    /^input_data\.live_captions_language must match/,
  ],
  [
    'transcriber: neither call_id nor media_url',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: {},
    },
    /^input_data\.(call_id|media_url) is required$/,
  ],
  [
    'transcriber: live captions of a finished recording',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: { media_url: 'file:///srv/recording.mp4', live_captions_on: true },
    },
    /^input_data\.call_id is required$/,
  ],
  [
    'transcriber: a finished recording to post, without the call to post it to',
    {
      type: 'transcribing',
      max_duration_sec: 60,
      runner: 'mattermost/calls-transcriber:v0.7.1',
      input_data: {
        media_url: 'file:///srv/recording.mp4',
        site_url: 'http://mm',
        post_id: 'a'.repeat(26),
        auth_token: 'a'.repeat(26),
        transcription_id: 'a'.repeat(26),
      },
    },
    /^input_data\.call_id is required$/,
  ],
];

describe('validation', () => {
  const suite = suiteApi();
  const auth = basic(ids());

  for (const [name, body, message] of cases) {
    it(`POST /jobs refuses ${name}`, async () => {
      const r = await call(suite.api.url, 'POST', '/jobs', auth, body);
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json.code, '400');
      assert.match(r.json.error, message);
    });
  }

  it('stored and queued nothing for any of them', async () => {
    const { redis, keys } = suite.api.services.store;
    assert.equal(await redis.zcard(keys.jobs), 0);
    for (const q of Object.values(suite.api.services.queues)) {
      const counts = await q.getJobCounts('wait', 'delayed', 'active');
      assert.deepEqual(Object.values(counts), [0, 0, 0]);
    }
  });

  it('the good job the cases derive from is accepted', async () => {
    const r = await call(suite.api.url, 'POST', '/jobs', auth, good);
    assert.equal(r.status, 200, r.text);
  });

  it('refuses ids that are not 26 characters of [a-z0-9] in paths, and bad query values', async () => {
    for (const path of ['/jobs/ABC', '/jobs/abc/logs', `/jobs/${'a'.repeat(27)}/stop`]) {
      const method = path.endsWith('/stop') ? 'POST' : 'GET';
      const r = await call(suite.api.url, method, path, auth);
      assert.equal(r.status, 400, path);
      assert.equal(r.json.error, 'params.id must be 26 characters of a-z and 0-9');
    }
    const q = await call(suite.api.url, 'GET', '/jobs?per_page=1000', auth);
    assert.equal(q.status, 400);
    assert.equal(q.json.error, 'query.per_page must be at most 200');
    const s = await call(suite.api.url, 'GET', '/jobs?status=done', auth);
    assert.equal(
      s.json.error,
      'query.status must be one of queued, starting, running, stopping, succeeded, failed, canceled',
    );
  });

  it('register refuses short keys and malformed client ids, naming the field', async () => {
    const short = await call(suite.api.url, 'POST', '/register', null, { clientID: 'abc', authKey: 'short' });
    assert.equal(short.status, 400);
    assert.equal(short.json.error, 'authKey must be at least 32 characters');
    const badId = await call(suite.api.url, 'POST', '/register', null, { clientID: 'a b', authKey: 'x'.repeat(40) });
    assert.match(badId.json.error, /^clientID must match/);
  });

  /** What the server answers to these raw bytes. */
  const raw = (bytes: string) =>
    new Promise<string>((resolve, reject) => {
      const { port } = new URL(suite.api.url);
      const socket = connect(Number(port), '127.0.0.1', () => socket.end(bytes));
      let answer = '';
      socket.on('data', (c) => (answer += c));
      socket.on('end', () => resolve(answer));
      socket.on('error', reject);
    });

  it('answers in the {error, code} envelope before any route runs too, never echoing the input', async () => {
    const badEncoding = await call(suite.api.url, 'GET', '/jobs/%E0%A4%A', auth);
    assert.equal(badEncoding.status, 400);
    assert.deepEqual(badEncoding.json, { error: 'the request path is not valid URL encoding', code: '400' });
    const long = await call(suite.api.url, 'GET', `/jobs/${'a'.repeat(5000)}`, auth);
    assert.equal(long.status, 414);
    assert.deepEqual(long.json, { error: 'a path parameter is too long', code: '414' });
    const huge = await raw(`GET /jobs HTTP/1.1\r\nHost: x\r\nX-Pad: ${'p'.repeat(20_000)}\r\n\r\n`);
    assert.match(huge, /^HTTP\/1\.1 431 /);
    assert.deepEqual(JSON.parse(huge.split('\r\n\r\n')[1]!), {
      error: 'the request line or headers are larger than the server accepts',
      code: '431',
    });
    const garbage = await raw('NOT HTTP AT ALL\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400 /);
    assert.equal(JSON.parse(garbage.split('\r\n\r\n')[1]!).code, '400');
    const unknownKey = await call(suite.api.url, 'POST', '/jobs', auth, { ...good, ['k'.repeat(100_000)]: 1 });
    assert.equal(unknownKey.status, 400);
    assert.ok(unknownKey.text.length < 300, `answer of ${unknownKey.text.length} bytes`);
  });
});
