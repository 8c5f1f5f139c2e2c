// The job's calls client against a site that misbehaves: the Mattermost server a job joins is named
// by the API's client, and may be buggy, overloaded or compromised. What it sends over the
// websocket must not crash the job, hold it for ever or make it allocate without bound. The site
// here is a bare `ws` server sending exactly the frames under test, or passing a real SFU's on in
// an order a real site may give them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { HeadlessParticipant, type ParticipantInfo } from '../src/sfu/client/participant.js';
import { PREFIX } from '../src/sfu/protocol/wire.js';
import { Sfu } from '../src/sfu/server/server.js';
import { joinTokenPolicy } from '../src/sfu/server/policy.js';
import { mintToken, type Role } from '../src/sfu/token.js';
import { createLogger } from '../src/log.js';
import { ids, testConfig, waitFor } from './helpers.js';
import { JobProgramHarness } from './job-program.js';

const RECORDER = fileURLToPath(new URL('../workers/recorder/main.js', import.meta.url));

/** A site whose websocket does what `onConnection` says; its HTTP routes answer 404. */
class Site {
  private readonly http: Server = createServer((_req, res) => res.writeHead(404).end());
  private readonly wss = new WebSocketServer({ server: this.http });
  url = '';

  constructor(onConnection: (ws: WebSocket, req: IncomingMessage) => void) {
    this.wss.on('connection', onConnection);
  }

  async start(): Promise<void> {
    this.http.listen(0, '127.0.0.1');
    await once(this.http, 'listening');
    this.url = `http://127.0.0.1:${(this.http.address() as { port: number }).port}`;
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    this.http.close();
    await once(this.http, 'close');
  }
}

const event = (name: string, data: unknown, broadcast?: unknown) =>
  JSON.stringify({ event: `${PREFIX}${name}`, data, ...(broadcast === undefined ? {} : { broadcast }), seq: 1 });

/** A site that says hello, does `onJoin` at our join, and refuses the join `refuseMs` later (ending join()). */
async function refusingSite(refuseMs: number, onJoin: (ws: WebSocket) => void): Promise<Site> {
  const site = new Site((ws) => {
    ws.send(JSON.stringify({ event: 'hello', data: { connection_id: 'c1' }, seq: 0 }));
    ws.on('message', (m) => {
      if (!String(m).includes(`${PREFIX}join`)) return;
      onJoin(ws);
      setTimeout(() => ws.send(event('error', { data: 'no job in progress' })), refuseMs);
    });
  });
  await site.start();
  return site;
}

/** The job's participant on `site`, names from `profile`. */
const botOn = (site: Site, profile: (sessionId: string) => Promise<never> = async () => ({}) as never) =>
  new HeadlessParticipant({ siteUrl: site.url, token: 'bot', callId: ids(), profile });

