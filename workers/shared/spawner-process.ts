// The helper process of spawner.ts: starts the ffmpegs the job program sends and answers when each
// ends. When the job program closes the channel (it is done, or died), what still runs is killed.
import type { ChildProcess } from 'node:child_process';
import { startFfmpeg } from './ffmpeg.js';
import { reapedChildrenCpuSeconds } from './proc-stat.js';
import type { SpawnerReply, SpawnerRequest } from './spawner.js';

const running = new Map<number, ChildProcess>();

/**
 * CPU seconds of the children this helper has reaped so far; undefined without /proc. What an
 * ffmpeg used, nice and setpriv included (they exec it), lands here when it is reaped.
 */
function reapedCpuS(): number | undefined {
  try {
    return reapedChildrenCpuSeconds('self');
  } catch {
    return undefined;
  }
}

let reaped = reapedCpuS();

process.on('message', (request: SpawnerRequest) => {
  if ('kill' in request) {
    running.get(request.kill)?.kill('SIGKILL');
    return;
  }
  const { id, args, nice } = request;
  let started: ReturnType<typeof startFfmpeg>;
  try {
    started = startFfmpeg(args, { nice });
  } catch (err) {
    // spawn throws at once for arguments the kernel refuses (E2BIG): an answer, not this helper's end
    return answer({ id, error: (err as Error).message });
  }
  const { child, done } = started;
  running.set(id, child);
  done.then(
    () => answer({ id }),
    (err: Error) => answer({ id, error: err.message }),
  );
});

/**
 * Answers for an ffmpeg that ended, with the CPU it used: what the reaped children's CPU grew by
 * since the last answer. The recorder runs one part at a time; two ffmpegs ending in the same turn
 * of the event loop would be reaped together, and the first answer would count both.
 */
function answer(reply: Omit<SpawnerReply, 'cpuS'>): void {
  running.delete(reply.id);
  const now = reapedCpuS();
  const cpuS = now !== undefined && reaped !== undefined ? Math.round((now - reaped) * 100) / 100 : undefined;
  reaped = now;
  if (process.connected) process.send!({ ...reply, cpuS } satisfies SpawnerReply);
}

process.on('disconnect', () => {
  for (const child of running.values()) child.kill('SIGKILL');
});
