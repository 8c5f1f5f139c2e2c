// The compose step on its own: tracks written by hand (VP8 WebM of plain colours) placed on the
// recording's clock. Checks each picture lane frame by frame: background before a track starts,
// between a camera turned off and on again, and after it ends; exactly as many frames as the
// recording lasted.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { composeArgs, type Recording } from '../workers/recorder/compose.js';
import type { CallEvent } from '../workers/recorder/capture.js';
import { recorderDefaults } from '../workers/recorder/inputs.js';

const dir = mkdtempSync(join(tmpdir(), 'co-compose-'));
mkdirSync(join(dir, 'tracks'));
const FPS = 10;

/** A WebM (VP8) of one colour, `seconds` long at 15 fps, as a camera or screen sends it. */
function colourTrack(name: string, colour: string, seconds: number): string {
  const file = join('tracks', `${name}.webm`);
  execFileSync('ffmpeg', ['-loglevel', 'error', '-f', 'lavfi', '-i', `color=c=${colour}:s=640x360:r=15:d=${seconds}`, '-c:v', 'libvpx', '-b:v', '200k', join(dir, file)]);
  return file;
}

/** The mean colour (r, g, b) of a region in every frame of the composed file. */
function regionColours(file: string, crop: string): [number, number, number][] {
  const raw = execFileSync('ffmpeg', ['-loglevel', 'error', '-i', file, '-vf', `crop=${crop},scale=1:1`, '-pix_fmt', 'rgb24', '-f', 'rawvideo', '-'], { maxBuffer: 64 * 1024 * 1024 });
  return Array.from({ length: raw.length / 3 }, (_, i) => [raw[i * 3]!, raw[i * 3 + 1]!, raw[i * 3 + 2]!]);
}

/** Which named colour each frame shows: red, blue, green or the dark background. */
const named = ([r, g, b]: [number, number, number]) => (r > 180 && g < 80 ? 'red' : b > 180 && r < 80 ? 'blue' : g > 100 && r < 80 && b < 80 ? 'green' : r < 50 && g < 50 && b < 50 ? 'bg' : `?${r},${g},${b}`);

/** Runs of equal names as [name, frames]. */
function runs(names: string[]): [string, number][] {
  const out: [string, number][] = [];
  for (const n of names) (out.at(-1)?.[0] === n ? out.at(-1)![1]++ : out.push([n, 1]));
  return out;
}

const track = (file: string, sessionId: string, source: 'camera' | 'screen', mediaMs: number, endMs: number) =>
  ({ file, sessionId, userId: sessionId, displayName: sessionId, source, startMs: mediaMs, mediaMs, endMs, stretch: 1 });

const compose = (rec: Recording, name: string) => {
  const output = join(dir, `${name}.mp4`);
  execFileSync('ffmpeg', composeArgs(dir, rec, { ...recorderDefaults, call_id: 'c', width: 1280, height: 720, frame_rate: FPS, video_preset: 'ultrafast' }, output));
  return output;
};

describe('recorder compose', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('lays a camera turned off and on again in its tile, background in the gaps; a person without camera gets a background tile', () => {
    const events: CallEvent[] = [
      { t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' },
      { t: 500, sessionId: 'bob', displayName: 'Bob', event: 'joined' },
    ];
    const rec: Recording = {
      tracks: [track(colourTrack('red', 'red', 2), 'ann', 'camera', 1000, 3000), track(colourTrack('blue', 'blue', 2), 'ann', 'camera', 4000, 6000)],
      events, durationMs: 7000,
    };
    const file = compose(rec, 'tiles');
    // Two tiles side by side, 640x720 each: sample the middle of each.
    const ann = regionColours(file, '200:200:220:260').map(named);
    const bob = regionColours(file, '200:200:860:260').map(named);
    assert.equal(ann.length, 7 * FPS);
    assert.deepEqual(runs(ann), [['bg', 10], ['red', 20], ['bg', 10], ['blue', 20], ['bg', 10]]);
    assert.deepEqual(runs(bob), [['bg', 70]]);
  });

  it('shows a screen share full frame from the moment it started, held on its last picture if it ran short of its slot', () => {
    // The share was announced until 5 s, but its file holds only 2 s: the last picture stays.
    const rec: Recording = { tracks: [track(colourTrack('green', 'green', 2), 'ann', 'screen', 2000, 5000)], events: [], durationMs: 6000 };
    const file = compose(rec, 'screen');
    const corner = regionColours(file, '100:100:0:0').map(named);
    assert.equal(corner.length, 6 * FPS);
    assert.deepEqual(runs(corner), [['bg', 20], ['green', 30], ['bg', 10]]);
  });
});
