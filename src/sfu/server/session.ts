// One participant's RTC session on the bundled SFU, as rtcd runs it: one peer connection; the
// client makes the first offer (its data channel `calls-dc`, then its tracks); the SFU offers each
// forwarded track, one negotiation at a time, announcing the m-lines in a MediaMap first; trickle
// ICE both ways; `Lock`/`Unlock` on the data channel keep the two sides from offering at once.
import { randomBytes } from 'node:crypto';
import { RTCPeerConnection, type RTCDataChannel, type RTCRtpTransceiver, type RtpPacket } from 'werift';
import type { Logger } from '../../log.js';
import { RateLimiter } from '../../rate-limiter.js';
import { PLUGIN_RATE } from '../protocol/calls.js';
import { type IceOptions, outgoingCandidate, outgoingSdp, peerConfig } from '../ice.js';
import { raiseReceiveBuffer, udpSocketsOf } from '../udp-sockets.js';
import {
  DcType,
  type DcMessage,
  type MediaMap,
  ProtocolError,
  type SessionDescription,
  type TrackType,
  dcType,
  decodeDc,
  encodeDc,
  formatTrackId,
  isObject,
} from '../protocol/wire.js';
import type { Identity } from './connection.js';
import { Track } from './track.js';

/** Opus frames above this many bytes carry sound; silence and comfort noise are smaller. */
const VOICE_PAYLOAD_BYTES = 24;
const VOICE_ON_PACKETS = 5;
const VOICE_OFF_MS = 600;
/** rtcd waits this long for an answer to its offer. */
const ANSWER_TIMEOUT_MS = 10_000;
/**
 * How long the SFU waits, after an offer of its own, for a client it refused the lock to ask again
 * before it offers once more: clients ask again 50 ms (calls-common) or 100 ms (rtcd's Go client)
 * after a refusal, and the SFU's rounds follow one another as fast as others' tracks come and go.
 */
const CLIENT_TURN_MS = 300;
/**
 * Media sections a client's offer may hold besides the SFU's own (one per track it forwards, which
 * a call of many publishers has by the dozen): four published tracks and the data channel, with
 * room for renegotiations.
 */
const MAX_CLIENT_SECTIONS = 32;
/**
 * Remote candidates an offer or answer may hold, and a session may trickle in all (each a pair
 * werift checks with STUN, to an address the client names): a browser gathers a handful per
 * network interface. (werift keeps 128 at most, repeated ones once.)
 */
const MAX_SDP_CANDIDATES = 64;
const MAX_TRICKLED_CANDIDATES = 256;
/**
 * SSRCs a session's descriptions may name in the sections the client sends in, in all (werift keeps
 * a track and a route for each until the session ends): a browser names two per section it sends
 * (media and RTX), the same ones as long as the section lives; this leaves room for hundreds of
 * tracks published in turn.
 */
const MAX_SESSION_SSRCS = 1024;
/**
 * A candidate named by a host name (a browser's mDNS `.local`) would have werift resolve it by
 * multicast from the SFU's host; the client's checks reach us anyway and its address is learnt from
 * them (peer-reflexive). werift resolves any host containing ".local": so is this.
 */
const HOST_NAMED = /\.local/i;
/** Bytes queued on the data channel past which replies are dropped: a client that does not read has them all. */
const MAX_DC_BUFFERED_BYTES = 256 * 1024;

/** What a session tells the rest of the call (Call implements it). */
export interface SessionHost {
  /** a signalling message for this session's client: `signal` over its websocket */
  signal(session: RtcSession, data: string): void;
  published(track: Track): void;
  unpublished(track: Track): void;
  speaking(session: RtcSession, on: boolean): void;
  /** the media connection failed or closed: the session is over */
  failed(session: RtcSession, reason: string): void;
}

interface Subscription {
  track: Track;
  transceiver: RTCRtpTransceiver;
  trackId: string;
  stopRtcp: () => void;
}

