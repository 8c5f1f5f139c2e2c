// The Calls plugin's bot API as the job programs use it: report job status, get the artifact's
// file name and speakers' names, upload through a resumable upload session, and post the
// recording or transcription to the call thread. Written once for the recorder and the
// transcriber. Requests are retried with growing back-off (upstream: up to 20 attempts, 5 s ×
// attempt); an upload resumes from the offset Mattermost reports after a 204 or a failure.
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { rootCertificates } from 'node:tls';
import { STATUS_CODES } from 'node:http';
import { Agent, fetch, request, type RequestInit, type Response } from 'undici';
import type { Profile } from '../../src/sfu/protocol/calls.js';
import type { FileSource } from './file-source.js';

export type JobType = 'recording' | 'transcribing';

export interface RetryPolicy {
  attempts: number;
  /** wait before attempt n+1 is n × this */
  stepMs: number;
}

export interface BotClientOptions {
  siteUrl: string;
  authToken: string;
  /** PEM of CAs trusted for HTTPS to the site besides the system's (tls_ca_cert_file) */
  ca?: string;
  retry?: RetryPolicy;
  /** per request; uploads get `uploadTimeoutMs` */
  timeoutMs?: number;
  uploadTimeoutMs?: number;
  log?: (message: string) => void;
}

export interface FileInfo {
  id: string;
  name: string;
  size: number;
}

/** A failure Mattermost will answer the same way however often we ask (bad token, bad request). */
export class PermanentError extends Error {}

const upstreamRetry: RetryPolicy = { attempts: 20, stepMs: 5000 };
const quickRetry: RetryPolicy = { attempts: 3, stepMs: 500 };

/** The file name rules of the upstream runners: the plugin's base name, made safe, plus an extension. */
export function sanitizeFilename(name: string): string {
  return (
    name
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^[._]+/, '')
      .slice(0, 200) || 'call'
  );
}

/** A CA bundle is a few KB; a path to a device (/dev/zero) or a huge file is not read. */
const MAX_CA_FILE_BYTES = 1024 * 1024;

/**
 * The PEM certificates of `path`, or one error whatever is wrong: the path comes with the job's
 * inputs, and its log is the client's to read, so the error must not tell a client which files
 * the host has, which it may not read or how large they are.
 */
