// The reorder buffer between a jittery network and the audio writers (recorder, transcriber).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RtpHeader, RtpPacket } from 'werift';
import { AUDIO_HOLD_TICKS, Reorder } from '../src/media/reorder.js';

/** Opus packet n of a sender: 20 ms (960 ticks) apart, sequence numbers wrapping past 65535. */
const packet = (n: number, seq0 = 65_530, ts0 = 4_294_960_000) =>
  new RtpPacket(
    new RtpHeader({ sequenceNumber: (seq0 + n) & 0xffff, timestamp: (ts0 + n * 960) >>> 0, payloadType: 111 }),
    Buffer.from([n & 0xff]),
  );

const run = (order: number[], flush = true) => {
  const out: number[] = [];
  const r = new Reorder(AUDIO_HOLD_TICKS, (rtp) => out.push(rtp.payload[0]!));
  for (const n of order) r.push(packet(n));
  if (flush) r.flush();
  return out;
};

describe('reorder', () => {
  it('puts packets overtaken by up to 100 ms back in order, across the sequence wrap', () => {
    const order = [0, 2, 1, 3, 6, 4, 5, 7, 9, 8, 10];
    assert.deepEqual(run(order), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('gives up on a lost packet once 100 ms of later audio came, without waiting for the end', () => {
    // 2 never comes: 3 to 7 wait (less than 100 ms past 3), then 8 is 100 ms past 3 and all go
    assert.deepEqual(run([0, 1, 3, 4, 5, 6, 7], false), [0, 1]);
    assert.deepEqual(run([0, 1, 3, 4, 5, 6, 7, 8], false), [0, 1, 3, 4, 5, 6, 7, 8]);
  });

  it('drops a packet whose place has been passed, and repeats', () => {
    assert.deepEqual(run([0, 1, 3, 4, 5, 6, 7, 8, 9, 2, 9]), [0, 1, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('follows a sender that restarted with a new sequence and clock', () => {
    const out: number[] = [];
    const r = new Reorder(AUDIO_HOLD_TICKS, (rtp) => out.push(rtp.payload[0]!));
    for (const n of [0, 1, 2]) r.push(packet(n));
    for (const n of [10, 11, 12]) r.push(packet(n, 20_000, 1000));
    r.flush();
    assert.deepEqual(out, [0, 1, 2, 10, 11, 12]);
  });
});
