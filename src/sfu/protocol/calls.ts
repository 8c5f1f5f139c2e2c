// The Calls plugin's actions and events as this project uses them, and the shapes of their data
// (reference §2–§3). Both the bundled SFU and the calls client import these names, so a typo is a
// compile error rather than a silent mismatch with the real plugin.

/** Client → server plugin actions (sent as `custom_com.mattermost.calls_<action>`). */
export const actions = [
  'join',
  'leave',
  'reconnect',
  'sdp',
  'ice',
  'mute',
  'unmute',
  'screen_on',
  'screen_off',
  'video_on',
  'video_off',
  'raise_hand',
  'unraise_hand',
  'react',
  'call_state',
  'caption',
  'metric',
  'ping',
] as const;
export type Action = (typeof actions)[number];

/** Server → client plugin events (`custom_com.mattermost.calls_<event>`). */
export type EventName =
  | 'join'
  | 'error'
  | 'signal'
  | 'call_state'
  | 'call_start'
  | 'call_end'
  | 'call_ended'
  | 'user_joined'
  | 'user_left'
  | 'user_muted'
  | 'user_unmuted'
  | 'user_voice_on'
  | 'user_voice_off'
  | 'user_screen_on'
  | 'user_screen_off'
  | 'user_video_on'
  | 'user_video_off'
  | 'user_raise_hand'
  | 'user_unraise_hand'
  | 'caption'
  | 'job_stop'
  | 'call_job_state';

/** One session of `call_state.call.sessions` (the bot is left out). */
export interface SessionState {
  session_id: string;
  user_id: string;
  unmuted: boolean;
  raised_hand: number;
  video?: boolean;
}

/** `call_state.call`, sent as a JSON string. */
export interface CallState {
  id: string;
  start_at: number;
  sessions: SessionState[];
  thread_id: string;
  post_id: string;
  screen_sharing_session_id: string;
  owner_id: string;
  host_id: string;
}

/** `call_job_state.jobState`: a recording's or transcription's state (ms since the epoch; 0: not yet). */
export interface JobState {
  type: 'recording' | 'transcribing' | 'captioning';
  init_at: number;
  start_at: number;
  end_at: number;
  err?: string;
}

/** The bot API's sanitized user, for a session's display name. */
export interface Profile {
  id: string;
  username: string;
  first_name?: string;
  last_name?: string;
  nickname?: string;
}

/** Mattermost's names are 64 characters each: a first and a last name with room to spare. */
const MAX_NAME_LENGTH = 160;

/**
 * The name Mattermost shows for a profile, else `fallback` (the user id). A site's answer is
 * checked, not trusted: it may be no profile at all, hold fields that are not strings, or be long,
 * and its control characters (line breaks among them) would break a transcript's or a caption's
 * lines.
 */
export function displayName(profile: unknown, fallback: string): string {
  const p = (typeof profile === 'object' && profile !== null ? profile : {}) as Record<keyof Profile, unknown>;
  const text = (v: unknown) => (typeof v === 'string' ? v : '');
  const name =
    [text(p.first_name), text(p.last_name)].filter(Boolean).join(' ') || text(p.nickname) || text(p.username);
  return (name || fallback)
    .replace(/[\p{Cc}\u2028\u2029]+/gu, ' ')
    .trim()
    .slice(0, MAX_NAME_LENGTH);
}

/** Seconds the plugin keeps an RTC session after its websocket drops, waiting for `reconnect`. */
export const RECONNECT_WINDOW_MS = 10_000;

/** The plugin's rate limit of a session's messages: 10 a second, bursts of 100, the excess dropped. */
export const PLUGIN_RATE = { perSec: 10, burst: 100 } as const;
