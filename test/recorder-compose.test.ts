// The compose step on its own: tracks written by hand (VP8 WebM of plain colours) placed on the
// recording's clock, composed in parts as during a call and joined. Checks each picture lane
// frame by frame: background before a track starts, between a camera turned off and on again,
// and after it ends; a track cut by a part boundary continues seamlessly; exactly as many frames
// as the recording lasted, one frame interval apart in the MP4 across the parts' boundaries.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallEvent, TrackEntry } from '../workers/recorder/capture.js';
import { partArgs, readRecording } from '../workers/recorder/compose.js';
import { type RecorderInputs, recorderDefaults } from '../workers/recorder/inputs.js';
import { nextPartMs, PartialRecording, Parts, stopWaitsMs } from '../workers/recorder/parts.js';
import { children, waitFor } from './helpers.js';
import { packetTimes } from './media.js';

const root = mkdtempSync(join(tmpdir(), 'co-compose-'));
const FPS = 10;
/** The recorder's inputs here: 720p, ultrafast. */
const INPUTS: RecorderInputs = {
  ...recorderDefaults,
  call_id: 'c',
  width: 1280,
  height: 720,
  frame_rate: FPS,
  video_preset: 'ultrafast',
};

/**
 * A WebM (VP8) of one colour, `seconds` long at 15 fps with a keyframe every second, as a camera
 * or screen sends it; with `then`, that colour from halfway. `size` may be odd, as a shared
 * window's can (the colour source makes even sizes of 4:2:0, so an odd one is cropped to).
 */
function colourTrack(
  dir: string,
  name: string,
  colour: string,
  seconds: number,
  then?: string,
  size = '640x360',
): string {
  const file = join('tracks', `${name}.webm`);
  mkdirSync(join(dir, 'tracks'), { recursive: true });
  const [w, h] = size.split('x').map(Number) as [number, number];
  const second = then ? `,drawbox=c=${then}:t=fill:enable='gte(t,${seconds / 2})'` : '';
  execFileSync('ffmpeg', [
    '-loglevel',
    'error',
    '-f',
    'lavfi',
    '-i',
    `color=c=${colour}:s=${w + (w % 2)}x${h + (h % 2)}:r=15:d=${seconds},crop=${w}:${h}:0:0:exact=1${second}`,
    '-c:v',
    'libvpx',
    '-b:v',
    '200k',
    '-g',
    '15',
    join(dir, file),
  ]);
  return file;
}

