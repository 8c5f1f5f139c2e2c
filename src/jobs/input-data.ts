// A job's input_data beyond what its schema checks: values the plugin sends as strings, the
// secret engine options, the keys admins add, and which inputs become the job's environment.
// Used by the API (before validation and before storing) and by the worker (the job's
// environment, the job log's list of ignored keys).
import type { TObject } from '@sinclair/typebox';
import { type InputData, type JobType, inputSchemas } from './schema.js';

/** What the record and the answers hold instead of a secret. */
export const MASK = '********';

const knownKeys = (type: JobType) => Object.keys(inputSchemas[type].properties);

/**
 * Admins' overrides reach input_data as strings whatever the input's type (`"width": "1920"`,
 * `"live_captions_on": "true"`): a string that reads cleanly as the input's integer or boolean
 * becomes one; anything else is left for validation to refuse, naming the field.
 */
export function coerceInput(schema: TObject, input: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...input };
  for (const [key, prop] of Object.entries(schema.properties)) {
    const raw = out[key];
    if (typeof raw !== 'string') continue;
    const type = (prop as { type?: string }).type;
    const text = raw.trim();
    if (type === 'integer' && /^-?\d{1,15}$/.test(text)) out[key] = Number(text);
    else if (type === 'boolean' && /^(true|false)$/i.test(text)) out[key] = text.toLowerCase() === 'true';
  }
  return out;
}

/** input_data as JSON, at most: every job's record keeps it for its retention. */
export const MAX_INPUT_BYTES = 16 * 1024;

/**
 * Checks what the schema cannot say; returns the 400's sentence, or null. The engine options are
 * a JSON string: an object (Azure's key and region) or `null`. The message never repeats them.
 */
export function checkInput(input: InputData): string | null {
  // each key is bounded, not their sum: 64 extra keys of 4 KB each were 270 KB kept for a month
  if (Buffer.byteLength(JSON.stringify(input)) > MAX_INPUT_BYTES)
    return `input_data is larger than ${MAX_INPUT_BYTES / 1024} KiB in all (the plugin sends about 1 KiB)`;
  const options = input.transcribe_api_options;
  if (typeof options === 'string') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(options);
    } catch {
      return 'input_data.transcribe_api_options must be a JSON string of an object or null';
    }
    if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      return 'input_data.transcribe_api_options must be a JSON string of an object or null';
    }
  }
  return null;
}

/** The input as stored and answered: the engine options' values masked (they are never needed: no engine here reads them). */
export function withoutSecrets(input: InputData): InputData {
  const options = input.transcribe_api_options;
  if (typeof options !== 'string' || options.trim() === 'null') return input;
  const keys = Object.keys(JSON.parse(options) as object);
  return { ...input, transcribe_api_options: JSON.stringify(Object.fromEntries(keys.map((k) => [k, MASK]))) };
}

/** Keys the plugin sent that this service does not use (admins' extra overrides). */
export function ignoredInputKeys(type: JobType, input: InputData): string[] {
  const known = new Set(knownKeys(type));
  return Object.keys(input).filter((k) => !known.has(k));
}

/**
 * The job program's environment from its input: upstream upper-cases every key (`site_url` →
 * `SITE_URL`); here only the job type's own inputs go, so no key can set a variable that changes
 * how the program runs (`NODE_OPTIONS`, `LD_PRELOAD`, `PATH`, the worker's own). The engine
 * options stay out: they are a secret no engine here reads.
 */
export function inputEnv(type: JobType, input: InputData): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of knownKeys(type)) {
    const value = input[key];
    if (value !== undefined && key !== 'transcribe_api_options') env[key.toUpperCase()] = String(value);
  }
  return env;
}
