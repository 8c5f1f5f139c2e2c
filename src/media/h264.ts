// Reading H.264 RTP payloads (RFC 6184) without decoding them.

const IDR = 5;
const SPS = 7;
const STAP_A = 24;
const FU_A = 28;

/**
 * True when the packet starts a keyframe: an IDR slice or the SPS that precedes one, sent alone,
 * aggregated (STAP-A) or as the first fragment of a fragmented unit (FU-A).
 */
export function isH264Keyframe(payload: Uint8Array): boolean {
  if (payload.length < 2) return false;
  const type = payload[0]! & 0x1f;
  if (type === IDR || type === SPS) return true;
  if (type === FU_A)
    return (payload[1]! & 0x80) !== 0 && ((payload[1]! & 0x1f) === IDR || (payload[1]! & 0x1f) === SPS);
  if (type === STAP_A) {
    for (let at = 1; at + 2 < payload.length; ) {
      const size = (payload[at]! << 8) | payload[at + 1]!;
      const nal = payload[at + 2]! & 0x1f;
      if (nal === IDR || nal === SPS) return true;
      at += 2 + size;
    }
  }
  return false;
}

const START_CODE = Buffer.from([0, 0, 0, 1]);

/**
 * A packet's NAL units in Annex B (a start code before each), as pieces written one after
 * another: a single unit, every unit of a STAP-A, or a FU-A's bytes (its first fragment restoring
 * the unit's header). Other packet types carry nothing a browser sends; a malformed one yields
 * what it held intact.
 */
export function h264AnnexB(payload: Buffer): Buffer[] {
  if (payload.length < 1) return [];
  const type = payload[0]! & 0x1f;
  if (type >= 1 && type < STAP_A) return [START_CODE, payload];
  const pieces: Buffer[] = [];
  if (type === STAP_A) {
    for (let at = 1; at + 2 <= payload.length; ) {
      const size = payload.readUInt16BE(at);
      if (size === 0 || at + 2 + size > payload.length) break;
      pieces.push(START_CODE, payload.subarray(at + 2, at + 2 + size));
      at += 2 + size;
    }
  } else if (type === FU_A && payload.length > 2) {
    if (payload[1]! & 0x80) pieces.push(START_CODE, Buffer.of((payload[0]! & 0xe0) | (payload[1]! & 0x1f)));
    pieces.push(payload.subarray(2));
  }
  return pieces;
}
