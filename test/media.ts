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

/** ffmpeg sending RTP to a loopback port; each packet goes to `onPacket`. */
async function rtpSource(onPacket: (rtp: RtpPacket) => void, input: string[], codec: string[]): Promise<ChildProcess> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  socket.on('message', (msg) => onPacket(RtpPacket.deSerialize(msg)));
  const { port } = socket.address();
  const ffmpeg = spawn('ffmpeg', ['-loglevel', 'error', '-re', ...input, ...codec, '-f', 'rtp', `rtp://127.0.0.1:${port}`], { stdio: 'ignore' });
  ffmpeg.on('exit', () => socket.close());
  return ffmpeg;
}

/** Opus RTP of a tone (lavfi source) or a file, for `seconds`. */
export function opusSource(onPacket: (rtp: RtpPacket) => void, seconds: number, input = 'sine=frequency=440'): Promise<ChildProcess> {
  const args = input.includes('=') ? ['-f', 'lavfi', '-i', `${input}:duration=${seconds}`] : ['-t', String(seconds), '-i', input];
  return rtpSource(onPacket, args, ['-c:a', 'libopus', '-b:a', '32k', '-payload_type', '111']);
}

/** VP8 RTP of ffmpeg's moving test pattern, for `seconds`. */
export function vp8Source(onPacket: (rtp: RtpPacket) => void, seconds: number, size = '640x360', rate = 15): Promise<ChildProcess> {
  return rtpSource(onPacket, ['-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${rate}:duration=${seconds}`],
    ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '600k', '-g', String(rate * 2), '-payload_type', '96']);
}
