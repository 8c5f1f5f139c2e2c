// The websocket half of a Calls client, written once for the job's bot (Node, `ws`, Bearer on the
// upgrade) and the browser call page (`authentication_challenge`): hello and connection ids,
// plugin actions out, the events of our call in, and the Go client's reconnect. It imports nothing
// platform-specific: the caller hands it a socket factory. (reference §1, §4)
import type { Action, EventName } from '../protocol/calls.js';
import {
  PREFIX,
  type SessionDescription,
  type WsEvent,
  decodeServerFrame,
  encodeRequest,
  packSdp,
} from '../protocol/wire.js';

/** What a browser WebSocket and `ws` have in common. */
export interface SocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: (() => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export interface CallsSocketOptions {
  /** ws(s)://<site>/api/v4/websocket */
  url: string;
  token: string;
  /** the call (channel) whose events this client takes */
  channelId: string;
  /** a socket to `url`; Node sends `Authorization: Bearer <token>` on the upgrade */
  createSocket(url: string, token: string): SocketLike;
  /** browsers cannot set headers: authenticate with `authentication_challenge` instead */
  challenge?: boolean;
  /** survive a drop as the Go client does (redial, `reconnect`, within 30 s) */
  reconnect?: boolean;
  log?: (message: string) => void;
}

export type CallsEventHandler = (data: Record<string, unknown>) => void;

/** The plugin keeps a dropped session 10 s; the Go client stops trying 30 s after the drop. */
const GIVE_UP_MS = 30_000;
/** From the dial to `hello`: the upgrade and the server's first message, on a loaded site. */
const HELLO_TIMEOUT_MS = 15_000;

export class CallsSocket {
  /** the first connection's id: the session id once joined */
  originalConnId = '';
  connId = '';
  private socket?: SocketLike;
  private seq = 1;
  private readonly handlers = new Map<string, CallsEventHandler[]>();
  private closing = false;
  private joined = false;
  private reconnecting = false;

  constructor(private readonly opts: CallsSocketOptions) {}

  on(event: EventName | 'closed' | 'reconnected', handler: CallsEventHandler): this {
    const list = this.handlers.get(event) ?? [];
    list.push(handler);
    this.handlers.set(event, list);
    return this;
  }

  /** A handler that throws on what the server sent loses that event, not the process. */
  private emit(event: string, data: Record<string, unknown>): void {
    for (const h of this.handlers.get(event) ?? [])
      try {
        h(data);
      } catch (err) {
        this.opts.log?.(`the ${event} event was dropped: ${(err as Error).message}`);
      }
  }

  /** Opens the socket; resolves with the connection id once `hello` came. */
  connect(): Promise<string> {
    return this.dial(false);
  }

  private dial(reconnecting: boolean): Promise<string> {
    const socket = this.opts.createSocket(this.opts.url, this.opts.token);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    return new Promise((resolve, reject) => {
      // A site that accepts the connection but never says hello would hold the join (or the
      // reconnect loop) for ever. Rejected at once: a close waits for the server's (30 s in ws).
      const silent = setTimeout(() => {
        reject(new Error(`no hello from the site within ${HELLO_TIMEOUT_MS / 1000} s`));
        socket.close();
      }, HELLO_TIMEOUT_MS);
      socket.onopen = () => {
        if (this.opts.challenge) this.request('authentication_challenge', { token: this.opts.token });
        // The Go client sends reconnect at once, before hello: the upgrade already authenticated it.
        if (reconnecting)
          this.action('reconnect', {
            channelID: this.opts.channelId,
            originalConnID: this.originalConnId,
            prevConnID: this.connId,
          });
      };
      socket.onmessage = ({ data }) => {
        if (typeof data !== 'string') return; // the server sends JSON text only
        let frame: ReturnType<typeof decodeServerFrame>;
        try {
          frame = decodeServerFrame(data);
        } catch {
          return;
        }
        if (!('event' in frame)) return; // replies to our core actions
        if (frame.event === 'hello') {
          clearTimeout(silent);
          this.connId = String(frame.data.connection_id ?? '');
          if (!this.originalConnId) this.originalConnId = this.connId;
          resolve(this.connId);
          return;
        }
        if (frame.event.startsWith(PREFIX) && this.ours(frame)) this.emit(frame.event.slice(PREFIX.length), frame.data);
      };
      let failure = '';
      // onclose follows; ws says why the upgrade failed here (e.g. 401 for a bad token)
      socket.onerror = (event) => (failure = String((event as { message?: string }).message ?? ''));
      socket.onclose = (event) => {
        clearTimeout(silent);
        reject(new Error(event.reason || failure || `the websocket closed (${event.code})`));
        if (socket !== this.socket || this.closing) return;
        if (this.reconnecting) return; // the loop tries again
        if (this.opts.reconnect && this.joined) void this.reconnectLoop();
        else this.emit('closed', { code: event.code, reason: event.reason });
      };
    });
  }

  /**
   * The Go client's filter: the plugin sends the Calls bot a copy of every call's events, so keep
   * those of our channel, and of the connection ids that are ours.
   */
  private ours(frame: WsEvent): boolean {
    const { data, broadcast } = frame;
    const channel = broadcast.channel_id || data.channelID || data.channel_id;
    if (channel && channel !== this.opts.channelId) return false;
    const conn = broadcast.connection_id || data.connID;
    return !conn || conn === this.connId || conn === this.originalConnId;
  }

  private async reconnectLoop(): Promise<void> {
    this.reconnecting = true;
    const started = Date.now();
    for (let attempt = 1; !this.closing; attempt++) {
      // wait grows by 1 to 1.5 s each try, as the Go client's
      await new Promise((r) => setTimeout(r, attempt * (1000 + Math.random() * 500)));
      if (this.closing) return;
      try {
        await this.dial(true);
        this.reconnecting = false;
        this.opts.log?.(`websocket reconnected (connection ${this.connId}, session ${this.originalConnId})`);
        this.emit('reconnected', { connID: this.connId });
        return;
      } catch (err) {
        this.opts.log?.(`websocket reconnect failed: ${(err as Error).message}`);
        if (Date.now() - started > GIVE_UP_MS) break;
      }
    }
    this.reconnecting = false;
    if (!this.closing)
      this.emit('closed', { code: 1006, reason: 'the websocket dropped and could not be reconnected within 30 s' });
  }

  /** A plugin action as JSON text (captions too: the plugin needs new_audio_len_ms as a float). */
  action(action: Action, data: Record<string, unknown> | null = null): void {
    if (action === 'join') this.joined = true;
    this.request(PREFIX + action, data);
  }

  /** `sdp` must be a binary msgpack frame: the plugin takes its data as bytes. */
  sendSdp(description: SessionDescription): void {
    this.request(`${PREFIX}sdp`, { data: packSdp(description) }, true);
  }

  private request(action: string, data: Record<string, unknown> | null, binary = false): void {
    if (this.socket?.readyState === 1) this.socket.send(encodeRequest({ action, seq: this.seq++, data }, binary));
  }

  close(): void {
    this.closing = true;
    this.socket?.close(1000, 'left');
  }
}
