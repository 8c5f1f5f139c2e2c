// The Calls wire format against byte vectors written from the reference (rtcd's dc/msg.go encodes
// the type as a msgpack uint8, 0xcc NN; the plugin takes `sdp` as msgpack bin holding RFC 1950
// zlib of the description's JSON) and against Node's own zlib, which nobody here wrote.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync, deflateSync, inflateSync } from 'node:zlib';
import { decode } from '@msgpack/msgpack';
import {
  DcType,
  MAX_SDP_BYTES,
  ProtocolError,
  decodeDc,
  decodeRequest,
  encodeDc,
  encodeRequest,
  formatTrackId,
  packSdp,
  parseTrackId,
  unpackSdp,
} from '../src/sfu/protocol/wire.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const bytes = (h: string) => new Uint8Array(Buffer.from(h.replace(/\s/g, ''), 'hex'));
const offer = {
  type: 'offer' as const,
  sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n',
};

describe('calls-dc messages', () => {
  it('encodes the bodiless types as Go does: a uint8 type, nothing after', () => {
    assert.equal(hex(encodeDc({ type: DcType.Ping })), 'cc01');
    assert.equal(hex(encodeDc({ type: DcType.Pong })), 'cc02');
    assert.equal(hex(encodeDc({ type: DcType.Lock })), 'cc07');
    assert.equal(hex(encodeDc({ type: DcType.Unlock })), 'cc08');
  });

  it('encodes the lock reply as the type and a msgpack bool', () => {
    assert.equal(hex(encodeDc({ type: DcType.Lock, granted: true })), 'cc07c3');
    assert.equal(hex(encodeDc({ type: DcType.Lock, granted: false })), 'cc07c2');
  });

  it("decodes Go's uint8 type and the JavaScript peer's positive fixint alike", () => {
    assert.deepEqual(decodeDc(bytes('cc01')), { type: DcType.Ping });
    assert.deepEqual(decodeDc(bytes('01')), { type: DcType.Ping });
    assert.deepEqual(decodeDc(bytes('cc07')), { type: DcType.Lock });
    assert.deepEqual(decodeDc(bytes('07c3')), { type: DcType.Lock, granted: true });
    assert.deepEqual(decodeDc(bytes('cc04cb3ff0000000000000')), { type: DcType.LossRate, value: 1 });
  });

  it('a media map: mid → {type, sender_id}, byte for byte', () => {
    const vector = bytes('cc09 81 a130 82 a474797065 a5766f696365 a973656e6465725f6964 a3616263');
    assert.deepEqual(decodeDc(vector), { type: DcType.MediaMap, map: { 0: { type: 'voice', sender_id: 'abc' } } });
    assert.equal(
      hex(encodeDc({ type: DcType.MediaMap, map: { 0: { type: 'voice', sender_id: 'abc' } } })),
      hex(vector),
    );
  });

  it('an SDP message: the type, then msgpack bin of zlib (RFC 1950) that Node inflates', () => {
    const out = encodeDc({ type: DcType.SDP, description: offer });
    assert.equal(hex(out.subarray(0, 3)), 'cc03c4');
    const bin = decode(out.subarray(2)) as Uint8Array;
    assert.equal(bin[0], 0x78, 'a zlib header, not raw deflate');
    assert.deepEqual(JSON.parse(inflateSync(bin).toString()), offer);
    // and what Go's zlib writer makes (Node's deflate is the same format) decodes
    const fromGo = new Uint8Array([
      0xcc,
      0x03,
      0xc5,
      ...u16(deflateSync(JSON.stringify(offer)).length),
      ...deflateSync(JSON.stringify(offer)),
    ]);
    assert.deepEqual(decodeDc(fromGo), { type: DcType.SDP, description: offer });
  });

  it('refuses unknown types and bad payloads with a ProtocolError (never a throw of another kind)', () => {
    for (const bad of ['cc0a', '', 'c1', 'cc04a3616263', 'cc09a3616263', 'cc03c403010203']) {
      assert.throws(() => decodeDc(bytes(bad)), ProtocolError, bad);
    }
  });
});

function u16(n: number): number[] {
  return [n >> 8, n & 0xff];
}