export class RtcSession {
  readonly tracks = new Map<TrackType, Track>();
  screenStreamId?: string;
  videoStreamId?: string;
  unmuted = false;
  raisedHand = 0;
  speaking = false;
  private readonly pc: RTCPeerConnection;
  private dc?: RTCDataChannel;
  private readonly subscriptions = new Map<Track, Subscription>();
  /**
   * Tracks to forward whose m-lines are not made yet: they are added inside the SFU's next offer,
   * never before the client's first offer is applied (werift would pair the client's own m-lines
   * with them).
   */
  private readonly pending = new Set<Track>();
  private readonly remoteCandidates: { candidate: string; sdpMid?: string; sdpMLineIndex?: number }[] = [];
  /** remote candidates trickled so far */
  private trickled = 0;
  /** the SFU's offers in a row that got no answer it could apply */
  private unansweredOffers = 0;
  private lock: 'client' | 'server' | null = null;
  /** the transceivers the SFU made to forward tracks: their sections are not the client's */
  private readonly forwarding = new WeakSet<RTCRtpTransceiver>();
  /** the client was refused the lock during an offer of the SFU's: its turn comes next */
  private clientRefused = false;
  private negotiating = false;
  private renegotiate = false;
  /** SDP work one step at a time: werift's state must not change under an offer being made */
  private sdpChain: Promise<unknown> = Promise.resolve();
  private answerWaiter?: (d: SessionDescription) => void;
  private loudPackets = 0;
  private lastLoud = 0;
  private closed = false;
  /**
   * The plugin's rate for what the data channel asks of the SFU, as the websocket's messages have
   * (server.ts): a client renegotiating without pause would keep a core busy.
   */
  private readonly dcRate = new RateLimiter(PLUGIN_RATE.perSec, PLUGIN_RATE.burst);
  /** the fingerprints and SSRCs the client's descriptions named, bounded for the session (remoteSdp) */
  private readonly remoteIds: RemoteIds = { fingerprints: new Set(), ssrcs: new Set() };

  constructor(
    /** the session id: its first websocket connection's id, as the plugin's `session_id` */
    readonly id: string,
    readonly identity: Identity,
    readonly callId: string,
    private readonly ice: IceOptions,
    private readonly host: SessionHost,
    private readonly log: Logger,
  ) {
    this.pc = new RTCPeerConnection(peerConfig(ice));
    this.pc.onIceCandidate.subscribe((c) => {
      const line = c?.candidate && outgoingCandidate(c.candidate, this.ice);
      if (line)
        this.host.signal(this, JSON.stringify({ type: 'candidate', candidate: { ...c!.toJSON(), candidate: line } }));
    });
    this.pc.onDataChannel.subscribe((dc) => {
      if (dc.label !== 'calls-dc') return;
      this.dc = dc;
      dc.onMessage.subscribe((data) => this.onDcMessage(data));
    });
    this.pc.ontrack = ({ track, transceiver, receiver }) => {
      const mid = transceiver.mid ?? '';
      const type = this.classify(track.kind, receiver.remoteStreamId);
      if (!type || [...this.tracks.values()].some((t) => t.mid === mid && t.type === type)) return;
      this.unpublish(type);
      const published = new Track(this.id, type, track, receiver, mid, (rtp) => {
        if (type === 'voice') this.hearPacket(rtp);
      });
      this.tracks.set(type, published);
      this.host.published(published);
    };
    this.pc.connectionStateChange.subscribe((state) => {
      // Room for the bursts the SFU reads while it forwards what came before (udp-sockets.ts).
      if (state === 'connected' && !udpSocketsOf(this.pc).map(raiseReceiveBuffer).every(Boolean))
        this.log.warn({ session: this.id }, "a media socket keeps the kernel's default receive buffer");
      if (state === 'failed' || state === 'closed') this.host.failed(this, `media connection ${state}`);
    });
  }

  get role(): Identity['role'] {
    return this.identity.role;
  }

  /** rtcd classifies incoming tracks by stream id: the announced screen stream, the camera's, else voice. */
  private classify(kind: string, streamId: string | undefined): TrackType | null {
    if (kind === 'audio') return streamId && streamId === this.screenStreamId ? 'screen-audio' : 'voice';
    if (streamId && streamId === this.screenStreamId) return 'screen';
    if (streamId && streamId === this.videoStreamId) return 'video';
    return null;
  }

