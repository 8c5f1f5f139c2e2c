// ffmpegs started by a small helper process (spawner-process.ts) instead of by the job program.
// Node's spawn forks the calling process, and after each fork every page the job program writes
// faults once more (copy-on-write). The recorder starts an ffmpeg per part: 22,000 page faults in
// 40 s of live capture, which on a machine whose faults cost 12–22 µs each took a sixth of its
// CPU (README, bench/recorder). The helper is forked once, stays small and idle, and forks them.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ffmpeg, orphanProof } from './ffmpeg.js';

/** What the job program sends the helper: an ffmpeg to start, or one to kill. */
export type SpawnerRequest = { id: number; args: string[]; nice?: number } | { kill: number };
/** What the helper answers when an ffmpeg ends: `error` when it failed; `cpuS`, its CPU (user and system) where /proc tells. */
export interface SpawnerReply {
  id: number;
  error?: string;
  cpuS?: number;
}

/** How an ffmpeg went: the CPU seconds it used, where they could be read. */
export type FfmpegRun = Pick<SpawnerReply, 'cpuS'>;

const HELPER = fileURLToPath(new URL('./spawner-process.js', import.meta.url));

export class Spawner {
  private readonly helper: ChildProcess;
  private readonly waiting = new Map<number, (reply: Omit<SpawnerReply, 'id'>) => void>();
  private next = 0;
  private alive = true;
  private readonly ended: Promise<void>;

  constructor() {
    this.helper = spawn(...orphanProof(process.execPath, [HELPER]), {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.helper.on('message', ({ id, ...reply }: SpawnerReply) => this.waiting.get(id)?.(reply));
    this.ended = new Promise((resolve) => {
      const gone = () => {
        this.alive = false;
        for (const settle of this.waiting.values()) settle({ error: 'the ffmpeg helper process ended' });
        resolve();
      };
      this.helper.on('exit', gone);
      this.helper.on('error', gone); // not started
    });
  }

  /**
   * ffmpeg with these arguments, files in and out (ffmpeg.ts's `ffmpeg`, from the helper). With the
   * helper gone (killed), it is started from here: slower, but the recording goes on (and its CPU
   * is not told).
   */
  async ffmpeg(args: string[], { nice, signal }: { nice?: number; signal?: AbortSignal } = {}): Promise<FfmpegRun> {
    if (!this.alive) return ffmpeg(args, { nice, signal }).then(() => ({}));
    signal?.throwIfAborted();
    const id = this.next++;
    const kill = () => this.helper.send({ kill: id } satisfies SpawnerRequest);
    signal?.addEventListener('abort', kill, { once: true });
    return new Promise<FfmpegRun>((resolve, reject) => {
      this.waiting.set(id, ({ error, cpuS }) => {
        this.waiting.delete(id);
        signal?.removeEventListener('abort', kill);
        if (signal?.aborted) reject(signal.reason);
        else if (error === undefined) resolve({ cpuS });
        else reject(new Error(error));
      });
      this.helper.send({ id, args, nice } satisfies SpawnerRequest);
    });
  }

  /** Ends the helper (any ffmpeg still running is killed); resolves once it has exited. */
  close(): Promise<void> {
    if (this.helper.connected) this.helper.disconnect();
    return this.ended;
  }
}
