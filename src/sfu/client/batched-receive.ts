// Reading a UDP socket in batches: after a wake that emptied the socket, it is left unread for
// `everyMs`, and what arrives meanwhile waits in the kernel's buffer to be read at the next wake,
// all at once. A job's bot only receives media to store or transcribe, so a few ms of delay cost
// nothing, while waking once per datagram (600-700 a second for four cameras and their voices) is
// the largest share of live capture after werift's own work: the sleep and the wake, the epoll
// call and the event loop's round around each packet.
//
// Node's dgram has no pause; its socket handle (libuv's uv_udp_t) does: recvStop takes the socket
// out of the event loop's epoll set and recvStart puts it back. The handle is not public API, so
// it is looked for and, where this Node has it otherwise, the socket is read as before.
import type { Socket } from 'node:dgram';
import { raiseReceiveBuffer } from '../udp-sockets.js';

interface UdpHandle {
  recvStart(): number;
  recvStop(): number;
}

/**
 * libuv reads at most this many datagrams a wake (uv__udp_recvmsg); a wake that read as many may
 * have left more, so the socket is read on without a pause.
 */
const READS_PER_WAKE = 32;

/**
 * Reads the socket's handle (none once the socket is closed). The handle's key is looked for once,
 * not at every wake (it cost 3 % of a job's JavaScript during capture, at 100 looks a second).
 */
function handleReader(socket: Socket): (() => UdpHandle | undefined) | undefined {
  const key = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  if (!key) return undefined;
  const handle = () =>
    (socket as unknown as Record<symbol, { handle?: UdpHandle | null } | undefined>)[key]?.handle ?? undefined;
  const h = handle();
  return h && typeof h.recvStart === 'function' && typeof h.recvStop === 'function' ? handle : undefined;
}

/**
 * Reads `socket` (bound) at most once every `everyMs` while it keeps up. Returns false, and
 * changes nothing, where Node's socket handle cannot pause.
 */
export function receiveInBatches(socket: Socket, everyMs: number): boolean {
  const handle = handleReader(socket);
  if (!handle) return false;
  // Room for what arrives during a pause at a burst (keyframes of every camera at once).
  raiseReceiveBuffer(socket);
  let read = 0;
  let timer: NodeJS.Timeout | undefined;
  socket.on('message', () => {
    if (read++ > 0) return;
    // After this wake's datagrams: the check phase follows the poll phase that read them.
    setImmediate(() => {
      const emptied = read < READS_PER_WAKE;
      read = 0;
      // A closed socket has no handle.
      if (!emptied || handle()?.recvStop() !== 0) return;
      timer = setTimeout(() => handle()?.recvStart(), everyMs);
    });
  });
  socket.once('close', () => clearTimeout(timer));
  return true;
}
