// One track's WebM file, written straight from its RTP packets (in sequence order: capture puts a
// Reorder in front). Each frame is its bytes as they came (no decoding), at its time by the
// sender's RTP clock from the file's first frame. The first frame is written at once, the others
// held and written together when capture flushes (every half second) or 256 KB gather: a write per
// frame was the recorder's costliest system call. A killed recorder leaves every frame flushed, in a file ffmpeg reads (a
// Segment and Clusters of unknown size).
// werift's writer did the same work through a jitter buffer, a depacketiser and a promise queue,
// with a clone of every packet and dated statistics for every frame: more CPU than the receiving.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { RtpPacket } from 'werift';
import { h264AnnexB, h264PictureSize, isH264Keyframe } from '../../src/media/h264.js';
import type { PictureSize } from '../../src/media/picture-size.js';
import { SenderClock } from '../../src/media/sender-clock.js';
import { isVp8KeyframeData, vp8FrameData, vp8KeyframeSize } from '../../src/media/vp8.js';
import { ID, element, float64, openElement, sizeBytes, text, uint } from './webm.js';

export type TrackCodec = 'opus' | 'vp8' | 'h264';

/** The codec of a track werift received (its codec's MIME type), if a track file can hold it. */
export function trackCodec(mimeType: string | undefined): TrackCodec | undefined {
  const name = mimeType?.toLowerCase().split('/')[1];
  return name === 'opus' || name === 'vp8' || name === 'h264' ? name : undefined;
}

const CODEC_ID: Record<TrackCodec, string> = { opus: 'A_OPUS', vp8: 'V_VP8', h264: 'V_MPEG4/ISO/AVC' };
/** Held frames are written once this much gathers, if capture has not flushed them before. */
const MAX_HELD_BYTES = 256 * 1024;
/**
 * A picture over this many pixels is not recorded: decoding it takes memory its sender chooses
 * (VP8 allows 16383 × 16383, 400 MB a picture, and the decoder holds several). 4096 × 4096 holds a
 * 5K screen (5120 × 2880).
 */
const MAX_PICTURE_PIXELS = 4096 * 4096;
/** A frame whose packets add up to more is dropped: a sender that never marks a frame's end would grow it for good. */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024;
/**
 * Nor may a frame be more pieces (packets, NAL units): 8 MB in packets of 1,000 bytes is about
 * 8,400; a frame of a million 2-byte packets would be a million Buffers, spread into arguments.
 */
const MAX_FRAME_PIECES = 16_384;
/** A block's time is 16 bits signed from its cluster's. */
const MAX_BLOCK_MS = 32_767;
/** Opus's identification header (RFC 7845 5.1): stereo, 312 samples of pre-skip, 48 kHz. */
const OPUS_HEAD = Buffer.concat([Buffer.from('OpusHead'), Buffer.from([1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0])]);

export class TrackFile {
  private readonly fd: number;
  private readonly video: boolean;
  private readonly clockRate: number;
  /** where the Duration's value is, once the header is written */
  private durationAt = -1;
  /** the frame being assembled (video): its RTP time, its pieces, whether a packet is missing */
  private frame: { ts: number; pieces: Buffer[]; bytes: number; keyframe: boolean; broken: boolean } | undefined;
  /** a keyframe over MAX_PICTURE_PIXELS came: frames are dropped until a keyframe of an allowed size */
  private refused = false;
  private nextSeq: number | undefined;
  /** RTP ticks from the file's first frame, and the last frame's RTP time */
  private ticks = 0;
  private lastTs = 0;
  /** the sender's clock as far as it is believed (src/media/sender-clock.ts) */
  private readonly clock: SenderClock;
  private clusterMs = -1;
  private open = true;
  /** what is not written yet: whole frames */
  private held: Buffer[] = [];
  private heldBytes = 0;

