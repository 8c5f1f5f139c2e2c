// The transcriber job program (job types `transcribing` and `captioning`; run as
// dist/workers/transcriber/main.js, bundled by scripts/bundle-jobs.mjs). Inputs come as
// environment variables (upstream's names plus the worker's JOB_ID, JOB_TYPE, JOB_DIR, SFU_URL,
// SFU_TOKEN, ARTIFACTS_DIR; MODELS_DIR for Whisper models).
// - Live call: join audio-only, keep each speaker apart, caption live if asked, recognise each
//   speaker as the call goes on (in the transcript's process, `--transcript`, at a lower priority
//   than the captions), and after the call (stop, SIGTERM, max duration, everyone left) recognise
//   the last seconds and deliver a WebVTT and a text file through the bot API or to the artifacts
//   directory.
// - MEDIA_URL: transcribe a finished recording (one mixed voice) instead.
// - `--recover`: the previous run died; transcribe what it captured and had not recognised, and keep it locally
//   (or keep the transcript it had finished and was delivering).
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { realpath } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mediaRefusal, mediaRefused, parseMediaSources } from '../../src/jobs/media-access.js';
import {
  delivering,
  diedDelivering,
  download,
  keepArtifact,
  reportedOrLate,
  runMain,
  stopSignal,
  stopped,
  workerSetting,
} from '../shared/job.js';
import { type CaptionStats, EXIT, OUTPUT_FILE, RECOVER_ARG } from '../../src/jobs/contract.js';
import { callOptions, callSite, describeSite } from '../shared/call.js';
import { ffmpeg } from '../shared/ffmpeg.js';
import { fileSource } from '../shared/file-source.js';
import { type BotClient, botClientFor } from '../shared/mattermost.js';
import { LiveCaptions } from './captions.js';
import { toText, toWebVtt, type Segment } from './formats.js';
import { transcriberInputs, type TranscriberInputs } from './inputs.js';
import { Listener, onRecordingClock } from './listen.js';
import { type EngineOptions, enginePool, EngineError, poolEngine, SAMPLE_RATE } from './speech/engine.js';
import { modelsDir } from './speech/whisper.js';
import { Silero } from './speech/silero.js';
import { appendRecognised, CallTranscript, recognisedSegments } from './call-transcript.js';
import { type Recognisers, serveTranscript, TRANSCRIPT_ARG, TranscriptProcess } from './transcript-process.js';
import { pcmChunks, transcribeStream } from './transcribe.js';

const log = (message: string): void => {
  process.stdout.write(`[transcriber ${new Date().toISOString()}] ${message}\n`);
};

type Inputs = TranscriberInputs & { captionsOnly: boolean };

/**
 * The job's engines' settings: `threads` threads each, the model of `modelSize`, the language
 * given or (undefined) found by Whisper. Upstream's transcript sets none: live_captions_language is
 * the captions' alone, and a call in another language was recognised as if in it.
 */
const engineOptions = (inputs: Inputs, modelSize: string, threads: number, language?: string): EngineOptions => ({
  api: inputs.transcribe_api,
  modelSize,
  modelsDir: modelsDir(),
  threads,
  language,
});

/** The language the transcript is posted as. */
const transcriptLanguage = (inputs: Inputs) =>
  inputs.transcribe_api === 'pocketsphinx' ? 'en' : inputs.live_captions_language;

/** A recording is read from at most this many bytes (MEDIA_MAX_BYTES in the job's settings). */
const mediaMaxBytes = () => Number(process.env.MEDIA_MAX_BYTES ?? 8 * 1024 ** 3);
/**
 * A recording is transcribed up to this long: twice upstream's longest recording (180 min). A few
 * MB of compressed silence can last days, and each second is 32 KB of PCM on the job's disk.
 */
const MEDIA_MAX_SEC = 6 * 3600;

/**
 * A finished recording as 16 kHz mono PCM in the job directory, read only from where the admin
 * allows (MEDIA_URL_ALLOW, set by the worker, and the job's site), redirects checked again.
 */
