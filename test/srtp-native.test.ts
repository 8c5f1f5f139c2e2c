// The SRTP addon (src/sfu/srtp-native.c) against Node's own AES-GCM, AES-CTR and HMAC-SHA1: the
// same bytes out, nothing accepted that fails to authenticate, and no argument that can make it
// read or write outside its buffers (each is refused with a TypeError; the process goes on).
// werift through the addon is checked against released werift in werift-patch.test.ts.
import assert from 'node:assert/strict';
import { createCipheriv, createHmac } from 'node:crypto';
import { test } from 'node:test';
import { addonPath, srtpAddon } from '../src/sfu/srtp-native.js';
import { seededRandom } from './helpers.js';

const { addon, why } = srtpAddon();
assert.ok(addon, `the addon (${addonPath}) must be built by npm run build: ${why}`);
const { aesGcm, aesCm } = addon;

/** What each cipher must produce, by Node's crypto: ciphertext and tag. */
function gcmByNode(key: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer) {
  const cipher = createCipheriv('aes-128-gcm', key, iv);
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext, tag: cipher.getAuthTag() };
}

function cmByNode(key: Buffer, authKey: Buffer, counter: Buffer, header: Buffer, plaintext: Buffer, roc: number) {
  const ciphertext = createCipheriv('aes-128-ctr', key, counter).update(plaintext);
  const rocBytes = Buffer.alloc(4);
  rocBytes.writeUInt32BE(roc);
  const tag = createHmac('sha1', authKey).update(header).update(ciphertext).update(rocBytes).digest().subarray(0, 10);
  return { ciphertext, tag };
}

const ciphers = [
  {
    name: 'AES-GCM',
    ivLength: 12,
    tagLength: 16,
    create: (bytes: (n: number) => Buffer) => {
      const key = bytes(16);
      return {
        handle: aesGcm.create(key),
        byNode: (iv: Buffer, aad: Buffer, p: Buffer, _roc?: number) => gcmByNode(key, iv, aad, p),
      };
    },
    seal: (h: unknown, iv: Buffer, aad: Buffer, p: Buffer, _roc: number, dst: Buffer, at: number) =>
      aesGcm.seal(h, iv, aad, p, dst, at),
    open: (h: unknown, iv: Buffer, aad: Buffer, c: Buffer, _roc: number, tag: Buffer, dst: Buffer, at: number) =>
      aesGcm.open(h, iv, aad, c, tag, dst, at),
  },
  {
    name: 'AES-CM + HMAC-SHA1-80',
    ivLength: 16,
    tagLength: 10,
    create: (bytes: (n: number) => Buffer) => {
      const [key, authKey] = [bytes(16), bytes(20)];
      return {
        handle: aesCm.create(key, authKey),
        byNode: (iv: Buffer, header: Buffer, p: Buffer, roc = 0) => cmByNode(key, authKey, iv, header, p, roc),
      };
    },
    seal: (h: unknown, iv: Buffer, header: Buffer, p: Buffer, roc: number, dst: Buffer, at: number) =>
      aesCm.seal(h, iv, header, p, roc, dst, at),
    open: (h: unknown, iv: Buffer, header: Buffer, c: Buffer, roc: number, tag: Buffer, dst: Buffer, at: number) =>
      aesCm.open(h, iv, header, c, roc, tag, dst, at),
  },
];

