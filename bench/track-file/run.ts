// bench/track-file: the CPU capture spends writing tracks to their files, per recorded minute: the
// recorder's TrackFile against werift's MediaRecorder (what capture used before 2026-12-04), fed
// the same RTP packets in the same run. A camera: VP8 at 15 fps and 600 kbit/s (a keyframe every
// 2 s, frames of about 5 KB in packets of at most 1200 bytes); a voice: Opus, 20 ms packets of
// about 100 bytes. Packets are made here (the writers do not decode) and fed as fast as they go;
// werift's writer is awaited to its end. Nothing else runs in this process meanwhile.
import { mkdtempSync, rmSync, closeSync, openSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type MediaStreamTrack, RtpHeader, RtpPacket } from 'werift';
import { DurationPosition, Event, MediaRecorder, type WebmOutput } from 'werift/nonstandard';
import { TrackFile } from '../../workers/recorder/track-file.js';

const MINUTES = Number(process.env.BENCH_MINUTES ?? 10);
const ROUNDS = 3;

interface Source {
  name: string;
  kind: 'video' | 'audio';
  codec: { name: string; mimeType: string; payloadType: number; clockRate: number };
  packets: RtpPacket[];
}

function camera(minutes: number): Source {
  const packets: RtpPacket[] = [];
  let seq = 0;
  for (let n = 0; n < minutes * 60 * 15; n++) {
    const keyframe = n % 30 === 0;
    const size = keyframe ? 20_000 : 4_600 + ((n * 37) % 800);
    const count = Math.ceil(size / 1200);
    for (let k = 0; k < count; k++) {
      const payload = Buffer.alloc(Math.min(1200, size - k * 1200) + 1, n & 0xff);
      payload[0] = k === 0 ? 0x10 : 0x00; // descriptor: S on the first packet, partition 0
      if (k === 0) payload[1] = keyframe ? 0x50 : 0x51; // frame tag: P bit clear on a keyframe
      const header = new RtpHeader({
        payloadType: 96,
        sequenceNumber: seq++ & 0xffff,
        timestamp: n * 6000,
        marker: k === count - 1,
        ssrc: 1,
      });
      packets.push(new RtpPacket(header, payload));
    }
  }
  return {
    name: 'camera (VP8, 600 kbit/s, 15 fps)',
    kind: 'video',
    codec: { name: 'VP8', mimeType: 'video/VP8', payloadType: 96, clockRate: 90_000 },
    packets,
  };
}

function voice(minutes: number): Source {
  const packets: RtpPacket[] = [];
  for (let n = 0; n < minutes * 60 * 50; n++) {
    const payload = Buffer.alloc(90 + (n % 30), n & 0xff);
    payload[0] = 0x78; // TOC: CELT... 20 ms, one frame
    const header = new RtpHeader({ payloadType: 111, sequenceNumber: n & 0xffff, timestamp: n * 960, ssrc: 2 });
    packets.push(new RtpPacket(header, payload));
  }
  return {
    name: 'voice (Opus, 20 ms)',
    kind: 'audio',
    codec: { name: 'opus', mimeType: 'audio/opus', payloadType: 111, clockRate: 48_000 },
    packets,
  };
}

/** werift's MediaRecorder as capture set it up: its WebM into a file kept open, no NTP, no lip sync. */
async function weriftWriter(source: Source, path: string): Promise<void> {
  const fd = openSync(path, 'w');
  const stream = new Event<[WebmOutput]>();
  stream.subscribe((out) => {
    if (out.saveToFile) writeSync(fd, out.saveToFile);
    if (out.eol) writeSync(fd, out.eol.durationElement, 0, out.eol.durationElement.length, DurationPosition);
  });
  const onReceiveRtp = new Event<[RtpPacket]>();
  const track = { kind: source.kind, codec: source.codec, onReceiveRtp, onReceiveRtcp: new Event() };
  const recorder = new MediaRecorder({
    stream,
    tracks: [track as unknown as MediaStreamTrack],
    disableNtp: true,
    disableLipSync: true,
  });
  await new Promise((r) => setImmediate(r)); // it subscribes once started
  for (const rtp of source.packets) onReceiveRtp.execute(rtp);
  await recorder.stop();
  closeSync(fd);
}

async function trackFile(source: Source, path: string): Promise<void> {
  const file = new TrackFile(path, source.kind === 'video' ? 'vp8' : 'opus');
  // flushed every half second of media, as capture does
  const perHalfSecond = Math.round(source.packets.length / MINUTES / 120);
  source.packets.forEach((rtp, i) => {
    file.push(rtp);
    if (i % perHalfSecond === perHalfSecond - 1) file.flush();
  });
  file.close();
}

/** CPU ms per recorded minute: the best of ROUNDS (the least disturbed). */
async function measure(write: (s: Source, path: string) => Promise<void>, source: Source, dir: string) {
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    global.gc?.();
    const before = process.cpuUsage();
    await write(source, join(dir, `${r}.webm`));
    const used = process.cpuUsage(before);
    best = Math.min(best, (used.user + used.system) / 1000 / MINUTES);
  }
  return best;
}

const dir = mkdtempSync(join(tmpdir(), 'bench-track-file-'));
const rows: string[] = [];
for (const source of [camera(MINUTES), voice(MINUTES)]) {
  const werift = await measure(weriftWriter, source, dir);
  const ours = await measure(trackFile, source, dir);
  const perMin = source.packets.length / MINUTES;
  rows.push(
    `| ${source.name} | ${Math.round(perMin)} | ${werift.toFixed(0)} | ${ours.toFixed(0)} | ${(werift / ours).toFixed(1)}× |`,
  );
}
rmSync(dir, { recursive: true, force: true });
console.log(`\nTrack writing, CPU ms per recorded minute of one track (${MINUTES} min fed, best of ${ROUNDS}):\n`);
console.log('| track | packets per min | werift MediaRecorder | TrackFile | werift ÷ ours |');
console.log('|---|---|---|---|---|');
for (const row of rows) console.log(row);