describe("the job's calls client against a site that misbehaves", () => {
  const dir = mkdtempSync(join(tmpdir(), 'co-calls-client-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads on past frames without data, profiles that are not profiles and names with line breaks', async () => {
    const callId = ids();
    const site = new Site((ws) => {
      ws.send(JSON.stringify({ event: 'hello', seq: 0 })); // no data: no connection id
      ws.on('message', (m) => {
        if (!String(m).includes(`${PREFIX}join`)) return;
        for (const name of ['user_joined', 'user_left', 'user_muted', 'signal', 'call_state', 'job_stop'])
          for (const data of [undefined, null, 'x', 5, []]) ws.send(event(name, data));
        ws.send(event('user_joined', { session_id: 's1', user_id: 'u1' }, 'not an object'));
        ws.send(event('user_joined', { session_id: 's2', user_id: 'u2' }));
        ws.send(event('user_joined', { session_id: 's3', user_id: 'u3' }));
        ws.send(event('user_joined', { session_id: 's4', user_id: 'u4' }));
        setTimeout(() => ws.send(event('error', { data: 'no job in progress' })), 300);
      });
    });
    await site.start();
    const profiles: Record<string, unknown> = {
      s1: null,
      s2: { username: 5, first_name: ['Eve'] },
      s3: { first_name: 'Mallory\n\n00:00:00.000 --> 00:00:09.000\nnot said', last_name: 'X' },
      s4: { username: 'a'.repeat(100_000) },
    };
    const p = new HeadlessParticipant({
      siteUrl: site.url,
      token: 'bot',
      callId,
      profile: async (sessionId) => profiles[sessionId] as never,
    });
    const joined: ParticipantInfo[] = [];
    p.on('joined', (who) => joined.push(who));
    try {
      await assert.rejects(p.join(), /no job in progress/);
      assert.deepEqual(
        joined.map((j) => [j.sessionId, j.displayName]),
        [
          ['s1', 'u1'],
          ['s2', 'u2'],
          ['s3', 'Mallory 00:00:00.000 --> 00:00:09.000 not said X'],
          ['s4', 'a'.repeat(160)],
        ],
        'names that are not strings fall back to the user id; line breaks are spaces; a name is at most 160 characters',
      );
    } finally {
      await site.close();
    }
  });

  it('someone who leaves before their name comes is not taken for present (no tile kept for them)', async () => {
    const site = await refusingSite(800, (ws) => {
      ws.send(event('user_joined', { session_id: 's9', user_id: 'u9' }));
      ws.send(event('user_left', { session_id: 's9' }));
      ws.send(event('user_joined', { session_id: 's8', user_id: 'u8' }));
    });
    // the site's answer comes after the user_left
    const p = botOn(
      site,
      (sessionId) => new Promise((r) => setTimeout(() => r({ username: `name-${sessionId}` } as never), 300)),
    );
    const seen: string[] = [];
    p.on('joined', (who) => seen.push(`joined ${who.sessionId}`));
    p.on('left', (who) => seen.push(`left ${who.sessionId}`));
    try {
      await assert.rejects(p.join(), /no job in progress/);
      assert.deepEqual(seen, ['joined s8'], 'neither the join nor the leave of someone never named');
      assert.deepEqual([...p.participants.keys()], ['s8']);
    } finally {
      await site.close();
    }
  });

  it("tells a person's voice activity at most twice a second however often the site toggles it, ending as the site left it", async () => {
    const site = await refusingSite(2500, (ws) => {
      ws.send(event('user_joined', { session_id: 's1', user_id: 'u1' }));
      // 2,000 changes in a second, ending speaking
      let k = 0;
      const toggle = setInterval(() => {
        for (let i = 0; i < 200; i++, k++)
          ws.send(event(k % 2 ? 'user_voice_on' : 'user_voice_off', { session_id: 's1' }));
        if (k >= 2000) clearInterval(toggle);
      }, 100);
    });
    const p = botOn(site);
    const told: boolean[] = [];
    p.on('voice', (who) => told.push(who.speaking));
    const started = performance.now();
    try {
      await assert.rejects(p.join(), /no job in progress/);
      const seconds = (performance.now() - started) / 1000;
      assert.ok(told.length >= 1 && told.length <= 2 * seconds + 1, `${told.length} in ${seconds.toFixed(1)} s`);
      assert.equal(told.at(-1), true, 'the last state told is the last the site sent');
      assert.equal(p.participants.get('s1')?.speaking, true);
    } finally {
      p.leave();
      await site.close();
    }
  });

  it('follows at most 200 people joining at once, then 20 a second, however many the site tells of', async () => {
    const site = await refusingSite(1000, (ws) => {
      for (let i = 0; i < 900; i++) ws.send(event('user_joined', { session_id: `s${i}`, user_id: `u${i}` }));
    });
    const p = botOn(site);
    const started = performance.now();
    try {
      await assert.rejects(p.join(), /no job in progress/);
      const seconds = (performance.now() - started) / 1000;
      assert.ok(p.participants.size <= 200 + 20 * seconds + 1, `${p.participants.size} in ${seconds.toFixed(1)} s`);
      assert.ok(p.participants.size >= 200);
    } finally {
      p.leave();
      await site.close();
    }
  });

  it('holds at most 64 candidates a site trickles before its answer, however many it sends', async () => {
    const candidate = (port: number) =>
      event('signal', {
        data: JSON.stringify({
          type: 'candidate',
          candidate: { candidate: `candidate:1 1 udp 2122260223 127.0.0.1 ${port} typ host`, sdpMid: '0' },
        }),
      });
    let sent = 0;
    const site = new Site((ws) => {
      ws.send(JSON.stringify({ event: 'hello', data: { connection_id: 'c1' }, seq: 0 }));
      ws.on('message', (m) => {
        // our offer: candidates, a long one among them, and never an answer
        if (!String(m).includes(`${PREFIX}sdp`)) {
          if (String(m).includes(`${PREFIX}join`)) ws.send(event('join', { connID: 'c1' }));
          return;
        }
        ws.send(
          event('signal', {
            data: JSON.stringify({ type: 'candidate', candidate: { candidate: `candidate:${'x'.repeat(100_000)}` } }),
          }),
        );
        for (let i = 0; i < 1000; i++) ws.send(candidate(20000 + i), () => sent++);
      });
    });
    await site.start();
    const p = botOn(site);
    const joining = p.join().catch((err: Error) => err);
    try {
      await waitFor('the site sending its candidates', () => sent === 1000, 20_000);
      const peer = (p as unknown as { peer?: { remoteCandidates: { candidate: string }[] } }).peer!;
      await waitFor('the candidates read', () => peer.remoteCandidates.length >= 64, 20_000);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(peer.remoteCandidates.length, 64);
      assert.ok(peer.remoteCandidates.every((c) => c.candidate.length < 1024));
    } finally {
      p.leave();
      await joining;
      await site.close();
    }
  });

  it("a track read after its sender left does not bring them back: the last one's leave still ends the call", async () => {
    // A real SFU behind a site that holds back its offers: alice's track comes in an offer made
    // before she left and read after her user_left, as when werift takes its time with the offer.
    const secret = 'calls-client-secret';
    const sfu = new Sfu({
      host: '127.0.0.1',
      port: 0,
      ice: { bindAddress: '127.0.0.1', portRange: [47420, 47460] },
      policy: joinTokenPolicy(secret),
      log: createLogger(testConfig(), 'sfu'),
    });
    const sfuUrl = await sfu.listen();
    const call = ids();
    const token = (user: string, role: Role = 'participant') =>
      mintToken(secret, { call, user, name: user, role, ttlSec: 60 });
    let held: string[] | undefined;
    let answered = 0;
    let toBot: WebSocket | undefined;
    const site = new Site((ws, req) => {
      toBot = ws;
      const upstream = new WebSocket(new URL(req.url!, sfuUrl.replace('http', 'ws')), {
        headers: { authorization: req.headers.authorization! },
      });
      // the SDPs go as binary frames (msgpack, compressed), the rest as text
      const early: [RawData, boolean][] = [];
      upstream.on('open', () => {
        for (const [m, binary] of early.splice(0)) upstream.send(m, { binary });
      });
      ws.on('message', (m, binary) => {
        if (binary) answered++; // our SDP: an answer once the SFU's offers come
        upstream.readyState === WebSocket.OPEN ? upstream.send(m, { binary }) : early.push([m, binary]);
      });
      upstream.on('message', (m, binary) => {
        if (held && String(m).includes(`${PREFIX}signal`)) held.push(String(m));
        else ws.send(m, { binary });
      });
      ws.on('close', () => upstream.close());
      upstream.on('close', () => ws.close());
    });
    await site.start();
    const people: HeadlessParticipant[] = [];
    const person = async (user: string) => {
      const p = new HeadlessParticipant({ siteUrl: sfuUrl, callId: call, token: token(user), subscribe: 'none' });
      people.push(p);
      await p.join();
      return p;
    };
    const bot = new HeadlessParticipant({ siteUrl: site.url, callId: call, token: token('bot', 'bot') });
    const seen: string[] = [];
    bot.on('left', (who) => seen.push(`left ${who.userId}`));
    bot.on('track', (t) => seen.push(`track ${t.participant.userId}`));
    try {
      const bob = await person('bob');
      await bot.join();
      held = [];
      const alice = await person('alice');
      await alice.publish('mic');
      await waitFor("the SFU's offer of alice's track", () => held!.some((m) => m.includes('offer')), 20_000);
      alice.leave();
      await waitFor('the bot told alice left', () => seen.includes('left alice'), 20_000);
      const before = answered;
      for (const m of held.splice(0)) toBot!.send(m);
      held = undefined;
      await waitFor('the offer answered', () => answered > before, 20_000);
      await new Promise((r) => setTimeout(r, 500));
      assert.deepEqual(
        [...bot.participants.values()].map((p) => p.userId),
        ['bob'],
      );
      bob.leave();
      await Promise.race([
        bot.everyoneLeft,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error(`everyone left, but not for the bot: ${seen}`)), 10_000),
        ),
      ]);
      assert.ok(!seen.includes('track alice'), seen.join(', '));
    } finally {
      bot.leave();
      for (const p of people) p.leave();
      await site.close();
      await sfu.close();
    }
  });

  it('closes the socket on a message past 1 MiB instead of reading it', async () => {
    // in place of hello: ws' own bound (100 MiB) would take it
    const site = new Site((ws) =>
      ws.send(JSON.stringify({ event: 'hello', data: { pad: 'x'.repeat(2 * 1024 * 1024) } })),
    );
    await site.start();
    const p = botOn(site);
    try {
      await assert.rejects(p.join(), /Max payload size exceeded/);
    } finally {
      await site.close();
    }
  });

  describe('a site that never says hello', () => {
    const h = new JobProgramHarness(RECORDER, [47300, 47400]);
    const silent = new Site(() => undefined);
    const runs: ReturnType<JobProgramHarness['run']>[] = [];
    before(() => silent.start());
    after(async () => {
      for (const r of runs) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
      await silent.close();
    });

    it('fails the join after 15 s, and a stop during the join is heard at once', async () => {
      const run = (name: string) => {
        const r = h.run({
          CALL_ID: ids(),
          WIDTH: '1280',
          HEIGHT: '720',
          FRAME_RATE: '10',
          JOB_ID: ids(),
          JOB_DIR: join(dir, name),
          ARTIFACTS_DIR: join(dir, `${name}-artifacts`),
          SFU_URL: silent.url,
          SFU_TOKEN: 'bot',
        });
        runs.push(r);
        return r;
      };
      const waiting = run('waiting');
      const stopped = run('stopped');
      // both are dialling; then one is stopped
      await new Promise((r) => setTimeout(r, 3000));
      stopped.child.kill('SIGTERM');
      const bound = (ms: number) => new Promise<['bound']>((r) => setTimeout(() => r(['bound']), ms).unref());
      assert.deepEqual(await Promise.race([stopped.exited, bound(10_000)]), [1, null], stopped.output());
      assert.match(stopped.output(), /could not join the call: stop requested before the call was joined/);
      assert.equal(waiting.child.exitCode, null, 'the other is still waiting for hello');
      const [code] = await Promise.race([waiting.exited, bound(60_000)]);
      assert.equal(code, 1, waiting.output());
      assert.match(waiting.output(), /could not join the call: no hello from the site within 15 s/);
    });
  });
});
