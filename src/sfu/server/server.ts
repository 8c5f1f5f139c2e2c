// The bundled SFU's front door: the Mattermost websocket (`/api/v4/websocket`) speaking the Calls
// plugin's protocol, the call page, the bot API's profile route, health and metrics. Who may do
// what comes from a policy: the bundled SFU checks its join tokens; the Mattermost stand-in in
// test/ mounts the same server with the plugin's rules (bot token, job ids).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { BlockList } from 'node:net';
import { readFile } from 'node:fs/promises';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Logger } from '../../log.js';
import { urlHost } from '../../url-host.js';
import type { IceOptions } from '../ice.js';
import {
  type Action,
  type EventName,
  type JobState,
  PLUGIN_RATE,
  RECONNECT_WINDOW_MS,
  actions,
} from '../protocol/calls.js';
import { PREFIX, ProtocolError, type WsRequest, decodeRequest, isObject, unpackSdp } from '../protocol/wire.js';
import { Call } from './call.js';
import { type Identity, WsConnection } from './connection.js';
import { addressOwner, peerAddress } from './peer-address.js';
import { RateLimiter } from '../../rate-limiter.js';
import type { RtcSession } from './session.js';
import { sfuMetrics } from './metrics.js';

export interface CallsPolicy {
  /** Who holds this token (Bearer on the upgrade, or `authentication_challenge`); null refuses it. */
  authenticate(token: string): Identity | null | Promise<Identity | null>;
  /** Why this join is refused (sent as the plugin's `error` event), or null to admit it. */
  admitJoin?(identity: Identity, callId: string, jobId: string): string | null;
}

export interface SfuOptions {
  host: string;
  port: number;
  ice: IceOptions;
  /** people and bots in one call (default 100) */
  maxCallParticipants?: number;
  /** how often each socket is pinged; one that has not answered by the next ping is cut (default 60 s, as Mattermost) */
  pingIntervalMs?: number;
  policy: CallsPolicy;
  log: Logger;
  /** reverse proxies whose X-Forwarded-For names the browser (SFU_TRUSTEDPROXIES) */
  trustedProxies?: BlockList;
}

const pageDir = new URL('../../../../src/sfu/page/', import.meta.url);
const files: Record<string, { path: URL; type: string }> = {
  '/static/call.js': { path: new URL('../../../page/call.js', import.meta.url), type: 'text/javascript' },
  '/static/call.css': { path: new URL('call.css', pageDir), type: 'text/css' },
};
const MAX_FRAME_BYTES = 64 * 1024;
const MAX_CONNECTIONS = 2000;
/**
 * Sockets one address (an IPv6 /64) may hold before they authenticate: one stranger could otherwise
 * keep every slot of MAX_CONNECTIONS taken by reopening them each AUTH_TIMEOUT_MS. Generous, for
 * the many people one NAT may stand for; behind a reverse proxy every browser has the proxy's
 * address unless the proxy is trusted (SFU_TRUSTEDPROXIES): its X-Forwarded-For then tells them apart.
 */
const MAX_UNAUTHENTICATED_PER_ADDRESS = 32;
/**
 * Sockets one identity (one user's token for one call) may hold, joined or not, and sessions it may
 * have in its call, with a socket or waiting for a reconnect: a few devices and a reconnect each. One token could otherwise take every slot of MAX_CONNECTIONS, and its sessions
 * the ports of everyone else's joins. An identity of every call (the Mattermost stand-in's Calls
 * bot, one token for all its jobs, as the plugin's) is not bounded.
 */
const MAX_SOCKETS_PER_IDENTITY = 8;
/** Ports of SFU_ICEPORTRANGE one session may take (werift finds them by trying the range in order). */
const PORTS_PER_SESSION = 2;
/** Mattermost closes a socket that has not authenticated within this long. */
const AUTH_TIMEOUT_MS = 5_000;
/** Events kept for a session whose socket dropped, as Mattermost's websocket dead queue (128). */
const MISSED_EVENTS = 128;
/** The bot API's profile route: a session's user, for the job's display names. */
const PROFILE = /^\/plugins\/com\.mattermost\.calls\/bot\/calls\/([a-z0-9]{26})\/sessions\/([a-z0-9]{26})\/profile$/;

