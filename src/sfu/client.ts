// The participant side of the signalling protocol, written once for both the browser call page
// (served as /static/client.js, with the browser's RTCPeerConnection and WebSocket) and the
// headless participant the jobs use (werift and ws). It therefore imports nothing at run time
// and talks to the peer connection and socket only through the small interfaces below.
import type { ClientMessage, ParticipantInfo, ServerMessage, Source, Subscribe, TrackMapping } from './protocol.js';

export interface SessionDescriptionLike {
  type: string;
  sdp?: string;
}

export interface TransceiverLike {
  mid: string | null;
  direction: string;
  sender: { replaceTrack(track: unknown): Promise<void> | void };
  stop(): void;
}

export interface PeerConnectionLike {
  createOffer(): Promise<SessionDescriptionLike>;
  createAnswer(): Promise<SessionDescriptionLike>;
  setLocalDescription(d: SessionDescriptionLike): Promise<unknown>;
  setRemoteDescription(d: SessionDescriptionLike): Promise<unknown>;
  readonly localDescription: SessionDescriptionLike | null;
  readonly iceGatheringState: string;
  addTransceiver(track: any, init?: { direction?: 'sendonly' | 'recvonly' | 'sendrecv' | 'inactive' }): TransceiverLike;
  ontrack: ((event: { track: any; transceiver: TransceiverLike }) => void) | null;
  createDataChannel(label: string): unknown;
  close(): unknown;
}

export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onopen: (() => void) | null;
}

export interface RemoteTrack {
  /** the platform's track: a browser MediaStreamTrack or a werift one */
  track: any;
  /** the platform's transceiver (its receiver can ask for a keyframe) */
  transceiver: any;
  mid: string;
  source: Source;
  participant: ParticipantInfo;
}

export interface CallClientOptions {
  /** ws:// or wss:// address of the SFU's /ws endpoint */
  url: string;
  callId: string;
  token: string;
  subscribe?: Subscribe;
  createPeerConnection(): PeerConnectionLike;
  createSocket(url: string): SocketLike;
}

type Events = {
  welcome: [ParticipantInfo];
  joined: [ParticipantInfo];
  left: [ParticipantInfo];
  update: [ParticipantInfo];
  voice: [ParticipantInfo];
  caption: [{ sessionId: string; userId: string; displayName: string; text: string }];
  track: [RemoteTrack];
  closed: [{ code: number; reason: string }];
  error: [string];
};

export class CallClient {
  readonly participants = new Map<string, ParticipantInfo>();
  me?: ParticipantInfo;
  private readonly handlers: { [K in keyof Events]?: ((...args: Events[K]) => void)[] } = {};
  private socket?: SocketLike;
  private publisher?: PeerConnectionLike;
  private subscriber?: PeerConnectionLike;
  private readonly published = new Map<Source, TransceiverLike>();
  private mapping = new Map<string, TrackMapping>();
  private answerWaiter?: (sdp: string) => void;
  private publishing: Promise<void> = Promise.resolve();
  private subscriberWork: Promise<void> = Promise.resolve();

  constructor(private readonly opts: CallClientOptions) {}

  on<K extends keyof Events>(event: K, handler: (...args: Events[K]) => void): this {
    (this.handlers[event] ??= [] as never[]).push(handler as never);
    return this;
  }

