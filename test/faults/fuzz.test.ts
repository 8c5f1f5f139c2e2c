// Fuzz runs, bounded in count (FUZZ_COUNT) and seeded (FUZZ_SEED, printed): every API route with
// mutated bodies, odd headers and paths, then the SFU's signalling WebSocket with mutated plugin
// actions and garbage frames, then its media ports with datagrams from a stranger. Only 4xx answers
// and clean closes are allowed: never a 5xx, a crash, a hang, or a stored record that the API would
// not have accepted.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { RtpHeader, RtpPacket } from 'werift';
import { encode } from '@msgpack/msgpack';
import { WebSocket } from 'ws';
import {
  type Api,
  KEY,
  call,
  ids,
  recordingJob,
  startApi,
  testConfig,
  cleanup,
  dtlsClientHello,
  seeded,
  freePort,
  stopChild,
  waitFor,
} from '../helpers.js';
import { FUZZ_COUNT, report, spawnCli } from './harness.js';
import { jobStatuses, jobTypes } from '../../src/jobs/schema.js';
import { Sfu } from '../../src/sfu/server/server.js';
import { joinTokenPolicy } from '../../src/sfu/server/policy.js';
import { HeadlessParticipant } from '../../src/sfu/client/participant.js';
import { mintToken } from '../../src/sfu/token.js';
import { actions as pluginActions } from '../../src/sfu/protocol/calls.js';
import { createLogger } from '../../src/log.js';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);

const random = seeded(SEED);
const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;

/** Values a mutation puts somewhere: wrong types, edges, things that have broken parsers. */
const odd = (): unknown =>
  pick<() => unknown>([
    () => null,
    () => true,
    () => 0,
    () => -1,
    () => 1e308,
    () => 2 ** 53 + 1,
    () => NaN,
    () => '',
    () => ' ',
    () => 'x'.repeat(Math.floor(random() * 10_000)),
    () => '\u0000\u001f\u007f',
    () => '../../etc/passwd',
    () => 'file:///etc/passwd',
    () => 'http://169.254.169.254/',
    () => '__proto__',
    () => [],
    () => [1, 'a', null],
    () => ({}),
    () => ({ __proto__: { admin: true } }),
    () => JSON.parse('{"__proto__":{"polluted":1}}'),
    () => ({ a: { b: { c: { d: {} } } } }),
    () => '😀'.repeat(50),
    () => ids(),
    () => 'A'.repeat(26),
  ])();

function mutate(value: unknown, depth = 0): unknown {
  if (depth > 3 || random() < 0.15) return odd();
  if (Array.isArray(value)) return value.map((v) => mutate(v, depth + 1));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const r = random();
      if (r < 0.1) continue; // dropped
      out[r < 0.15 ? pick(['__proto__', 'constructor', k.toUpperCase(), `${k}\u0000`, 'x'.repeat(70)]) : k] =
        random() < 0.3 ? mutate(v, depth + 1) : v;
    }
    if (random() < 0.2) out[pick(['extra', 'Runners', 'Runner', 'input_data', 'type'])] = odd();
    return out;
  }
  return random() < 0.3 ? odd() : value;
}

const bodies = () => [
  recordingJob(ids()),
  {
    type: 'transcribing',
    max_duration_sec: 60,
    runner: 'mattermost/calls-transcriber:v0.7.1',
    input_data: { call_id: ids(), transcribe_api: 'whisper.cpp', model_size: 'tiny' },
  },
  {
    type: 'captioning',
    max_duration_sec: 60,
    runner: 'mattermost/calls-transcriber:v0.7.1',
    input_data: { call_id: ids() },
  },
  { clientID: ids(), authKey: 'k'.repeat(40) },
  { Runners: ['mattermost/calls-recorder:v0.8.5'] },
  { clientID: ids() },
];

