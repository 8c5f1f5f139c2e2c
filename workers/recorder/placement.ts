// Where a track's file starts on the recording's clock. Each packet's arrival is when its media
// began (its RTP time) plus how long it took to reach the recorder's JavaScript; the file is
// placed by the packet that took least over its first seconds, not by its first packet. The first
// packets come when the recorder is busiest (its join: werift compiled, signalling, DTLS; or a
// renegotiation for someone who turned a camera on), and the event loop can hold them for tens or
// hundreds of ms, a voice and its camera each differently: by the first packet alone they were
// placed out of step by as much.

/** How long the least delay is looked for, from the file's first packet (media and arrival time). */
export const PLACEMENT_WINDOW_MS = 2000;
/**
 * A better place is taken only this soon after it: a part is composed 3 s after it ends, and one
 * that holds the track's start (so ends after it) must find the place the later parts keep.
 */
const LATEST_MS = 2500;
/** Media time that runs this far ahead of the arrivals is a jump in the sender's RTP clock, not delay. */
const JUMP_MS = 500;

export class Placement {
  /** RTP time → when its media began by its first packet's arrival, until the file starts (the 64 latest) */
  private readonly early = new Map<number, number>();
  private first?: { ts: number; beganMs: number; placedMs: number };
  private bestMs = Infinity;
  private closed = false;

  /**
   * `clockRate`: the RTP clock (Hz). `leadMs`: how long before its packet left the sender a
   * packet's media began (an audio packet leaves once its frame is full; video leaves as soon as
   * a frame is encoded: 0).
   */
  constructor(
    private readonly clockRate: number,
    private readonly leadMs: (payload: Buffer) => number,
  ) {}

  /** The file starts at RTP time `ts` (its first packet, or its first keyframe): its place (ms) by that packet's arrival. */
  started(ts: number, nowMs: number): number {
    const beganMs = this.early.get(ts) ?? nowMs;
    this.first = { ts, beganMs, placedMs: 0 };
    this.bestMs = beganMs;
    // What came of this frame and later ones before the file started counts too.
    for (const [earlyTs, earlyBeganMs] of this.early) this.consider(earlyTs, earlyBeganMs);
    this.early.clear();
    this.first.placedMs = Math.max(0, Math.round(this.bestMs));
    return this.first.placedMs;
  }

  /**
   * A packet arrived at `atMs` (in arrival order). Returns the file's better place when the
   * window closes and the packet that took least had the file begin a ms or more earlier.
   */
  arrived(ts: number, payload: Buffer, atMs: number): number | undefined {
    if (this.closed) return undefined;
    const beganMs = atMs - this.leadMs(payload);
    if (!this.first) {
      if (!this.early.has(ts)) {
        this.early.set(ts, beganMs);
        if (this.early.size > 64) this.early.delete(this.early.keys().next().value!);
      }
      return undefined;
    }
    const sinceMs = atMs - this.first.beganMs;
    const mediaMs = this.mediaMs(ts);
    if (sinceMs < PLACEMENT_WINDOW_MS && mediaMs < PLACEMENT_WINDOW_MS && mediaMs <= sinceMs + JUMP_MS) {
      this.consider(ts, beganMs);
      return undefined;
    }
    this.closed = true;
    const placedMs = Math.max(0, Math.round(this.bestMs));
    return placedMs < this.first.placedMs && atMs - placedMs <= LATEST_MS ? placedMs : undefined;
  }

  private consider(ts: number, beganMs: number): void {
    const mediaMs = this.mediaMs(ts);
    if (mediaMs >= 0 && mediaMs < PLACEMENT_WINDOW_MS) this.bestMs = Math.min(this.bestMs, beganMs - mediaMs);
  }

  /** ms of media from the file's start to RTP time `ts` (negative before it; RTP time wraps at 2^32) */
  private mediaMs(ts: number): number {
    return (((ts - this.first!.ts) | 0) * 1000) / this.clockRate;
  }
}