interface Entry {
  call: Call;
  session: RtcSession;
  conn?: WsConnection;
  dropTimer?: NodeJS.Timeout;
  /** events that came while the socket was gone, sent on reconnect (Mattermost's dead queue) */
  missed: { event: EventName; data: Record<string, unknown> }[];
}

export class Sfu {
  readonly calls = new Map<string, Call>();
  private readonly entries = new Map<string, Entry>();
  private readonly connections = new Set<WsConnection>();
  private readonly requests = new RateLimiter(PLUGIN_RATE.perSec, PLUGIN_RATE.burst);
  private readonly http: Server;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly registry = sfuMetrics({ calls: () => this.calls.size, participants: () => this.participantCount });
  /** half-open sockets (a peer gone without a close) are found by pings and cut */
  private readonly heartbeat: NodeJS.Timeout;

  constructor(private readonly opts: SfuOptions) {
    this.heartbeat = setInterval(() => {
      for (const conn of this.connections) {
        if (conn.awaitingPong) conn.socket.terminate();
        else {
          conn.awaitingPong = true;
          conn.socket.ping();
        }
      }
    }, opts.pingIntervalMs ?? 60_000).unref();
    this.http = createServer((req, res) => {
      if (!this.handleHttp(req, res)) send(res, 404, 'text/plain', 'not found');
    });
    this.http.on('upgrade', (req, socket, head) => this.handleUpgrade(req, socket, head));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port, this.opts.host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const { port } = this.http.address() as { port: number };
    return `http://${urlHost(this.opts.host)}:${port}`;
  }

  /** Sessions across calls: what the leak tests count. */
  get participantCount(): number {
    return this.entries.size;
  }

  /** Prometheus text: calls, sessions, packets received, forwarded and dropped past a track's bound. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const call of [...this.calls.values()]) call.close();
    for (const conn of this.connections) conn.close(1001, 'the server is shutting down');
    this.wss.close();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  // --- what the plugin does besides signalling (the stand-in drives these) ---

  /** `job_stop` to every bot connection, as the plugin tells the Calls bot to stop a job. */
  stopJob(jobId: string): void {
    for (const conn of this.connections)
      if (conn.identity?.role === 'bot' && !conn.sessionId) conn.event('job_stop', { job_id: jobId });
    for (const entry of this.entries.values())
      if (entry.session.identity.role === 'bot') this.toSession(entry, 'job_stop', { job_id: jobId });
  }

  /**
   * A job of the call changed (the recording's `started`): `call_job_state` to everyone in it, and
   * the recording's to each bot that joins after, as the plugin does.
   */
  jobState(callId: string, state: JobState): void {
    const call = this.calls.get(callId);
    if (!call) return;
    if (state.type === 'recording') call.recording = state;
    call.broadcast('call_job_state', { callID: callId, jobState: state });
  }

  /** An event to a session's socket; while it is gone, kept for its reconnection (as Mattermost does). */
  private toSession(entry: Entry, event: EventName, data: Record<string, unknown>): void {
    if (entry.conn) entry.conn.event(event, data, entry.call.id);
    else if (entry.missed.length < MISSED_EVENTS) entry.missed.push({ event, data });
  }

  /** A host ended the call: `call_end` to everyone in it, and the sessions closed 5 s later. */
  endCall(callId: string): void {
    const call = this.calls.get(callId);
    if (!call) return;
    call.broadcast('call_end', {});
    setTimeout(() => call.close(), 5000).unref();
  }

  /** Cuts a session's websocket without a close frame, as a network drop does. */
  dropSocket(sessionId: string): void {
    this.entries.get(sessionId)?.conn?.socket.terminate();
  }

  /** The session's user, for the bot API's profile route. */
  sessionIdentity(callId: string, sessionId: string): Identity | undefined {
    return this.calls.get(callId)?.sessions.get(sessionId)?.identity;
  }

  // --- HTTP ---

