// The Mattermost Calls wire format, written once for the bundled SFU (server/), the job's calls
// client (client/) and the browser call page: websocket requests and events, zlib-compressed SDP,
// the `calls-dc` data-channel messages and the track ids that say whose media a track carries.
// It runs in Node and in the browser alike, so it imports only msgpack and fflate.
// (shared/reference/mattermost-calls-protocol.md §1–§5)
import { decode, decodeMulti, encode } from '@msgpack/msgpack';
import { Unzlib, strFromU8, strToU8, zlibSync } from 'fflate';

export const PLUGIN_ID = 'com.mattermost.calls';
/** Plugin actions and events are named `custom_com.mattermost.calls_<type>`. */
export const PREFIX = `custom_${PLUGIN_ID}_`;

/** Mattermost's read limit per websocket message (SocketMaxMessageSizeKb): why SDP is compressed. */
export const MAX_WS_MESSAGE_BYTES = 8 * 1024;
/** The plugin inflates SDP with this cap. */
export const MAX_SDP_BYTES = 64 * 1024;

export class ProtocolError extends Error {}

/**
 * What msgpack may allocate for one frame. Its defaults take an array header's length as given (up
 * to 2³²−1) and allocate it: a 6 KB frame of such headers exhausted a 512 MB heap. No message of
 * the protocol holds an array of more than a few items, a map of more entries than a call's
 * forwarded tracks (MediaMap: one per m-line; a map is not allocated ahead), or a string or bytes
 * longer than a frame.
 */
const MSGPACK_LIMITS = {
  maxArrayLength: 16,
  maxMapLength: 1024,
  maxStrLength: MAX_SDP_BYTES,
  maxBinLength: MAX_SDP_BYTES,
  maxExtLength: 0,
};

/** A client → server request: `{action, seq, data}`, as JSON text or a msgpack binary frame. */
export interface WsRequest {
  action: string;
  seq: number;
  data: Record<string, unknown> | null;
}

/** A server → client event (JSON text). */
export interface WsEvent {
  event: string;
  data: Record<string, unknown>;
  broadcast: { user_id?: string; channel_id?: string; connection_id?: string; omit_users?: null };
  seq: number;
}

/** A reply to a core action (`authentication_challenge`, `ping`). */
export interface WsReply {
  status: 'OK' | 'FAIL';
  seq_reply: number;
  data?: Record<string, unknown>;
  error?: { id: string; message: string };
}

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A request as text (JSON) or, for `sdp`, a binary msgpack frame: the bytes must stay bytes. */
export function encodeRequest(request: WsRequest, binary = false): string | Uint8Array {
  return binary ? encode(request) : JSON.stringify(request);
}

/** Reads a client's frame; throws ProtocolError (the server then closes the socket, as Mattermost does). */
export function decodeRequest(frame: string | Uint8Array): WsRequest {
  let value: unknown;
  try {
    value = typeof frame === 'string' ? JSON.parse(frame) : decode(frame, MSGPACK_LIMITS);
  } catch {
    throw new ProtocolError('undecodable frame');
  }
  if (!isObject(value) || typeof value.action !== 'string' || value.action.length > 128)
    throw new ProtocolError('a request needs an action');
  const seq = value.seq ?? 0;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq)) throw new ProtocolError('seq must be an integer');
  if (value.data !== undefined && value.data !== null && !isObject(value.data))
    throw new ProtocolError('data must be an object');
  return { action: value.action, seq, data: (value.data as Record<string, unknown> | undefined) ?? null };
}

/**
 * Reads a server's frame: an event or a reply. An event's `data` and `broadcast` are objects
 * whatever the server sent (`{}` for a missing, null or other one), so that handlers read fields.
 */
export function decodeServerFrame(frame: string): WsEvent | WsReply {
  const value = JSON.parse(frame) as unknown;
  if (!isObject(value)) throw new ProtocolError('neither an event nor a reply');
  if (typeof value.event === 'string')
    return {
      event: value.event,
      data: isObject(value.data) ? value.data : {},
      broadcast: isObject(value.broadcast) ? value.broadcast : {},
      seq: typeof value.seq === 'number' ? value.seq : 0,
    };
  if (typeof value.seq_reply === 'number') return value as unknown as WsReply;
  throw new ProtocolError('neither an event nor a reply');
}

export interface SessionDescription {
  type: 'offer' | 'answer';
  sdp: string;
}

/** zlib input fed this much at a time: deflate expands 1 KiB to at most about 1 MiB. */
const INFLATE_STEP = 1024;

/**
 * zlib data inflated up to MAX_SDP_BYTES: fed in steps, and given up at the first step that goes
 * past. fflate's one-shot inflate into a buffer of that size stops writing there but not inflating:
 * 64 KiB of zlib (64 MiB of zeros) held the event loop 214 ms, against 22 ms in steps.
 */
