// The media object model of the bundled SFU: a Call holds Participants; a Participant publishes
// Tracks on its publishing connection and receives everyone else's through Subscriptions on its
// subscribing connection. Every object has an explicit close() that frees what it holds.
import { RTCPeerConnection, type MediaStreamTrack, type RTCRtpReceiver, type RTCRtpTransceiver, type RtpPacket } from 'werift';
import type { Logger } from '../log.js';
import { type IceOptions, outgoingSdp, peerConfig } from './ice.js';
import type { JoinClaims } from './token.js';
import type { ClientMessage, ParticipantInfo, ServerMessage, Source, Subscribe, TrackMapping } from './protocol.js';

/** Opus frames above this many bytes carry sound; silence and comfort noise are smaller. */
const VOICE_PAYLOAD_BYTES = 24;
const VOICE_ON_PACKETS = 5;
const VOICE_OFF_MS = 600;
const KEYFRAME_MIN_INTERVAL_MS = 300;

type Unsubscribe = () => void;

export class Call {
  readonly participants = new Map<string, Participant>();
  private readonly voiceTimer: NodeJS.Timeout;

  constructor(readonly id: string, private readonly onEmpty: (call: Call) => void) {
    this.voiceTimer = setInterval(() => {
      for (const p of this.participants.values()) p.checkVoice();
    }, 200);
    this.voiceTimer.unref();
  }

  broadcast(message: ServerMessage, except?: Participant): void {
    for (const p of this.participants.values()) if (p !== except) p.send(message);
  }

  add(p: Participant): void {
    this.participants.get(p.info.sessionId)?.close('replaced by a new connection of the same session');
    this.participants.set(p.info.sessionId, p);
    p.send({ type: 'welcome', you: p.info, participants: [...this.participants.values()].filter((o) => o !== p).map((o) => o.info) });
    this.broadcast({ type: 'joined', participant: p.info }, p);
    for (const other of this.participants.values()) {
      if (other === p) continue;
      for (const track of other.tracks.values()) p.subscribe(track);
    }
    p.connect();
  }

  remove(p: Participant): void {
    if (this.participants.get(p.info.sessionId) !== p) return;
    this.participants.delete(p.info.sessionId);
    for (const other of this.participants.values()) other.unsubscribeFrom(p);
    this.broadcast({ type: 'left', sessionId: p.info.sessionId });
    if (this.participants.size === 0) this.close();
  }

  close(): void {
    clearInterval(this.voiceTimer);
    for (const p of [...this.participants.values()]) p.close('the call ended');
    this.onEmpty(this);
  }
}

/** Packets in and out of the SFU, for /metrics and the benchmark. */
export const counters = { received: 0, forwarded: 0, keyframeRequests: 0 };

/** One published source (mic, camera, screen) and the means to ask its publisher for a keyframe. */
export class Track {
  private lastKeyframeRequest = 0;
  private readonly unsubscribe: Unsubscribe;
  /** how many subscribers forward this track (werift's senders do the sending) */
  subscribers = 0;

  constructor(
    readonly owner: Participant,
    readonly source: Source,
    readonly media: MediaStreamTrack,
    private readonly receiver: RTCRtpReceiver,
    readonly mid: string,
  ) {
    const audio = source === 'mic';
    this.unsubscribe = media.onReceiveRtp.subscribe((rtp) => {
      counters.received++;
      counters.forwarded += this.subscribers;
      if (audio) owner.hearPacket(rtp);
    }).unSubscribe;
  }

  get kind(): 'audio' | 'video' {
    return this.source === 'mic' ? 'audio' : 'video';
  }

  /** PLI to the publisher, at most every 300 ms however many subscribers ask. */
  requestKeyframe(): void {
    if (this.kind !== 'video' || this.media.ssrc === undefined) return;
    const now = Date.now();
    if (now - this.lastKeyframeRequest < KEYFRAME_MIN_INTERVAL_MS) return;
    this.lastKeyframeRequest = now;
    counters.keyframeRequests++;
    void this.receiver.sendRtcpPLI(this.media.ssrc).catch(() => undefined);
  }

  close(): void {
    this.unsubscribe();
  }
}

interface Subscription {
  track: Track;
  transceiver: RTCRtpTransceiver;
  unsubscribe: Unsubscribe;
}

