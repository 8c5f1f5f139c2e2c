// ffmpeg as a child process: resolves when it succeeds, else an error with the last lines it printed.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setPriority } from 'node:os';

// setpriv --pdeathsig: an ffmpeg whose job program was killed stops too, instead of composing on
// unseen beside the recovery run.
const SETPRIV = '/usr/bin/setpriv';
const withPdeathsig = existsSync(SETPRIV);

/** `nice`: a lower priority (1-19) for work that must not slow down what runs live. */
export async function ffmpeg(args: string[], opts: { nice?: number } = {}): Promise<void> {
  const child = withPdeathsig
    ? spawn(SETPRIV, ['--pdeathsig', 'SIGKILL', 'ffmpeg', ...args], { stdio: ['ignore', 'inherit', 'pipe'] })
    : spawn('ffmpeg', args, { stdio: ['ignore', 'inherit', 'pipe'] });
  if (opts.nice && child.pid) setPriority(child.pid, opts.nice);
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`ffmpeg exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
}
