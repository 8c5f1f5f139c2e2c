// What the SFU announces in SDP: loopback only on a loopback bind, the override address behind NAT.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { outgoingSdp, peerConfig } from '../src/sfu/ice.js';

const sdp = [
  'v=0',
  'a=candidate:1 1 udp 2130706431 10.0.0.5 8443 typ host',
  'a=candidate:2 1 udp 2130706431 127.0.0.1 8443 typ host',
  'a=candidate:3 1 udp 2130706431 172.17.0.2 8443 typ host',
  'a=candidate:4 1 udp 1694498815 203.0.113.9 8443 typ srflx raddr 10.0.0.5 rport 8443',
  'a=end-of-candidates',
].join('\r\n');

describe('ICE settings', () => {
  it('on a loopback bind, only loopback candidates are announced', () => {
    const out = outgoingSdp(sdp, { bindAddress: '127.0.0.1' }).split('\r\n');
    assert.deepEqual(
      out.filter((l) => l.startsWith('a=candidate')),
      ['a=candidate:2 1 udp 2130706431 127.0.0.1 8443 typ host'],
    );
    assert.ok(out.includes('a=end-of-candidates'));
  });

  it('with a host override, host candidates carry the public address once', () => {
    const out = outgoingSdp(sdp, { bindAddress: '0.0.0.0', announce: '198.51.100.7' }).split('\r\n');
    assert.deepEqual(
      out.filter((l) => l.startsWith('a=candidate')),
      [
        'a=candidate:1 1 udp 2130706431 198.51.100.7 8443 typ host',
        'a=candidate:4 1 udp 1694498815 203.0.113.9 8443 typ srflx raddr 10.0.0.5 rport 8443',
      ],
    );
  });

  it('a loopback bind keeps gathering and pairs on loopback; the port range is passed on', () => {
    const config = peerConfig({ bindAddress: '127.0.0.1', portRange: [8443, 8943] });
    assert.deepEqual(config.iceAdditionalHostAddresses, ['127.0.0.1']);
    assert.deepEqual(config.iceInterfaceAddresses, { udp4: '127.0.0.1' });
    assert.deepEqual(config.icePortRange, [8443, 8943]);
    assert.deepEqual(config.iceServers, [], 'no STUN host is ever contacted');
    assert.equal(config.iceFilterCandidatePair!({ remoteCandidate: { host: '10.0.0.5' } } as never), false);
    assert.equal(config.iceFilterCandidatePair!({ remoteCandidate: { host: '127.0.0.1' } } as never), true);
  });
});