for (const c of ciphers) {
  test(`${c.name}: seal and open give what Node’s crypto gives, at any size and offset`, () => {
    const { bytes } = seededRandom(c.ivLength);
    for (let i = 0; i < 300; i++) {
      const { handle, byNode } = c.create(bytes);
      // Several packets per key: the context is reused, so each IV must fully replace the last.
      for (let j = 0; j < 4; j++) {
        const [iv, header, plaintext] = [bytes(c.ivLength), bytes((i * 7 + j) % 40), bytes((i * 37 + j * 13) % 1500)];
        const roc = (i * 7919 + j) * 65537;
        const expected = byNode(iv, header, plaintext, roc >>> 0);
        const offset = j * 3;
        const sealed = Buffer.alloc(offset + plaintext.length + c.tagLength, 0xee);
        c.seal(handle, iv, header, plaintext, roc >>> 0, sealed, offset);
        assert.deepEqual(
          sealed.subarray(offset),
          Buffer.concat([expected.ciphertext, expected.tag]),
          `key ${i}, packet ${j}`,
        );
        assert.ok(
          sealed.subarray(0, offset).every((b) => b === 0xee),
          'nothing written before the offset',
        );
        const opened = Buffer.alloc(offset + plaintext.length);
        assert.equal(c.open(handle, iv, header, expected.ciphertext, roc >>> 0, expected.tag, opened, offset), true);
        assert.deepEqual(opened.subarray(offset), plaintext, `key ${i}, packet ${j}: open`);
      }
    }
  });

  test(`${c.name}: open refuses a packet whose ciphertext, tag, header, IV or rollover counter was changed`, () => {
    const { bytes } = seededRandom(100 + c.ivLength);
    const { handle } = c.create(bytes);
    const [iv, header, plaintext] = [bytes(c.ivLength), bytes(12), bytes(200)];
    const sealed = Buffer.alloc(200 + c.tagLength);
    c.seal(handle, iv, header, plaintext, 5, sealed, 0);
    const [ciphertext, tag] = [sealed.subarray(0, 200), sealed.subarray(200)];
    const open = (v: { iv?: Buffer; header?: Buffer; ct?: Buffer; tag?: Buffer; roc?: number }) =>
      c.open(
        handle,
        v.iv ?? iv,
        v.header ?? header,
        v.ct ?? ciphertext,
        v.roc ?? 5,
        v.tag ?? tag,
        Buffer.alloc(200),
        0,
      );
    const flip = (b: Buffer, at: number) => {
      const copy = Buffer.from(b);
      copy[at] ^= 1;
      return copy;
    };
    assert.equal(open({}), true);
    for (let at = 0; at < 200; at += 17) assert.equal(open({ ct: flip(ciphertext, at) }), false, `ciphertext ${at}`);
    for (let at = 0; at < c.tagLength; at++) assert.equal(open({ tag: flip(tag, at) }), false, `tag ${at}`);
    for (let at = 0; at < 12; at++) assert.equal(open({ header: flip(header, at) }), false, `header ${at}`);
    assert.equal(open({ header: header.subarray(0, 11) }), false, 'header cut');
    if (c.name === 'AES-GCM')
      assert.equal(open({ iv: flip(iv, 11) }), false, 'iv'); // CM's tag does not cover the IV
    else assert.equal(open({ roc: 6 }), false, 'rollover counter');
    // Another key's handle cannot open it either, and the right one still can afterwards.
    const other = c.create(bytes).handle;
    assert.equal(c.open(other, iv, header, ciphertext, 5, tag, Buffer.alloc(200), 0), false);
    assert.equal(open({}), true);
  });
}

