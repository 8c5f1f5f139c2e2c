// A headless participant: what a job uses to join a call. It speaks the same protocol as the
// browser page (CallClient), with werift for media, and hands every received RTP packet over
// with the identity of its publisher.
import { MediaStreamTrack, RTCPeerConnection, type RtpPacket } from 'werift';
import { WebSocket } from 'ws';
import { CallClient, type PeerConnectionLike, type RemoteTrack, type SocketLike } from './client.js';
import { type IceOptions, peerConfig } from './ice.js';
import type { ParticipantInfo, Source, Subscribe, TrackMapping } from './protocol.js';

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
  /** the SFU's base address, http(s):// or ws(s):// */
  sfuUrl: string;
  callId: string;
  token: string;
  subscribe?: Subscribe;
  /** defaults to loopback-only media when the SFU is on 127.0.0.1 */
  ice?: IceOptions;
  /** video codecs to offer, in order of preference (default VP8, then H.264 as the call page) */
  videoCodecs?: ('vp8' | 'h264')[];
}

export class HeadlessParticipant {
  readonly client: CallClient;
  private readonly rtpHandlers: ((rtp: RtpPacket, from: Publisher) => void)[] = [];
  private readonly remote = new Map<string, RemoteTrack>();
  private lastLeft?: () => void;
  /** Resolves when the last person (bots aside) has left the call: a job's cue that the call ended. */
  readonly everyoneLeft = new Promise<void>((resolve) => (this.lastLeft = resolve));

  constructor(opts: HeadlessOptions) {
    const base = new URL(opts.sfuUrl);
    const ice = opts.ice ?? { bindAddress: base.hostname.startsWith('127.') ? base.hostname : '0.0.0.0' };
    base.protocol = base.protocol === 'https:' || base.protocol === 'wss:' ? 'wss:' : 'ws:';
    base.pathname = '/ws';
    this.client = new CallClient({
      url: base.toString().replace(/\/$/, ''),
      callId: opts.callId,
      token: opts.token,
      subscribe: opts.subscribe,
      createPeerConnection: () => new RTCPeerConnection(peerConfig(ice, opts.videoCodecs)) as unknown as PeerConnectionLike,
      createSocket: (url) => new WebSocket(url) as unknown as SocketLike,
    });
    this.client.on('left', () => {
      if (![...this.client.participants.values()].some((p) => p.role === 'participant')) this.lastLeft?.();
    });
    this.client.on('track', (remote) => {
      this.remote.set(remote.mid, remote);
      const media = remote.track as MediaStreamTrack;
      // Who sent a packet is looked up per packet but built only when the SFU's mapping or the
      // participant's record changes: no allocation on the receive path.
      let cached: { map: TrackMapping; info: ParticipantInfo; from: Publisher } | undefined;
      media.onReceiveRtp.subscribe((rtp) => {
        const map = this.client.trackFor(remote.mid);
        if (!map) return;
        const info = this.client.participants.get(map.sessionId) ?? remote.participant;
        if (!cached || cached.map !== map || cached.info !== info) {
          cached = {
            map,
            info,
            from: {
              sessionId: info.sessionId, userId: info.userId, displayName: info.displayName, source: map.source,
              kind: map.source === 'mic' ? 'audio' : 'video',
              codec: (media.codec?.mimeType ?? '').toLowerCase(),
            },
          };
        }
        for (const h of this.rtpHandlers) h(rtp, cached.from);
      });
      if (remote.source !== 'mic') this.requestKeyframe(remote.mid);
    });
  }

  join(): Promise<ParticipantInfo> {
    return this.client.join();
  }

  onRtp(handler: (rtp: RtpPacket, from: Publisher) => void): void {
    this.rtpHandlers.push(handler);
  }

  /** Ask the publisher of a video m-line for a keyframe (a recorder wants one at once). */
  requestKeyframe(mid: string): void {
    const remote = this.remote.get(mid);
    const ssrc = (remote?.track as MediaStreamTrack | undefined)?.ssrc;
    if (remote && ssrc !== undefined) void remote.transceiver.receiver.sendRtcpPLI(ssrc).catch(() => undefined);
  }

  /** Publishes these sources (and unpublishes any other); write RTP packets into the tracks returned. */
  async publish<S extends Source>(...sources: S[]): Promise<Record<S, MediaStreamTrack>> {
    const tracks = Object.fromEntries(sources.map((s) => [s, new MediaStreamTrack({ kind: s === 'mic' ? 'audio' : 'video' })]));
    await this.client.publish(tracks);
    return tracks as Record<S, MediaStreamTrack>;
  }

  sendCaption(sessionId: string, text: string, newAudioLenMs?: number): void {
    this.client.sendCaption(sessionId, text, newAudioLenMs);
  }

  leave(): void {
    this.client.leave();
  }
}
