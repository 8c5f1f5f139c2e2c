// The helper process of spawner.ts: starts the ffmpegs the job program sends and answers when each
// ends. When the job program closes the channel (it is done, or died), what still runs is killed.
import type { ChildProcess } from 'node:child_process';
import { startFfmpeg } from './ffmpeg.js';
import type { SpawnerReply, SpawnerRequest } from './spawner.js';

const running = new Map<number, ChildProcess>();

process.on('message', (request: SpawnerRequest) => {
  if ('kill' in request) {
    running.get(request.kill)?.kill('SIGKILL');
    return;
  }
  const { id, args, nice } = request;
  const { child, done } = startFfmpeg(args, { nice });
  running.set(id, child);
  done.then(
    () => answer({ id }),
    (err: Error) => answer({ id, error: err.message }),
  );
});

function answer(reply: SpawnerReply): void {
  running.delete(reply.id);
  if (process.connected) process.send!(reply);
}

process.on('disconnect', () => {
  for (const child of running.values()) child.kill('SIGKILL');
});