describe('fuzz: the API', () => {
  let api: Api;
  before(async () => {
    api = await startApi(
      testConfig({
        API_SECURITY_ENABLEADMIN: 'true',
        API_SECURITY_ADMINSECRETKEY: 'a'.repeat(40),
        API_LIMITS_CLIENTREQUESTSPERSEC: '100000',
        API_LIMITS_REGISTRATIONSPERMINUTE: '100000',
      }),
    );
  });
  after(async () => {
    await api.close();
    await cleanup(api.config);
  });

  it(`${FUZZ_COUNT} mutated requests over every route: only 2xx and 4xx, and every stored job is one the API accepts`, async () => {
    const client = ids();
    const known: string[] = [];
    const paths = () => [
      '/jobs',
      `/jobs/${pick(known.length ? known : [ids()])}`,
      `/jobs/${ids()}/logs`,
      `/jobs/${pick(known.length ? known : [ids()])}/stop`,
      '/jobs/init',
      '/register',
      '/unregister',
      '/login',
      `/calls/${ids()}/tokens`,
      '/version',
      '/healthz',
      '/readyz',
      '/metrics',
      '/admin/queues',
      '/openapi.yaml',
      `/jobs/${'%'.repeat(3)}`,
      `/jobs/${'a'.repeat(5000)}`,
      '/jobs?page=-1&per_page=1e9',
      `/jobs?type=${encodeURIComponent(String(odd()))}`,
      '/../../etc/passwd',
      `/jobs/${encodeURIComponent('\u0000')}`,
    ];
    const auths = () => [
      null,
      { basic: [client, KEY] as [string, string] },
      { basic: [client, 'wrong'.repeat(8)] as [string, string] },
      { basic: ['admin', 'a'.repeat(40)] as [string, string] },
      { bearer: randomBytes(32).toString('base64url') },
      { basic: [String(odd()).slice(0, 200), String(odd()).slice(0, 200)] as [string, string] },
    ];
    const statuses: Record<number, number> = {};
    const failures: string[] = [];
    for (let i = 0; i < FUZZ_COUNT; i++) {
      const method = pick(['GET', 'POST', 'POST', 'POST', 'DELETE', 'PUT', 'PATCH']);
      const path = pick(paths());
      const raw = random() < 0.1;
      const body =
        method === 'GET' || method === 'DELETE'
          ? undefined
          : raw
            ? pick(['{', 'null', '[]', '"x"', '\u0000', '{"a":'.repeat(500), randomBytes(64).toString('latin1')])
            : mutate(pick(bodies()));
      const r = await call(api.url, method, path, pick(auths()), body).catch((err: Error) => ({
        status: 0,
        text: err.message,
        json: undefined,
      }));
      statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      if (r.status === 0 || r.status >= 500)
        failures.push(`${method} ${path.slice(0, 80)} → ${r.status} ${r.text.slice(0, 200)}`);
      if (r.status === 200 && method === 'POST' && path === '/jobs' && r.json?.id) known.push(r.json.id);
      if (r.status >= 400 && r.status !== 0)
        assert.ok(
          r.json && typeof r.json.error === 'string',
          `${method} ${path.slice(0, 80)}: ${r.status} outside the envelope: ${r.text.slice(0, 200)}`,
        );
    }
    // What was stored is what the API would accept: a known type and status, an input object of bounded keys.
    const redis = api.services.redis;
    const prefix = api.config.redisPrefix;
    const jobIds = await redis.zrange(`${prefix}:jobs`, '0', '-1');
    for (const id of jobIds) {
      const h = await redis.hgetall(`${prefix}:job:${id}`);
      assert.ok(
        (jobTypes as readonly string[]).includes(h.type!) && (jobStatuses as readonly string[]).includes(h.status!),
        JSON.stringify(h),
      );
      const input = JSON.parse(h.input!) as Record<string, unknown>;
      assert.ok(input && typeof input === 'object' && !Array.isArray(input));
      for (const [k, v] of Object.entries(input)) {
        assert.match(k, /^[a-z][a-z0-9_]{0,63}$/);
        assert.ok(typeof v !== 'string' || v.length <= 4096, `${k} of ${String(v).length} characters stored`);
      }
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype was polluted');
    report({
      fault: 'API fuzz',
      injected: FUZZ_COUNT,
      jobs: jobIds.length,
      lost: 0,
      twice: 0,
      recoverMs: null,
      note: `seed ${SEED}; answers ${JSON.stringify(statuses)}`,
    });
    assert.deepEqual(failures, [], `seed ${SEED}`);
  });
});

describe('fuzz: the signalling WebSocket', () => {
  const secret = randomBytes(32).toString('hex');
  let sfu: Sfu;
  let url: string;
  before(async () => {
    sfu = new Sfu({
      host: '127.0.0.1',
      port: 0,
      ice: { bindAddress: '127.0.0.1', portRange: [44000, 44200] },
      policy: joinTokenPolicy(secret),
      log: createLogger(testConfig(), 'sfu'),
    });
    url = await sfu.listen();
  });
  after(() => sfu.close());

  it(`${Math.ceil(FUZZ_COUNT / 3)} mutated frames: clean closes or answers, the SFU lives, and a participant still joins`, async () => {
    const call = ids();
    const token = (user: string) => mintToken(secret, { call, user, name: user, role: 'participant', ttlSec: 300 });
    // Every action of the protocol (calls.ts), and names the server does not know.
    const actions = [...pluginActions, 'lower_hand', 'nope'].map((a) => `custom_com.mattermost.calls_${a}`);
    let seq = 1;
    /** `wellFormed`: a request the server reads, with mutated data, so that it reaches the handlers. */
    const frame = (wellFormed: boolean): string | Buffer => {
      const data = { channelID: call, data: '{}', source: 'mic', sessionID: ids(), text: 'hi', new_audio_len_ms: 100 };
      const request = wellFormed
        ? { action: pick(actions), seq: seq++, data: mutate(data) }
        : mutate({ action: pick(actions), seq: seq++, data });
      const r = random();
      if (!wellFormed && r < 0.1) return randomBytes(Math.floor(random() * 300));
      if (r < 0.4) return Buffer.from(encode(request));
      return JSON.stringify(request);
    };
    const total = Math.ceil(FUZZ_COUNT / 3);
    const closes: Record<string, number> = {};
    let sent = 0;
    for (let conn = 0; sent < total; conn++) {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/api/v4/websocket`, {
        headers: { authorization: `Bearer ${token(`fuzz${conn}`)}` },
      });
      const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
      ws.on('error', () => undefined);
      await new Promise((r) => ws.once('message', r)); // hello
      for (let i = 0; i < 30 && ws.readyState === WebSocket.OPEN; i++, sent++) ws.send(frame(conn % 3 !== 0));
      const code = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 300))]);
      if (code === -1) {
        ws.close();
        await closed;
      }
      closes[code === -1 ? 'open' : String(code)] = (closes[code === -1 ? 'open' : String(code)] ?? 0) + 1;
      assert.ok(
        code === -1 ||
          [1000, 1003, 1008, 1009, 1013, 4000, 4001, 4003, 4008, 4029].includes(code) ||
          (code >= 4000 && code < 5000),
        `close code ${code}`,
      );
    }
    const alice = new HeadlessParticipant({ siteUrl: url, callId: call, token: token('alice') });
    await alice.join();
    assert.ok(alice.me?.sessionId, 'a participant joins after the fuzz');
    alice.leave();
    report({
      fault: 'signalling fuzz',
      injected: sent,
      jobs: 0,
      lost: 0,
      twice: 0,
      recoverMs: null,
      note: `seed ${SEED}; connections ended ${JSON.stringify(closes)}; a participant joined after`,
    });
  });
});

describe('fuzz: the media ports', () => {
  const secret = randomBytes(32).toString('hex');
  const ports = [44300, 44340] as const;
  // The participants' own media ports are strangers' targets too: they are what a job's bot
  // exposes, and its side of DTLS is the server's (it offers, the SFU or rtcd answers active).
  const alicePorts = [44350, 44354] as const;
  const bobPorts = [44355, 44359] as const;
  let sfu: ReturnType<typeof spawnCli>;
  let url: string;
  const healthy = () =>
    fetch(`${url}/healthz`, { signal: AbortSignal.timeout(20_000) }).then(
      (r) => r.ok,
      () => false,
    );
  before(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    sfu = spawnCli('sfu', {
      SFU_LISTENADDRESS: `127.0.0.1:${port}`,
      SFU_ICEPORTRANGE: ports.join('-'),
      SFU_TOKENSECRET: secret,
      LOGGER_CONSOLELEVEL: 'warn',
    });
    await waitFor('the SFU', healthy, 30_000);
  });
  // SIGKILL: an SFU whose event loop a datagram holds would never handle SIGTERM.
  after(() => stopChild(sfu, 'SIGKILL'));

  /**
   * What a stranger who can reach the media ports sends: RTP headers whose extension block claims
   * more than the packet holds (werift as released spent minutes of one event loop on one of
   * those), and random RTP, RTCP, STUN, DTLS and shapeless datagrams.
   */
  const datagram = (): Buffer => {
    const body = randomBytes(Math.floor(random() * 1200));
    const kinds: (() => Buffer)[] = [
      () => {
        const h = Buffer.alloc(16);
        h[0] = 0x90;
        h[1] = 111;
        h.writeUInt16BE(0xbede, 12);
        h.writeUInt16BE(1 + Math.floor(random() * 0xffff), 14);
        return Buffer.concat([h, randomBytes(12 + Math.floor(random() * 40))]);
      },
      () => Buffer.concat([Buffer.from([0x80 | Math.floor(random() * 0x40), Math.floor(random() * 256)]), body]),
      () => Buffer.concat([Buffer.from([0x80, 192 + Math.floor(random() * 32)]), body]),
      () => Buffer.concat([Buffer.from([0, 1, body.length >> 8, body.length & 0xff, 0x21, 0x12, 0xa4, 0x42]), body]),
      () => Buffer.concat([Buffer.from([20 + Math.floor(random() * 44), 0xfe, 0xfd]), body]),
      () => body,
      dtlsClientHello,
    ];
    return pick(kinds)();
  };

  it(`${Math.ceil(FUZZ_COUNT / 3)} datagrams from a stranger to every media port, the SFU's and the participants': the call goes on`, async () => {
    const call = ids();
    const token = (user: string) => mintToken(secret, { call, user, name: user, role: 'participant', ttlSec: 300 });
    const ice = (portRange: readonly [number, number]) => ({
      bindAddress: '127.0.0.1',
      portRange: [...portRange] as [number, number],
    });
    const alice = new HeadlessParticipant({
      siteUrl: url,
      callId: call,
      token: token('alice'),
      subscribe: 'none',
      ice: ice(alicePorts),
    });
    const bob = new HeadlessParticipant({ siteUrl: url, callId: call, token: token('bob'), ice: ice(bobPorts) });
    await alice.join();
    await bob.join();
    const { mic } = await alice.publish('mic');
    let received = 0;
    bob.onRtp(() => received++);
    // Alice talks throughout: 20 ms Opus-sized packets.
    let seq = 0;
    const talking = setInterval(() => {
      seq++;
      mic.writeRtp(
        new RtpPacket(
          new RtpHeader({ payloadType: 111, sequenceNumber: seq & 0xffff, timestamp: seq * 960, ssrc: 7 }),
          randomBytes(80),
        ),
      );
    }, 20);
    const stranger = createSocket('udp4');
    try {
      await waitFor('bob hears alice', () => received > 0, 30_000);
      await new Promise<void>((r) => stranger.bind(0, '127.0.0.1', r));
      const total = Math.ceil(FUZZ_COUNT / 3);
      const targets = [ports, alicePorts, bobPorts].flatMap(([from, to]) =>
        Array.from({ length: to - from + 1 }, (_, i) => from + i),
      );
      for (let i = 0; i < total; i++) {
        for (const port of targets) stranger.send(datagram(), port, '127.0.0.1');
        if (i % 10 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      const before = received;
      assert.ok(await healthy(), 'the SFU answers after the fuzz');
      await waitFor('bob hears alice after the fuzz', () => received > before + 25, 30_000);
      // A new track needs the data channel (the negotiation lock) and a new offer and answer.
      const { camera } = await alice.publish('camera');
      let video = 0;
      bob.onRtp((_, from) => {
        if (from.source === 'camera') video++;
      });
      const frames = setInterval(() => {
        seq++;
        camera.writeRtp(
          new RtpPacket(
            new RtpHeader({
              payloadType: 96,
              sequenceNumber: seq & 0xffff,
              timestamp: seq * 3000,
              ssrc: 8,
              marker: true,
            }),
            randomBytes(900),
          ),
        );
      }, 40);
      await waitFor('bob sees the camera alice turned on after the fuzz', () => video > 10, 30_000).finally(() =>
        clearInterval(frames),
      );
      assert.equal(sfu.exitCode, null, sfu.output.join(''));
      report({
        fault: 'media port fuzz',
        injected: total * targets.length,
        jobs: 0,
        lost: 0,
        twice: 0,
        recoverMs: null,
        note: `seed ${SEED}; datagrams to each of ${targets.length} ports (the SFU's ${ports[1] - ports[0] + 1}, the participants' ${targets.length - (ports[1] - ports[0] + 1)}); forwarding went on, and a camera turned on after was seen`,
      });
    } finally {
      clearInterval(talking);
      stranger.close();
      alice.leave();
      bob.leave();
    }
  });
});
