// The job types and their inputs: one schema that the API validates requests with, that
// openapi.yaml is generated from, and that the job programs read their environment through.
import { Type, type Static, type TSchema } from '@sinclair/typebox';

export const jobTypes = ['recording', 'transcribing', 'captioning'] as const;
export type JobType = (typeof jobTypes)[number];
export const isJobType = (name: string): name is JobType => (jobTypes as readonly string[]).includes(name);

export const jobStatuses = ['queued', 'starting', 'running', 'stopping', 'succeeded', 'failed', 'canceled'] as const;
export type JobStatus = (typeof jobStatuses)[number];
export const finalStatuses: readonly JobStatus[] = ['succeeded', 'failed', 'canceled'];
export const activeStatuses: readonly JobStatus[] = ['starting', 'running', 'stopping'];

/** Enum of strings, spelled as JSON Schema `enum` so that a bad value gets one clear error. */
export const StringEnum = <const T extends readonly string[]>(values: T, description?: string) =>
  Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...(description ? { description } : {}) });

export const idPattern = '^[a-z0-9]{26}$';
export const Id = (description: string) => Type.String({ pattern: idPattern, description });

/** Upstream requires an http(s) URL without a path; a trailing slash is trimmed by the jobs. */
const SiteUrl = Type.String({
  pattern: '^https?://[^/?#\\s\\u0000-\\u001f\\u007f]+/?$',
  maxLength: 2048,
  description:
    'Mattermost site URL (scheme and host, no path). Without it the artifact goes to the local artifacts directory.',
});
const Bool = (description: string) => Type.Boolean({ description });
const Int = (minimum: number, maximum: number, description: string, more: { multipleOf?: number } = {}) =>
  Type.Integer({ minimum, maximum, description, ...more });

export const modelSizes = ['tiny', 'base', 'small', 'medium', 'large'] as const;
/** What the plugin may ask for (azure too: accepted, then the job says this build has no Azure engine). */
export const transcribeApis = ['whisper.cpp', 'pocketsphinx', 'azure'] as const;

const callInputs = {
  site_url: Type.Optional(SiteUrl),
  call_id: Id('The call (channel) to join.'),
  post_id: Type.Optional(Id('The call post whose thread receives the artifact.')),
  auth_token: Type.Optional(Id('Bot token of the Calls plugin, sent as `Authorization: Bearer`.')),
  tls_ca_cert_file: Type.Optional(
    Type.String({
      pattern: '^/[^\\u0000-\\u001f]*$',
      maxLength: 4096,
      description:
        'PEM file of a CA the job trusts for HTTPS to site_url (an admin override, `MM_CALLS_*_TLS_CA_CERT_FILE`), on the host or image that runs the job.',
    }),
  ),
};

/**
 * Keys the plugin adds from admins' `MM_CALLS_RECORDER_*` / `MM_CALLS_TRANSCRIBER_*` variables
 * (values always strings) beyond the inputs above: accepted and stored, named once in the job log
 * as ignored, and never passed to the job program's environment.
 */
const extraInputs = {
  additionalProperties: Type.Union([Type.String({ maxLength: 4096 }), Type.Number(), Type.Boolean()]),
  propertyNames: { pattern: '^[a-z][a-z0-9_]{0,63}$' },
  maxProperties: 64,
};

const liveCaptionInputs = {
  live_captions_model_size: Type.Optional(StringEnum(modelSizes, 'Whisper model for live captions (default tiny).')),
  live_captions_num_transcribers: Type.Optional(Int(1, 64, 'Parallel caption recognisers (default 1).')),
  live_captions_num_threads_per_transcriber: Type.Optional(Int(1, 64, 'Threads per caption recogniser (default 2).')),
  live_captions_language: Type.Optional(
    Type.String({ pattern: '^[a-z]{2}$', description: 'Two-letter language code (default en).' }),
  ),
};

/** With a site URL the artifact is posted to Mattermost, which needs these too. */
const deliveryNeeds = (...keys: string[]) => ({
  if: { required: ['site_url'] },
  then: { required: ['post_id', 'auth_token', ...keys] },
});

export const RecordingInput = Type.Object(
  {
    ...callInputs,
    recording_id: Type.Optional(Id('The recording job id the plugin tracks.')),
    // even: the compose's 4:2:0 pictures take only even sizes (an odd one failed the job at its first part)
    width: Type.Optional(Int(1280, 3840, 'Video width, even (default 1920).', { multipleOf: 2 })),
    height: Type.Optional(Int(720, 2160, 'Video height, even (default 1080).', { multipleOf: 2 })),
    video_rate: Type.Optional(Int(500, 10000, 'Video bitrate in kbit/s (default 1500).')),
    audio_rate: Type.Optional(Int(32, 320, 'Audio bitrate in kbit/s (default 64).')),
    frame_rate: Type.Optional(Int(10, 60, 'Frames per second (default 30).')),
    video_preset: Type.Optional(
      StringEnum(['medium', 'fast', 'faster', 'veryfast', 'superfast', 'ultrafast'], 'x264 preset (default fast).'),
    ),
    output_format: Type.Optional(StringEnum(['mp4'], 'Container (mp4).')),
  },
  { ...extraInputs, ...deliveryNeeds('recording_id') },
);

