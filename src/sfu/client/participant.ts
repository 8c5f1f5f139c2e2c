// The Calls client a job joins a call with, on a Mattermost server (site_url) or on the bundled SFU
// (the same protocol): the websocket (CallsSocket) and the peer (BotPeer) together, the people in
// the call and what they publish, and the plugin's reasons to stop. Every received RTP packet is
// handed over with whose it is, read from the track id. One implementation for both job programs.
import { MediaStreamTrack, type RtpPacket } from 'werift';
import { WebSocket } from 'ws';
import type { IceOptions } from '../ice.js';
import { displayName, type CallState, type JobState, type Profile } from '../protocol/calls.js';
import { type TrackType, isObject } from '../protocol/wire.js';
import { RateLimiter } from '../../rate-limiter.js';
import { BotPeer, withTimeout } from './peer.js';
import { CallsSocket, type CallsEventHandler, type SocketLike } from './socket.js';

export const sources = ['mic', 'camera', 'screen'] as const;
export type Source = (typeof sources)[number];
const sourceOf: Partial<Record<TrackType, Source>> = { voice: 'mic', video: 'camera', screen: 'screen' };

export interface ParticipantInfo {
  sessionId: string;
  userId: string;
  displayName: string;
  /** the sources this participant publishes now */
  tracks: Partial<Record<Source, { muted: boolean }>>;
  speaking: boolean;
}

export interface RemoteTrack {
  track: MediaStreamTrack;
  transceiver: import('werift').RTCRtpTransceiver;
  mid: string;
  source: Source;
  participant: ParticipantInfo;
}

export interface Publisher {
  sessionId: string;
  userId: string;
  displayName: string;
  source: Source;
  kind: 'audio' | 'video';
  /** negotiated codec in lower case: audio/opus, video/vp8 or video/h264 */
  codec: string;
}

export interface HeadlessOptions {
  /** the site the call is on: a Mattermost site_url, or the bundled SFU's address */
  siteUrl: string;
  /** Bearer token: the Calls bot's (auth_token), or a join token of the bundled SFU */
  token: string;
  callId: string;
  /** the plugin's recording or transcription id: a bot joins for this job */
  jobId?: string;
  /** `audio`: video tracks are not handed over (the transcriber); `none`: nothing is (a publisher) */
  subscribe?: 'all' | 'audio' | 'none';
  ice?: IceOptions;
  videoCodecs?: ('vp8' | 'h264')[];
  /** a session's display name (the bot API's profile route); default: asked at the site with the token */
  profile?: (sessionId: string) => Promise<Profile>;
  /** CAs trusted for wss:// to the site (the system's and tls_ca_cert_file's) */
  ca?: string[];
  /** read the media socket at most this often (ms) instead of as each datagram arrives */
  receiveEveryMs?: number;
  log?: (message: string) => void;
}

type Events = {
  joined: [ParticipantInfo];
  left: [ParticipantInfo];
  update: [ParticipantInfo];
  voice: [ParticipantInfo];
  caption: [{ sessionId: string; userId: string; text: string }];
  track: [RemoteTrack];
  /** the call's recording started at this time (ms since the epoch, the site's clock): its call_job_state */
  recordingStarted: [number];
  /** the plugin asked the job to stop (`job_stop` for our job), or the call ended */
  stop: [string];
  /** the connection is gone for good (websocket not recovered, media failed) */
  closed: [string];
};

/** The media connection must come up within this long after the join. */
const CONNECT_TIMEOUT_MS = 20_000;
/**
 * A message from the site, inflated (ws' default is 100 MiB): a call_state of a thousand sessions
 * or an offer of hundreds of tracks is a few hundred KB.
 */
const MAX_SERVER_MESSAGE_BYTES = 1024 * 1024;
/** People in a call this client keeps track of (and asks the names of); the plugin's largest calls are a few hundred. */
const MAX_PARTICIPANTS = 1000;
/**
 * A person's voice activity is told at most this often: the recording draws it as the speaker's
 * outline, one event a line of its file and a term of the next part's filters. A site that
 * toggled it without pause grew both without bound.
 */