  /**
   * `onRefused`: why a keyframe is not recorded (over MAX_PICTURE_PIXELS), after frames that were
   * (or none). `onFailed`: a write failed (the disk is full or gone); the file is closed with what
   * it has.
   */
  constructor(
    readonly path: string,
    readonly codec: TrackCodec,
    private readonly onRefused?: (why: string) => void,
    private readonly onFailed?: (err: unknown) => void,
  ) {
    this.fd = openSync(path, 'w');
    this.video = codec !== 'opus';
    this.clockRate = this.video ? 90_000 : 48_000;
    this.clock = new SenderClock(this.clockRate, this.clockRate); // a frame over a second behind: the clock went back
  }

  /** True once the file's first frame (a keyframe for video) is written. */
  get started(): boolean {
    return this.durationAt >= 0;
  }

  /** `nowMs`: when the packet arrived (performance.now()), what a jump in its clock is judged by. */
  push(rtp: RtpPacket, nowMs = performance.now()): void {
    if (!this.open) return;
    const { sequenceNumber: seq, timestamp: ts, marker } = rtp.header;
    if (!this.video) {
      this.write(nowMs, ts, true, [rtp.payload]);
      return;
    }
    // A frame is the packets of one RTP time, the last one marked; any packet missing (the Reorder
    // waited for it) breaks the frame it would have been in, and that frame is dropped whole.
    const gap = this.nextSeq !== undefined && seq !== this.nextSeq;
    this.nextSeq = (seq + 1) & 0xffff;
    if (this.frame?.ts !== ts) this.frame = { ts, pieces: [], bytes: 0, keyframe: false, broken: gap };
    const frame = this.frame;
    frame.broken ||= gap;
    if (this.codec === 'vp8') frame.pieces.push(vp8FrameData(rtp.payload));
    else {
      frame.keyframe ||= isH264Keyframe(rtp.payload);
      frame.pieces.push(...h264AnnexB(rtp.payload));
    }
    frame.bytes += rtp.payload.length;
    if (frame.bytes > MAX_FRAME_BYTES || frame.pieces.length > MAX_FRAME_PIECES) {
      frame.broken = true;
      frame.pieces = []; // what comes of it is not kept either
    }
    if (!marker) return;
    this.frame = undefined;
    if (frame.broken) return;
    // VP8: what a keyframe is, and its size, are read as the decoder reads them, from the frame's
    // bytes; H.264: any frame may carry an SPS (inside a slice's bytes too, for an Annex B parser).
    const head = this.codec === 'vp8' ? firstBytes(frame.pieces, 10) : undefined;
    if (head) frame.keyframe = isVp8KeyframeData(head);
    let size: PictureSize | undefined;
    let refusal: string | undefined;
    try {
      size = head ? (frame.keyframe ? vp8KeyframeSize(head) : undefined) : h264PictureSize(frame.pieces);
      if (size && size.codedPixels > MAX_PICTURE_PIXELS)
        refusal = `a picture of ${size.width}×${size.height}, over ${MAX_PICTURE_PIXELS} pixels`;
    } catch (err) {
      refusal = (err as Error).message;
    }
    if (refusal && !this.refused) this.onRefused?.(refusal);
    // Refused from any frame that declares too much, until a keyframe of an allowed size: the
    // frames between could not be decoded without what was refused.
    if (refusal) this.refused = true;
    else if (size && frame.keyframe) this.refused = false;
    if (!this.refused) this.write(nowMs, ts, frame.keyframe, frame.pieces, size);
  }

  private write(now: number, ts: number, keyframe: boolean, pieces: Buffer[], size?: PictureSize): void {
    const out: Buffer[] = [];
    const first = !this.started;
    if (first && !keyframe) return; // a decoder starts at a keyframe
    // The step from the last frame (the 32-bit clock may wrap) as far as the sender's clock is
    // believed: never back, so a frame's time never comes before what is written.
    const step = this.clock.step(first ? undefined : (ts - this.lastTs) | 0, now, this.ticks);
    if (step === undefined) return; // late, or the file that far ahead of real time
    if (first) out.push(this.header(size));
    this.ticks += step;
    this.lastTs = ts;
    const ms = Math.floor((this.ticks * 1000) / this.clockRate);
    if (this.clusterMs < 0 || (this.video && keyframe) || ms - this.clusterMs > MAX_BLOCK_MS) {
      // a cluster at each keyframe: where compose starts reading a file (see webm-index.ts)
      this.clusterMs = ms;
      out.push(openElement(ID.CLUSTER), uint(ID.CLUSTER_TIMESTAMP, ms));
    }
    let bytes = 0;
    for (const p of pieces) bytes += p.length;
    const block = Buffer.allocUnsafe(4);
    block[0] = 0x81; // track 1
    block.writeInt16BE(ms - this.clusterMs, 1);
    block[3] = keyframe ? 0x80 : 0;
    out.push(Buffer.of(ID.SIMPLE_BLOCK), sizeBytes(block.length + bytes), block, ...pieces);
    for (const b of out) this.heldBytes += b.length;
    this.held.push(...out);
    // The first frame at once: from then on tracks.jsonl says the file has media (see capture).
    if (first || this.heldBytes >= MAX_HELD_BYTES) this.flush();
  }