  /** An offer or answer from the client, over the websocket (`sdp`) or the data channel. */
  async onSdp(description: SessionDescription): Promise<void> {
    if (description.type === 'answer') {
      this.answerWaiter?.(description);
      return;
    }
    // rtcd ignores a client offer while it makes its own (the client must hold the lock to offer;
    // a polite browser rolls back and answers ours, then offers again).
    if (this.lock === 'server') {
      this.log.debug({ session: this.id }, 'client offer ignored: the SFU is offering');
      return;
    }
    const offer = remoteSdp(description, this.remoteIds);
    await this.exclusive(async () => {
      if (this.closed || this.pc.signalingState !== 'stable') return;
      // a stopped section's m-line may carry a new mid (JSEP reuses it)
      const live = this.pc.getTransceivers().filter((t) => !t.stopped && !t.stopping);
      const inactive = checkOffer(
        offer.sdp,
        live.flatMap((t) => (t.mid ? [t.mid] : [])),
        this.pc.getTransceivers().filter((t) => this.forwarding.has(t)).length,
      );
      await this.pc.setRemoteDescription(offer);
      for (const [type, track] of this.tracks) if (inactive.has(track.mid)) this.unpublish(type);
      await this.addQueuedCandidates();
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      // A section the answer rejects (port 0, no codec in common) ended its track: unpublished too,
      // or every later joiner's subscription to it would throw.
      for (const [type, track] of this.tracks) if (track.media.stopped) this.unpublish(type);
      this.host.signal(
        this,
        JSON.stringify({ type: 'answer', sdp: outgoingSdp(this.pc.localDescription!.sdp, this.ice) }),
      );
    });
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.sdpChain.then(work);
    this.sdpChain = run.catch(() => undefined);
    return run;
  }

  /** A trickled candidate (`ice`): the JSON of RTCIceCandidateInit. Kept until a remote description is set. */
  async addCandidate(json: string): Promise<void> {
    let init: unknown;
    try {
      init = JSON.parse(json);
    } catch {
      throw new ProtocolError('ice data must be JSON');
    }
    if (!isObject(init) || typeof init.candidate !== 'string') throw new ProtocolError('ice data needs a candidate');
    if (!init.candidate) return; // end of candidates
    if (this.trickled >= MAX_TRICKLED_CANDIDATES || HOST_NAMED.test(init.candidate)) return;
    this.trickled++;
    const candidate = {
      candidate: init.candidate,
      sdpMid: typeof init.sdpMid === 'string' ? init.sdpMid : undefined,
      sdpMLineIndex: typeof init.sdpMLineIndex === 'number' ? init.sdpMLineIndex : undefined,
    };
    if (!this.pc.remoteDescription) {
      if (this.remoteCandidates.length < 64) this.remoteCandidates.push(candidate);
      return;
    }
    await this.pc.addIceCandidate(candidate).catch(() => undefined);
  }

  private async addQueuedCandidates(): Promise<void> {
    for (const c of this.remoteCandidates.splice(0)) await this.pc.addIceCandidate(c).catch(() => undefined);
  }

  private onDcMessage(data: string | Buffer): void {
    if (typeof data === 'string') {
      // the npm calls-common peer pings in text
      if (data === 'ping' && this.dcRate.take(this.id) === 0) this.sendDc('pong');
      return;
    }
    // What the SFU answers or works on is rated (a client's pings too), by its type before the rest
    // is decoded: an SDP's inflating costs up to 2.5 ms, paid for every message over the rate.
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const type = dcType(bytes);
    if ((type === DcType.Ping || type === DcType.Lock || type === DcType.SDP) && this.dcRate.take(this.id) > 0) return;
    let message: DcMessage;
    try {
      message = decodeDc(bytes);
    } catch (err) {
      this.log.debug({ session: this.id, err: (err as Error).message }, 'data-channel message ignored');
      return;
    }
    switch (message.type) {
      case DcType.Ping:
        return this.sendDc({ type: DcType.Pong });
      case DcType.Lock: {
        const granted = this.lock === null;
        if (granted) this.holdLock('client');
        // refused while the SFU offers: the client goes next; granted, it has had its turn
        this.clientRefused = !granted && this.lock === 'server';
        return this.sendDc({ type: DcType.Lock, granted });
      }
      case DcType.Unlock:
        if (this.lock === 'client') this.releaseLock();
        return;
      case DcType.SDP:
        void this.onSdp(message.description).catch((err) =>
          this.log.warn({ session: this.id, err: (err as Error).message }, 'sdp over the data channel failed'),
        );
        return;
      default:
        return; // metrics and pongs
    }
  }

