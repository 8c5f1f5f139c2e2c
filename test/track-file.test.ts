// Capture's track file against ffmpeg: VP8 and H.264 encoded by ffmpeg, cut into RTP packets as a
// browser sends them (VP8 descriptors; H.264 parameter sets in a STAP-A, large slices in FU-As),
// written by TrackFile and decoded again must give every picture ffmpeg's own file gives, frame for
// frame; each frame at its time by the RTP clock (through the 32-bit wrap); a frame missing a
// packet dropped whole.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RtpHeader, RtpPacket } from 'werift';
import { h264PictureSize } from '../src/media/h264.js';
import { vp8KeyframeSize } from '../src/media/vp8.js';
import { AUDIO_HOLD_TICKS, Reorder } from '../src/media/reorder.js';
import { PausedClock } from '../src/media/paused-clock.js';
import { MAX_FRAME_BYTES, TrackFile } from '../workers/recorder/track-file.js';
import { WebmIndex } from '../workers/recorder/webm-index.js';
import { isVp8Keyframe, packetTimes } from './media.js';

const MTU = 1000;
const TICKS = 6000; // 15 fps on the 90 kHz clock

const dir = mkdtempSync(join(tmpdir(), 'co-track-file-'));
const encode = (file: string, codec: string[]) =>
  execFileSync('ffmpeg', [
    ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=15:duration=6'],
    ...[...codec, '-g', '30', join(dir, file)],
  ]);
/** The decoded pictures' checksums, in order. */
const pictures = (file: string) =>
  execFileSync('ffmpeg', ['-v', 'error', '-i', file, '-map', '0:v', '-f', 'framemd5', '-'])
    .toString()
    .split('\n')
    .filter((l) => /^0,/.test(l))
    .map((l) => l.split(',').at(-1)!.trim());
const packetMs = (file: string) => packetTimes(file).map((s) => Math.round(s * 1000));

/** Writes frames (each a list of RTP payloads) as one sender would: sequence numbers, a marker, a 90 kHz clock. */
function writeFrames(
  file: string,
  codec: 'vp8' | 'h264',
  frames: Buffer[][],
  firstTs = 1234,
  drop?: { frame: number; packet: number },
  afterFrame?: (n: number, writer: TrackFile) => void,
  onRefused?: (why: string) => void,
  /** ticks the sender's clock is off by from frame n on (it jumped) */
  jump: (n: number) => number = () => 0,
): void {
  const writer = new TrackFile(file, codec, onRefused);
  let seq = 65_000; // wraps too
  frames.forEach((payloads, n) => {
    payloads.forEach((payload, k) => {
      const sequenceNumber = seq++ & 0xffff;
      if (n === drop?.frame && k === drop.packet) return;
      const header = new RtpHeader({
        payloadType: 96,
        sequenceNumber,
        timestamp: (firstTs + n * TICKS + jump(n) + 2 ** 32) % 2 ** 32,
        marker: k === payloads.length - 1,
        ssrc: 1,
      });
      writer.push(new RtpPacket(header, payload), (n * TICKS) / 90); // as a sender's frames come: in time
    });
    afterFrame?.(n, writer);
  });
  writer.close();
}

const chunks = (data: Buffer, size: number) =>
  Array.from({ length: Math.ceil(data.length / size) }, (_, i) => data.subarray(i * size, (i + 1) * size));

/** IVF's frames: a 32-byte header, then each frame's 12-byte header (size, time) and bytes. */
function ivfFrames(file: string): Buffer[] {
  const ivf = readFileSync(file);
  const frames: Buffer[] = [];
  for (let at = 32; at + 12 <= ivf.length; ) {
    const size = ivf.readUInt32LE(at);
    frames.push(ivf.subarray(at + 12, at + 12 + size));
    at += 12 + size;
  }
  return frames;
}

/** A VP8 frame as RTP payloads (RFC 7741): a one-byte descriptor, S set on the first. */
const vp8Packets = (frame: Buffer) =>
  chunks(frame, MTU).map((c, i) => Buffer.concat([Buffer.of(i === 0 ? 0x10 : 0x00), c]));

