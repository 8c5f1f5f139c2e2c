// Reading VP8 RTP payloads (RFC 7741) without decoding them.
import type { PictureSize } from './picture-size.js';

/** Length of the VP8 payload descriptor at the start of an RTP payload. */
export function vp8DescriptorLength(payload: Uint8Array): number {
  let n = 1;
  if (payload[0]! & 0x80) {
    const ext = payload[1]!;
    n = 2;
    if (ext & 0x80) n += payload[n]! & 0x80 ? 2 : 1; // PictureID, 7 or 15 bits
    if (ext & 0x40) n += 1; // TL0PICIDX
    if (ext & 0x30) n += 1; // TID / KEYIDX
  }
  return n;
}

/** The frame's bytes a packet carries: its payload after the descriptor. */
export const vp8FrameData = (payload: Buffer): Buffer => payload.subarray(vp8DescriptorLength(payload));

/** True when a frame's bytes (all its packets' after their descriptors) are a keyframe: the decoder's own test. */
export const isVp8KeyframeData = (frame: Buffer): boolean => frame.length > 0 && (frame[0]! & 0x01) === 0;

/**
 * The picture size a keyframe declares (RFC 6386 9.1), read from the frame's first 10 bytes
 * (after the payload descriptor); throws when they are not a keyframe's header.
 */
export function vp8KeyframeSize(frame: Buffer): PictureSize {
  if (frame.length < 10 || !isVp8KeyframeData(frame) || frame[3] !== 0x9d || frame[4] !== 0x01 || frame[5] !== 0x2a)
    throw new RangeError('a keyframe whose header cannot be read');
  const width = frame.readUInt16LE(6) & 0x3fff;
  const height = frame.readUInt16LE(8) & 0x3fff;
  return { width, height, codedPixels: Math.ceil(width / 16) * 16 * Math.ceil(height / 16) * 16 };
}