  private sendDc(message: DcMessage | 'pong'): void {
    const dc = this.dc;
    if (dc?.readyState !== 'open' || dc.bufferedAmount > MAX_DC_BUFFERED_BYTES) return;
    try {
      dc.send(message === 'pong' ? message : Buffer.from(encodeDc(message)));
    } catch (err) {
      // werift throws past the max-message-size the client's SDP gave (a client may give 1 byte)
      this.log.debug({ session: this.id, err: (err as Error).message }, 'data-channel message not sent');
    }
  }

  /**
   * The lock is held until Unlock, however long: the SFU breaking a client's lock would let both
   * sides add m-lines at once (the same mid for two tracks). A client that never unlocks only
   * stops receiving new tracks itself.
   */
  private holdLock(who: 'client' | 'server'): void {
    this.lock = who;
  }

  private releaseLock(): void {
    this.lock = null;
  }

  /** Forwards another session's track to this one, from the SFU's next offer. */
  subscribe(track: Track): void {
    if (this.closed || this.subscriptions.has(track) || this.pending.has(track)) return;
    this.pending.add(track);
    this.negotiate();
  }

  private addSubscription(track: Track): void {
    const transceiver = this.pc.addTransceiver(track.media, { direction: 'sendonly' });
    this.forwarding.add(transceiver);
    const trackId = formatTrackId(track.type, track.ownerId, randomBytes(4).toString('hex'));
    (transceiver.sender as { trackId: string }).trackId = trackId;
    transceiver.sender.streamIds = [track.ownerId];
    // a subscriber's keyframe request goes to the publisher
    const { unSubscribe } = transceiver.sender.onRtcp.subscribe((rtcp) => {
      if (rtcp.type === 206 /* payload-specific feedback: PLI, FIR */) track.requestKeyframe();
    });
    this.subscriptions.set(track, { track, transceiver, trackId, stopRtcp: unSubscribe });
    track.subscribers++;
  }

  unsubscribe(track: Track): void {
    if (this.pending.delete(track)) return;
    const sub = this.subscriptions.get(track);
    if (!sub) return;
    this.subscriptions.delete(track);
    track.subscribers--;
    sub.stopRtcp();
    sub.transceiver.stop();
    this.negotiate();
  }

  unpublish(type: TrackType): void {
    const track = this.tracks.get(type);
    if (!track) return;
    this.tracks.delete(type);
    track.close();
    this.host.unpublished(track);
  }

  /** One SFU offer at a time; changes meanwhile make one more round. */
  private negotiate(): void {
    if (this.negotiating) {
      this.renegotiate = true;
      return;
    }
    this.negotiating = true;
    void this.negotiationRound()
      .catch((err) => {
        if (!this.closed) this.log.warn({ err: (err as Error).message, session: this.id }, 'negotiation failed');
      })
      .finally(() => {
        this.negotiating = false;
        if (this.lock === 'server') this.releaseLock();
        if (this.renegotiate && !this.closed) {
          this.renegotiate = false;
          this.negotiate();
        }
      });
  }

  private async negotiationRound(): Promise<void> {
    // A client refused the lock during the last round asks again in a moment: it goes first.
    // Without this the SFU's rounds, one after the other while someone else publishes and
    // unpublishes without pause, left it a lock that was never free when it asked (measured: a
    // publish that waited 10 s for it).
    const turnEnds = this.clientRefused ? Date.now() + CLIENT_TURN_MS : 0;
    this.clientRefused = false;
    while (!this.closed && this.lock === null && Date.now() < turnEnds) await new Promise((r) => setTimeout(r, 25));
    // The client's first offer opens the connection; then wait for its lock to be released.
    while (!this.closed && (!this.pc.remoteDescription || this.lock === 'client'))
      await new Promise((r) => setTimeout(r, 25));
    await this.exclusive(() => this.offer());
  }

