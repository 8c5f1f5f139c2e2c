// patches/werift+*.patch rewrites werift's per-packet RTP and SRTP code for speed. The patched
// werift must write, read, encrypt and decrypt exactly what werift as released does, and reject
// what it rejects: both are loaded here and fed the same random packets. One deliberate difference:
// a header extension block that runs past the packet is rejected, where released werift read on past
// the end, making up empty extensions in quadratic time (a 24-byte packet could hold the event loop
// for minutes); such packets are not given to released werift here.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as patched from 'werift';
import { seeded } from './helpers.js';
import { releasedWerift } from './werift-released.js';

const released = (await import(releasedWerift())) as typeof patched;
type Werift = typeof patched;

/** Random integers and bytes from a seed. */
function random(seed: number) {
  const next = seeded(seed);
  const int = (n: number) => Math.floor(next() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  return { int, bytes };
}

type Rng = ReturnType<typeof random>;

/** Header fields as plain data, to compare what each werift parsed. */
const fields = (h: patched.RtpHeader) => ({
  version: h.version,
  padding: h.padding,
  paddingSize: h.paddingSize,
  extension: h.extension,
  marker: h.marker,
  payloadType: h.payloadType,
  sequenceNumber: h.sequenceNumber,
  timestamp: h.timestamp,
  ssrc: h.ssrc,
  csrc: [...h.csrc],
  extensionProfile: h.extensionProfile,
  extensionLength: h.extensionLength,
  extensions: h.extensions.map((e) => [e.id, e.payload.toString('hex')]),
  payloadOffset: h.payloadOffset,
});

function randomHeader(w: Werift, r: Rng): patched.RtpHeader {
  const twoByte = r.int(3) === 0;
  const extensions = Array.from({ length: r.int(4) }, (_, i) =>
    twoByte ? { id: i + 1 + r.int(200), payload: r.bytes(r.int(20)) } : { id: i + 1, payload: r.bytes(1 + r.int(16)) },
  );
  return new w.RtpHeader({
    marker: r.int(2) === 1,
    payloadType: r.int(128),
    sequenceNumber: r.int(65536),
    timestamp: r.int(2 ** 32),
    ssrc: r.int(2 ** 32),
    csrc: Array.from({ length: r.int(4) }, () => r.int(2 ** 32)),
    extensionProfile: twoByte ? w.ExtensionProfiles.TwoByte : w.ExtensionProfiles.OneByte,
    extensions,
  });
}

/** Whether the header at the start of `packet` claims an extension block longer than the packet. */
function overruns(packet: Buffer): boolean {
  if (packet.length < 1 || !(packet[0]! & 0x10)) return false;
  const at = 12 + 4 * (packet[0]! & 0x0f);
  return packet.length >= at + 4 && at + 4 + packet.readUInt16BE(at + 2) * 4 > packet.length;
}

/** A packet the extension block of which overruns it: the patched werift must reject it. */
function rejected(what: string, fn: (w: Werift) => unknown): void {
  assert.throws(() => fn(patched), what);
}

/** Runs fn on both; they must both throw or return the same. */
function same<T>(what: string, fn: (w: Werift) => T, compare: (v: T) => unknown = (v) => v): void {
  const outcome = (w: Werift) => {
    try {
      return { value: compare(fn(w)) };
    } catch (e) {
      return { threw: e instanceof w.SrtpAuthenticationError ? 'SrtpAuthenticationError' : 'error' };
    }
  };
  assert.deepEqual(outcome(patched), outcome(released), what);
}

test('RTP headers: patched werift writes and reads the same bytes and fields as released werift', () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const theirs = randomHeader(released, random(seed));
    const wire = theirs.serialize(theirs.serializeSize);
    const mine = randomHeader(patched, random(seed));
    assert.deepEqual(mine.serialize(mine.serializeSize), wire, `seed ${seed}: serialize`);
    const packet = Buffer.concat([wire, random(seed).bytes(random(seed).int(40))]);
    same(
      `seed ${seed}: deSerialize`,
      (w) => w.RtpPacket.deSerialize(packet),
      (p) => [fields(p.header), p.payload],
    );
    // Cut short or flipped: both must fail alike, or read alike.
    const r = random(seed);
    const cut = packet.subarray(0, r.int(packet.length));
    const flipped = Buffer.from(packet);
    flipped[r.int(Math.min(flipped.length, 20))] ^= 1 << r.int(8);
    for (const [what, bytes] of [
      ['truncated', cut],
      ['flipped', flipped],
    ] as const) {
      const parse = (w: Werift) => w.RtpHeader.deSerialize(bytes);
      if (overruns(bytes)) rejected(`seed ${seed}: ${what}`, parse);
      else same(`seed ${seed}: ${what}`, parse, fields);
    }
  }
});

