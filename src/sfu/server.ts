// The bundled SFU's front door: an HTTP server with the call page and the WebSocket signalling
// endpoint. A connection is admitted only with a valid join token for the call it names; anything
// else is closed with a reason (browsers cannot read a refused upgrade's body, so the socket is
// accepted first and closed with code 4001).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../log.js';
import { Call, Participant, counters } from './call.js';
import type { IceOptions } from './ice.js';
import { type ClientMessage, type Subscribe, closeCodes } from './protocol.js';
import { TokenError, verifyToken } from './token.js';

export interface SfuOptions {
  host: string;
  port: number;
  ice: IceOptions;
  tokenSecret: string;
  log: Logger;
}

const files: Record<string, { path: URL; type: string }> = {
  '/static/client.js': { path: new URL('./client.js', import.meta.url), type: 'text/javascript' },
  '/static/call.js': { path: new URL('../../../src/sfu/page/call.js', import.meta.url), type: 'text/javascript' },
  '/static/call.css': { path: new URL('../../../src/sfu/page/call.css', import.meta.url), type: 'text/css' },
};
const pagePath = new URL('../../../src/sfu/page/call.html', import.meta.url);
const MAX_MESSAGE_BYTES = 256 * 1024;

export class Sfu {
  readonly calls = new Map<string, Call>();
  private readonly http: Server;
  private readonly wss: WebSocketServer;

  constructor(private readonly opts: SfuOptions) {
    this.http = createServer((req, res) => void this.serveHttp(req, res));
    this.wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
    this.http.on('upgrade', (req, socket, head) => {
      if (new URL(req.url ?? '/', 'http://x').pathname !== '/ws') return socket.destroy();
      this.wss.handleUpgrade(req, socket, head, (ws) => this.admit(ws, req));
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.http.listen(this.opts.port, this.opts.host, resolve));
    const { port } = this.http.address() as { port: number };
    return `http://${this.opts.host}:${port}`;
  }

  /** Participants across calls: what the leak tests count. */
  get participantCount(): number {
    let n = 0;
    for (const call of this.calls.values()) n += call.participants.size;
    return n;
  }

  /** Prometheus text: calls, participants, packets received and forwarded. */
  metrics(): string {
    const ns = 'calls_offloader_sfu';
    return [
      `# TYPE ${ns}_calls gauge`, `${ns}_calls ${this.calls.size}`,
      `# TYPE ${ns}_participants gauge`, `${ns}_participants ${this.participantCount}`,
      `# TYPE ${ns}_rtp_packets_received_total counter`, `${ns}_rtp_packets_received_total ${counters.received}`,
      `# TYPE ${ns}_rtp_packets_forwarded_total counter`, `${ns}_rtp_packets_forwarded_total ${counters.forwarded}`,
      `# TYPE ${ns}_keyframe_requests_total counter`, `${ns}_keyframe_requests_total ${counters.keyframeRequests}`,
      '',
    ].join('\n');
  }

  async close(): Promise<void> {
    for (const call of [...this.calls.values()]) call.close();
    for (const ws of this.wss.clients) ws.close(closeCodes.shutdown, 'the server is shutting down');
    this.wss.close();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private admit(ws: WebSocket, req: IncomingMessage): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const callId = url.searchParams.get('call') ?? '';
    const subscribe = (url.searchParams.get('subscribe') ?? 'all') as Subscribe;
    let claims;
    try {
      if (!['all', 'audio', 'none'].includes(subscribe)) throw new TokenError('subscribe must be all, audio or none');
      claims = verifyToken(this.opts.tokenSecret, url.searchParams.get('token') ?? '', callId);
    } catch (err) {
      const reason = err instanceof TokenError ? err.message : 'unauthorized';
      this.opts.log.info({ call: callId, reason }, 'join refused');
      ws.close(closeCodes.unauthorized, reason);
      return;
    }
    let call = this.calls.get(claims.call);
    if (!call) {
      call = new Call(claims.call, (c) => {
        if (this.calls.get(c.id) === c) this.calls.delete(c.id);
      });
      this.calls.set(call.id, call);
    }
    const participant = new Participant(call, claims, subscribe, this.opts.ice, {
      send: (data) => {
        if (ws.readyState === ws.OPEN) ws.send(data);
      },
      close: (code, reason) => {
        if (ws.readyState === ws.OPEN) ws.close(code === 1000 && reason.startsWith('replaced') ? closeCodes.replaced : code, reason);
      },
    }, this.opts.log);
    ws.on('message', (data) => {
      let message: ClientMessage;
      try {
        message = JSON.parse(data.toString());
      } catch {
        ws.close(closeCodes.badMessage, 'messages must be JSON');
        return;
      }
      participant.handle(message).catch((err) => {
        this.opts.log.warn({ err: (err as Error).message, type: message.type }, 'signalling message failed');
        participant.send({ type: 'error', message: `${message.type} failed: ${(err as Error).message}` });
      });
    });
    ws.on('close', () => participant.close('disconnected'));
    ws.on('error', () => participant.close('connection error'));
    call.add(participant);
    this.opts.log.debug({ call: call.id, session: claims.session, role: claims.role }, 'participant joined');
  }

  private async serveHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    try {
      if (req.method !== 'GET') return send(res, 405, 'text/plain', 'method not allowed');
      if (path === '/favicon.ico') return send(res, 204, 'image/x-icon', '');
      if (path === '/healthz') return send(res, 200, 'application/json', JSON.stringify({ status: 'ok', calls: this.calls.size }));
      if (path === '/metrics') return send(res, 200, 'text/plain; version=0.0.4', this.metrics());
      if (/^\/call\/[a-z0-9]{26}$/.test(path)) return send(res, 200, 'text/html; charset=utf-8', await readFile(pagePath));
      const file = files[path];
      if (file) return send(res, 200, `${file.type}; charset=utf-8`, await readFile(fileURLToPath(file.path)));
      send(res, 404, 'text/plain', 'not found');
    } catch (err) {
      this.opts.log.error({ err }, 'sfu http error');
      send(res, 500, 'text/plain', 'internal error');
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}