/** The mean colour (r, g, b) of a region in every frame of the composed file. */
function regionColours(file: string, crop: string): [number, number, number][] {
  const raw = execFileSync(
    'ffmpeg',
    ['-loglevel', 'error', '-i', file, '-vf', `crop=${crop},scale=1:1`, '-pix_fmt', 'rgb24', '-f', 'rawvideo', '-'],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  return Array.from({ length: raw.length / 3 }, (_, i) => [raw[i * 3]!, raw[i * 3 + 1]!, raw[i * 3 + 2]!]);
}

/** Which named colour each frame shows: red, blue, green or the dark background. */
const named = ([r, g, b]: [number, number, number]) =>
  r > 180 && g < 80
    ? 'red'
    : b > 180 && r < 80
      ? 'blue'
      : g > 100 && r < 80 && b < 80
        ? 'green'
        : r < 50 && g < 50 && b < 50
          ? 'bg'
          : `?${r},${g},${b}`;

/** Runs of equal names as [name, frames]. */
function runs(names: string[]): [string, number][] {
  const out: [string, number][] = [];
  for (const n of names) out.at(-1)?.[0] === n ? out.at(-1)![1]++ : out.push([n, 1]);
  return out;
}

const track = (
  file: string,
  sessionId: string,
  source: 'camera' | 'screen',
  mediaMs: number,
  endMs: number,
): TrackEntry => ({
  file,
  sessionId,
  userId: sessionId,
  displayName: sessionId,
  source,
  startMs: mediaMs,
  mediaMs,
  endMs,
});

/** A recording directory of these tracks and events, and the recorder's Parts for it (720p, ultrafast). */
function recording(
  dir: string,
  tracks: TrackEntry[],
  events: CallEvent[],
  partMs: number,
  log: string[],
  longestMs?: number,
): Parts {
  writeFileSync(join(dir, 'tracks.jsonl'), `${tracks.map((t) => JSON.stringify(t)).join('\n')}\n`);
  writeFileSync(
    join(dir, 'events.jsonl'),
    events.map((e) => JSON.stringify(e)).join('\n') + (events.length ? '\n' : ''),
  );
  return new Parts(dir, INPUTS, partMs, (m) => log.push(m), longestMs);
}

/**
 * Composes a recording directory as the recorder does: with `partMs`, the first part while the
 * "call" is still at `durationMs`, the rest at the end. `fault`: the stop comes while the first
 * part's ffmpeg runs (at nice 19), which finishes; or while it is stuck (stopped), and it is
 * dropped and redone; or while the second runs, after a first so slow that the second is dropped
 * at once; or the MP4's muxer is killed after the first part, and the parts are joined instead.
 */
async function compose(
  dir: string,
  tracks: TrackEntry[],
  events: CallEvent[],
  durationMs: number,
  partMs: number,
  fault?: Fault,
): Promise<string> {
  const log: string[] = [];
  const parts = recording(dir, tracks, events, partMs, log);
  const call = { elapsedMs: durationMs, requestKeyframes: () => undefined };
  parts.whileCapturing(call);
  const first = join(dir, 'parts', `part-0-${partMs}.mkv`);
  const running = fault !== undefined && fault !== 'muxer killed';
  if (durationMs >= partMs + 3000) {
    const [what, done] = running ? ['its ffmpeg', `${first}.tmp`] : ['its end', first];
    await waitFor(`the first part during the call: ${what}`, () => existsSync(done), 60_000);
  }
  if (running) {
    // Its ffmpeg is the spawner helper's child.
    const ffmpeg = children(process.pid)
      .flatMap((pid) => [pid, ...children(pid)])
      .find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`${first}.tmp`));
    assert.ok(ffmpeg, 'the first part is being composed');
    // Stuck: stopped, it cannot finish in the 4 s the stop gives it. Composing: it needs about
    // 0.3 CPU s, but at nice 19 behind a busy host's work it would not get that in 4 s (and be
    // dropped, as designed: with both cores busy this test failed so), so each of its threads
    // gets nice 0 (nice is per thread). Slow: stopped for 4.5 s, so that a part of its length
    // takes over 4 s at its speed, and the next one, composing at the stop, is not waited for.
    if (fault === 'stop while composing')
      for (const thread of readdirSync(`/proc/${ffmpeg}/task`)) setPriority(Number(thread), 0);
    else process.kill(ffmpeg, 'SIGSTOP');
    if (fault === 'stop after a slow part') {
      await new Promise((r) => setTimeout(r, 4500));
      process.kill(ffmpeg, 'SIGCONT');
      await waitFor('the slow part composed', () => log.some((l) => l.startsWith('composed 0.0-')), 60_000);
      parts.whileCapturing(call);
    }
  }
  if (fault === 'muxer killed') {
    const muxer = children(process.pid).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('pipe:3'));
    assert.ok(muxer, 'the MP4 is being written during the call');
    process.kill(muxer, 'SIGKILL');
  }
  const output = join(dir, 'recording.mp4');
  await parts.finish(durationMs, output);
  assert.deepEqual(
    readdirSync(join(dir, 'parts')).filter((f) => /\.(ts|pcm)$/.test(f)),
    [],
    'the MP4 streams of every part are removed once added, or once their compose failed',
  );
  // A part composing at the stop finishes at nice 19 in the time it is given; a stuck one is
  // dropped after it, and one that would not finish in it at the last part's speed at once: each
  // is composed again with the rest at full priority.
  if (fault === 'stop while composing') assert.ok(existsSync(first), log.join('\n'));
  if (fault === 'stop while a part is stuck') {
    assert.ok(!existsSync(first), log.join('\n'));
    assert.match(log.join('\n'), /part of 0\.0-2\.0 s is composed again .*: not done 4 s after the stop/);
  }
  if (fault === 'stop after a slow part') {
    assert.ok(existsSync(first), log.join('\n'));
    assert.match(log.join('\n'), /part of 2\.0-4\.0 s is composed again .*: at the last part's speed/);
  }
  // Without a fault, no join: the MP4 was written as the parts were composed.
  assert.equal(/joined instead|left for a join/.test(log.join('\n')), fault === 'muxer killed', log.join('\n'));
  return output;
}