async function fetchMedia(url: string, dir: string, siteUrl: string | undefined): Promise<string> {
  const allowed = parseMediaSources((process.env.MEDIA_URL_ALLOW ?? '').split(',').filter(Boolean));
  const refuse = (at: string) => {
    const reason = mediaRefusal(at, allowed, siteUrl);
    return reason ? mediaRefused(reason) : null;
  };
  let input: string;
  if (url.startsWith('file://')) {
    const refusal = refuse(url);
    if (refusal) throw new Error(refusal);
    // a link inside an allowed directory must not lead out of it
    input = await realpath(fileURLToPath(url)).catch(() => {
      throw new Error('media_url could not be read');
    });
    if (refuse(pathToFileURL(input).href)) throw new Error(mediaRefused('it links out of its directory'));
  } else {
    input = join(dir, 'media');
    await download(url, input, { refuse, maxBytes: mediaMaxBytes() }).catch((err: Error) => {
      throw new Error(
        err.message.startsWith('media_url') ? err.message : `media_url could not be fetched: ${err.message}`,
      );
    });
  }
  const pcm = join(dir, 'media.pcm');
  const max = ['-t', String(MEDIA_MAX_SEC)];
  await ffmpeg([
    '-loglevel',
    'error',
    '-y',
    '-i',
    input,
    ...max,
    '-vn',
    '-ac',
    '1',
    '-ar',
    '16000',
    '-f',
    's16le',
    pcm,
  ]);
  if (statSync(pcm).size >= MEDIA_MAX_SEC * SAMPLE_RATE * 2)
    log(`media_url lasts more than ${MEDIA_MAX_SEC / 3600} h: its first ${MEDIA_MAX_SEC / 3600} h are transcribed`);
  return pcm;
}

class Delivery {
  constructor(
    private readonly inputs: Inputs,
    private readonly dir: string,
    private readonly bot?: BotClient,
  ) {}

  private get jobId(): string {
    return this.inputs.transcription_id ?? process.env.JOB_ID ?? '';
  }

  /**
   * `started` is not waited for by the job (the plugin's answer may take minutes of retries, and
   * meanwhile the job must hear a stop); what is reported or posted after it waits for it.
   */
  private started: Promise<unknown> = Promise.resolve();

  /** Tells the plugin; false when that failed (and was logged). */
  async report(status: 'started' | 'failed', error?: string): Promise<boolean> {
    if (!this.bot || this.inputs.captionsOnly || !this.inputs.call_id) return true;
    const send = () =>
      this.bot!.reportStatus(this.inputs.call_id!, this.jobId, 'transcribing', status, error).then(
        () => true,
        (e: Error) => {
          log(`could not report ${status}: ${e.message}`);
          return false;
        },
      );
    if (status === 'started') {
      this.started = send();
      return true;
    }
    await reportedOrLate(this.started);
    return send();
  }

  private get files() {
    return { vtt: join(this.dir, 'transcript.vtt'), txt: join(this.dir, 'transcript.txt') };
  }

  /** Copies the two files into the artifacts directory; returns their paths there. */
  private async keep(partial: boolean): Promise<string[]> {
    const { files } = this;
    const name = `${partial ? 'partial-' : ''}transcript-${this.inputs.call_id ?? 'media'}-${process.env.JOB_ID ?? this.jobId}`;
    return [
      await keepArtifact(fileSource(files.vtt), `${name}.vtt`),
      await keepArtifact(fileSource(files.txt), `${name}.txt`),
    ];
  }

  /**
   * A run killed or crashed while delivering (Mattermost down past JOBS_DELIVERYTIMEOUTSEC, say)
   * had finished the transcript: its files are kept as they are, not recognised again as a partial
   * one. Returns output_data, or undefined when the run did not get that far.
   */
  async keepFinished(): Promise<{ files: string[] } | undefined> {
    if (!diedDelivering(this.dir, this.files.vtt, this.files.txt)) return undefined;
    return { files: await this.keep(false) };
  }

