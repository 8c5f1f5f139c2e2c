// The bundled SFU with real werift connections on loopback, through the Calls plugin's protocol:
// audio between two headless participants, the plugin's events, refusals, captions, a malformed
// frame, and 100 join/leave cycles without leaks.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { type RTCDataChannel, type RTCPeerConnection, RtpHeader, RtpPacket } from 'werift';
import { WebSocket } from 'ws';
import { connect } from 'node:net';
import { encode } from '@msgpack/msgpack';
import { DcType, decodeDc, encodeDc, packSdp } from '../src/sfu/protocol/wire.js';
import { Sfu, type SfuOptions } from '../src/sfu/server/server.js';
import { addressOwner, peerAddress, subnets } from '../src/sfu/server/peer-address.js';
import { counters, MAX_TRACK_BYTES_PER_SEC } from '../src/sfu/server/track.js';
import { Listener } from '../workers/transcriber/listen.js';
import { readPcm, readTracks } from '../workers/transcriber/transcribe.js';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { joinTokenPolicy } from '../src/sfu/server/policy.js';
import { HeadlessParticipant, type Publisher } from '../src/sfu/client/participant.js';
import type { CallsSocket } from '../src/sfu/client/socket.js';
import { mintToken, type Role } from '../src/sfu/token.js';
import { createLogger } from '../src/log.js';
import { pino } from 'pino';
import { opusSource } from './media.js';
import { Redis } from 'ioredis';
import { startSfuInstance } from '../src/services.js';
import { RECEIVE_BUFFER_BYTES } from '../src/sfu/udp-sockets.js';
import { cleanup, ids, testConfig, waitFor } from './helpers.js';

const SECRET = randomBytes(32).toString('hex');
const execFileAsync = promisify(execFile);
const callId = ids;

export async function startSfu(
  portRange: [number, number] = [42000, 42400],
  options: Partial<SfuOptions> = {},
): Promise<{ sfu: Sfu; url: string }> {
  const sfu = new Sfu({
    host: '127.0.0.1',
    port: 0,
    ice: { bindAddress: '127.0.0.1', portRange },
    policy: joinTokenPolicy(SECRET),
    log: createLogger(testConfig(), 'sfu'),
    ...options,
  });
  return { sfu, url: await sfu.listen() };
}

const token = (call: string, user: string, role: Role = 'participant', ttlSec = 60, secret = SECRET) =>
  mintToken(secret, { call, user, name: `${user[0]!.toUpperCase()}${user.slice(1)}`, role, ttlSec });