  private emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    for (const h of this.handlers[event] ?? []) (h as (...a: Events[K]) => void)(...args);
  }

  /** Connects and resolves with our own participant record, or rejects with the close reason. */
  join(): Promise<ParticipantInfo> {
    const q = new URLSearchParams({ token: this.opts.token, call: this.opts.callId, subscribe: this.opts.subscribe ?? 'all' });
    const socket = this.opts.createSocket(`${this.opts.url}?${q}`);
    this.socket = socket;
    return new Promise((resolve, reject) => {
      socket.onmessage = (event) => {
        const message = JSON.parse(String(event.data)) as ServerMessage;
        if (message.type === 'welcome') resolve(message.you);
        this.onMessage(message);
      };
      socket.onclose = (event) => {
        reject(new Error(event.reason || `connection closed (${event.code})`));
        this.emit('closed', { code: event.code, reason: event.reason });
        this.release();
      };
    });
  }

  /**
   * Publishes exactly these sources (a source left out is unpublished) and resolves once the
   * SFU has answered. Calls are serialised.
   */
  publish(tracks: Partial<Record<Source, unknown>>): Promise<void> {
    this.publishing = this.publishing.catch(() => undefined).then(() => this.publishRound(tracks));
    return this.publishing;
  }

  private async publishRound(tracks: Partial<Record<Source, unknown>>): Promise<void> {
    if (!this.publisher) {
      this.publisher = this.opts.createPeerConnection();
      // Keeps the transport up when every source is unpublished (mic and camera off).
      this.publisher.createDataChannel('publish');
    }
    const pc = this.publisher;
    for (const [source, transceiver] of this.published) {
      if (!(source in tracks)) {
        await transceiver.sender.replaceTrack(null);
        transceiver.stop();
        this.published.delete(source);
      }
    }
    for (const [source, track] of Object.entries(tracks) as [Source, unknown][]) {
      const existing = this.published.get(source);
      if (existing) await existing.sender.replaceTrack(track);
      else this.published.set(source, pc.addTransceiver(track, { direction: 'sendonly' }));
    }
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const mapping = [...this.published].map(([source, t]) => ({ mid: t.mid ?? '', source }));
    const answer = new Promise<string>((resolve) => (this.answerWaiter = resolve));
    this.send({ type: 'publish', sdp: pc.localDescription!.sdp!, tracks: mapping });
    await pc.setRemoteDescription({ type: 'answer', sdp: await answer });
  }

  setMuted(source: Source, muted: boolean): void {
    this.send({ type: 'mute', source, muted });
  }

  /** Bots: a caption of what the participant `sessionId` said. */
  sendCaption(sessionId: string, text: string, newAudioLenMs?: number): void {
    this.send({ type: 'caption', sessionId, text, newAudioLenMs });
  }

  leave(): void {
    this.send({ type: 'leave' });
    this.socket?.close(1000, 'left');
    this.release();
  }

  private send(message: ClientMessage): void {
    if (this.socket && this.socket.readyState === 1) this.socket.send(JSON.stringify(message));
  }

  private onMessage(m: ServerMessage): void {
    switch (m.type) {
      case 'welcome':
        this.me = m.you;
        for (const p of m.participants) this.participants.set(p.sessionId, p);
        this.emit('welcome', m.you);
        break;
      case 'joined':
        this.participants.set(m.participant.sessionId, m.participant);
        this.emit('joined', m.participant);
        break;
      case 'left': {
        const p = this.participants.get(m.sessionId);
        this.participants.delete(m.sessionId);
        if (p) this.emit('left', p);
        break;
      }
      case 'update':
        if (m.participant.sessionId === this.me?.sessionId) this.me = m.participant;
        else this.participants.set(m.participant.sessionId, m.participant);
        this.emit('update', m.participant);
        break;
      case 'voice': {
        const p = m.sessionId === this.me?.sessionId ? this.me : this.participants.get(m.sessionId);
        if (p) {
          p.speaking = m.speaking;
          this.emit('voice', p);
        }
        break;
      }
      case 'answer':
        this.answerWaiter?.(m.sdp);
        break;
      case 'offer':
        this.subscriberWork = this.subscriberWork.then(() => this.onOffer(m.sdp, m.tracks)).catch((err) => this.emit('error', String(err)));
        break;
      case 'caption':
        this.emit('caption', m);
        break;
      case 'error':
        this.emit('error', m.message);
        break;
    }
  }

  private async onOffer(sdp: string, tracks: TrackMapping[]): Promise<void> {
    this.mapping = new Map(tracks.map((t) => [t.mid, t]));
    if (!this.subscriber) {
      const pc = this.opts.createPeerConnection();
      pc.ontrack = ({ track, transceiver }) => {
        const map = transceiver.mid ? this.mapping.get(transceiver.mid) : undefined;
        const participant = map && this.participants.get(map.sessionId);
        if (map && participant) this.emit('track', { track, transceiver, mid: map.mid, source: map.source, participant });
      };
      this.subscriber = pc;
    }
    await this.subscriber.setRemoteDescription({ type: 'offer', sdp });
    await this.subscriber.setLocalDescription(await this.subscriber.createAnswer());
    await gathered(this.subscriber);
    this.send({ type: 'subscriber_answer', sdp: this.subscriber.localDescription!.sdp! });
  }

  /** Which participant and source an m-line of the subscribing connection carries now. */
  trackFor(mid: string): TrackMapping | undefined {
    return this.mapping.get(mid);
  }

  private release(): void {
    this.publisher?.close();
    this.subscriber?.close();
    this.publisher = undefined;
    this.subscriber = undefined;
  }
}

/** The protocol sends complete SDP; wait (at most 3 s) until the candidates are in. */
async function gathered(pc: PeerConnectionLike): Promise<void> {
  for (let i = 0; i < 150 && pc.iceGatheringState !== 'complete'; i++) await new Promise((r) => setTimeout(r, 20));
}
