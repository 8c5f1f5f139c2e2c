// Errors as values with an HTTP status, answered in upstream's envelope
// `{"error": "<message>", "code": "<status>"}`, and request-validation failures turned into one
// sentence that names the field.
import type { ErrorObject } from 'ajv';
import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { idPattern, reservedInputKeys } from '../jobs/schema.js';

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export const envelope = (status: number, message: string) => ({ error: message, code: String(status) });

export function sendError(reply: FastifyReply, status: number, message: string): FastifyReply {
  if (status === 401) reply.header('www-authenticate', 'Basic realm="calls-offloader"');
  return reply.code(status).send(envelope(status, message));
}

const article = (type: string) => (type === 'integer' || type === 'object' || type === 'array' ? `an ${type}` : `a ${type}`);

/** One sentence for the first validation error. `part` is body, querystring or params. */
export function describeValidation(errors: ErrorObject[], part: string, body: unknown): string {
  // if/then and anyOf wrap the error that says what is wrong; report that one.
  const e = errors.find((x) => x.keyword !== 'if' && x.keyword !== 'anyOf' && x.keyword !== 'allOf') ?? errors[0]!;
  const base = e.instancePath.slice(1).split('/').filter(Boolean).join('.');
  const where = part === 'body' ? base : [part === 'querystring' ? 'query' : part, base].filter(Boolean).join('.');
  const at = (child: string) => (where ? `${where}.${child}` : child);
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${at(String(p.missingProperty))} is required`;
    case 'additionalProperties': {
      const key = String(p.additionalProperty);
      if (where === 'input_data' && (reservedInputKeys as readonly string[]).includes(key)) {
        return `input_data.${key} is reserved: the service sets ${key.toUpperCase()} for every job`;
      }
      const type = (body as { type?: unknown })?.type;
      return where === 'input_data' && typeof type === 'string'
        ? `input_data.${key} is not an input of ${type} jobs`
        : `${at(key)} is not a known field`;
    }
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

export function installErrorHandlers(app: FastifyInstance, bodyLimit: number): void {
  app.setErrorHandler((err: FastifyError & { validation?: ErrorObject[] }, request, reply) => {
    let status = 500;
    let message = 'internal error';
    if (err instanceof ApiError) {
      status = err.status;
      message = err.message;
    } else if (err.validation) {
      status = 400;
      message = describeValidation(err.validation, err.validationContext ?? 'body', request.body);
    } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      // Upstream answers 400 (its MaxBytesReader makes the JSON decode fail); so do we.
      status = 400;
      message = `request body is larger than ${bodyLimit} bytes`;
    } else if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
      status = 400;
      message = `request body is not valid JSON: ${err.message}`;
    } else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      status = err.statusCode;
      message = err.message;
    }
    if (status >= 500) request.log.error({ err }, 'request failed');
    return sendError(reply, status, message);
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(envelope(404, `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}
