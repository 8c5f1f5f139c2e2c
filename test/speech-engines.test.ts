// The speech engines and VAD with real recorded speech: pocketsphinx through its resident helper,
// the energy VAD cutting a stream of utterances and pauses, Opus RTP decoded onto the RTP clock,
// live captions, and the whisper.cpp engine and model download as far as this machine allows
// (no model can be obtained here).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  appendFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RtpPacket } from 'werift';
import { SpeakerAudio } from '../workers/transcriber/audio.js';
import { CallTranscript } from '../workers/transcriber/call-transcript.js';
import { LiveCaptions } from '../workers/transcriber/captions.js';
import {
  createEngine,
  EngineError,
  enginePool,
  SAMPLE_RATE,
  type SpeechEngine,
} from '../workers/transcriber/speech/engine.js';
import { Silero } from '../workers/transcriber/speech/silero.js';
import { Vad } from '../workers/transcriber/speech/vad.js';
import { loadBinding } from '../workers/transcriber/speech/whisper.js';
import { pcmChunks, transcribeStream } from '../workers/transcriber/transcribe.js';
import { opusSource } from './media.js';
import { concat, librivox, ownTmpdir, wavSamples, wordErrorRate } from './speech.js';
import { readLines } from '../workers/shared/job.js';
import { waitFor } from './helpers.js';

