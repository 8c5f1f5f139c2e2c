// bench/transcriber: speech recognition speed, accuracy and memory per engine and thread count on
// real recorded utterances; and live captions in a real call: the delay from the end of each
// utterance to its caption at a listening participant, for 1, 2 and 4 people speaking at once,
// with the call's transcript recognised beside the captions (a transcribing job) or not, and the
// share of windows dropped. The SFU runs in this process; speakers are headless
// participants fed by ffmpeg (Opus, at real-time pace); the captioner is the real job program.
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { HeadlessParticipant } from '../../src/sfu/client/participant.js';
import { Sfu } from '../../src/sfu/server/server.js';
import { joinTokenPolicy } from '../../src/sfu/server/policy.js';
import { mintToken } from '../../src/sfu/token.js';
import { EngineError, enginePool, SAMPLE_RATE, type SpeechEngine } from '../../workers/transcriber/speech/engine.js';
import { PocketsphinxEngine } from '../../workers/transcriber/speech/pocketsphinx.js';
import { Silero } from '../../workers/transcriber/speech/silero.js';
import { modelsDir } from '../../workers/transcriber/speech/whisper.js';
import { transcribeStream } from '../../workers/transcriber/transcribe.js';
import { opusSource } from '../../test/media.js';
import { librivox, ownTmpdir, speechTrack, wavSamples, wordErrorRate, writeWav } from '../../test/speech.js';
import { childProcesses, cpuSeconds as ownCpuSeconds } from '../proc.js';

const removeTmpdir = ownTmpdir('bench-ort-');