test('arguments that do not fit are refused with a TypeError, never read or written past', () => {
  const gcm = aesGcm.create(Buffer.alloc(16));
  const cm = aesCm.create(Buffer.alloc(16), Buffer.alloc(20));
  const b = (n: number) => Buffer.alloc(n);
  const loose = (f: unknown) => f as (...a: unknown[]) => unknown;
  const bad: [string, () => unknown][] = [
    ['a 15-byte key', () => aesGcm.create(b(15))],
    ['no key', () => loose(aesGcm.create)()],
    ['a string key', () => loose(aesGcm.create)('0123456789abcdef')],
    ['a 19-byte auth key', () => aesCm.create(b(16), b(19))],
    ['a handle that is not one', () => aesGcm.seal({}, b(12), b(0), b(10), b(26), 0)],
    ['a CM handle given to GCM', () => aesGcm.seal(cm, b(12), b(0), b(10), b(26), 0)],
    ['a GCM handle given to CM', () => aesCm.seal(gcm, b(16), b(0), b(10), 0, b(20), 0)],
    ['an 11-byte IV', () => aesGcm.seal(gcm, b(11), b(0), b(10), b(26), 0)],
    ['a 12-byte counter for CM', () => aesCm.seal(cm, b(12), b(0), b(10), 0, b(20), 0)],
    ['no room for the tag', () => aesGcm.seal(gcm, b(12), b(0), b(10), b(25), 0)],
    ['no room for the CM tag', () => aesCm.seal(cm, b(16), b(0), b(10), 0, b(19), 0)],
    ['an offset past the end', () => aesGcm.seal(gcm, b(12), b(0), b(10), b(26), 27)],
    ['an offset that leaves no room', () => aesCm.seal(cm, b(16), b(0), b(10), 0, b(24), 5)],
    ['a negative offset', () => aesGcm.seal(gcm, b(12), b(0), b(10), b(26), -1)],
    ['an offset of 2^32 + 1 (would wrap to 1)', () => aesGcm.seal(gcm, b(12), b(0), b(10), b(27), 2 ** 32 + 1)],
    ['an offset of NaN', () => aesGcm.seal(gcm, b(12), b(0), b(10), b(26), Number.NaN)],
    ['an offset of 0.5', () => aesGcm.seal(gcm, b(12), b(0), b(10), b(27), 0.5)],
    ['a rollover counter of 2^32', () => aesCm.seal(cm, b(16), b(0), b(10), 2 ** 32, b(20), 0)],
    ['a rollover counter that is not a number', () => loose(aesCm.seal)(cm, b(16), b(0), b(10), '1', b(20), 0)],
    ['too few arguments', () => loose(aesGcm.seal)(gcm, b(12), b(0), b(10), b(26))],
    ['a 15-byte tag', () => aesGcm.open(gcm, b(12), b(0), b(10), b(15), b(10), 0)],
    ['an 11-byte CM tag', () => aesCm.open(cm, b(16), b(0), b(10), 0, b(11), b(10), 0)],
    ['no room for the plaintext', () => aesGcm.open(gcm, b(12), b(0), b(10), b(16), b(9), 0)],
    ['an offset past the plaintext room', () => aesCm.open(cm, b(16), b(0), b(10), 0, b(10), b(12), 3)],
  ];
  // An output that overlaps an input other than exactly in place.
  const shared = b(64);
  bad.push(
    ['output over part of the input', () => aesGcm.seal(gcm, b(12), b(0), shared.subarray(0, 20), shared, 4)],
    ['output over the header', () => aesCm.seal(cm, b(16), shared.subarray(30, 42), b(10), 0, shared, 25)],
    ['output over the IV', () => aesGcm.open(gcm, shared.subarray(0, 12), b(0), b(10), b(16), shared, 5)],
  );
  for (const [what, call] of bad) assert.throws(call, TypeError, what);
  // Both handles still work after every refusal.
  const sealed = b(26);
  aesGcm.seal(gcm, b(12), b(3), b(10), sealed, 0);
  assert.equal(aesGcm.open(gcm, b(12), b(3), sealed.subarray(0, 10), sealed.subarray(10), b(10), 0), true);
  aesCm.seal(cm, b(16), b(3), b(10), 9, sealed, 0);
  assert.equal(aesCm.open(cm, b(16), b(3), sealed.subarray(0, 10), 9, sealed.subarray(10, 20), b(10), 0), true);
});

test('in place: a packet sealed and opened over its own bytes', () => {
  const { bytes } = seededRandom(3);
  for (const c of ciphers) {
    const { handle, byNode } = c.create(bytes);
    const [iv, header, plaintext] = [bytes(c.ivLength), bytes(12), bytes(300)];
    const expected = byNode(iv, header, plaintext, 0);
    const packet = Buffer.concat([plaintext, Buffer.alloc(c.tagLength)]);
    c.seal(handle, iv, header, packet.subarray(0, 300), 0, packet, 0);
    assert.deepEqual(packet, Buffer.concat([expected.ciphertext, expected.tag]), c.name);
    const ciphertext = packet.subarray(0, 300);
    assert.equal(c.open(handle, iv, header, ciphertext, 0, Buffer.from(packet.subarray(300)), packet, 0), true);
    assert.deepEqual(ciphertext, plaintext, c.name);
  }
});
