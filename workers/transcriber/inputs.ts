// The transcriber's and captioner's inputs, with upstream calls-transcriber's defaults.
import { CaptioningInput, TranscribingInput } from '../../src/jobs/schema.js';
import { availableParallelism } from 'node:os';
import { InputError, readInputs } from '../shared/inputs.js';
import type { TranscribeApi } from './speech/engine.js';

export interface CaptionSettings {
  transcribe_api: TranscribeApi;
  live_captions_model_size: string;
  live_captions_num_transcribers: number;
  live_captions_num_threads_per_transcriber: number;
  live_captions_language: string;
}

export type TranscriberInputs = TranscribingInput &
  CaptionSettings &
  Required<
    Pick<
      TranscribingInput,
      | 'model_size'
      | 'num_threads'
      | 'output_format'
      | 'webvtt_omit_speaker'
      | 'live_captions_on'
      | 'text_compact_silence_threshold_ms'
      | 'text_compact_max_segment_duration_ms'
    >
  >;

const captionDefaults = {
  transcribe_api: 'whisper.cpp',
  live_captions_model_size: 'tiny',
  live_captions_num_transcribers: 1,
  live_captions_num_threads_per_transcriber: 2,
  live_captions_language: 'en',
} as const;

export const transcriberDefaults = {
  ...captionDefaults,
  model_size: 'base',
  num_threads: 2,
  output_format: 'vtt',
  webvtt_omit_speaker: false,
  live_captions_on: false,
  text_compact_silence_threshold_ms: 2000,
  text_compact_max_segment_duration_ms: 10_000,
} as const;

/** JOB_TYPE=captioning reads the captioning inputs (live captions only, no transcript). */
export function transcriberInputs(env: NodeJS.ProcessEnv): TranscriberInputs & { captionsOnly: boolean } {
  const inputs =
    env.JOB_TYPE === 'captioning'
      ? {
          ...transcriberDefaults,
          ...readInputs<CaptioningInput & CaptionSettings>(CaptioningInput, env, captionDefaults),
          live_captions_on: true,
          captionsOnly: true,
        }
      : { ...readInputs<TranscriberInputs>(TranscribingInput, env, transcriberDefaults), captionsOnly: false };
  // Upstream's rules: the transcript's threads, and the captions' recognisers and their threads
  // (with pocketsphinx, one process each), fit the host's CPUs. Each field alone allows 64, and
  // 64 × 64 started 4,096 processes.
  const { live_captions_num_transcribers: n, live_captions_num_threads_per_transcriber: threads } = inputs;
  const cpus = availableParallelism();
  // the default (2) fits a host of one CPU; a number asked for is refused past the host's
  if (env.NUM_THREADS === undefined) inputs.num_threads = Math.min(inputs.num_threads, cpus);
  if (!inputs.captionsOnly && inputs.num_threads > cpus)
    throw new InputError(`NUM_THREADS (${inputs.num_threads}) must not exceed the ${cpus} CPUs of this host`);
  if (inputs.live_captions_on && n * threads > cpus)
    throw new InputError(
      `LIVE_CAPTIONS_NUM_TRANSCRIBERS × LIVE_CAPTIONS_NUM_THREADS_PER_TRANSCRIBER (${n} × ${threads}) must not exceed the ${cpus} CPUs of this host`,
    );
  return inputs;
}
