// A job program's inputs: the upper-cased environment variables the runner set from input_data,
// read back through the same schema the API validated them with, so a job started by hand (or by
// an older service) gets the same checks and a message naming the variable.
import { Ajv } from 'ajv';
import type { TObject } from '@sinclair/typebox';
import { describeValidation } from '../../src/jobs/validation.js';

export class InputError extends Error {}

export function readInputs<T>(schema: TObject, env: NodeJS.ProcessEnv, defaults: Partial<T>): T {
  const input: Record<string, unknown> = {};
  for (const [key, prop] of Object.entries(schema.properties)) {
    const raw = env[key.toUpperCase()];
    if (raw === undefined || raw === '') continue;
    const type = (prop as { type?: string }).type;
    if (type === 'integer') {
      if (!/^-?\d+$/.test(raw.trim()))
        throw new InputError(`${key.toUpperCase()} must be a whole number, got ${JSON.stringify(raw)}`);
      input[key] = Number(raw);
    } else if (type === 'boolean') {
      if (!/^(true|false)$/i.test(raw.trim()))
        throw new InputError(`${key.toUpperCase()} must be true or false, got ${JSON.stringify(raw)}`);
      input[key] = raw.trim().toLowerCase() === 'true';
    } else {
      input[key] = key === 'site_url' ? raw.replace(/\/$/, '') : raw;
    }
  }
  // Our own schema, which the API compiles with Ajv's checks of it: here, at every job's start,
  // compiling JSON Schema's meta-schema to check it again cost 40 of 75 ms of CPU.
  const validate = new Ajv({ strict: false, allErrors: false, meta: false, validateSchema: false }).compile(schema);
  if (!validate(input)) {
    const message = describeValidation(validate.errors!, 'input_data', {});
    // "input_data.width must be ..." → "WIDTH must be ..."
    throw new InputError(message.replace(/^input_data\.([a-z_]+)/, (_, k: string) => k.toUpperCase()));
  }
  return { ...defaults, ...input } as T;
}
