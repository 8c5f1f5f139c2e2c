// RTP back in sequence order. A jittery path delivers packets out of order; media is written and
// decoded as it arrives, and a packet older than the last one written is lost to the file or the
// decoder: 5% loss with 40 ± 30 ms of jitter cost a quarter of a recording's audio. A gap is
// waited for until a packet `holdTicks` newer by the RTP clock has come (never by a timer: an idle
// sender holds nothing back).
import type { RtpPacket } from 'werift';

/** a - b for 16-bit sequence numbers, in -32768..32767 */
const seqDiff = (a: number, b: number) => ((a - b + 0x18000) & 0xffff) - 0x8000;
/** a - b for 32-bit RTP timestamps */
const tsDiff = (a: number, b: number) => (a - b) | 0;

/** How long a missing Opus packet is waited for: until 100 ms of later audio (48 kHz RTP clock) has come. */
export const AUDIO_HOLD_TICKS = 4800;
/** How long a missing video packet is waited for: until 200 ms of later frames (90 kHz RTP clock) have come. */
export const VIDEO_HOLD_TICKS = 18_000;

/** More held than this is a sender restart or a flood, not reordering: let everything through. */
const MAX_HELD = 256;
/** A jump of more packets than this (either way) is a sender that restarted. */
const RESTART = 3000;

export class Reorder {
  private next: number | undefined;
  private readonly held = new Map<number, { rtp: RtpPacket; at: number }>();
  private newestTs = 0;

  /** `emit` gets each packet with when it arrived: what a jump in its clock is judged by, not when it left the hold. */
  constructor(
    private readonly holdTicks: number,
    private readonly emit: (rtp: RtpPacket, arrivedAt: number) => void,
  ) {}

  /** `at`: when the packet arrived (performance.now()). */
  push(rtp: RtpPacket, at = performance.now()): void {
    const seq = rtp.header.sequenceNumber;
    if (this.next !== undefined && Math.abs(seqDiff(seq, this.next)) > RESTART) {
      this.flush(); // a sender that restarted: a new sequence and clock
      this.next = undefined;
    }
    if (this.next === undefined) {
      this.next = seq;
      this.newestTs = rtp.header.timestamp;
    }
    if (seqDiff(seq, this.next) < 0) return; // its place has been passed, or a repeat
    this.held.set(seq, { rtp, at });
    if (tsDiff(rtp.header.timestamp, this.newestTs) > 0) this.newestTs = rtp.header.timestamp;
    this.drain();
    while (this.held.size > 0) {
      // the packet waited for has not come: skip to the oldest held once it has waited long enough
      const oldest = this.oldestHeld();
      if (this.held.size <= MAX_HELD && tsDiff(this.newestTs, oldest.header.timestamp) < this.holdTicks) break;
      this.next = oldest.header.sequenceNumber;
      this.drain();
    }
  }

  /** Everything held, in order (the track ends). */
  flush(): void {
    while (this.held.size > 0) {
      this.next = this.oldestHeld().header.sequenceNumber;
      this.drain();
    }
  }

  private drain(): void {
    for (let p = this.held.get(this.next!); p; p = this.held.get(this.next!)) {
      this.held.delete(this.next!);
      this.next = (this.next! + 1) & 0xffff;
      this.emit(p.rtp, p.at);
    }
  }

  private oldestHeld(): RtpPacket {
    let oldest: RtpPacket | undefined;
    for (const { rtp } of this.held.values())
      if (!oldest || seqDiff(rtp.header.sequenceNumber, oldest.header.sequenceNumber) < 0) oldest = rtp;
    return oldest!;
  }
}
