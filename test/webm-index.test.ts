// WebmIndex against ffprobe on the same files: a WebM as ffmpeg writes it (sizes known, cues), one
// written live (segment of unknown size, as capture's writer leaves it), and a file read while it
// grows (the index updated after each append, as compose does).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inputFrom, WebmIndex } from '../workers/recorder/webm-index.js';
import { packetTimes, vp8Encoder } from './media.js';

function probe(file: string): { frames: number; lastMs: number } {
  const pts = packetTimes(file, '0');
  return { frames: pts.length, lastMs: Math.round(Math.max(...pts) * 1000) };
}

describe('WebM index', () => {
  const dir = mkdtempSync(join(tmpdir(), 'co-webm-'));
  const file = join(dir, 'camera.webm');
  execFileSync('ffmpeg', [
    ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=15:duration=40'],
    ...vp8Encoder('300k', 30),
    file,
  ]);
  const live = join(dir, 'live.webm');
  execFileSync('ffmpeg', ['-loglevel', 'error', '-i', file, '-c', 'copy', '-f', 'webm', '-live', '1', live]);
  const whole = readFileSync(file);

  for (const [name, path] of [
    ['as ffmpeg writes a file', file],
    ['written live', live],
  ] as const) {
    it(`counts the frames and finds the last time as ffprobe does: ${name}`, () => {
      const index = new WebmIndex(path).update();
      const expected = probe(path);
      assert.equal(index.frames, expected.frames);
      assert.equal(Math.round(index.lastMs), expected.lastMs);
      assert.ok(index.frames >= 590, `frames ${index.frames}`);
    });
  }

  // What compose decodes from a point of a file being written: the header and the file from a
  // keyframe cluster before the point must give what a seek in the whole file gives, frame for frame.
  const decoded = (args: string[], stream: string) =>
    execFileSync('ffmpeg', [
      '-v',
      'error',
      ...args,
      '-map',
      `0:${stream}`,
      '-t',
      '3',
      '-f',
      'framemd5',
      '-',
    ]).toString();
  it('reads a file from a point through its header and the cluster before it, as a seek in the whole file', () => {
    const index = new WebmIndex(live).update();
    assert.ok(index.starts.length >= 6, `${index.starts.length} cluster starts`);
    for (const seekMs of [0, 6200, 21_000, 33_333]) {
      const args = inputFrom(index, seekMs);
      assert.equal(
        args.some((a) => a.startsWith('concat:')),
        seekMs > 6000,
        args.join(' '),
      );
      const whole = seekMs > 0 ? ['-ss', (seekMs / 1000).toFixed(3), '-i', live] : ['-i', live];
      assert.equal(decoded(args, 'v'), decoded(whole, 'v'), `from ${seekMs} ms`);
    }
    // a voice is read from its start: Opus decoded from mid-file is not what a seek gives
    const voice = join(dir, 'voice.webm');
    execFileSync('ffmpeg', [
      ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=frequency=300:beep_factor=4:duration=40'],
      ...['-c:a', 'libopus', '-b:a', '32k', '-f', 'webm', '-live', '1', '-cluster_time_limit', '5000', voice],
    ]);
    assert.deepEqual(inputFrom(new WebmIndex(voice).update(), 21_000), ['-ss', '21.000', '-i', voice]);
  });

  it('reads a frame over 1 MiB (a detailed keyframe), as a track file takes up to 8 MiB', () => {
    const big = join(dir, 'big.webm');
    // noise at 1080p, losslessly: keyframes of about 2 MB
    execFileSync('ffmpeg', [
      ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'nullsrc=s=1920x1080:r=5,geq=random(1)*255:128:128'],
      ...['-frames:v', '3', '-c:v', 'libvpx', '-b:v', '400M', '-qmin', '0', '-qmax', '0', big],
    ]);
    const sizes = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'packet=size', '-of', 'csv=p=0', big])
      .toString()
      .trim()
      .split('\n')
      .map(Number);
    assert.ok(sizes[0]! > 1 << 20, `a first frame of ${sizes[0]} bytes`);
    const index = new WebmIndex(big).update();
    assert.equal(index.frames, 3);
    assert.deepEqual(index.lastMs, packetTimes(big).at(-1)! * 1000);
  });

  it('reads a growing file in pieces cut anywhere, reaching the same counts', () => {
    const growing = join(dir, 'growing.webm');
    writeFileSync(growing, '');
    const index = new WebmIndex(growing);
    let seen = 0;
    for (let at = 0; at < whole.length; ) {
      const next = Math.min(whole.length, at + 1 + Math.floor(Math.random() * 50_000));
      appendFileSync(growing, whole.subarray(at, next));
      at = next;
      index.update();
      assert.ok(index.frames >= seen, 'never counts back');
      seen = index.frames;
    }
    const full = new WebmIndex(file).update();
    assert.deepEqual([index.frames, index.lastMs, index.starts], [full.frames, full.lastMs, full.starts]);
    rmSync(dir, { recursive: true, force: true });
  });
});