  /** Serves what is ours; false when the path is not (a host server may answer it). */
  handleHttp(req: IncomingMessage, res: ServerResponse): boolean {
    const path = pathOf(req);
    if (path === undefined) {
      send(res, 400, 'text/plain', 'bad request path');
      return true;
    }
    const known =
      path === '/healthz' ||
      path === '/metrics' ||
      path === '/plugins/com.mattermost.calls/version' ||
      /^\/call\/[a-z0-9]{26}$/.test(path) ||
      path in files ||
      PROFILE.test(path);
    if (!known) return false;
    if (req.method !== 'GET') {
      send(res, 405, 'text/plain', 'method not allowed');
      return true;
    }
    void this.serveHttp(path, req, res).catch((err) => {
      this.opts.log.error({ err }, 'sfu http error');
      send(res, 500, 'text/plain', 'internal error');
    });
    return true;
  }

  private async serveHttp(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (path === '/healthz')
      return send(res, 200, 'application/json', JSON.stringify({ status: 'ok', calls: this.calls.size }));
    if (path === '/metrics') return send(res, 200, this.registry.contentType, await this.metrics());
    // Browsers ask this before deciding on data-channel locking; rtcd_version ≥ 1.1.0 has it.
    if (path === '/plugins/com.mattermost.calls/version')
      return send(res, 200, 'application/json', JSON.stringify({ version: '1.12.0', rtcd_version: '1.2.6' }));
    if (path.startsWith('/call/'))
      return send(res, 200, 'text/html; charset=utf-8', await readFile(new URL('call.html', pageDir)));
    const file = files[path];
    if (file) return send(res, 200, `${file.type}; charset=utf-8`, await readFile(fileURLToPath(file.path)));
    const m = PROFILE.exec(path);
    const who = await this.opts.policy.authenticate(bearer(req) ?? '');
    if (!m || who?.role !== 'bot' || !mayEnter(who, m[1]!))
      return send(
        res,
        who ? 403 : 401,
        'application/json',
        JSON.stringify({ message: who ? 'Forbidden' : 'Unauthorized', status_code: who ? 403 : 401 }),
      );
    const identity = this.sessionIdentity(m[1]!, m[2]!);
    if (!identity)
      return send(res, 404, 'application/json', JSON.stringify({ message: 'not found', status_code: 404 }));
    const [first, ...rest] = identity.displayName.split(' ');
    send(
      res,
      200,
      'application/json',
      JSON.stringify({
        id: identity.userId,
        username: identity.userId,
        first_name: first ?? '',
        last_name: rest.join(' '),
        nickname: '',
      }),
    );
  }