describe('sfu', () => {
  let sfu: Sfu;
  let url: string;
  before(async () => ({ sfu, url } = await startSfu()));
  after(() => sfu.close());

  const join = async (call: string, user: string, role: Role = 'participant', subscribe: 'all' | 'audio' = 'all') => {
    const p = new HeadlessParticipant({ siteUrl: url, callId: call, token: token(call, user, role), subscribe });
    await p.join();
    return p;
  };

  it('two headless participants exchange Opus audio, each packet tagged with its publisher', async () => {
    const call = callId();
    const alice = await join(call, 'alice');
    const bob = await join(call, 'bob');
    const heard: Record<string, { from: Publisher; payloads: Set<string> }> = {};
    const listen = (who: string, p: HeadlessParticipant) =>
      p.onRtp((rtp: RtpPacket, from) => {
        (heard[who] ??= { from, payloads: new Set() }).payloads.add(rtp.payload.toString('base64'));
      });
    listen('alice', alice);
    listen('bob', bob);
    const sent: Record<string, Set<string>> = { alice: new Set(), bob: new Set() };
    const aliceMic = (await alice.publish('mic')).mic;
    const bobMic = (await bob.publish('mic')).mic;
    const sources = await Promise.all([
      opusSource(
        (rtp) => {
          sent.alice!.add(rtp.payload.toString('base64'));
          aliceMic.writeRtp(rtp);
        },
        3,
        'sine=frequency=440',
      ),
      opusSource(
        (rtp) => {
          sent.bob!.add(rtp.payload.toString('base64'));
          bobMic.writeRtp(rtp);
        },
        3,
        'sine=frequency=660',
      ),
    ]);
    await Promise.all(sources.map((s) => new Promise((r) => s.once('exit', r))));
    await new Promise((r) => setTimeout(r, 300));

    assert.equal(heard.bob!.from.userId, 'alice');
    assert.equal(heard.bob!.from.source, 'mic');
    assert.equal(heard.bob!.from.codec, 'audio/opus');
    assert.equal(heard.alice!.from.userId, 'bob');
    // 3 s of 20 ms frames is 150 packets; the first few may go before the subscription is up.
    for (const [listener, speaker] of [
      ['bob', 'alice'],
      ['alice', 'bob'],
    ] as const) {
      const got = [...heard[listener]!.payloads].filter((p) => sent[speaker]!.has(p)).length;
      assert.ok(got >= 120, `${listener} received ${got} of ${sent[speaker]!.size} of ${speaker}'s packets unchanged`);
      assert.ok(
        [...heard[listener]!.payloads].every((p) => sent[speaker]!.has(p)),
        'nothing but what was sent',
      );
    }
    alice.leave();
    bob.leave();
  });

  it('a participant that reads its media socket in batches, as a job does, gets every packet, several a wake', async () => {
    const call = callId();
    const alice = await join(call, 'alice');
    const notes: string[] = [];
    const bob = new HeadlessParticipant({
      siteUrl: url,
      callId: call,
      token: token(call, 'bob'),
      subscribe: 'audio',
      receiveEveryMs: 200,
      log: (m) => notes.push(m),
    });
    await bob.join();
    const sent = new Set<string>();
    const heard = new Set<string>();
    let turns = 0;
    let inTurn = false;
    bob.onRtp((rtp) => {
      heard.add(rtp.payload.toString('base64'));
      if (inTurn) return;
      inTurn = true;
      turns++;
      setImmediate(() => (inTurn = false));
    });
    const mic = (await alice.publish('mic')).mic;
    const source = await opusSource(
      (rtp) => {
        sent.add(rtp.payload.toString('base64'));
        mic.writeRtp(rtp);
      },
      3,
      'sine=frequency=440',
    );
    await new Promise((r) => source.once('exit', r));
    await new Promise((r) => setTimeout(r, 500));
    const got = [...heard].filter((p) => sent.has(p)).length;
    assert.ok(got >= 120, `bob received ${got} of ${sent.size} packets unchanged`);
    assert.deepEqual(
      notes.filter((n) => /cannot pause/.test(n)),
      [],
      'the media socket was paused',
    );
    // Sent every 20 ms, read every 200 ms: about ten a wake (one each if read as they come).
    assert.ok(turns * 3 <= got, `${got} packets in ${turns} turns of the event loop`);
    alice.leave();
    bob.leave();
  });

  it("forwards no more of a track than its bound: a participant's flood is dropped at the SFU, and what follows passes", async () => {
    const call = callId();
    const alice = await join(call, 'alice');
    const bob = await join(call, 'bob', 'participant', 'audio');
    const heard = new Set<string>();
    bob.onRtp((rtp) => heard.add(rtp.payload.toString('base64')));
    const mic = (await alice.publish('mic')).mic;
    const speak = async (tone: number) => {
      const sent = new Set<string>();
      const source = await opusSource(
        (rtp) => {
          sent.add(rtp.payload.toString('base64'));
          mic.writeRtp(rtp);
        },
        1,
        `sine=frequency=${tone}`,
      );
      await new Promise((r) => source.once('exit', r));
      await new Promise((r) => setTimeout(r, 300));
      return [...sent].filter((p) => heard.has(p)).length;
    };
    assert.ok((await speak(440)) >= 40, 'the voice is forwarded');
    // 3,000 packets of 1,100 bytes, 100 every 10 ms: 88 Mbit/s where the bound is 1 Mbit/s.
    const dropped = counters.dropped;
    const flood = new Set<string>();
    const started = performance.now();
    for (let i = 0; i < 3000; i += 100) {
      for (let j = i; j < i + 100; j++) {
        const payload = randomBytes(1100);
        flood.add(payload.toString('base64'));
        mic.writeRtp(
          new RtpPacket(new RtpHeader({ payloadType: 111, sequenceNumber: j, timestamp: j * 960 }), payload),
        );
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 500));
    const seconds = (performance.now() - started) / 1000;
    const passed = [...flood].filter((p) => heard.has(p)).length;
    const bound = MAX_TRACK_BYTES_PER_SEC.audio * (1 + seconds);
    assert.ok(passed * 1100 <= bound, `${passed} packets of the flood reached bob in ${seconds.toFixed(1)} s`);
    assert.ok(counters.dropped - dropped >= 3000 - bound / 1100 - 1000, `${counters.dropped - dropped} dropped`);
    // and Prometheus sees them, with the call's two sessions
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, new RegExp(`^calls_offloader_sfu_rtp_packets_dropped_total ${counters.dropped}$`, 'm'));
    assert.match(metrics, /^# TYPE calls_offloader_sfu_rtp_packets_dropped_total counter$/m);
    assert.match(metrics, new RegExp(`^calls_offloader_sfu_participants ${sfu.participantCount}$`, 'm'));
    assert.ok(sfu.participantCount >= 2);
    assert.ok((await speak(660)) >= 40, 'what follows the flood is forwarded');
    alice.leave();
    bob.leave();
  });

  it('signals join, leave, mute and voice activity to the others', async () => {
    const call = callId();
    const carol = await join(call, 'carol');
    const events: string[] = [];
    carol.on('joined', (p) => events.push(`joined ${p.userId}`));
    carol.on('left', (p) => events.push(`left ${p.userId}`));
    carol.on('update', (p) => events.push(`update ${p.userId} ${JSON.stringify(p.tracks)}`));
    carol.on('voice', (p) => events.push(`voice ${p.userId} ${p.speaking}`));
    const dave = await join(call, 'dave');
    const mic = (await dave.publish('mic')).mic;
    const source = await opusSource((rtp) => mic.writeRtp(rtp), 1.5, 'sine=frequency=300');
    await waitFor('voice on', () => events.includes('voice dave true'));
    dave.setMuted(true);
    await waitFor('muted', () => events.some((e) => e === 'update dave {"mic":{"muted":true}}'));
    await new Promise((r) => source.once('exit', r));
    await waitFor('voice off', () => events.includes('voice dave false'));
    dave.leave();
    await waitFor('left', () => events.includes('left dave'));
    assert.deepEqual(
      events.filter((e) => !e.startsWith('voice') && !e.startsWith('update')),
      ['joined dave', 'left dave'],
    );
    assert.ok(events.includes('update dave {"mic":{"muted":false}}'), 'publishing the mic is signalled');
    carol.leave();
  });

  it('refuses bad tokens at the upgrade (401) and a token for another call at the join, with the reason', async () => {
    const call = callId();
    const attempt = (tok: string) => new HeadlessParticipant({ siteUrl: url, callId: call, token: tok }).join();
    for (const bad of [
      token(call, 'eve', 'participant', -5),
      token(call, 'eve', 'participant', 60, 'not-the-secret'),
      'garbage',
    ]) {
      await assert.rejects(attempt(bad), /401/);
    }
    const [body, mac] = token(call, 'eve').split('.');
    const tampered = Buffer.from(
      JSON.stringify({ ...JSON.parse(Buffer.from(body!, 'base64url').toString()), role: 'bot' }),
    ).toString('base64url');
    await assert.rejects(attempt(`${tampered}.${mac}`), /401/);
    await assert.rejects(attempt(token(callId(), 'eve')), /^Error: forbidden$/);
    assert.equal(sfu.participantCount, 0);
  });

  it('a frame that is not a request closes that socket only; the call goes on', async () => {
    const call = callId();
    const alice = await join(call, 'alice');
    for (const frame of ['null', '[]', '"x"', '{"seq":1}', 'not json']) {
      const ws = new WebSocket(`${url.replace('http', 'ws')}/api/v4/websocket`, {
        headers: { authorization: `Bearer ${token(call, 'mallory')}` },
      });
      await new Promise((r) => ws.once('message', r)); // hello
      const closed = new Promise<number>((r) => ws.once('close', r));
      ws.send(frame);
      assert.equal(await closed, 1003, frame);
    }
    const bob = await join(call, 'bob');
    await waitFor('bob seen', () => alice.participants.has(bob.me!.sessionId));
    alice.leave();
    bob.leave();
  });

  it('bots send captions of people in the call that reach everyone; nobody else may', async () => {
    const call = callId();
    const frank = await join(call, 'frank');
    const grace = await join(call, 'grace');
    const bot = await join(call, 'captioner', 'bot', 'audio');
    const captions: string[] = [];
    frank.on('caption', (c) => captions.push(`${c.userId}: ${c.text}`));
    bot.sendCaption(grace.me!.sessionId, 'hello from grace', 1200);
    await waitFor('caption', () => captions.length === 1);
    assert.deepEqual(captions, ['grace: hello from grace']);
    frank.sendCaption(grace.me!.sessionId, 'forged', 1000);
    bot.sendCaption(ids(), 'of nobody here', 1000);
    bot.sendCaption(grace.me!.sessionId, 'still grace', 900);
    await waitFor('the next caption', () => captions.length === 2);
    assert.deepEqual(captions, ['grace: hello from grace', 'grace: still grace']);
    for (const p of [frank, grace, bot]) p.leave();
  });

  it('people who publish at the same moment all reach everyone (no m-line given two tracks)', async () => {
    const call = callId();
    const people = await Promise.all(Array.from({ length: 6 }, (_, i) => join(call, `p${i}`)));
    const heard = people.map((p) => {
      const from = new Set<string>();
      p.onRtp((_rtp, who) => from.add(who.userId));
      return from;
    });
    const mics = await Promise.all(people.map(async (p) => (await p.publish('mic')).mic));
    for (let k = 0; k < 150; k++) {
      mics.forEach((mic, i) => {
        mic.writeRtp(
          new RtpPacket(
            new RtpHeader({ payloadType: 111, sequenceNumber: k, timestamp: k * 960, ssrc: 2000 + i }),
            Buffer.alloc(80, 1),
          ),
        );
      });
      await new Promise((r) => setTimeout(r, 20));
      if (heard.every((h) => h.size === 5)) break;
    }
    assert.deepEqual(
      heard.map((h) => h.size),
      [5, 5, 5, 5, 5, 5],
      heard.map((h) => [...h].join(',')).join(' | '),
    );
    for (const p of people) p.leave();
  });

  it("a new speaker who talks at once: all the SFU received is in the transcriber's audio, from its first packet", async () => {
    const call = callId();
    const dir = mkdtempSync(joinPath(tmpdir(), 'co-listen-'));
    // the transcriber's own listener, as the job runs it
    const listener = new Listener(dir, { siteUrl: url, callId: call, token: token(call, 'transcriber', 'bot') });
    await listener.start();
    const speaker = await join(call, 'speaker');
    const receivedBefore = counters.received;
    const joinedAt = Date.now();
    const mic = (await speaker.publish('mic')).mic;
    let firstAtSfu: number | undefined;
    const source = await opusSource((rtp) => mic.writeRtp(rtp), 3, 'sine=frequency=500');
    const watch = setInterval(() => (firstAtSfu ??= counters.received > receivedBefore ? Date.now() : undefined), 5);
    await new Promise((r) => source.once('exit', r));
    clearInterval(watch);
    const atSfu = counters.received - receivedBefore;
    await new Promise((r) => setTimeout(r, 300)); // the last packets' way to the listener
    await listener.stop();
    const [track] = readTracks(dir);
    const samples = readPcm(joinPath(dir, track!.file)).length;
    const lostMs = ((atSfu * 320 - samples) / 16_000) * 1000;
    console.log(
      `# publisher: first packet at the SFU ${firstAtSfu! - joinedAt} ms after publishing; ${atSfu} packets reached the SFU, the listener lost ${Math.max(0, lostMs).toFixed(0)} ms`,
    );
    assert.ok(atSfu > 100, `the SFU received ${atSfu} packets`);
    assert.ok(
      lostMs < 20,
      `the listener has ${samples} samples for ${atSfu} packets: ${lostMs.toFixed(0)} ms of what reached the SFU is missing`,
    );
    speaker.leave();
    rmSync(dir, { recursive: true, force: true });
  });

  it('100 join/leave cycles leave no participants, calls, sockets or subscriptions behind', async () => {
    const call = callId();
    const listener = await join(call, 'listener');
    await new Promise((r) => setTimeout(r, 200));
    const handles = () =>
      (process as unknown as { _getActiveHandles(): object[] })
        ._getActiveHandles()
        .filter((h) => h.constructor.name === 'Socket' || h.constructor.name === 'UDP').length;
    const before = handles();
    for (let i = 0; i < 100; i++) {
      const p = await join(call, `guest${i}`);
      const mic = (await p.publish('mic')).mic;
      await waitFor('subscribed', () => {
        const server = sfu.calls.get(call)?.sessions.get(listener.me!.sessionId);
        return server && (server as unknown as { subscriptions: Map<unknown, unknown> }).subscriptions.size === 1;
      });
      void mic;
      p.leave();
      await waitFor(`gone ${i}`, () => sfu.calls.get(call)?.sessions.size === 1);
    }
    await new Promise((r) => setTimeout(r, 500));
    const server = sfu.calls.get(call)!.sessions.get(listener.me!.sessionId)! as unknown as {
      subscriptions: Map<unknown, unknown>;
      pc: { getTransceivers(): { stopped: boolean }[] };
    };
    assert.equal(server.subscriptions.size, 0);
    const live = server.pc.getTransceivers().filter((t) => !t.stopped).length;
    assert.ok(live <= 1, `live transceivers on the listener's connection: ${live}`);
    assert.ok(handles() <= before + 2, `sockets and UDP handles: ${before} before, ${handles()} after`);
    listener.leave();
    await waitFor('call closed', () => sfu.calls.size === 0 && sfu.participantCount === 0);
  });
});