describe('websocket frames', () => {
  it('sdp goes as a binary msgpack request whose data.data is bin', () => {
    const frame = encodeRequest(
      { action: 'custom_com.mattermost.calls_sdp', seq: 3, data: { data: packSdp(offer) } },
      true,
    ) as Uint8Array;
    // fixmap of 3; "action" → a 31-character fixstr (0xbf)
    assert.equal(hex(frame.subarray(0, 9)), '83a6616374696f6ebf');
    const request = decodeRequest(frame);
    assert.equal(request.action, 'custom_com.mattermost.calls_sdp');
    assert.equal(request.seq, 3);
    assert.ok(request.data!.data instanceof Uint8Array);
    assert.deepEqual(unpackSdp(request.data!.data), offer);
  });

  it("reads the JSON text the webapp sends, and the Go client's msgpack, as one request", () => {
    const text = '{"action":"custom_com.mattermost.calls_join","seq":1,"data":{"channelID":"abc","jobID":"def"}}';
    assert.deepEqual(decodeRequest(text), {
      action: 'custom_com.mattermost.calls_join',
      seq: 1,
      data: { channelID: 'abc', jobID: 'def' },
    });
    assert.deepEqual(decodeRequest(encodeRequest(decodeRequest(text), true) as Uint8Array), decodeRequest(text));
  });

  it('refuses what is not a request', () => {
    for (const bad of [
      'null',
      '[]',
      '"x"',
      '{"seq":1}',
      '{"action":"a","seq":"1"}',
      '{"action":"a","data":[1]}',
      'not json',
    ]) {
      assert.throws(() => decodeRequest(bad), ProtocolError, bad);
    }
    assert.throws(() => decodeRequest(bytes('c1')), ProtocolError);
  });

  it('refuses msgpack headers that claim more than a frame can hold, before allocating them', () => {
    // 20,000 array headers of 65,535 elements each in a 60 KB frame: msgpack's defaults allocated
    // every one (10 GB), and a 6 KB frame of them exhausted a 512 MB heap
    const arrays = bytes('dcffff'.repeat(20_000));
    const map = bytes('dfffffffff');
    const str = bytes(`dbffffffff${'61'.repeat(16)}`);
    for (const frame of [arrays, map, str]) {
      assert.throws(() => decodeRequest(frame), ProtocolError);
      assert.throws(() => decodeDc(frame), ProtocolError);
    }
  });

  it('unpacks SDP whose zlib spans many of its inflate steps', () => {
    // 60 KiB of candidate lines: their zlib is over 10 of the 1 KiB steps
    const lines = Array.from(
      { length: 1200 },
      (_, k) =>
        `a=candidate:${k} 1 udp ${(k * 7919) % 65521} 10.${k % 250}.${(k * 31) % 250}.1 ${1024 + ((k * 613) % 60000)} typ host`,
    );
    const large = { type: 'answer' as const, sdp: lines.join('\r\n').slice(0, 60 * 1024) };
    const packed = packSdp(large);
    assert.ok(packed.length > 10 * 1024, `${packed.length} bytes of zlib`);
    assert.deepEqual(unpackSdp(packed), large);
    assert.deepEqual(unpackSdp(new Uint8Array(deflateSync(JSON.stringify(large)))), large);
  });

  it('unpacks only zlib SDP JSON of at most 64 KiB', () => {
    assert.throws(() => unpackSdp('not bytes'), /must be bytes/);
    assert.throws(() => unpackSdp(new Uint8Array(deflateRawSync('{}'))), /not zlib/);
    assert.throws(() => unpackSdp(new Uint8Array(deflateSync('{"type":"pranswer","sdp":""}'))), /offer\|answer/);
    // a zlib bomb: 1 MiB of spaces in a few hundred bytes
    const bomb = new Uint8Array(deflateSync(Buffer.alloc(1024 * 1024, ' ')));
    assert.ok(bomb.length < 2000);
    assert.throws(
      () => unpackSdp(bomb),
      (err: Error) => err instanceof ProtocolError && /64 KiB|not zlib/.test(err.message),
    );
    // 64 MiB of zeros in 64 KB of zlib, and zlib cut short
    const zeros = new Uint8Array(deflateSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 }));
    assert.throws(() => unpackSdp(zeros), /larger than 64 KiB/);
    assert.throws(() => unpackSdp(packSdp(offer).subarray(0, 20)), /not zlib/);
    assert.throws(() => unpackSdp(new Uint8Array(0)), /not zlib/);
    const big = { type: 'offer', sdp: 'a'.repeat(MAX_SDP_BYTES) };
    assert.throws(() => unpackSdp(new Uint8Array(deflateSync(JSON.stringify(big)))), ProtocolError);
  });
});

describe('track ids', () => {
  it("reads the type and the sender as rtcd's ParseTrackID does", () => {
    const id = formatTrackId('voice', 'kq8bwxh9xpgodm6jzrdb8uhgjw', 'a1b2c3d4');
    assert.equal(id, 'voice_kq8bwxh9xpgodm6jzrdb8uhgjw_a1b2c3d4');
    assert.deepEqual(parseTrackId(id), { type: 'voice', sessionId: 'kq8bwxh9xpgodm6jzrdb8uhgjw' });
    assert.deepEqual(parseTrackId('screen-audio_s1_x_y'), { type: 'screen-audio', sessionId: 's1' });
    for (const bad of ['voice_s1', 'camera_s1_x', '_s1_x', 'voice__x', '']) assert.equal(parseTrackId(bad), null, bad);
    // a session id names a job's track files: nothing that leads out of its directory
    for (const bad of ['voice_/../../../tmp/x_r', 'voice_.._r', 'video_a/b_r', `voice_${'a'.repeat(65)}_r`])
      assert.equal(parseTrackId(bad), null, bad);
  });
});