  // --- the websocket ---

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // Node takes its own error listener off a socket it hands to 'upgrade': without one, a peer
    // that resets the connection while we answer or authenticate is an uncaught error
    const onError = () => socket.destroy();
    socket.on('error', onError);
    // Destroyed once the answer is out: Node's HTTP sockets allow half-open, and nothing reads a
    // socket handed to 'upgrade', so an ended one stayed open as long as the peer kept its half.
    const refuse = (status: string) =>
      socket.end(`HTTP/1.1 ${status}\r\ncontent-length: 0\r\n\r\n`, () => socket.destroy());
    if (pathOf(req) !== '/api/v4/websocket') return void socket.destroy();
    // sockets that have not joined (yet) are bounded too: a stranger cannot hold thousands open
    if (this.connections.size >= MAX_CONNECTIONS) return void refuse('503 Service Unavailable');
    const token = bearer(req);
    const forwarded = req.headersDistinct['x-forwarded-for']?.join(',');
    const address = addressOwner(peerAddress(req.socket.remoteAddress ?? '', forwarded, this.opts.trustedProxies));
    if (token === undefined && this.unauthenticated(address) >= MAX_UNAUTHENTICATED_PER_ADDRESS)
      return void refuse('429 Too Many Requests');
    void Promise.resolve(token === undefined ? undefined : this.opts.policy.authenticate(token)).then(
      (identity) => {
        // Mattermost refuses the upgrade of a bad token with 401
        if (identity === null) return void refuse('401 Unauthorized');
        if (identity && this.atSocketBound(identity)) return void refuse('429 Too Many Requests');
        this.wss.handleUpgrade(req, socket, head, (ws) => {
          socket.off('error', onError); // ws listens from here
          this.accept(ws, address, identity);
        });
      },
      () => socket.destroy(),
    );
  }

  /** Sockets `which` holds true of (counted, not kept: at most MAX_CONNECTIONS). */
  private count(which: (conn: WsConnection) => boolean): number {
    let count = 0;
    for (const conn of this.connections) if (which(conn)) count++;
    return count;
  }

  /** Sockets from `address` that have not authenticated yet. */
  private unauthenticated(address: string): number {
    return this.count((conn) => !conn.identity && conn.address === address);
  }

  /** Whether `who`'s user holds MAX_SOCKETS_PER_IDENTITY sockets for `who`'s call. */
  private atSocketBound(who: Identity): boolean {
    if (who.callId === undefined) return false;
    const mine = ({ identity }: WsConnection) => identity?.userId === who.userId && identity.callId === who.callId;
    return this.count(mine) >= MAX_SOCKETS_PER_IDENTITY;
  }

  private accept(ws: WebSocket, address: string, identity: Identity | undefined): void {
    const conn = new WsConnection(ws, address);
    this.connections.add(conn);
    const hello = (who: Identity) => {
      conn.identity = who;
      conn.event('hello', { connection_id: conn.id, server_version: 'calls-offloader-sfu' });
    };
    let authTimer: NodeJS.Timeout | undefined;
    if (identity) hello(identity);
    else authTimer = setTimeout(() => conn.close(1008, 'not authenticated'), AUTH_TIMEOUT_MS).unref();

    let challenged = false;
    ws.on('message', (data, isBinary) => {
      if (ws.readyState !== ws.OPEN) return; // closing: what the peer still sends is not read
      let request: WsRequest;
      try {
        request = decodeRequest(isBinary ? toBytes(data) : data.toString());
      } catch (err) {
        // Mattermost closes the socket on an undecodable frame
        conn.close(1003, (err as Error).message);
        return;
      }
      if (!conn.identity) {
        const token = request.data?.token;
        // one challenge a socket, as Mattermost answers: each costs a token's check
        if (request.action !== 'authentication_challenge' || typeof token !== 'string' || challenged) return;
        challenged = true;
        void Promise.resolve(this.opts.policy.authenticate(token)).then(
          (who) => {
            if (!who) return conn.close(1008, 'authentication failed');
            if (this.atSocketBound(who)) return conn.close(1008, 'too many connections for this user in this call');
            clearTimeout(authTimer);
            conn.reply(request.seq, 'OK');
            hello(who);
          },
          () => conn.close(1011, 'authentication failed'),
        );
        return;
      }
      this.onRequest(conn, request).catch((err) => {
        const protocol = err instanceof ProtocolError;
        if (!protocol)
          this.opts.log.warn({ err: (err as Error).message, action: request.action }, 'calls action failed');
        const session = conn.sessionId ? this.entries.get(conn.sessionId) : undefined;
        conn.event(
          'error',
          { data: protocol ? (err as Error).message : 'the action failed', connID: conn.sessionId ?? conn.id },
          session?.call.id,
        );
      });
    });
    ws.on('pong', () => {
      conn.awaitingPong = false;
    });
    ws.on('close', () => this.disconnected(conn));
    ws.on('error', () => this.disconnected(conn));
  }

  private async onRequest(conn: WsConnection, request: WsRequest): Promise<void> {
    const identity = conn.identity!;
    const data = request.data ?? {};
    // the plugin's rate, per session (a new socket does not reset it), per socket before it joins:
    // the excess is dropped, as the plugin does
    if (this.requests.take(conn.sessionId ?? conn.id) > 0) return;
    if (request.action === 'ping') {
      return conn.reply(request.seq, 'OK', {
        text: 'pong',
        version: 'calls-offloader-sfu',
        server_time: Date.now(),
        node_id: '',
      });
    }
    if (!request.action.startsWith(PREFIX)) return; // other core actions: nothing of ours
    const action = request.action.slice(PREFIX.length) as Action;
    if (!actions.includes(action)) return;
    switch (action) {
      case 'join':
        return this.join(conn, identity, str(data.channelID), typeof data.jobID === 'string' ? data.jobID : '');
      case 'reconnect':
        return this.reconnect(conn, identity, data);
      case 'call_state': {
        const call = this.calls.get(str(data.channelID));
        if (call && mayEnter(identity, call.id))
          conn.event('call_state', { channel_id: call.id, call: JSON.stringify(call.state()) }, call.id);
        return;
      }
    }
    const entry = conn.sessionId ? this.entries.get(conn.sessionId) : undefined;
    if (!entry) return; // no session: dropped as the plugin does
    const { call, session } = entry;
    switch (action) {
      case 'leave':
        return this.end(entry);
      case 'sdp':
        return session.onSdp(unpackSdp(data.data));
      case 'ice':
        return session.addCandidate(str(data.data));
      case 'mute':
      case 'unmute':
        session.unmuted = action === 'unmute';
        return call.broadcast(action === 'mute' ? 'user_muted' : 'user_unmuted', {
          userID: identity.userId,
          session_id: session.id,
        });
      case 'screen_on':
        if ([...call.sessions.values()].some((s) => s !== session && s.tracks.has('screen')))
          throw new ProtocolError('someone else is sharing their screen');
        session.screenStreamId = str(jsonField(data.data, 'screenStreamID'));
        return;
      case 'screen_off':
        session.unpublish('screen');
        session.unpublish('screen-audio');
        return;
      case 'video_on':
        session.videoStreamId = str(jsonField(data.data, 'videoStreamID'));
        return;
      case 'video_off':
        return session.unpublish('video');
      case 'raise_hand':
      case 'unraise_hand':
        session.raisedHand = action === 'raise_hand' ? Date.now() : 0;
        return call.broadcast(action === 'raise_hand' ? 'user_raise_hand' : 'user_unraise_hand', {
          userID: identity.userId,
          session_id: session.id,
          raised_hand: session.raisedHand,
        });
      case 'caption': {
        if (identity.role !== 'bot') throw new ProtocolError('only the Calls bot sends captions');
        // a caption is of someone in this call, never attributed to anyone else
        const speaker = call.sessions.get(str(data.session_id));
        const text = str(data.text);
        if (
          !speaker ||
          speaker.role === 'bot' ||
          !text ||
          text.length > 4096 ||
          typeof data.new_audio_len_ms !== 'number'
        ) {
          throw new ProtocolError('caption needs the session_id of someone in the call, text and new_audio_len_ms');
        }
        return call.broadcast('caption', {
          channel_id: call.id,
          user_id: speaker.identity.userId,
          session_id: speaker.id,
          text,
        });
      }
      default:
        return; // react, metric: nothing to do here
    }
  }

  private join(conn: WsConnection, identity: Identity, callId: string, jobId: string): void {
    const refuse = (reason: string) => conn.event('error', { data: reason, connID: conn.id }, callId);
    if (!/^[a-z0-9]{26}$/.test(callId)) return refuse('channelID is not valid');
    if (conn.sessionId) return refuse('session is already connected');
    if (!mayEnter(identity, callId)) return refuse('forbidden');
    // werift binds UDP ports of the range per session (a host candidate on loopback takes two):
    // past what the range holds a joiner would silently get no media
    const range = this.opts.ice.portRange;
    const sessions = range ? Math.floor((range[1] - range[0] + 1) / PORTS_PER_SESSION) : Infinity;
    const inCall = this.calls.get(callId)?.sessions.size ?? 0;
    if (this.entries.size >= sessions || inCall >= (this.opts.maxCallParticipants ?? 100)) {
      this.opts.log.warn({ call: callId, sessions: this.entries.size, inCall }, 'join refused: the SFU is full');
      return refuse('user cannot join because of limits');
    }
    // Sessions too, those whose socket dropped included (kept 10 s for a reconnect): a token that
    // joined and dropped its socket over and over held a session for each.
    let mine = 0;
    for (const s of this.calls.get(callId)?.sessions.values() ?? []) if (s.identity.userId === identity.userId) mine++;
    if (identity.callId !== undefined && mine >= MAX_SOCKETS_PER_IDENTITY)
      return refuse('too many sessions for this user in this call');
    const refused = this.opts.policy.admitJoin?.(identity, callId, jobId);
    if (refused) return refuse(refused);
    let call = this.calls.get(callId);
    if (!call) {
      call = new Call(
        callId,
        this.opts.ice,
        (s, event, data) => {
          const entry = this.entries.get(s.id);
          if (entry) this.toSession(entry, event, data);
        },
        (c) => {
          if (this.calls.get(c.id) === c) this.calls.delete(c.id);
        },
        this.opts.log,
        // a session the media side ended too (a failed connection, the call's end): its entry
        // counted against the limits, and its socket could not join again, until the socket closed
        (s) => this.free(s.id),
      );
      this.calls.set(callId, call);
    }
    const session = call.join(conn.id, identity);
    this.entries.set(session.id, { call, session, conn, missed: [] });
    conn.sessionId = session.id;
    conn.event('join', { connID: conn.id }, callId);
    if (identity.role === 'bot' && call.recording)
      conn.event('call_job_state', { callID: callId, jobState: call.recording }, callId);
    conn.event('call_state', { channel_id: callId, call: JSON.stringify(call.state()) }, callId);
    this.opts.log.debug({ call: callId, session: session.id, role: identity.role }, 'joined');
  }

  /** A new socket takes over a session whose socket dropped, within the plugin's 10 s; else nothing happens. */
  private reconnect(conn: WsConnection, identity: Identity, data: Record<string, unknown>): void {
    const entry = this.entries.get(str(data.originalConnID));
    if (
      !entry ||
      conn.sessionId !== undefined || // this socket already signals for a session, which would be orphaned
      !mayEnter(identity, entry.call.id) ||
      entry.session.identity.userId !== identity.userId ||
      entry.call.id !== str(data.channelID) ||
      entry.conn
    )
      return;
    clearTimeout(entry.dropTimer);
    entry.conn = conn;
    conn.sessionId = entry.session.id;
    for (const { event, data } of entry.missed.splice(0)) conn.event(event, data, entry.call.id);
  }

  private disconnected(conn: WsConnection): void {
    if (!this.connections.delete(conn)) return;
    const entry = conn.sessionId ? this.entries.get(conn.sessionId) : undefined;
    if (!entry || entry.conn !== conn) return;
    entry.conn = undefined;
    entry.dropTimer = setTimeout(() => this.end(entry), RECONNECT_WINDOW_MS).unref();
  }

  private end(entry: Entry): void {
    entry.call.leave(entry.session); // the call's onLeft frees the entry...
    this.free(entry.session.id); // ...unless the session had left it already
  }

  /** Forgets a session that left its call; its socket, if any, may join again. */
  private free(sessionId: string): void {
    const entry = this.entries.get(sessionId);
    if (!entry) return;
    clearTimeout(entry.dropTimer);
    this.entries.delete(sessionId);
    if (entry.conn?.sessionId === sessionId) entry.conn.sessionId = undefined;
  }
}