describe('sfu codecs', () => {
  let sfu: Sfu;
  let url: string;
  before(async () => ({ sfu, url } = await startSfu()));
  after(() => sfu.close());

  it('forwards H.264 from a publisher that offers only H.264', async () => {
    const call = callId();
    const viewer = new HeadlessParticipant({ siteUrl: url, callId: call, token: token(call, 'viewer') });
    const codecs: string[] = [];
    viewer.onRtp((_rtp, from) => codecs.push(from.codec));
    await viewer.join();
    const publisher = new HeadlessParticipant({
      siteUrl: url,
      callId: call,
      token: token(call, 'h264only'),
      videoCodecs: ['h264'],
    });
    await publisher.join();
    const { camera } = await publisher.publish('camera');
    for (let i = 0; i < 100 && codecs.length < 10; i++) {
      camera.writeRtp(
        new RtpPacket(
          new RtpHeader({ payloadType: 102, sequenceNumber: i, timestamp: i * 3000, ssrc: 7, marker: true }),
          Buffer.from([0x65, 1, 2, 3]),
        ),
      );
      await new Promise((r) => setTimeout(r, 30));
    }
    assert.ok(codecs.length >= 10, `received ${codecs.length} packets`);
    assert.ok(
      codecs.every((c) => c === 'video/h264'),
      codecs.join(','),
    );
    publisher.leave();
    viewer.leave();
  });
});

describe('bot tokens of the bundled SFU', () => {
  it('admit a bot only while its job runs', async () => {
    const config = testConfig({
      SFU_LISTENADDRESS: '127.0.0.1:0',
      SFU_ICEPORTRANGE: '42500-42600',
      SFU_TOKENSECRET: SECRET,
    });
    const sfu = await startSfuInstance(config, createLogger(config, 'sfu'));
    const redis = new Redis(config.redisUrl);
    try {
      const call = callId();
      const job = ids();
      const bot = () =>
        new HeadlessParticipant({
          siteUrl: sfu.url,
          callId: call,
          subscribe: 'audio',
          token: mintToken(SECRET, {
            call,
            session: job,
            user: 'calls-recording-bot',
            name: 'Recording',
            role: 'bot',
            ttlSec: 600,
          }),
        });
      await assert.rejects(bot().join(), /401/, 'no such job');
      await redis.hset(`${config.redisPrefix}:job:${job}`, 'status', 'running');
      const joined = bot();
      await joined.join();
      joined.leave();
      await redis.hset(`${config.redisPrefix}:job:${job}`, 'status', 'succeeded');
      await assert.rejects(bot().join(), /401/, 'the job has ended');
    } finally {
      await sfu.close();
      await redis.quit();
      await cleanup(config);
    }
  });
});

describe('media sockets of the bundled SFU', () => {
  it("get a receive buffer of 1 MB (the kernel's default overflowed at bursts)", async () => {
    // Ports no other socket can take (below the kernel's ephemeral range): the participant's own
    // sockets, in this process too, keep the default buffer.
    const [ephemeralFrom] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    const range: [number, number] = [ephemeralFrom! - 200, ephemeralFrom! - 101];
    const { sfu, url } = await startSfu(range);
    const call = callId();
    const alice = new HeadlessParticipant({ siteUrl: url, callId: call, token: token(call, 'alice') });
    try {
      await alice.join();
      // Linux keeps twice what is set; the most that can be set is net.core.rmem_max.
      const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'utf8'));
      const want = 2 * Math.min(RECEIVE_BUFFER_BYTES, rmemMax);
      // The kernel's own account of the SFU's sockets, once its side of the connection is up.
      await waitFor(`the SFU's sockets with a receive buffer of ${want} bytes`, async () => {
        const { stdout } = await execFileAsync('ss', [
          '-H',
          '-u',
          '-a',
          '-n',
          '-m',
          `sport >= :${range[0]} and sport <= :${range[1]}`,
        ]);
        const rb = [...stdout.matchAll(/skmem:\(r\d+,rb(\d+)/g)].map((m) => Number(m[1]));
        return rb.length > 0 && rb.every((b) => b >= want);
      });
    } finally {
      alice.leave();
      await sfu.close();
    }
  });
});

