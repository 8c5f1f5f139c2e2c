// A sender's RTP clock, believed as far as time went by here. The gap between two packets' RTP times
// is what a file or a decoder fills (loss, DTX, a mute), but the clock is the sender's: a restart, a
// clock set an hour ahead or back, or a sender's trick of a minute a packet made the job write or
// recognise hours that never happened, or drop every frame until the clock caught up. Judged by when
// packets arrived (the reorder hold hands each on with its arrival), not when they were let go.

/** A gap by the sender's clock is believed up to the time waited here and this much more (jitter, the reorder hold). */
const JUMP_SLACK_SEC = 2;
/** A stream may run ahead of real time by this much in all (the sender's clock drifting from ours). */
const AHEAD_SEC = 10;

export class SenderClock {
  private startedAt = -1;
  private lastAt = 0;

  /** `rate`: the RTP clock (Hz); `lateTicks`: how far behind the stream a packet is late (dropped), not a clock gone back. */
  constructor(
    private readonly rate: number,
    private readonly lateTicks: number,
  ) {}

  /**
   * The ticks to count for a packet `delta` ticks after the reference (its RTP time minus the last
   * counted; undefined for the first), arriving at `at` (ms, performance.now()) with `position`
   * ticks counted since the first: `delta` while within the time waited and JUMP_SLACK_SEC, the
   * time waited for a jump either way, at most up to AHEAD_SEC ahead of real time. Undefined: the
   * packet is dropped (late, or the stream is that far ahead already).
   */
  step(delta: number | undefined, at: number, position: number): number | undefined {
    if (this.startedAt < 0) this.startedAt = at;
    const room = ((at - this.startedAt) / 1000 + AHEAD_SEC) * this.rate - position;
    if (room <= 0) return undefined;
    if (delta !== undefined && delta < 0 && delta > -this.lateTicks) return undefined;
    const waited = ((at - this.lastAt) / 1000) * this.rate;
    this.lastAt = at;
    if (delta === undefined) return 0;
    return Math.round(Math.min(room, delta >= 0 && delta <= waited + JUMP_SLACK_SEC * this.rate ? delta : waited));
  }
}
