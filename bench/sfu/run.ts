// bench/sfu: forwarding capacity of the bundled SFU, on loopback.
//  (a) audio calls of 2, 10 and 50 participants, everyone unmuted (Opus-sized packets, 50/s each,
//      forwarded to everyone else);
//  (b) one screen share at about 1.6 Mbit/s (VP8-sized packets) to N subscribers.
// The SFU runs as `calls-offloader sfu` in its own process; its CPU time and memory are read from
// /proc. The participants are werift headless participants in this process. Prints a table with
// forwarded packets per second per core next to rtcd's published capacity.
// Each scenario runs three times, the SFU importing werift as released, as patched here
// (patches/werift+*.patch) with its own SRTP ciphers, and as patched with SRTP through
// the addon (src/sfu/srtp-native.c: what the SFU runs); BENCH_WERIFT=released,patched,addon
// chooses. The participants here always use the addon: they are the load, not what is measured.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { type MediaStreamTrack, RtpHeader, RtpPacket } from 'werift';
import { HeadlessParticipant } from '../../src/sfu/client/participant.js';
import { useNativeSrtp } from '../../src/sfu/srtp-native.js';
import { mintToken } from '../../src/sfu/token.js';
import { releasedWeriftArgs } from '../../test/werift-released.js';
import { cpuSeconds, rssMb } from '../proc.js';

const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const SECRET = randomBytes(32).toString('hex');
const PORT = 24600;
const MODES = ['released', 'patched', 'addon'] as const;
type Werift = (typeof MODES)[number];
const asked = (process.env.BENCH_WERIFT ?? MODES.join(',')).split(',');
for (const w of asked)
  if (!(MODES as readonly string[]).includes(w))
    throw new Error(`BENCH_WERIFT: "${w}" is not one of ${MODES.join(', ')}`);
const WERIFTS = MODES.filter((m) => asked.includes(m)); // in this order: each is compared with the one before
useNativeSrtp();

interface Result {
  scenario: string;
  werift: Werift;
  participants: number;
  sentPps: number;
  expectedPps: number;
  forwardedPps: number;
  receivedPps: number;
  sfuLoss: number;
  loss: number;
  sfuCores: number;
  participantsCores: number;
  allFlowingMs: number;
  ppsPerCore: number;
  mbitPerCore: number;
  rssPerParticipantMb: number;
  cpuPerParticipant: number;
}

/** Packets the SFU handed to its senders, from its /metrics. */
async function sfuForwarded(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${PORT}/metrics`)).text();
  return Number(/^calls_offloader_sfu_rtp_packets_forwarded_total (\d+)$/m.exec(text)![1]);
}

const ownCpuSeconds = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};

async function startSfu(werift: Werift): Promise<ChildProcess> {
  // BENCH_PROFILE=<dir>: a V8 CPU profile of the SFU per scenario, to find hot spots.
  const profile = process.env.BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : [];
  const released = werift === 'released' ? releasedWeriftArgs() : [];
  const child = spawn(process.execPath, [...profile, ...released, CLI, 'sfu'], {
    stdio: 'ignore',
    env: {
      ...process.env,
      SFU_LISTENADDRESS: `127.0.0.1:${PORT}`,
      SFU_ICEPORTRANGE: '45000-45600',
      SFU_TOKENSECRET: SECRET,
      SFU_NATIVESRTP: String(werift === 'addon'),
      LOGGER_CONSOLELEVEL: 'warn',
    },
  });
  for (let i = 0; i < 100; i++) {
    if (
      await fetch(`http://127.0.0.1:${PORT}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return child;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('sfu did not start');
}

async function joinAll(
  call: string,
  n: number,
  subscribe: 'all' | 'none',
  prefix: string,
): Promise<HeadlessParticipant[]> {
  const out: HeadlessParticipant[] = [];
  const BATCH = Number(process.env.BENCH_BATCH ?? 10);
  for (let i = 0; i < n; i += BATCH) {
    const batch = Array.from(
      { length: Math.min(BATCH, n - i) },
      (_, j) =>
        new HeadlessParticipant({
          siteUrl: `http://127.0.0.1:${PORT}`,
          callId: call,
          subscribe,
          token: mintToken(SECRET, {
            call,
            user: `${prefix}${i + j}`,
            name: `${prefix} ${i + j}`,
            role: 'participant',
            ttlSec: 600,
          }),
        }),
    );
    await Promise.all(batch.map((p) => p.join()));
    out.push(...batch);
  }
  return out;
}

/**
 * Publishers send `pps` packets of `bytes` each; every participant counts what it receives.
 * Returns packets sent and received within the measured window, and the SFU's CPU time.
 */