  /** Writes the two files; posts them, or keeps them in the artifacts directory. Returns output_data. */
  async deliver(recognised: Segment[], extra: object, keepOnly = false): Promise<object> {
    const { inputs, files } = this;
    const segments = onRecordingClock(this.dir, recognised);
    writeFileSync(files.vtt, toWebVtt(segments, inputs.webvtt_omit_speaker));
    writeFileSync(
      files.txt,
      toText(segments, {
        silenceThresholdMs: inputs.text_compact_silence_threshold_ms,
        maxSegmentDurationMs: inputs.text_compact_max_segment_duration_ms,
      }),
    );
    const summary = { segments: segments.length, speakers: [...new Set(segments.map((s) => s.speaker))], ...extra };
    if (!this.bot || keepOnly) return { files: await this.keep(keepOnly), ...summary };
    const callId = inputs.call_id!;
    delivering(files.vtt); // first: the delivery's own time covers waiting for the start's report
    await this.started;
    try {
      const base = await this.bot.filename(callId);
      const vtt = await this.bot.upload(callId, fileSource(files.vtt), `${base}.vtt`);
      const txt = await this.bot.upload(callId, fileSource(files.txt), `${base}.txt`);
      await this.bot.postTranscription(callId, {
        JobID: this.jobId,
        PostID: inputs.post_id!,
        // Upstream posts the language Whisper found; this binding does not say it: the site's own
        // setting is the best guess (pocketsphinx: English, its only model)
        Transcriptions: [{ Language: transcriptLanguage(inputs), FileIDs: [vtt.id, txt.id] }],
      });
      log(`posted ${base}.vtt and ${base}.txt (${segments.length} segments) to the call thread`);
      return { file_ids: [vtt.id, txt.id], filename: base, ...summary };
    } catch (err) {
      // Kept where the job's files stay past its directory's retention, and named in output_data.
      const kept = await this.keep(false).catch((e: Error) => log(`the transcript could not be kept: ${e.message}`));
      if (kept) writeFileSync(join(this.dir, OUTPUT_FILE), JSON.stringify({ files: kept, ...summary }));
      throw new Undelivered(
        `could not deliver the transcript (kept at ${(kept ?? [files.vtt, files.txt]).join(' and ')}): ${(err as Error).message}`,
      );
    }
  }
}

/** A transcript that could not be delivered, kept: its message says where. */
class Undelivered extends Error {}

/**
 * The transcript's engines and VAD; an EngineError saying why when they cannot load. Silero cuts
 * the utterances unless VAD=energy; without onnxruntime, energy does.
 */
async function loadRecognisers(inputs: Inputs): Promise<Recognisers> {
  const engines = await enginePool(engineOptions(inputs, inputs.model_size, inputs.num_threads), 1).catch(
    (err: Error) => {
      throw err instanceof EngineError ? err : new EngineError(`the speech engine did not start: ${err.message}`);
    },
  );
  if (process.env.VAD === 'energy') return { engines };
  const silero = await Silero.load().catch((err: Error) => {
    log(`Silero VAD unavailable (${err.message.split('\n')[0]}); cutting utterances by energy`);
    return undefined;
  });
  return { engines, silero };
}

/**
 * What was recognised kept as a partial transcript in the artifacts directory, named in
 * output_data; what a failure's reason adds to say where (nothing recognised, or it could not be
 * kept: nothing).
 */
async function keepPartial(delivery: Delivery, dir: string, segments: Segment[]): Promise<string> {
  if (segments.length === 0) return '';
  try {
    const output = (await delivery.deliver(segments, { partial: true }, true)) as { files: string[] };
    writeFileSync(join(dir, OUTPUT_FILE), JSON.stringify(output));
    return `; what was recognised before it is kept at ${output.files.join(' and ')}`;
  } catch (err) {
    log(`what was recognised could not be kept: ${(err as Error).message}`);
    return '';
  }
}

/** Recognises the rest of the call and says how much was left. */
async function finishTranscript(
  transcript: Pick<CallTranscript, 'finish'>,
  delivery: Delivery,
  dir: string,
): Promise<Segment[]> {
  const started = Date.now();
  const { segments, leftSec, earlySec } = await transcript.finish().catch(async (err: Error) => {
    // engines that fail to load or recognise now are not a start's failure: the job says where
    // the audio it captured is kept, and keeps what was recognised before as a transcript
    throw new Error(`${err.message}${await keepPartial(delivery, dir, recognisedSegments(dir))}`, { cause: err });
  });
  log(
    `recognised ${leftSec.toFixed(1)} s of speech in ${((Date.now() - started) / 1000).toFixed(1)} s after the stop (${earlySec.toFixed(1)} s during the call); ${segments.length} segments`,
  );
  return segments;
}