type Fault = 'stop while composing' | 'stop while a part is stuck' | 'stop after a slow part' | 'muxer killed';

describe('recorder compose', () => {
  after(() => rmSync(root, { recursive: true, force: true }));

  for (const [partMs, fault] of [
    [60_000, undefined],
    [2000, undefined],
    [2000, 'stop while composing'],
    [2000, 'stop while a part is stuck'],
    [2000, 'stop after a slow part'],
    [2000, 'muxer killed'],
  ] as const) {
    it(`lays a camera turned off and on again in its tile, background in the gaps; a person without camera gets a background tile (parts of ${partMs / 1000} s${fault ? `, ${fault}` : ''})`, async () => {
      const dir = join(root, `tiles-${partMs}-${fault}`);
      const tracks = [
        // Red, then green from halfway: a part boundary at 2 s cuts it there.
        track(colourTrack(dir, 'red', 'red', 2, 'green'), 'ann', 'camera', 1000, 3000),
        track(colourTrack(dir, 'blue', 'blue', 2), 'ann', 'camera', 4000, 6000),
      ];
      const events: CallEvent[] = [
        { t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' },
        { t: 500, sessionId: 'bob', displayName: 'Bob', event: 'joined' },
      ];
      const file = await compose(dir, tracks, events, 7000, partMs, fault);
      // Each part's picture goes into the MP4 at its place on the MP4's clock (PartStreams): one
      // frame interval between every two frames, across the parts' boundaries too. Decoding the
      // file (below) would not show a part placed a frame late or early: the decoder just shows
      // each frame longer or drops one.
      const pts = packetTimes(file, 'v').sort((a, b) => a - b); // in presentation order
      assert.equal(pts.length, 7 * FPS);
      const steps = pts.slice(1).map((t, k) => Math.round((t - pts[k]!) * 1000));
      assert.deepEqual(
        steps.flatMap((ms, k) => (ms === 1000 / FPS ? [] : [`${ms} ms before frame ${k + 1}`])),
        [],
      );
      // Two tiles side by side, 640x720 each: sample the middle of each.
      const ann = regionColours(file, '200:200:220:260').map(named);
      const bob = regionColours(file, '200:200:860:260').map(named);
      assert.equal(ann.length, 7 * FPS);
      assert.deepEqual(runs(ann), [
        ['bg', 10],
        ['red', 10],
        ['green', 10],
        ['bg', 10],
        ['blue', 20],
        ['bg', 10],
      ]);
      assert.deepEqual(runs(bob), [['bg', 70]]);
    });
  }

  it('draws names as written: a %, a quote, a colon, a backslash, and %{...} as text', async () => {
    const dir = join(root, 'names');
    mkdirSync(dir, { recursive: true });
    const names = ["Ana 100% it's: x\\y", 'Bob %{pts} 50%'];
    const events: CallEvent[] = names.map((displayName, k) => ({
      t: 0,
      sessionId: `s${k}`,
      displayName,
      event: 'joined',
    }));
    const file = await compose(dir, [], events, 1000, 60_000);
    // The columns where a name's white text is, in its tile's name strip (two 640x720 tiles; the
    // name at 16 px from the left, 60 px high, 16 px above the bottom), against drawtext drawing
    // the same text from a file at the same size: the whole name drawn, nothing more, nothing less.
    const brightColumns = (frame: Buffer, width: number) => {
      const columns = [...Array(width).keys()].filter((x) =>
        Array.from({ length: frame.length / width }, (_, y) => frame[y * width + x]!).some((v) => v > 200),
      );
      return [columns[0], columns.at(-1)];
    };
    const gray = (args: string[]) =>
      execFileSync('ffmpeg', [
        '-loglevel',
        'error',
        ...args,
        '-frames:v',
        '1',
        '-pix_fmt',
        'gray',
        '-f',
        'rawvideo',
        '-',
      ]);
    names.forEach((name, k) => {
      const composed = gray(['-i', file, '-vf', `crop=640:90:${k * 640}:630`]);
      const textFile = join(dir, `name-${k}.txt`);
      writeFileSync(textFile, name.replace(/'/g, '\u2019'));
      const font = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';
      const reference = gray([
        ...['-f', 'lavfi', '-i', 'color=c=black:s=640x90'],
        ...[
          '-vf',
          `drawtext=fontfile=${font}:textfile=${textFile}:expansion=none:fontcolor=white:fontsize=60:x=16:y=14`,
        ],
      ]);
      const [first, last] = brightColumns(reference, 640);
      const [from, to] = brightColumns(composed, 640);
      assert.ok(first !== undefined && last! - first > 200, `${name}: the reference draws it`);
      assert.ok(
        from !== undefined && Math.abs(from - first) <= 3 && Math.abs(to! - last!) <= 3,
        `${name}: drawn from ${from} to ${to}, as written from ${first} to ${last}`,
      );
    });
  });

  it('composes a call whose filter graph is longer than one argument may be (128 KiB): 150 people, two changes of layout', async () => {
    const dir = join(root, 'crowd');
    mkdirSync(dir, { recursive: true });
    const people = Array.from({ length: 150 }, (_, k) => `person-${k}`);
    const events: CallEvent[] = [
      ...people.map((sessionId) => ({ t: 0, sessionId, displayName: sessionId, event: 'joined' as const })),
      { t: 300, sessionId: people[0]!, displayName: people[0]!, event: 'left' },
      { t: 600, sessionId: people[0]!, displayName: people[0]!, event: 'joined' },
    ];
    const file = await compose(dir, [], events, 1000, 60_000);
    assert.equal(packetTimes(file, 'v').length, FPS, 'a second of pictures');
    const { graph } = partArgs(readRecording(dir, 1000), INPUTS, { fromMs: 0, toMs: 1000 }, join(dir, 'x.mkv'));
    assert.ok(graph.text.length > 128 * 1024, `the graph is ${graph.text.length} bytes`);
  });

  it('lays out at most 16 stretches a part when people come and go without pause', () => {
    const dir = join(root, 'churn');
    mkdirSync(dir, { recursive: true });
    // b comes and goes every 100 ms for 5 s, then is gone: a tile for b, then the grid without it
    const events: CallEvent[] = [{ t: 0, sessionId: 'a', displayName: 'a', event: 'joined' }];
    for (let t = 100; t < 5000; t += 100)
      events.push({ t, sessionId: 'b', displayName: 'b', event: t % 200 ? 'joined' : 'left' });
    events.push({ t: 5000, sessionId: 'b', displayName: 'b', event: 'left' });
    writeFileSync(join(dir, 'tracks.jsonl'), '');
    writeFileSync(join(dir, 'events.jsonl'), events.map((e) => `${JSON.stringify(e)}\n`).join(''));
    const { graph } = partArgs(readRecording(dir, 10_000), INPUTS, { fromMs: 0, toMs: 10_000 }, join(dir, 'x.mkv'));
    const concat = /concat=n=(\d+):v=1:a=0\[video\]/.exec(graph.text);
    assert.ok(concat, 'more than one stretch');
    assert.ok(Number(concat[1]) <= 16, `${concat[1]} stretches`);
    assert.match(graph.text, /text='b'/, "b's tile");
  });

  /**
   * Ann's voice, a 440 Hz tone of 7 s (`af`: filtered so, as a gap), recorded in parts of `partMs`;
   * the recording's level in 10 ms windows.
   */
  const annsTone = async (name: string, partMs: number, af: string[] = []): Promise<number[]> => {
    const dir = join(root, name);
    mkdirSync(join(dir, 'tracks'), { recursive: true });
    execFileSync('ffmpeg', [
      ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=7', ...af],
      ...['-c:a', 'libopus', '-b:a', '64k', join(dir, 'tracks', 'tone.webm')],
    ]);
    const mic: TrackEntry = {
      file: join('tracks', 'tone.webm'),
      sessionId: 'ann',
      userId: 'ann',
      displayName: 'Ann',
      source: 'mic',
      startMs: 0,
      mediaMs: 0,
      endMs: 7000,
    };
    const joined: CallEvent = { t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' };
    const file = await compose(dir, [mic], [joined], 7000, partMs);
    const pcm = execFileSync('ffmpeg', [
      '-loglevel',
      'error',
      '-i',
      file,
      '-ac',
      '1',
      '-ar',
      '8000',
      '-f',
      's16le',
      '-',
    ]);
    return Array.from({ length: Math.floor(pcm.length / 160) }, (_, w) => {
      let sum = 0;
      for (let i = w * 160; i < w * 160 + 160; i += 2) sum += pcm.readInt16LE(i) ** 2;
      return Math.sqrt(sum / 80);
    });
  };

  it('joins the voices of parts without a seam: a steady tone stays steady across part boundaries', async () => {
    const rms = await annsTone('voice', 2000);
    // 10 ms windows from 0.1 s to 6.9 s: the boundaries at 2, 4 and 6 s included.
    const steady = rms.slice(10, 690);
    const median = [...steady].sort((a, b) => a - b)[steady.length >> 1]!;
    const off = steady
      .map((r, w) => [(w + 10) / 100, r] as const)
      .filter(([, r]) => Math.abs(r - median) > 0.2 * median);
    assert.ok(median > 1000, `tone level ${median}`);
    assert.deepEqual(
      off,
      [],
      `windows off the steady level ${median.toFixed(0)}: ${off.map(([t, r]) => `${t}s:${r.toFixed(0)}`).join(' ')}`,
    );
  });

  it('keeps a voice where it is after a gap a part begins in (a mute): not moved to the start of the part', async () => {
    // the tone from 0 to 2 s and from 5 to 7 s, no packets between (a sender muted 3 s); parts of
    // 3 s: the second begins inside the gap, 2 s before the tone comes back
    const rms = await annsTone('voice-gap', 3000, ['-af', "aselect='lt(t\\,2)+gte(t\\,5)'"]);
    const loud = (fromS: number, toS: number) => {
      const windows = rms.slice(Math.round(fromS * 100), Math.round(toS * 100));
      return windows.filter((r) => r > 1000).length / windows.length;
    };
    assert.ok(loud(0.2, 1.8) > 0.95, `the tone before the mute: ${loud(0.2, 1.8)}`);
    assert.ok(loud(2.2, 4.8) < 0.05, `silence during the mute: ${loud(2.2, 4.8)} of it loud`);
    assert.ok(loud(5.2, 6.8) > 0.95, `the tone after it, where it was: ${loud(5.2, 6.8)}`);
  });

  it('a voice that stops without its track ending (a muted or frozen sender) is left out of the parts after it, which finish', {
    timeout: 120_000,
  }, async () => {
    const dir = join(root, 'stopped-voice');
    mkdirSync(join(dir, 'tracks'), { recursive: true });
    const tone = (name: string, frequency: number, seconds: number) => {
      execFileSync('ffmpeg', [
        ...['-loglevel', 'error', '-f', 'lavfi', '-i', `sine=frequency=${frequency}:duration=${seconds}`],
        ...['-c:a', 'libopus', '-b:a', '64k', join(dir, 'tracks', `${name}.webm`)],
      ]);
      const mic: TrackEntry = {
        file: join('tracks', `${name}.webm`),
        sessionId: name,
        userId: name,
        displayName: name,
        source: 'mic',
        startMs: 0,
        mediaMs: 0,
      };
      return mic;
    };
    // Ann's packets stop at 2 s and Bob's at 6 s, their tracks still open; the second part (4-8 s)
    // starts past Ann's file's end: ffmpeg's amix with an input that has nothing in the part, and
    // another that ends within it, never finished (100 % CPU, deaf to SIGTERM).
    const file = await compose(
      dir,
      [tone('ann', 440, 2), tone('bob', 880, 6)],
      ['ann', 'bob'].map((who) => ({ t: 0, sessionId: who, displayName: who, event: 'joined' as const })),
      8000,
      4000,
    );
    const seconds = Number(
      execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]).toString(),
    );
    assert.ok(Math.abs(seconds - 8) < 0.2, `the recording lasts 8 s: ${seconds}`);
  });

  for (const partMs of [60_000, 2000])
    it(`switches the layout at the frame where it changes, inside a part as at its ends: the grid, a screen share, the grid, one tile when one is left (parts of ${partMs / 1000} s)`, async () => {
      const dir = join(root, `layout-${partMs}`);
      const tracks = [
        track(colourTrack(dir, 'red', 'red', 7), 'ann', 'camera', 0, 7000),
        track(colourTrack(dir, 'blue', 'blue', 2), 'bob', 'screen', 2500, 4500),
      ];
      const events: CallEvent[] = [
        { t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' },
        { t: 0, sessionId: 'bob', displayName: 'Bob', event: 'joined' },
        { t: 5500, sessionId: 'bob', displayName: 'Bob', event: 'left' },
      ];
      const file = await compose(dir, tracks, events, 7000, partMs);
      // Where Ann's tile is in a grid of two, and where Bob's is; full frame, both show the screen
      // share or Ann alone.
      const left = regionColours(file, '200:200:220:260').map(named);
      const right = regionColours(file, '200:200:860:260').map(named);
      assert.deepEqual(runs(left), [
        ['red', 25],
        ['blue', 20],
        ['red', 25],
      ]);
      assert.deepEqual(runs(right), [
        ['bg', 25],
        ['blue', 20],
        ['bg', 10],
        ['red', 15],
      ]);
    });

  it('begins a stretch in a picture held past its file as background, and what follows keeps its place', async () => {
    // Ann's first camera file holds 3 s though the track lasted until 4.5 s: its last picture is
    // held until Bob's arrival at 4 s changes the layout; from there, background until her second
    // camera at 5 s. A file read from past its last frame gave no frames, and her tile's lane ran
    // 5 frames short: the second camera came 0.5 s early.
    const dir = join(root, 'held');
    const file = await compose(
      dir,
      [
        track(colourTrack(dir, 'red', 'red', 3), 'ann', 'camera', 0, 4500),
        track(colourTrack(dir, 'blue', 'blue', 2), 'ann', 'camera', 5000, 7000),
      ],
      [
        { t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' },
        { t: 4000, sessionId: 'bob', displayName: 'Bob', event: 'joined' },
      ],
      7000,
      60_000,
    );
    assert.deepEqual(runs(regionColours(file, '200:200:220:260').map(named)), [
      ['red', 40],
      ['bg', 10],
      ['blue', 20],
    ]);
  });

  it('lengthens the parts while they compose fast enough for the stop, up to the longest, in whole seconds', () => {
    // 10 s composed in 1.4 s: 4 s after the stop hold 28.6 s, minus the 3 s a part settles.
    assert.equal(nextPartMs(0.14, 10_000, 30_000), 25_000);
    assert.equal(nextPartMs(0.05, 10_000, 30_000), 30_000);
    assert.equal(nextPartMs(0.4, 10_000, 30_000), 10_000);
    assert.equal(nextPartMs(0.14, 10_000, 10_000), 10_000, 'PART_SEC fixes them');
  });

  it("waits at the stop for the part composing only while the last part's speed says it ends within 4 s", () => {
    // The part before took 0.6 s a second: a part of 10 s takes about 6 s.
    assert.equal(stopWaitsMs({ lengthMs: 10_000, forMs: 1000 }, 0.6), 0, '5 s left: composed again with the rest');
    assert.equal(stopWaitsMs({ lengthMs: 10_000, forMs: 2500 }, 0.6), 4000, '3.5 s left');
    assert.equal(stopWaitsMs({ lengthMs: 10_000, forMs: 1000 }, 0.3), 4000, 'faster parts');
    assert.equal(stopWaitsMs({ lengthMs: 10_000, forMs: 0 }, undefined), 4000, 'the first part');
  });

  it('composes the next part at the length the last one earned, and the parts still make the whole recording', async () => {
    const dir = join(root, 'grow');
    const log: string[] = [];
    const parts = recording(
      dir,
      [track(colourTrack(dir, 'red', 'red', 20), 'ann', 'camera', 0, 20_000)],
      [{ t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' }],
      2000,
      log,
      8000,
    );
    const capture = { elapsedMs: 5000, requestKeyframes: () => undefined };
    parts.whileCapturing(capture);
    await waitFor('the first part', () => existsSync(join(dir, 'parts', 'part-0-2000.mkv')), 60_000);
    await waitFor('its log line', () => log.length > 0, 10_000);
    // How long it took here decides the next length, which its log line says.
    const grown = /parts of (\d+) s from here/.exec(log[0]!);
    const next = 2000 + (grown ? Number(grown[1]) * 1000 : 2000);
    assert.ok(next - 2000 <= 8000, log[0]);
    capture.elapsedMs = 19_000;
    parts.whileCapturing(capture);
    await waitFor('the second part', () => existsSync(join(dir, 'parts', `part-2000-${next}.mkv`)), 60_000);
    const output = join(dir, 'recording.mp4');
    await parts.finish(20_000, output);
    assert.equal(packetTimes(output, 'v').length, 20 * FPS);
  });

  it('a compose that fails at the end fails the recording and stops the MP4 muxer, which would wait for parts for good', async () => {
    const dir = join(root, 'failing');
    const parts = recording(
      dir,
      [track(colourTrack(dir, 'red', 'red', 6), 'ann', 'camera', 0, 6000)],
      [{ t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' }],
      2000,
      [],
    );
    parts.whileCapturing({ elapsedMs: 5000, requestKeyframes: () => undefined });
    await waitFor('the first part', () => existsSync(join(dir, 'parts', 'part-0-2000.mkv')), 60_000);
    const muxer = children(process.pid).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('pipe:3'));
    assert.ok(muxer, 'the MP4 is being written during the call');
    rmSync(join(dir, 'parts'), { recursive: true }); // the disk under the parts is gone: the rest cannot be composed
    await assert.rejects(parts.finish(6000, join(dir, 'recording.mp4')));
    await waitFor(
      'the muxer gone',
      () => !existsSync(`/proc/${muxer}/cmdline`) || !readFileSync(`/proc/${muxer}/cmdline`, 'utf8').includes('pipe:3'),
      30_000,
    );
  });

  it('a part that fails during the call is tried again, and the parts after it are composed during the call', async () => {
    const dir = join(root, 'retried');
    const log: string[] = [];
    const parts = recording(
      dir,
      [track(colourTrack(dir, 'red', 'red', 9), 'ann', 'camera', 0, 9000)],
      [{ t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' }],
      2000,
      log,
    );
    const capture = { elapsedMs: 9000, requestKeyframes: () => undefined };
    parts.whileCapturing(capture);
    // The first part's ffmpeg (the spawner helper's child) is killed as the kernel's OOM killer would.
    const first = join(dir, 'parts', 'part-0-2000.mkv.tmp');
    let ffmpeg: number | undefined;
    for (const until = Date.now() + 30_000; ffmpeg === undefined && Date.now() < until; ) {
      ffmpeg = children(process.pid)
        .flatMap((pid) => children(pid))
        .find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(first));
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(ffmpeg, 'the first part is being composed');
    process.kill(ffmpeg, 'SIGKILL');
    await waitFor('the failure', () => log.some((l) => /failed \(1 of 3 times\).*tried again in 5 s/.test(l)), 30_000);
    const after = setInterval(() => parts.whileCapturing(capture), 200);
    try {
      await waitFor(
        'a part after the first, during the call',
        () => log.some((l) => /^composed 2\.0-/.test(l)),
        90_000,
      );
    } finally {
      clearInterval(after);
    }
    assert.ok(
      log.some((l) => /^composed 0\.0-2\.0 s/.test(l)),
      log.join('\n'),
    );
    const output = join(dir, 'recording.mp4');
    await parts.finish(9000, output);
    assert.equal(packetTimes(output, 'v').length, 9 * FPS);
  });

  it('a compose that fails at the end keeps the recording up to there, and says so', async () => {
    const dir = join(root, 'failing-late');
    const camera = colourTrack(dir, 'red', 'red', 6);
    const parts = recording(
      dir,
      [track(camera, 'ann', 'camera', 0, 6000)],
      [{ t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' }],
      2000,
      [],
    );
    parts.whileCapturing({ elapsedMs: 5000, requestKeyframes: () => undefined });
    await waitFor('the first part', () => existsSync(join(dir, 'parts', 'part-0-2000.mkv')), 60_000);
    writeFileSync(join(dir, camera), Buffer.alloc(4096)); // the track's file spoilt: the rest cannot be composed
    const output = join(dir, 'recording.mp4');
    const err = await parts.finish(6000, output).then(
      () => assert.fail('the end was composed'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof PartialRecording, String(err));
    assert.equal(err.untilMs, 2000);
    assert.equal(packetTimes(output, 'v').length, 2 * FPS, 'the first part, whole');
  });

  for (const partMs of [2000, 3000])
    it(`fits every picture size to its place, and keeps time across size changes: a 4:3 camera, one larger than its tile, one of 1x1, a window shared at an odd size (parts of ${partMs / 1000} s)`, async () => {
      const dir = join(root, `sizes-${partMs}`);
      // Ann's camera changes its size mid-track, in one file: 1 s of red at 320x240, 1 s of blue at
      // 1280x960 (as a sender raising its resolution, larger than the tile), 1 s of red in one pixel;
      // from 3 s Bob shares a window of 1013x677.
      const thirds = [
        colourTrack(dir, 'small', 'red', 1, undefined, '320x240'),
        colourTrack(dir, 'large', 'blue', 1, undefined, '1280x960'),
        colourTrack(dir, 'pixel', 'red', 1, undefined, '1x1'),
      ];
      writeFileSync(join(dir, 'thirds.txt'), thirds.map((f) => `file '${join(dir, f)}'\n`).join(''));
      execFileSync('ffmpeg', [
        ...['-loglevel', 'error', '-f', 'concat', '-safe', '0', '-i', join(dir, 'thirds.txt')],
        ...['-c', 'copy', join(dir, 'tracks', 'camera.webm')],
      ]);
      const file = await compose(
        dir,
        [
          track(join('tracks', 'camera.webm'), 'ann', 'camera', 0, 3000),
          track(colourTrack(dir, 'window', 'green', 3, undefined, '1013x677'), 'bob', 'screen', 3000, 6000),
        ],
        [
          { t: 0, sessionId: 'ann', displayName: 'Ann', event: 'joined' },
          { t: 0, sessionId: 'bob', displayName: 'Bob', event: 'joined' },
        ],
        6000,
        partMs,
      );
      // Ann's tile is 640x720: her 4:3 pictures fill its width (less the margin), 480 high,
      // letterboxed; the window fills the frame's height, 1076 wide, pillarboxed. Each picture comes
      // at its time: a size change made ffmpeg rebuild the part's graph, and the frames after it were
      // misplaced.
      const centre = regionColours(file, '200:200:220:260').map(named);
      const inBox = regionColours(file, '200:30:220:130').map(named);
      const aboveBox = regionColours(file, '200:30:220:60').map(named);
      const leftEdge = regionColours(file, '60:200:20:260').map(named);
      const ann: [string, number][] = [
        ['red', 10],
        ['blue', 10],
        ['red', 10],
      ];
      assert.deepEqual(runs(centre), [...ann, ['green', 30]]);
      assert.deepEqual(runs(inBox), [...ann, ['green', 30]]);
      assert.deepEqual(runs(leftEdge), [...ann, ['bg', 30]]);
      // The pixel, from 2 s, is fitted as a square, 640 high: at the start of the second part of 2 s,
      // or read again from its keyframe in the first of 3 s (scaled to that read's first size, 4:3,
      // it was letterboxed).
      assert.deepEqual(runs(aboveBox), [
        ['bg', 20],
        ['red', 10],
        ['green', 30],
      ]);
    });

  it('shows a screen share full frame from the moment it started, held on its last picture if it ran short of its slot', async () => {
    // The share was announced until 5 s, but its file holds only 2 s: the last picture stays.
    const dir = join(root, 'screen');
    const file = await compose(
      dir,
      [track(colourTrack(dir, 'green', 'green', 2), 'ann', 'screen', 2000, 5000)],
      [],
      6000,
      60_000,
    );
    const corner = regionColours(file, '100:100:0:0').map(named);
    assert.equal(corner.length, 6 * FPS);
    assert.deepEqual(runs(corner), [
      ['bg', 20],
      ['green', 30],
      ['bg', 10],
    ]);
  });
});