  /** Writes the frames held: compose reads the file up to there. */
  flush(): void {
    if (!this.open) return;
    try {
      this.writeHeld();
    } catch (err) {
      // the file keeps what it has; nothing more is written to a disk that refused
      this.open = false;
      closeSync(this.fd);
      this.onFailed?.(err);
    }
  }

  private writeHeld(): void {
    if (this.heldBytes === 0) return;
    const data = Buffer.concat(this.held, this.heldBytes);
    this.held = [];
    this.heldBytes = 0;
    for (let at = 0; at < data.length; ) at += writeSync(this.fd, data, at);
  }

  /** The EBML header, the Segment's start, its Info and its one track; before the first frame. */
  private header(size: PictureSize | undefined): Buffer {
    const details = this.video
      ? size
        ? [element(ID.VIDEO, [uint(ID.PIXEL_WIDTH, size.width), uint(ID.PIXEL_HEIGHT, size.height)])]
        : []
      : [
          element(ID.AUDIO, [float64(ID.SAMPLING_FREQUENCY, 48_000), uint(ID.CHANNELS, 2)]),
          element(ID.CODEC_PRIVATE, OPUS_HEAD),
        ];
    const start = Buffer.concat([
      element(ID.EBML, [
        uint(ID.EBML_VERSION, 1),
        uint(ID.EBML_READ_VERSION, 1),
        uint(ID.EBML_MAX_ID_LENGTH, 4),
        uint(ID.EBML_MAX_SIZE_LENGTH, 8),
        text(ID.DOC_TYPE, 'webm'),
        uint(ID.DOC_TYPE_VERSION, 2),
        uint(ID.DOC_TYPE_READ_VERSION, 2),
      ]),
      openElement(ID.SEGMENT),
      // the Duration last, so its value is the Info's last 8 bytes
      element(ID.INFO, [
        uint(ID.TIMESTAMP_SCALE, 1_000_000),
        text(ID.MUXING_APP, 'calls-offloader'),
        text(ID.WRITING_APP, 'calls-offloader'),
        float64(ID.DURATION, 0),
      ]),
    ]);
    this.durationAt = start.length - 8;
    const tracks = element(ID.TRACKS, [
      element(ID.TRACK_ENTRY, [
        uint(ID.TRACK_NUMBER, 1),
        uint(ID.TRACK_UID, 1),
        uint(ID.TRACK_TYPE, this.video ? 1 : 2),
        text(ID.CODEC_ID, CODEC_ID[this.codec]),
        ...details,
      ]),
    ]);
    return Buffer.concat([start, tracks]);
  }

  /** The end: the header gets the duration (the last frame's time); a frame still incomplete is dropped. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    try {
      this.writeHeld();
      if (this.started) {
        const duration = Buffer.allocUnsafe(8);
        duration.writeDoubleBE(Math.floor((this.ticks * 1000) / this.clockRate)); // the last frame's time
        writeSync(this.fd, duration, 0, 8, this.durationAt);
      }
    } catch (err) {
      this.onFailed?.(err);
    } finally {
      closeSync(this.fd);
    }
  }
}

/** The first `n` bytes of pieces written one after another (fewer if they hold fewer). */
const firstBytes = (pieces: Buffer[], n: number): Buffer =>
  pieces[0] && pieces[0].length >= n ? pieces[0] : Buffer.concat(pieces).subarray(0, n);
