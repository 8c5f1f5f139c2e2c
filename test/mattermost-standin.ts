// A stand-in for a Mattermost server with the Calls plugin, the only stand-in the tests use (no
// Mattermost server can run here). It implements the bot API of
// shared/reference/calls-plugin-bot-api.md as the plugin does, awkward parts included: bearer
// auth with the job's token, upload sessions whose data requests are cut at a maximum request
// size and answered 204 (the runner must GET the session and resume from `file_offset`), each
// request's bytes written to a file store as they arrive and kept when the request is cut (as
// Mattermost's local file store appends them, rather than holding a recording in memory), the job
// status body with the error under the key "omitempty"; and it records everything it received.
// Calls are held on it as on the plugin: its websocket (`/api/v4/websocket`) is the bundled SFU's
// server, which speaks the plugin's protocol, mounted with the plugin's rules for the Calls bot
// (its bot token; a join names a recording or transcription job that exists and has not started;
// refusals as the plugin words them) and the plugin's ways of stopping a job (job_stop, call_end).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../src/log.js';
import { Sfu } from '../src/sfu/server/server.js';
import type { Identity } from '../src/sfu/server/connection.js';
import { callPageUrl, mintToken, verifyToken } from '../src/sfu/token.js';
import { testConfig } from './helpers.js';

const BASE = '/plugins/com.mattermost.calls/bot';
/** bytes of an upload held while the file store writes them (append) */
const WRITE_BUFFER = 8 * 1024 * 1024;

export interface UploadSession {
  id: string;
  type: 'attachment';
  create_at: number;
  user_id: string;
  channel_id: string;
  filename: string;
  file_size: number;
  file_offset: number;
}

export interface FileInfo {
  id: string;
  user_id: string;
  channel_id: string;
  create_at: number;
  name: string;
  extension: string;
  size: number;
  mime_type: string;
}

export interface StandInOptions {
  /** the bot token the plugin gave the job (input_data.auth_token) */
  authToken: string;
  /** bytes accepted per upload-data request; the rest answers 204 (Mattermost's MaxFileSize cut) */
  maxRequestBytes?: number;
  filename?: string;
  /** serve HTTPS with this key and certificate (PEM) */
  tls?: { key: string; cert: string };
  /** UDP ports for the calls' media (default 47900-47999) */
  icePorts?: [number, number];
  /** display names of call sessions, for GET .../sessions/{id}/profile */
  profiles?: Record<string, { id: string; username: string; first_name: string; last_name: string; nickname?: string }>;
  /** FileSettings.MaxFileSize: an upload session for a larger file is refused with 413, as Mattermost's CreateUploadSession does */
  maxFileSize?: number;
  /** answer each profile this much later (a busy server: a bot's join waits for the names of those in the call) */
  profileDelayMs?: number;
}

export class MattermostStandIn {
  /** the status reports accepted, with when (ms since the epoch) */
  readonly statuses: { callId: string; jobId: string; body: Record<string, unknown>; at: number }[] = [];
  readonly recordings: { callId: string; body: { JobID: string; FileIDs: string[]; PostID: string } }[] = [];
  readonly transcriptions: { callId: string; body: Record<string, unknown> }[] = [];
  readonly uploads = new Map<string, UploadSession>();
  /** the file store: each upload session's bytes, in a file named after the session */
  private readonly store = mkdtempSync(join(tmpdir(), 'mattermost-standin-'));
  /** uploaded files by FileInfo id, with the session whose file holds the bytes */
  private readonly files = new Map<string, { info: FileInfo; uploadId: string }>();
  /** every request, as "METHOD path status" */
  readonly log: string[] = [];
  /** answer 500 to the next n requests (a Mattermost that is down for a while) */
  failNext = 0;
  /** answer 503 to this many of a job's status reports, by its id (a plugin restarting as the job starts) */
  readonly refuseStatuses = new Map<string, number>();
  /** answer each bot API request this many ms late (a Mattermost under load) */
  delayMs = 0;
  /** cut the connection of the next upload-data request after this many of its bytes (a network that drops mid-upload) */
  cutNextUploadAt?: number;
  /** the plugin's call jobs (recording or transcription ids), as recording/start creates them */
  readonly jobs = new Map<string, { callId: string; started: boolean; initAt: number }>();
  /** the calls held here */
  readonly calls: Sfu;
  private readonly userSecret = randomBytes(32).toString('hex');
  private unreachableUntil = 0;
  private httpDownUntil = 0;
  private server?: Server;
  url = '';