  private async offer(): Promise<void> {
    if (this.closed || this.pc.signalingState !== 'stable') return;
    // the client took the lock between our wait and now: it offers first, we offer after
    if (this.lock === 'client') {
      this.renegotiate = true;
      return;
    }
    const pending = [...this.pending];
    this.pending.clear();
    for (const track of pending)
      try {
        if (!track.closed) this.addSubscription(track);
      } catch (err) {
        // one track werift will not send (ended meanwhile) costs this client that track only
        this.log.debug({ session: this.id, err: (err as Error).message }, 'a track is not forwarded');
      }
    this.holdLock('server');
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    // MediaMap first, always over the data channel: which m-line carries whose track.
    const map: MediaMap = {};
    for (const s of this.subscriptions.values()) {
      if (s.transceiver.mid) map[s.transceiver.mid] = { type: s.track.type, sender_id: s.track.ownerId };
    }
    this.sendDc({ type: DcType.MediaMap, map });
    const answer = new Promise<SessionDescription>((resolve, reject) => {
      this.answerWaiter = resolve;
      setTimeout(
        () => reject(new Error(`no answer to the SFU's offer within ${ANSWER_TIMEOUT_MS / 1000} s`)),
        ANSWER_TIMEOUT_MS,
      ).unref();
    });
    this.host.signal(
      this,
      JSON.stringify({ type: 'offer', sdp: outgoingSdp(this.pc.localDescription!.sdp, this.ice) }),
    );
    try {
      const { sdp } = await answer;
      checkAnswer(sdp, this.pc.localDescription!.sdp);
      await this.pc.setRemoteDescription(remoteSdp({ type: 'answer', sdp }, this.remoteIds));
      this.unansweredOffers = 0;
    } catch (err) {
      // No answer, or one werift refused: the offer is taken back, or the connection stayed in
      // have-local-offer, deaf to the client's offers and to every later change. One more round
      // offers what this one did; after a second failure in a row the next change tries again.
      // (the state is read again: it changed while the answer was awaited)
      if (!this.closed && (this.pc.signalingState as string) === 'have-local-offer')
        await this.pc.setLocalDescription({ type: 'rollback' });
      if (++this.unansweredOffers < 2) this.renegotiate = true;
      throw err;
    } finally {
      this.answerWaiter = undefined;
    }
    // a new subscriber needs a picture now, not at the publisher's next keyframe
    for (const s of this.subscriptions.values()) s.track.requestKeyframe();
  }

  /** Voice activity from Opus frame sizes: the SFU tells everyone who speaks. */
  private hearPacket(rtp: RtpPacket): void {
    if (rtp.payload.length > VOICE_PAYLOAD_BYTES) {
      this.lastLoud = Date.now();
      if (++this.loudPackets >= VOICE_ON_PACKETS && !this.speaking) this.setSpeaking(true);
    } else {
      this.loudPackets = 0;
    }
  }

  checkVoice(): void {
    if (this.speaking && Date.now() - this.lastLoud > VOICE_OFF_MS) this.setSpeaking(false);
  }

  private setSpeaking(on: boolean): void {
    this.speaking = on;
    this.host.speaking(this, on);
  }