const FETCH = fileURLToPath(new URL('../workers/transcriber/fetch-model.js', import.meta.url));
const silence = (seconds: number) => new Int16Array(Math.round(seconds * SAMPLE_RATE));
const bytes = (x: Int16Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

/** A listener's directory as the job writes it: Alice's one track from `startMs` on, holding `pcm` so far. */
function listenerTrack(dir: string, startMs: number, pcm: Int16Array): string {
  mkdirSync(join(dir, 'tracks'));
  const entry = { file: 'tracks/001-s.pcm', sessionId: 's', displayName: 'Alice', startMs };
  writeFileSync(join(dir, 'tracks.jsonl'), `${JSON.stringify(entry)}\n`);
  const track = join(dir, entry.file);
  writeFileSync(track, bytes(pcm));
  return track;
}

after(ownTmpdir('co-speech-'));

describe('pocketsphinx engine', () => {
  let engine: SpeechEngine;
  before(async () => {
    engine = await createEngine({ api: 'pocketsphinx', modelSize: 'base', modelsDir: '', threads: 1, language: 'en' });
  });
  after(() => engine.close());

  it('recognises real recorded utterances with timed words; WER measured against the transcripts', async () => {
    const corpus = librivox();
    let errors = 0;
    let total = 0;
    for (const u of corpus) {
      const pcm = wavSamples(u.wav);
      const r = await engine.recognize(pcm);
      const n = u.text.split(' ').length;
      errors += wordErrorRate(u.text, r.text) * n;
      total += n;
      assert.ok(r.words.length > 0, `words for ${u.wav}`);
      for (const w of r.words) {
        assert.ok(
          w.start >= 0 && w.end > w.start && w.end <= pcm.length / SAMPLE_RATE + 0.05,
          `word times in range: ${JSON.stringify(w)}`,
        );
        assert.doesNotMatch(w.word, /[()<>[\]]/, 'no alternate-pronunciation marks or fillers');
      }
      assert.deepEqual(r.words.map((w) => w.word).join(' '), r.text.trim().split(/\s+/).join(' '));
    }
    // Measured here: 0.21 (pocketsphinx's generic English model on 19th-century prose read aloud).
    assert.ok(errors / total < 0.4, `WER ${(errors / total).toFixed(2)}`);
  });

  it("places a speaker's utterances on the call clock through VAD", async () => {
    const [a, b] = librivox();
    const stream = concat([silence(1), wavSamples(a!.wav), silence(2), wavSamples(b!.wav), silence(1)]);
    const segments = await transcribeStream([engine], [stream], { speaker: 'Alice', offsetMs: 5000 });
    assert.ok(segments.length >= 2, JSON.stringify(segments));
    const bStart = 5000 + (1 + wavSamples(a!.wav).length / SAMPLE_RATE + 2) * 1000;
    assert.ok(Math.abs(segments[0]!.startMs - 6000) < 600, `first starts near 6.0 s: ${segments[0]!.startMs}`);
    const second = segments.find((s) => s.startMs > bStart - 600)!;
    assert.ok(
      second && second.startMs - bStart < 600,
      `second starts near ${bStart}: ${JSON.stringify(segments.map((s) => s.startMs))}`,
    );
    assert.ok(segments.every((s) => s.speaker === 'Alice' && s.endMs > s.startMs));
    assert.ok(wordErrorRate(b!.text, second.text) < 0.5, second.text);
  });

  it('a long recording read from its file a piece at a time is transcribed as if whole', async () => {
    // a MEDIA_URL recording is read a minute at a time (its PCM can be hours); here 2 s at a
    // time, every utterance cut across pieces, with Silero as a job has it
    const silero = await Silero.load();
    const dir = mkdtempSync(join(tmpdir(), 'co-pieces-'));
    try {
      const [a, b] = librivox();
      const stream = concat([silence(0.7), wavSamples(a!.wav), silence(1.3), wavSamples(b!.wav), silence(1)]);
      const file = join(dir, 'media.pcm');
      writeFileSync(file, bytes(stream));
      const pieces = [...pcmChunks(file, 2)];
      assert.equal(pieces.length, Math.ceil(stream.length / (2 * SAMPLE_RATE)));
      const whole = await transcribeStream([engine], [stream], { speaker: 'Speaker', offsetMs: 0, silero });
      assert.ok(whole.length >= 2, JSON.stringify(whole));
      assert.deepEqual(
        await transcribeStream([engine], pcmChunks(file, 2), { speaker: 'Speaker', offsetMs: 0, silero }),
        whole,
      );
    } finally {
      await silero.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("marks a listener's silence as done: a run that resumes reads on from the mark, not from the start", async () => {
    const silero = await Silero.load();
    const dir = mkdtempSync(join(tmpdir(), 'co-transcript-'));
    try {
      const [a] = librivox().map((u) => wavSamples(u.wav));
      const track = listenerTrack(dir, 0, silence(75)); // a quiet listener, still in the call
      const live = new CallTranscript([engine], dir, silero, 50);
      live.start();
      const marked = () =>
        readLines<{ end: number; samples: number }>(join(dir, 'recognised.jsonl')).find((l) => l.samples === 0)?.end;
      const mark = await waitFor('a mark of the silence', marked, 60_000);
      assert.ok(mark >= 60 * SAMPLE_RATE && mark <= 75 * SAMPLE_RATE, `marked at ${mark / SAMPLE_RATE} s`);
      await live.finish();
      // A run that resumes (a new transcript process, the stop) with what came since: Alice speaks.
      appendFileSync(track, bytes(concat([a!, silence(1)])));
      let fed = 0;
      const counted = {
        stream: () => {
          const d = silero.stream();
          return {
            ...d,
            feed: (pcm: Int16Array) => {
              fed += pcm.length;
              return d.feed(pcm);
            },
          };
        },
      } as unknown as Silero;
      const { segments } = await new CallTranscript([engine], dir, counted).finish();
      const whole = await transcribeStream([engine], [concat([silence(75), a!, silence(1)])], {
        speaker: 'Alice',
        offsetMs: 0,
        silero,
      });
      assert.deepEqual(
        segments.map((x) => x.text),
        whole.map((x) => x.text),
      );
      for (const [i, x] of segments.entries()) assert.ok(Math.abs(x.startMs - whole[i]!.startMs) <= 20, `${x.startMs}`);
      const fedSec = fed / SAMPLE_RATE;
      assert.ok(fedSec < 75 - mark / SAMPLE_RATE + a!.length / SAMPLE_RATE + 2, `the resumed run read ${fedSec} s`);
    } finally {
      await silero.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('recognises a call while it goes on, and a run that resumes it recognises only the rest', async () => {
    const silero = await Silero.load();
    const dir = mkdtempSync(join(tmpdir(), 'co-transcript-'));
    try {
      const [a, b] = librivox().map((u) => wavSamples(u.wav));
      const first = concat([silence(1), a!, silence(1.5)]);
      const rest = concat([silence(0.5), b!, silence(1)]);
      const whole = await transcribeStream([engine], [concat([first, rest])], {
        speaker: 'Alice',
        offsetMs: 3000,
        silero,
      });
      // The listener's files: a track that started 3 s into the call, still being written.
      const track = listenerTrack(dir, 3000, first);
      const live = new CallTranscript([engine], dir, silero, 50);
      live.start();
      await waitFor(
        'the first utterances recognised during the call',
        () => readFileSync(join(dir, 'recognised.jsonl'), 'utf8').includes('"segment"'),
        60_000,
      );
      // A run killed here leaves this directory: one that resumes it must not hear the first part again.
      const killed = mkdtempSync(join(tmpdir(), 'co-transcript-'));
      cpSync(dir, killed, { recursive: true });
      appendFileSync(track, bytes(rest));
      const done = await live.finish();

      appendFileSync(join(killed, 'tracks/001-s.pcm'), bytes(rest));
      const heardSamples: number[] = [];
      const counting: SpeechEngine = {
        name: engine.name,
        recognize: (pcm) => {
          heardSamples.push(pcm.length);
          return engine.recognize(pcm);
        },
        failure: undefined,
        close: async () => undefined,
      };
      const resumed = await new CallTranscript([counting], killed, silero).finish();
      rmSync(killed, { recursive: true, force: true });

      for (const [name, t] of [
        ['live', done],
        ['resumed', resumed],
      ] as const) {
        assert.deepEqual(
          t.segments.map((x) => [x.speaker, x.text]),
          whole.map((x) => [x.speaker, x.text]),
          `${name}: the same words as the whole stream at once`,
        );
        for (const [i, x] of t.segments.entries())
          assert.ok(Math.abs(x.startMs - whole[i]!.startMs) <= 20, `${name}: ${x.startMs} vs ${whole[i]!.startMs}`);
      }
      assert.ok(done.earlySec > a!.length / SAMPLE_RATE - 1, `recognised during the call: ${done.earlySec} s`);
      assert.ok(done.leftSec < b!.length / SAMPLE_RATE + 1, `left after the stop: ${done.leftSec} s`);
      const resumedSec = heardSamples.reduce((n, x) => n + x, 0) / SAMPLE_RATE;
      assert.ok(resumedSec < b!.length / SAMPLE_RATE + 1, `the resumed run recognised ${resumedSec} s`);
      // what the killed run had recognised counts as before the stop, what the resumed one did as after it
      assert.ok(Math.abs(resumed.leftSec - resumedSec) < 0.01, `${resumed.leftSec} s after the stop`);
      assert.ok(resumed.earlySec > a!.length / SAMPLE_RATE - 1, `${resumed.earlySec} s before it`);
    } finally {
      await silero.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a language its model does not have', async () => {
    await assert.rejects(
      createEngine({ api: 'pocketsphinx', modelSize: 'base', modelsDir: '', threads: 1, language: 'de' }),
      /English model only/,
    );
  });
});

describe('VAD', () => {
  let silero: Silero;
  before(async () => {
    silero = await Silero.load();
  });
  after(() => silero.close());

  const detectors = { energy: () => undefined, silero: () => silero.stream() };
  for (const [name, detector] of Object.entries(detectors)) {
    it(`${name}: cuts utterances at pauses, keeps their positions and drops silence and clicks`, async () => {
      const [a, b] = librivox().map((u) => wavSamples(u.wav));
      const click = new Int16Array(SAMPLE_RATE * 0.04).fill(20000);
      const stream = concat([silence(1), a!, silence(1.5), click, silence(1.5), b!, silence(0.7)]);
      const d = detector();
      const vad = new Vad({}, undefined, d);
      const out = [];
      // odd chunking on purpose: Silero's frames straddle the pieces, as a call's reads do
      for (let i = 0; i < stream.length; i += 3333) {
        const piece = stream.subarray(i, i + 3333);
        await d?.feed(piece);
        out.push(...vad.push(piece));
      }
      out.push(...vad.flush());
      const bAt = (1 + a!.length / SAMPLE_RATE + 3 + 0.04) * SAMPLE_RATE;
      const starts = out.map((u) => u.start / SAMPLE_RATE);
      // The reader pauses inside sentences, so an utterance may split; none starts in the long silences.
      assert.ok(out.length >= 2, `utterances at ${starts}`);
      assert.ok(Math.abs(starts[0]! - 1) < 0.4, `first at ${starts[0]}`);
      assert.ok(
        out.some((u) => Math.abs(u.start - bAt) < 0.4 * SAMPLE_RATE),
        `one starts near ${bAt / SAMPLE_RATE}: ${starts}`,
      );
      assert.ok(
        out.every(
          (u) =>
            u.start + u.pcm.length <= stream.length &&
            !(u.start > (1 + a!.length / SAMPLE_RATE + 0.5) * SAMPLE_RATE && u.start < bAt - 0.4 * SAMPLE_RATE),
        ),
        `nothing in the pause: ${starts}`,
      );
      const speech = out.reduce((n, u) => n + u.pcm.length, 0) / SAMPLE_RATE;
      assert.ok(
        speech < stream.length / SAMPLE_RATE - 3,
        `silence skipped: ${speech.toFixed(1)} s of ${(stream.length / SAMPLE_RATE).toFixed(1)}`,
      );
    });
  }

  it('silero: tells speech from a loud steady tone (a hum, an alarm) that energy takes for speech', async () => {
    // A tone rather than random noise: deterministic, and Silero sometimes scores bursts of white noise as speech.
    const noise = new Int16Array(SAMPLE_RATE * 3);
    for (let i = 0; i < noise.length; i++)
      noise[i] = Math.round(Math.sin((2 * Math.PI * 440 * i) / SAMPLE_RATE) * 8000);
    const stream = concat([silence(1), noise, silence(1)]);
    const cutBy = async (d: ReturnType<(typeof detectors)['silero']> | undefined) => {
      await d?.feed(stream);
      const vad = new Vad({}, undefined, d);
      return [...vad.push(stream), ...vad.flush()];
    };
    assert.ok((await cutBy(undefined)).length >= 1, 'energy hears the tone');
    assert.equal((await cutBy(silero.stream())).length, 0, 'silero does not');
  });

  it('cuts a long utterance into windows no longer than asked', () => {
    const [a] = librivox().map((u) => wavSamples(u.wav));
    const vad = new Vad({ maxUtteranceMs: 2000 });
    const out = [...vad.push(a!), ...vad.flush()];
    assert.ok(out.length >= 3);
    assert.ok(out.every((u) => u.pcm.length <= 2 * SAMPLE_RATE));
  });
});

describe('Opus RTP to 16 kHz PCM', () => {
  it('decodes real Opus and fills a gap in the packets with silence by the RTP clock', async () => {
    const packets: RtpPacket[] = [];
    const src = await opusSource((p) => packets.push(p), 3);
    await new Promise((r) => src.once('exit', r));
    assert.ok(packets.length > 100, `${packets.length} packets`);
    const chunks: [number, Int16Array][] = [];
    const audio = new SpeakerAudio((s, pos) => chunks.push([pos, s]));
    // Packets 50..74 (0.5 s) never arrive; one old packet arrives late and is ignored.
    const sent = packets.filter((_, i) => i < 50 || i >= 75);
    sent.splice(80, 0, packets[10]!);
    for (const p of sent) audio.push(p.payload, p.header.timestamp);
    await new Promise((r) => setTimeout(r, 200));
    const total = chunks.reduce((n, [, s]) => n + s.length, 0);
    const expected = ((packets.at(-1)!.header.timestamp - packets[0]!.header.timestamp) / 48000 + 0.02) * SAMPLE_RATE;
    assert.ok(Math.abs(total - expected) < SAMPLE_RATE * 0.03, `samples ${total} vs ${expected} by the RTP clock`);
    let at = 0;
    for (const [pos, s] of chunks) {
      assert.equal(pos, at, 'positions follow each other');
      at += s.length;
    }
    const gapChunk = chunks[50]![1];
    assert.ok(gapChunk.length >= 0.5 * SAMPLE_RATE, 'the lost half second is filled');
    assert.ok(
      gapChunk.subarray(0, 0.5 * SAMPLE_RATE).every((v) => v === 0),
      'with silence',
    );
    const rms = Math.sqrt(chunks[10]![1].reduce((n, v) => n + v * v, 0) / chunks[10]![1].length);
    assert.ok(rms > 1000, `the tone is decoded (rms ${rms.toFixed(0)})`);
    audio.free();
  });

  it("believes a sender's clock only as far as time goes by here, and drops what is not Opus", async () => {
    const packets: RtpPacket[] = [];
    const src = await opusSource((p) => packets.push(p), 2);
    await new Promise((r) => src.once('exit', r));
    const samples = (push: (audio: SpeakerAudio) => void) =>
      new Promise<number>((resolve) => {
        let total = 0;
        const audio = new SpeakerAudio((s) => (total += s.length));
        push(audio); // at once: the packets queue until the decoder is ready, then decode in one go
        setTimeout(() => {
          audio.free();
          resolve(total);
        }, 500);
      });
    const frame = 320; // 20 ms at 16 kHz
    // Two packets arriving together, 1.9 s apart by their clock: believed (2 s of slack past the
    // time waited); 3 s apart: a jump, filled with the time waited (none); 3 s apart and 3 s apart
    // in arrival: believed.
    const two = (gapSec: number, waitedMs: number) =>
      samples((audio) => {
        audio.push(packets[0]!.payload, 0, 0);
        audio.push(packets[1]!.payload, 960 + gapSec * 48_000, waitedMs);
      });
    assert.equal(await two(1.9, 0), 2 * frame + 1.9 * SAMPLE_RATE);
    assert.equal(await two(3, 0), 2 * frame);
    assert.equal(await two(3, 3000), 2 * frame + 3 * SAMPLE_RATE);
    // A payload too long for Opus, then 100 packets 1.9 s apart arriving together: held to the 10 s
    // a stream may lead real time by, not 190 s.
    const flooded = await samples((audio) => {
      audio.push(new Uint8Array(4000), 0, 0);
      for (let i = 0; i < 100; i++) audio.push(packets[i]!.payload, (i * 1.9 * 48_000) >>> 0, 0);
    });
    assert.ok(flooded <= 10 * SAMPLE_RATE + frame, `${flooded / SAMPLE_RATE} s of audio`);
    // A clock that goes back an hour (a sender's restart): what follows is kept, not dropped for an hour.
    const restarted = await samples((audio) => {
      for (let i = 0; i < 100; i++) {
        const { payload, header } = packets[i]!;
        audio.push(payload, i < 50 ? header.timestamp : (header.timestamp - 3600 * 48_000) >>> 0, 0);
      }
    });
    assert.equal(restarted, 100 * frame);
  });

  it('counts the packets libopus refuses and says so once, instead of a line on stderr for each', async () => {
    const packets: RtpPacket[] = [];
    const src = await opusSource((p) => packets.push(p), 1);
    await new Promise((r) => src.once('exit', r));
    const said: string[] = [];
    const printed: unknown[] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => printed.push(args); // where released opus-decoder writes each
    try {
      let decoded = 0;
      const audio = new SpeakerAudio(
        (s) => (decoded += s.length),
        (error) => said.push(error),
      );
      // Each good packet after one with its timestamp that is not Opus (code 3 with no frames).
      for (const { payload, header } of packets.slice(0, 40)) {
        audio.push(Uint8Array.of(0x03, 0x00), header.timestamp, 0);
        audio.push(payload, header.timestamp, 0);
      }
      await waitFor('decoded', () => audio.undecodable === 40);
      audio.free();
      assert.deepEqual(said, ['libopus -4 OPUS_INVALID_PACKET: The compressed data passed is corrupted']);
      assert.equal(printed.length, 0, 'nothing on stderr');
      assert.equal(decoded, 40 * 320, 'the good packets are all decoded, 20 ms each');
    } finally {
      console.error = consoleError;
    }
  });
});

describe('whisper.cpp engine', () => {
  const dir = mkdtempSync(join(tmpdir(), 'co-models-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('loads the native binding', async () => {
    assert.equal(typeof (await loadBinding()).WhisperContext, 'function');
  });

  it('fails with the model file named when it is missing', async () => {
    await assert.rejects(
      createEngine({ api: 'whisper.cpp', modelSize: 'tiny', modelsDir: dir, threads: 1, language: 'en' }),
      (err: Error) =>
        err instanceof EngineError &&
        err.message.includes(join(dir, 'ggml-tiny.bin')) &&
        /models:fetch/.test(err.message),
    );
  });

  it('fails clearly when the model file is not a model', async () => {
    writeFileSync(join(dir, 'ggml-base.bin'), 'not a model');
    await assert.rejects(
      createEngine({ api: 'whisper.cpp', modelSize: 'base', modelsDir: dir, threads: 1, language: 'en' }),
      (err: Error) => err instanceof EngineError && /could not load .*ggml-base\.bin/.test(err.message),
    );
  });
});

describe('live captions', () => {
  const engines: SpeechEngine[] = [];
  const start = async (n: number) => {
    const list = await enginePool(
      { api: 'pocketsphinx', modelSize: 'tiny', modelsDir: '', threads: 1, language: 'en' },
      n,
    );
    engines.push(...list);
    return list;
  };
  after(() => Promise.all(engines.map((e) => e.close())));

  /** Feeds a stream in 20 ms packets, `speed` times faster than real time. */
  async function play(captions: LiveCaptions, streams: Record<string, Int16Array>, speed: number): Promise<void> {
    const length = Math.max(...Object.values(streams).map((s) => s.length));
    for (let at = 0; at < length; at += 320) {
      for (const [session, pcm] of Object.entries(streams))
        if (at < pcm.length) captions.feed(session, pcm.subarray(at, at + 320));
      if (at % 3200 === 0) await new Promise((r) => setTimeout(r, 200 / speed));
    }
  }

  it('streams each utterance into a free recogniser and captions the speaker', async () => {
    const sent: { sessionId: string; text: string; ms: number }[] = [];
    const [a, b] = librivox();
    const [engine] = await start(1);
    // Count the streams begun: the same captions could come from whole windows queued after speech.
    let begun = 0;
    const begin = engine!.begin!.bind(engine);
    const counted = Object.assign(Object.create(engine!), {
      begin: () => {
        begun++;
        return begin();
      },
    });
    const captions = new LiveCaptions([counted], (sessionId, text, ms) => sent.push({ sessionId, text, ms }), {
      windowMs: 8000,
    });
    await play(
      captions,
      { s1: concat([silence(0.5), wavSamples(a!.wav), silence(1), wavSamples(b!.wav), silence(1)]) },
      1,
    );
    const stats = await captions.close();
    assert.equal(stats.dropped, 0);
    assert.ok(begun >= 2, `${begun} streams begun`);
    assert.equal(stats.windows, stats.sent + stats.dropped + stats.empty, JSON.stringify(stats));
    assert.ok(
      stats.sent >= 2 && sent.every((c) => c.sessionId === 's1' && c.ms > 0 && c.ms <= 8000),
      JSON.stringify(sent),
    );
    const wer = wordErrorRate(`${a!.text} ${b!.text}`, sent.map((c) => c.text).join(' '));
    assert.ok(wer < 0.5, `caption WER ${wer.toFixed(2)}: ${JSON.stringify(sent)}`);
  });

  it('replaces a recogniser whose helper died before a window is lost to it; with none left, windows are dropped, not kept', async () => {
    const [a, b, c] = librivox();
    const kill = async (engine: SpeechEngine) => {
      (engine as unknown as { child: ChildProcess }).child.kill('SIGKILL'); // out of memory, killed
      await waitFor('the helper gone', () => engine.failure);
    };
    const spoken = (u: { wav: string }) => concat([silence(0.5), wavSamples(u.wav), silence(1)]);
    const settled = (captions: LiveCaptions) => {
      const s = captions.stats();
      return s.windows === s.sent + s.dropped + s.empty;
    };
    const sent: string[] = [];
    const logs: string[] = [];
    const [engine] = await start(1);
    const renewed = async () => (await start(1))[0]!;
    // windows may wait long for the new recogniser on a loaded machine: none is dropped for it here
    const opts = { windowMs: 8000, staleMs: 30_000 };
    const captions = new LiveCaptions(
      [engine!],
      (_, text) => sent.push(text),
      opts,
      (m) => logs.push(m),
      renewed,
    );
    await play(captions, { s1: spoken(a!) }, 1);
    await waitFor('the first captions', () => settled(captions), 30_000);
    await kill(engine!);
    const after = sent.length;
    await play(captions, { s1: concat([spoken(b!), spoken(c!)]) }, 1);
    const stats = await captions.close();
    assert.ok(
      logs.some((l) => /pocketsphinx-server exited.*a new one replaces it \(1 of 3\)/.test(l)),
      logs.join('\n'),
    );
    assert.equal(stats.dropped, 0, JSON.stringify(stats));
    assert.equal(stats.windows, stats.sent + stats.empty, JSON.stringify(stats));
    const wer = wordErrorRate(`${b!.text} ${c!.text}`, sent.slice(after).join(' '));
    assert.ok(wer < 0.5, `caption WER after the renewal ${wer.toFixed(2)}: ${JSON.stringify(sent)}`);

    // Without a new one, the pool goes on without it; with none left, nothing waits for good.
    const [lone] = await start(1);
    const alone = new LiveCaptions(
      [lone!],
      () => undefined,
      { windowMs: 3000 },
      (m) => logs.push(m),
    );
    await kill(lone!);
    await play(alone, { s1: concat([spoken(a!), spoken(b!)]) }, 4);
    assert.equal((alone as unknown as { queue: unknown[] }).queue.length, 0, 'windows kept with no recogniser');
    const lost = await alone.close();
    assert.ok(lost.windows > 1 && lost.dropped === lost.windows && lost.sent === 0, JSON.stringify(lost));
    assert.ok(
      logs.some((l) => /a caption recogniser failed .*; 0 caption recognisers left/.test(l)),
      logs.join('\n'),
    );
  });

  it('drops windows that waited too long instead of falling ever further behind', async () => {
    const sent: string[] = [];
    const speech = librivox().map((u) => wavSamples(u.wav));
    const streams = Object.fromEntries(
      [0, 1, 2, 3].map((i) => [`s${i}`, concat(speech.flatMap((s) => [s, silence(0.6)]))]),
    );
    // Four speakers at ten times real time into one recogniser: it cannot keep up.
    const captions = new LiveCaptions(await start(1), (_, text) => sent.push(text), { windowMs: 3000, staleMs: 300 });
    await play(captions, streams, 10);
    const stats = await captions.close();
    assert.ok(stats.dropped > 0, JSON.stringify(stats));
    assert.ok(stats.sent > 0, JSON.stringify(stats));
    assert.equal(stats.windows, stats.sent + stats.dropped + stats.empty, JSON.stringify(stats));
    assert.equal(stats.sent, sent.length);
  });
});

describe('models:fetch', () => {
  const dir = mkdtempSync(join(tmpdir(), 'co-fetch-'));
  const files: Record<string, Buffer> = {
    '/ggml-tiny.bin': Buffer.concat([Buffer.from([0x6c, 0x6d, 0x67, 0x67]), randomBytes(200_000)]),
    '/ggml-base.bin': Buffer.from('<html>not a model</html>'),
  };
  let server: Server;
  let source: string;
  before(async () => {
    server = createServer((req, res) => {
      const body = files[req.url ?? ''];
      res.writeHead(body ? 200 : 404).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    source = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  // Asynchronous: the server answering it runs in this process.
  const fetchCli = (size: string, url: string) =>
    new Promise<{ status: number; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [FETCH, size],
        { env: { ...process.env, MODELS_DIR: dir, WHISPER_MODELS_URL: url } },
        (_err, _stdout, stderr) => resolve({ status: child.exitCode ?? -1, stderr }),
      );
    });

  it('downloads a model into MODELS_DIR', async () => {
    const r = await fetchCli('tiny', source);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(readFileSync(join(dir, 'ggml-tiny.bin')).equals(files['/ggml-tiny.bin']!));
  });

  it('keeps nothing that is not a ggml model, and says why', async () => {
    const r = await fetchCli('base', source);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /ggml-base\.bin is not a ggml model file/);
    const small = await fetchCli('small', source);
    assert.match(small.stderr, /ggml-small\.bin could not be reached \(the source answered 404 Not Found\)/);
    assert.deepEqual(readdirSync(dir), ['ggml-tiny.bin']);
  });

  it('names the way out when the internet cannot be reached, and refuses unknown sizes', async () => {
    const r = await fetchCli('tiny', 'http://127.0.0.1:9/models');
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /could not be reached .*fetch the model where the internet is reachable and copy it to .*ggml-tiny\.bin/,
    );
    assert.match(
      (await fetchCli('huge', source)).stderr,
      /unknown model size "huge": one of tiny, base, small, medium, large/,
    );
  });
});