async function measure(
  sfuPid: number,
  publishers: { track: MediaStreamTrack; kind: 'audio' | 'video' }[],
  receivers: HeadlessParticipant[],
  pps: number,
  bytes: number,
  expectedFanout: number,
) {
  let received = 0;
  const perReceiver = receivers.map(() => 0);
  receivers.forEach((r, i) => {
    r.onRtp(() => {
      received++;
      perReceiver[i]!++;
    });
  });
  let sent = 0;
  const payload = randomBytes(bytes);
  const state = publishers.map(() => ({
    seq: Math.floor(Math.random() * 60000),
    ts: 0,
    ssrc: randomBytes(4).readUInt32BE(),
  }));
  const interval = 1000 / pps;
  let next = performance.now();
  let running = true;
  const pump = async () => {
    while (running) {
      next += interval;
      publishers.forEach((p, i) => {
        const s = state[i]!;
        s.seq = (s.seq + 1) & 0xffff;
        s.ts = (s.ts + (p.kind === 'audio' ? 960 : 6000)) >>> 0;
        p.track.writeRtp(
          new RtpPacket(
            new RtpHeader({
              payloadType: p.kind === 'audio' ? 111 : 96,
              sequenceNumber: s.seq,
              timestamp: s.ts,
              ssrc: s.ssrc,
              marker: true,
            }),
            payload,
          ),
        );
      });
      sent += publishers.length;
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
    }
  };
  const pumping = pump();
  // Warm-up: until every receiver gets media (connections of late joiners can take seconds to
  // come up), then measure steady forwarding.
  const started = performance.now();
  while (perReceiver.some((c) => c === 0) && performance.now() - started < 20_000)
    await new Promise((r) => setTimeout(r, 50));
  const allFlowingMs = performance.now() - started;
  await new Promise((r) => setTimeout(r, 1000));
  const [sent0, recv0, cpu0, fwd0, own0, t0] = [
    sent,
    received,
    cpuSeconds(sfuPid),
    await sfuForwarded(),
    ownCpuSeconds(),
    performance.now(),
  ];
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const [sent1, recv1, cpu1, fwd1, own1, t1] = [
    sent,
    received,
    cpuSeconds(sfuPid),
    await sfuForwarded(),
    ownCpuSeconds(),
    performance.now(),
  ];
  running = false;
  await pumping;
  const seconds = (t1 - t0) / 1000;
  return {
    sentPps: (sent1 - sent0) / seconds,
    expectedPps: ((sent1 - sent0) * expectedFanout) / seconds,
    forwardedPps: (fwd1 - fwd0) / seconds,
    receivedPps: (recv1 - recv0) / seconds,
    sfuCores: (cpu1 - cpu0) / seconds,
    participantsCores: (own1 - own0) / seconds,
    allFlowingMs,
    rss: rssMb(sfuPid),
  };
}

interface Scenario {
  name: string;
  n: number;
  setup: (call: string) => Promise<{
    publishers: { track: MediaStreamTrack; kind: 'audio' | 'video' }[];
    receivers: HeadlessParticipant[];
    all: HeadlessParticipant[];
    pps: number;
    bytes: number;
    fanout: number;
  }>;
}

async function run({ name, n, setup }: Scenario, werift: Werift): Promise<Result> {
  const sfu = await startSfu(werift);
  try {
    const baseRss = rssMb(sfu.pid!);
    const call = randomBytes(13).toString('hex');
    const s = await setup(call);
    const m = await measure(sfu.pid!, s.publishers, s.receivers, s.pps, s.bytes, s.fanout);
    for (const p of s.all) p.leave();
    const bytesOnWire = s.bytes + 12 + 10 + 28; // RTP header, SRTP tag, UDP/IP
    return {
      scenario: name,
      werift,
      participants: n,
      sentPps: m.sentPps,
      expectedPps: m.expectedPps,
      forwardedPps: m.forwardedPps,
      receivedPps: m.receivedPps,
      sfuLoss: Math.max(0, 1 - m.forwardedPps / m.expectedPps),
      loss: Math.max(0, 1 - m.receivedPps / m.expectedPps),
      sfuCores: m.sfuCores,
      participantsCores: m.participantsCores,
      allFlowingMs: m.allFlowingMs,
      ppsPerCore: m.forwardedPps / Math.max(m.sfuCores, 0.01),
      mbitPerCore: (m.forwardedPps * bytesOnWire * 8) / 1e6 / Math.max(m.sfuCores, 0.01),
      rssPerParticipantMb: (m.rss - baseRss) / n,
      cpuPerParticipant: m.sfuCores / n,
    };
  } finally {
    sfu.kill('SIGTERM');
    await once(sfu, 'exit');
  }
}

const audioCall = (n: number): Scenario => ({
  name: `audio call, all ${n} unmuted`,
  n,
  setup: async (call) => {
    const all = await joinAll(call, n, 'all', 'speaker');
    const publishers = await Promise.all(
      all.map(async (p) => ({ track: (await p.publish('mic')).mic, kind: 'audio' as const })),
    );
    return { publishers, receivers: all, all, pps: 50, bytes: 80, fanout: n - 1 };
  },
});