  /** Frees the connection, every subscription and every published track. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.releaseLock();
    for (const sub of this.subscriptions.values()) {
      sub.stopRtcp();
      sub.track.subscribers--;
    }
    this.subscriptions.clear();
    this.pending.clear();
    for (const type of [...this.tracks.keys()]) this.unpublish(type);
    void this.pc.close().catch(() => undefined);
  }
}

/**
 * The mids a client's offer marks inactive or receive-only (tracks the client stopped sending),
 * after refusing an offer werift would take at the cost of more than one transport: every media
 * section it accepts (port not 0) must be in one BUNDLE group (werift gives each section outside it
 * an ICE transport and sockets of its own, whatever the bundle policy). Sections besides the
 * `forwarding` ones (the SFU's, however many) are bounded, and
 * every live mid negotiated before (`known`) is still there, as JSEP has it: werift made a transceiver
 * for each new mid and stopped none, so offers of new mids alone grew the session without end.
 * Browsers and werift clients bundle everything.
 */
function checkOffer(sdp: string, known: string[], forwarding: number): Set<string> {
  const { sections, groups } = mediaSections(sdp);
  if (sections.length > forwarding + MAX_CLIENT_SECTIONS)
    throw new ProtocolError(
      `an offer holds at most ${MAX_CLIENT_SECTIONS} media sections besides the ${forwarding} the SFU forwards tracks in`,
    );
  const bundled = groups.length === 1 ? new Set(groups[0]) : new Set<string>();
  if (sections.some((m) => m.port !== '0' && (m.mid === undefined || !bundled.has(m.mid))))
    throw new ProtocolError('an offer must bundle all its media sections in one BUNDLE group');
  const mids = new Set(sections.map((m) => m.mid));
  if (known.some((mid) => !mids.has(mid)))
    throw new ProtocolError('an offer keeps every media section negotiated before');
  return new Set(sections.flatMap((m) => (m.inactive && m.mid !== undefined ? [m.mid] : [])));
}

/**
 * A description's media sections (port, mid, whether it sends nothing, the SSRCs it names) and its
 * BUNDLE groups.
 */
function mediaSections(sdp: string) {
  const groups: string[][] = [];
  const sections: { port: string; mid?: string; inactive?: boolean; ssrcs: Set<string> }[] = [];
  for (const line of sdp.split(/\r?\n/)) {
    const section = sections.at(-1);
    const ssrc = /^a=ssrc:(\d+)/.exec(line)?.[1];
    if (line.startsWith('m=')) sections.push({ port: line.split(' ')[1] ?? '', ssrcs: new Set() });
    else if (line.startsWith('a=mid:') && section) section.mid = line.slice(6).trim();
    else if (/^a=(inactive|recvonly)\s*$/.test(line) && section) section.inactive = true;
    else if (ssrc && section) section.ssrcs.add(ssrc);
    else if (line.startsWith('a=group:BUNDLE')) groups.push(line.split(' ').slice(1));
  }
  return { sections, groups };
}

/**
 * Refuses an answer whose media sections are not the offer's, mid for mid, as JSEP has them:
 * werift made a transceiver of every section it could not match, answers' too, and put each in
 * every later offer, so answers with sections of their own grew the session without end.
 */
function checkAnswer(answer: string, offer: string): void {
  const offered = mediaSections(offer).sections;
  const answered = mediaSections(answer).sections;
  // a rejected section (port 0) may leave its mid out: werift makes nothing of it
  const matches = (m: { port: string; mid?: string }, i: number) =>
    m.mid === undefined ? m.port === '0' : m.mid === offered[i]!.mid;
  if (answered.length !== offered.length || !answered.every(matches))
    throw new ProtocolError("an answer holds the offer's media sections, and only those");
}

/** Adds `value` to `seen`, refusing it (`refusal`) where it would be the max + 1st. */
function remember(seen: Set<string>, value: string, max: number, refusal: string): void {
  if (seen.has(value)) return;
  if (seen.size >= max) throw new ProtocolError(refusal);
  seen.add(value);
}

/** What werift keeps of every description a session's client gives, for the session's life. */
interface RemoteIds {
  fingerprints: Set<string>;
  ssrcs: Set<string>;
}

/**
 * A client's offer or answer as werift may take it: candidates bounded, those named by a host name
 * left out, and no simulcast (the SFU forwards one encoding of each track; werift kept a remote
 * track for every `a=rid` named, for the session's life, each found by scanning the others). The
 * DTLS fingerprints and the SSRCs werift keeps of each description (merged into the ones before,
 * and a track and a route each) are bounded over the session (`seen`): a client that changed
 * them in every offer grew the session without end.
 */
function remoteSdp(description: SessionDescription, seen: RemoteIds): SessionDescription {
  const kept: string[] = [];
  // a bundled description may repeat its candidates in every section: each counts once
  const candidates = new Set<string>();
  for (const line of description.sdp.split(/\r?\n/)) {
    if (line.startsWith('a=rid:') || line.startsWith('a=simulcast:')) continue;
    if (line.startsWith('a=candidate:')) {
      if (candidates.add(line).size > MAX_SDP_CANDIDATES)
        throw new ProtocolError(`an ${description.type} holds at most ${MAX_SDP_CANDIDATES} candidates`);
      if (HOST_NAMED.test(line)) continue;
    }
    if (line.startsWith('a=fingerprint:'))
      remember(
        seen.fingerprints,
        line.slice(14).trim().toLowerCase(),
        4,
        'a session keeps its DTLS fingerprints (4 at most)',
      );
    kept.push(line);
  }
  // werift routes the SSRCs of what the client sends (a section it receives in names the client's
  // unused sender SSRC too: a bot's answers name a new one for every track forwarded to it)
  for (const section of mediaSections(description.sdp).sections)
    if (section.port !== '0' && !section.inactive)
      for (const ssrc of section.ssrcs)
        remember(
          seen.ssrcs,
          ssrc,
          MAX_SESSION_SSRCS,
          `a session's descriptions name at most ${MAX_SESSION_SSRCS} SSRCs it sends in`,
        );
  return { ...description, sdp: kept.join('\r\n') };
}