const VOICE_GAP_MS = 500;
/**
 * What a site's events make a job write and compose, in all: people joining (the call's state at
 * the join is not counted) and voice activity (held back, never lost: told as it stands once there
 * is room). A real call is far below; a site sending them without pause is not.
 */
const JOINS = { perSec: 20, burst: 200 };
const VOICES = { perSec: 50, burst: 200 };

export class HeadlessParticipant {
  readonly participants = new Map<string, ParticipantInfo>();
  me?: ParticipantInfo;
  private readonly socket: CallsSocket;
  private peer?: BotPeer;
  private readonly handlers: { [K in keyof Events]?: ((...args: Events[K]) => void)[] } = {};
  private readonly rtpHandlers: ((rtp: RtpPacket, from: Publisher) => void)[] = [];
  private readonly remote = new Map<string, RemoteTrack>();
  private readonly names = new Map<string, Promise<string>>();
  private readonly joins = new RateLimiter(JOINS.perSec, JOINS.burst);
  private readonly voiceRate = new RateLimiter(VOICES.perSec, VOICES.burst);
  private joinsRefused = 0;
  /** people a site told of joining whose names have not come yet */
  private readonly unnamed = new Set<string>();
  /**
   * people who left (the last MAX_PARTICIPANTS): a track of theirs in an offer the site made before
   * they left, read after it, brought them back as present, and the recording never saw everyone leave
   */
  private readonly gone = new Set<string>();
  /** voice activity as last told, when, and a change waiting for VOICE_GAP_MS to pass */
  private readonly voices = new Map<string, { speaking: boolean; at: number; timer?: NodeJS.Timeout }>();
  private lastLeft?: () => void;
  /** Resolves when the last person has left the call: the bot is alone. */
  readonly everyoneLeft = new Promise<void>((resolve) => (this.lastLeft = resolve));
  /** Resolves with why a job must stop: the plugin's job_stop, the call's end, or the connection lost for good. */
  readonly stopped = new Promise<string>((resolve) => {
    this.on('stop', resolve);
    this.on('closed', (reason) => resolve(`the call connection was lost: ${reason}`));
  });

  constructor(private readonly opts: HeadlessOptions) {
    const site = new URL(opts.siteUrl);
    const ws = new URL('/api/v4/websocket', site);
    ws.protocol = site.protocol === 'https:' ? 'wss:' : 'ws:';
    this.socket = new CallsSocket({
      url: ws.toString(),
      token: opts.token,
      channelId: opts.callId,
      createSocket: (url, token) =>
        new WebSocket(url, {
          headers: { authorization: `Bearer ${token}` },
          maxPayload: MAX_SERVER_MESSAGE_BYTES,
          ...(opts.ca ? { ca: opts.ca } : {}),
        }) as unknown as SocketLike,
      reconnect: true,
      log: opts.log,
    });
    this.listen();
  }

  on<K extends keyof Events>(event: K, handler: (...args: Events[K]) => void): this {
    (this.handlers[event] ??= [] as never[]).push(handler as never);
    return this;
  }

