// Reading H.264 RTP payloads (RFC 6184) without decoding them.
import type { PictureSize } from './picture-size.js';

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

/** profile_idc values whose SPS carries chroma format, bit depths and scaling lists (H.264 7.3.2.1.1). */
const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

/** Reads an SPS's RBSP bit by bit; throws past its end. */
class Bits {
  private at = 0;
  constructor(private readonly bytes: Uint8Array) {}

  u(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++, this.at++) {
      const byte = this.bytes[this.at >> 3];
      if (byte === undefined) throw new RangeError('past the end');
      v = v * 2 + ((byte >> (7 - (this.at & 7))) & 1);
    }
    return v;
  }

  /** Exp-Golomb, unsigned */
  ue(): number {
    let zeros = 0;
    while (this.u(1) === 0) if (++zeros > 31) throw new RangeError('not Exp-Golomb');
    return 2 ** zeros - 1 + this.u(zeros);
  }

  /** Exp-Golomb, signed */
  se(): number {
    const k = this.ue();
    return k % 2 ? (k + 1) / 2 : -k / 2;
  }
}

/** More SPSs than ids (32) in one access unit is a sender's flood, not an encoder's. */
const MAX_SPS = 32;
/** An SPS is read from at most this many bytes: scaling lists included it is under 1 KB. */
const MAX_SPS_BYTES = 4096;

/**
 * The largest picture an access unit's SPSs declare (H.264 7.3.2.1.1 and 7.4.2.1.1), from its NAL
 * units in Annex B; undefined when it holds none. Every SPS counts: a decoder keeps the last of
 * each id, so a small one before a large one decides nothing. Throws when one cannot be read.
 */
export function h264PictureSize(pieces: Buffer[]): PictureSize | undefined {
  const data = Buffer.concat(pieces);
  const startCode = START_CODE.subarray(1);
  let largest: PictureSize | undefined;
  let count = 0;
  for (let i = data.indexOf(startCode); i >= 0; i = data.indexOf(startCode, i + 3)) {
    if ((data[i + 3]! & 0x1f) !== SPS) continue;
    if (++count > MAX_SPS) throw new RangeError(`more than ${MAX_SPS} SPSs in one frame`);
    const next = data.indexOf(startCode, i + 4);
    const end = Math.min(next < 0 ? data.length : next, i + 4 + MAX_SPS_BYTES);
    let size: PictureSize;
    try {
      size = spsSize(data.subarray(i + 4, end));
    } catch (err) {
      throw new RangeError(`an SPS that cannot be read (${(err as Error).message})`);
    }
    if (!largest || size.codedPixels > largest.codedPixels) largest = size;
  }
  return largest;
}

function spsSize(escaped: Buffer): PictureSize {
  // The RBSP: a 0x03 after two zero bytes of the NAL unit is an emulation prevention byte, and
  // the count of zeros starts again after it (7.3.1).
  const rbsp: number[] = [];
  let zeros = 0;
  for (const byte of escaped) {
    if (zeros >= 2 && byte === 3) {
      zeros = 0;
      continue;
    }
    rbsp.push(byte);
    zeros = byte === 0 ? zeros + 1 : 0;
  }
  const b = new Bits(Uint8Array.from(rbsp));
  const profile = b.u(8);
  b.u(16); // constraint flags, level_idc
  b.ue(); // seq_parameter_set_id
  let chromaFormat = 1;
  if (HIGH_PROFILES.has(profile)) {
    chromaFormat = b.ue();
    if (chromaFormat === 3) b.u(1); // separate_colour_plane_flag
    b.ue(); // bit_depth_luma_minus8
    b.ue(); // bit_depth_chroma_minus8
    b.u(1); // qpprime_y_zero_transform_bypass_flag
    if (b.u(1)) {
      for (let list = 0; list < (chromaFormat === 3 ? 12 : 8); list++) {
        if (!b.u(1)) continue;
        for (let j = 0, last = 8, next = 8; j < (list < 6 ? 16 : 64) && next !== 0; j++) {
          next = (last + b.se() + 256) % 256;
          if (next !== 0) last = next;
        }
      }
    }
  }
  b.ue(); // log2_max_frame_num_minus4
  const pocType = b.ue();
  if (pocType === 0) b.ue();
  else if (pocType === 1) {
    b.u(1);
    b.se();
    b.se();
    const cycle = b.ue();
    if (cycle > 255) throw new RangeError('num_ref_frames_in_pic_order_cnt_cycle over 255');
    for (let k = 0; k < cycle; k++) b.se();
  }
  b.ue(); // max_num_ref_frames
  b.u(1); // gaps_in_frame_num_value_allowed_flag
  const widthMbs = b.ue() + 1;
  const heightUnits = b.ue() + 1;
  const frameMbsOnly = b.u(1);
  if (!frameMbsOnly) b.u(1); // mb_adaptive_frame_field_flag
  b.u(1); // direct_8x8_inference_flag
  const codedPixels = widthMbs * 16 * (2 - frameMbsOnly) * heightUnits * 16;
  let width = widthMbs * 16;
  let height = (2 - frameMbsOnly) * heightUnits * 16;
  if (b.u(1)) {
    const [left, right, top, bottom] = [b.ue(), b.ue(), b.ue(), b.ue()];
    const unitX = chromaFormat === 1 || chromaFormat === 2 ? 2 : 1;
    const unitY = (chromaFormat === 1 ? 2 : 1) * (2 - frameMbsOnly);
    width -= unitX * (left + right);
    height -= unitY * (top + bottom);
  }
  if (width <= 0 || height <= 0) throw new RangeError('cropped to nothing');
  return { width, height, codedPixels };
}
