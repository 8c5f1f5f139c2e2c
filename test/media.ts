// Real media for tests, made on the spot: speech from espeak-ng, Opus RTP from ffmpeg.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { RtpPacket } from 'werift';

/** A WAV of spoken English (48 kHz mono, for Chromium's fake microphone). */
export function speechWav(dir: string, text: string, name = 'speech.wav'): string {
  const raw = join(dir, `raw-${name}`);
  const out = join(dir, name);
  execFileSync('espeak-ng', ['-w', raw, text]);
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-i', raw, '-ar', '48000', '-ac', '1', out]);
  return out;
}

/**
 * ffmpeg encoding a tone (or a file) to Opus RTP on a loopback port; each packet goes to
 * `onPacket`. Stops by itself after `seconds`.
 */
export async function opusSource(onPacket: (rtp: RtpPacket) => void, seconds: number, input = 'sine=frequency=440'): Promise<ChildProcess> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  socket.on('message', (msg) => onPacket(RtpPacket.deSerialize(msg)));
  const { port } = socket.address();
  const args = input.includes('=')
    ? ['-f', 'lavfi', '-i', `${input}:duration=${seconds}`]
    : ['-t', String(seconds), '-i', input];
  const ffmpeg = spawn('ffmpeg', ['-loglevel', 'error', '-re', ...args, '-c:a', 'libopus', '-b:a', '32k', '-payload_type', '111', '-f', 'rtp', `rtp://127.0.0.1:${port}`], { stdio: 'ignore' });
  ffmpeg.on('exit', () => socket.close());
  return ffmpeg;
}
