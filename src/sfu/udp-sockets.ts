// werift's UDP sockets of a peer connection, and the kernel's receive buffer under them. A media
// socket's buffer holds what arrives while its process is busy elsewhere (a keyframe from every
// camera at once, a garbage collection, the SFU's own forwarding of the packets before). The
// kernel's default, 212,992 bytes counted with its overhead per datagram, holds 92 datagrams of
// video: in bench/recorder, where the SFU and its publishers share a process, the SFU's sockets
// dropped 202-284 datagrams in each minute of four cameras (README, bench/recorder). rtcd asks
// 16 MB for each of its UDP sockets, which all its sessions share; werift opens a socket per peer
// connection, so 1 MB each.
import type { Socket } from 'node:dgram';
import type { RTCPeerConnection } from 'werift';

/** Room for about 900 datagrams of video; the kernel caps it at net.core.rmem_max. */
export const RECEIVE_BUFFER_BYTES = 1024 * 1024;

/** The UDP sockets werift opened for `pc`: not public API, found under each ICE connection's protocols. */
export function udpSocketsOf(pc: RTCPeerConnection): Socket[] {
  type Protocols = { protocols?: { transport?: { type?: string; socket?: Socket } }[] };
  return pc.iceTransports
    .flatMap((t) => (t.connection as unknown as Protocols).protocols ?? [])
    .flatMap(({ transport }) => (transport?.type === 'udp' && transport.socket ? [transport.socket] : []));
}

/**
 * Raises `socket`'s receive buffer to RECEIVE_BUFFER_BYTES (never lowers it); false when the
 * socket cannot take it (closed meanwhile).
 */
export function raiseReceiveBuffer(socket: Socket): boolean {
  try {
    // Linux reports twice what was set (its bookkeeping), so the comparison is with half.
    if (socket.getRecvBufferSize() / 2 < RECEIVE_BUFFER_BYTES) socket.setRecvBufferSize(RECEIVE_BUFFER_BYTES);
    return true;
  } catch {
    return false;
  }
}
