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
