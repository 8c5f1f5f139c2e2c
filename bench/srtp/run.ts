// bench/srtp: CPU per RTP packet that werift's SRTP session spends protecting (what the SFU does
// for every packet it forwards) and unprotecting (every packet it and a job's bot receive), for
// both profiles WebRTC uses (AES-GCM: werift and Pion choose it; AES-CM with HMAC-SHA1-80:
// Chromium offers only this), at a voice's and a screen share's packet size. Three ways in the
// same run, alternated: werift as released, as patched with its own per-packet ciphers, and as
// patched with the addon (src/sfu/srtp-native.c, one OpenSSL context per key). Prints a table.
import * as patched from 'werift';
import { useNativeSrtp } from '../../src/sfu/srtp-native.js';
import { releasedWerift } from '../../test/werift-released.js';

const released = (await import(releasedWerift())) as typeof patched;
const PACKETS = Number(process.env.BENCH_PACKETS ?? 200_000);
const ROUNDS = 3;

const ways = [
  { name: 'released', werift: released, addon: false },
  { name: 'patched', werift: patched, addon: false },
  { name: 'addon', werift: patched, addon: true },
] as const;
const profiles = [
  { name: 'AES-GCM', id: patched.ProtectionProfileAeadAes128Gcm },
  { name: 'AES-CM + HMAC-SHA1-80', id: patched.ProtectionProfileAes128CmHmacSha1_80 },
];
const sizes = [
  { name: 'voice (80 B)', bytes: 80 },
  { name: 'screen share (1,150 B)', bytes: 1150 },
];

/** Microseconds per packet to protect and to unprotect `PACKETS` packets of one stream. */
function measure(w: (typeof ways)[number], profile: number, bytes: number): { protect: number; unprotect: number } {
  useNativeSrtp(w.addon); // sessions keyed after this use the addon, or werift's own ciphers
  const keys = { key: Buffer.alloc(16, 7), salt: Buffer.alloc(14, 9) };
  const session = () =>
    new w.werift.SrtpSession({
      keys: {
        localMasterKey: keys.key,
        localMasterSalt: keys.salt,
        remoteMasterKey: keys.key,
        remoteMasterSalt: keys.salt,
      },
      profile: profile as typeof patched.ProtectionProfileAeadAes128Gcm,
    });
  const [sender, receiver] = [session(), session()];
  const payload = Buffer.alloc(bytes, 0x5a);
  const headers = Array.from(
    { length: 1000 },
    (_, i) => new w.werift.RtpHeader({ ssrc: 1234, sequenceNumber: i, timestamp: i * 960, payloadType: 111 }),
  );
  // In chunks, each protected then unprotected: one stream in order, its rollover counter
  // wrapping as a long call's does, and no more than a chunk held.
  const wire: Buffer[] = new Array(1000);
  let protect = 0n;
  let unprotect = 0n;
  for (let i = 0; i < PACKETS; i += 1000) {
    let t = process.hrtime.bigint();
    for (let j = 0; j < 1000; j++) {
      const header = headers[j]!;
      header.sequenceNumber = (i + j) & 0xffff;
      wire[j] = sender.encrypt(payload, header);
    }
    protect += process.hrtime.bigint() - t;
    t = process.hrtime.bigint();
    let last: Buffer = Buffer.alloc(0);
    for (let j = 0; j < 1000; j++) last = receiver.decrypt(wire[j]!);
    unprotect += process.hrtime.bigint() - t;
    if (!last.subarray(-bytes).equals(payload)) throw new Error(`${w.name}: a packet did not come back as sent`);
  }
  const us = (ns: bigint) => Number(ns) / 1e3 / PACKETS;
  return { protect: us(protect), unprotect: us(unprotect) };
}

const rows: string[] = [];
for (const p of profiles) {
  for (const s of sizes) {
    const best = new Map<string, { protect: number; unprotect: number }>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const w of ways) {
        const m = measure(w, p.id, s.bytes);
        const b = best.get(w.name);
        best.set(w.name, {
          protect: Math.min(b?.protect ?? Infinity, m.protect),
          unprotect: Math.min(b?.unprotect ?? Infinity, m.unprotect),
        });
      }
    }
    const cell = (k: 'protect' | 'unprotect') => ways.map((w) => best.get(w.name)![k].toFixed(2)).join(' / ');
    rows.push(`| ${p.name} | ${s.name} | ${cell('protect')} | ${cell('unprotect')} |`);
  }
}
useNativeSrtp(false);
console.log(
  `\nbench/srtp (${new Date().toISOString().slice(0, 10)}, node ${process.version}; µs per RTP packet, the best of ${ROUNDS} rounds of ${PACKETS.toLocaleString('en-US')})\n`,
);
console.log('| profile | packet | protect: released / patched / addon | unprotect: released / patched / addon |');
console.log('|---|---|---|---|');
for (const r of rows) console.log(r);
