// Real media for tests, made on the spot: speech from espeak-ng, Opus RTP from ffmpeg.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createSocket, type Socket } from 'node:dgram';
import { join } from 'node:path';
import { RtpPacket } from 'werift';
import { raiseReceiveBuffer } from '../src/sfu/udp-sockets.js';
import { vp8DescriptorLength } from '../src/media/vp8.js';

/** A WAV of spoken English (48 kHz mono, for Chromium's fake microphone). */
export function speechWav(dir: string, text: string, name = 'speech.wav'): string {
  const raw = join(dir, `raw-${name}`);
  const out = join(dir, name);
  execFileSync('espeak-ng', ['-w', raw, text]);
  execFileSync('ffmpeg', ['-loglevel', 'error', '-y', '-i', raw, '-ar', '48000', '-ac', '1', out]);
  return out;
}

/**
 * A loopback socket that hands each RTP packet ffmpeg sends it to `onPacket`. Its receive buffer
 * is raised as the SFU's (udp-sockets.ts): ffmpeg sends a frame's packets at once, and with the
 * kernel's default (92 datagrams) the publishers of bench/recorder, busy in one process with the
 * SFU, lost packets here before they were ever published (README, bench/recorder).
 */
async function rtpInput(onPacket: (rtp: RtpPacket) => void): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  raiseReceiveBuffer(socket);
  socket.on('message', (msg) => onPacket(RtpPacket.deSerialize(msg)));
  const { port } = socket.address();
  inputPorts.add(port);
  socket.once('close', () => inputPorts.delete(port));
  return socket;
}

const inputPorts = new Set<number>();
/** The ports of the RTP inputs open now: bench/recorder tells their kernel drops apart. */
export const rtpInputPorts = (): number[] => [...inputPorts];

/** ffmpeg sending RTP to a loopback port; each packet goes to `onPacket`. */
export async function rtpSource(
  onPacket: (rtp: RtpPacket) => void,
  input: string[],
  codec: string[],
): Promise<ChildProcess> {
  const socket = await rtpInput(onPacket);
  const { port } = socket.address();
  const ffmpeg = spawn(
    'ffmpeg',
    ['-loglevel', 'error', '-re', ...input, ...codec, '-f', 'rtp', `rtp://127.0.0.1:${port}`],
    { stdio: 'ignore' },
  );
  ffmpeg.on('exit', () => socket.close());
  return ffmpeg;
}

/** Opus RTP of a tone (lavfi source) or a file, for `seconds`. */
export function opusSource(
  onPacket: (rtp: RtpPacket) => void,
  seconds: number,
  input = 'sine=frequency=440',
): Promise<ChildProcess> {
  const args = input.includes('=')
    ? ['-f', 'lavfi', '-i', `${input}:duration=${seconds}`]
    : ['-t', String(seconds), '-i', input];
  return rtpSource(onPacket, args, ['-c:a', 'libopus', '-b:a', '32k', '-payload_type', '111']);
}

/**
 * A voice whose RTP clock pauses with it, as Firefox's does over a mute: `seconds` of `input`,
 * nothing for `pauseSec`, then `seconds` more whose clock and sequence go on from where the first
 * stopped (each ffmpeg starts its own). Resolves when the second has ended, with the pause between
 * the last packet sent before it and the first after (s): the second ffmpeg's start adds to it.
 */
export async function pausedClockVoice(
  onPacket: (rtp: RtpPacket) => void,
  seconds: number,
  pauseSec: number,
  input = 'sine=frequency=440',
): Promise<number> {
  // as ffmpeg numbered them: the sender may number them again in place
  let last = { seq: 0, ts: 0, at: 0 };
  const spoken = await opusSource(
    (rtp) => {
      last = { seq: rtp.header.sequenceNumber, ts: rtp.header.timestamp, at: performance.now() };
      onPacket(rtp);
    },
    seconds,
    input,
  );
  await once(spoken, 'exit');
  await new Promise((r) => setTimeout(r, pauseSec * 1000));
  let first: { seq: number; ts: number; at: number } | undefined;
  const resumed = await opusSource(
    (rtp) => {
      first ??= { seq: rtp.header.sequenceNumber, ts: rtp.header.timestamp, at: performance.now() };
      rtp.header.sequenceNumber = (last.seq + 1 + rtp.header.sequenceNumber - first.seq) & 0xffff;
      rtp.header.timestamp = (last.ts + 960 + rtp.header.timestamp - first.ts) >>> 0;
      onPacket(rtp);
    },
    seconds,
    input,
  );
  await once(resumed, 'exit');
  return (first!.at - last.at) / 1000;
}

