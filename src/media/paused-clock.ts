// A sender that resumes its RTP clock where it stopped leaves a pause out of its clock: Firefox after
// a mute, as upstream's transcriber names it. Everything it sends after would be written (and
// recognised) that long early, against the picture and the other voices. But a stall (the network's,
// or the job's own event loop read late) whose packets then come in one burst looks the same at the
// first packet after it: a gap by arrival that the clock does not have. What comes next tells them
// apart: a resumed sender sends at the pace of its clock, a stall's packets come at once. So after
// such a gap the packets are held until JUDGE_MS of the sender's clock has come, then let go: with
// the pause added to their RTP times (and to every later packet's) when they came at least half as
// slowly as their clock says, unchanged when faster. Upstream's transcriber adds the pause on the
// first packet alone, and a stall set its track late for good.

/** A gap by arrival this much longer than by the sender's clock is a pause the clock may have left out. */
const PAUSE_MS = 1000;
/**
 * How much of the sender's clock after the gap is waited for to tell a resumed sender from a burst:
 * its first packets may be read up to half of it late (the job's event loop busy) and still show
 * the sender's pace. Live captions wait this much more after a mute.
 */
const JUDGE_MS = 300;
/** Held at most (a sender could send one RTP time without end): then judged by what came. */
const MAX_HELD = 512;

/** The part of an RTP packet this needs: its RTP time, changed in place where a pause is added. */
interface Timed {
  header: { timestamp: number };
}

export class PausedClock<P extends Timed> {
  /** ticks added to every RTP time since the last pause found */
  private offset = 0;
  /** the last packet's RTP time as sent, and when it arrived */
  private last?: { ts: number; at: number };
  /** packets since a gap the clock did not have, with when they came, and that gap (ticks) */
  private held: { packet: P; at: number }[] = [];
  private pauseTicks = 0;

  /**
   * `rate`: the RTP clock (Hz). `emit` gets each packet in the order pushed, with when it arrived,
   * its RTP time on a clock that counts the pauses.
   */
  constructor(
    private readonly rate: number,
    private readonly emit: (packet: P, arrivedAt: number) => void,
  ) {}

  /** A packet in sequence order (after the reorder hold), `at` when it arrived (ms). */
  push(packet: P, at: number): void {
    const ts = packet.header.timestamp;
    const last = this.last;
    this.last = { ts, at };
    const clockMs = last ? this.ms(ts, last.ts) : -1;
    const gapMs = last && clockMs >= 0 ? at - last.at - clockMs : 0;
    if (this.held.length > 0) {
      // Another such gap: what is held came no faster than its clock. A clock gone back (a sender
      // that restarted): nothing to tell them apart by, and the sender's clock is kept.
      if (gapMs > PAUSE_MS) this.judge(true);
      else if (this.ms(ts, this.held[0]!.packet.header.timestamp) < 0) this.judge(false);
      else {
        this.held.push({ packet, at });
        const heldMs = this.ms(ts, this.held[0]!.packet.header.timestamp);
        if (heldMs >= JUDGE_MS || this.held.length >= MAX_HELD) this.judge(this.paced());
        return;
      }
    }
    if (gapMs > PAUSE_MS) {
      this.held.push({ packet, at });
      this.pauseTicks = Math.round((gapMs * this.rate) / 1000);
      return;
    }
    this.let(packet, at);
  }

  /** Lets go what is held (the track ends). */
  flush(): void {
    if (this.held.length > 0) this.judge(this.paced());
  }

  /**
   * Whether what is held came at least half as slowly as its clock says: a sender's pace, not a
   * burst. Held packets of one RTP time (a packet alone, a large keyframe) tell nothing: the
   * sender's clock is kept, as before this stage.
   */
  private paced(): boolean {
    const first = this.held[0]!;
    const newest = this.held.at(-1)!;
    const clockMs = this.ms(newest.packet.header.timestamp, first.packet.header.timestamp);
    return clockMs > 0 && newest.at - first.at >= clockMs / 2;
  }

  private judge(paused: boolean): void {
    if (paused) this.offset += this.pauseTicks;
    for (const { packet, at } of this.held.splice(0)) this.let(packet, at);
  }

  private let(packet: P, at: number): void {
    if (this.offset !== 0) packet.header.timestamp = (packet.header.timestamp + this.offset) >>> 0;
    this.emit(packet, at);
  }

  /** ms of the sender's clock from RTP time `from` to `to` (it wraps at 2^32) */
  private ms(to: number, from: number): number {
    return (((to - from) | 0) * 1000) / this.rate;
  }
}