function inflate(data: Uint8Array): Uint8Array {
  if (data.length === 0) throw new ProtocolError('sdp is not zlib data');
  const chunks: Uint8Array[] = [];
  let size = 0;
  const stream = new Unzlib((chunk) => {
    size += chunk.length;
    if (size <= MAX_SDP_BYTES) chunks.push(chunk);
  });
  try {
    for (let at = 0; at < data.length && size <= MAX_SDP_BYTES; at += INFLATE_STEP)
      stream.push(data.subarray(at, at + INFLATE_STEP), at + INFLATE_STEP >= data.length);
  } catch {
    throw new ProtocolError('sdp is not zlib data');
  }
  if (size > MAX_SDP_BYTES) throw new ProtocolError('sdp is larger than 64 KiB');
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** zlib (RFC 1950, not raw deflate) of the description's JSON, as the webapp and rtcd send it. */
export function packSdp(description: SessionDescription): Uint8Array {
  return zlibSync(strToU8(JSON.stringify({ type: description.type, sdp: description.sdp })));
}

export function unpackSdp(data: unknown): SessionDescription {
  if (!(data instanceof Uint8Array)) throw new ProtocolError('sdp data must be bytes');
  const text = strFromU8(inflate(data));
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError('sdp is not JSON');
  }
  if (!isObject(value) || (value.type !== 'offer' && value.type !== 'answer') || typeof value.sdp !== 'string') {
    throw new ProtocolError('sdp must be {type: offer|answer, sdp}');
  }
  return { type: value.type, sdp: value.sdp };
}

// --- calls-dc data-channel messages (rtcd service/rtc/dc/msg.go): a msgpack type number, then
// at most one msgpack value, concatenated (not an array). ---

export const DcType = {
  Ping: 1,
  Pong: 2,
  SDP: 3,
  LossRate: 4,
  RoundTripTime: 5,
  Jitter: 6,
  Lock: 7,
  Unlock: 8,
  MediaMap: 9,
} as const;
export type DcType = (typeof DcType)[keyof typeof DcType];

/** Which session's which kind of track an m-line (mid) carries. */
export type MediaMap = Record<string, { type: TrackType; sender_id: string }>;

export type DcMessage =
  | { type: typeof DcType.Ping | typeof DcType.Pong | typeof DcType.Unlock }
  | { type: typeof DcType.Lock; granted?: boolean }
  | { type: typeof DcType.SDP; description: SessionDescription }
  | { type: typeof DcType.LossRate | typeof DcType.RoundTripTime | typeof DcType.Jitter; value: number }
  | { type: typeof DcType.MediaMap; map: MediaMap };

/** Encodes as Go does: the type as a msgpack uint8 (0xcc NN), then the payload. */
export function encodeDc(message: DcMessage): Uint8Array {
  const type = new Uint8Array([0xcc, message.type]);
  let payload: Uint8Array | undefined;
  switch (message.type) {
    case DcType.Lock:
      if (message.granted !== undefined) payload = encode(message.granted);
      break;
    case DcType.SDP:
      payload = encode(packSdp(message.description));
      break;
    case DcType.LossRate:
    case DcType.RoundTripTime:
    case DcType.Jitter:
      payload = encode(message.value, { forceFloat32: false });
      break;
    case DcType.MediaMap:
      payload = encode(message.map);
      break;
  }
  if (!payload) return type;
  const out = new Uint8Array(type.length + payload.length);
  out.set(type);
  out.set(payload, type.length);
  return out;
}

/**
 * A data-channel message's type, its first msgpack value, read alone: what it asks can be rated
 * before its payload is decoded (an SDP inflated). Undefined where there is none.
 */
export function dcType(bytes: Uint8Array): unknown {
  try {
    for (const first of decodeMulti(bytes, MSGPACK_LIMITS)) return first;
  } catch {
    // decodeDc says what is wrong with it
  }
  return undefined;
}

/** Decodes a data-channel message; unknown types and bad payloads are ProtocolErrors. */
export function decodeDc(bytes: Uint8Array): DcMessage {
  let values: unknown[];
  try {
    values = [...decodeMulti(bytes, MSGPACK_LIMITS)];
  } catch {
    throw new ProtocolError('undecodable data-channel message');
  }
  const [type, payload] = values;
  switch (type) {
    case DcType.Ping:
    case DcType.Pong:
    case DcType.Unlock:
      return { type };
    case DcType.Lock:
      return typeof payload === 'boolean' ? { type, granted: payload } : { type };
    case DcType.SDP:
      return { type, description: unpackSdp(payload) };
    case DcType.LossRate:
    case DcType.RoundTripTime:
    case DcType.Jitter:
      if (typeof payload !== 'number') throw new ProtocolError('metric must be a number');
      return { type, value: payload };
    case DcType.MediaMap:
      if (!isObject(payload)) throw new ProtocolError('media map must be a map');
      return { type, map: payload as MediaMap };
    default:
      throw new ProtocolError(`unknown data-channel message type ${String(type)}`);
  }
}

// --- track ids: `<type>_<senderSessionID>_<random>`, stream id = the sender's session id ---

export const trackTypes = ['voice', 'screen', 'screen-audio', 'video'] as const;
export type TrackType = (typeof trackTypes)[number];

export function formatTrackId(type: TrackType, sessionId: string, random: string): string {
  return `${type}_${sessionId}_${random}`;
}

/**
 * A session id as Mattermost (26 of [a-z0-9]) and rtcd make them, with room for other servers'. It
 * names the jobs' track files: a track id is the sending site's to choose, and one whose session
 * was `/../../../tmp/x` had the recorder create or truncate /tmp/x.webm.
 */
const SESSION_ID = /^[A-Za-z0-9-]{1,64}$/;

/** rtcd's ParseTrackID: at least three fields split on `_`; the type and the sender's session. */
export function parseTrackId(id: string): { type: TrackType; sessionId: string } | null {
  const fields = id.split('_');
  if (fields.length < 3) return null;
  const type = fields[0] as TrackType;
  if (!trackTypes.includes(type) || !SESSION_ID.test(fields[1]!)) return null;
  return { type, sessionId: fields[1]! };
}
