// The RTC half of the job's Calls client, as rtcd's Go client does it with werift: one peer
// connection; the data channel `calls-dc` and the first offer come from us; trickle ICE both ways,
// remote candidates queued until a remote description is set; every server offer answered at
// once; later offers of ours (publishing) only under the data channel's lock. (reference §4–§5, §8)
import {
  type MediaStreamTrack,
  RTCPeerConnection,
  type RTCDataChannel,
  type RTCRtpReceiver,
  type RTCRtpTransceiver,
} from 'werift';
import { type IceOptions, outgoingCandidate, peerConfig } from '../ice.js';
import { udpSocketsOf } from '../udp-sockets.js';
import { receiveInBatches } from './batched-receive.js';
import {
  DcType,
  type DcMessage,
  type SessionDescription,
  type TrackType,
  decodeDc,
  encodeDc,
  isObject,
  parseTrackId,
} from '../protocol/wire.js';
import type { CallsSocket } from './socket.js';

export interface IncomingTrack {
  track: MediaStreamTrack;
  transceiver: RTCRtpTransceiver;
  receiver: RTCRtpReceiver;
  mid: string;
  type: TrackType;
  /** the sender's session id, from the track id */
  sessionId: string;
}

const PING_MS = 1000;
/**
 * The Go client's lock: retry 100 ms after each refusal, give up when a request gets no reply
 * within 5 s (and, unlike it, after 30 s of refusals: the SFU is then never idle).
 */
const LOCK_RETRY_MS = 100;
const LOCK_REPLY_MS = 5000;
const LOCK_GIVE_UP_MS = 30_000;
/** An offer and its trickled candidates are a few dozen at most. */
const MAX_PENDING_SIGNALS = 64;
/**
 * Candidates the site may trickle before its answer, and their length (a candidate line is under
 * 200 characters): they wait in memory, and a site that never answers sent them without end.
 */
const MAX_QUEUED_CANDIDATES = 64;
const MAX_CANDIDATE_CHARS = 1024;

