// Where a track's file starts on the recording's clock (workers/recorder/placement.ts), from the
// arrival times of its packets: the event loop held the first ones, as when the recorder joins.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Placement } from '../workers/recorder/placement.js';

const FRAME_MS = 20;
const voice = () => new Placement(48_000, () => FRAME_MS);
const camera = () => new Placement(90_000, () => 0);
const payload = Buffer.alloc(0);

/**
 * Feeds `placement` the packets of a stream whose media begins at `beganMs` on the recording's
 * clock (RTP time `ts0` then), one every `everyMs` of media, arriving `delayMs(k)` after it left;
 * the file starts at packet `startAt`. Returns the places it gave: at the start, then any better one.
 */
function feed(
  placement: Placement,
  opts: { clock: number; everyMs: number; count: number; beganMs: number; lead: number; ts0?: number },
  delayMs: (k: number) => number,
  startAt = 0,
): number[] {
  const ts0 = opts.ts0 ?? 4_000_000_000; // wraps 2^32 within the window
  const places: number[] = [];
  // In arrival order, as the subscriber sees them.
  const packets = Array.from({ length: opts.count }, (_, k) => ({
    ts: (ts0 + Math.round((k * opts.everyMs * opts.clock) / 1000)) >>> 0,
    atMs: opts.beganMs + k * opts.everyMs + opts.lead + delayMs(k),
    k,
  })).sort((a, b) => a.atMs - b.atMs);
  for (const p of packets) {
    const better = placement.arrived(p.ts, payload, p.atMs);
    if (better !== undefined) places.push(better);
    if (p.k === startAt) places.push(placement.started(p.ts, p.atMs));
  }
  return places;
}

describe('a track file placed on the recording clock', () => {
  it('by the packet that took least, when the event loop held the first ones (they came in a burst 180 ms late)', () => {
    const places = feed(
      voice(),
      { clock: 48_000, everyMs: FRAME_MS, count: 200, beganMs: 1000, lead: FRAME_MS },
      // held until 1200 ms: the first ten arrive together, then each 2 ms after it left
      (k) => Math.max(2, 1200 - (1000 + k * FRAME_MS + FRAME_MS)),
    );
    assert.deepEqual(places, [1180, 1002], 'first by the first packet (held), then by the least delay');
  });

  it('a camera: the keyframe came late, the frames after on time', () => {
    const places = feed(camera(), { clock: 90_000, everyMs: 1000 / 15, count: 60, beganMs: 3000, lead: 0 }, (k) =>
      k === 0 ? 50 : 5,
    );
    assert.deepEqual(places, [3050, 3005]);
  });

  it('keeps its first place when no packet came sooner', () => {
    const places = feed(
      voice(),
      { clock: 48_000, everyMs: FRAME_MS, count: 200, beganMs: 500, lead: FRAME_MS },
      () => 3,
    );
    assert.deepEqual(places, [503]);
  });

  it('takes no later place than the window allows: a part holding the start may be composed by then', () => {
    // The voice paused (DTX) after its first 100 ms, and resumed 3 s later: the window closed
    // with what came before, though one of those packets took less than the first.
    const placement = voice();
    const at = (k: number) => 1000 + k * FRAME_MS + FRAME_MS + (k === 0 ? 100 : 1);
    placement.arrived(0, payload, at(0));
    assert.equal(placement.started(0, at(0)), 1100);
    for (let k = 1; k < 5; k++) assert.equal(placement.arrived(k * 960, payload, at(k)), undefined);
    assert.equal(placement.arrived(150 * 960, payload, at(150)), undefined, 'found 1001 ms, too late to take');
  });

  it('is not moved by a jump in the sender’s RTP clock', () => {
    const placement = voice();
    placement.arrived(0, payload, 520);
    assert.equal(placement.started(0, 520), 500);
    for (let k = 1; k < 10; k++) assert.equal(placement.arrived(k * 960, payload, 520 + k * FRAME_MS), undefined);
    // RTP time a second ahead of the arrivals: the sender's clock jumped (the packet would have
    // put the file's start 1 s earlier); the window closes, keeping 500.
    assert.equal(placement.arrived(60 * 960, payload, 520 + 10 * FRAME_MS), undefined);
    assert.equal(placement.arrived(100 * 960, payload, 520 + 100 * FRAME_MS), undefined);
  });
});