export class Participant {
  readonly info: ParticipantInfo;
  readonly tracks = new Map<Source, Track>();
  private readonly subscriptions = new Map<Track, Subscription>();
  private readonly publisher: RTCPeerConnection;
  private readonly subscriber: RTCPeerConnection;
  private pendingSources = new Map<string, Source>();
  private negotiating = false;
  private renegotiate = false;
  private answerWaiter?: (sdp: string) => void;
  private loudPackets = 0;
  private lastLoud = 0;
  private closed = false;

  constructor(
    readonly call: Call,
    claims: JoinClaims,
    private readonly subscribeMode: Subscribe,
    private readonly ice: IceOptions,
    private readonly transport: { send(data: string): void; close(code: number, reason: string): void },
    private readonly log: Logger,
  ) {
    this.info = { sessionId: claims.session, userId: claims.user, displayName: claims.name, role: claims.role, tracks: {}, speaking: false };
    this.publisher = new RTCPeerConnection(peerConfig(ice));
    this.subscriber = new RTCPeerConnection(peerConfig(ice));
    // A data channel keeps the subscribing connection's transport up while no track is forwarded
    // (with every m-line stopped, the transport would close and the connection fail).
    this.subscriber.createDataChannel('sfu');
    this.publisher.ontrack = ({ track, receiver, transceiver }) => {
      const mid = transceiver.mid ?? '';
      const source = this.pendingSources.get(mid);
      if (!source) return;
      this.publish(new Track(this, source, track, receiver, mid));
    };
    for (const pc of [this.publisher, this.subscriber]) {
      pc.connectionStateChange.subscribe((state) => {
        if (state === 'failed' || state === 'closed') this.close(`media connection ${state}`);
      });
    }
  }

  send(message: ServerMessage): void {
    if (!this.closed) this.transport.send(JSON.stringify(message));
  }

  async handle(message: ClientMessage): Promise<void> {
    switch (message.type) {
      case 'publish':
        return this.onPublishOffer(message.sdp, message.tracks);
      case 'subscriber_answer':
        this.answerWaiter?.(message.sdp);
        return;
      case 'mute': {
        const state = this.info.tracks[message.source];
        if (!state) return;
        state.muted = message.muted;
        this.call.broadcast({ type: 'update', participant: this.info });
        return;
      }
      case 'caption': {
        if (this.info.role !== 'bot') return this.send({ type: 'error', message: 'only bots send captions' });
        const speaker = this.call.participants.get(message.sessionId);
        if (!speaker) return;
        const { sessionId, userId, displayName } = speaker.info;
        this.call.broadcast({ type: 'caption', sessionId, userId, displayName, text: message.text });
        return;
      }
      case 'leave':
        return this.close('left');
    }
  }

  private async onPublishOffer(sdp: string, tracks: { mid: string; source: Source }[]): Promise<void> {
    this.pendingSources = new Map(tracks.map((t) => [t.mid, t.source]));
    await this.publisher.setRemoteDescription({ type: 'offer', sdp });
    // Sources no longer listed (a stopped screen share) are unpublished.
    for (const [source, track] of this.tracks) {
      if (this.pendingSources.get(track.mid) !== source) this.unpublish(source);
    }
    const answer = await this.publisher.createAnswer();
    await this.publisher.setLocalDescription(answer);
    await gathered(this.publisher);
    this.send({ type: 'answer', sdp: outgoingSdp(this.publisher.localDescription!.sdp, this.ice) });
  }

  private publish(track: Track): void {
    this.unpublish(track.source);
    this.tracks.set(track.source, track);
    this.info.tracks[track.source] = { muted: false };
    this.call.broadcast({ type: 'update', participant: this.info });
    for (const other of this.call.participants.values()) if (other !== this) other.subscribe(track);
  }

  private unpublish(source: Source): void {
    const track = this.tracks.get(source);
    if (!track) return;
    this.tracks.delete(source);
    delete this.info.tracks[source];
    track.close();
    for (const other of this.call.participants.values()) other.unsubscribe(track);
    this.call.broadcast({ type: 'update', participant: this.info });
  }

