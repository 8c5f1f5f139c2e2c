// The transcriber's and captioner's inputs, with upstream calls-transcriber's defaults.
import { CaptioningInput, TranscribingInput } from '../../src/jobs/schema.js';
import { readInputs } from '../shared/inputs.js';
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
  if (env.JOB_TYPE === 'captioning') {
    const input = readInputs<CaptioningInput & CaptionSettings>(CaptioningInput, env, captionDefaults);
    return { ...transcriberDefaults, ...input, live_captions_on: true, captionsOnly: true };
  }
  return { ...readInputs<TranscriberInputs>(TranscribingInput, env, transcriberDefaults), captionsOnly: false };
}
