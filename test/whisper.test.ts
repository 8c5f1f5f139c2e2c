// The whisper.cpp path run for real (model load, log-mel, encoder, decoder, timestamp rules) with
// generated models: micro models scripted to decode every 30-s window to one known segment, so
// that what comes back can be checked exactly: how many windows, and where the segments lie.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LiveCaptions } from '../workers/transcriber/captions.js';
import { toText, toWebVtt } from '../workers/transcriber/formats.js';
import {
  createEngine,
  EngineError,
  SAMPLE_RATE,
  type EngineOptions,
  type SpeechEngine,
} from '../workers/transcriber/speech/engine.js';
import { WhisperEngine } from '../workers/transcriber/speech/whisper.js';
import { CallTranscript } from '../workers/transcriber/call-transcript.js';
import { HeadlessParticipant } from '../src/sfu/client/participant.js';
import { opusSource } from './media.js';
import { ServiceStack } from './service-stack.js';
import { ids, waitFor } from './helpers.js';
import { concat, librivox, speechTrack, wavSamples, writeWav } from './speech.js';
import { damagedModel, makeWhisperModel } from './whisper-models.js';

const dir = mkdtempSync(join(tmpdir(), 'co-whisper-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const silence = (seconds: number) => new Int16Array(Math.round(seconds * SAMPLE_RATE));
const options = (modelSize: string, modelsDir = dir): EngineOptions => ({
  api: 'whisper.cpp',
  modelSize,
  modelsDir,
  threads: 2,
  language: 'en',
});
/** Real speech, repeated to the length asked. */
const speech = (seconds: number) => {
  const one = wavSamples(librivox()[0]!.wav);
  const parts: Int16Array[] = [];
  for (let n = 0; n < seconds * SAMPLE_RATE; n += one.length) parts.push(one);
  return concat(parts).subarray(0, seconds * SAMPLE_RATE);
};

describe('whisper.cpp engine with a generated model', () => {
  let engine: SpeechEngine;
  before(async () => {
    makeWhisperModel(join(dir, 'ggml-scripted.bin'), { end: 4.8, text: ' hello world' });
    engine = await createEngine(options('scripted'));
  });
  after(() => engine.close());

  it('a 20 s clip is one window: exactly one segment, 0 to 4.8 s, its words inside the clip', async () => {
    const r = await engine.recognize(speech(20));
    assert.equal(r.text, 'hello world');
    assert.deepEqual(
      r.words.map((w) => w.word),
      ['hello', 'world'],
    );
    assert.equal(r.words[0]!.start, 0);
    assert.ok(Math.abs(r.words[1]!.end - 4.8) < 0.011, JSON.stringify(r.words));
  });

  it('a 40 s clip is two windows: one segment in each, the second at 30 s', async () => {
    const r = await engine.recognize(speech(40));
    assert.equal(r.text, 'hello world hello world');
    const starts = r.words.filter((w) => w.word === 'hello').map((w) => w.start);
    assert.deepEqual(
      starts.map((s) => Math.round(s * 100) / 100),
      [0, 30],
    );
    assert.ok(Math.abs(r.words[3]!.end - 34.8) < 0.011, JSON.stringify(r.words));
  });

  it('a clip shorter than the segment whisper claims keeps its word times inside the clip', async () => {
    const r = await engine.recognize(speech(3));
    assert.ok(r.words.length === 2 && r.words.every((w) => w.end <= 3), JSON.stringify(r.words));
  });

  it('the post-call transcript: segments on the call clock, each speaker apart, into WebVTT and text', async () => {
    const call = join(dir, 'call');
    mkdirSync(join(call, 'tracks'), { recursive: true });
    // Alice from the start: an utterance at 1 s; Bob joins at 12 s and speaks 2 s later.
    const tracks = [
      { name: 'Alice Liddell', startMs: 0, pcm: concat([silence(1), speech(3), silence(2)]) },
      { name: 'Bob Cratchit', startMs: 12_000, pcm: concat([silence(2), speech(6), silence(2)]) },
    ];
    tracks.forEach((t, i) => {
      const file = `tracks/00${i}.pcm`;
      writeFileSync(join(call, file), Buffer.from(t.pcm.buffer));
      appendFileSync(
        join(call, 'tracks.jsonl'),
        `${JSON.stringify({ file, sessionId: `s${i}`, displayName: t.name, startMs: t.startMs, endMs: t.startMs + 10_000 })}\n`,
      );
    });
    const { segments } = await new CallTranscript([engine], call).finish();
    assert.deepEqual(
      segments.map((s) => [s.speaker, s.text]),
      [
        ['Alice Liddell', 'hello world'],
        ['Bob Cratchit', 'hello world'],
      ],
    );
    const [alice, bob] = segments;
    // Each utterance starts where the VAD found speech (200 ms of pre-roll kept) and ends inside it.
    assert.ok(alice!.startMs >= 700 && alice!.startMs <= 1000 && alice!.endMs <= 4200, JSON.stringify(alice));
    assert.ok(
      bob!.startMs >= 13_700 && bob!.startMs <= 14_000 && bob!.endMs <= 18_800 && bob!.endMs > 18_000,
      JSON.stringify(bob),
    );
    const vtt = toWebVtt(segments, false);
    assert.match(vtt, /00:00:00\.[789]\d\d --> 00:00:0[34]\.\d{3}\n<v Alice Liddell>hello world/);
    assert.match(vtt, /00:00:13\.[789]\d\d --> 00:00:18\.\d{3}\n<v Bob Cratchit>hello world/);
    assert.match(
      toText(segments, { silenceThresholdMs: 2000, maxSegmentDurationMs: 10_000 }),
      /Bob Cratchit\nhello world/,
    );
  });

  it('live captions: each window of each speaker is captioned with its session', async () => {
    const sent: { sessionId: string; text: string; ms: number }[] = [];
    const captions = new LiveCaptions([engine], (sessionId, text, ms) => sent.push({ sessionId, text, ms }));
    const streams = {
      alice: concat([silence(0.5), speech(2.5), silence(1)]),
      bob: concat([silence(1.5), speech(2), silence(1)]),
    };
    for (let at = 0; at < 4.5 * SAMPLE_RATE; at += 320) {
      for (const [session, pcm] of Object.entries(streams))
        if (at < pcm.length) captions.feed(session, pcm.subarray(at, at + 320));
      if (at % 3200 === 0) await new Promise((r) => setTimeout(r, 20));
    }
    await waitFor('both captions', () => sent.length === 2, 20_000);
    const stats = await captions.close();
    assert.deepEqual(sent.map((c) => [c.sessionId, c.text]).sort(), [
      ['alice', 'hello world'],
      ['bob', 'hello world'],
    ]);
    assert.ok(
      sent.every((c) => c.ms > 1500 && c.ms < 3500),
      JSON.stringify(sent),
    );
    assert.equal(stats.sent, 2);
  });
});

describe('whisper.cpp with broken models', () => {
  const good = join(dir, 'good.bin');
  before(() => makeWhisperModel(good, { end: 2 }));

  for (const how of ['truncated', 'wrong-shape'] as const) {
    it(`a ${how} model fails at load with the file named`, async () => {
      damagedModel(good, join(dir, `ggml-${how}.bin`), how);
      await assert.rejects(
        createEngine(options(how)),
        (err: Error) =>
          err instanceof EngineError &&
          err.message.includes(join(dir, `ggml-${how}.bin`)) &&
          /cut short, damaged or of a shape/.test(err.message),
      );
    });
  }

  it('a file that is not a model fails before whisper.cpp reads it', async () => {
    writeFileSync(join(dir, 'ggml-text.bin'), 'not a model');
    await assert.rejects(createEngine(options('text')), /ggml-text\.bin: it is not a ggml model file/);
  });

  it('a model whose decoding throws inside whisper.cpp (no " " token) fails the call with the reason, not a hang', async () => {
    // (binding 1.1.3 of @fugood never settled on this one)
    damagedModel(good, join(dir, 'ggml-nospace.bin'), 'no-space-token');
    const engine = await createEngine(options('nospace'));
    await assert.rejects(
      engine.recognize(speech(2)),
      (err: Error) => err instanceof EngineError && /^whisper\.cpp failed on 2\.0 s of audio: /.test(err.message),
    );
    await engine.close();
  });

  it('a call over its budget fails with a reason, and the engine refuses later calls instead of queueing behind it', async () => {
    // random weights: whisper.cpp goes through its temperature fallback, slowly
    makeWhisperModel(join(dir, 'ggml-slow.bin'), { mode: 'random' });
    const engine = await WhisperEngine.load(options('slow'), () => 500);
    await assert.rejects(
      engine.recognize(speech(60)),
      (err: Error) =>
        err instanceof EngineError && /did not finish 60\.0 s of audio within 1 s .*ggml-slow\.bin/.test(err.message),
    );
    await assert.rejects(engine.recognize(speech(1)), /did not finish/);
  });
});

describe('a transcription job with whisper.cpp, as the plugin sends it by default', () => {
  const models = join(dir, 'models');
  const stack = new ServiceStack({ icePorts: '47700-47760', stopGraceSec: 30, standIn: {} });
  before(async () => {
    mkdirSync(models);
    // the plugin's defaults: model_size base for the transcript, tiny for captions
    makeWhisperModel(join(models, 'ggml-base.bin'), { end: 3, text: ' hello world' });
    makeWhisperModel(join(models, 'ggml-tiny.bin'), { end: 2, text: ' hello world' });
    process.env.MODELS_DIR = models; // the worker passes its environment's job settings on
    await stack.start();
  });
  after(async () => {
    delete process.env.MODELS_DIR;
    await stack.stop();
  });

  it('joins, captions live, and posts a transcript of the speaker', async () => {
    const callId = ids();
    const transcriptionId = ids();
    stack.mm.addJob(transcriptionId, callId); // the plugin's transcription job, as recording/start makes it
    const created = await stack.request('POST', '/jobs', {
      type: 'transcribing',
      max_duration_sec: 600,
      runner: 'mattermost/calls-transcriber:v0.7.2',
      input_data: {
        site_url: stack.mm.url,
        call_id: callId,
        post_id: ids(),
        auth_token: stack.authToken,
        transcription_id: transcriptionId,
        transcribe_api: 'whisper.cpp',
        transcribe_api_options: 'null',
        model_size: 'base',
        output_format: 'vtt',
        num_threads: 2,
        live_captions_on: true,
        live_captions_model_size: 'tiny',
        live_captions_num_transcribers: 1,
        live_captions_language: 'en',
        live_captions_num_threads_per_transcriber: 2,
        webvtt_omit_speaker: false,
        text_compact_silence_threshold_ms: 2000,
        text_compact_max_segment_duration_ms: 10000,
      },
    });
    assert.equal(created.status, 200, created.text);
    await waitFor(
      'started reported',
      () => stack.mm.statuses.some((s) => s.jobId === transcriptionId && s.body.Status === 'started'),
      30_000,
    );

    // the call is on the Mattermost server the job was sent to: the stand-in
    const join_ = async (user: string, name: string) => {
      const p = new HeadlessParticipant({
        siteUrl: stack.mm.url,
        callId,
        token: stack.mm.userToken(callId, user, name),
        subscribe: 'none',
      });
      return { p, me: await p.join() };
    };
    const listener = await join_('listener', 'Listener');
    const captions: { sessionId: string; text: string }[] = [];
    listener.p.on('caption', (c) => captions.push(c));
    const alice = await join_('alice', 'Alice Liddell');
    const mic = (await alice.p.publish('mic')).mic;
    const wav = writeWav(join(dir, 'alice.wav'), speechTrack(librivox().slice(0, 2), 1, 2));
    const source = await opusSource((rtp) => mic.writeRtp(rtp), 14, wav);
    await once(source, 'exit');
    await waitFor('a caption', () => captions.length > 0, 20_000);
    alice.p.leave();
    listener.p.leave();

    const { job, log } = await stack.finished(created.json.id, 120_000);
    assert.equal(job.status, 'succeeded', `${job.error}\n${log}`);
    assert.ok(
      captions.every((c) => c.sessionId === alice.me.sessionId && c.text === 'hello world'),
      JSON.stringify(captions),
    );
    assert.equal(stack.mm.transcriptions.length, 1);
    const [vttId] = stack.mm.transcriptions[0]!.body.Transcriptions as unknown as [{ FileIDs: string[] }];
    const vtt = stack.mm.file(vttId!.FileIDs[0]!)!.toString();
    const cues = vtt.split('\n').filter((l) => l.startsWith('<v '));
    assert.ok(cues.length >= 2 && cues.every((c) => c === '<v Alice Liddell>hello world'), vtt);
  });
});
