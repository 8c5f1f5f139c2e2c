// One websocket of the bundled SFU, as Mattermost's web connection behaves: `hello` with the
// connection id once authenticated, events numbered from 0, replies to core actions by seq.
import { randomBytes } from 'node:crypto';
import type { WebSocket } from 'ws';
import type { EventName } from '../protocol/calls.js';
import { PREFIX, type WsEvent, type WsReply } from '../protocol/wire.js';

/** Who holds a token: a person joining from the call page, or a job's bot. */
export interface Identity {
  userId: string;
  displayName: string;
  role: 'participant' | 'bot';
  /** the only call this identity may join; undefined: any (the Mattermost stand-in's bot) */
  callId?: string;
}

/** Same alphabet and length as Mattermost ids. */
export function newId(): string {
  const alphabet = 'ybndrfg8ejkmcpqxot1uwisza345h769';
  let id = '';
  for (const b of randomBytes(26)) id += alphabet[b & 31];
  return id;
}

/** Replies and events queued for a peer that does not read: past this the socket is cut, as Mattermost cuts a connection whose send queue is full. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/**
 * A peer that does not answer our close frame is cut after this, not after ws' 30 s: a socket that
 * failed to authenticate counted against its address's bound all that time.
 */
const CLOSE_ANSWER_MS = 1000;

export class WsConnection {
  readonly id = newId();
  identity?: Identity;
  /** the call session this connection signals for, once joined or reconnected */
  sessionId?: string;
  /** a ping went out and no pong came back yet */
  awaitingPong = false;
  private seq = 0;

  constructor(
    readonly socket: WebSocket,
    /** whom the peer's IP address stands for (addressOwner) */
    readonly address: string,
  ) {}

  get open(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  /** A plugin event (`custom_com.mattermost.calls_<name>`) or a core one (`hello`). */
  event(name: EventName | 'hello', data: Record<string, unknown>, channelId = ''): void {
    if (!this.open) return;
    const event: WsEvent = {
      event: name === 'hello' ? 'hello' : PREFIX + name,
      data,
      broadcast: {
        user_id: '',
        channel_id: channelId,
        connection_id: name === 'hello' ? '' : this.id,
        omit_users: null,
      },
      seq: this.seq++,
    };
    this.send(event);
  }

  reply(seq: number, status: WsReply['status'], data?: Record<string, unknown>, error?: string): void {
    if (!this.open) return;
    const reply: WsReply = {
      status,
      seq_reply: seq,
      ...(data ? { data } : {}),
      ...(error ? { error: { id: 'api.web_socket_router.bad_request', message: error } } : {}),
    };
    this.send(reply);
  }

  private send(frame: WsEvent | WsReply): void {
    if (this.socket.bufferedAmount > MAX_BUFFERED_BYTES) return this.socket.terminate();
    this.socket.send(JSON.stringify(frame));
  }

  close(code: number, reason: string): void {
    if (this.socket.readyState !== this.socket.OPEN && this.socket.readyState !== this.socket.CONNECTING) return;
    this.socket.close(code, reason);
    setTimeout(() => this.socket.terminate(), CLOSE_ANSWER_MS).unref();
  }
}
