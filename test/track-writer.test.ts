// Capture's track writer (werift's WebM writer) must put every frame at its time by the sender's
// RTP clock. Unpatched, werift truncated each step between frames to whole ms and summed the
// truncations: 66 ms for every 66.7 ms frame at 15 fps, so the picture of an hour-long call fell
// behind its sound (patches/werift+*.patch). Checked with ffprobe's reading of the file.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type MediaStreamTrack, RtpHeader, RtpPacket } from 'werift';
import { Event } from 'werift/nonstandard';
import { trackWriter } from '../workers/recorder/capture.js';

/** A one-packet VP8 keyframe: descriptor (start of partition 0), frame tag, start code, 64x64. */
const KEYFRAME = Buffer.from([0x10, 0x50, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x40, 0x00, 0x00, 0x00]);

describe('track writer', () => {
  it('puts each frame at its RTP time, through lost frames and the 32-bit wrap', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'co-writer-'));
    const file = join(dir, 'camera.webm');
    const onReceiveRtp = new Event<[RtpPacket]>();
    const track = {
      kind: 'video',
      codec: { name: 'VP8', mimeType: 'video/VP8', payloadType: 96, clockRate: 90000 },
      onReceiveRtp,
      onReceiveRtcp: new Event(),
    } as unknown as MediaStreamTrack;
    const writer = trackWriter(file, track);
    await new Promise((r) => setImmediate(r)); // the writer subscribes once started

    // 10 min at 15 fps (6000 ticks a frame), every 97th frame lost, the clock wrapping midway.
    const first = 2 ** 32 - 4500 * 6000;
    const sent: number[] = []; // expected ms of each written frame
    for (let n = 0, seq = 0; n < 9000; n++) {
      if (n % 97 === 96) continue;
      const header = new RtpHeader({
        payloadType: 96,
        sequenceNumber: seq++ & 0xffff,
        timestamp: (first + n * 6000) % 2 ** 32,
        marker: true,
        ssrc: 1,
      });
      onReceiveRtp.execute(new RtpPacket(header, KEYFRAME));
      sent.push(Math.floor((n * 6000) / 90));
    }
    await writer.stop();

    const pts = execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', file])
      .toString()
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => Math.round(Number(l) * 1000));
    // the jitter buffer may hold the last frames back when the track stops
    assert.ok(pts.length >= sent.length - 5, `${pts.length} frames written of ${sent.length}`);
    const off = pts.map((ms, i) => ms - sent[i]!).filter((d) => d !== 0);
    assert.deepEqual(off, [], `frames off their RTP time (ms): ${off.slice(0, 10).join(' ')}`);
    rmSync(dir, { recursive: true, force: true });
  });
});
