// A UDP socket read in batches (src/sfu/client/batched-receive.ts), with real sockets on
// loopback: what arrives during a pause waits for the next read, whole and in order, more than
// one wake's worth included; a closed socket stops cleanly.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { receiveInBatches } from '../src/sfu/client/batched-receive.js';

const PAUSE_MS = 1000;

async function pair(): Promise<{ receiver: Socket; sender: Socket; send: (i: number) => void }> {
  const receiver = createSocket('udp4');
  const sender = createSocket('udp4');
  receiver.bind(0, '127.0.0.1');
  await once(receiver, 'listening');
  const { port } = receiver.address();
  // 200 bytes each: a burst of 100 stays well inside the kernel's default receive buffer.
  const send = (i: number) => sender.send(Buffer.alloc(200, i % 256), port, '127.0.0.1');
  return { receiver, sender, send };
}

describe('batched receive', () => {
  it('holds what arrives during a pause for the next read, and reads a burst larger than one wake whole, in order', async () => {
    const { receiver, sender, send } = await pair();
    assert.equal(receiveInBatches(receiver, PAUSE_MS), true, "this Node's UDP handle can pause");
    const got: { i: number; at: number }[] = [];
    let turns = 0;
    let inTurn = false;
    const all = new Promise<void>((resolve) =>
      receiver.on('message', (m) => {
        got.push({ i: m[0]!, at: performance.now() });
        if (!inTurn) {
          inTurn = true;
          turns++;
          setImmediate(() => (inTurn = false));
        }
        // The first wake ends in a pause: the other 100 are sent into it, at once (after the
        // check phase that begins it; sent now, they would be read in this very wake).
        if (got.length === 1)
          setImmediate(() =>
            setImmediate(() => {
              for (let i = 1; i <= 100; i++) send(i);
            }),
          );
        if (got.length === 101) resolve();
      }),
    );
    send(0);
    await all;
    assert.deepEqual(
      got.map((g) => g.i),
      Array.from({ length: 101 }, (_, i) => i),
      'every datagram, in order',
    );
    // Timers never fire early: the burst waited out the pause (a lower bound, whatever the load).
    assert.ok(got[1]!.at - got[0]!.at >= PAUSE_MS - 1, `the burst was read ${got[1]!.at - got[0]!.at} ms after`);
    // 100 is more than libuv reads a wake: the rest was read on at once, not a pause later each
    // (a few turns of the event loop against a pause of 1 s each: a margin no load takes).
    assert.ok(got[100]!.at - got[1]!.at < PAUSE_MS, 'the burst was read without another pause');
    assert.ok(turns >= 3, `the burst took ${turns - 1} wakes (libuv reads at most 32 datagrams a wake)`);
    receiver.close();
    sender.close();
  });

  it('a socket closed during a pause closes cleanly, and its pause ends without touching it', async () => {
    const { receiver, sender, send } = await pair();
    receiveInBatches(receiver, PAUSE_MS);
    send(0);
    await once(receiver, 'message');
    await new Promise((r) => setImmediate(r)); // the pause begins
    receiver.close();
    await once(receiver, 'close');
    // An error in the pause's timer would end this process; wait past it.
    await new Promise((r) => setTimeout(r, PAUSE_MS * 2));
    sender.close();
  });
});
