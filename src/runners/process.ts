// The process runner: the embedded default. A job image name maps to a job program on this host,
// started as a child process in the job's directory.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { JobExit, Runner, RunningJob, StartSpec } from './runner.js';
import { imageNameOf } from '../jobs/runner-image.js';

/** Built-in programs, relative to the compiled tree (dist/). */
const builtIn: Record<string, string> = {
  'calls-recorder': fileURLToPath(new URL('../../workers/recorder/main.js', import.meta.url)),
  'calls-transcriber': fileURLToPath(new URL('../../workers/transcriber/main.js', import.meta.url)),
};

// setpriv --pdeathsig makes the kernel send SIGTERM to the job when the worker dies, even by
// SIGKILL: the job finishes its file instead of running on unseen (and being run twice).
const SETPRIV = '/usr/bin/setpriv';

/**
 * The service's own configuration (and its secrets: the admin secret, SFU_TOKENSECRET, Redis'
 * password) never reaches a job; the worker gives a job on the bundled SFU its own SFU_URL and
 * SFU_TOKEN.
 */
const serviceVariable = /^(API|JOBS|LOGGER|REDIS|SFU)_|^DEV_MODE$/;

export class ProcessRunner implements Runner {
  readonly kind = 'process';
  private readonly programs: Record<string, string>;
  private readonly usePdeathsig = existsSync(SETPRIV);

  constructor(overrides: Record<string, string> = {}) {
    this.programs = { ...builtIn, ...overrides };
  }

  check(imageName: string): string | null {
    const program = this.programs[imageName];
    if (!program) return `the process runner has no job program for ${imageName}`;
    if (!existsSync(program)) {
      return `the process runner has no job program for ${imageName} yet (${program} does not exist); set JOBS_PROCESSPROGRAMS to point ${imageName} at one`;
    }
    return null;
  }

  async start(spec: StartSpec): Promise<RunningJob> {
    const imageName = imageNameOf(spec.job.runner);
    const reason = this.check(imageName);
    if (reason) throw new Error(reason);
    const program = this.programs[imageName]!;
    const command = [...(/\.[cm]?js$/.test(program) ? [process.execPath, program] : [program]), ...(spec.args ?? [])];
    if (this.usePdeathsig) command.unshift(SETPRIV, '--pdeathsig', 'SIGTERM', '--');

    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !serviceVariable.test(k)) env[k] = v;
    Object.assign(env, spec.env);

    const child = spawn(command[0]!, command.slice(1), { cwd: spec.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (c: Buffer) => spec.onOutput(c, 'stdout'));
    child.stderr.on('data', (c: Buffer) => spec.onOutput(c, 'stderr'));
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    const exited = new Promise<JobExit>((resolve) => {
      // 'close' waits for the output pipes to drain, so the log is complete.
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    return {
      pid: child.pid,
      signal: (sig) => {
        if (child.exitCode === null && child.signalCode === null) child.kill(sig);
      },
      exited,
    };
  }
}
