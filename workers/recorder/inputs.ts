// The recorder's inputs, with upstream calls-recorder's defaults.
import { RecordingInput } from '../../src/jobs/schema.js';
import { readInputs } from '../shared/inputs.js';

export type RecorderInputs = Required<
  Pick<
    RecordingInput,
    'call_id' | 'width' | 'height' | 'video_rate' | 'audio_rate' | 'frame_rate' | 'video_preset' | 'output_format'
  >
> &
  Pick<RecordingInput, 'site_url' | 'post_id' | 'recording_id' | 'auth_token' | 'tls_ca_cert_file'>;

export const recorderDefaults = {
  width: 1920,
  height: 1080,
  video_rate: 1500,
  audio_rate: 64,
  frame_rate: 30,
  video_preset: 'fast',
  output_format: 'mp4',
} as const;

export function recorderInputs(env: NodeJS.ProcessEnv): RecorderInputs {
  return readInputs<RecorderInputs>(RecordingInput, env, recorderDefaults);
}