/** An identity bound to one call (a join token) reaches only that call; the Mattermost stand-in's bot, any. */
const mayEnter = (identity: Identity, callId: string) => identity.callId === undefined || identity.callId === callId;

const str = (v: unknown) => (typeof v === 'string' ? v : '');

/** `screen_on`/`video_on` carry a JSON string: one field of it. */
function jsonField(data: unknown, field: string): unknown {
  try {
    const value = JSON.parse(str(data)) as unknown;
    return isObject(value) ? value[field] : undefined;
  } catch {
    throw new ProtocolError(`data must be a JSON string with ${field}`);
  }
}

/** The request's path; undefined for a target the URL parser refuses (`//`, `/\\`), which Node's HTTP parser lets through. */
function pathOf(req: IncomingMessage): string | undefined {
  try {
    return new URL(req.url ?? '/', 'http://x').pathname;
  } catch {
    return undefined;
  }
}

function bearer(req: IncomingMessage): string | undefined {
  const m = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '');
  return m?.[1];
}

function toBytes(data: RawData): Uint8Array {
  const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Every answer's headers. The call page asks for the microphone, the camera and the screen: no
 * other site may frame it (a page over it could click for them), and it loads and connects to
 * nothing but this server.
 */
const HEADERS = {
  'cache-control': 'no-store',
  'content-security-policy':
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { ...HEADERS, 'content-type': type });
  res.end(body);
}
