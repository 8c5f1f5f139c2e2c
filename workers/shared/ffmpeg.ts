// ffmpeg as a child process: resolves when it succeeds, else an error with the last lines it printed.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

// setpriv --pdeathsig: an ffmpeg whose job program was killed stops too, instead of composing on
// unseen beside the recovery run.
const SETPRIV = '/usr/bin/setpriv';
const withPdeathsig = existsSync(SETPRIV);

// glibc's malloc asks for transparent huge pages for what it maps (frames, x264's lookahead),
// where the kernel gives them on request (THP "madvise", Debian's default): each part's ffmpeg
// is a new process whose buffers were otherwise faulted in 4 KB at a time (README, bench/recorder
// measures its floors with the same environment). Other C libraries ignore the variable. An
// admin's own GLIBC_TUNABLES is left as it is: Debian 12's glibc (2.36) hands on only the first of
// several tunables to what a program execs (setpriv here), so ours cannot simply be added to it.
export const ffmpegEnv = (): NodeJS.ProcessEnv =>
  process.env.GLIBC_TUNABLES === undefined ? { ...process.env, GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' } : process.env;

export interface FfmpegOptions {
  /** a lower priority (1-19) for work that must not slow down what runs live */
  nice?: number;
  /** a pipe for the media in (stdin) or out (stdout), instead of files */
  pipe?: 'stdin' | 'stdout';
  /** a second pipe for media in: ffmpeg's pipe:3 */
  pipe3?: boolean;
  /** kills it (SIGKILL) when aborted: its work is no longer wanted */
  signal?: AbortSignal;
}

/** `command` and its arguments, run so that it is killed when its parent dies (where setpriv is). */
export function orphanProof(command: string, args: string[]): [string, string[]] {
  return withPdeathsig ? [SETPRIV, ['--pdeathsig', 'SIGKILL', command, ...args]] : [command, args];
}

/** ffmpeg running: `done` settles when it exits, with its last lines if it failed. */
export function startFfmpeg(args: string[], opts: FfmpegOptions = {}): { child: ChildProcess; done: Promise<void> } {
  const stdio: ('pipe' | 'ignore' | 'inherit')[] = [
    opts.pipe === 'stdin' ? 'pipe' : 'ignore',
    opts.pipe === 'stdout' ? 'pipe' : 'inherit',
    'pipe',
    ...(opts.pipe3 ? (['pipe'] as const) : []),
  ];
  // The priority is set before ffmpeg runs (nice execs what follows): set from here after the
  // spawn, it came late on a busy host, when ffmpeg had started threads that kept the caller's.
  const [command, argv] = orphanProof('ffmpeg', args);
  const niced: [string, string[]] = opts.nice ? ['nice', ['-n', String(opts.nice), command, ...argv]] : [command, argv];
  const child = spawn(...niced, {
    stdio,
    env: ffmpegEnv(),
    signal: opts.signal,
    killSignal: 'SIGKILL',
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const done = new Promise<void>((resolve, reject) => {
    child.on('error', reject); // not started, or aborted
    child.on('close', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`ffmpeg exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`)),
    );
  });
  return { child, done };
}

export function ffmpeg(args: string[], opts: Omit<FfmpegOptions, 'pipe' | 'pipe3'> = {}): Promise<void> {
  return startFfmpeg(args, opts).done;
}