const TRANSCRIBER = fileURLToPath(new URL('../../workers/transcriber/main.js', import.meta.url));
const MODEL_TOOL =
  process.env.WHISPER_MODEL_TOOL ??
  fileURLToPath(new URL('../../../../shared/tools/make-test-whisper-model.mjs', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const id = () => randomBytes(13).toString('hex');
const f = (n: number | undefined, d = 2) =>
  n === undefined ? 'n/a' : n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const corpus = librivox();
const GAP_S = 1.5;

// ---- Post-call recognition -------------------------------------------------------------------

/** VmHWM (peak resident memory) of a process, in MB. */
const peakMb = (pid: number) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

interface SpeedRow {
  engine: string;
  vad: string;
  threads: number;
  audioS: number;
  wallS: number;
  wer?: number;
  rssMb?: number;
  note?: string;
}

async function speed(
  api: 'pocketsphinx' | 'whisper.cpp',
  threads: number,
  vad: 'energy' | 'silero' = 'energy',
): Promise<SpeedRow> {
  // The corpus ROUNDS times over with pauses, as one speaker's stream.
  const stream = speechTrack(Array.from({ length: ROUNDS }, () => corpus).flat(), GAP_S, 1);
  let engines: SpeechEngine[];
  try {
    engines = await enginePool({ api, modelSize: 'base', modelsDir: modelsDir(), threads, language: 'en' }, 1);
  } catch (err) {
    if (err instanceof EngineError) return { engine: api, vad, threads, audioS: 0, wallS: 0, note: err.message };
    throw err;
  }
  const silero = vad === 'silero' ? await Silero.load() : undefined;
  const started = performance.now();
  const segments = await transcribeStream(engines, [stream], { speaker: 'reader', offsetMs: 0, silero });
  const wallS = (performance.now() - started) / 1000;
  const reference = Array.from({ length: ROUNDS }, () => corpus.map((u) => u.text))
    .flat()
    .join(' ');
  const pids = engines
    .map((e) => (e instanceof PocketsphinxEngine ? e.pid : undefined))
    .filter((p): p is number => !!p);
  const rssMb = pids.length ? pids.reduce((n, pid) => n + peakMb(pid), 0) : undefined;
  await Promise.all([...engines.map((e) => e.close()), silero?.close()]);
  return {
    engine: api,
    vad,
    threads,
    audioS: stream.length / SAMPLE_RATE,
    wallS,
    wer: wordErrorRate(reference, segments.map((s) => s.text).join(' ')),
    rssMb,
  };
}

// ---- whisper.cpp speed per model shape, thread count and binding -----------------------------

/**
 * One 30-s window of real speech through whisper.cpp with generated models of the real tiny and
 * base shapes (random weights cost the encoder what real ones do; the model is scripted to one
 * segment per window, so the decoder makes 3–4 steps where real speech makes a few per word).
 * Bindings: the project's engine, and where bench/transcriber/whisper-bindings.sh has built them,
 * smart-whisper compiled here with -march=native and the @fugood prebuilt used before.
 */
interface WhisperRow {
  binding: string;
  size: string;
  threads: number;
  runs: number[];
  note?: string;
}

type Transcribe = (pcm: Int16Array, threads: number) => Promise<void>;
interface Binding {
  name: string;
  load(model: string): Promise<{ run: Transcribe; close(): Promise<void> }>;
}

const bindingsDir = fileURLToPath(new URL('../../../.bench/whisper-bindings/node_modules/', import.meta.url));
const toFloat = (pcm: Int16Array) => Float32Array.from(pcm, (v) => v / 32768);
const bindings: Binding[] = [
  {
    name: 'project (@spader prebuilt, SIMD picked at run time)',
    async load(model) {
      const dirOf = model.slice(0, model.lastIndexOf('/'));
      const size = model.slice(model.lastIndexOf('ggml-') + 5, -4);
      const engines = new Map<number, SpeechEngine>();
      return {
        run: async (pcm, threads) => {
          if (!engines.has(threads))
            engines.set(
              threads,
              (
                await enginePool({ api: 'whisper.cpp', modelSize: size, modelsDir: dirOf, threads, language: 'en' }, 1)
              )[0]!,
            );
          await engines.get(threads)!.recognize(pcm);
        },
        close: async () => void (await Promise.all([...engines.values()].map((e) => e.close()))),
      };
    },
  },
  {
    name: 'smart-whisper 0.8.1 compiled here (-march=native)',
    async load(model) {
      const { Whisper } = createRequire(bindingsDir)('smart-whisper') as {
        Whisper: new (
          p: string,
          o: object,
        ) => {
          transcribe(pcm: Float32Array, o: object): Promise<{ result: Promise<unknown> }>;
          free(): Promise<void>;
        };
      };
      const w = new Whisper(model, { gpu: false, offload: 1e9 });
      return {
        run: async (pcm, threads) => {
          const result = await (await w.transcribe(toFloat(pcm), { language: 'en', n_threads: threads, strategy: 0 }))
            .result;
          if (result instanceof Error) throw result;
        },
        close: () => w.free(),
      };
    },
  },
  {
    name: '@fugood 1.1.3 prebuilt (no SIMD; used before)',
    async load(model) {
      const { WhisperContext } = createRequire(bindingsDir)('@fugood/node-whisper-linux-x64') as {
        WhisperContext: new (
          o: object,
        ) => {
          transcribeData(b: ArrayBuffer, o: object): { promise: Promise<unknown> };
          release(): Promise<void>;
        };
      };
      const ctx = new WhisperContext({ filePath: model, useGpu: false });
      return {
        run: async (pcm, threads) =>
          void (await ctx.transcribeData(pcm.slice().buffer, { language: 'en', maxThreads: threads }).promise),
        close: () => ctx.release(),
      };
    },
  },
];

async function whisperSpeeds(sizes: string[]): Promise<WhisperRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-whisper-'));
  const speech = (() => {
    const parts: Int16Array[] = [];
    for (let n = 0, i = 0; n < 30 * SAMPLE_RATE; i++) {
      const u = wavSamples(corpus[i % corpus.length]!.wav);
      parts.push(u);
      n += u.length;
    }
    const all = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    return all.subarray(0, 30 * SAMPLE_RATE);
  })();
  const rows: WhisperRow[] = [];
  for (const size of sizes) {
    const model = join(dir, `ggml-${size}.bin`);
    execFileSync(process.execPath, [MODEL_TOOL, model, '--size', size, '--end', '30'], { stdio: 'ignore' });
    for (const binding of bindings) {
      let loaded: Awaited<ReturnType<typeof binding.load>>;
      try {
        loaded = await binding.load(model);
      } catch (err) {
        rows.push({
          binding: binding.name,
          size,
          threads: 0,
          runs: [],
          note: `not run: ${(err as Error).message.split('\n')[0]} (bench/transcriber/whisper-bindings.sh builds it)`,
        });
        continue;
      }
      for (const threads of [1, 2]) {
        const runs: number[] = [];
        for (let i = 0; i < 2; i++) {
          const started = performance.now();
          await loaded.run(speech, threads);
          runs.push(30 / ((performance.now() - started) / 1000));
        }
        rows.push({ binding: binding.name, size, threads, runs });
      }
      await loaded.close();
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return rows;
}

// ---- Live captions ---------------------------------------------------------------------------

const secret = randomBytes(32).toString('hex');
const sfu = new Sfu({
  host: '127.0.0.1',
  port: 0,
  ice: { bindAddress: '127.0.0.1', portRange: [49500, 49900] },
  policy: joinTokenPolicy(secret),
  log: pino({ level: 'warn' }),
});
const sfuUrl = await sfu.listen();

/** When speech ends in each utterance of a speaker's WAV: the last 20 ms frame above -45 dBFS, in s. */
function speechEnds(offsets: number[]): number[] {
  return corpus.map((u, i) => {
    const pcm = wavSamples(u.wav);
    let last = 0;
    for (let at = 0; at + 320 <= pcm.length; at += 320) {
      let sum = 0;
      for (let k = at; k < at + 320; k++) sum += pcm[k]! * pcm[k]!;
      if (10 * Math.log10(sum / 320 / 32768 ** 2 + 1e-12) > -45) last = at + 320;
    }
    return offsets[i]! + last / SAMPLE_RATE;
  });
}

interface CaptionRow {
  speakers: number;
  transcribers: number;
  /** a transcribing job: the call's transcript recognised beside the captions */
  transcript: boolean;
  /** its log's seconds of speech left at the stop, and how long they took */
  afterStop?: { leftS: number; tookS: number };
  utterances: number;
  delays: number[];
  missed: number;
  windows: number;
  dropped: number;
  cpuS: number;
  callS: number;
  rssMb: number;
}

async function captions(speakers: number, transcribers: number, transcript = false): Promise<CaptionRow> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-cap-'));
  const call = id();
  // Each speaker reads the whole corpus (25 s of speech, 1.5 s pauses); all start together.
  const wav = writeWav(join(dir, 'speech.wav'), speechTrack(corpus, GAP_S, 3));
  const offsets: number[] = [];
  let at = 0;
  for (const u of corpus) {
    offsets.push(at);
    at += wavSamples(u.wav).length / SAMPLE_RATE + GAP_S;
  }
  const ends = speechEnds(offsets);
  const callS = offsets.at(-1)! + wavSamples(corpus.at(-1)!.wav).length / SAMPLE_RATE + 3;

  const listener = new HeadlessParticipant({
    siteUrl: sfuUrl,
    callId: call,
    token: mintToken(secret, { call, user: 'listener', name: 'Listener', role: 'participant', ttlSec: 600 }),
    subscribe: 'none',
  });
  await listener.join();
  const job = spawn(process.execPath, [TRANSCRIBER], {
    env: {
      ...process.env,
      JOB_ID: id(),
      JOB_TYPE: transcript ? 'transcribing' : 'captioning',
      LIVE_CAPTIONS_ON: 'true',
      JOB_DIR: join(dir, 'job'),
      ARTIFACTS_DIR: join(dir, 'artifacts'),
      CALL_ID: call,
      SFU_URL: sfuUrl,
      SFU_TOKEN: mintToken(secret, { call, user: 'calls-transcriber-bot', name: 'Captions', role: 'bot', ttlSec: 600 }),
      TRANSCRIBE_API: 'pocketsphinx',
      LIVE_CAPTIONS_NUM_TRANSCRIBERS: String(transcribers),
      LIVE_CAPTIONS_NUM_THREADS_PER_TRANSCRIBER: '1',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let log = '';
  job.stdout!.on('data', (c) => (log += c));
  while (!log.includes('listening to call')) {
    if (job.exitCode !== null) throw new Error(`captioner exited:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  const people: HeadlessParticipant[] = [];
  const starts = new Map<string, number>();
  const arrivals = new Map<string, number[]>();
  listener.on('caption', (c) => arrivals.get(c.sessionId)?.push(performance.now()));
  const sources = await Promise.all(
    Array.from({ length: speakers }, async (_, i) => {
      const p = new HeadlessParticipant({
        siteUrl: sfuUrl,
        callId: call,
        token: mintToken(secret, { call, user: `u${i}`, name: `Speaker ${i}`, role: 'participant', ttlSec: 600 }),
        subscribe: 'none',
      });
      const me = await p.join();
      const { mic } = await p.publish('mic');
      people.push(p);
      arrivals.set(me.sessionId, []);
      return {
        sessionId: me.sessionId,
        start: () =>
          opusSource(
            (rtp) => {
              if (!starts.has(me.sessionId)) starts.set(me.sessionId, performance.now());
              mic.writeRtp(rtp);
            },
            callS,
            wav,
          ),
      };
    }),
  );
  await new Promise((r) => setTimeout(r, 1000)); // the captioner subscribes to every microphone
  const cpuBefore = cpuSeconds(job.pid!);
  const ffmpegs = await Promise.all(sources.map((s) => s.start()));
  await Promise.all(ffmpegs.map((c) => new Promise((r) => c.once('exit', r))));
  await new Promise((r) => setTimeout(r, 3000));
  const cpuS = cpuSeconds(job.pid!) - cpuBefore;
  const rssMb = treePeakMb(job.pid!);

  if (process.env.BENCH_DEBUG) {
    for (const { sessionId } of sources)
      console.log(
        'ends',
        ends.map((e) => e.toFixed(2)).join(' '),
        'captions',
        arrivals
          .get(sessionId)!
          .map((t) => ((t - starts.get(sessionId)!) / 1000).toFixed(2))
          .join(' '),
      );
    console.log(log);
  }
  // Each utterance's delay: its speech end to the first caption of that speaker after it. The VAD
  // may close a window on a quiet last syllable a moment before this end (by a -45 dBFS
  // threshold): captions up to 0.3 s early count, with their negative delay.
  const delays: number[] = [];
  let missed = 0;
  for (const { sessionId } of sources) {
    const t0 = starts.get(sessionId)!;
    const got = arrivals.get(sessionId)!;
    ends.forEach((end, i) => {
      const at = t0 + end * 1000;
      const until = i + 1 < ends.length ? t0 + ends[i + 1]! * 1000 : Infinity;
      const first = got.find((t) => t >= at - 300 && t < until - 300);
      if (first === undefined) missed++;
      else delays.push(first - at);
    });
  }
  job.kill('SIGTERM');
  await new Promise((r) => job.once('exit', r));
  for (const p of [...people, listener]) p.leave();
  const out = JSON.parse(readFileSync(join(dir, 'job', 'output.json'), 'utf8')) as {
    duration_ms: number;
    captions: { windows: number; dropped: number };
  };
  rmSync(dir, { recursive: true, force: true });
  const left = /recognised ([\d.]+) s of speech in ([\d.]+) s after the stop/.exec(log);
  return {
    speakers,
    transcribers,
    transcript,
    afterStop: left ? { leftS: Number(left[1]), tookS: Number(left[2]) } : undefined,
    utterances: ends.length * speakers,
    delays,
    missed,
    windows: out.captions.windows,
    dropped: out.captions.dropped,
    cpuS,
    callS,
    rssMb,
  };
}

/** CPU seconds of a process and the processes below it so far (/proc, clock ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  const pids = [pid, ...descendants(pid)];
  return pids.reduce((n, p) => {
    try {
      return n + ownCpuSeconds(p);
    } catch {
      return n;
    }
  }, 0);
}
const descendants = (pid: number): number[] => childProcesses(pid).flatMap((c) => [c, ...descendants(c)]);
const treePeakMb = (pid: number) => [pid, ...descendants(pid)].reduce((n, p) => n + peakMb(p), 0);

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : undefined;
};

const speedRows: SpeedRow[] = [];
const captionRows: CaptionRow[] = [];
let whisperRows: WhisperRow[] = [];
if (process.env.BENCH_WHISPER) {
  whisperRows = await whisperSpeeds(process.env.BENCH_WHISPER.split(','));
} else if (process.env.BENCH_CAPTIONS) {
  // <speakers>x<recognisers>, `+transcript` for a transcribing job
  const [speakers, transcribers] = process.env.BENCH_CAPTIONS.split('x').map((x) => Number.parseInt(x, 10)) as [
    number,
    number,
  ];
  captionRows.push(await captions(speakers, transcribers, process.env.BENCH_CAPTIONS.endsWith('+transcript')));
} else {
  for (const threads of [1, 2]) speedRows.push(await speed('pocketsphinx', threads));
  speedRows.push(await speed('pocketsphinx', 1, 'silero'));
  whisperRows = await whisperSpeeds(['tiny', 'base']);
  for (const [speakers, transcribers, transcript] of [
    [1, 1, false],
    [1, 2, false],
    [2, 2, false],
    [4, 2, false],
    [4, 4, false],
    [2, 2, true],
    [4, 2, true],
  ] as const)
    captionRows.push(await captions(speakers, transcribers, transcript));
}
await sfu.close();
removeTmpdir();

console.log(
  `\nbench/transcriber (${new Date().toISOString().slice(0, 10)}, node ${process.version}, 2 cores; LibriVox utterances of pocketsphinx-testdata, ${corpus.length} utterances, ${
    corpus
      .map((u) => u.text)
      .join(' ')
      .split(' ').length
  } words)\n`,
);
console.log(`Post-call recognition of one speaker's stream (the corpus read ${ROUNDS} times with 1.5 s pauses):\n`);
console.log(
  '| engine | VAD | threads | audio | wall | speed (× real time) | WER | peak RSS of the recognisers | upstream whisper.cpp (tiny / base, same threads) |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
const upstream: Record<number, string> = { 1: '4.3× / 2.1×', 2: '7.8× / 3.7×', 4: '13.3× / 6.5×' };
for (const r of speedRows) {
  if (r.note)
    console.log(
      `| ${r.engine} | ${r.vad} | ${r.threads} | – | – | not run: ${r.note} | – | – | ${upstream[r.threads]} |`,
    );
  else
    console.log(
      `| ${r.engine} | ${r.vad} | ${r.threads} | ${f(r.audioS, 1)} s | ${f(r.wallS, 1)} s | ${f(r.audioS / r.wallS, 1)}× | ${f(r.wer)} | ${f(r.rssMb, 0)} MB | ${upstream[r.threads]} |`,
    );
}
if (whisperRows.length) {
  console.log(
    "\nwhisper.cpp, one 30-s window of real speech, generated models of the real shapes (× real time, two runs each; upstream's published figure for the same model and threads):\n",
  );
  console.log('| binding | model | threads | speed, run 1 / run 2 | upstream |');
  console.log('|---|---|---|---|---|');
  const published: Record<string, Record<number, string>> = {
    tiny: { 1: '4.3×', 2: '7.8×' },
    base: { 1: '2.1×', 2: '3.7×' },
  };
  for (const r of whisperRows) {
    if (r.note) console.log(`| ${r.binding} | ${r.size} | – | ${r.note} | – |`);
    else
      console.log(
        `| ${r.binding} | ${r.size} | ${r.threads} | ${r.runs.map((x) => `${f(x, 1)}×`).join(' / ')} | ${published[r.size]?.[r.threads] ?? '–'} |`,
      );
  }
}
console.log(
  "\nLive captions (pocketsphinx; delay = end of an utterance's speech to its caption at another participant):\n",
);
console.log(
  '| speakers at once | recognisers (pocketsphinx helpers) | the transcript beside | utterances | captioned | delay p50 | delay p95 | max | windows dropped | job CPU | job RSS | transcript after the stop: speech left, recognised in |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
for (const r of captionRows) {
  console.log(
    `| ${r.speakers} | ${r.transcribers} | ${r.transcript ? 'yes' : 'no'} | ${r.utterances} | ${r.utterances - r.missed} | ${f(quantile(r.delays, 0.5)! / 1000)} s | ${f(quantile(r.delays, 0.95)! / 1000)} s | ${f(Math.max(...r.delays) / 1000)} s | ${r.dropped} of ${r.windows} (${f((100 * r.dropped) / Math.max(1, r.windows), 0)} %) | ${f(r.cpuS / r.callS, 2)} core | ${f(r.rssMb, 0)} MB | ${r.afterStop ? `${f(r.afterStop.leftS, 1)} s, ${f(r.afterStop.tookS, 1)} s` : '–'} |`,
  );
}
console.log(
  '\nUpstream (published): tiny model, 2 threads, one call: 96 % of caption chunks out in under 2 s; three calls on 4 threads: 74 % under 2 s, with windows dropped.',
);