export const TranscribingInput = Type.Object(
  {
    ...callInputs,
    call_id: Type.Optional(Id('The call to join; not needed with media_url.')),
    transcription_id: Type.Optional(Id('The transcription job id the plugin tracks.')),
    media_url: Type.Optional(
      Type.String({
        pattern: '^(https?|file)://[^\\s\\u0000-\\u001f\\u007f]+$',
        maxLength: 4096,
        description: 'Transcribe this finished recording (http(s):// or file://) instead of joining a live call.',
      }),
    ),
    transcribe_api: Type.Optional(StringEnum(transcribeApis, 'Speech engine (default whisper.cpp).')),
    transcribe_api_options: Type.Optional(
      Type.String({
        maxLength: 4096,
        description:
          'Options of the speech engine as a JSON string (`"null"` when unused; Azure\'s key and region). A secret: masked in answers, never stored, logged or passed to the job.',
      }),
    ),
    model_size: Type.Optional(StringEnum(modelSizes, 'Whisper model (default base).')),
    num_threads: Type.Optional(Int(1, 64, 'Recognition threads.')),
    output_format: Type.Optional(StringEnum(['vtt'], 'Transcript format (vtt, plus a text file).')),
    webvtt_omit_speaker: Type.Optional(Bool('Leave speaker names out of the WebVTT cues.')),
    text_compact_silence_threshold_ms: Type.Optional(
      Int(1, 3_600_000, "Merge a speaker's segments across pauses shorter than this (default 2000)."),
    ),
    text_compact_max_segment_duration_ms: Type.Optional(
      Int(1, 3_600_000, 'Longest merged text block (default 10000).'),
    ),
    live_captions_on: Type.Optional(Bool('Also send live captions into the call.')),
    ...liveCaptionInputs,
  },
  {
    ...extraInputs,
    allOf: [
      // a transcript is posted to a call's thread, even one made from media_url
      deliveryNeeds('transcription_id', 'call_id'),
      { anyOf: [{ required: ['call_id'] }, { required: ['media_url'] }] },
      // captions go into a live call
      {
        if: { properties: { live_captions_on: { const: true } }, required: ['live_captions_on'] },
        then: { required: ['call_id'] },
      },
    ],
  },
);

export const CaptioningInput = Type.Object(
  {
    ...callInputs,
    transcribe_api: Type.Optional(StringEnum(transcribeApis, 'Speech engine (default whisper.cpp).')),
    ...liveCaptionInputs,
  },
  extraInputs,
);

export const inputSchemas = {
  recording: RecordingInput,
  transcribing: TranscribingInput,
  captioning: CaptioningInput,
} satisfies Record<JobType, TSchema>;

export type RecordingInput = Static<typeof RecordingInput>;
export type TranscribingInput = Static<typeof TranscribingInput>;
export type CaptioningInput = Static<typeof CaptioningInput>;
export type InputData = Record<string, string | number | boolean>;

/** A live job must start while the call is on; a job on a finished file may wait its turn. */
export function isLive(type: JobType, input: InputData): boolean {
  return !(type === 'transcribing' && typeof input.media_url === 'string');
}

export const JobConfig = (maxDurationSec: number) =>
  Type.Object(
    {
      type: StringEnum(jobTypes, 'Job type.'),
      max_duration_sec: Type.Integer({
        minimum: 1,
        maximum: maxDurationSec,
        description: 'The job is stopped gracefully after this long.',
      }),
      runner: Type.String({
        minLength: 1,
        maxLength: 512,
        description: 'Job image, e.g. mattermost/calls-recorder:v0.8.5.',
      }),
      // every type needs inputs (a call or a file): upstream's is optional, but a job without them
      // cannot run, and none of its type's inputs would be checked
      input_data: Type.Object(
        {},
        {
          additionalProperties: true,
          description: 'Inputs of the job type; they reach the job as upper-cased environment variables.',
        },
      ),
    },
    {
      additionalProperties: false,
      allOf: jobTypes.map((t) => ({
        if: { properties: { type: { const: t } }, required: ['type'] },
        then: { properties: { input_data: inputSchemas[t] } },
      })),
    },
  );
export type JobConfig = Static<ReturnType<typeof JobConfig>>;

export const Job = Type.Object({
  id: Id('Job id.'),
  type: StringEnum(jobTypes),
  max_duration_sec: Type.Integer(),
  runner: Type.String(),
  input_data: Type.Optional(
    Type.Record(Type.String(), Type.Union([Type.String(), Type.Number(), Type.Boolean()]), {
      description: 'As sent, with auth_token masked.',
    }),
  ),
  status: StringEnum(jobStatuses),
  created_at: Type.Integer({ description: 'When the job was accepted (ms since epoch).' }),
  start_at: Type.Integer({
    description: 'When the job program started; until then, when the job was accepted (upstream sets it at creation).',
  }),
  stop_at: Type.Optional(Type.Integer({ description: 'When the job ended; absent while it runs.' })),
  exit_code: Type.Optional(Type.Integer({ description: 'Exit code of the job program.' })),
  error: Type.Optional(Type.String({ description: 'Why the job failed, in words an admin can act on.' })),
  output_data: Type.Optional(
    Type.Record(Type.String(), Type.Unknown(), { description: 'Artifacts the job produced.' }),
  ),
});
export type Job = Static<typeof Job>;
