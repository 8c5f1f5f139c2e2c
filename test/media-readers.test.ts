// The RTP payload readers against what a real encoder sends: libopus at each frame duration.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { RtpPacket } from 'werift';
import { opusPacketMs } from '../src/media/opus.js';
import { rtpSource } from './media.js';

describe('opus packet duration', () => {
  for (const frameMs of [10, 20, 40, 60]) {
    it(`reads ${frameMs} ms from libopus packets of ${frameMs} ms, speech and music alike`, async () => {
      const packets: RtpPacket[] = [];
      // Speech-like (SILK/hybrid at a low rate) and a tone at a high rate (CELT).
      for (const [input, rate] of [
        ['anoisesrc=c=pink:a=0.3', '12k'],
        ['sine=frequency=440', '96k'],
      ] as const) {
        const ffmpeg = await rtpSource(
          (rtp) => packets.push(rtp),
          ['-f', 'lavfi', '-i', `${input}:duration=1`],
          ['-c:a', 'libopus', '-b:a', rate, '-frame_duration', String(frameMs), '-payload_type', '111'],
        );
        await once(ffmpeg, 'exit');
      }
      assert.ok(packets.length >= 2 * Math.floor(800 / frameMs), `only ${packets.length} packets`);
      assert.deepEqual(new Set(packets.map((p) => opusPacketMs(p.payload))), new Set([frameMs]));
      const modes = new Set(
        packets.map((p) => (p.payload[0]! >> 3 < 12 ? 'SILK' : p.payload[0]! >> 3 < 16 ? 'hybrid' : 'CELT')),
      );
      assert.ok(modes.has('SILK') && modes.has('CELT'), `modes seen: ${[...modes]}`);
    });
  }

  it('reads 0 from an empty payload', () => {
    assert.equal(opusPacketMs(new Uint8Array()), 0);
  });
});