  subscribe(track: Track): void {
    if (this.closed || this.subscriptions.has(track)) return;
    if (this.subscribeMode === 'none' || (this.subscribeMode === 'audio' && track.kind !== 'audio')) return;
    const transceiver = this.subscriber.addTransceiver(track.media, { direction: 'sendonly' });
    // A subscriber's keyframe request goes to the publisher.
    const { unSubscribe } = transceiver.sender.onRtcp.subscribe((rtcp) => {
      if (rtcp.type === 206 /* payload-specific feedback: PLI, FIR */) track.requestKeyframe();
    });
    this.subscriptions.set(track, { track, transceiver, unsubscribe: unSubscribe });
    track.subscribers++;
    this.negotiate();
  }

  unsubscribe(track: Track): void {
    const sub = this.subscriptions.get(track);
    if (!sub) return;
    this.subscriptions.delete(track);
    track.subscribers--;
    sub.unsubscribe();
    sub.transceiver.stop();
    this.negotiate();
  }

  unsubscribeFrom(owner: Participant): void {
    for (const track of [...this.subscriptions.keys()]) if (track.owner === owner) this.unsubscribe(track);
  }

  /** Sets up the subscribing connection at once, so the first forwarded track starts without delay. */
  connect(): void {
    this.negotiate();
  }

  /** One offer at a time on the subscribing connection; changes meanwhile make one more round. */
  private negotiate(): void {
    if (this.negotiating) {
      this.renegotiate = true;
      return;
    }
    this.negotiating = true;
    void this.negotiationRound()
      .catch((err) => {
        if (!this.closed) this.log.warn({ err: (err as Error).message, session: this.info.sessionId }, 'subscriber negotiation failed');
      })
      .finally(() => {
        this.negotiating = false;
        if (this.renegotiate && !this.closed) {
          this.renegotiate = false;
          this.negotiate();
        }
      });
  }

  private async negotiationRound(): Promise<void> {
    const offer = await this.subscriber.createOffer();
    await this.subscriber.setLocalDescription(offer);
    await gathered(this.subscriber);
    const tracks: TrackMapping[] = [...this.subscriptions.values()]
      .filter((s) => s.transceiver.mid)
      .map((s) => ({ mid: s.transceiver.mid!, sessionId: s.track.owner.info.sessionId, source: s.track.source }));
    const answer = new Promise<string>((resolve, reject) => {
      this.answerWaiter = resolve;
      setTimeout(() => reject(new Error('no answer to the subscriber offer within 10 s')), 10_000).unref();
    });
    this.send({ type: 'offer', sdp: outgoingSdp(this.subscriber.localDescription!.sdp, this.ice), tracks });
    await this.subscriber.setRemoteDescription({ type: 'answer', sdp: await answer });
    // A new subscriber needs a picture now, not at the publisher's next keyframe.
    for (const s of this.subscriptions.values()) s.track.requestKeyframe();
  }

  /** Voice activity from Opus frame sizes: every client gets it, browsers and bots alike. */
  hearPacket(rtp: RtpPacket): void {
    if (this.info.tracks.mic?.muted) return;
    if (rtp.payload.length > VOICE_PAYLOAD_BYTES) {
      this.lastLoud = Date.now();
      if (++this.loudPackets >= VOICE_ON_PACKETS && !this.info.speaking) this.setSpeaking(true);
    } else {
      this.loudPackets = 0;
    }
  }

  checkVoice(): void {
    if (this.info.speaking && Date.now() - this.lastLoud > VOICE_OFF_MS) this.setSpeaking(false);
  }

  private setSpeaking(speaking: boolean): void {
    this.info.speaking = speaking;
    this.call.broadcast({ type: 'voice', sessionId: this.info.sessionId, speaking });
  }

  /** Frees both connections, every subscription and every published track. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const sub of this.subscriptions.values()) {
      sub.unsubscribe();
      sub.track.subscribers--;
    }
    this.subscriptions.clear();
    for (const track of this.tracks.values()) track.close();
    this.call.remove(this);
    this.tracks.clear();
    void this.publisher.close().catch(() => undefined);
    void this.subscriber.close().catch(() => undefined);
    this.transport.close(1000, reason);
    this.log.debug({ session: this.info.sessionId, call: this.call.id, reason }, 'participant left');
  }
}

/** Complete SDP, candidates included: the protocol does not trickle. */
async function gathered(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 3000);
    const { unSubscribe } = pc.iceGatheringStateChange.subscribe((state) => {
      if (state === 'complete') {
        clearTimeout(timer);
        unSubscribe();
        resolve();
      }
    });
  });
}