function readCaFile(path: string): string {
  let fd: number | undefined;
  let pem: string | undefined;
  try {
    // opened without blocking on a FIFO, and checked on what was opened (no swap between a check and the read)
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const stat = fstatSync(fd);
    if (stat.isFile() && stat.size <= MAX_CA_FILE_BYTES) pem = readFileSync(fd, 'utf8');
  } catch {
    // said below, as every other failure
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (!pem?.includes('-----BEGIN CERTIFICATE-----'))
    throw new Error(
      `TLS_CA_CERT_FILE ${path} is not a readable regular file of at most 1 MiB holding a PEM certificate`,
    );
  return pem;
}

/**
 * The job's client from its inputs, or none without a site. `tls_ca_cert_file` is read here, once:
 * an unreadable or non-PEM file stops the job at start, naming the file but not its content.
 */
export function botClientFor(
  inputs: { site_url?: string; auth_token?: string; tls_ca_cert_file?: string },
  log: (message: string) => void,
): BotClient | undefined {
  if (!inputs.site_url) return undefined;
  const ca = inputs.tls_ca_cert_file ? readCaFile(inputs.tls_ca_cert_file) : undefined;
  return new BotClient({ siteUrl: inputs.site_url, authToken: inputs.auth_token!, ca, log });
}

export class BotClient {
  private readonly base: string;
  private readonly retry: RetryPolicy;
  private readonly dispatcher: Agent;

  constructor(private readonly opts: BotClientOptions) {
    this.base = `${opts.siteUrl.replace(/\/$/, '')}/plugins/com.mattermost.calls/bot`;
    this.retry = opts.retry ?? upstreamRetry;
    // The given CA is trusted beside the system's (Node's own list), as tls.connect's `ca` replaces it.
    // Some connections to the site, however many names a call asks for at once (each request's
    // 30 s run from before it waits for one: a few hundred names at a join still fit).
    this.dispatcher = new Agent({ connections: 32, connect: opts.ca ? { ca: [...rootCertificates, opts.ca] } : {} });
  }

  /** `started` once media is being captured; `failed` with the reason a person can act on. */
  reportStatus(
    callId: string,
    jobId: string,
    jobType: JobType,
    status: 'started' | 'failed',
    error?: string,
  ): Promise<unknown> {
    // The plugin reads the error under the key "omitempty" (an upstream JSON tag mistake that is
    // now the wire format).
    const body = { JobType: jobType, Status: status, ...(error ? { omitempty: error } : {}) };
    return this.call('POST', `/calls/${callId}/jobs/${jobId}/status`, body);
  }

  async filename(callId: string): Promise<string> {
    const { filename } = (await this.call('GET', `/calls/${callId}/filename`)) as { filename: string };
    return sanitizeFilename(filename);
  }

  /** A call session's user (display names in transcripts and captions): a few quick tries, not the upload's twenty. */
  profile(callId: string, sessionId: string): Promise<Profile> {
    return this.withRetry(
      `profile of ${sessionId}`,
      () => this.request('GET', `/calls/${callId}/sessions/${sessionId}/profile`),
      quickRetry,
    ) as Promise<Profile>;
  }

  /** The CA trusted besides the system's, for the call's websocket too. */
  get ca(): string | undefined {
    return this.opts.ca;
  }

  postRecording(callId: string, info: { JobID: string; FileIDs: string[]; PostID: string }): Promise<unknown> {
    return this.call('POST', `/calls/${callId}/recordings`, info);
  }

  postTranscription(
    callId: string,
    info: { JobID: string; PostID: string; Transcriptions: { Language: string; FileIDs: string[] }[] },
  ): Promise<unknown> {
    return this.call('POST', `/calls/${callId}/transcriptions`, info);
  }

  /**
   * Uploads a file into the call's channel. Mattermost cuts each data request at its maximum
   * request size and answers 204; we then ask the session for `file_offset` and send the rest.
   * A failed request is retried the same way, so an upload never starts over.
   */
  async upload(callId: string, file: FileSource, filename = basename(file.path)): Promise<FileInfo> {
    const { size } = file;
    const session = (await this.call('POST', '/uploads', { channel_id: callId, filename, file_size: size })) as {
      id: string;
    };
    let offset = 0;
    let retry = false;
    return this.withRetry(`upload of ${filename}`, async () => {
      // A retry asks where the session stands after the back-off, not as the request fails:
      // Mattermost keeps the bytes of a cut request, and may still be writing them then.
      if (retry) offset = await this.uploadOffset(session.id, size);
      retry = true;
      for (;;) {
        // undici's request, not fetch: fetch read the whole file ahead of the socket into memory
        // (663 MB of RSS to upload a recording of 570 MB); request reads it as it is sent.
        const res = await request(`${this.base}/uploads/${session.id}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.opts.authToken}`, 'content-type': 'application/octet-stream' },
          body: file.read(offset),
          dispatcher: this.dispatcher,
          signal: AbortSignal.timeout(this.opts.uploadTimeoutMs ?? 10 * 60_000),
        }).catch((err) => {
          throw connectionError(err);
        });
        if (res.statusCode === 204) {
          await res.body.dump();
          const kept = await this.uploadOffset(session.id, size);
          // asked again after the back-off: a site that keeps nothing is not sent the rest for ever
          if (kept <= offset) throw new Error(`the site kept nothing of a request from byte ${offset} of ${size}`);
          offset = kept;
          this.opts.log?.(`upload of ${filename}: ${offset} of ${size} bytes, resuming`);
          continue;
        }
        if (res.statusCode >= 200 && res.statusCode < 300) return JSON.parse(await answerText(res.body)) as FileInfo;
        throw await responseError(res.statusCode, STATUS_CODES[res.statusCode] ?? '', res.headers.location, res.body);
      }
    });
  }

  private async uploadOffset(uploadId: string, size: number): Promise<number> {
    const offset = ((await this.request('GET', `/uploads/${uploadId}`)) as { file_offset?: unknown } | null)
      ?.file_offset;
    if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0 || offset > size)
      throw new PermanentError(`the site gave the upload's offset as ${String(offset).slice(0, 40)}, of ${size} bytes`);
    return offset;
  }

  private call(method: string, path: string, body?: unknown): Promise<unknown> {
    return this.withRetry(`${method} ${path}`, () => this.request(method, path, body));
  }

  /**
   * fetch through this client's TLS trust; a failure to connect says why (fetch alone says "fetch
   * failed"). A redirect is not followed: the job reaches the site it was given and nothing else.
   */
  private async fetch(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, { ...init, dispatcher: this.dispatcher, redirect: 'manual' });
    } catch (err) {
      throw connectionError(err as Error);
    }
  }

  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await this.fetch(this.base + path, {
      method,
      headers: {
        authorization: `Bearer ${this.opts.authToken}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
    });
    if (!res.ok) throw await responseError(res.status, res.statusText, res.headers.get('location'), res.body);
    const text = await answerText(res.body);
    return text ? JSON.parse(text) : undefined;
  }

  private async withRetry<T>(what: string, attempt: () => Promise<T>, retry = this.retry): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        if (err instanceof PermanentError || n >= retry.attempts) {
          throw new Error(`${what} failed after ${n} attempt(s): ${(err as Error).message}`);
        }
        this.opts.log?.(
          `${what} failed (attempt ${n} of ${retry.attempts}): ${(err as Error).message}; retrying in ${(n * retry.stepMs) / 1000} s`,
        );
        await new Promise((r) => setTimeout(r, n * retry.stepMs));
      }
    }
  }
}

/** TLS verification failures: asking again cannot help, the job needs the site's CA. */
const untrusted = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS_CERT_ALTNAME/;

function connectionError(err: Error): Error {
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return err;
  // fetch says "fetch failed" and gives the reason as its cause; undici's request throws the reason
  const cause = (err.cause ?? err) as Error & { code?: string };
  const reason = `${cause.message}${cause.code && !cause.message.includes(cause.code) ? ` (${cause.code})` : ''}`;
  if (cause.code && untrusted.test(cause.code)) {
    return new PermanentError(
      `the site's TLS certificate is not trusted: ${reason}; give the job its CA with tls_ca_cert_file (MM_CALLS_RECORDER_TLS_CA_CERT_FILE / MM_CALLS_TRANSCRIBER_TLS_CA_CERT_FILE on the Mattermost server)`,
    );
  }
  return cause === err ? err : new Error(`${err.message}: ${reason}`);
}

