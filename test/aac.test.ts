// The recording's AAC (workers/recorder/aac.ts) on a voice over room noise: at each coder it keeps
// to the bitrate the job asked for and to the sound's waveform.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aacArgs } from '../workers/recorder/aac.js';
import { recorderDefaults } from '../workers/recorder/inputs.js';
import { speechWav } from './media.js';

const SECONDS = 20;
const ffmpeg = (args: string[]) =>
  execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args], { maxBuffer: 64 << 20 });

/** Signal-to-noise ratio (dB) of `decoded` against `source`, both s16le stereo at the same clock. */
function snrDb(source: Buffer, decoded: Buffer): number {
  const a = new Int16Array(source.buffer, source.byteOffset, source.length / 2);
  const b = new Int16Array(decoded.buffer, decoded.byteOffset, decoded.length / 2);
  // A decode cut short would otherwise be compared only where it overlaps: at most one AAC frame
  // (1,024 samples a channel) apart.
  assert.ok(Math.abs(a.length - b.length) <= 2 * 1024, `decoded ${b.length / 2} samples of ${a.length / 2}`);
  let signal = 0;
  let noise = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    signal += a[i] ** 2;
    noise += (a[i] - b[i]) ** 2;
  }
  return 10 * Math.log10(signal / noise);
}

test('the AAC keeps to the asked bitrate and to the waveform, with either coder', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aac-'));
  try {
    const voice = speechWav(dir, 'Good morning everyone, the release moves to the second week of March.');
    const pcm = join(dir, 'source.pcm');
    // The voice repeated, over pink noise (seeded: the same source every run), stereo as the mix.
    const noise = `anoisesrc=color=pink:amplitude=0.01:seed=7:d=${SECONDS}`;
    ffmpeg([
      ...['-stream_loop', '-1', '-i', voice, '-f', 'lavfi', '-i', noise],
      ...['-filter_complex', '[0][1]amix=inputs=2:normalize=0:duration=shortest', '-t', String(SECONDS)],
      ...['-ar', '48000', '-ac', '2', '-f', 's16le', pcm],
    ]);
    const source = readFileSync(pcm);
    const seen: string[] = [];
    // Twoloop's bitrate, the job's default (fast), and a high one.
    for (const kbits of [32, recorderDefaults.audio_rate, 128]) {
      const mp4 = join(dir, `${kbits}.mp4`);
      ffmpeg(['-f', 's16le', '-ar', '48000', '-ac', '2', '-i', pcm, ...aacArgs(kbits), '-f', 'mp4', mp4]);
      const probe = ['-v', 'error', '-show_entries', 'stream=bit_rate', '-of', 'csv=p=0', mp4];
      const rate = Number(execFileSync('ffprobe', probe).toString());
      // ffmpeg drops the encoder's priming samples on decode: the sound comes back on the source's clock.
      const snr = snrDb(source, ffmpeg(['-i', mp4, '-f', 's16le', '-ar', '48000', '-ac', '2', '-']));
      seen.push(`${kbits} kbit/s: ${(rate / 1000).toFixed(1)} kbit/s, SNR ${snr.toFixed(1)} dB`);
      assert.ok(rate > kbits * 1000 * 0.85 && rate < kbits * 1000 * 1.2, seen.join('; '));
      // twoloop at 64 kbit/s came to 17 dB here, fast to 23: twoloop's noise shaping trades the
      // waveform for masking, which ffmpeg's documentation prefers only below 64 kbit/s (aac.ts).
      assert.ok(snr > (kbits >= 64 ? 18 : 8), seen.join('; '));
    }
    t.diagnostic(seen.join('; '));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
