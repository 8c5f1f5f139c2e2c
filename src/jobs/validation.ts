// One sentence for a schema validation error, naming the field: the API's 400s and the job
// programs' input errors read the same.
import type { ErrorObject } from 'ajv';
import { idPattern } from './schema.js';

const article = (type: string) =>
  type === 'integer' || type === 'object' || type === 'array' ? `an ${type}` : `a ${type}`;

/** One sentence for the first validation error. `part` is body, querystring or params. */
export function describeValidation(errors: ErrorObject[], part: string, body: unknown): string {
  // if/then and anyOf wrap the error that says what is wrong; report that one. A bad key name
  // comes as a pattern error on its object followed by the propertyNames error that names it.
  const e =
    errors.find((x) => x.keyword === 'propertyNames') ??
    errors.find((x) => x.keyword !== 'if' && x.keyword !== 'anyOf' && x.keyword !== 'allOf') ??
    errors[0]!;
  const base = e.instancePath.slice(1).split('/').filter(Boolean).join('.');
  const where = part === 'body' ? base : [part === 'querystring' ? 'query' : part, base].filter(Boolean).join('.');
  const at = (child: string) => (where ? `${where}.${child}` : child);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${at(String(p.missingProperty))} is required`;
    case 'additionalProperties': {
      const key = JSON.stringify(String(p.additionalProperty).slice(0, 64)).slice(1, -1); // never echo a 100 KB name
      const type = (body as { type?: unknown })?.type;
      return where === 'input_data' && typeof type === 'string'
        ? `input_data.${key} is not an input of ${type} jobs`
        : `${at(key)} is not a known field`;
    }
    case 'propertyNames':
      // the name itself may be huge or hold control characters: show a safe part of it
      return `${where} key ${JSON.stringify(String(p.propertyName).slice(0, 64))} is not valid: keys are 1 to 64 of a-z, 0-9 and _, starting with a letter`;
    case 'maxProperties':
      return `${where} must have at most ${p.limit} keys`;
    case 'type':
      return where ? `${where} must be ${article(String(p.type))}` : `request ${part} must be a JSON ${p.type}`;
    case 'enum':
      return `${where} must be one of ${(p.allowedValues as unknown[]).join(', ')}`;
    case 'pattern':
      return p.pattern === idPattern
        ? `${where} must be 26 characters of a-z and 0-9`
        : `${where} must match ${p.pattern}`;
    case 'minimum':
      return `${where} must be at least ${p.limit}`;
    case 'maximum':
      return `${where} must be at most ${p.limit}`;
    case 'multipleOf':
      return `${where} must be a multiple of ${p.multipleOf}`;
    case 'minLength':
      return `${where} must be at least ${p.limit} characters`;
    case 'maxLength':
      return `${where} must be at most ${p.limit} characters`;
    case 'minItems':
      return `${where} must have at least ${p.limit} item(s)`;
    default:
      return `${where || part} ${e.message}`;
  }
}
