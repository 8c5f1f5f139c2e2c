// One published track (voice, screen, screen audio or camera video) and the means to ask its
// publisher for a keyframe. Subscribers' senders read its packets directly (werift).
import type { MediaStreamTrack, RTCRtpReceiver, RtpPacket } from 'werift';
import type { TrackType } from '../protocol/wire.js';

/** Packets in and out of the SFU, for /metrics and the benchmark. */
export const counters = { received: 0, forwarded: 0, keyframeRequests: 0 };

const KEYFRAME_MIN_INTERVAL_MS = 300;

export class Track {
  /** how many subscribers forward this track (werift's senders do the sending) */
  subscribers = 0;
  closed = false;
  private lastKeyframeRequest = 0;
  private readonly unsubscribe: () => void;

  constructor(
    readonly ownerId: string,
    readonly type: TrackType,
    readonly media: MediaStreamTrack,
    private readonly receiver: RTCRtpReceiver,
    readonly mid: string,
    onPacket: (rtp: RtpPacket) => void,
  ) {
    this.unsubscribe = media.onReceiveRtp.subscribe((rtp) => {
      counters.received++;
      counters.forwarded += this.subscribers;
      onPacket(rtp);
    }).unSubscribe;
  }

  get kind(): 'audio' | 'video' {
    return this.type === 'voice' || this.type === 'screen-audio' ? 'audio' : 'video';
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
    this.closed = true;
    this.unsubscribe();
  }
}