describe('limits of the bundled SFU', () => {
  it("a joiner past the call's cap, or past the UDP ports, is refused with the plugin's reason, not left without media", async () => {
    const { sfu, url } = await startSfu([42700, 42705]); // six ports: three participants in all
    const { sfu: small, url: smallUrl } = await startSfu([42710, 42750], { maxCallParticipants: 2 });
    const people: HeadlessParticipant[] = [];
    try {
      const join = async (at: string, call: string, user: string) => {
        const p = new HeadlessParticipant({ siteUrl: at, callId: call, token: token(call, user) });
        await p.join();
        people.push(p);
      };
      const [a, b] = [callId(), callId()];
      await join(url, a, 'p1');
      await join(url, a, 'p2');
      await join(url, b, 'p3');
      await assert.rejects(join(url, b, 'p4'), /^Error: user cannot join because of limits$/);
      const c = callId();
      await join(smallUrl, c, 'q1');
      await join(smallUrl, c, 'q2');
      await assert.rejects(join(smallUrl, c, 'q3'), /^Error: user cannot join because of limits$/);
    } finally {
      for (const p of people) p.leave();
      await sfu.close();
      await small.close();
    }
  });
});

describe('peer addresses', () => {
  it('believes X-Forwarded-For only as far as the listed proxies appended it', () => {
    const proxies = subnets('10.0.0.0/8, 2001:db8:ff::1');
    // a client's own entries come first: only the last, appended by the proxy, is believed
    assert.equal(peerAddress('10.1.2.3', '198.51.100.1, 203.0.113.9', proxies), '203.0.113.9');
    // proxies in a chain are passed over, a mapped peer address included
    assert.equal(peerAddress('::ffff:10.1.2.3', '203.0.113.9, 10.9.9.9', proxies), '203.0.113.9');
    assert.equal(peerAddress('2001:db8:ff::1', '2001:db8:1::7', proxies), '2001:db8:1::7');
    // from anyone else, or without it, the peer's own; not an address: the last proxy's
    assert.equal(peerAddress('192.0.2.7', '203.0.113.9', proxies), '192.0.2.7');
    assert.equal(peerAddress('192.0.2.7', '203.0.113.9', undefined), '192.0.2.7');
    assert.equal(peerAddress('10.1.2.3', undefined, proxies), '10.1.2.3');
    assert.equal(peerAddress('10.1.2.3', '203.0.113.9, unknown', proxies), '10.1.2.3');
    // only proxies all the way: the farthest one
    assert.equal(peerAddress('10.1.2.3', '10.4.4.4', proxies), '10.4.4.4');
  });

  it('stands an IPv6 address for its /64 and an IPv4 one, mapped or not, for itself', () => {
    assert.equal(addressOwner('192.0.2.7'), '192.0.2.7');
    assert.equal(addressOwner('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(addressOwner('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(addressOwner('2001:0db8:0001:0002::ffff'), '2001:db8:1:2::/64');
    assert.equal(addressOwner('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(addressOwner('::1'), '0:0:0:0::/64');
    assert.equal(addressOwner('fe80::1%eth0'), 'fe80:0:0:0::/64');
  });
});

/** A socket without a token, through a proxy that says whom it `forwardedFor`: open, or refused with the status of the answer. */
const strangerAt = (ws: string, forwardedFor?: string) =>
  new Promise<WebSocket | number>((resolve) => {
    const s = new WebSocket(ws, forwardedFor ? { headers: { 'x-forwarded-for': forwardedFor } } : {});
    s.on('error', () => undefined);
    s.once('open', () => resolve(s));
    s.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
  });

describe('the bundled SFU against strangers and misbehaving sockets', () => {
  let sfu: Sfu;
  let url: string;
  before(async () => ({ sfu, url } = await startSfu([42800, 42900])));
  after(() => sfu.close());

  /** A signalling socket driven by hand: what it received, in order. */
  const socket = async (tok: string, options: { autoPong?: boolean } = {}, at = url) => {
    const ws = new WebSocket(`${at.replace('http', 'ws')}/api/v4/websocket`, {
      headers: { authorization: `Bearer ${tok}` },
      ...options,
    });
    ws.on('error', () => undefined);
    const frames: { event?: string; data?: Record<string, unknown> }[] = [];
    ws.on('message', (d) => frames.push(JSON.parse(String(d))));
    const closed = new Promise<number>((r) => ws.once('close', r));
    await waitFor('hello', () => frames.length > 0);
    let seq = 1;
    const send = (action: string, data: Record<string, unknown>) =>
      ws.send(JSON.stringify({ action: `custom_com.mattermost.calls_${action}`, seq: seq++, data }));
    const events = (name: string) => frames.filter((f) => f.event === `custom_com.mattermost.calls_${name}`);
    return { ws, send, events, closed };
  };
  /** What the server answers on a raw TCP connection to `request`, once it closes or 2 s pass. */
  const raw = (request: string, reset = false) =>
    new Promise<string>((resolve) => {
      const { port } = new URL(url);
      const c = connect(Number(port), '127.0.0.1', () => c.write(request));
      let text = '';
      c.on('data', (d) => {
        text += String(d);
        // a peer that resets the connection as soon as it has read a refusal
        if (reset && text.includes('\r\n\r\n')) c.resetAndDestroy();
      });
      c.on('error', () => undefined);
      c.on('close', () => resolve(text));
      setTimeout(() => c.destroy(), 2000).unref();
    });

  it('answers request targets the URL parser refuses, and lives through peers that reset after a refusal', async () => {
    // Node's HTTP parser passes these targets on; `new URL` threw in the request handler
    for (const target of ['//', '/\\', '//a:99999'])
      assert.match(await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 400/, target);
    const upgrade = (target: string, auth: string) =>
      `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n${auth}\r\n`;
    assert.equal(await raw(upgrade('//', '')), '');
    // the refused socket had no error listener: a reset after the 401 was an uncaught error
    for (let i = 0; i < 5; i++)
      assert.match(
        await raw(upgrade('/api/v4/websocket', 'Authorization: Bearer garbage\r\n'), true),
        /^HTTP\/1\.1 401/,
      );
    // a refused socket is closed, not left half-open for a peer that keeps its half (each held one
    // of the process's file descriptors, out of every bound on sockets)
    const halfOpen = await new Promise<string>((resolve) => {
      const { port } = new URL(url);
      const c = connect({ port: Number(port), host: '127.0.0.1', allowHalfOpen: true }, () =>
        c.write(upgrade('/api/v4/websocket', 'Authorization: Bearer garbage\r\n')),
      );
      // once the answer has ended, a byte every 100 ms: a socket still open takes them, a closed
      // one resets the connection, and the next write fails
      let writes: NodeJS.Timeout | undefined;
      c.on('data', () => undefined);
      c.on('end', () => (writes = setInterval(() => c.write('x'), 100)));
      c.on('error', () => undefined);
      c.on('close', () => {
        clearInterval(writes);
        resolve('closed');
      });
      setTimeout(() => {
        resolve('still open');
        c.destroy();
      }, 3000).unref();
    });
    assert.equal(halfOpen, 'closed');
    // msgpack array headers of 65,535 elements each: the socket is closed, nothing allocated
    const call = callId();
    const mallory = await socket(token(call, 'mallory'));
    mallory.ws.send(Buffer.from('dcffff'.repeat(20_000), 'hex'));
    assert.equal(await mallory.closed, 1003);
    const alice = await join(call, 'alice');
    assert.ok(alice.me?.sessionId, 'a participant joins after them');
    alice.leave();
    await waitFor('alice gone', () => sfu.participantCount === 0);
  });

  const join = async (call: string, user: string) => {
    const p = new HeadlessParticipant({ siteUrl: url, callId: call, token: token(call, user) });
    await p.join();
    return p;
  };

  it('a socket that signals for a session cannot take over another with reconnect: both end after the window', async () => {
    const call = callId();
    const first = await socket(token(call, 'eve'));
    first.send('join', { channelID: call });
    await waitFor('joined', () => first.events('join')[0]);
    const [original] = first.events('join').map((e) => String(e.data!.connID));
    first.ws.close();
    await first.closed;
    const second = await socket(token(call, 'eve'));
    second.send('join', { channelID: call });
    await waitFor('joined again', () => second.events('join')[0]);
    second.send('reconnect', { originalConnID: original, channelID: call });
    second.send('call_state', { channelID: call }); // answered after the reconnect was handled
    await waitFor('call_state', () => second.events('call_state')[1]);
    second.ws.close();
    await second.closed;
    // each session ends when the plugin's reconnection window (10 s) passes; one orphaned by the
    // reconnect stayed in the SFU for good
    await waitFor('both sessions ended', () => sfu.participantCount === 0, 30_000);
  });

  it('holds 32 sockets of one address before they authenticate, refusing more with 429; one that authenticates frees its place', async () => {
    const ws = `${url.replace('http', 'ws')}/api/v4/websocket`;
    const stranger = (forwardedFor?: string) => strangerAt(ws, forwardedFor);
    // each names another address, which is not believed from a proxy that is not listed
    const tries = await Promise.all(Array.from({ length: 40 }, (_, i) => stranger(`198.51.100.${i}`)));
    const held = tries.filter((t): t is WebSocket => t instanceof WebSocket);
    // One authenticates by challenge at once: each is closed 5 s after it came.
    const call = callId();
    const authenticated = new Promise<void>((resolve, reject) => {
      held[0]?.on('message', (d) => String(d).includes('"hello"') && resolve());
      held[0]?.once('close', () => reject(new Error('closed before it authenticated')));
    });
    held[0]?.send(JSON.stringify({ action: 'authentication_challenge', seq: 1, data: { token: token(call, 'bob') } }));
    assert.equal(held.length, 32);
    assert.deepEqual(
      tries.filter((t) => !(t instanceof WebSocket)),
      Array(8).fill(429),
    );
    await authenticated;
    const another = await stranger();
    assert.ok(another instanceof WebSocket, `refused with ${another}`);
    // a token in the upgrade is not a stranger's, though the address holds 32 again
    const alice = await join(call, 'alice');
    for (const s of [...held, another]) s.close();
    alice.leave();
    await waitFor('everyone gone', () => sfu.participantCount === 0, 30_000);
  });

  it('a socket refused at its challenge whose peer does not answer the close is cut at once, not held 30 s', async () => {
    const { port } = new URL(url);
    const c = connect(Number(port), '127.0.0.1');
    c.on('error', () => undefined);
    let text = '';
    c.on('data', (d) => (text += d.toString('latin1')));
    const ended = new Promise<void>((r) => c.once('close', () => r()));
    let closed = false;
    void ended.then(() => (closed = true));
    c.write(
      `GET /api/v4/websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`,
    );
    await waitFor('upgraded', () => text.startsWith('HTTP/1.1 101'));
    /** a masked text frame, as a client sends */
    const frame = (payload: string) => {
      const body = Buffer.from(payload);
      const mask = randomBytes(4);
      return Buffer.concat([Buffer.of(0x81, 0x80 | body.length), mask, body.map((b, i) => b ^ mask[i % 4]!)]);
    };
    for (const seq of [1, 2])
      c.write(frame(JSON.stringify({ action: 'authentication_challenge', seq, data: { token: `bad${seq}` } })));
    await waitFor('the close frame (1008)', () => text.includes('authentication failed'));
    // the peer never answers the close: ws waited 30 s for it, the socket counted all that time
    await waitFor('the socket cut', () => closed, 10_000);
  });

  it("one user's token has at most 8 sessions in its call, those waiting for a reconnect included", async () => {
    const call = callId();
    const joins: string[] = [];
    for (let i = 0; i < 9; i++) {
      const eve = await socket(token(call, 'eve'));
      eve.send('join', { channelID: call });
      await waitFor('an answer to the join', () => eve.events('join')[0] ?? eve.events('error')[0]);
      joins.push(eve.events('join')[0] ? 'joined' : String(eve.events('error')[0]!.data!.data));
      eve.ws.terminate(); // the session waits 10 s for a reconnect
      await eve.closed;
    }
    // each dropped socket left its session: one token filled the call (100) and the SFU's ports
    assert.deepEqual(joins, [...Array(8).fill('joined'), 'too many sessions for this user in this call']);
    await waitFor('the sessions ended', () => sfu.participantCount === 0, 30_000);
  });

  it("one user's token for a call holds 8 sockets: a 9th is refused, with 429 or by its challenge", async () => {
    const call = callId();
    const eve = token(call, 'eve');
    const ws = `${url.replace('http', 'ws')}/api/v4/websocket`;
    /** a socket with the token in its upgrade: open, or refused with the answer's status */
    const bearer = () =>
      new Promise<WebSocket | number>((resolve) => {
        const s = new WebSocket(ws, { headers: { authorization: `Bearer ${eve}` } });
        s.on('error', () => undefined);
        s.once('open', () => resolve(s));
        s.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      });
    const tries = await Promise.all(Array.from({ length: 12 }, bearer));
    const held = tries.filter((t): t is WebSocket => t instanceof WebSocket);
    assert.equal(held.length, 8);
    assert.deepEqual(
      tries.filter((t) => !(t instanceof WebSocket)),
      Array(4).fill(429),
    );
    // by challenge, from a socket that came without a token
    const late = await strangerAt(ws);
    assert.ok(late instanceof WebSocket);
    const closed = new Promise<string>((r) => late.once('close', (_code, reason) => r(String(reason))));
    late.send(JSON.stringify({ action: 'authentication_challenge', seq: 1, data: { token: eve } }));
    assert.equal(await closed, 'too many connections for this user in this call');
    // another user of the call, and eve once one of hers has gone, still come in
    const other = await socket(token(call, 'frank'));
    held[0]!.close();
    const again = await waitFor('a place freed', async () => {
      const s = await bearer();
      if (s instanceof WebSocket) return s;
    });
    for (const s of [...held, again]) s.close();
    other.ws.close();
  });

  it('behind a listed proxy, holds 32 sockets per address its X-Forwarded-For names', async () => {
    const { sfu: proxied, url: at } = await startSfu([42960, 42990], { trustedProxies: subnets('127.0.0.1') });
    const ws = `${at.replace('http', 'ws')}/api/v4/websocket`;
    try {
      // 33 from one browser behind the proxy, which the browser's own header cannot disguise
      const one = await Promise.all(Array.from({ length: 33 }, (_, i) => strangerAt(ws, `10.0.0.${i}, 203.0.113.5`)));
      // and 40 others, one socket each
      const others = await Promise.all(Array.from({ length: 40 }, (_, i) => strangerAt(ws, `198.51.100.${i}`)));
      assert.equal(one.filter((t) => t instanceof WebSocket).length, 32);
      assert.deepEqual(
        one.filter((t) => !(t instanceof WebSocket)),
        [429],
      );
      assert.equal(others.filter((t) => t instanceof WebSocket).length, 40);
      for (const s of [...one, ...others]) if (s instanceof WebSocket) s.close();
    } finally {
      await proxied.close();
    }
  });

  it('a token bound to one call gets no state of another', async () => {
    const [mine, theirs] = [callId(), callId()];
    const alice = await join(mine, 'alice');
    const bob = await join(theirs, 'bob');
    const mallory = await socket(token(mine, 'mallory'));
    mallory.send('call_state', { channelID: theirs });
    mallory.send('call_state', { channelID: mine });
    await waitFor('call_state', () => mallory.events('call_state')[0]);
    assert.deepEqual(
      mallory.events('call_state').map((e) => e.data!.channel_id),
      [mine],
    );
    mallory.ws.close();
    alice.leave();
    bob.leave();
  });

  it('refuses an offer whose sections would each take a transport and sockets of their own', async () => {
    const call = callId();
    const mallory = await socket(token(call, 'mallory'));
    mallory.send('join', { channelID: call });
    await waitFor('joined', () => mallory.events('join')[0]);
    const section = (mid: number) =>
      `m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:${mid}\r\na=sendonly\r\na=ice-ufrag:abcd\r\na=ice-pwd:${'p'.repeat(24)}\r\na=fingerprint:sha-256 ${Array(32).fill('AB').join(':')}\r\na=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n`;
    const offer = (sections: number, bundled: boolean) => {
      const mids = Array.from({ length: sections }, (_, k) => k);
      const group = bundled ? `a=group:BUNDLE ${mids.join(' ')}\r\n` : '';
      const sdp = `v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n${group}${mids.map(section).join('')}`;
      mallory.ws.send(
        encode({ action: 'custom_com.mattermost.calls_sdp', seq: 99, data: { data: packSdp({ type: 'offer', sdp }) } }),
      );
    };
    offer(8, false);
    offer(40, true);
    await waitFor('two errors', () => mallory.events('error')[1]);
    assert.deepEqual(
      mallory.events('error').map((e) => e.data!.data),
      [
        'an offer must bundle all its media sections in one BUNDLE group',
        'an offer holds at most 32 media sections besides the 0 the SFU forwards tracks in',
      ],
    );
    mallory.ws.close();
    await waitFor('mallory gone', () => sfu.participantCount === 0, 30_000);
  });

  it("an offer's simulcast rids, or new mids without the ones negotiated, leave the session as it was", async () => {
    const call = callId();
    const mallory = await socket(token(call, 'mallory'));
    mallory.send('join', { channelID: call });
    await waitFor('joined', () => mallory.events('join')[0]);
    const section = (mid: number, rids: number) =>
      `m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:${mid}\r\na=sendonly\r\na=msid:s t\r\na=ice-ufrag:abcd\r\na=ice-pwd:${'p'.repeat(24)}\r\na=fingerprint:sha-256 ${Array(32).fill('AB').join(':')}\r\na=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n${Array.from({ length: rids }, (_, k) => `a=rid:r${k} send\r\n`).join('')}`;
    const offer = (mids: number[], rids = 0) => {
      const sdp = `v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE ${mids.join(' ')}\r\n${mids.map((m) => section(m, rids)).join('')}`;
      mallory.ws.send(
        encode({ action: 'custom_com.mattermost.calls_sdp', seq: 99, data: { data: packSdp({ type: 'offer', sdp }) } }),
      );
    };
    const session = () =>
      [...sfu.calls.get(call)!.sessions.values()][0] as unknown as {
        pc: { getTransceivers(): { mid?: string; receiver: { tracks: unknown[] } }[] };
      };
    // 2,000 rids in a section: werift kept a remote track for each
    offer([0], 2000);
    await waitFor('answered', () => mallory.events('signal')[0]);
    const tracks = session()
      .pc.getTransceivers()
      .reduce((n, t) => n + t.receiver.tracks.length, 0);
    assert.ok(tracks <= 1, `${tracks} remote tracks`);
    // An offer of other mids, without the one negotiated: werift made a transceiver for each, for good.
    for (let i = 1; i <= 3; i++) offer([i * 10, i * 10 + 1]);
    await waitFor('three errors', () => mallory.events('error')[2]);
    assert.deepEqual(
      mallory.events('error').map((e) => e.data!.data),
      Array(3).fill('an offer keeps every media section negotiated before'),
    );
    assert.deepEqual(
      session()
        .pc.getTransceivers()
        .map((t) => t.mid),
      ['0'],
    );
    // Keeping the mid negotiated and adding new ones: no more than 32 sections of the client's in all
    const mids = (n: number) => Array.from({ length: n }, (_, k) => k * 10);
    offer(mids(32));
    await waitFor('answered', () => mallory.events('signal')[1]);
    offer(mids(33));
    await waitFor('a fourth error', () => mallory.events('error')[3]);
    assert.equal(
      mallory.events('error')[3]!.data!.data,
      'an offer holds at most 32 media sections besides the 0 the SFU forwards tracks in',
    );
    assert.equal(session().pc.getTransceivers().length, 32);
    mallory.ws.close();
    await waitFor('mallory gone', () => sfu.participantCount === 0, 30_000);
  });

  /** mallory joined by her socket alone, sending offers or answers of her own making */
  const sdpClient = async () => {
    const call = callId();
    const mallory = await socket(token(call, 'mallory'));
    mallory.send('join', { channelID: call });
    await waitFor('joined', () => mallory.events('join')[0]);
    const sdpMessage = (type: 'offer' | 'answer', sdp: string) =>
      mallory.ws.send(
        encode({ action: 'custom_com.mattermost.calls_sdp', seq: 99, data: { data: packSdp({ type, sdp }) } }),
      );
    /** an offer of one voice section, with `fingerprint` and `ssrcs` */
    const offer = (fingerprint: string, ssrcs: number[], direction = 'sendonly') =>
      sdpMessage(
        'offer',
        `v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=${direction}\r\na=msid:s t\r\na=ice-ufrag:abcd\r\na=ice-pwd:${'p'.repeat(24)}\r\na=fingerprint:sha-256 ${fingerprint}\r\na=setup:actpass\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n${ssrcs.map((n) => `a=ssrc:${n} cname:c\r\n`).join('')}`,
      );
    const fingerprint = (n: number) => Array(32).fill(n.toString(16).padStart(2, '0')).join(':');
    const errors = () => mallory.events('error').map((e) => e.data!.data);
    return { call, mallory, sdpMessage, offer, fingerprint, errors };
  };

  it('fingerprints or SSRCs changed in every offer are refused past a bound: werift kept each for the session', async () => {
    const { mallory, offer, fingerprint, errors } = await sdpClient();
    // each offer a new fingerprint (werift merged each into the ones before, for good)
    for (let n = 1; n <= 6; n++) offer(fingerprint(n), []);
    await waitFor('two errors', () => errors().length >= 2);
    assert.deepEqual(errors(), Array(2).fill('a session keeps its DTLS fingerprints (4 at most)'));
    // a section the client receives in names SSRCs of its own that werift does not route: not
    // counted (a bot's answers name one for every track forwarded to it)
    offer(
      fingerprint(1),
      Array.from({ length: 2000 }, (_, k) => 5000 + k),
      'recvonly',
    );
    // each offer 400 new SSRCs it sends with
    for (let n = 0; n < 3; n++)
      offer(
        fingerprint(1),
        Array.from({ length: 400 }, (_, k) => 1000 + n * 400 + k),
      );
    await waitFor('a third error', () => errors().length >= 3);
    assert.deepEqual(errors().slice(2), ["a session's descriptions name at most 1024 SSRCs it sends in"]);

    mallory.ws.close();
    await waitFor('mallory gone', () => sfu.participantCount === 0, 30_000);
  });

  it('an answer with media sections of its own is refused: werift made a transceiver of each, for good', async () => {
    const { call, mallory, sdpMessage, offer, fingerprint } = await sdpClient();
    // the SFU offers mallory alice's voice; her answer brings 20 sections the offer did not have
    const session = () =>
      [...sfu.calls.get(call)!.sessions.values()].find((s) => s.identity.userId === 'mallory') as unknown as {
        pc: { getTransceivers(): unknown[] };
      };
    offer(fingerprint(1), [1]);
    await waitFor('answered', () => mallory.events('signal')[0]);
    const { pc } = session();
    const before = pc.getTransceivers().length;
    const alice = await join(call, 'alice');
    try {
      await alice.publish('mic');
      const offers = () =>
        mallory
          .events('signal')
          .map((e) => JSON.parse(String(e.data!.data)))
          .filter((d) => d.type === 'offer');
      const [sfuOffer] = await waitFor('the SFU offers', () => offers().length > 0 && offers());
      const extra = Array.from({ length: 20 }, (_, k) => `x${k}`);
      const answer = `${(sfuOffer.sdp as string)
        .replace(/a=group:BUNDLE ([^\r\n]*)/, `a=group:BUNDLE $1 ${extra.join(' ')}`)
        .replaceAll('a=setup:actpass', 'a=setup:active')
        .replace(/a=fingerprint:.*/g, `a=fingerprint:sha-256 ${fingerprint(1)}`)
        .replace(/a=ssrc.*\r\n/g, '')
        .replaceAll('a=sendonly', 'a=recvonly')
        .trimEnd()}\r\n${extra
        .map(
          (mid) =>
            `m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:${mid}\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n`,
        )
        .join('')}`;
      sdpMessage('answer', answer);
      // refused, the offer is taken back and made again (werift as released took the answer)
      await waitFor('the SFU offers again', () => offers().length >= 2, 30_000);
      const after = pc.getTransceivers().length;
      assert.ok(after <= before + 1, `${after} transceivers, ${before} before the SFU's offer of one track`);
    } finally {
      alice.leave();
      mallory.ws.close();
    }
    await waitFor('mallory gone', () => sfu.participantCount === 0, 30_000);
  });

  it('a session the call ended is forgotten while its socket stays: the socket joins again', async () => {
    const call = callId();
    const alice = await socket(token(call, 'alice'));
    alice.send('join', { channelID: call });
    await waitFor('joined', () => alice.events('join')[0]);
    sfu.endCall(call); // call_end, and the sessions closed 5 s later
    await waitFor('call_end', () => alice.events('call_end')[0]);
    await waitFor('the session forgotten', () => sfu.participantCount === 0, 30_000);
    alice.send('join', { channelID: call });
    await waitFor('joined again', () => alice.events('join')[1]);
    assert.deepEqual(alice.events('error'), [], 'not "session is already connected"');
    alice.ws.close();
    await waitFor('alice gone', () => sfu.participantCount === 0, 30_000);
  });

  it("a client that does not answer the SFU's offer gets it again, and then the media", async () => {
    const call = callId();
    const alice = await join(call, 'alice');
    // alice's first answer to the SFU is lost (a network that drops it): the SFU's offer goes
    // unanswered, which left the session in have-local-offer, deaf to every later change
    const socket = (alice as unknown as { socket: CallsSocket }).socket;
    const sendSdp = socket.sendSdp.bind(socket);
    let dropped = 0;
    socket.sendSdp = (d) => (d.type === 'answer' && dropped++ === 0 ? undefined : sendSdp(d));
    let heard = 0;
    alice.onRtp(() => heard++);
    const bob = await join(call, 'bob');
    const { mic } = await bob.publish('mic');
    const source = await opusSource((rtp) => mic.writeRtp(rtp), 30, 'sine=frequency=440');
    try {
      await waitFor("alice hears bob after the SFU's second offer", () => heard > 0, 60_000);
      assert.equal(dropped >= 2, true, 'one answer was dropped, a later one sent');
    } finally {
      source.kill('SIGKILL');
      alice.leave();
      bob.leave();
    }
  });

  /** mallory in a new call, her data channel open and her socket and peer at hand; `join` adds others to the call. */
  const dcClient = async () => {
    const call = callId();
    const join = (user: string) =>
      new HeadlessParticipant({ siteUrl: url, callId: call, subscribe: 'none', token: token(call, user) });
    const mallory = join('mallory');
    await mallory.join();
    const inside = mallory as unknown as { socket: CallsSocket; peer: { pc: RTCPeerConnection; dc: RTCDataChannel } };
    await waitFor('data channel open', () => inside.peer.dc.readyState === 'open');
    return { call, join, mallory, inside };
  };

  it("a flood of offers over the data channel gets no more answers than the plugin's rate allows; the call goes on", async () => {
    const { join, mallory, inside } = await dcClient();
    let answers = 0;
    let lastAnswerAt = 0;
    inside.socket.on('signal', (d) => {
      if (!String(d.data).includes('"answer"')) return;
      answers++;
      lastAnswerAt = Date.now();
    });
    const { sdp } = await inside.peer.pc.createOffer();
    const offer = Buffer.from(encodeDc({ type: DcType.SDP, description: { type: 'offer', sdp } }));
    // Without the limit every offer is answered, each costing the SFU about 13 ms of a core here:
    // 1,000 of them pass the bound below unless each took over 90 ms.
    const started = Date.now();
    for (let i = 0; i < 1000; i++) inside.peer.dc.send(offer);
    await waitFor('the first answer', () => answers > 0, 60_000);
    let last = -1;
    await waitFor(
      'answers to stop coming',
      async () => {
        if (answers === last) return true;
        last = answers;
        await new Promise((r) => setTimeout(r, 2000));
      },
      300_000,
    );
    const seconds = (lastAnswerAt - started) / 1000;
    assert.ok(answers >= 1 && answers <= 100 + 10 * seconds + 1, `${answers} answers in ${seconds} s`);
    // the SFU still serves the flooder and the call
    const bob = join('bob');
    try {
      await bob.join();
      await mallory.publish('mic');
      await waitFor('bob sees mallory publish', () => [...bob.participants.values()].some((p) => p.tracks.mic));
    } finally {
      bob.leave();
      mallory.leave();
    }
  });

  it('data-channel messages over the rate are dropped before they are decoded (an SDP is inflated up to 64 KiB)', async () => {
    // an SFU of its own whose debug log says each message it decoded and could not use
    const ignored: string[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => ignored.push(JSON.parse(line).msg) });
    const { sfu: rated, url: at } = await startSfu([43150, 43190], { log });
    const call = callId();
    const mallory = new HeadlessParticipant({
      siteUrl: at,
      callId: call,
      subscribe: 'none',
      token: token(call, 'mallory'),
    });
    try {
      await mallory.join();
      const { dc } = (mallory as unknown as { peer: { dc: RTCDataChannel } }).peer;
      await waitFor('data channel open', () => dc.readyState === 'open');
      // SDP messages whose bytes are not zlib: each one decoded is logged. Their type as a fixint
      // and as a uint 8 (as encodeDc writes it)
      const bytes = encode(Uint8Array.of(0x78, 0x9c, 0xff));
      const junk = [Buffer.concat([encode(DcType.SDP), bytes]), Buffer.concat([Buffer.of(0xcc, DcType.SDP), bytes])];
      const started = Date.now();
      for (let i = 0; i < 1000; i++) dc.send(junk[i % 2]!);
      const count = () => ignored.filter((m) => m === 'data-channel message ignored').length;
      await waitFor('the first decoded', () => count() > 0, 60_000);
      let last = -1;
      await waitFor(
        'decoding to stop',
        async () => {
          if (count() === last) return true;
          last = count();
          await new Promise((r) => setTimeout(r, 2000));
        },
        120_000,
      );
      const seconds = (Date.now() - started) / 1000;
      assert.ok(count() <= 100 + 10 * seconds, `${count()} of 1,000 decoded in ${seconds} s`);
    } finally {
      mallory.leave();
      await rated.close();
    }
  });

  it("one participant unpublishing and publishing without pause does not keep another's signalling lock from it", async () => {
    const { join, mallory, inside } = await dcClient();
    await mallory.publish('mic');
    const bob = join('bob');
    let stop = false;
    try {
      await bob.join();
      await waitFor('bob sees mallory publish', () => [...bob.participants.values()].some((p) => p.tracks.mic));
      // mallory's voice section goes inactive and back, each offer sent when the last is answered
      // (the plugin's rate lets 100 through at once, then 10 a second): each time the SFU offers
      // bob the track's removal or its return
      const answers: (() => void)[] = [];
      inside.socket.on('signal', (d) => String(d.data).includes('"answer"') && answers.shift()?.());
      const { sdp } = await inside.peer.pc.createOffer();
      const inactive = sdp.replace(/a=sendonly/g, 'a=inactive');
      assert.notEqual(inactive, sdp);
      let toggles = 0;
      const toggling = (async () => {
        for (; !stop && toggles < 1000; toggles++) {
          const answered = new Promise<void>((r) => answers.push(r));
          const description = { type: 'offer' as const, sdp: toggles % 2 ? sdp : inactive };
          inside.peer.dc.send(Buffer.from(encodeDc({ type: DcType.SDP, description })));
          await Promise.race([answered, new Promise((r) => setTimeout(r, 1000))]);
        }
      })();
      const bobSide = bob as unknown as { socket: CallsSocket; peer: { dc: RTCDataChannel } };
      let offersToBob = 0;
      bobSide.socket.on('signal', (d) => String(d.data).includes('"offer"') && offersToBob++);
      await waitFor('the SFU offering bob changes', () => offersToBob >= 5, 30_000);
      let refused = 0;
      bobSide.peer.dc.onMessage.subscribe((data) => {
        if (typeof data === 'string') return;
        const m = decodeDc(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        if (m.type === DcType.Lock && m.granted === false) refused++;
      });
      const before = toggles;
      await bob.publish('mic'); // asks for the lock, again 100 ms after each refusal, for 5 s
      assert.ok(toggles > before && toggles < 1000, 'mallory went on meanwhile');
      // Before, the SFU's offers to bob followed one another and he was refused 104-109 times in
      // three runs (over 10 s: a browser, which gives up after 5 s, would not have published);
      // now his turn comes after the offer he was refused in (once in three runs).
      assert.ok(refused <= 5, `bob was refused the lock ${refused} times`);
      stop = true;
      await toggling;
    } finally {
      stop = true;
      bob.leave();
      mallory.leave();
    }
  });

  it('a call of more publishers than a client may add media sections: everyone publishes, a late joiner too', async () => {
    // Each publisher's offer holds a section for every track the SFU forwards it, and werift
    // repeats its candidates in each. Before, an offer held at most 32 sections and 64 candidates
    // in all: the 31st publisher could not publish ("no answer to our offer within 10 s").
    const call = callId();
    const people: HeadlessParticipant[] = [];
    try {
      for (let i = 0; i < 33; i++) {
        const p = new HeadlessParticipant({
          siteUrl: url,
          callId: call,
          subscribe: 'none',
          token: token(call, `p${i}`),
        });
        people.push(p);
        await p.join();
        await p.publish('mic');
      }
      const late = new HeadlessParticipant({ siteUrl: url, callId: call, token: token(call, 'late') });
      people.push(late);
      const from = new Set<string>();
      late.on('track', (t) => from.add(t.participant.userId));
      await late.join();
      await waitFor('the late joiner receiving all 33', () => from.size === 33, 120_000);
      await late.publish('mic');
      const first = people[0]!;
      await waitFor('the first publisher seeing the late one publish', () =>
        [...first.participants.values()].some((p) => p.userId === 'late' && p.tracks.mic),
      );
    } finally {
      for (const p of people) p.leave();
    }
  });

  it('a client whose SDP allows 1-byte messages pings over the data channel: no pong, and the call goes on', async () => {
    // werift throws when a message is over the peer's max-message-size; the pong's send threw in
    // werift's message handler, an unhandled rejection that ended the SFU's process (this one's,
    // the test's, only reports it). The session catches it now, and werift's patch drops what a
    // handler throws: either alone passes this test, neither fails it.
    const rejections: string[] = [];
    const rejected = (err: unknown) => rejections.push(String(err));
    process.on('unhandledRejection', rejected);
    const { join, mallory, inside } = await dcClient();
    let answered = false;
    inside.socket.on('signal', (d) => {
      if (String(d.data).includes('"answer"')) answered = true;
    });
    const { sdp } = await inside.peer.pc.createOffer();
    assert.match(sdp, /a=max-message-size:\d+/);
    const tiny = sdp.replace(/a=max-message-size:\d+/, 'a=max-message-size:1');
    inside.peer.dc.send(Buffer.from(encodeDc({ type: DcType.SDP, description: { type: 'offer', sdp: tiny } })));
    await waitFor('the answer', () => answered, 30_000);
    let pongs = 0;
    inside.peer.dc.onMessage.subscribe(() => pongs++);
    for (let i = 0; i < 5; i++) {
      inside.peer.dc.send(Buffer.from(encodeDc({ type: DcType.Ping })));
      inside.peer.dc.send('ping');
    }
    const bob = join('bob');
    try {
      // (mallory herself can be sent nothing now: not the lock either)
      await bob.join();
      await bob.publish('mic');
      await waitFor('mallory sees bob publish', () => [...mallory.participants.values()].some((p) => p.tracks.mic));
      assert.equal(pongs, 0, 'a pong is more than 1 byte');
      assert.deepEqual(rejections, []);
    } finally {
      process.off('unhandledRejection', rejected);
      bob.leave();
      mallory.leave();
    }
  });

  it("a publisher whose offer rejects its own track (port 0) unpublishes it: a later joiner still gets everyone else's", async () => {
    const { call, join, mallory, inside } = await dcClient();
    await mallory.publish('mic');
    const answered = new Promise<void>((resolve) =>
      inside.socket.on('signal', (d) => String(d.data).includes('"answer"') && resolve()),
    );
    const { sdp } = await inside.peer.pc.createOffer();
    const rejected = sdp.replace(/^m=audio \d+ /m, 'm=audio 0 ');
    assert.notEqual(rejected, sdp);
    inside.peer.dc.send(Buffer.from(encodeDc({ type: DcType.SDP, description: { type: 'offer', sdp: rejected } })));
    await answered;
    const carol = join('carol');
    const bob = new HeadlessParticipant({ siteUrl: url, callId: call, token: token(call, 'bob') });
    const from: string[] = [];
    bob.on('track', (t) => from.push(t.participant.userId));
    try {
      await carol.join();
      await carol.publish('mic');
      await bob.join();
      await waitFor("bob receives carol's voice", () => from.includes('carol'), 30_000);
      assert.ok(!from.includes('mallory'), from.join());
    } finally {
      for (const p of [bob, carol, mallory]) p.leave();
    }
  });

  it('cuts a socket that stops answering pings', async () => {
    // an SFU of its own pinging every 2 s (60 s by default): a pong must come before the next ping
    const { sfu: pinging, url: at } = await startSfu([42910, 42950], { pingIntervalMs: 2000 });
    try {
      const silent = await socket(token(callId(), 'mallory'), { autoPong: false }, at);
      const answering = await socket(token(callId(), 'alice'), {}, at);
      assert.equal(await silent.closed, 1006);
      assert.equal(answering.ws.readyState, WebSocket.OPEN);
      answering.ws.close();
    } finally {
      await pinging.close();
    }
  });
});