/** An Annex B stream's access units, each a list of NAL units: a slice ends one (one slice a picture here). */
function accessUnits(stream: Buffer): Buffer[][] {
  const starts: number[] = [];
  for (let i = 0; i + 3 <= stream.length; i++)
    if (stream[i] === 0 && stream[i + 1] === 0 && stream[i + 2] === 1) starts.push(i + 3);
  const units: Buffer[][] = [[]];
  starts.forEach((s, k) => {
    let end = k + 1 < starts.length ? starts[k + 1]! - 3 : stream.length;
    while (end > s && stream[end - 1] === 0) end--; // a four-byte start code's leading zero
    const nal = stream.subarray(s, end);
    units.at(-1)!.push(nal);
    const type = nal[0]! & 0x1f;
    if (type === 1 || type === 5) units.push([]);
  });
  return units.filter((u) => u.length > 0);
}

/** An access unit as a browser packs it: parameter sets and SEI in one STAP-A, slices alone or in FU-As. */
function h264Packets(unit: Buffer[]): Buffer[] {
  const packets: Buffer[] = [];
  const small = unit.filter((n) => (n[0]! & 0x1f) !== 1 && (n[0]! & 0x1f) !== 5);
  if (small.length > 0) {
    const nri = Math.max(...small.map((n) => n[0]! & 0x60));
    const sized = small.flatMap((n) => [Buffer.of(n.length >> 8, n.length & 0xff), n]);
    packets.push(Buffer.concat([Buffer.of(nri | 24), ...sized]));
  }
  for (const nal of unit.filter((n) => !small.includes(n))) {
    if (nal.length <= MTU) {
      packets.push(nal);
      continue;
    }
    const parts = chunks(nal.subarray(1), MTU);
    parts.forEach((c, i) => {
      const fuHeader = (i === 0 ? 0x80 : 0) | (i === parts.length - 1 ? 0x40 : 0) | (nal[0]! & 0x1f);
      packets.push(Buffer.concat([Buffer.of((nal[0]! & 0xe0) | 28, fuHeader), c]));
    });
  }
  return packets;
}

/**
 * An SPS NAL unit of the baseline profile declaring `wide` × `high` macroblocks, its
 * log2_max_frame_num field `frameNumField`, cropped by `crop`, escaped as H.264 7.3.1 says.
 */
function sps(wide: number, high: number, frameNumField: number, crop?: [number, number, number, number]): Buffer {
  const bits: number[] = [];
  const u = (v: number, n: number) => {
    for (let i = n - 1; i >= 0; i--) bits.push(Math.floor(v / 2 ** i) % 2);
  };
  const ue = (v: number) => {
    const n = Math.floor(Math.log2(v + 1));
    u(0, n);
    u(v + 1, n + 1);
  };
  u(66, 8); // profile_idc: baseline
  u(0, 8); // constraint flags
  u(40, 8); // level_idc
  ue(0); // seq_parameter_set_id
  ue(frameNumField); // log2_max_frame_num_minus4
  ue(2); // pic_order_cnt_type
  ue(1); // max_num_ref_frames
  u(0, 1); // gaps_in_frame_num_value_allowed_flag
  ue(wide - 1);
  ue(high - 1);
  u(1, 1); // frame_mbs_only_flag
  u(1, 1); // direct_8x8_inference_flag
  u(crop ? 1 : 0, 1); // frame_cropping_flag
  for (const c of crop ?? []) ue(c); // left, right, top, bottom, in units of 2 pixels (4:2:0)
  u(0, 1); // vui_parameters_present_flag
  u(1, 1); // rbsp_stop_one_bit
  while (bits.length % 8) bits.push(0);
  const escaped = [0x67];
  let zeros = 0;
  for (let i = 0; i < bits.length; i += 8) {
    const byte = parseInt(bits.slice(i, i + 8).join(''), 2);
    if (zeros >= 2 && byte <= 3) {
      escaped.push(3);
      zeros = 0;
    }
    escaped.push(byte);
    zeros = byte === 0 ? zeros + 1 : 0;
  }
  return Buffer.from(escaped);
}

