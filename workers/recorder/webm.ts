// The few Matroska/EBML pieces capture writes and compose reads. An element is an ID (its length
// marker kept) and a size, both variable-length integers, then its body; a file being written
// leaves its Segment and Clusters at the unknown size (all ones) and is read by descending into them.

export const ID = {
  EBML: 0x1a45dfa3,
  EBML_VERSION: 0x4286,
  EBML_READ_VERSION: 0x42f7,
  EBML_MAX_ID_LENGTH: 0x42f2,
  EBML_MAX_SIZE_LENGTH: 0x42f3,
  DOC_TYPE: 0x4282,
  DOC_TYPE_VERSION: 0x4287,
  DOC_TYPE_READ_VERSION: 0x4285,
  SEGMENT: 0x18538067,
  INFO: 0x1549a966,
  TIMESTAMP_SCALE: 0x2ad7b1,
  DURATION: 0x4489,
  MUXING_APP: 0x4d80,
  WRITING_APP: 0x5741,
  TRACKS: 0x1654ae6b,
  TRACK_ENTRY: 0xae,
  TRACK_NUMBER: 0xd7,
  TRACK_UID: 0x73c5,
  TRACK_TYPE: 0x83,
  CODEC_ID: 0x86,
  CODEC_PRIVATE: 0x63a2,
  VIDEO: 0xe0,
  PIXEL_WIDTH: 0xb0,
  PIXEL_HEIGHT: 0xba,
  AUDIO: 0xe1,
  SAMPLING_FREQUENCY: 0xb5,
  CHANNELS: 0x9f,
  CLUSTER: 0x1f43b675,
  CLUSTER_TIMESTAMP: 0xe7,
  SIMPLE_BLOCK: 0xa3,
  BLOCK_GROUP: 0xa0,
  BLOCK: 0xa1,
} as const;

/** The size of an element still being written. */
export const UNKNOWN_SIZE = Buffer.from([0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** An ID's bytes: its value already holds the length marker. */
function idBytes(id: number): Buffer {
  const length = id > 0xffffff ? 4 : id > 0xffff ? 3 : id > 0xff ? 2 : 1;
  const out = Buffer.allocUnsafe(length);
  out.writeUIntBE(id, 0, length);
  return out;
}

/** A size as a variable-length integer of the fewest bytes (all ones is reserved for unknown). */
export function sizeBytes(size: number): Buffer {
  let length = 1;
  while (size >= 2 ** (7 * length) - 1) length++;
  const out = Buffer.allocUnsafe(length);
  out.writeUIntBE(size, 0, length);
  out[0]! |= 0x80 >> (length - 1);
  return out;
}

/** A whole element: ID, size, body (its children, or a value). */
export function element(id: number, body: Buffer | Buffer[]): Buffer {
  const data = Array.isArray(body) ? Buffer.concat(body) : body;
  return Buffer.concat([idBytes(id), sizeBytes(data.length), data]);
}

/** The start of an element whose size is not known yet: what follows are its children. */
export const openElement = (id: number): Buffer => Buffer.concat([idBytes(id), UNKNOWN_SIZE]);

export function uint(id: number, value: number): Buffer {
  let length = 1;
  while (value >= 2 ** (8 * length)) length++;
  const body = Buffer.allocUnsafe(length);
  body.writeUIntBE(value, 0, length);
  return element(id, body);
}

export function float64(id: number, value: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeDoubleBE(value);
  return element(id, body);
}

export const text = (id: number, value: string): Buffer => element(id, Buffer.from(value));

/** A variable-length integer at `at`: its value (marker bit kept for IDs), length, and whether all value bits are ones. */
export function readVint(
  buf: Buffer,
  at: number,
  keepMarker: boolean,
): { value: number; length: number; unknown: boolean } | null {
  if (at >= buf.length) return null;
  const first = buf[at]!;
  let length = 1;
  while (length <= 8 && !(first & (0x80 >> (length - 1)))) length++;
  if (length > 8 || at + length > buf.length) return null;
  let value = keepMarker ? first : first & (0xff >> length);
  let ones = value === 0xff >> length;
  for (let i = 1; i < length; i++) {
    value = value * 256 + buf[at + i]!;
    ones &&= buf[at + i] === 0xff;
  }
  return { value, length, unknown: !keepMarker && ones };
}
