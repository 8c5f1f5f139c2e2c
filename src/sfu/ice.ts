// Peer connection settings for werift, and the SDP candidate lines we send. Media binds to one
// address; on loopback (tests, a single host) every candidate and pair outside 127/8 is dropped so
// no packet leaves the machine; behind NAT the announced address replaces the host candidates'
// address (as rtcd's ICE host override).
import type { PeerConfig } from 'werift';
import { useH264, useNACK, useOPUS, usePLI, useVP8 } from 'werift';

export interface IceOptions {
  /** address the media sockets bind to: 127.0.0.1 (loopback only) or 0.0.0.0 */
  bindAddress: string;
  /** address announced in candidates instead of the host's own */
  announce?: string;
  portRange?: [number, number];
}

const isLoopback = (address: string) => address.startsWith('127.');

const video = {
  vp8: () => useVP8({ rtcpFeedback: [useNACK(), usePLI()] }),
  h264: () => useH264({ rtcpFeedback: [useNACK(), usePLI()] }),
};

const codecs = (videoCodecs: (keyof typeof video)[] = ['vp8', 'h264']) => ({
  audio: [useOPUS()],
  video: videoCodecs.map((c) => video[c]()),
});

export function peerConfig(ice: IceOptions, videoCodecs?: (keyof typeof video)[]): Partial<PeerConfig> {
  const config: Partial<PeerConfig> = {
    codecs: codecs(videoCodecs),
    iceServers: [],
    iceUseIpv6: false,
    bundlePolicy: 'max-bundle',
    icePortRange: ice.portRange,
  };
  if (isLoopback(ice.bindAddress)) {
    config.iceAdditionalHostAddresses = [ice.bindAddress];
    config.iceInterfaceAddresses = { udp4: ice.bindAddress };
    config.iceFilterCandidatePair = (pair) => isLoopback(pair.remoteCandidate.host);
    config.iceFilterStunResponse = (_message, addr) => isLoopback(addr[0]);
  } else if (ice.bindAddress !== '0.0.0.0') {
    config.iceInterfaceAddresses = { udp4: ice.bindAddress };
  }
  return config;
}

/**
 * A candidate we send (an SDP `a=candidate:` line or a trickled one), loopback only or rewritten
 * to the announced address; null when it must not leave.
 */
export function outgoingCandidate(candidate: string, ice: IceOptions): string | null {
  const parts = candidate.split(' ');
  // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
  if (isLoopback(ice.bindAddress) && !ice.announce && !isLoopback(parts[4] ?? '')) return null;
  if (ice.announce && parts[7] === 'host') parts[4] = ice.announce;
  return parts.join(' ');
}

/** The candidate lines of an SDP we send, filtered and rewritten as outgoingCandidate does, without duplicates. */
export function outgoingSdp(sdp: string, ice: IceOptions): string {
  const seen = new Set<string>();
  return sdp
    .split('\r\n')
    .flatMap((line) => {
      if (!line.startsWith('a=candidate:')) return [line];
      const out = outgoingCandidate(line, ice);
      if (!out) return [];
      const parts = out.split(' ');
      const key = `${parts[2]} ${parts[4]} ${parts[5]}`;
      if (seen.has(key)) return [];
      seen.add(key);
      return [out];
    })
    .join('\r\n');
}