/** The bot API's answers are small JSON documents: a site's answer is read up to this much. */
const MAX_ANSWER_BYTES = 1024 * 1024;

async function answerText(body: AsyncIterable<Uint8Array> | null): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body ?? []) {
    size += chunk.length;
    if (size > MAX_ANSWER_BYTES) throw new PermanentError(`the site's answer is longer than ${MAX_ANSWER_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function responseError(
  status: number,
  statusText: string,
  location: string | string[] | null | undefined,
  body: AsyncIterable<Uint8Array> | null,
): Promise<Error> {
  const text = await answerText(body).catch(() => ''); // read (up to its bound) so that the connection is free
  let message = `${status} ${statusText}`;
  if (status >= 300 && status < 400)
    return new PermanentError(
      `${message}: the site redirects to ${String(location).slice(0, 200)}, which is not followed; site_url must be the address the site answers at`,
    );
  try {
    const answer = JSON.parse(text) as { message?: unknown; error?: unknown };
    message += `: ${String(answer.message ?? answer.error ?? '').slice(0, 500)}`;
  } catch {
    // not JSON
  }
  // 4xx will not change by asking again (but 408 and 429 might).
  return status >= 400 && status < 500 && status !== 408 && status !== 429
    ? new PermanentError(message)
    : new Error(message);
}
