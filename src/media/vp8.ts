// Reading VP8 RTP payloads (RFC 7741) without decoding them.

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

/** True when the packet starts a keyframe: start of partition 0 with the P bit clear. */
export function isVp8Keyframe(payload: Uint8Array): boolean {
  if (payload.length < 2) return false;
  const startOfPartition = (payload[0]! & 0x10) !== 0 && (payload[0]! & 0x0f) === 0;
  if (!startOfPartition) return false;
  const header = payload[vp8DescriptorLength(payload)];
  return header !== undefined && (header & 0x01) === 0;
}

/** The frame's bytes a packet carries: its payload after the descriptor. */
export const vp8FrameData = (payload: Buffer): Buffer => payload.subarray(vp8DescriptorLength(payload));

/**
 * The picture size a keyframe declares (RFC 6386 9.1), read from the frame's bytes (after the
 * payload descriptor), or undefined when they do not start with a keyframe's header.
 */
export function vp8KeyframeSize(frame: Buffer): { width: number; height: number } | undefined {
  if (frame.length < 10 || (frame[0]! & 0x01) !== 0) return undefined;
  if (frame[3] !== 0x9d || frame[4] !== 0x01 || frame[5] !== 0x2a) return undefined; // the start code
  return { width: frame.readUInt16LE(6) & 0x3fff, height: frame.readUInt16LE(8) & 0x3fff };
}
