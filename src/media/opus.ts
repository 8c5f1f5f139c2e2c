// Reading Opus RTP payloads (RFC 6716 section 3.1) without decoding them.

/** Duration in ms of one frame for each TOC configuration (0-31). */
const FRAME_MS = [
  10,
  20,
  40,
  60,
  10,
  20,
  40,
  60,
  10,
  20,
  40,
  60, // SILK NB, MB, WB
  10,
  20,
  10,
  20, // hybrid SWB, FB
  2.5,
  5,
  10,
  20,
  2.5,
  5,
  10,
  20,
  2.5,
  5,
  10,
  20,
  2.5,
  5,
  10,
  20, // CELT NB, WB, SWB, FB
];

/** How much audio an Opus packet holds, in ms (0 for an empty or malformed payload). */
export function opusPacketMs(payload: Uint8Array): number {
  if (payload.length === 0) return 0;
  const toc = payload[0]!;
  const code = toc & 0x03;
  const frames = code === 0 ? 1 : code === 3 ? (payload[1] ?? 0) & 0x3f : 2;
  return FRAME_MS[toc >> 3]! * frames;
}