/**
 * A screen share as people share screens: white slides whose title changes every 5 s and a pointer
 * moving across them (mostly still, unlike the test pattern).
 */
export const slides = (size: string, rate: number) =>
  `color=c=white:s=${size}:r=${rate},drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf:text='Slide %{eif\\:floor(t/5)+1\\:d}':fontsize=72:x=80:y=80,` +
  `drawbox=x='mod(t*120\\,1100)':y=400:w=20:h=20:c=black:t=fill`;

/**
 * ffmpeg's output arguments for VP8 as a browser sends it live: libvpx at real-time speed, at
 * `bitrate`, a keyframe every `gop` frames.
 */
export const vp8Encoder = (bitrate: string, gop: number): string[] => [
  ...['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8'],
  ...['-b:v', bitrate, '-g', String(gop)],
];

/** The picture of `file` at `atS`, 160x90 in grey: enough to tell whether it changes. */
export const greyFrame = (file: string, atS: number): Buffer =>
  execFileSync('ffmpeg', [
    ...['-loglevel', 'error', '-ss', String(atS), '-i', file],
    ...['-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'gray', '-s', '160x90', '-'],
  ]);

/** VP8 RTP of ffmpeg's moving test pattern, for `seconds`. */
export function vp8Source(
  onPacket: (rtp: RtpPacket) => void,
  seconds: number,
  size = '640x360',
  rate = 15,
): Promise<ChildProcess> {
  return rtpSource(
    onPacket,
    ['-f', 'lavfi', '-t', String(seconds), '-i', `testsrc2=size=${size}:rate=${rate}`],
    [...vp8Encoder('600k', rate * 2), '-payload_type', '96'],
  );
}

/** H.264 RTP (baseline, parameter sets in-band as a browser sends them) of the moving test pattern. */
export function h264Source(
  onPacket: (rtp: RtpPacket) => void,
  seconds: number,
  size = '640x360',
  rate = 15,
): Promise<ChildProcess> {
  return rtpSource(
    onPacket,
    ['-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=${rate}:duration=${seconds}`],
    [
      '-c:v',
      'libx264',
      '-preset',
      'ultrafast',
      '-tune',
      'zerolatency',
      '-profile:v',
      'baseline',
      '-pix_fmt',
      'yuv420p',
      '-g',
      String(rate),
      '-bsf:v',
      'dump_extra',
      '-payload_type',
      '102',
    ],
  );
}

/**
 * One ffmpeg sending VP8 and Opus from one clock: every 2 s, the picture turns white for 200 ms
 * and a 1 kHz beep plays for the same 200 ms. For checking audio/video sync downstream.
 */
export async function flashAndBeep(
  onVideo: (rtp: RtpPacket) => void,
  onAudio: (rtp: RtpPacket) => void,
  seconds: number,
): Promise<ChildProcess> {
  const sockets = await Promise.all([onVideo, onAudio].map(rtpInput));
  const [v, a] = sockets.map((s) => s.address().port);
  const ffmpeg = spawn(
    'ffmpeg',
    [
      '-loglevel',
      'error',
      '-re',
      '-f',
      'lavfi',
      '-i',
      `color=c=black:s=640x360:r=15:d=${seconds},drawbox=c=white:t=fill:enable='lt(mod(t,2),0.2)'`,
      '-re',
      '-f',
      'lavfi',
      '-i',
      `sine=frequency=1000:duration=${seconds},volume='if(lt(mod(t,2),0.2),1,0)':eval=frame`,
      '-map',
      '0:v',
      ...vp8Encoder('400k', 15),
      '-payload_type',
      '96',
      '-f',
      'rtp',
      `rtp://127.0.0.1:${v}`,
      '-map',
      '1:a',
      '-c:a',
      'libopus',
      '-b:a',
      '32k',
      '-payload_type',
      '111',
      '-f',
      'rtp',
      `rtp://127.0.0.1:${a}`,
    ],
    { stdio: 'ignore' },
  );
  ffmpeg.on('exit', () => {
    for (const s of sockets) s.close();
  });
  return ffmpeg;
}

/**
 * Where the flashes and beeps of `flashAndBeep` media are in a recording (s), and each flash's
 * offset to its nearest beep (beep minus flash). Flashes are frames whose mean luma crosses 128
 * (within `crop`, ffmpeg's w:h:x:y, when the flashing picture is a tile); beeps are 10 ms windows
 * whose RMS around 1 kHz crosses 1000 (other voices in the mix are lower tones). From `fromSec`,
 * for `forSec`.
 */
export function avOffsets(
  file: string,
  fps: number,
  opts: { crop?: string; fromSec?: number; forSec?: number } = {},
): { flashes: number[]; beeps: number[]; offsets: number[] } {
  const seek = [
    ...(opts.fromSec ? ['-ss', String(opts.fromSec)] : []),
    ...(opts.forSec ? ['-t', String(opts.forSec)] : []),
  ];
  const read = (args: string[]) =>
    execFileSync('ffmpeg', ['-loglevel', 'error', ...seek, '-i', file, ...args, '-'], { maxBuffer: 1 << 30 });
  const luma = read([
    '-vf',
    `${opts.crop ? `crop=${opts.crop},` : ''}scale=32:18`,
    '-pix_fmt',
    'gray',
    '-f',
    'rawvideo',
  ]);
  const frames = Array.from(
    { length: luma.length / 576 },
    (_, i) => luma.subarray(i * 576, (i + 1) * 576).reduce((a, b) => a + b, 0) / 576,
  );
  const flashes = frames.flatMap((y, i) => (y > 128 && (i === 0 || frames[i - 1]! <= 128) ? [i / fps] : []));
  const band = 'bandpass=f=1000:width_type=q:width=5';
  const pcm = read(['-af', `${band},${band}`, '-ac', '1', '-ar', '8000', '-f', 's16le']);
  const windows = Array.from({ length: Math.floor(pcm.length / 160) }, (_, w) => {
    let sum = 0;
    for (let i = w * 160; i < w * 160 + 160; i += 2) sum += pcm.readInt16LE(i) ** 2;
    return Math.sqrt(sum / 80);
  });
  const beeps = windows.flatMap((r, w) => (r > 1000 && (w === 0 || windows[w - 1]! <= 1000) ? [w / 100] : []));
  const offsets = flashes.map((f) =>
    beeps.reduce((best, b) => (Math.abs(b - f) < Math.abs(best) ? b - f : best), Infinity),
  );
  return { flashes, beeps, offsets };
}

/** The presentation times (s) of a file's packets, in the file's order: of every stream, or of `stream` ('v', '0'). */
export function packetTimes(file: string, stream?: string): number[] {
  const select = stream === undefined ? [] : ['-select_streams', stream];
  return execFileSync('ffprobe', ['-v', 'error', ...select, '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', file])
    .toString()
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map(Number);
}

/** True when an RTP packet starts a VP8 keyframe: the start of partition 0, the P bit clear. */
export function isVp8Keyframe(payload: Uint8Array): boolean {
  if (payload.length < 2) return false;
  const startOfPartition = (payload[0]! & 0x10) !== 0 && (payload[0]! & 0x0f) === 0;
  if (!startOfPartition) return false;
  const header = payload[vp8DescriptorLength(payload)];
  return header !== undefined && (header & 0x01) === 0;
}
