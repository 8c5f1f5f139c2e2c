// One interface for every speech engine, used by the transcript and by live captions:
// 16 kHz mono PCM in, text and timed words out. Engines keep their model loaded between calls.
import type { transcribeApis } from '../../../src/jobs/schema.js';
import { PocketsphinxEngine } from './pocketsphinx.js';
import { WhisperEngine } from './whisper.js';

export const SAMPLE_RATE = 16_000;

export interface Word {
  word: string;
  /** seconds from the start of the audio given to recognize() */
  start: number;
  end: number;
}

export interface Recognition {
  text: string;
  words: Word[];
}

export interface SpeechEngine {
  readonly name: string;
  recognize(pcm: Int16Array): Promise<Recognition>;
  /**
   * Engines that decode as audio arrives: the utterance is fed while it is spoken and only its
   * last moments remain to decode when it ends (live captions). One stream at a time per engine.
   */
  begin?(): RecognitionStream;
  /** Why it can recognise nothing more (its helper exited, its model hung), once it cannot. */
  readonly failure: string | undefined;
  close(): Promise<void>;
}

export interface RecognitionStream {
  push(pcm: Int16Array): void;
  /** audio pushed but not decoded yet: how far the engine is behind the speaker */
  readonly lagMs: number;
  end(): Promise<Recognition>;
}

export type TranscribeApi = (typeof transcribeApis)[number];

export interface EngineOptions {
  api: TranscribeApi;
  /** Whisper: tiny, base, small... (the file is ggml-<size>.bin in modelsDir) */
  modelSize: string;
  modelsDir: string;
  threads: number;
  /** what is spoken (2 letters); undefined: Whisper finds out for itself, as upstream's transcript does */
  language?: string;
}

/** A setup problem (missing model or binary) that fails the job at start with this message. */
export class EngineError extends Error {}

export async function createEngine(opts: EngineOptions): Promise<SpeechEngine> {
  switch (opts.api) {
    case 'pocketsphinx':
      return PocketsphinxEngine.start(opts);
    case 'whisper.cpp':
      return WhisperEngine.load(opts);
    case 'azure':
      // The plugin offers Azure; its key never leaves the API (masked, not passed to the job).
      throw new EngineError(
        "this job service has no Azure speech engine: it transcribes with whisper.cpp (the plugin's default) or pocketsphinx; set the Calls plugin's transcriber API to whisper.cpp",
      );
  }
}

/**
 * `instances` engines of `opts.threads` threads each; pocketsphinx decodes on one thread, so for
 * it the thread budget becomes that many helpers working in parallel instead.
 */
export function enginePool(opts: EngineOptions, instances: number): Promise<SpeechEngine[]> {
  const count = opts.api === 'pocketsphinx' ? instances * opts.threads : instances;
  return Promise.all(Array.from({ length: count }, () => poolEngine(opts)));
}

/** One engine of enginePool's (to replace one that failed). */
export const poolEngine = (opts: EngineOptions): Promise<SpeechEngine> =>
  createEngine(opts.api === 'pocketsphinx' ? { ...opts, threads: 1 } : opts);