/** Recognised a piece at a time, so that a stop waits for one piece only and keeps the rest. */
const MEDIA_PIECE_SEC = 30;

/**
 * The media's audio a piece at a time until a stop: the piece in hand is recognised, the rest is
 * not read. Says how far it got at most once a minute (six hours of audio take hours).
 */
function* mediaAudio(pcm: string, reading: { stop?: string; whole?: boolean }): Generator<Int16Array> {
  const clock = (sec: number) => `${Math.floor(sec / 60)} min ${Math.floor(sec % 60)} s`;
  const totalSec = statSync(pcm).size / 2 / SAMPLE_RATE;
  let doneSec = 0;
  let saidAt = 0;
  for (const piece of pcmChunks(pcm, MEDIA_PIECE_SEC)) {
    if (reading.stop !== undefined) return;
    yield piece;
    doneSec += piece.length / SAMPLE_RATE;
    if (Date.now() - saidAt < 60_000) continue;
    saidAt = Date.now();
    log(`recognised ${clock(doneSec)} of ${clock(totalSec)} of media_url`);
  }
  reading.whole = true;
}

/** A finished recording's transcript; a stop keeps what was recognised before it. */
async function transcribeMedia(
  inputs: Inputs,
  dir: string,
  delivery: Delivery,
  { engines, silero }: Recognisers,
  stop: Promise<string>,
): Promise<object> {
  log(`transcribing ${inputs.media_url}`);
  const reading: { stop?: string; whole?: boolean } = {};
  void stop.then((why) => (reading.stop = why));
  const pcm = await Promise.race([
    fetchMedia(inputs.media_url!, dir, inputs.site_url),
    stopped(stop, 'while MEDIA_URL was read'),
  ]);
  const segments = await transcribeStream(engines, mediaAudio(pcm, reading), {
    speaker: 'Speaker',
    offsetMs: 0,
    silero,
    // on disk as it is heard, where a recovery finds it: a crash kept nothing of hours recognised
    heard: (heard) =>
      appendRecognised(
        dir,
        heard.map((segment) => ({ file: basename(pcm), end: 0, segment })),
      ),
  });
  if (reading.whole) return delivery.deliver(segments, {});
  throw new Error(`${reading.stop} while MEDIA_URL was transcribed${await keepPartial(delivery, dir, segments)}`);
}

async function live(
  inputs: Inputs,
  dir: string,
  delivery: Delivery,
  transcript: TranscriptProcess | undefined,
  stop: Promise<string>,
  bot?: BotClient,
): Promise<object> {
  const site = callSite(inputs, inputs.transcription_id);
  log(`joining call ${inputs.call_id} on ${describeSite(site)}`);
  const listener = new Listener(dir, callOptions(site, inputs.call_id!, bot, log), transcript !== undefined);
  let captions: LiveCaptions | undefined;
  if (inputs.live_captions_on) {
    const engine = engineOptions(
      inputs,
      inputs.live_captions_model_size,
      inputs.live_captions_num_threads_per_transcriber,
      inputs.live_captions_language,
    );
    captions = new LiveCaptions(
      await enginePool(engine, inputs.live_captions_num_transcribers),
      listener.caption,
      {},
      log,
      () => poolEngine(engine),
    );
    listener.onSamples((sessionId, samples) => captions!.feed(sessionId, samples));
    listener.onTrackEnd((sessionId) => captions!.flush(sessionId));
  }
  await Promise.race([listener.start(), stopped(stop, 'before the call was joined')]);
  log(`listening to call ${inputs.call_id}${captions ? ' with live captions' : ''}`);
  void delivery.report('started');
  const why = await Promise.race([stop, listener.stopped, listener.ended.then(() => 'everyone left the call')]);
  const durationMs = await listener.stop();
  const captionStats: CaptionStats | undefined = await captions?.close();
  log(
    `${why}: stopped after ${(durationMs / 1000).toFixed(1)} s${captionStats ? `; captions ${JSON.stringify(captionStats)}` : ''}`,
  );
  if (!transcript) return { duration_ms: durationMs, captions: captionStats };

  const segments = await finishTranscript(transcript, delivery, dir);
  return delivery.deliver(segments, { duration_ms: durationMs, ...(captionStats ? { captions: captionStats } : {}) });
}