describe('track file', () => {
  encode('vp8.ivf', ['-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '800k']);
  const vp8 = ivfFrames(join(dir, 'vp8.ivf'));
  encode('h264.h264', ['-c:v', 'libx264', '-preset', 'ultrafast', '-profile:v', 'baseline', '-bsf:v', 'dump_extra']);
  const h264 = accessUnits(readFileSync(join(dir, 'h264.h264')));

  it('holds every VP8 picture ffmpeg encoded, at its RTP time', () => {
    assert.equal(vp8.length, 90);
    assert.ok(
      vp8.some((f) => f.length > 2 * MTU),
      'frames of several packets',
    );
    const file = join(dir, 'vp8.webm');
    writeFrames(file, 'vp8', vp8.map(vp8Packets), 2 ** 32 - 40 * TICKS); // the clock wraps at frame 40
    assert.deepEqual(pictures(file), pictures(join(dir, 'vp8.ivf')));
    assert.deepEqual(
      packetMs(file),
      vp8.map((_, n) => Math.floor((n * TICKS) / 90)),
    );
    const index = new WebmIndex(file).update();
    assert.deepEqual(
      index.starts.map((s) => s.ms),
      [0, 2000, 4000],
      'a cluster at each keyframe',
    );
  });

  it('holds every H.264 picture ffmpeg encoded, from STAP-A, FU-A and single units', () => {
    assert.equal(h264.length, 90);
    const packets = h264.map(h264Packets);
    assert.ok(packets.flat().some((p) => (p[0]! & 0x1f) === 28) && packets[0]![0]![0]! % 32 === 24);
    const file = join(dir, 'h264.webm');
    writeFrames(file, 'h264', packets);
    assert.deepEqual(pictures(file), pictures(join(dir, 'h264.h264')));
  });

  it("tells the index each keyframe's picture size, where the size changes: VP8 and H.264", () => {
    // A second at each size, a keyframe at each second: 640x360 twice (a keyframe, no change).
    const sizes = ['320x180', '640x360', '640x360', '320x240'];
    const frames = (codec: string[], ext: string, read: (file: string) => Buffer[][]) =>
      sizes.flatMap((size, k) => {
        const file = join(dir, `size-${k}.${ext}`);
        execFileSync('ffmpeg', [
          ...['-loglevel', 'error', '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=15:duration=1`],
          ...[...codec, '-g', '15', file],
        ]);
        return read(file);
      });
    for (const [codec, packets] of [
      ['vp8', frames(['-c:v', 'libvpx', '-b:v', '300k'], 'ivf', (f) => ivfFrames(f).map(vp8Packets))],
      [
        'h264',
        frames(['-c:v', 'libx264', '-preset', 'ultrafast', '-bsf:v', 'dump_extra'], 'h264', (f) =>
          accessUnits(readFileSync(f)).map(h264Packets),
        ),
      ],
    ] as const) {
      const file = join(dir, `sizes.${codec}.webm`);
      writeFrames(file, codec, packets);
      const index = new WebmIndex(file).update();
      assert.deepEqual(
        index.starts.map((s) => [s.ms, s.size]),
        sizes.map((size, k) => [k * 1000, size]),
        codec,
      );
      assert.deepEqual(index.sizeChanges(-1, Infinity), [1000, 3000], codec);
      assert.deepEqual(index.sizeChanges(1000, 3000), [], `${codec}: the ends are excluded`);
    }
  });

  it('holds frames until flushed: a file being written reads to its last flush', () => {
    const file = join(dir, 'flushed.webm');
    let flushedSize = -1;
    writeFrames(file, 'vp8', vp8.map(vp8Packets), 0, undefined, (n, writer) => {
      if (n === 44) {
        assert.equal(packetMs(file).length, 1, 'the first frame written at once, the next ones held');
        writer.flush();
        flushedSize = statSync(file).size;
        assert.equal(packetMs(file).length, 45, 'the flushed frames, read while the file is open');
      }
      if (n === 45) assert.equal(statSync(file).size, flushedSize, 'the next frame held');
    });
    assert.equal(packetMs(file).length, 90, 'every frame once closed');
  });

  it('reads the picture size a VP8 keyframe or an H.264 SPS declares, as ffmpeg wrote it', () => {
    const shown = (size: { width: number; height: number } | undefined) => size && [size.width, size.height];
    assert.deepEqual(vp8KeyframeSize(vp8[0]!), { width: 320, height: 180, codedPixels: 320 * 192 });
    assert.throws(() => vp8KeyframeSize(vp8[1]!), /a keyframe whose header cannot be read/, 'not a keyframe');
    assert.deepEqual(shown(h264PictureSize(h264[0]!.flatMap((n) => [Buffer.of(0, 0, 0, 1), n]))), [320, 180]);
    // testsrc2 makes even sizes only: an odd one is scaled to
    const one = (size: string, file: string, codec: string[]) => {
      execFileSync('ffmpeg', [
        ...['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15'],
        ...['-vf', `scale=${size.replace('x', ':')}`, '-frames:v', '1'],
        ...[...codec, join(dir, file)],
      ]);
      return join(dir, file);
    };
    assert.deepEqual(
      shown(vp8KeyframeSize(ivfFrames(one('1013x677', 'odd.ivf', ['-c:v', 'libvpx']))[0]!)),
      [1013, 677],
    );
    const x264 = (size: string, args: string[]) =>
      h264PictureSize([readFileSync(one(size, `${size}-${args.join('')}.h264`, ['-c:v', 'libx264', ...args]))]);
    // high profile, cropped from 1088 rows of macroblocks, which the decoder allocates
    assert.deepEqual(x264('1920x1080', ['-preset', 'ultrafast']), {
      width: 1920,
      height: 1080,
      codedPixels: 1920 * 1088,
    });
    // 4:4:4 (chroma format 3), scaling lists in the SPS, an odd size cropped by single pixels
    assert.deepEqual(shown(x264('1013x677', ['-pix_fmt', 'yuv444p', '-x264-params', 'cqm=jvt'])), [1013, 677]);
    // interlaced: pairs of fields, cropped by two rows a unit
    assert.deepEqual(
      shown(x264('720x484', ['-pix_fmt', 'yuv420p', '-flags', '+ildct', '-x264-params', 'interlaced=1'])),
      [720, 484],
    );
    assert.throws(
      () => h264PictureSize([Buffer.of(0, 0, 0, 1, 0x67, 0x42)]),
      /an SPS that cannot be read/,
      'cut short',
    );
    // Emulation prevention (7.3.1): a field of 29 leading zero bits makes the RBSP hold 00 00 03,
    // escaped 00 00 03 03, where the zeros before the escape must not count for the 03 after it.
    const tricky = 3 * 2 ** 28 - 1;
    assert.match(sps(1024, 1024, tricky).toString('hex'), /^(..)*00000303/);
    for (const v of [0, 1, 4000, tricky, 2 ** 30])
      assert.deepEqual(
        shown(h264PictureSize([Buffer.of(0, 0, 0, 1), sps(1024, 1024, v)])),
        [16384, 16384],
        `field ${v}`,
      );
    // 8192 × 8192 coded, cropped to be shown as 16 × 16: the decoder allocates the coded picture
    assert.deepEqual(h264PictureSize([Buffer.of(0, 0, 0, 1), sps(512, 512, 0, [0, 4088, 0, 4088])]), {
      width: 16,
      height: 16,
      codedPixels: 8192 * 8192,
    });
  });

  it('refuses pictures over 4096 × 4096 until a keyframe of an allowed size, and a frame that never ends', () => {
    // keyframes at 0, 30 and 60; the first and the last declare 16383 × 16383
    const huge = (frame: Buffer) => {
      const f = Buffer.from(frame);
      f.writeUInt16LE(16383, 6);
      f.writeUInt16LE(16383, 8);
      return f;
    };
    const frames = vp8.map((f, n) => (n === 0 || n === 60 ? huge(f) : f));
    assert.ok([0, 30, 60].every((n) => isVp8Keyframe(vp8Packets(frames[n]!)[0]!)));
    const refused: string[] = [];
    const file = join(dir, 'huge.webm');
    writeFrames(file, 'vp8', frames.map(vp8Packets), 0, undefined, undefined, (why) => refused.push(why));
    assert.deepEqual(refused, [
      'a picture of 16383×16383, over 16777216 pixels',
      'a picture of 16383×16383, over 16777216 pixels',
    ]);
    assert.deepEqual(
      packetMs(file),
      frames.slice(30, 60).map((_, n) => Math.floor((n * TICKS) / 90)),
      'frames 30 to 59 only',
    );
    assert.deepEqual(pictures(file), pictures(join(dir, 'vp8.ivf')).slice(30, 60));

    // The same from what a decoder reads, not what the RTP descriptor says: a huge keyframe sent
    // without the start-of-partition bit, and one whose first packet holds 4 bytes of it.
    const hidden = (frame: Buffer) =>
      vp8Packets(frame).map((p, i) => (i === 0 ? Buffer.concat([Buffer.of(0), p.subarray(1)]) : p));
    const split = (frame: Buffer) => [
      Buffer.concat([Buffer.of(0x10), frame.subarray(0, 4)]),
      ...vp8Packets(frame.subarray(4)).map((p) => Buffer.concat([Buffer.of(0), p.subarray(1)])),
    ];
    const disguised = join(dir, 'disguised.webm');
    const disguisedRefused: string[] = [];
    writeFrames(
      disguised,
      'vp8',
      vp8.map((f, n) => (n === 30 ? hidden(huge(f)) : n === 60 ? split(huge(f)) : vp8Packets(f))),
      0,
      undefined,
      undefined,
      (why) => disguisedRefused.push(why),
    );
    assert.equal(disguisedRefused.length, 1, 'refused from frame 30 on');
    assert.equal(packetMs(disguised).length, 30, 'frames 0 to 29 only');

    // H.264, the file started at 0: an SPS that cannot be read (in a P frame at 20) is refused; so
    // is a keyframe holding a small SPS and then a huge one (30), and a huge SPS inside a slice's
    // bytes (75), which an Annex B parser takes for one. Only a keyframe of an allowed size starts
    // again (60); an allowed SPS in a P slice (40) does not, as its frame needs what was refused.
    const h264File = join(dir, 'huge.h264.webm');
    const slice = (u: Buffer[], hidden: Buffer) => [...u, Buffer.concat([Buffer.of(0x41, 0x9a, 0, 0, 1), hidden])];
    const changed: Record<number, (u: Buffer[]) => Buffer[]> = {
      20: (u) => [Buffer.of(0x67, 0x42), ...u],
      30: (u) => [sps(20, 12, 0), sps(1024, 1024, 0), ...u],
      40: (u) => slice(u, sps(20, 12, 0)),
      75: (u) => slice(u, sps(1024, 1024, 0)),
    };
    const units = h264.map((u, n) => changed[n]?.(u) ?? u);
    const h264Refused: string[] = [];
    writeFrames(h264File, 'h264', units.map(h264Packets), 0, undefined, undefined, (why) => h264Refused.push(why));
    assert.deepEqual(
      h264Refused.map((why) => why.split(' (')[0]),
      ['an SPS that cannot be read', 'a picture of 16384×16384, over 16777216 pixels'],
    );
    assert.deepEqual(
      packetMs(h264File),
      [...Array(20).keys(), ...Array.from({ length: 15 }, (_, k) => 60 + k)].map((n) => Math.floor((n * TICKS) / 90)),
      'frames 0 to 19 and 60 to 74',
    );

    // A frame whose packets never end (one RTP time, no marker) past MAX_FRAME_BYTES is dropped whole.
    const endless = join(dir, 'endless.webm');
    const packets = vp8.map(vp8Packets);
    const filler = Buffer.alloc(MTU);
    const long = [
      packets[0]![0]!,
      ...Array.from({ length: MAX_FRAME_BYTES / MTU }, () => filler),
      ...packets[0]!.slice(1),
    ];
    writeFrames(endless, 'vp8', [long, ...packets.slice(1, 31)]);
    assert.deepEqual(packetMs(endless), [0], 'nothing before the next keyframe (frame 30), which starts the file');
    // Nor one of 200,000 packets of one byte each (400 KB with their descriptors).
    const crumbs = join(dir, 'crumbs.webm');
    const tiny = [packets[0]![0]!, ...Array.from({ length: 200_000 }, () => Buffer.of(0, 0)), ...packets[0]!.slice(1)];
    writeFrames(crumbs, 'vp8', [tiny, ...packets.slice(1, 31)]);
    assert.deepEqual(packetMs(crumbs), [0], 'the file starts at frame 30');
  });

  it('says when a write fails (the disk full), and keeps going closed', () => {
    const failed: string[] = [];
    const writer = new TrackFile('/dev/full', 'opus', undefined, (err) =>
      failed.push((err as NodeJS.ErrnoException).code!),
    );
    const header = (n: number) => new RtpHeader({ payloadType: 111, sequenceNumber: n, timestamp: n * 960, ssrc: 1 });
    for (let n = 0; n < 3; n++) writer.push(new RtpPacket(header(n), Buffer.of(0xf8, 0xff, 0xfe)));
    writer.close();
    assert.deepEqual(failed, ['ENOSPC']);
  });

  it("moves on by the time that went by where the sender's clock jumps an hour ahead, then two back", () => {
    const file = join(dir, 'jumps.webm');
    const hour = 3600 * 90_000;
    writeFrames(file, 'vp8', vp8.map(vp8Packets), 0, undefined, undefined, undefined, (n) =>
      n < 30 ? 0 : n < 60 ? hour : -hour,
    );
    assert.deepEqual(
      packetMs(file),
      vp8.map((_, n) => Math.floor((n * TICKS) / 90)),
      'every frame, each at its time',
    );
  });

  it('runs no more than 10 s ahead of real time: packets 1.9 s apart by their clock, arriving together', () => {
    const file = join(dir, 'ahead.webm');
    const writer = new TrackFile(file, 'opus');
    for (let n = 0; n < 100; n++) {
      const header = new RtpHeader({ payloadType: 111, sequenceNumber: n, timestamp: n * 1.9 * 48_000, ssrc: 1 });
      writer.push(new RtpPacket(header, Buffer.of(0xf8, 0xff, 0xfe)), 0);
    }
    writer.close();
    const times = packetMs(file);
    assert.ok(times.at(-1)! <= 10_000, `the last at ${times.at(-1)} ms`);
  });

  it('keeps a mute whose last packet before it was lost: a jump is judged by when packets arrived, not when the hold let them go', () => {
    // A voice: 50 packets of 20 ms, the 48th lost, then 60 s of mute, then 50 more. The hold keeps
    // the 49th and 50th until the first after the mute comes, and lets all three go together.
    const file = join(dir, 'mute.webm');
    const writer = new TrackFile(file, 'opus');
    const reorder = new Reorder(AUDIO_HOLD_TICKS, (rtp, at) => writer.push(rtp, at));
    for (let n = 0; n < 100; n++) {
      if (n === 47) continue;
      const muted = n >= 50 ? 60_000 : 0;
      const header = new RtpHeader({ payloadType: 111, sequenceNumber: n, timestamp: (n * 20 + muted) * 48, ssrc: 1 });
      reorder.push(new RtpPacket(header, Buffer.of(0xf8, 0xff, 0xfe)), n * 20 + muted);
    }
    reorder.flush();
    writer.close();
    const times = packetMs(file);
    assert.equal(times.length, 99);
    assert.deepEqual(times.slice(47, 50), [960, 980, 61_000], 'the mute kept');
  });

  /**
   * A voice of 20 ms packets whose clock goes on across every gap from where it stopped (Firefox
   * after a mute), packet n arriving at `arrival(n)` ms, through the hold and the paused clock as
   * capture writes it: each packet's time in the file (ms).
   */
  const pausedVoice = (name: string, packets: number, arrival: (n: number) => number) => {
    const file = join(dir, `${name}.webm`);
    const writer = new TrackFile(file, 'opus');
    const paused = new PausedClock(48_000, (rtp: RtpPacket, at) => writer.push(rtp, at));
    const reorder = new Reorder(AUDIO_HOLD_TICKS, (rtp, at) => paused.push(rtp, at));
    for (let n = 0; n < packets; n++) {
      const header = new RtpHeader({ payloadType: 111, sequenceNumber: n, timestamp: n * 20 * 48, ssrc: 1 });
      reorder.push(new RtpPacket(header, Buffer.of(0xf8, 0xff, 0xfe)), arrival(n));
    }
    reorder.flush();
    paused.flush();
    writer.close();
    return packetMs(file);
  };

  it("keeps a mute the sender's clock left out (Firefox resumes it where it stopped), as upstream", () => {
    // 50 packets, 30 s of mute by when packets came, 50 more; read in batches of 40 ms, as the job's
    // socket is read every 20 ms and may be read late
    const times = pausedVoice('paused-clock', 100, (n) => Math.ceil((n * 20 + (n >= 50 ? 30_000 : 0)) / 40) * 40);
    assert.equal(times.length, 100);
    assert.deepEqual(times.slice(48, 50), [960, 980]);
    // the mute kept (to the batches' 40 ms), the voice after it at its own pace
    assert.ok(Math.abs(times[50]! - 31_000) <= 40, `the voice after the mute at ${times[50]} ms`);
    assert.deepEqual(
      times.slice(51).map((t, i) => t - times[50 + i]!),
      Array(49).fill(20),
    );
  });

  it("keeps the sender's clock across a stall whose packets then come at once (a network, or the job busy)", () => {
    // the same voice, but nothing came for 30 s and then the 50 packets held meanwhile all at once
    const times = pausedVoice('stall', 150, (n) => (n < 50 ? n * 20 : n < 100 ? 30_980 : n * 20 + 29_000));
    assert.equal(times.length, 150);
    assert.deepEqual(times.slice(48, 52), [960, 980, 1000, 1020], 'no pause where the sender sent on');
    assert.equal(times.at(-1), 2980);
  });

  it('keeps each of two mutes when one packet came between them', () => {
    // a packet alone after the first mute (30 s), the second (10 s) comes before anything tells its pace
    const arrival = (n: number) => n * 20 + (n >= 50 ? 30_000 : 0) + (n >= 51 ? 10_000 : 0);
    const times = pausedVoice('two-mutes', 100, arrival);
    assert.deepEqual(times.slice(49, 53), [980, 31_000, 41_020, 41_040]);
  });

  it('a resumed voice whose first packets were read 120 ms late is still taken for resumed', () => {
    // the job's event loop busy as the voice comes back: its first seven packets read at once
    const times = pausedVoice('read-late', 100, (n) => (n < 50 ? n * 20 : Math.max(31_120, n * 20 + 30_000)));
    assert.ok(Math.abs(times[50]! - 31_000) <= 150, `the voice after the mute at ${times[50]} ms`);
  });

  it("lets go at once, on the sender's clock, what it held when the sender restarts its clock", () => {
    const emitted: { ts: number; after: number }[] = [];
    let pushed = 0;
    const paused = new PausedClock(48_000, (p: { header: { timestamp: number } }) =>
      emitted.push({ ts: p.header.timestamp, after: pushed }),
    );
    const push = (ts: number, at: number) => {
      pushed++;
      paused.push({ header: { timestamp: ts } }, at);
    };
    for (let n = 0; n < 10; n++) push(n * 960, n * 20);
    push(10 * 960, 30_000); // after a gap its clock lacks: held
    push(11 * 960, 30_020);
    assert.equal(emitted.length, 10);
    push(123, 30_040); // a new clock, far back
    assert.deepEqual(
      emitted.slice(10).map((e) => e.ts),
      [10 * 960, 11 * 960, 123],
      'let go unchanged, and the new clock not held',
    );
    assert.equal(emitted.at(-1)!.after, pushed);
  });

  it('drops a frame that lost a packet, and starts at a keyframe', () => {
    // from frame 5, not a keyframe: the file waits for the next one
    const packets = vp8.map(vp8Packets).slice(5);
    const key = packets.findIndex((p) => isVp8Keyframe(p[0]!));
    const big = packets.findIndex((p, n) => n > key + 5 && p.length >= 2);
    const file = join(dir, 'lossy.webm');
    writeFrames(file, 'vp8', packets, 0, { frame: big, packet: 1 });
    const times = packetMs(file);
    const at = (n: number) => Math.floor((n * TICKS) / 90);
    assert.equal(times.length, packets.length - key - 1);
    assert.deepEqual(
      times,
      packets
        .map((_, n) => n)
        .filter((n) => n >= key && n !== big)
        .map((n) => at(n - key)),
      'from the keyframe, without the broken frame',
    );
  });

  after(() => rmSync(dir, { recursive: true, force: true }));
});
