// The signalling protocol between the SFU and a participant (browser page or headless), one JSON
// object per WebSocket message. Each participant has two peer connections: a publishing one that
// the participant offers (its microphone, camera and screen) and a subscribing one that the SFU
// offers (everyone else's tracks). One offerer per connection: no glare. SDP is sent complete
// (no trickle ICE). The README documents these messages.

export const sources = ['mic', 'camera', 'screen'] as const;
export type Source = (typeof sources)[number];
export type Subscribe = 'all' | 'audio' | 'none';

export interface TrackState {
  muted: boolean;
}

export interface ParticipantInfo {
  sessionId: string;
  userId: string;
  displayName: string;
  role: 'participant' | 'bot';
  /** the sources this participant publishes now */
  tracks: Partial<Record<Source, TrackState>>;
  speaking: boolean;
}

/** Which remote track an m-line of the subscribing connection carries. */
export interface TrackMapping {
  mid: string;
  sessionId: string;
  source: Source;
}

export type ServerMessage =
  | { type: 'welcome'; you: ParticipantInfo; participants: ParticipantInfo[] }
  | { type: 'joined'; participant: ParticipantInfo }
  | { type: 'left'; sessionId: string }
  | { type: 'update'; participant: ParticipantInfo }
  | { type: 'voice'; sessionId: string; speaking: boolean }
  /** answer to the participant's publishing offer */
  | { type: 'answer'; sdp: string }
  /** offer for the subscribing connection; answer with `subscriber_answer` */
  | { type: 'offer'; sdp: string; tracks: TrackMapping[] }
  | { type: 'caption'; sessionId: string; userId: string; displayName: string; text: string }
  | { type: 'error'; message: string };

export type ClientMessage =
  /** offer of the publishing connection; `tracks` says which m-line carries which source */
  | { type: 'publish'; sdp: string; tracks: { mid: string; source: Source }[] }
  | { type: 'subscriber_answer'; sdp: string }
  | { type: 'mute'; source: Source; muted: boolean }
  /** bots only: a caption of what `sessionId` said */
  | { type: 'caption'; sessionId: string; text: string; newAudioLenMs?: number }
  | { type: 'leave' };

/** WebSocket close codes the SFU uses (4000-4999 are the application's). */
export const closeCodes = {
  unauthorized: 4001,
  replaced: 4002,
  badMessage: 4003,
  shutdown: 4004,
} as const;