async function main(): Promise<void> {
  let inputs: Inputs;
  let dir: string;
  let bot: BotClient | undefined;
  try {
    inputs = transcriberInputs(process.env);
    dir = workerSetting('JOB_DIR');
    bot = botClientFor(inputs, log);
  } catch (err) {
    process.stderr.write(`invalid input: ${(err as Error).message}\n`);
    process.exit(EXIT.invalidInput);
  }
  mkdirSync(dir, { recursive: true });
  // What the job's libraries leave in the temporary directory (onnxruntime's telemetry opens a log
  // there at each load, and a killed process cannot remove it) is swept with the job.
  process.env.TMPDIR = dir;
  const delivery = new Delivery(inputs, dir, bot);
  const fail = async (reason: string): Promise<never> => {
    process.stderr.write(`${reason}\n`);
    // the reason last again if the report logged its failure: a pod's log has both streams in
    // one, and its last line is the reason
    if (!(await delivery.report('failed', reason))) process.stderr.write(`${reason}\n`);
    process.exit(EXIT.failed);
  };

  if (process.argv.includes(TRANSCRIPT_ARG)) return serveTranscript(dir, () => loadRecognisers(inputs));
  const recover = process.argv.includes(RECOVER_ARG);
  // From here SIGTERM means "stop listening and transcribe": heard while the engines load too, where
  // Node's own default killed the job, which then counted as a crash and was recovered. (A
  // recovery is stopped by it as before.)
  const stop = recover ? new Promise<string>(() => undefined) : stopSignal();
  if (recover && inputs.captionsOnly) {
    log('live captions alone keep nothing to recover');
    return;
  }
  if (recover) {
    const finished = await delivery
      .keepFinished()
      .catch((err: Error) => fail(`the finished transcript could not be kept: ${err.message}`));
    if (finished) {
      writeFileSync(join(dir, OUTPUT_FILE), JSON.stringify(finished));
      log(`the transcript was finished before the run ended, and is kept at ${finished.files.join(' and ')}`);
      await delivery.report(
        'failed',
        `the transcript could not be delivered; it is kept on the job service at ${finished.files[0]}`,
      );
      return;
    }
  }

  // The recognisers load before anything starts, so a missing model or binary fails the job at
  // once: in the transcript's own process during a call, in this one otherwise.
  let recognisers: Recognisers = { engines: [] };
  let transcript: TranscriptProcess | undefined;
  try {
    if (inputs.captionsOnly) {
      // captions load their own engines once the job joins
    } else if (recover || inputs.media_url) recognisers = await loadRecognisers(inputs);
    else transcript = await TranscriptProcess.start(dir, () => loadRecognisers(inputs), log);
  } catch (err) {
    return fail((err as Error).message);
  }
  const { engines, silero } = recognisers;

  let output: object;
  try {
    if (recover) {
      // what the run before recognised (of a call, or of media_url), and a call's voices read on
      const segments = await finishTranscript(new CallTranscript(engines, dir, silero), delivery, dir);
      if (segments.length === 0) {
        output = { partial: true, segments: 0 };
        await delivery.report('failed', 'the transcriber stopped unexpectedly before it had recognised anything');
      } else {
        output = await delivery.deliver(segments, { partial: true }, true);
        await delivery.report(
          'failed',
          `the transcriber stopped unexpectedly; what it heard was transcribed and kept on the job service at ${(output as { files: string[] }).files[0]}`,
        );
      }
    } else if (inputs.media_url) {
      output = await transcribeMedia(inputs, dir, delivery, recognisers, stop);
    } else {
      output = await live(inputs, dir, delivery, transcript, stop, bot);
    }
  } catch (err) {
    return fail(
      err instanceof EngineError || err instanceof Undelivered
        ? err.message
        : `transcription failed (what was captured is kept in ${dir}): ${(err as Error).message}`,
    );
  }
  writeFileSync(join(dir, OUTPUT_FILE), JSON.stringify(output));
  await Promise.all([...engines.map((e) => e.close()), silero?.close()]);
}

runMain('transcriber', main);