/** What the DTLS transport hands on: the patched one decrypts and parses the header once. */
const received = (w: Werift, session: patched.SrtpSession, data: Buffer) =>
  w === patched
    ? (session as patched.SrtpSession & { decryptPacket(b: Buffer): patched.RtpPacket }).decryptPacket(data)
    : w.RtpPacket.deSerialize(session.decrypt(data));

for (const [name, profile, tagLength] of [
  ['AES-GCM', patched.ProtectionProfileAeadAes128Gcm, 16],
  ['AES-CM + HMAC-SHA1', patched.ProtectionProfileAes128CmHmacSha1_80, 10],
] as const) {
  test(`SRTP ${name}: patched werift encrypts, decrypts and rejects as released werift does`, () => {
    const r = random(profile);
    const [key, salt, otherKey, otherSalt] = [r.bytes(16), r.bytes(14), r.bytes(16), r.bytes(14)];
    const sender = (w: Werift) =>
      new w.SrtpSession({
        keys: { localMasterKey: key, localMasterSalt: salt, remoteMasterKey: otherKey, remoteMasterSalt: otherSalt },
        profile,
      });
    const receiver = (w: Werift) =>
      new w.SrtpSession({
        keys: { localMasterKey: otherKey, localMasterSalt: otherSalt, remoteMasterKey: key, remoteMasterSalt: salt },
        profile,
      });
    const senders = new Map([patched, released].map((w) => [w, sender(w)] as const));
    const receivers = new Map([patched, released].map((w) => [w, receiver(w)] as const));
    // One stream whose sequence numbers wrap (the rollover counter), some packets padded.
    const ssrc = r.int(2 ** 32);
    for (let i = 0; i < 600; i++) {
      const paddingSize = r.int(5) === 0 ? 1 + r.int(8) : 0;
      const payload = Buffer.concat([r.bytes(1 + r.int(1200)), Buffer.alloc(paddingSize, paddingSize)]);
      const props = {
        ssrc,
        sequenceNumber: (65536 - 300 + i) & 0xffff,
        timestamp: i * 3000,
        payloadType: 96,
        padding: paddingSize > 0,
        marker: i % 3 === 0,
      };
      const wire = senders.get(released)!.encrypt(payload, new released.RtpHeader(props));
      assert.deepEqual(
        senders.get(patched)!.encrypt(payload, new patched.RtpHeader(props)),
        wire,
        `packet ${i}: encrypt`,
      );
      const tampered = Buffer.from(wire);
      tampered[r.int(tampered.length)] ^= 1 << r.int(8);
      const cut = wire.subarray(0, r.int(wire.length));
      for (const [what, bytes] of [
        ['tampered', tampered],
        ['cut short', cut],
        ['decrypt', wire],
      ] as const) {
        const receive = (w: Werift) => received(w, receivers.get(w)!, bytes);
        // The header is read before authentication, without the tag.
        if (overruns(bytes.subarray(0, bytes.length - tagLength))) rejected(`packet ${i}: ${what}`, receive);
        else same(`packet ${i}: ${what}`, receive, (p) => [fields(p.header), p.payload]);
      }
    }
  });
}

test('uint32Add: the same sums, negative steps and wraps included', () => {
  const r = random(7);
  for (let i = 0; i < 10000; i++) {
    const a = r.int(2 ** 32);
    const b = i % 2 ? r.int(2 ** 32) : -r.int(2 ** 32);
    assert.equal(patched.uint32Add(a, b), released.uint32Add(a, b), `${a} + ${b}`);
  }
});
