// One published track (voice, screen, screen audio or camera video) and the means to ask its
// publisher for a keyframe. Subscribers' senders read its packets directly (werift).
import type { MediaStreamTrack, RTCRtpReceiver, RtpPacket } from 'werift';
import type { TrackType } from '../protocol/wire.js';

/** Packets in and out of the SFU, for /metrics and the benchmark. */
export const counters = { received: 0, forwarded: 0, dropped: 0, keyframeRequests: 0 };

const KEYFRAME_MIN_INTERVAL_MS = 300;

/**
 * Bytes a second a published track may bring (payload, and PACKET_CHARGE_BYTES a packet), a
 * second's worth saved for bursts (a keyframe). The SFU sends every packet on to every subscriber,
 * so without a bound one participant chose the SFU's work and everyone's bandwidth. Far above what
 * a browser sends (Opus at most 510 kbit/s; a camera or a screen share a few Mbit/s): only a flood
 * meets it.
 */
export const MAX_TRACK_BYTES_PER_SEC = { audio: 1_000_000 / 8, video: 25_000_000 / 8 };
/** What each packet is charged beyond its payload (its headers, its work): empty packets are no free flood. */
export const PACKET_CHARGE_BYTES = 50;

/**
 * The remote tracks whose delivery has a budget in front: one a session publishes again (its
 * section made inactive, then active) keeps its budget, not one more wrapper each time.
 */
const budgeted = new WeakSet<MediaStreamTrack>();

/** A token bucket of bytes: `take` says whether `n` more fit now. */
class ByteBudget {
  private bytes: number;
  private at = performance.now();

  constructor(private readonly perSec: number) {
    this.bytes = perSec;
  }

  take(n: number): boolean {
    const now = performance.now();
    this.bytes = Math.min(this.perSec, this.bytes + ((now - this.at) / 1000) * this.perSec);
    this.at = now;
    if (this.bytes < n) return false;
    this.bytes -= n;
    return true;
  }
}

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
    // Ahead of every listener (subscribers' senders included): a packet past the budget goes nowhere.
    if (!budgeted.has(media)) {
      budgeted.add(media);
      const budget = new ByteBudget(MAX_TRACK_BYTES_PER_SEC[this.kind]);
      const deliver = media.onReceiveRtp.execute;
      media.onReceiveRtp.execute = (rtp, extensions) => {
        counters.received++;
        if (budget.take(PACKET_CHARGE_BYTES + rtp.payload.length)) deliver(rtp, extensions);
        else counters.dropped++;
      };
    }
    this.unsubscribe = media.onReceiveRtp.subscribe((rtp) => {
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