  private emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    for (const h of this.handlers[event] ?? [])
      try {
        (h as (...a: Events[K]) => void)(...args);
      } catch (err) {
        this.opts.log?.(`the ${event} event was dropped: ${(err as Error).message}`);
      }
  }

  private listen(): void {
    const s = this.socket;
    const on = (event: Parameters<CallsSocket['on']>[0], handler: CallsEventHandler) => s.on(event, handler);
    on('user_joined', (d) => {
      if (!isSession(d)) return;
      if (this.participants.size >= MAX_PARTICIPANTS)
        return this.opts.log?.(`past ${MAX_PARTICIPANTS} people: one is not followed`);
      if (this.joins.take('site') > 0) {
        if (this.joinsRefused++ % 1000 === 0)
          this.opts.log?.(`the site tells of more than ${JOINS.perSec} people joining a second: not followed`);
        return;
      }
      // Told of once its name has come; gone by then (user_left before the profile's answer), never:
      // a 'joined' after the 'left' had the recording keep a tile for someone who left.
      this.unnamed.add(d.session_id);
      this.gone.delete(d.session_id);
      void this.person(d.session_id, String(d.user_id ?? '')).then((p) => {
        if (!this.unnamed.delete(p.sessionId) || this.participants.get(p.sessionId) !== p) return;
        this.emit('joined', p);
      });
    });
    on('user_left', (d) => {
      const p = this.participants.get(String(d.session_id));
      if (!p) return;
      this.gone.add(p.sessionId);
      if (this.gone.size > MAX_PARTICIPANTS) this.gone.delete(this.gone.values().next().value!);
      clearTimeout(this.voices.get(p.sessionId)?.timer);
      this.voices.delete(p.sessionId);
      this.participants.delete(p.sessionId);
      this.names.delete(p.sessionId);
      if (!this.unnamed.delete(p.sessionId)) this.emit('left', p); // nobody was told of the join
      if (this.participants.size === 0) this.lastLeft?.();
    });
    const change = (source: Source, state: { muted: boolean } | undefined) => (d: Record<string, unknown>) => {
      const p = this.participants.get(String(d.session_id));
      if (!p) return;
      if (state) p.tracks[source] = { ...state };
      else delete p.tracks[source];
      this.emit('update', p);
    };
    on('user_muted', change('mic', { muted: true }));
    on('user_unmuted', change('mic', { muted: false }));
    on('user_screen_on', change('screen', { muted: false }));
    on('user_screen_off', change('screen', undefined));
    on('user_video_on', change('camera', { muted: false }));
    on('user_video_off', change('camera', undefined));
    const voice = (speaking: boolean) => (d: Record<string, unknown>) => {
      const p = this.participants.get(String(d.session_id));
      if (!p) return;
      p.speaking = speaking;
      this.tellVoice(p);
    };
    on('user_voice_on', voice(true));
    on('user_voice_off', voice(false));
    on('caption', (d) =>
      this.emit('caption', { sessionId: String(d.session_id), userId: String(d.user_id), text: String(d.text) }),
    );
    on('call_job_state', (d) => {
      const state = d.jobState as Partial<Record<keyof JobState, unknown>> | null | undefined;
      if (typeof state !== 'object' || state === null || state.type !== 'recording') return;
      if (Number.isSafeInteger(state.start_at) && (state.start_at as number) > 0)
        this.emit('recordingStarted', state.start_at as number);
    });
    on('job_stop', (d) => {
      if (this.opts.jobId && d.job_id === this.opts.jobId) this.emit('stop', 'the plugin stopped the job (job_stop)');
    });
    on('call_end', () => this.emit('stop', 'the call ended'));
    on('call_ended', () => this.emit('stop', 'the call ended'));
    on('closed', (d) => this.emit('closed', String(d.reason || 'the websocket closed')));
  }

  /** A change of `p.speaking` told, or, within VOICE_GAP_MS of the last, told as it stands then. */
  private tellVoice(p: ParticipantInfo): void {
    const told = this.voices.get(p.sessionId) ?? { speaking: false, at: 0 };
    this.voices.set(p.sessionId, told);
    if (told.timer) return;
    const gapMs = told.at + VOICE_GAP_MS - performance.now();
    if (gapMs <= 0 && told.speaking === p.speaking) return;
    const waitMs = gapMs > 0 ? gapMs : this.voiceRate.take('site') > 0 ? VOICE_GAP_MS : 0;
    if (waitMs > 0) {
      told.timer = setTimeout(() => {
        told.timer = undefined;
        if (this.participants.get(p.sessionId) === p) this.tellVoice(p);
      }, waitMs);
      return;
    }
    told.speaking = p.speaking;
    told.at = performance.now();
    this.emit('voice', p);
  }

  /** A person of the call, with the display name from the site (once per session). */
  private async person(sessionId: string, userId: string): Promise<ParticipantInfo> {
    let name = this.names.get(sessionId);
    if (!name) {
      name = this.profile(sessionId).then(
        (p) => displayName(p, userId),
        () => displayName(undefined, userId),
      );
      this.names.set(sessionId, name);
    }
    const known = this.participants.get(sessionId);
    const p = known ?? { sessionId, userId, displayName: userId, tracks: {}, speaking: false };
    this.participants.set(sessionId, p);
    p.displayName = await name;
    return p;
  }

  private async profile(sessionId: string): Promise<Profile> {
    if (this.opts.profile) return this.opts.profile(sessionId);
    const url = new URL(
      `/plugins/com.mattermost.calls/bot/calls/${this.opts.callId}/sessions/${sessionId}/profile`,
      this.opts.siteUrl,
    );
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${this.opts.token}` },
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) throw new Error(`profile of ${sessionId}: ${res.status}`);
    return (await res.json()) as Profile;
  }

  /**
   * Joins: `join` over the websocket, then the first offer. Resolves with our own session once the
   * plugin accepted us, the people in the call are known and media is connected; rejects with the
   * plugin's reason when the join is refused.
   */
  async join(): Promise<ParticipantInfo> {
    try {
      return await this.joinCall();
    } catch (err) {
      this.leave(); // a refused or failed join leaves no socket or peer behind
      throw err;
    }
  }

  private async joinCall(): Promise<ParticipantInfo> {
    await this.socket.connect();
    // The plugin answers our join with `join` (or `error`), then `call_state`, which it sends to
    // every connection of the bot user: another job's bot joining the same call sends one too.
    let state: CallState | undefined;
    this.socket.on('call_state', (d) => {
      try {
        state = JSON.parse(String(d.call)) as CallState;
      } catch {
        // not a call state we can read: the people come with user_joined
      }
    });
    const accepted = new Promise<string>((resolve, reject) => {
      this.socket.on('join', (d) => resolve(String(d.connID)));
      this.socket.on('error', (d) => reject(new Error(String(d.data ?? 'the join was refused'))));
      this.socket.on('closed', (d) => reject(new Error(String(d.reason || 'the websocket closed before the join'))));
    });
    this.socket.action('join', {
      channelID: this.opts.callId,
      jobID: this.opts.jobId ?? '',
      av1Support: false,
      dcSignaling: false,
    });
    const joinedAs = await withTimeout(accepted, 15_000, 'no answer to join within 15 s');
    for (let i = 0; i < 40 && !state; i++) await new Promise((r) => setTimeout(r, 50));
    this.me = {
      sessionId: joinedAs || this.socket.originalConnId,
      userId: '',
      displayName: '',
      tracks: {},
      speaking: false,
    };
    await Promise.all(
      sessionsOf(state).map(async (s) => {
        const p = await this.person(s.session_id, String(s.user_id ?? ''));
        p.tracks.mic = { muted: !s.unmuted };
        if (s.video) p.tracks.camera = { muted: false };
        if (state?.screen_sharing_session_id === s.session_id) p.tracks.screen = { muted: false };
      }),
    );
    const peer = new BotPeer(
      this.socket,
      this.opts.ice ?? iceFor(this.opts.siteUrl),
      this.opts.videoCodecs,
      this.opts.log,
    );
    this.peer = peer;
    peer.onTrack((t) =>
      this.incoming(t).catch((err) => this.opts.log?.(`a track of ${t.sessionId} is not received: ${err.message}`)),
    );
    peer.pc.connectionStateChange.subscribe((state) => {
      if (state === 'failed') this.emit('closed', 'the media connection failed');
    });
    await peer.start();
    await peer.connected(CONNECT_TIMEOUT_MS);
    const every = this.opts.receiveEveryMs;
    if (every && !peer.receiveInBatches(every))
      this.opts.log?.(`media is read as each datagram arrives: this Node's UDP sockets cannot pause`);
    return this.me;
  }

  private async incoming(t: Parameters<Parameters<BotPeer['onTrack']>[0]>[0]): Promise<void> {
    const source = sourceOf[t.type];
    // screen audio is not recorded, as upstream
    if (!source || this.opts.subscribe === 'none' || (this.opts.subscribe === 'audio' && source !== 'mic')) return;
    if (this.gone.has(t.sessionId)) return;
    // the name first: everything recorded of this track carries it
    const participant = await this.person(t.sessionId, this.participants.get(t.sessionId)?.userId ?? t.sessionId);
    if (this.participants.get(t.sessionId) !== participant) return; // left while the name came
    participant.tracks[source] ??= { muted: false };
    const remote: RemoteTrack = { track: t.track, transceiver: t.transceiver, mid: t.mid, source, participant };
    this.remote.set(t.mid, remote);
    // Who sent a packet is built once per track, not per packet.
    const from: Publisher = {
      sessionId: participant.sessionId,
      userId: participant.userId,
      displayName: participant.displayName,
      source,
      kind: source === 'mic' ? 'audio' : 'video',
      codec: (t.track.codec?.mimeType ?? '').toLowerCase(),
    };
    t.track.onReceiveRtp.subscribe((rtp) => {
      for (const h of this.rtpHandlers) h(rtp, from);
    });
    this.emit('track', remote);
    if (source !== 'mic') this.requestKeyframe(t.mid); // a picture at once (the Go bot does so for screens)
  }

  onRtp(handler: (rtp: RtpPacket, from: Publisher) => void): void {
    this.rtpHandlers.push(handler);
  }

  /** Asks the publisher of a video m-line for a keyframe. */
  requestKeyframe(mid: string): void {
    const remote = this.remote.get(mid);
    if (remote) this.peer?.requestKeyframe(remote.transceiver, remote.track);
  }

  /**
   * Publishes these sources (people in tests and benches; jobs only receive): each gets the stream
   * id the server classifies it by, announced with `screen_on` / `video_on` first.
   */
  async publish<S extends Source>(...list: S[]): Promise<Record<S, MediaStreamTrack>> {
    const tracks = Object.fromEntries(
      list.map((s) => [s, new MediaStreamTrack({ kind: s === 'mic' ? 'audio' : 'video' })]),
    ) as Record<S, MediaStreamTrack>;
    const streams = list.map((source) => ({ source, streamId: `${source}-${this.me?.sessionId}` }));
    for (const { source, streamId } of streams) {
      if (source === 'screen') this.socket.action('screen_on', { data: JSON.stringify({ screenStreamID: streamId }) });
      if (source === 'camera') this.socket.action('video_on', { data: JSON.stringify({ videoStreamID: streamId }) });
    }
    if (list.includes('mic' as S)) this.socket.action('unmute');
    await this.peer!.publish(streams.map(({ source, streamId }) => ({ track: tracks[source], streamId })));
    return tracks;
  }

  setMuted(muted: boolean): void {
    this.socket.action(muted ? 'mute' : 'unmute');
  }

  /** The Calls bot's live caption of what `sessionId` said (JSON text: the plugin needs the length as a float). */
  sendCaption(sessionId: string, text: string, newAudioLenMs: number): void {
    this.socket.action('caption', { session_id: sessionId, text, new_audio_len_ms: newAudioLenMs });
  }

  leave(): void {
    for (const told of this.voices.values()) clearTimeout(told.timer);
    this.socket.action('leave');
    this.socket.close();
    this.peer?.close();
  }
}

/** A session in an event or a call state: the site's data has a session id, or is not one. */
const isSession = (s: unknown): s is CallState['sessions'][number] =>
  isObject(s) && typeof s.session_id === 'string' && s.session_id !== '';

/** The sessions of a call_state, up to MAX_PARTICIPANTS. */
function sessionsOf(state: CallState | undefined): CallState['sessions'] {
  const sessions: unknown = state?.sessions;
  return Array.isArray(sessions) ? sessions.filter(isSession).slice(0, MAX_PARTICIPANTS) : [];
}

/** Media on loopback stays on loopback (tests, a single host); elsewhere any interface. */
function iceFor(siteUrl: string): IceOptions {
  const host = new URL(siteUrl).hostname;
  return { bindAddress: host.startsWith('127.') || host === 'localhost' ? '127.0.0.1' : '0.0.0.0' };
}
