// Errors as values with an HTTP status, answered in upstream's envelope
// `{"error": "<message>", "code": "<status>"}`, and request-validation failures turned into one
// sentence that names the field.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorObject } from 'ajv';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyServerOptions } from 'fastify';
import { describeValidation } from '../jobs/validation.js';
import { isRedisDown } from '../store/redis.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const envelope = (status: number, message: string) => ({ error: message, code: String(status) });

export function sendError(reply: FastifyReply, status: number, message: string): FastifyReply {
  if (status === 401) reply.header('www-authenticate', 'Basic realm="calls-offloader"');
  return reply.code(status).send(envelope(status, message));
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
    } else if (
      err instanceof SyntaxError ||
      err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
      err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY'
    ) {
      status = 400;
      message = `request body is not valid JSON: ${err.message}`;
    } else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      status = err.statusCode;
      message = err.message;
    } else if (isRedisDown(err)) {
      reply.header('retry-after', '5');
      return sendError(reply, 503, 'the job store (Redis) cannot be reached; try again in a few seconds');
    }
    if (status >= 500) request.log.error({ err }, 'request failed');
    return sendError(reply, status, message);
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send(envelope(404, `no route ${request.method} ${request.url.split('?')[0]}`)),
  );
}

/**
 * Errors raised before a route runs, in the same envelope: a bad %-encoding or a parameter longer
 * than the router takes (fastify's frameworkErrors), and what Node's parser refuses outright:
 * headers or a request line too large (431), a malformed request, a request that took too long
 * (408). The offending input is never echoed.
 */
export const envelopeOptions: Pick<FastifyServerOptions, 'frameworkErrors' | 'clientErrorHandler'> = {
  frameworkErrors: (error, _request, reply) => {
    const status = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400;
    const message = status === 414 ? 'a path parameter is too long' : 'the request path is not valid URL encoding';
    void sendError(reply, status, message);
  },
  clientErrorHandler: (err: Error & { code?: string }, socket: Socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const [status, message] =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'the request line or headers are larger than the server accepts']
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, 'the request took too long']
          : [400, 'the request is not valid HTTP'];
    const body = JSON.stringify(envelope(status, message));
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  },
};
