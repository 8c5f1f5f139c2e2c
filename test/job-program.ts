// A job program run by hand against a real SFU in the test process: what the recorder and
// transcriber program tests share (the worker's part is in the end-to-end suites).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createLogger } from '../src/log.js';
import { Sfu } from '../src/sfu/server/server.js';
import { joinTokenPolicy } from '../src/sfu/server/policy.js';
import { testConfig } from './helpers.js';

export class JobProgramHarness {
  readonly secret = randomBytes(32).toString('hex');
  sfuUrl = '';
  /** media sources (ffmpeg) killed at the end */
  readonly sources: ChildProcess[] = [];
  sfu!: Sfu;

  constructor(
    private readonly program: string,
    private readonly portRange: [number, number],
  ) {}

  async start(): Promise<void> {
    await this.startSfu(0);
  }

  /** The SFU, on `port` (again, after a close: a restart that lost every call). */
  async startSfu(port: number): Promise<void> {
    this.sfu = new Sfu({
      host: '127.0.0.1',
      port,
      ice: { bindAddress: '127.0.0.1', portRange: this.portRange },
      policy: joinTokenPolicy(this.secret),
      log: createLogger(testConfig(), 'sfu'),
    });
    this.sfuUrl = await this.sfu.listen();
  }

  async stop(): Promise<void> {
    for (const s of this.sources) s.kill('SIGKILL');
    await this.sfu.close();
  }

  /** Runs the program with `env` on top of this process's; its stdout and stderr are collected. */
  run(env: Record<string, string>, args: string[] = []) {
    const child = spawn(process.execPath, [this.program, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c) => (output += c));
    child.stderr.on('data', (c) => (output += c));
    return { child, output: () => output, exited: once(child, 'exit') as Promise<[number | null, string | null]> };
  }
}