const screenShare = (subscribers: number): Scenario => ({
  name: `screen share 1.6 Mbit/s to ${subscribers}`,
  n: subscribers + 1,
  setup: async (call) => {
    const [presenter] = await joinAll(call, 1, 'none', 'presenter');
    const track = (await presenter!.publish('screen')).screen;
    const receivers = await joinAll(call, subscribers, 'all', 'viewer');
    // 1.6 Mbit/s in 1150-byte payloads is about 174 packets a second.
    return {
      publishers: [{ track, kind: 'video' as const }],
      receivers,
      all: [presenter!, ...receivers],
      pps: 174,
      bytes: 1150,
      fanout: subscribers,
    };
  },
});

/** Participant counts from `name` (comma-separated; empty: none of that scenario). */
function counts(name: string, fallback: string): number[] {
  return (process.env[name] ?? fallback)
    .split(',')
    .filter(Boolean)
    .map((n) => {
      if (!/^[1-9]\d*$/.test(n)) throw new Error(`${name}: "${n}" is not a participant count (1, 2, ...)`);
      return Number(n);
    });
}
const scenarios = [
  ...counts('BENCH_AUDIO', '2,10,50').map(audioCall),
  ...counts('BENCH_SCREEN', '5,20,50').map(screenShare),
];
const results: Result[] = [];
for (const s of scenarios) for (const werift of WERIFTS) results.push(await run(s, werift));

const f = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
console.log(
  `\nbench/sfu (${new Date().toISOString().slice(0, 10)}, node ${process.version}, 2 cores; SFU in its own process, participants in the bench process, ${SECONDS} s per row)\n`,
);
console.log(
  "| scenario | SFU's werift | expected pkt/s | forwarded by SFU | received | loss (SFU / end to end) | SFU CPU (cores) | fwd pkt/s per core | Mbit/s per core | CPU per participant | RSS per participant | participants' process CPU | until all receive |",
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  console.log(
    `| ${r.scenario} | ${r.werift} | ${f(r.expectedPps)} | ${f(r.forwardedPps)} | ${f(r.receivedPps)} | ${f(r.sfuLoss * 100, 1)} % / ${f(r.loss * 100, 1)} % | ${f(r.sfuCores, 2)} | ${f(r.ppsPerCore)} | ${f(r.mbitPerCore, 1)} | ${f(r.cpuPerParticipant * 100, 1)} % | ${f(r.rssPerParticipantMb, 1)} MB | ${f(r.participantsCores, 2)} | ${f(r.allFlowingMs / 1000, 1)} s |`,
  );
}
const usPerPacket = (r: Result) => (r.sfuCores * 1e6) / r.forwardedPps;
if (WERIFTS.length > 1) {
  // Each mode against the one before it: what the patch gives, then what the addon adds to it.
  const steps = WERIFTS.slice(1).map((w, i) => `${w} ÷ ${WERIFTS[i]}`);
  console.log(
    `\n| scenario | ${WERIFTS.map((w) => `SFU CPU per forwarded packet, ${w}`).join(' | ')} | ${steps.join(' | ')} |`,
  );
  console.log(`|---|${'---|'.repeat(WERIFTS.length + steps.length)}`);
  for (const s of scenarios) {
    const us = WERIFTS.map((w) => usPerPacket(results.find((r) => r.scenario === s.name && r.werift === w)!));
    const changes = us.slice(1).map((u, i) => {
      const change = u / us[i]! - 1;
      return `${change > 0 ? '+' : ''}${f(change * 100)} %`;
    });
    console.log(`| ${s.name} | ${us.map((u) => `${f(u, 1)} µs`).join(' | ')} | ${changes.join(' | ')} |`);
  }
}
// rtcd (Pion): about 1000 audio flows (50 pkt/s each) or 330 screen-share flows at 1.6 Mbit/s per
// vCPU. Ours: the SFU as it runs in production (the last mode that ran: addon, unless left out).
const ours = results.filter((r) => r.werift === WERIFTS.at(-1));
const audio = ours.filter((r) => r.scenario.startsWith('audio'));
const screen = ours.filter((r) => r.scenario.startsWith('screen'));
const best = (rs: Result[]) => Math.max(...rs.map((r) => r.ppsPerCore));
console.log('\n| compared with rtcd (Pion), per core | ours | rtcd | ratio |');
console.log('|---|---|---|---|');
if (audio.length)
  console.log(`| audio flows (50 pkt/s) | ${f(best(audio) / 50)} | 1,000 | ${f(best(audio) / 50 / 1000, 2)} |`);
if (screen.length)
  console.log(
    `| screen-share flows (1.6 Mbit/s, ~174 pkt/s) | ${f(best(screen) / 174)} | 330 | ${f(best(screen) / 174 / 330, 2)} |`,
  );
process.exit(0);