  constructor(private readonly opts: StandInOptions) {
    this.calls = new Sfu({
      host: '127.0.0.1',
      port: 0,
      ice: { bindAddress: '127.0.0.1', portRange: opts.icePorts ?? [47900, 47999] },
      log: createLogger(testConfig(), 'mattermost-standin'),
      policy: {
        authenticate: (token) => {
          if (token === this.opts.authToken)
            return { userId: 'calls-bot-user', displayName: 'Calls', role: 'bot' } satisfies Identity;
          try {
            const c = verifyToken(this.userSecret, token);
            return { userId: c.user, displayName: c.name, role: 'participant', callId: c.call };
          } catch {
            return null;
          }
        },
        // the plugin's checks on a bot's join (websocket.go handleJoin, session.go)
        admitJoin: (identity, callId, jobId) => {
          if (identity.role !== 'bot') return null;
          if (!jobId) return 'JobID should not be empty for bot connections';
          const job = this.jobs.get(jobId);
          if (!job || job.callId !== callId) return 'no job in progress';
          if (job.started) return 'job not in progress or already started';
          return null;
        },
      },
    });
  }

  async start(): Promise<string> {
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    this.server = this.opts.tls ? createHttpsServer(this.opts.tls, handler) : createServer(handler);
    this.server.on('upgrade', (req, socket, head) => {
      if (Date.now() < this.unreachableUntil) return socket.destroy(); // the network is down
      this.calls.handleUpgrade(req, socket, head);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${(this.server.address() as { port: number }).port}`;
    return this.url;
  }

  async close(): Promise<void> {
    await this.calls.close();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    rmSync(this.store, { recursive: true, force: true });
  }

  /** A recording or transcription the plugin started for this call: a bot may join for it. */
  addJob(jobId: string, callId: string): void {
    this.jobs.set(jobId, { callId, started: false, initAt: Date.now() });
  }

  /** The call page's address for a person, as the Calls webapp would join. */
  joinUrl(callId: string, user: string, name: string): string {
    return callPageUrl(
      this.url,
      callId,
      mintToken(this.userSecret, { call: callId, user, name, role: 'participant', ttlSec: 3600 }),
    );
  }

  /** A join token for a person (headless participants in tests). */
  userToken(callId: string, user: string, name: string): string {
    return mintToken(this.userSecret, { call: callId, user, name, role: 'participant', ttlSec: 3600 });
  }

  /** The host stops the recording: `job_stop` to the Calls bot. */
  stopJob(jobId: string): void {
    this.calls.stopJob(jobId);
  }

  /** The host ends the call for everyone: `call_end`, sessions closed 5 s later. */
  endCall(callId: string): void {
    this.calls.endCall(callId);
  }

  /** The bot sessions of a call. */
  botSessions(callId: string): string[] {
    return [...(this.calls.calls.get(callId)?.sessions.values() ?? [])]
      .filter((s) => s.role === 'bot')
      .map((s) => s.id);
  }

  /** The bots' websockets drop and no new one gets through for `ms` (the media path stays up). */
  cutBots(callId: string, ms: number): void {
    this.unreachableUntil = Date.now() + ms;
    for (const id of this.botSessions(callId)) this.calls.dropSocket(id);
  }

  /** Mattermost unreachable for `ms`: every bot API connection is cut before an answer. */
  goDown(ms: number): void {
    this.httpDownUntil = Date.now() + ms;
  }

  /** Where the file store holds a file uploaded in full. */
  filePath(id: string): string | undefined {
    const file = this.files.get(id);
    return file && join(this.store, file.uploadId);
  }

  /** The bytes of a file uploaded in full. */
  file(id: string): Buffer | undefined {
    const path = this.filePath(id);
    return path === undefined ? undefined : readFileSync(path);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    // the call page and its scripts, as the plugin serves its webapp
    if (!path.startsWith(BASE) && this.calls.handleHttp(req, res)) return;
    if (Date.now() < this.httpDownUntil) {
      this.log.push(`${req.method} ${path} cut`);
      return void req.socket.destroy();
    }
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const reply = (status: number, body?: unknown) => {
      this.log.push(`${req.method} ${path} ${status}`);
      if (body === undefined) {
        res.writeHead(status);
        res.end();
        return;
      }
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const error = (status: number, message: string) => reply(status, { message, status_code: status });

    if (req.headers.authorization !== `Bearer ${this.opts.authToken}`) {
      await drain(req);
      return error(401, 'Invalid or expired session, please login again.');
    }
    if (this.failNext > 0) {
      this.failNext--;
      await drain(req);
      return error(500, 'stand-in: Mattermost is failing on purpose');
    }
    if (!path.startsWith(BASE)) return error(404, 'not found');
    const route = path.slice(BASE.length);
    let m: RegExpExecArray | null;

    if (req.method === 'GET' && (m = /^\/calls\/([a-z0-9]{26})\/filename$/.exec(route))) {
      return reply(200, { filename: this.opts.filename ?? 'Call_town-square_2026-11-23_18-45-00' });
    }
    if (req.method === 'GET' && (m = /^\/calls\/([a-z0-9]{26})\/sessions\/([a-z0-9]+)\/profile$/.exec(route))) {
      await new Promise((r) => setTimeout(r, this.opts.profileDelayMs ?? 0));
      const identity = this.calls.sessionIdentity(m[1]!, m[2]!);
      const profile =
        this.opts.profiles?.[m[2]!] ??
        (identity && {
          id: identity.userId,
          username: identity.userId,
          first_name: identity.displayName.split(' ')[0]!,
          last_name: identity.displayName.split(' ').slice(1).join(' '),
        });
      return profile ? reply(200, profile) : error(404, 'not found');
    }
    if (req.method === 'POST' && (m = /^\/calls\/([a-z0-9]{26})\/jobs\/([a-z0-9]{26})\/status$/.exec(route))) {
      const body = await json(req);
      const refusals = this.refuseStatuses.get(m[2]!) ?? 0;
      if (refusals > 0) {
        this.refuseStatuses.set(m[2]!, refusals - 1);
        return error(503, 'stand-in: the plugin is restarting');
      }
      if (
        !body ||
        !['recording', 'transcribing'].includes(body.JobType as string) ||
        !['started', 'failed'].includes(body.Status as string)
      ) {
        return error(400, 'invalid job status');
      }
      const job = this.jobs.get(m[2]!);
      if (job && body.Status === 'started') {
        if (job.started) return error(400, 'job has already started');
        job.started = true;
        // the plugin's handleJobStatus: the job's start_at is now, told to the channel
        if (body.JobType === 'recording')
          this.calls.jobState(job.callId, { type: 'recording', init_at: job.initAt, start_at: Date.now(), end_at: 0 });
      }
      this.statuses.push({ callId: m[1]!, jobId: m[2]!, body, at: Date.now() });
      return reply(200, { message: 'success' });
    }
    if (req.method === 'POST' && route === '/uploads') {
      const body = await json(req);
      if (
        !body ||
        typeof body.channel_id !== 'string' ||
        typeof body.filename !== 'string' ||
        typeof body.file_size !== 'number'
      ) {
        return error(400, 'invalid upload session');
      }
      if (body.file_size > (this.opts.maxFileSize ?? Infinity))
        return error(413, 'CreateUploadSession: Unable to upload file. File is too large.');
      const session: UploadSession = {
        id: newId(),
        type: 'attachment',
        create_at: Date.now(),
        user_id: 'bot',
        channel_id: body.channel_id,
        filename: body.filename,
        file_size: body.file_size,
        file_offset: 0,
      };
      this.uploads.set(session.id, session);
      return reply(200, session);
    }
    if ((m = /^\/uploads\/([a-z0-9]{26})$/.exec(route))) {
      const session = this.uploads.get(m[1]!);
      if (!session) return error(404, 'upload session not found');
      if (req.method === 'GET') return reply(200, session);
      if (req.method !== 'POST') return error(405, 'method not allowed');
      // Like MaxBytesReader: keep at most maxRequestBytes of this request, drop the rest.
      const dropAt = this.cutNextUploadAt;
      this.cutNextUploadAt = undefined;
      const file = join(this.store, session.id);
      const { written, cut } = await append(req, file, this.opts.maxRequestBytes ?? Infinity, dropAt);
      session.file_offset += written;
      if (cut) return void this.log.push(`${req.method} ${path} cut after ${written} bytes`);
      if (session.file_offset > session.file_size) return error(400, 'upload is larger than file_size');
      if (session.file_offset < session.file_size) return reply(204);
      const name = session.filename;
      const info: FileInfo = {
        id: newId(),
        user_id: 'bot',
        channel_id: session.channel_id,
        create_at: Date.now(),
        name,
        extension: name.includes('.') ? name.slice(name.lastIndexOf('.') + 1) : '',
        size: session.file_size,
        mime_type: name.endsWith('.mp4') ? 'video/mp4' : name.endsWith('.vtt') ? 'text/vtt' : 'text/plain',
      };
      this.files.set(info.id, { info, uploadId: session.id });
      return reply(200, info);
    }
    if (req.method === 'POST' && (m = /^\/calls\/([a-z0-9]{26})\/recordings$/.exec(route))) {
      const body = (await json(req)) as { JobID: string; FileIDs: string[]; PostID: string } | undefined;
      if (!body?.JobID || !Array.isArray(body.FileIDs) || body.FileIDs.length === 0 || !body.PostID)
        return error(400, 'invalid recording info');
      if (!body.FileIDs.every((id) => this.files.has(id))) return error(400, 'unknown file');
      this.recordings.push({ callId: m[1]!, body });
      return reply(200, { message: 'success' });
    }
    if (req.method === 'POST' && (m = /^\/calls\/([a-z0-9]{26})\/transcriptions$/.exec(route))) {
      const body = await json(req);
      const tr = (body?.Transcriptions as { FileIDs?: string[] }[] | undefined)?.[0];
      if (!body?.JobID || !body.PostID || !tr?.FileIDs || tr.FileIDs.length !== 2)
        return error(400, 'invalid transcription info');
      this.transcriptions.push({ callId: m[1]!, body });
      return reply(200, { message: 'success' });
    }
    return error(404, 'not found');
  }
}

function newId(): string {
  return randomBytes(13).toString('hex');
}

async function drain(req: IncomingMessage): Promise<void> {
  for await (const _ of req) void _;
}

/**
 * Appends a request's body to `path` as it arrives, at most `max` bytes (the rest is read and
 * dropped). A request cut by the client, or here after `dropAt` bytes, keeps what was received
 * before the cut. The socket is read
 * on while earlier bytes are written (up to WRITE_BUFFER of them), as Mattermost's own copy does in
 * its goroutine: awaiting each 64 KiB write cost a turn of this process's event loop per chunk,
 * and in bench/recorder's process, beside the SFU, that set the upload's speed (README,
 * bench/recorder).
 */
async function append(
  req: IncomingMessage,
  path: string,
  max: number,
  dropAt = Infinity,
): Promise<{ written: number; cut: boolean }> {
  const file = createWriteStream(path, { flags: 'a', highWaterMark: WRITE_BUFFER });
  let written = 0;
  let cut = false;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      const part = chunk.subarray(0, Math.max(0, Math.min(max, dropAt) - written));
      written += part.length;
      if (part.length > 0 && !file.write(part)) await once(file, 'drain');
      if (written >= dropAt) req.socket.destroy();
    }
  } catch {
    cut = true;
  }
  await finished(file.end());
  return { written, cut: cut || written >= dropAt };
}

async function raw(req: IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    const room = max - size;
    if (room > 0) chunks.push(chunk.subarray(0, room));
    size += Math.min(chunk.length, Math.max(0, room));
  }
  return Buffer.concat(chunks);
}

async function json(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse((await raw(req, 1024 * 1024)).toString('utf8'));
  } catch {
    return undefined;
  }
}