export class BotPeer {
  readonly pc: RTCPeerConnection;
  private readonly dc: RTCDataChannel;
  private readonly remoteCandidates: { candidate: string; sdpMid?: string; sdpMLineIndex?: number }[] = [];
  private readonly trackHandlers: ((t: IncomingTrack) => void)[] = [];
  private readonly seen = new Set<string>();
  private lockWaiter?: (granted: boolean) => void;
  private answerWaiter?: (d: SessionDescription) => void;
  private readonly pinger: NodeJS.Timeout;
  /** server signals in order; our own offers in another chain (an answer must not wait behind its offer) */
  private signals: Promise<unknown> = Promise.resolve();
  private pendingSignals = 0;
  private publishing: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly socket: CallsSocket,
    private readonly ice: IceOptions,
    videoCodecs?: ('vp8' | 'h264')[],
    private readonly log?: (message: string) => void,
  ) {
    this.pc = new RTCPeerConnection(peerConfig(ice, videoCodecs));
    this.dc = this.pc.createDataChannel('calls-dc');
    this.dc.onMessage.subscribe((data) => this.onDcMessage(data));
    this.pinger = setInterval(() => this.sendDc({ type: DcType.Ping }), PING_MS);
    this.pc.onIceCandidate.subscribe((c) => {
      const line = c?.candidate && outgoingCandidate(c.candidate, this.ice);
      if (line) this.socket.action('ice', { data: JSON.stringify({ ...c!.toJSON(), candidate: line }) });
    });
    this.pc.ontrack = ({ track, transceiver, receiver }) => {
      const parsed = parseTrackId(receiver.remoteTrackId ?? '');
      const mid = transceiver.mid ?? '';
      // werift may report an m-line again on renegotiation: one track per mid and id
      const key = `${mid}/${receiver.remoteTrackId}`;
      if (!parsed || this.seen.has(key)) return;
      this.seen.add(key);
      for (const h of this.trackHandlers)
        h({ track, transceiver, receiver, mid, type: parsed.type, sessionId: parsed.sessionId });
    };
    socket.on('signal', (data) => {
      // A site that sends signals faster than they are applied would queue them without end.
      if (this.pendingSignals >= MAX_PENDING_SIGNALS)
        return this.log?.(`a signal was dropped: ${MAX_PENDING_SIGNALS} wait`);
      this.pendingSignals++;
      this.signals = this.signals
        .then(() => this.onSignal(String(data.data ?? '')))
        .catch(() => undefined)
        .finally(() => this.pendingSignals--);
    });
  }

  onTrack(handler: (t: IncomingTrack) => void): void {
    this.trackHandlers.push(handler);
  }

  /** The first offer: the data channel (and any tracks added before). No lock: nothing to collide with yet. */
  async start(): Promise<void> {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    this.socket.sendSdp({ type: 'offer', sdp: this.pc.localDescription!.sdp });
  }

  /** Resolves when ICE and DTLS are up. */
  connected(timeoutMs: number): Promise<void> {
    if (this.pc.connectionState === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `no media connection within ${timeoutMs / 1000} s (ICE ${this.pc.iceConnectionState}, signalling ${this.pc.signalingState}): UDP to the call's media server is blocked, or it offered no candidate we can reach`,
            ),
          ),
        timeoutMs,
      );
      const { unSubscribe } = this.pc.connectionStateChange.subscribe((state) => {
        if (state === 'connected') {
          clearTimeout(timer);
          unSubscribe();
          resolve();
        } else if (state === 'failed' || state === 'closed') {
          clearTimeout(timer);
          unSubscribe();
          reject(new Error(`media connection ${state}`));
        }
      });
    });
  }

  /**
   * Reads the media sockets at most once every `everyMs` (batched-receive.ts); false where this
   * Node cannot.
   */
  receiveInBatches(everyMs: number): boolean {
    const sockets = udpSocketsOf(this.pc);
    return sockets.length > 0 && sockets.every((socket) => receiveInBatches(socket, everyMs));
  }

  private async onSignal(json: string): Promise<void> {
    const msg = JSON.parse(json) as unknown;
    if (!isObject(msg)) return;
    if (msg.type === 'candidate' && isObject(msg.candidate)) {
      const c = msg.candidate as { candidate?: unknown; sdpMid?: unknown; sdpMLineIndex?: unknown };
      if (typeof c.candidate !== 'string' || !c.candidate) return;
      const candidate = {
        candidate: c.candidate,
        sdpMid: typeof c.sdpMid === 'string' ? c.sdpMid : undefined,
        sdpMLineIndex: typeof c.sdpMLineIndex === 'number' ? c.sdpMLineIndex : undefined,
      };
      if (this.pc.remoteDescription) await this.pc.addIceCandidate(candidate).catch(() => undefined);
      else if (
        this.remoteCandidates.length < MAX_QUEUED_CANDIDATES &&
        candidate.candidate.length <= MAX_CANDIDATE_CHARS
      )
        this.remoteCandidates.push(candidate);
    } else if (msg.type === 'offer' && typeof msg.sdp === 'string') {
      await this.pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      await this.flushCandidates();
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      this.socket.sendSdp({ type: 'answer', sdp: this.pc.localDescription!.sdp });
    } else if (msg.type === 'answer' && typeof msg.sdp === 'string') {
      const description: SessionDescription = { type: 'answer', sdp: msg.sdp };
      if (this.answerWaiter) this.answerWaiter(description);
      else {
        await this.pc.setRemoteDescription(description);
        await this.flushCandidates();
      }
    }
  }

  private async flushCandidates(): Promise<void> {
    for (const c of this.remoteCandidates.splice(0)) await this.pc.addIceCandidate(c).catch(() => undefined);
  }

  private onDcMessage(data: string | Buffer): void {
    if (typeof data === 'string') return;
    let message: DcMessage;
    try {
      message = decodeDc(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } catch {
      return; // unknown types are ignored, as newer servers send more
    }
    // MediaMap is not needed: rtcd fills its sender_id with the receiver's own id; the track id decides
    if (message.type === DcType.Lock && message.granted !== undefined) this.lockWaiter?.(message.granted);
  }

  private sendDc(message: DcMessage): void {
    if (this.dc.readyState === 'open') this.dc.send(Buffer.from(encodeDc(message)));
  }

  /** Takes the data channel's lock, retrying 100 ms after each refusal; false when a request goes unanswered for 5 s. */
  private async lock(): Promise<boolean> {
    const until = Date.now() + LOCK_GIVE_UP_MS;
    while (Date.now() < until) {
      const granted = await new Promise<boolean | undefined>((resolve) => {
        this.lockWaiter = resolve;
        this.sendDc({ type: DcType.Lock });
        setTimeout(() => resolve(undefined), LOCK_REPLY_MS);
      });
      this.lockWaiter = undefined;
      if (granted === undefined) return false;
      if (granted) return true;
      await new Promise((r) => setTimeout(r, LOCK_RETRY_MS));
    }
    return false;
  }

  /**
   * Adds tracks to send, each with the stream id the server classifies it by, and offers them
   * under the data channel's lock. `streamId` per track: voice under any id, screen under the
   * id announced with `screen_on`, camera under the one announced with `video_on`.
   */
  publish(tracks: { track: MediaStreamTrack; streamId: string }[]): Promise<void> {
    const round = this.publishing.then(async () => {
      // after the first negotiation, and under the lock
      await this.dcOpen();
      const locked = await this.lock();
      if (!locked) throw new Error('the SFU did not grant the signalling lock');
      // Only now, with the SFU's offers applied and no new one coming, are our m-lines made:
      // werift pairs an SFU offer's new m-line with a transceiver of ours not negotiated yet.
      await this.signals;
      for (const { track, streamId } of tracks) {
        const transceiver = this.pc.addTransceiver(track, { direction: 'sendonly' });
        transceiver.sender.streamIds = [streamId];
      }
      try {
        const answer = new Promise<SessionDescription>((resolve) => (this.answerWaiter = resolve));
        await this.pc.setLocalDescription(await this.pc.createOffer());
        this.socket.sendSdp({ type: 'offer', sdp: this.pc.localDescription!.sdp });
        await this.pc.setRemoteDescription(await withTimeout(answer, 10_000, 'no answer to our offer within 10 s'));
        await this.flushCandidates();
      } finally {
        this.answerWaiter = undefined;
        this.sendDc({ type: DcType.Unlock });
      }
    });
    this.publishing = round.catch(() => undefined);
    return round;
  }

  /** The data channel opens once the first negotiation has connected us. */
  private async dcOpen(): Promise<void> {
    for (let i = 0; i < 300 && this.dc.readyState !== 'open'; i++) await new Promise((r) => setTimeout(r, 50));
    if (this.dc.readyState !== 'open') throw new Error('the data channel did not open within 15 s');
  }

  /** Asks the sender of a video m-line for a keyframe. */
  requestKeyframe(transceiver: RTCRtpTransceiver, track: MediaStreamTrack): void {
    if (track.ssrc !== undefined) void transceiver.receiver.sendRtcpPLI(track.ssrc).catch(() => undefined);
  }

  close(): void {
    clearInterval(this.pinger);
    void this.pc.close().catch(() => undefined);
  }
}

/** `p`, or a rejection with `message` after `ms`. */
export function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(message)), ms).unref())]);
}
