// A call on the bundled SFU: its sessions, what each publishes and who receives it, and the
// plugin's events about it (user_joined, user_left, mute, screen, video, voice, captions).
import type { Logger } from '../../log.js';
import type { IceOptions } from '../ice.js';
import type { CallState, EventName, JobState } from '../protocol/calls.js';
import type { Identity } from './connection.js';
import { RtcSession, type SessionHost } from './session.js';
import type { Track } from './track.js';

/** Delivers an event to a session's current websocket (none while it reconnects). */
export type Deliver = (session: RtcSession, event: EventName, data: Record<string, unknown>) => void;

export class Call implements SessionHost {
  readonly sessions = new Map<string, RtcSession>();
  readonly startAt = Date.now();
  private readonly voiceTimer: NodeJS.Timeout;

  constructor(
    readonly id: string,
    private readonly ice: IceOptions,
    private readonly deliver: Deliver,
    private readonly onEmpty: (call: Call) => void,
    private readonly log: Logger,
    /** a session left the call, by its own leave or by the media side (its connection failed, the call ended) */
    private readonly onLeft: (session: RtcSession) => void = () => undefined,
  ) {
    this.voiceTimer = setInterval(() => {
      for (const s of this.sessions.values()) s.checkVoice();
    }, 200);
    this.voiceTimer.unref();
  }

  /** the call's recording, once one started (what the plugin tells a bot at its join) */
  recording?: JobState;

  /** An event to everyone in the call (but `except`), with the channel as the plugin adds it. */
  broadcast(event: EventName, data: Record<string, unknown>, except?: RtcSession): void {
    for (const s of this.sessions.values()) if (s !== except) this.deliver(s, event, { ...data, channelID: this.id });
  }

  /** The plugin's call_state: every session but bots. */
  state(): CallState {
    const people = [...this.sessions.values()].filter((s) => s.role !== 'bot');
    const screen = people.find((s) => s.tracks.has('screen'));
    return {
      id: this.id,
      start_at: this.startAt,
      sessions: people.map((s) => ({
        session_id: s.id,
        user_id: s.identity.userId,
        unmuted: s.unmuted,
        raised_hand: s.raisedHand,
        video: s.tracks.has('video'),
      })),
      thread_id: '',
      post_id: '',
      screen_sharing_session_id: screen?.id ?? '',
      owner_id: people[0]?.identity.userId ?? '',
      host_id: people[0]?.identity.userId ?? '',
    };
  }

  join(id: string, identity: Identity): RtcSession {
    const session = new RtcSession(id, identity, this.id, this.ice, this, this.log);
    this.sessions.set(id, session);
    if (identity.role !== 'bot') this.broadcast('user_joined', { user_id: identity.userId, session_id: id }, session);
    for (const other of this.sessions.values()) {
      if (other === session) continue;
      for (const track of other.tracks.values()) session.subscribe(track);
    }
    return session;
  }

  leave(session: RtcSession): void {
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    session.close();
    this.onLeft(session);
    if (session.role !== 'bot')
      this.broadcast('user_left', { user_id: session.identity.userId, session_id: session.id });
    if (this.sessions.size === 0) this.close();
  }

  close(): void {
    clearInterval(this.voiceTimer);
    for (const s of [...this.sessions.values()]) this.leave(s);
    this.onEmpty(this);
  }

  // --- SessionHost ---

  signal(session: RtcSession, data: string): void {
    this.deliver(session, 'signal', { data, connID: session.id });
  }

  published(track: Track): void {
    const owner = this.sessions.get(track.ownerId);
    if (owner && (track.type === 'screen' || track.type === 'video')) {
      this.broadcast(track.type === 'screen' ? 'user_screen_on' : 'user_video_on', {
        userID: owner.identity.userId,
        session_id: owner.id,
      });
    }
    for (const s of this.sessions.values()) if (s.id !== track.ownerId) s.subscribe(track);
  }

  unpublished(track: Track): void {
    for (const s of this.sessions.values()) s.unsubscribe(track);
    const owner = this.sessions.get(track.ownerId);
    if (owner && (track.type === 'screen' || track.type === 'video')) {
      this.broadcast(track.type === 'screen' ? 'user_screen_off' : 'user_video_off', {
        userID: owner.identity.userId,
        session_id: owner.id,
      });
    }
  }

  speaking(session: RtcSession, on: boolean): void {
    this.broadcast(on ? 'user_voice_on' : 'user_voice_off', {
      userID: session.identity.userId,
      session_id: session.id,
    });
  }

  failed(session: RtcSession, reason: string): void {
    this.log.debug({ call: this.id, session: session.id, reason }, 'rtc session ended');
    this.leave(session);
  }
}
